"""The lip gate's scorer: its training recipe (train.py)."""
