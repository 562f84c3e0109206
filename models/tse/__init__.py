"""The lip-guided target-talker extractor that runs after the noise suppressor (issue 22): a causal
two-speaker separator with a selection by the sync judge (design 1), and the same net conditioned on the
judge's lip embedding (design 2). Torch here is for training and export only; the runtime is
pipelines/target_talker.py."""
