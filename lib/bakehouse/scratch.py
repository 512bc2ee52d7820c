"""The scratch space of one packer run, and its removal however the run ends.

Each packer run gets a folder of its own, `bakehouse-<repository hash>.<bake>.<token>` under
the machine's temporary directory: its scripts' scratch (env BAKEHOUSE_RUN_DIR; mmdebstrap makes
its scratch root there), and the name a service bake gives its work folder where it keeps it
(`BAKEHOUSE_SCRATCH`, else /dev/shm; env BAKEHOUSE_RUN). When packer ends, however it ends,
the run's folders are removed (`clear`); a cancelled or killed step may have left mounts in
them (mmdebstrap's /proc, /sys, /dev/pts and the host's /dev/shm, a service's overlay and the
resolver bound into it), so everything mounted there is unmounted first, deepest first, and
lazily when busy. A folder is removed only once nothing is mounted in it any more: a tree
still holding a bind of the host's /dev/shm is never walked.

A run killed outright (SIGKILL) cannot clear anything: the next bake of that bake, holding
its lock, removes what runs of it left (`sweep`). The repository's hash in the name keeps two
repositories' bakes of the same name apart.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import BakehouseError

# packer's plugins listen on unix sockets in packer's TMPDIR (`packer-plugin<10 digits>`), whose
# path may be 107 bytes at most: packer's TMPDIR is the run's folder when its path leaves room,
# else a folder of the same name in /tmp, else left as it is.
SOCKET_ROOM = 80
SHORT_ROOT = Path("/tmp")
RUN_VARIABLE = "BAKEHOUSE_RUN"  # the run's folder name, for a script that works elsewhere
RUN_DIR_VARIABLE = "BAKEHOUSE_RUN_DIR"  # the run's folder: its scripts' TMPDIR


@dataclass(frozen=True)
class Cleared:
    path: Path
    unmounted: int


def temporary_root() -> Path:
    return Path(os.environ.get("TMPDIR") or tempfile.gettempdir())


def work_places() -> list[Path]:
    """Where a service bake may keep its work folder under the run's name (local-service.sh)."""
    chosen = os.environ.get("BAKEHOUSE_SCRATCH")
    return [Path(chosen)] if chosen else [Path("/dev/shm")]


def new_run(root: Path, bake: str) -> Path:
    """A fresh folder name for one packer run of `bake` (not made yet)."""
    return temporary_root() / f"{_prefix(root, bake)}{secrets.token_hex(4)}"


def packer_tmp(run: Path) -> Path | None:
    """Where packer's own temporary files go for this run: a path short enough for its sockets."""
    return next((path for path in (run, SHORT_ROOT / run.name) if len(str(path)) <= SOCKET_ROOM), None)


def clear(run: Path) -> list[Cleared]:
    """Remove the run's folder and its work folders elsewhere; what was there, and how many
    mounts each held. CannotClear if something stays mounted (then nothing there is removed)."""
    found = []
    for path in dict.fromkeys([run, SHORT_ROOT / run.name, *(place / run.name for place in work_places())]):
        if path.exists() or path.is_symlink():
            found.append(Cleared(path, remove_tree(path)))
    return found


def sweep(root: Path, bake: str) -> list[Cleared]:
    """What runs of `bake` in this repository left (killed before they could clear it): its
    caller holds the bake's lock, so no run of it is using any of these."""
    prefix = _prefix(root, bake)
    found = []
    for place in {temporary_root(), SHORT_ROOT, *work_places()}:
        try:
            leftovers = sorted(entry for entry in place.iterdir() if entry.name.startswith(prefix))
        except OSError:
            continue
        found += [Cleared(path, remove_tree(path)) for path in leftovers]
    return found


class CannotClear(BakehouseError):
    """Something stays mounted under a scratch folder; it was left in place."""


def remove_tree(path: Path) -> int:
    """Unmount everything under `path` (deepest first; lazily when busy), then remove it.
    Returns how many mounts there were; CannotClear if any is still there."""
    mounted = mounts_under(path)
    for point in sorted(mounted, key=lambda p: len(p.parts), reverse=True):
        if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(point)], capture_output=True)
    left = mounts_under(path)
    if left:
        raise CannotClear(f"{path}: {', '.join(map(str, left))} is still mounted (unmount it as root); left in place")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    return len(mounted)


def mounts_under(path: Path) -> list[Path]:
    """The mount points at or under `path`, as this process's mount table lists them."""
    try:
        table = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    top = os.path.abspath(path)
    found = []
    for line in table.splitlines():
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        point = _unescape(fields[4])
        if point == top or point.startswith(top + "/"):
            found.append(Path(point))
    return found


def _unescape(field: str) -> str:
    """The kernel writes a space, tab, newline and backslash in a path as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match[1], 8)), field)


def _prefix(root: Path, bake: str) -> str:
    repository = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]
    return f"bakehouse-{repository}.{bake}."
