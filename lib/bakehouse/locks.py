"""One bake of an image at a time on this machine.

A bake holds an exclusive flock on .bakehouse/locks/<bake>.lock while it runs, so two doit
processes that would bake the same image (two CI jobs on one runner, two terminals) do not
both bake it: the second waits, then finds the first one's image in the registry and reuses
it. Different bakes take different locks and run in parallel. The lock is released by the
kernel when the last process holding its file ends, however it ends, so a crashed run never
leaves it stuck. Packer inherits the lock's file (`Held.fd`): if doit is killed outright,
the lock stays held until packer, cancelled by the kernel's parent-death signal, has
finished cleaning up, so a rerun never bakes beside an orphan.

Scope: one machine (and one .bakehouse/ directory). Runs on several machines sharing one
registry (AWS) are serialised by a lease on S3 as well, when the repository configures shared
state (providers/aws/shared.py); a bake then holds both.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO


@dataclass(frozen=True)
class Held:
    waited: bool  # another process held the lock, and this one waited for it
    fd: int  # the lock's open file: a child that inherits it holds the lock too


@contextmanager
def bake_lock(locks_dir: Path, bake: str, out: TextIO) -> Iterator[Held]:
    """Hold the lock of `bake` while the block runs."""
    locks_dir.mkdir(parents=True, exist_ok=True)
    path = locks_dir / f"{bake}.lock"
    with path.open("a+", encoding="utf-8") as handle:
        waited = False
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            out.write(f"[{bake}] waiting: {bake} is being baked by {holder}\n")
            out.flush()
            fcntl.flock(handle, fcntl.LOCK_EX)
            waited = True
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {datetime.now(UTC):%H:%M:%SZ}\n")
        handle.flush()
        try:
            yield Held(waited, handle.fileno())
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)
