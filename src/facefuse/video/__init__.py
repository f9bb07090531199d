"""Fused videos: video templates analysed once, frames fused in batches, H.264 out."""
