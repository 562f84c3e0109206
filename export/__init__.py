"""avcall.export: torch -> ONNX export, parity checks, and the one place that creates onnxruntime sessions."""
