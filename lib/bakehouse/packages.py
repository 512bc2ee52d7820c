"""Resolve a bake's package specs to exact names and versions before anything is baked.

A spec is one of:
- `name`            installed at whatever version the image's apt sources offer at bake time;
- `name=version`    pinned;
- a path or glob    local .deb artifacts (`dist/*.deb`): name and version are read from each
                    file's control data, the newest per package wins (Debian version order).
Packages built from packages/<name>/ count as artifacts already, before they are built.
Packages named in a `[[repository]]` resolve to their newest version in its index (aptrepo.py;
rpmrepo.py for `type = "rpm"`). Names and versions follow the rules of the image's own package
format: Debian's (debpolicy.py) or RPM's (rpmpolicy.py).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from debian.debian_support import Version

from . import debpolicy, rpmpolicy
from .aptrepo import AptIndexes, IndexedPackage, Repository, cached_path
from .debpkg import SourcePackage, read_deb
from .debpolicy import check_name, check_version
from .errors import PackageError
from .files import sha256_file
from .pins import PackagePin, check_pin_source
from .project import Project
from .rpmrepo import RpmIndexes, RpmRepository, matches
from .rpmversion import Evr

AnyRepository = Repository | RpmRepository

GLOB_CHARS = set("*?[/")


@dataclass(frozen=True)
class ResolvedPackage:
    """One package that goes into an image, with where it comes from."""

    name: str
    version: str | None
    origin: str  # "pinned" | "unpinned" | "artifact" | "source" | "repository" | "locked"
    path: Path | None = None
    sha256: str | None = None
    url: str | None = None  # where a repository package is downloaded from at bake time
    # an RPM repository's gpgkey: the downloaded package's own signature is checked with it
    signed_by: Path | None = field(default=None, compare=False)

    @property
    def spec(self) -> str:
        """`name=version` (or the bare name when apt chooses the version)."""
        return self.name if self.version is None else f"{self.name}={self.version}"

    @property
    def identity(self) -> dict[str, str | None]:
        """What enters the content key for this package."""
        return {"version": self.version, "sha256": self.sha256}


def is_artifact_spec(spec: str) -> bool:
    return spec.endswith((".deb", ".rpm")) or bool(GLOB_CHARS & set(spec))


def resolve_packages(
    project: Project,
    where: str,
    specs: tuple[str, ...],
    source_packages: tuple[SourcePackage, ...],
    repositories: tuple[AnyRepository, ...] = (),
    indexes: RepositoryIndexes | None = None,
    architecture: str = "amd64",
    locked: dict[str, PackagePin] | None = None,
    package_format: str = "deb",
) -> tuple[ResolvedPackage, ...]:
    """Every package of one bake, sorted by name; `where` names the bake file in errors. A
    repository package `locked` names (bakehouse.lock, pins.py) is taken as pinned there,
    without reading the repository's index: "locked", with its version, SHA256 and URL."""
    policy = policy_of(package_format)
    found: list[ResolvedPackage] = []
    for spec in specs:
        if is_artifact_spec(spec):
            found.extend(_resolve_artifacts(project, where, spec, source_packages))
        else:
            found.append(_resolve_named(where, spec, policy))
    for repository in repositories:
        repository_policy = policy_of("rpm" if isinstance(repository, RpmRepository) else "deb")
        for spec in repository.packages:
            pin = _pin_for(where, spec, locked or {}, repository_policy)
            signed_by = repository.gpgkey if isinstance(repository, RpmRepository) else None
            if pin is not None:
                check_pin_source(where, spec.partition("=")[0], pin, repository)
                name = spec.partition("=")[0]
                path = cached_path(project.state_dir / "cache" / "debs", pin.url, pin.sha256)
                found.append(ResolvedPackage(name, pin.version, "locked", path, pin.sha256, pin.url, signed_by))
                continue
            found.append(_resolve_from_repository(project, where, repository, spec, indexes or RepositoryIndexes(),
                                                  architecture, repository_policy))
    resolved: dict[str, ResolvedPackage] = {}
    for package in found:
        if package.name in resolved:
            raise PackageError(f"{where}: packages: '{package.name}' is named more than once")
        resolved[package.name] = package
    return tuple(resolved[name] for name in sorted(resolved))


class RepositoryIndexes:
    """The indexes of every repository one run reads, of either kind, each read once."""

    def __init__(self, apt: AptIndexes | None = None, rpm: RpmIndexes | None = None) -> None:
        self.apt = apt or AptIndexes()
        self.rpm = rpm or RpmIndexes()

    def newest(self, repository: AnyRepository, architecture: str, name: str, version: str | None,
               where: str) -> IndexedPackage:
        if isinstance(repository, RpmRepository):
            return self.rpm.newest(repository, architecture, name, version, where)
        return self.apt.newest(repository, architecture, name, version, where)


def policy_of(package_format: str) -> ModuleType:
    """The naming rules of a package format: debpolicy or rpmpolicy (check_name, check_version)."""
    return rpmpolicy if package_format == "rpm" else debpolicy


def _pin_for(where: str, spec: str, locked: dict[str, PackagePin], policy: ModuleType) -> PackagePin | None:
    """The lock file's pin of a repository package spec, if it has one that fits the spec."""
    wanted = _resolve_named(where, spec, policy)
    pin = locked.get(wanted.name)
    if pin is None or wanted.version is None:
        return pin
    # RPM's `name=1.0` asks for any release (and epoch) of 1.0, as dnf's `name-1.0` does
    fits = matches(Evr.parse(pin.version), wanted.version) if policy is rpmpolicy else wanted.version == pin.version
    return pin if fits else None  # a spec that asks for another version than the lock: the spec wins


def _resolve_from_repository(
    project: Project, where: str, repository: AnyRepository, spec: str, indexes: RepositoryIndexes,
    architecture: str, policy: ModuleType,
) -> ResolvedPackage:
    wanted = _resolve_named(where, spec, policy)
    indexed = indexes.newest(repository, architecture, wanted.name, wanted.version, where)
    policy.check_version(where, indexed.name, indexed.version)
    path = cached_path(project.state_dir / "cache" / "debs", indexed.url, indexed.sha256)
    signed_by = repository.gpgkey if isinstance(repository, RpmRepository) else None
    return ResolvedPackage(indexed.name, indexed.version, "repository", path, indexed.sha256, indexed.url, signed_by)


def _resolve_named(where: str, spec: str, policy: ModuleType = debpolicy) -> ResolvedPackage:
    name, _, version = spec.partition("=")
    policy.check_name(where, name)
    if not version:
        return ResolvedPackage(name=name, version=None, origin="unpinned")
    policy.check_version(where, name, version)
    return ResolvedPackage(name=name, version=version, origin="pinned")


def _resolve_artifacts(
    project: Project, where: str, pattern: str, source_packages: tuple[SourcePackage, ...]
) -> list[ResolvedPackage]:
    if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
        raise PackageError(
            f"{where}: packages: '{pattern}' is outside the repository; name .deb files by a path "
            "relative to it (e.g. dist/*.deb), so every clone bakes the same files"
        )
    built_here = [sp for sp in source_packages if fnmatch.fnmatch(project.relative(sp.output), pattern)]
    names_built_here = {sp.name for sp in source_packages}
    candidates = [
        ResolvedPackage(sp.name, sp.version, "source", sp.output, sp.tree_sha256) for sp in built_here
    ]
    for path in sorted(project.root.glob(pattern)):
        if not path.is_file():
            continue
        if path.suffix == ".rpm":
            if any(path.name.startswith(f"{name}-") for name in names_built_here):
                continue  # an older or newer build of an RPM built here: its spec is the truth
            raise PackageError(f"{where}: packages: {project.relative(path)} is an RPM not built here; bakehouse "
                               "takes RPMs built from packages/<name>/<name>.spec")
        info = read_deb(path, project.relative(path))
        if info.name in names_built_here:
            continue  # packages/<name>/ is the truth for that name; older builds are stale
        check_name(project.relative(path), info.name)
        check_version(project.relative(path), info.name, info.version)
        candidates.append(ResolvedPackage(info.name, info.version, "artifact", path, sha256_file(path)))
    if not candidates:
        raise PackageError(f"{where}: packages: '{pattern}' matches no .deb file (build or copy it there first)")
    newest: dict[str, ResolvedPackage] = {}
    for candidate in candidates:
        current = newest.get(candidate.name)
        if current is None or _newer(candidate, current):
            newest[candidate.name] = candidate
    return list(newest.values())




def _newer(candidate: ResolvedPackage, current: ResolvedPackage) -> bool:
    """In the package's own version order: RPM's for an .rpm, Debian's otherwise."""
    if candidate.path is not None and candidate.path.suffix == ".rpm":
        return Evr.parse(str(candidate.version)) > Evr.parse(str(current.version))
    return Version(candidate.version) > Version(current.version)


def with_versions(where: str, specs: tuple[str, ...], versions: dict[str, str]) -> tuple[str, ...]:
    """`specs` with each unpinned name that `versions` names pinned at that version (a bake
    service request for one version: `doit serve`); a spec pinned otherwise is an error."""
    changed = []
    for spec in specs:
        name, _, pinned = spec.partition("=")
        wanted = None if is_artifact_spec(spec) else versions.get(name)
        if wanted is None or pinned == wanted:
            changed.append(spec)
            continue
        if pinned:
            raise PackageError(f"{where}: pins {name}={pinned}, not the {wanted} asked for")
        check_version(where, name, wanted)
        changed.append(f"{name}={wanted}")
    return tuple(changed)
