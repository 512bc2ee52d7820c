"""The files of an OCI image as a container sees them: its layers applied in order, bottom
first, each layer's whiteouts (`.wh.NAME` removes NAME below it, `.wh..wh..opq` empties its
folder of what lower layers put there) taken as the image spec says. For `doit images --files`."""

from __future__ import annotations

import posixpath
import stat
import tarfile
from datetime import datetime, timezone

from .layout import OciImage

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


def image_files(image: OciImage) -> dict[str, tarfile.TarInfo]:
    """Path (without a leading `./` or `/`) -> its tar header, of the image's final tree."""
    files: dict[str, tarfile.TarInfo] = {}
    for layer in image.layers:
        added: dict[str, tarfile.TarInfo] = {}
        with tarfile.open(image.blob(layer.blob.digest), "r:*") as tar:
            for info in tar:
                path = _path(info.name)
                folder, name = posixpath.split(path)
                if name == OPAQUE:
                    _remove_below(files, folder, keep_folder=True)
                elif name.startswith(WHITEOUT):
                    _remove_below(files, posixpath.join(folder, name[len(WHITEOUT):]), keep_folder=False)
                elif path != ".":
                    added[path] = info
        files.update(added)
    return files


def _path(name: str) -> str:
    """A tar member's path as the image's: `./etc/x`, `etc/x` and `/etc/x` are `etc/x`; `.` is the root."""
    return posixpath.normpath(name.removeprefix("./") or ".").lstrip("/") or "."


def _remove_below(files: dict[str, tarfile.TarInfo], path: str, keep_folder: bool) -> None:
    for known in [known for known in files if known == path or known.startswith(path + "/")]:
        if not (keep_folder and known == path):
            del files[known]


def listing(files: dict[str, tarfile.TarInfo], under: str = "/") -> list[str]:
    """`ls -l`-like lines of the files at or under `under`, in path order."""
    top = posixpath.normpath("/" + under).lstrip("/")
    shown = sorted(path for path in files if not top or path == top or path.startswith(top + "/"))
    lines = []
    for path in shown:
        info = files[path]
        when = datetime.fromtimestamp(info.mtime, timezone.utc).strftime("%Y-%m-%d %H:%M")
        link = f" -> {info.linkname}" if info.issym() else f" link to /{_path(info.linkname)}" if info.islnk() else ""
        lines.append(f"{stat.filemode(info.mode | _kind(info))} {info.uid:>5} {info.gid:>5} {info.size:>10} "
                     f"{when} /{path}{link}")
    return lines


def _kind(info: tarfile.TarInfo) -> int:
    """The file-type bits stat.filemode wants (tar headers keep them apart from the mode)."""
    return {tarfile.DIRTYPE: stat.S_IFDIR, tarfile.SYMTYPE: stat.S_IFLNK, tarfile.CHRTYPE: stat.S_IFCHR,
            tarfile.BLKTYPE: stat.S_IFBLK, tarfile.FIFOTYPE: stat.S_IFIFO}.get(info.type, stat.S_IFREG)
