"""The shipped nets at run time (onnxruntime, no torch): what each net sees (its features, computed the same
way in training) and its session. Training code in models/ imports these; nothing here imports models/."""
