"""The evaluations and the measuring they share (`avcall eval ...`): data, metrics, the enhancement baselines,
one module per evaluation, and `commands` (the sub-commands). The benchmarks, the soak and the demo stay in
app/ beside it and may import it; nothing here imports them."""
