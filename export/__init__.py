"""avcall.export: what the model families' exports share, and only that: the shipped weights' manifest
(manifest.py: each ONNX file's entry, the opset, the credits for real voices). It imports from pipelines/ only
(never models/ or app/: tests/test_layout.py).

Each family's torch -> ONNX export lives beside its model, in models/<family>/:
    the enhancer           models/avse/export.py (`python -m avcall.models.avse.export RUN/model.pt -o FILE`)
    the emotion nets       models/emotion/export.py (`avcall train emotion --export`)
    the sync judge         models/sync/train.py export, export_encoders (`avcall train sync --export`)
    the voice-to-lips net  models/talking_face/train.py export, export_onnx; real.py export_real
    the lip gate's net     models/lip_gate/net.py export (`avcall train lip-gate-net --export`)
    the extractor          models/tse/train.py export_onnx (`avcall train tse --export`)
The sessions that run the exported files: pipelines/runtime.py."""
