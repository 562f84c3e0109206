"""One stage per module; each is a `Stage` subclass with `accepts` and `process`."""
