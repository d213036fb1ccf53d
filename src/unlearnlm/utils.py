"""Tiny shared helpers: logging to stderr with a timestamp, seeding."""
from __future__ import annotations

import sys
import time

_START = time.time()


def log(message: str) -> None:
    """One progress line on stderr, prefixed with the elapsed time of this process."""
    elapsed = time.time() - _START
    print(f"[{elapsed:7.1f}s] {message}", file=sys.stderr, flush=True)
