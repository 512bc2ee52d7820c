"""Files written whole or not at all, sha256 digests, and removal: one home for each.

A reader (another bake, a second CI runner, a crash's aftermath) must never see half a file
or half a tree:
everything bakehouse keeps is written beside its target under a hidden temporary name and
renamed over it, which POSIX makes atomic within one file system. A failed or interrupted
write leaves the old file, or none, and no temporary file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BLOCK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """The file's sha256, read in blocks (a .deb or an image can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def replacing(target: Path, durable: bool = False) -> Iterator[Path]:
    """A fresh temporary path beside `target` (unique: two writers never share one) for the
    block to write; renamed over `target` when the block succeeds, removed when it fails.
    `durable` syncs the file first, so a power loss cannot leave an empty record behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(handle)
    partial = Path(name)
    try:
        yield partial
        if durable:
            with partial.open("rb") as written:
                os.fsync(written.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


REMOVING = ".removing-"


def remove_path(path: Path) -> None:
    """`path` gone, whether a file, a directory tree or nothing. A tree is renamed away first
    (to a hidden name with `.removing-` in it), so an interrupted removal never leaves half a
    tree under its real name for a reader to take as whole; sweeps remove such leftovers."""
    if path.is_dir() and not path.is_symlink():
        away = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}{REMOVING}"))
        os.replace(path, away)  # over the empty directory just made: one atomic rename
        shutil.rmtree(away)
    else:
        path.unlink(missing_ok=True)


def write_atomically(target: Path, data: bytes | str, durable: bool = False) -> None:
    """`target` holds `data` (text as UTF-8), or is as it was."""
    with replacing(target, durable) as partial:
        partial.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
