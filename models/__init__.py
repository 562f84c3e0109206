"""avcall.models: one folder per model family (net, data recipe, training script); `weights/` holds the
shipped ONNX files and their manifest. Training code imports torch; the runtime path never imports this."""
