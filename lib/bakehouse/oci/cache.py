"""Unpacked layers, each once, as the lower directories of service bakes' overlay mounts.

    .bakehouse/cache/layers/<hex>/     one layer's files, in overlayfs's form (layers.py),
                                       named by the layer's diff id (its uncompressed digest)
    .bakehouse/cache/layers/.in-use    held shared (flock) by every bake mounting from here,
                                       exclusively by a clean-up, so none removes a layer
                                       under a mount

A layer is unpacked once, into a temporary name renamed into place (two bakes that need it at
once: one unpacks, the other waits for it), and never changed after. A service bake whose base
layers are here mounts them and writes only its own layer. A base bake leaves its own layer
here, unpacked from the tar it was made from; a service bake whose base's layers are missing
(the cache was cleaned, or the base was baked elsewhere) unpacks them first. The cache is only a cache: deleting any of it costs time, never
an image (every image's layout holds all its layers).
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .layers import unpack_layer
from .layout import Layer, OciImage

IN_USE = ".in-use"


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
        target = self.root / name
        if target.is_dir():
            return name
        with _locked(self.root / f".{name}.lock", fcntl.LOCK_EX):
            if target.is_dir():  # unpacked by the bake we waited for
                return name
            scratch = self.root / f".{name}.partial-{os.getpid()}"
            shutil.rmtree(scratch, ignore_errors=True)
            try:
                unpack(scratch)
                os.rename(scratch, target)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        (self.root / f".{name}.lock").unlink(missing_ok=True)
        return name

    def clean(self, keep: set[str]) -> list[str] | None:
        """Remove the unpacked layers whose diff ids are not in `keep`, and what interrupted
        unpacks left; None (nothing removed) while a bake is mounting from the cache."""
        if not self.root.is_dir():
            return []
        try:
            with _locked(self.root / IN_USE, fcntl.LOCK_EX | fcntl.LOCK_NB):
                removed = []
                for path in sorted(self.root.iterdir()):
                    stale = path.name.startswith(".") and ".partial-" in path.name
                    unused = path.is_dir() and not path.name.startswith(".") and f"sha256:{path.name}" not in keep
                    if stale or unused:
                        shutil.rmtree(path, ignore_errors=True)
                        removed.append(path.name)
                return removed
        except BlockingIOError:
            return None


@contextmanager
def _locked(path: Path, operation: int) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)
