"""The serving stages as plain functions on numpy arrays.

Triton's `model.py` adapters and the in-process `LocalPipeline` call the same
functions, so the two cannot drift apart; everything here unit-tests without Triton.
"""
