"""Unpacked layers, each once, as the lower directories of service bakes' overlay mounts.

    .bakehouse/cache/layers/<hex>/     one layer's files, in overlayfs's form (layers.py),
                                       named by the layer's diff id (its uncompressed digest)
    .bakehouse/cache/layers/.<hex>.complete
                                       written last, once the tree is in place: how many
                                       entries the whole tree holds
    .bakehouse/cache/layers/.in-use    held shared (flock) by every bake mounting from here,
                                       exclusively by a clean-up, so none removes a layer
                                       under a mount

A layer is unpacked once, into a temporary name renamed into place (two bakes that need it at
once: one unpacks, the other waits for it), and never changed after. A tree counts only when
its marker says it is complete and it still holds as many entries as the marker says (a walk
of a base's 10,000 entries takes about 20 ms): a tree that an interrupted `rm -rf` or a
half-done clean-up left, or one without its marker, is moved away and unpacked again, never
mounted (mounted, it would pass for the base and record an image without the base's files).
A clean-up removes the marker first, then renames the tree away before deleting it, so no
half-removed tree ever has a layer's name. A service bake whose base
layers are here mounts them and writes only its own layer. A base bake leaves its own layer
here, unpacked from the tar it was made from; a service bake whose base's layers are missing
(the cache was cleaned, or the base was baked elsewhere) unpacks them first. The cache is only a cache: deleting any of it costs time, never
an image (every image's layout holds all its layers).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..files import remove_path, write_atomically
from .layers import unpack_layer
from .layout import Layer, OciImage

IN_USE = ".in-use"
COMPLETE = ".complete"


class LayerCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def lower_dirs(self, image: OciImage) -> list[str]:
        """The names (in `root`) of `image`'s layers unpacked, top layer first, as overlayfs's
        lowerdir lists them; unpacks any not here yet."""
        return [self._unpacked(layer.diff_id, lambda into, digest=layer.blob.digest: unpack_layer(image.blob(digest), into))
                for layer in reversed(image.layers)]

    def keep_base_tree(self, layer: Layer, tar: Path) -> None:
        """A base bake's layer unpacked from the uncompressed tar it was made from, so the
        first service bake on it finds the cache warm (a quicker unpack than the gzip layer's)."""
        self._unpacked(layer.diff_id, lambda into: unpack_layer(tar, into, compressed=False))

    def _unpacked(self, diff_id: str, unpack: Callable[[Path], None]) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        name = diff_id.removeprefix("sha256:")
        if self._complete(name):
            return name
        with _locked(self.root / f".{name}.lock", fcntl.LOCK_EX):
            if not self._complete(name):  # else: unpacked by the bake we waited for
                self._remove(name)  # what is there is damaged or half-made: never mounted
                scratch = self.root / f".{name}.partial-{os.getpid()}"
                remove_path(scratch)
                try:
                    unpack(scratch)
                    entries = _entries(scratch)
                    os.rename(scratch, self.root / name)
                finally:
                    remove_path(scratch)
                write_atomically(self._marker(name), json.dumps({"entries": entries}) + "\n")
        (self.root / f".{name}.lock").unlink(missing_ok=True)
        return name

    def _marker(self, name: str) -> Path:
        return self.root / f".{name}{COMPLETE}"

    def _complete(self, name: str) -> bool:
        """The tree is whole: its marker was written, and it holds what the marker counted."""
        try:
            expected = json.loads(self._marker(name).read_text(encoding="utf-8"))["entries"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        tree = self.root / name
        return tree.is_dir() and not tree.is_symlink() and _entries(tree) == expected

    def _remove(self, name: str) -> None:
        """The marker first (the tree no longer counts), then the tree, renamed away first."""
        self._marker(name).unlink(missing_ok=True)
        remove_path(self.root / name)

    def clean(self, keep: set[str]) -> list[str] | None:
        """Remove the unpacked layers whose diff ids are not in `keep`, and what interrupted
        unpacks and removals left; None (nothing removed) while a bake is mounting from the cache."""
        if not self.root.is_dir():
            return []
        try:
            with _locked(self.root / IN_USE, fcntl.LOCK_EX | fcntl.LOCK_NB):
                removed = []
                for path in sorted(self.root.iterdir()):
                    if path.name.startswith("."):
                        leftover = ".partial-" in path.name or ".removing-" in path.name
                        orphan = path.name.endswith(COMPLETE) and not (self.root / path.name[1:-len(COMPLETE)]).is_dir()
                        if leftover or orphan:
                            remove_path(path)
                            removed.append(path.name)
                    elif path.is_dir() and f"sha256:{path.name}" not in keep:
                        self._remove(path.name)
                        removed.append(path.name)
                return removed
        except BlockingIOError:
            return None


def _entries(tree: Path) -> int:
    """How many files, directories and other entries the tree holds, itself left out."""
    return sum(len(dirs) + len(files) for _, dirs, files in os.walk(tree))


@contextmanager
def _locked(path: Path, operation: int) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)
