"""Sources: tracks with `async def recv()` that return the next frame, stamped on the session clock."""

from .base import Source, SourceEnded

__all__ = ["Source", "SourceEnded"]
