"""Errors a user can cause: each carries a one-line message the CLI prints as is (no traceback)."""


class AvcallError(Exception):
    """Base class of user-facing errors; `str(err)` is the one-line message."""


class InputError(AvcallError):
    """The input file cannot be used (missing, not media, truncated, unsupported size, ...)."""


class DeviceError(AvcallError):
    """A camera, microphone, speaker or display was asked for and is not there."""


class OutputError(AvcallError):
    """The output cannot be written (read-only folder, disk full, ...)."""
