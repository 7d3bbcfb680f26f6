"""PyTorch/transformers fallback backends (optional extra; torch is imported lazily)."""
