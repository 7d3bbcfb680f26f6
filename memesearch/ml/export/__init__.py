"""Exporters that write ONNX files in the layouts our runtime reads."""
