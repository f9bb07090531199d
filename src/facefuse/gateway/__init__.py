"""The public gRPC gateway: auth, quotas, cheap checks, deadlines, retries, hedging.

It never decodes pixels: it checks what is cheap and forwards encoded bytes to Triton.
"""
