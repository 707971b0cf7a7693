"""What code does while a test watches: Python's audit events (sys.addaudithook), recorded in a block.

One hook for the whole test session (an audit hook cannot be removed); it keeps events only
inside `audit_events()`.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

_recording: list[tuple[str, tuple]] | None = None


def _hook(event: str, args: tuple) -> None:
    if _recording is not None:
        _recording.append((event, args))


sys.addaudithook(_hook)


@contextmanager
def audit_events() -> Iterator[list[tuple[str, tuple]]]:
    """Every (event, args) raised inside the block."""
    global _recording
    _recording = events = []
    try:
        yield events
    finally:
        _recording = None
