"""`rebuild_when = "updates"`: rebake an image when its package sources offer newer versions
of packages it has installed.

An image's sources are the apt sources it was made from: a local base's mirror, every
`[[repository]]` of the bake and of what it builds on, and the sources an AMI's own apt names
(listed over SSH at the end of its bake). Each run reads each source's Release once (its
signature checked, aptrepo.py) and, only when the Release names a Packages index bakehouse
has not read before (by its SHA256: the index's own validator), that index; what it learns
of an index (every version of every package) is cached under .bakehouse/cache/indexes/ by that
SHA256. The same reading answers whether a version a bake pins by name is offered at all
(`offers_version`), so a version the mirror lacks is refused at plan time, not by apt.

A package is an update when a source offers a version newer (Debian order) than the image's,
and that source's Release changed since the image was baked: the image's manifest keeps the
Release each source had then (`sources_seen`), so a version the bake already saw and did not
take (a pin, a hold) is not asked for again and again.

An RPM image's sources are the `type = "rpm"` repositories of its chain: there, a source's
repomd.xml stands for its Release (it names the primary data by checksum), versions come
from the primary data (rpmrepo.py), and compare in RPM's order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from typing import Any

from debian.debian_support import Version

from .aptrepo import AptIndexes, Fetch, Repository, fetch_url, release_checksums
from .contents import Manifest
from .errors import PackageError
from .files import sha256_bytes, write_atomically
from .rpmrepo import RPM_ARCHITECTURES, RpmRepository, primary_of, read_primary, read_repomd
from .rpmversion import Evr

Source = Repository | RpmRepository

UNUSED_DAYS = 30  # a cached index or answer no run used for this long: clean() removes it


@dataclass(frozen=True)
class Offered:
    version: str
    source: str  # the source's label (aptrepo.Repository.label)


Offers = tuple[tuple[str, dict[str, list[str]]], ...]  # (source label, package -> its versions)


class SourcesState:
    """What the sources offer now: each source's Release (by SHA256), read at once, and each
    source's versions of each package, read from its indexes only when first asked."""

    def __init__(self, releases: dict[str, str], offers: Callable[[], Offers],
                 order: Callable[[str], Any] = Version) -> None:
        self.releases = releases  # source label -> sha256 of its Release
        self._offers = offers
        self.order = order  # a version's sort key: Debian's order, or RPM's for RPM sources

    @cached_property
    def offers(self) -> Offers:
        """(source label, package -> every version it offers) for each source."""
        return self._offers()

    def newest(self, name: str) -> Offered | None:
        """The newest version any source offers of `name`. Asked only for an image's own
        packages: comparing versions is slow, and Debian's index has 63,000 names."""
        best: Offered | None = None
        for label, versions in self.offers:
            for version in versions.get(name, ()):
                if best is None or self.order(version) > self.order(best.version):
                    best = Offered(version, label)
        return best

    def offers_version(self, name: str, version: str) -> bool:
        """Whether any source offers `name` at `version` (equal in Debian order: 1.0 is 1.0-0)."""
        wanted = self.order(version)
        return any(self.order(offered) == wanted for _, versions in self.offers for offered in versions.get(name, ()))


class UpdateIndexes:
    """What the sources offer, read through a cache under cache_dir: each index's versions
    by the index's SHA256 (indexes/), and each answer by what it depends on
    (updates/). A file's time is renewed each time it is used, and `doit prune --apply`
    removes the ones no run has used for UNUSED_DAYS (clean()): an index a source has replaced."""

    def __init__(self, cache_dir: Path, fetch: Fetch = fetch_url) -> None:
        self.cache_dir = cache_dir
        self.apt = AptIndexes(fetch)  # its Release reading and signature checks
        self._states: dict[tuple[tuple[Source, ...], str], SourcesState] = {}

    def clean(self, now: float) -> list[str]:
        """Remove the cached indexes and answers no run has used for UNUSED_DAYS before `now`
        (seconds since the epoch, as file times are); returns them as cache/... paths."""
        removed = []
        for folder in ("indexes", "updates"):
            for path in sorted((self.cache_dir / folder).glob("*.json")):
                try:
                    if path.stat().st_mtime < now - UNUSED_DAYS * 86400:
                        path.unlink()
                        removed.append(f"cache/{folder}/{path.name}")
                except OSError:
                    continue  # removed meanwhile by another run: only a cache
        return removed

    def state(self, sources: tuple[Source, ...], architecture: str) -> SourcesState:
        """Read once per run for each set of sources."""
        wanted = (tuple(sorted(set(sources), key=lambda source: source.label)), architecture)
        if wanted not in self._states:
            self._states[wanted] = self._read(*wanted)
        return self._states[wanted]

    def _read(self, sources: tuple[Source, ...], architecture: str) -> SourcesState:
        # The Releases at once, each from its own thread: one round trip, not one per source.
        with ThreadPoolExecutor(max_workers=max(1, len(sources))) as pool:
            texts = list(pool.map(self._release, sources))
        releases = {source.label: sha256_bytes(text.encode()) for source, text in zip(sources, texts)}

        def offers() -> Offers:
            return tuple((source.label, self._versions_in(source, text, architecture))
                         for source, text in zip(sources, texts))

        rpm = bool(sources) and all(isinstance(source, RpmRepository) for source in sources)
        return SourcesState(releases, offers, Evr.parse if rpm else Version)

    def _release(self, source: Source) -> str:
        """What stands for the source's state: its Release (signature checked), or an RPM
        repository's repomd.xml."""
        if isinstance(source, RpmRepository):
            return read_repomd(source.url, self.apt.fetch).decode("utf-8", "replace")
        return self.apt.release_text(source)

    def reasons(self, manifest: Manifest, state: SourcesState) -> list[str]:
        """update_reasons(), remembered by what it depends on (the image's packages and what
        its bake saw, and the sources' Releases, which name their indexes): while no Release
        changes, no index is read again."""
        asked = json.dumps({"packages": [[p.name, p.version] for p in manifest.packages],
                            "seen": manifest.sources_seen, "releases": state.releases}, sort_keys=True)
        cached = self.cache_dir / "updates" / f"{sha256_bytes(asked.encode())}.json"
        try:
            return [str(reason) for reason in json.loads(_used(cached).read_text(encoding="utf-8"))]
        except (OSError, ValueError, TypeError):
            found = update_reasons(manifest, state)
            write_atomically(cached, json.dumps(found))
            return found

    def _versions_in(self, source: Source, release_text: str, architecture: str) -> dict[str, list[str]]:
        if isinstance(source, RpmRepository):
            return self._rpm_versions_in(source, release_text.encode(), architecture)
        dists = source.dists
        checksums = release_checksums(release_text, dists)
        found: dict[str, list[str]] = {}
        for component in source.components:
            stem = f"{component}/binary-{architecture}/Packages"
            digest = next((checksums[stem + suffix]["sha256"] for suffix in ("", ".xz", ".gz", ".bz2")
                           if stem + suffix in checksums), None)
            if digest is None:
                raise PackageError(f"{dists}: Release lists no {stem} index")
            cached = self.cache_dir / "indexes" / f"{digest}.versions.json"
            try:
                versions = json.loads(_used(cached).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                versions = index_versions(self.apt.packages_index(dists, stem, checksums).decode("utf-8", "replace"))
                write_atomically(cached, json.dumps(versions, sort_keys=True))
            if not found:
                found = versions
                continue
            for name, offered in versions.items():
                found.setdefault(name, []).extend(offered)
        return found


    def _rpm_versions_in(self, source: RpmRepository, repomd: bytes, architecture: str) -> dict[str, list[str]]:
        """Package -> its versions for the image's architecture (or noarch), cached by the
        primary data's checksum, as a Debian index is by its SHA256."""
        _, (_, digest) = primary_of(repomd, source.url)
        arches = {RPM_ARCHITECTURES.get(architecture, architecture), "noarch"}
        cached = self.cache_dir / "indexes" / f"{digest}.{'+'.join(sorted(arches))}.versions.json"
        try:
            return dict(json.loads(_used(cached).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            found = {name: [build.version for build in builds if build.arch in arches]
                     for name, builds in read_primary(source.url, repomd, self.apt.fetch).items()}
            versions = {name: offered for name, offered in found.items() if offered}
            write_atomically(cached, json.dumps(versions, sort_keys=True))
            return versions


def index_versions(index: str) -> dict[str, list[str]]:
    """Package -> every version in a Packages index. A plain scan of the two fields it needs:
    Debian's main index has 63,000 entries, which a full deb822 parse reads 5x slower."""
    found: dict[str, list[str]] = {}
    for entry in index.split("\n\n"):
        name = version = None
        for line in entry.split("\n"):
            if line.startswith("Package: "):
                name = line[9:].strip()
            elif line.startswith("Version: "):
                version = line[9:].strip()
        if name and version:
            found.setdefault(name, []).append(version)
    return found


def update_reasons(manifest: Manifest, state: SourcesState) -> list[str]:
    """One reason per package the sources offer newer than the image has, from a source whose
    Release changed since the image's bake read it."""
    reasons = []
    for name, package in sorted(manifest.by_name().items()):
        offered = state.newest(package.name)
        if offered is None or package.version == "(latest)" or state.order(offered.version) <= state.order(package.version):
            continue
        if manifest.sources_seen.get(offered.source) == state.releases.get(offered.source):
            continue  # the bake saw this version offered and did not take it
        reasons.append(f"{name} {package.version} -> {offered.version} available")
    return reasons


def _used(cached: Path) -> Path:
    """`cached`, its time renewed (clean() keeps what is used); raises OSError if it is absent."""
    os.utime(cached)
    return cached
