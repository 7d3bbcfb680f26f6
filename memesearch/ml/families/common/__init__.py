"""What the families' torch-only code shares: the PyTorch captioner base, exporter constants and
the int8 reference used by parity checks."""
