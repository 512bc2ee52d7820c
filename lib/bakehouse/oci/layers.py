"""Layers: gzip tars, written once into a layout's blobs and named by their digests.

Two sources of a layer:
- a whole root filesystem, from the tar mmdebstrap wrote (a base image's one layer);
- an overlay mount's upper directory after a service bake: exactly what the bake changed,
  the kernel's own record of it, so nothing is scanned or compared. Its deletions are
  overlayfs whiteouts (a 0/0 character device, an opaque directory), written as the OCI
  spec's (`.wh.<name>`, `.wh..wh..opq`); a file's capabilities go with it;

And back: a layer unpacked into a directory in overlayfs's form, for the cache (cache.py).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..files import BLOCK
from .layout import MEDIA_LAYER, Blob, Layer, LayoutError, blob_path

# The one extended attribute a layer keeps, as Docker's and BuildKit's do: file capabilities
# (ping's cap_net_raw), which a package's maintainer script sets with setcap; without it such a
# program fails in the image for anyone but root. In a tar: a PAX record, GNU tar's and Go's.
CAPABILITY_XATTR = "security.capability"
PAX_XATTR = "SCHILY.xattr."
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
# Fast rather than small: level 1 gzips the minbase root (180 MB) in about 4 s, level 6 in 11 s,
# for a layer 10% larger (71 MB against 65 MB). gzip, not zstd, so every OCI reader can read it.
GZIP_LEVEL = 1


class _Digest:
    """A write-through file object that hashes what passes (tarfile and gzip only write)."""

    def __init__(self, sink: BinaryIO) -> None:
        self.sink, self.hash, self.size = sink, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.sink.write(data)

    def flush(self) -> None:
        self.sink.flush()

    @property
    def digest(self) -> str:
        return f"sha256:{self.hash.hexdigest()}"


class _Sink:
    """The layer being written: its bytes go through two digests and gzip into a temporary
    file in the layout's blobs, renamed to its digest when complete."""

    def __init__(self, layout: Path) -> None:
        self.layout = layout
        (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=layout / "blobs", suffix=".partial")
        self.path = Path(name)
        self._file = os.fdopen(handle, "wb")
        self._compressed = _Digest(self._file)  # type: ignore[arg-type]
        self._gzip = gzip.GzipFile(fileobj=self._compressed, mode="wb", compresslevel=GZIP_LEVEL, mtime=0)  # type: ignore[arg-type]
        self._plain = _Digest(self._gzip)  # type: ignore[arg-type]

    def write(self, data: bytes) -> int:
        return self._plain.write(data)

    def finish(self) -> Layer:
        self._gzip.close()
        self._file.close()
        blob = Blob(self._compressed.digest, self._compressed.size, MEDIA_LAYER)
        os.chmod(self.path, 0o644)  # mkstemp makes it private; a blob is for every reader
        os.replace(self.path, blob_path(self.layout, blob.digest))
        return Layer(blob, self._plain.digest)

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


@contextmanager
def _writing(layout: Path) -> Iterator[_Sink]:
    sink = _Sink(layout)
    try:
        yield sink
    finally:
        sink.discard()


def layer_from_tar(layout: Path, tar_path: Path) -> Layer:
    """mmdebstrap's tar (sorted names, numeric owners) as the layer, byte for byte."""
    with _writing(layout) as sink, tar_path.open("rb") as source:
        for block in iter(lambda: source.read(BLOCK), b""):
            sink.write(block)
        return sink.finish()


def layer_from_upper(layout: Path, upper: Path, clamp: int | None = None) -> Layer:
    """What an overlay's upper directory holds, in path order, its whiteouts as the OCI spec's;
    with `clamp` (SOURCE_DATE_EPOCH), no time in it is later than that, in whole seconds, so
    the same changes give the same layer, byte for byte, whenever they are made."""
    with _writing(layout) as sink:
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for name, path in overlay_changes(upper):
                _add(tar, name, path, clamp)
        return sink.finish()


def overlay_changes(upper: Path, prefix: str = "") -> Iterator[tuple[str, Path | None]]:
    """(name in the layer, file to archive or None for an empty whiteout file), sorted."""
    with os.scandir(upper) as entries:
        children = sorted(entries, key=lambda entry: entry.name)
    for entry in children:
        name = f"{prefix}{entry.name}"
        status = entry.stat(follow_symlinks=False)
        if stat.S_ISCHR(status.st_mode) and status.st_rdev == 0:
            yield f"{prefix}{WHITEOUT}{entry.name}", None
            continue
        yield name, Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            if _opaque(Path(entry.path)):
                yield f"{name}/{OPAQUE}", None
            yield from overlay_changes(Path(entry.path), f"{name}/")


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _add(tar: tarfile.TarFile, name: str, path: Path | None, clamp: int | None) -> None:
    if path is None:
        info = tarfile.TarInfo(name)
        info.mode, info.mtime = 0o644, 0
        tar.addfile(info)
        return
    info = tar.gettarinfo(str(path), arcname=name)
    if info is None:
        return  # a socket: nothing a layer can hold
    info.uname = info.gname = ""
    if clamp is not None:
        info.mtime = min(int(info.mtime), clamp)
    capability = _capability(path) if info.isreg() else None
    if capability is not None:  # binary: tarfile writes it byte for byte (hdrcharset=BINARY)
        info.pax_headers = {PAX_XATTR + CAPABILITY_XATTR: capability.decode("utf-8", "surrogateescape")}
    if info.isreg():
        with path.open("rb") as content:
            tar.addfile(info, content)
    else:
        tar.addfile(info)


def _capability(path: Path) -> bytes | None:
    try:
        return os.getxattr(path, CAPABILITY_XATTR, follow_symlinks=False)
    except OSError:
        return None  # none set (or a filesystem without xattrs)


def unpack_layer(blob: Path, into: Path, compressed: bool = True) -> None:
    """A layer's tar (gzip, or plain) in `into`, its OCI whiteouts as overlayfs's (a 0/0
    character device for a removed path, an xattr on an opaque directory), so the directory
    can be a lower layer."""
    into.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["tar", "-xzf" if compressed else "-xf", str(blob), "--numeric-owner", "--same-permissions",
         "--xattrs", f"--xattrs-include={CAPABILITY_XATTR}", "-C", str(into)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise LayoutError(f"{blob}: cannot unpack the layer: {result.stderr.strip().splitlines()[-1:]}")
    for directory, dirs, files in os.walk(into):
        for name in [n for n in [*files, *dirs] if n.startswith(WHITEOUT)]:
            marker = Path(directory, name)
            marker.unlink()
            if name == OPAQUE:
                os.setxattr(directory, OPAQUE_XATTR, b"y")
            else:
                os.mknod(Path(directory, name[len(WHITEOUT):]), stat.S_IFCHR | 0o000, os.makedev(0, 0))
