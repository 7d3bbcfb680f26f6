"""One package per model family: its ONNX loop and preprocessing (torch-free runtime), its
PyTorch fallback backend, its torch -> ONNX exporter and its tiny random model (torch-only)."""
