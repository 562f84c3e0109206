"""avcall.pipelines: frame types, the session clock, stages, the runner, sources and sinks.

Nothing here imports torch: the runtime path needs numpy, OpenCV, mediapipe, PyAV and onnxruntime only.
"""
