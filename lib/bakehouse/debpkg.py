"""Debian packages whose source lives in the repository (packages/<name>/) and .deb files.

`packages/<name>/` holds a package tree with `DEBIAN/control`; `doit package:<name>` builds it
into `dist/<name>_<version>_<arch>.deb`. The build is reproducible (fixed timestamps, owners
and modes), and such a package is identified by a hash of its source tree, so the bake graph
knows the version and identity of a package before it is built, and a fresh clone that
rebuilds it decides exactly like the machine that built it first.

Symbolic links in a package tree are packed as links (what they point to is resolved in the
image, never on this machine): a link to a host file is not a copy of that file, and a
dangling one is fine. File names are bytes, as dpkg sees them; control files are UTF-8, as
Debian policy says, and anything else is one line naming the file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from debian.deb822 import Deb822
from debian.debfile import DebFile

from .errors import PackageError
from .files import replacing, sha256_file
from .project import Project

# Timestamps inside built .debs are clamped to this (2000-01-01), so bytes depend on content only.
SOURCE_DATE_EPOCH = "946684800"


@dataclass(frozen=True)
class SourcePackage:
    """A Debian package built from packages/<dir>/ by `doit package:<name>`."""

    name: str
    version: str
    architecture: str
    source_dir: Path
    output: Path
    tree_sha256: str
    kind: str = "deb"  # or "rpm": packages/<name>/<name>.spec (rpmpkg.py)

    @property
    def files(self) -> list[Path]:
        """The regular files of the tree (links are covered by `tree_sha256`)."""
        return sorted(p for p in self.source_dir.rglob("*") if p.is_file() and not p.is_symlink())


def find_source_packages(project: Project) -> tuple[SourcePackage, ...]:
    """The .deb packages built here: packages/<dir>/DEBIAN/control (RPM specs: rpmpkg.py)."""
    if not project.packages_dir.is_dir():
        return ()
    controls = sorted(project.packages_dir.glob("*/DEBIAN/control"))
    return tuple(_source_package(project, control.parent.parent) for control in controls)


def _source_package(project: Project, source_dir: Path) -> SourcePackage:
    control_path = source_dir / "DEBIAN" / "control"
    try:
        with control_path.open(encoding="utf-8") as handle:
            control = Deb822(handle)
    except UnicodeDecodeError as error:
        raise PackageError(
            f"{project.relative(control_path)}: not UTF-8 (byte {error.start}); Debian control files "
            "must be UTF-8: convert it, e.g. with iconv -f latin1 -t utf-8"
        ) from None
    missing = [field for field in ("Package", "Version", "Architecture") if not control.get(field)]
    if missing:
        raise PackageError(f"{project.relative(control_path)}: missing field {', '.join(missing)}")
    name, version, arch = control["Package"], control["Version"], control["Architecture"]
    return SourcePackage(
        name=name,
        version=version,
        architecture=arch,
        source_dir=source_dir,
        output=project.dist_dir / f"{name}_{_no_epoch(version)}_{arch}.deb",
        tree_sha256=tree_sha256(source_dir),
    )


def tree_sha256(directory: Path) -> str:
    """Hash of what dpkg-deb packs: relative paths, the executable bit and file contents."""
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        name = os.fsencode(path.relative_to(directory))
        if path.is_symlink():
            digest.update(b"link:" + name + b"\0" + os.fsencode(os.readlink(path)) + b"\0")
        elif path.is_file():
            digest.update(name + b"\0")
            digest.update(b"x" if os.access(path, os.X_OK) else b"-")
            digest.update(bytes.fromhex(sha256_file(path)))
    return digest.hexdigest()


def build_deb(package: SourcePackage) -> Path:
    """Build `package.output` reproducibly and remove older builds of the same package."""
    package.output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bakehouse-deb-") as staging:
        tree = Path(staging) / "tree"
        shutil.copytree(package.source_dir, tree, symlinks=True)
        _normalise_modes(tree)
        with replacing(package.output) as partial:  # unique: two runs at once never share one
            result = subprocess.run(
                ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(tree), str(partial)],
                env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH},
                capture_output=True, text=True,
            )
            if result.returncode != 0:
                raise PackageError(f"dpkg-deb could not build {package.name}: {result.stderr.strip()}")
    for stale in package.output.parent.glob(f"{package.name}_*.deb"):
        if stale != package.output:
            stale.unlink()
    return package.output


def _normalise_modes(tree: Path) -> None:
    """Modes from a checkout depend on the umask; pack 0755/0644 by the executable bit."""
    for path in [tree, *tree.rglob("*")]:
        if path.is_symlink():
            continue  # a link has no mode of its own; chmod would follow it
        executable = path.is_dir() or os.access(path, os.X_OK)
        path.chmod(0o755 if executable else 0o644)


@dataclass(frozen=True)
class DebInfo:
    name: str
    version: str


def read_deb(path: Path, shown_as: str) -> DebInfo:
    """Name and version from a .deb's control data (never from its file name); read once per
    file and content, since every bake whose glob matches the file asks."""
    stat = path.stat()
    return _read_deb(path, stat.st_size, stat.st_mtime_ns, shown_as)


@lru_cache(maxsize=4096)
def _read_deb(path: Path, size: int, mtime_ns: int, shown_as: str) -> DebInfo:
    try:
        control = DebFile(str(path)).debcontrol()
        return DebInfo(name=control["Package"], version=control["Version"])
    except Exception as error:  # python-debian raises many types for a damaged archive
        raise PackageError(f"{shown_as}: not a readable .deb ({type(error).__name__}: {error})") from None


def _no_epoch(version: str) -> str:
    return version.split(":", 1)[1] if ":" in version else version
