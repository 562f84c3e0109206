"""Voice -> face motion: a small causal net from the voice to the tracker's lip features (see model.py)."""
