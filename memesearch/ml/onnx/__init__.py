"""Our own ONNX Runtime generation loops (numpy + onnxruntime, no torch)."""
