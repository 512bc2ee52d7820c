"""Ctrl-C, SIGTERM and SIGHUP during a run: what a cancelled run says, and the steps a signal
must not cut in half.

A run is cancelled by a signal at any point; its exit then says so (status 130, as killed by
SIGINT) with one line naming what this run recorded (those images are whole and current) and
the bake it interrupted (nothing of it is recorded). Two rules make that line true whatever the
timing:

- recording an image is one step: signals wait (blocked, so they stay pending) while the
  registry records it and the run notes it, and arrive just after (`deferred`);
- once doit has finished the run (its reporter's `complete_run`), a signal changes nothing:
  the run's outcome stands (`finished`).

What this run did is process state, as signal handlers are: `JOURNAL`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

CANCELLING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Journal:
    """The bake running now, if any, and the images this run recorded, in order."""

    baking: str | None = None
    recorded: list[str] = field(default_factory=list)  # "image-id (bake)"

    def cancelled_line(self) -> str:
        parts = ["bakehouse: cancelled"]
        if self.baking is not None:
            parts.append(f"the bake of {self.baking} was interrupted: nothing of it is recorded")
        else:
            parts.append("no bake was running")
        if self.recorded:
            parts.append(f"recorded by this run, whole and current: {', '.join(self.recorded)}")
        return "; ".join(parts)


JOURNAL = Journal()


@contextmanager
def deferred() -> Iterator[None]:
    """Signals that cancel a run wait until the block is done (in the main thread, where
    Python runs its handlers; elsewhere there is nothing to hold)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, CANCELLING)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def finished() -> None:
    """The run is over: from now on, a signal cannot change its outcome."""
    if threading.current_thread() is threading.main_thread():
        for signum in CANCELLING:
            signal.signal(signum, signal.SIG_IGN)
