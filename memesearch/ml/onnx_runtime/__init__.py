"""What every ONNX Runtime model shares: opening sessions (telemetry off, threads) and int8 quantisation."""
