"""The audio-lip sync judge: a SyncNet-style joint embedding of voice and lips (see judge.py, train.py)."""
