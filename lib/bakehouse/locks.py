"""One bake of an image at a time on this machine.

A bake holds an exclusive flock on .bakehouse/locks/<bake>.lock while it runs, so two doit
processes that would bake the same image (two CI jobs on one runner, two terminals) do not
both bake it: the second waits, then finds the first one's image in the registry and reuses
it. Different bakes take different locks and run in parallel. The lock is released by the
kernel when the last process holding its file ends, however it ends, so a crashed run never
leaves it stuck. Packer inherits the lock's file (`Held.fd`): if doit is killed outright,
the lock stays held until packer, cancelled by the kernel's parent-death signal, has
finished cleaning up, so a rerun never bakes beside an orphan.

A bake writes into its lock file the base image it builds on (`note_base`), and `running_bases`
reads that back from the lock files a live process holds (as /proc/locks lists them; a probe
that took the lock, even for an instant, would make a starting bake say it waits): a prune
keeps every image a running bake builds on.

Scope: one machine (and one .bakehouse/ directory). Runs on several machines sharing one
registry (AWS) are serialised by a lease on S3 as well, when the repository configures shared
state (providers/aws/shared.py); a bake then holds both.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Collection, Iterator
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
        handle.truncate()  # a holder that died left its note: it is not running
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {datetime.now(UTC):%H:%M:%SZ}\n")
        handle.flush()
        try:
            yield Held(waited, handle.fileno())
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


BASE_NOTE = "base: "
LOG_NOTE = "log: "


def note_base(fd: int, image_id: str) -> None:
    """Say in the held lock's file (opened to append) which base image the bake builds on."""
    os.write(fd, f"{BASE_NOTE}{image_id}\n".encode())


def note_log(fd: int, log: Path) -> None:
    """Say in the held lock's file where the bake's log grows (`doit serve` shows it)."""
    os.write(fd, f"{LOG_NOTE}{log}\n".encode())


@dataclass(frozen=True)
class RunningBake:
    """A bake whose lock a live process on this machine holds, as its lock file says."""

    bake: str
    holder: str  # "pid 1234 on host since 11:34:02Z"
    base: str | None
    log: Path | None


def running_bakes(locks_dir: Path, skip: Collection[str] = ()) -> list[RunningBake]:
    """The bakes held by a live process on this machine, wherever it started (a terminal, CI,
    the bake service), except those in `skip` (the caller holds them itself)."""
    held = _held_inodes()
    found = []
    for path in sorted(locks_dir.glob("*.lock")) if locks_dir.is_dir() else []:
        bake = path.name.removesuffix(".lock")
        try:
            status = path.stat()
            if bake in skip or (os.major(status.st_dev), os.minor(status.st_dev), status.st_ino) not in held:
                continue
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        if not lines:
            continue  # taken an instant ago: its note is being written
        notes = {prefix: line.removeprefix(prefix).strip() for line in lines[1:]
                 for prefix in (BASE_NOTE, LOG_NOTE) if line.startswith(prefix)}
        log = notes.get(LOG_NOTE)
        found.append(RunningBake(bake, lines[0].strip(), notes.get(BASE_NOTE), Path(log) if log else None))
    return found


def running_bases(locks_dir: Path, skip: set[str]) -> dict[str, str]:
    """image id -> the bake building on it now, from the lock files of bakes held by a live
    process on this machine (except the bakes in `skip`: the caller holds those itself)."""
    return {running.base: running.bake for running in running_bakes(locks_dir, skip) if running.base}


def _held_inodes() -> set[tuple[int, int, int]]:
    """(major, minor, inode) of every file a flock is held on now, from /proc/locks."""
    try:
        lines = Path("/proc/locks").read_text(encoding="ascii", errors="replace").splitlines()
    except OSError:
        return set()
    found = set()
    for line in lines:
        fields = line.split()
        if "FLOCK" not in fields or "->" in fields:  # a waiter is listed with "->": it holds nothing
            continue
        try:
            device = next(field for field in fields if field.count(":") == 2)
            major, minor, inode = device.split(":")
            found.add((int(major, 16), int(minor, 16), int(inode)))
        except (StopIteration, ValueError):
            continue
    return found
