"""RPM packages whose source lives in the repository: `packages/<name>/<name>.spec`, beside the
files it installs, built by `doit package:<name>` with rpmbuild into
`dist/<name>-<version>-<release>.<arch>.rpm`.

As with a .deb built here, the package is identified by a hash of its source folder, not of
the built file: rpmbuild's output differs from run to run even with SOURCE_DATE_EPOCH (checked),
and the plan must know a bump before anything is built. Name, epoch, version, release and
architecture are read from the spec by `rpmspec` (Debian's rpm package), which expands its
macros as rpmbuild will.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .debpkg import SOURCE_DATE_EPOCH, SourcePackage, tree_sha256
from .errors import PackageError
from .files import replacing
from .project import Project

QUERY = "%{NAME}\t%{EPOCHNUM}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\n"


def find_rpm_sources(project: Project) -> tuple[SourcePackage, ...]:
    """Every packages/<dir>/<dir>.spec, as a package to build here."""
    if not project.packages_dir.is_dir():
        return ()
    specs = sorted(spec for spec in project.packages_dir.glob("*/*.spec") if spec.stem == spec.parent.name)
    return tuple(_rpm_source(project, spec) for spec in specs)


def _rpm_source(project: Project, spec: Path) -> SourcePackage:
    shown = project.relative(spec)
    if shutil.which("rpmspec") is None:
        raise PackageError(f"{shown}: building an RPM needs rpmspec and rpmbuild (Debian: apt-get install rpm)")
    result = subprocess.run(["rpmspec", "-q", "--qf", QUERY, str(spec)], capture_output=True, text=True)
    if result.returncode != 0 or not result.stdout.strip():
        said = (result.stderr.strip().splitlines() or ["no package in it"])[-1]
        raise PackageError(f"{shown}: rpmspec cannot read it: {said}")
    name, epoch, version, release, arch = result.stdout.splitlines()[0].split("\t")
    evr = f"{epoch}:{version}-{release}" if epoch not in ("", "0") else f"{version}-{release}"
    return SourcePackage(
        name=name,
        version=evr,
        architecture=arch,
        source_dir=spec.parent,
        output=project.dist_dir / f"{name}-{version}-{release}.{arch}.rpm",
        tree_sha256=tree_sha256(spec.parent),
        kind="rpm",
    )


def build_rpm(package: SourcePackage) -> Path:
    """rpmbuild the package's spec (its folder is the sources folder) into `package.output`,
    and remove older builds of the same package from dist/."""
    spec = package.source_dir / f"{package.source_dir.name}.spec"
    package.output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bakehouse-rpm-") as top:
        result = subprocess.run(
            ["rpmbuild", "-bb", "--define", f"_topdir {top}", "--define", f"_sourcedir {package.source_dir}",
             "--define", "use_source_date_epoch_as_buildtime 1", "--define", "clamp_mtime_to_source_date_epoch 1",
             str(spec)],
            env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}, capture_output=True, text=True,
        )
        built = Path(top) / "RPMS" / package.architecture / package.output.name
        if result.returncode != 0 or not built.is_file():
            said = (result.stderr.strip().splitlines() or [f"no {package.output.name} was made"])[-1]
            raise PackageError(f"rpmbuild could not build {package.name}: {said}")
        with replacing(package.output) as partial:
            shutil.copyfile(built, partial)
    for stale in package.output.parent.glob(f"{package.name}-*.rpm"):
        if stale != package.output and stale.name.removeprefix(package.name + "-")[:1].isdigit():
            stale.unlink()
    return package.output
