"""`rebuild_when = "updates"`: rebake an image when its package sources offer newer versions
of packages it has installed.

An image's sources are the apt sources it was made from: a local base's mirror, every
`[[repository]]` of the bake and of what it builds on, and the sources an AMI's own apt names
(listed over SSH at the end of its bake). Each run reads each source's Release once (its
signature checked, aptrepo.py) and, only when the Release names a Packages index bakehouse
has not read before (by its SHA256: the index's own validator), that index; what it learns
of an index is cached under .bakehouse/cache/indexes/ by that SHA256.

A package is an update when a source offers a version newer (Debian order) than the image's,
and that source's Release changed since the image was baked: the image's manifest keeps the
Release each source had then (`sources_seen`), so a version the bake already saw and did not
take (a pin, a hold) is not asked for again and again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from debian.debian_support import Version

from .aptrepo import AptIndexes, Fetch, Repository, fetch_url, release_checksums
from .contents import Manifest
from .errors import PackageError
from .files import sha256_bytes, write_atomically


@dataclass(frozen=True)
class Offered:
    version: str
    source: str  # the source's label (aptrepo.Repository.label)


@dataclass(frozen=True)
class SourcesState:
    """What the sources offer now: the newest version of each package, and each source's
    Release (by SHA256), to compare with what an image's bake saw."""

    newest: dict[str, Offered]
    releases: dict[str, str]  # source label -> sha256 of its Release


class UpdateIndexes:
    def __init__(self, cache_dir: Path, fetch: Fetch = fetch_url) -> None:
        self.cache_dir = cache_dir
        self.apt = AptIndexes(fetch)  # its Release reading and signature checks
        self._states: dict[tuple[tuple[Repository, ...], str], SourcesState] = {}

    def state(self, sources: tuple[Repository, ...], architecture: str) -> SourcesState:
        """Read once per run for each set of sources."""
        wanted = (tuple(sorted(set(sources), key=lambda source: source.label)), architecture)
        if wanted not in self._states:
            self._states[wanted] = self._read(*wanted)
        return self._states[wanted]

    def _read(self, sources: tuple[Repository, ...], architecture: str) -> SourcesState:
        newest: dict[str, Offered] = {}
        releases: dict[str, str] = {}
        for source in sources:
            release = self.apt.release_text(source)
            releases[source.label] = sha256_bytes(release.encode())
            for name, version in self._newest_in(source, release, architecture).items():
                if _newer(version, newest[name].version if name in newest else None):
                    newest[name] = Offered(version, source.label)
        return SourcesState(newest, releases)

    def _newest_in(self, source: Repository, release_text: str, architecture: str) -> dict[str, str]:
        dists = source.dists
        checksums = release_checksums(release_text, dists)
        found: dict[str, str] = {}
        for component in source.components:
            stem = f"{component}/binary-{architecture}/Packages"
            digest = next((checksums[stem + suffix]["sha256"] for suffix in ("", ".xz", ".gz", ".bz2")
                           if stem + suffix in checksums), None)
            if digest is None:
                raise PackageError(f"{dists}: Release lists no {stem} index")
            cached = self.cache_dir / "indexes" / f"{digest}.json"
            try:
                versions = json.loads(cached.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                versions = newest_versions(self.apt.packages_index(dists, stem, checksums).decode("utf-8", "replace"))
                write_atomically(cached, json.dumps(versions, sort_keys=True))
            for name, version in versions.items():
                if _newer(version, found.get(name)):
                    found[name] = version
        return found


def newest_versions(index: str) -> dict[str, str]:
    """Package -> newest version in a Packages index. A plain scan of the two fields it needs:
    Debian's main index has 63,000 entries, which a full deb822 parse reads 5x slower."""
    found: dict[str, str] = {}
    for entry in index.split("\n\n"):
        name = version = None
        for line in entry.split("\n"):
            if line.startswith("Package: "):
                name = line[9:].strip()
            elif line.startswith("Version: "):
                version = line[9:].strip()
        if name and version and _newer(version, found.get(name)):
            found[name] = version
    return found


def _newer(version: str, than: str | None) -> bool:
    """Whether `version` is newer than `than` (Debian order); anything is newer than none."""
    return than is None or Version(version) > Version(than)


def update_reasons(manifest: Manifest, state: SourcesState) -> list[str]:
    """One reason per package the sources offer newer than the image has, from a source whose
    Release changed since the image's bake read it."""
    reasons = []
    for name, package in sorted(manifest.by_name().items()):
        offered = state.newest.get(package.name)
        if offered is None or package.version == "(latest)" or Version(offered.version) <= Version(package.version):
            continue
        if manifest.sources_seen.get(offered.source) == state.releases.get(offered.source):
            continue  # the bake saw this version offered and did not take it
        reasons.append(f"{name} {package.version} -> {offered.version} available")
    return reasons
