"""An RPM repository (a `baseurl` with `repodata/`), as dnf reads one: `repodata/repomd.xml`
names the `primary` data file with its checksum; the primary file (gzip, xz or zstd, as
createrepo_c writes them) lists one `<package>` per build: name, arch, epoch/version/release,
the package file's checksum and its location under the base URL.

Everything read is checked: the primary file against the checksum repomd.xml gives it, before
it is parsed. Each problem is one line naming the repository (a PackageError).

A bake takes packages from one with `[[repository]] type = "rpm"` (RpmRepository). As dnf does
with `gpgcheck=1`, a repository with a `gpgkey` has each package's own signature checked
against that key (rpmkeys, in a keyring of its own) when the package is downloaded, before it
goes into an image; `trusted = true` takes unsigned packages."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .aptrepo import IndexedPackage, MissingIndex, fetch_url
from .errors import PackageError
from .rpmversion import Evr

REPO = "{http://linux.duke.edu/metadata/repo}"
COMMON = "{http://linux.duke.edu/metadata/common}"
CHECKSUMS = {"sha256": hashlib.sha256, "sha512": hashlib.sha512, "sha1": hashlib.sha1, "sha": hashlib.sha1}
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
Fetch = Callable[[str], bytes]
# dpkg's architecture names -> RPM's; a package of the image's architecture or noarch fits.
RPM_ARCHITECTURES = {"amd64": "x86_64", "arm64": "aarch64", "i386": "i686", "ppc64el": "ppc64le", "s390x": "s390x"}


@dataclass(frozen=True)
class RpmRepository:
    """A `[[repository]]` table of a bake file with `type = "rpm"`."""

    baseurl: str
    gpgkey: Path | None = None  # an OpenPGP public key file (armoured, as dnf's gpgkey)
    trusted: bool = False
    packages: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return self.baseurl.rstrip("/")

    @property
    def suite(self) -> str:
        return ""  # an RPM repository has none; bakehouse.lock names it by its URL alone

    @property
    def signed_by(self) -> Path | None:
        return self.gpgkey

    @property
    def label(self) -> str:
        return f"{self.url} (rpm)"


@dataclass(frozen=True)
class RpmPackage:
    """One build of a package in a repository."""

    name: str
    arch: str
    evr: Evr
    location: str  # the package file, relative to the repository's base URL
    checksum: tuple[str, str]  # (type, hex digest) of the package file

    @property
    def version(self) -> str:
        return str(self.evr)


class RpmIndexes:
    """The primary data of every RPM repository used in one run, each read once."""

    def __init__(self, fetch: Fetch = fetch_url) -> None:
        self.fetch = fetch
        self._cache: dict[str, dict[str, list[RpmPackage]]] = {}

    def packages(self, repository: RpmRepository) -> dict[str, list[RpmPackage]]:
        if repository.url not in self._cache:
            self._cache[repository.url] = read_repository(repository.url, self.fetch)
        return self._cache[repository.url]

    def newest(self, repository: RpmRepository, architecture: str, name: str, version: str | None,
               where: str) -> IndexedPackage:
        """The newest build of `name` for `architecture` (dpkg's name) or noarch, at `version`
        if one is asked for (`VERSION`, `VERSION-RELEASE` or `EPOCH:VERSION-RELEASE`; without
        an epoch, any epoch, as dnf matches)."""
        arches = {RPM_ARCHITECTURES.get(architecture, architecture), "noarch"}
        candidates = [package for package in self.packages(repository).get(name, []) if package.arch in arches]
        if version is not None:
            candidates = [package for package in candidates if matches(package.evr, version)]
        if not candidates:
            wanted = name if version is None else f"{name}={version}"
            offered = sorted({package.version for package in self.packages(repository).get(name, [])
                              if package.arch in arches}, key=Evr.parse, reverse=True)
            there = f"; it has {', '.join(offered[:5])}" if offered else ""
            raise PackageError(f"{where}: repository: {wanted} is not in {repository.label} "
                               f"({' or '.join(sorted(arches))}){there}")
        best = max(candidates, key=lambda package: package.evr)
        kind, digest = best.checksum
        if kind != "sha256":
            raise PackageError(f"{where}: repository: {repository.label} gives {name} a {kind} checksum; bakehouse "
                               "keys packages by SHA256 (createrepo_c's default: --checksum sha256)")
        return IndexedPackage(best.name, best.version, f"{repository.url}/{best.location}", digest, 0)


def matches(evr: Evr, asked: str) -> bool:
    wanted = Evr.parse(asked)
    epoch_given = ":" in asked
    return ((not epoch_given or evr.epoch == wanted.epoch) and evr.version == wanted.version
            and (not wanted.release or evr.release == wanted.release))


def check_signature(path: Path, key: Path, shown_as: str, key_shown: str) -> None:
    """`path`'s own signature checked against `key` alone, as dnf's gpgcheck does: rpmkeys
    with a keyring (rpmdb) of its own holding only that key. Unsigned or signed by another
    key is one line."""
    with tempfile.TemporaryDirectory(prefix="bakehouse-rpmkeys-") as scratch:
        db = ["--dbpath", scratch]
        try:
            imported = subprocess.run(["rpmkeys", *db, "--import", str(key)], capture_output=True, text=True)
        except FileNotFoundError:
            raise PackageError(f"{shown_as}: rpmkeys is not installed, so its signature cannot be checked "
                               "(Debian: apt-get install rpm)") from None
        if imported.returncode != 0:
            raise PackageError(f"{key_shown}: not an OpenPGP public key rpm can import "
                               f"({(imported.stderr.strip().splitlines() or ['no output'])[-1]})")
        checked = subprocess.run(["rpmkeys", *db, "--define", "_pkgverify_level signature", "--checksig", str(path)],
                                 capture_output=True, text=True)
        if checked.returncode != 0:
            said = (checked.stdout + checked.stderr).strip().splitlines()
            last = said[-1].removeprefix(f"{path}: ") if said else "no output"
            raise PackageError(f"{shown_as}: its signature does not check out against {key_shown} ({last})")


def read_repository(baseurl: str, fetch: Fetch = fetch_url) -> dict[str, list[RpmPackage]]:
    """Every package of the repository at `baseurl`, by name, newest first."""
    return read_primary(baseurl.rstrip("/"), read_repomd(baseurl, fetch), fetch)


def read_repomd(baseurl: str, fetch: Fetch = fetch_url) -> bytes:
    """The repository's repodata/repomd.xml: what names (and checksums) its data files."""
    base = baseurl.rstrip("/")
    return _fetch(fetch, f"{base}/repodata/repomd.xml", base)


def read_primary(base: str, repomd: bytes, fetch: Fetch = fetch_url) -> dict[str, list[RpmPackage]]:
    """The packages of the primary file `repomd` names, checked against its checksum there."""
    location, (kind, digest) = primary_of(repomd, base)
    data = _fetch(fetch, f"{base}/{location}", base)
    if kind not in CHECKSUMS:
        raise PackageError(f"{base}: repomd.xml gives the primary data a {kind} checksum, which bakehouse cannot check")
    if CHECKSUMS[kind](data).hexdigest() != digest:
        raise PackageError(f"{base}: {location} does not match its {kind} checksum in repomd.xml "
                           "(a repository caught mid-update? a mirror serving stale files?)")
    packages = parse_primary(decompress(data, location, base), base)
    found: dict[str, list[RpmPackage]] = {}
    for package in packages:
        found.setdefault(package.name, []).append(package)
    for builds in found.values():
        builds.sort(key=lambda package: package.evr, reverse=True)
    return found


def primary_of(repomd: bytes, base: str) -> tuple[str, tuple[str, str]]:
    """The primary data file's location and its (checksum type, digest), from repomd.xml."""
    try:
        root = ElementTree.fromstring(repomd)
    except ElementTree.ParseError as error:
        raise PackageError(f"{base}: repodata/repomd.xml is not XML ({error})") from None
    for data in root.iter(f"{REPO}data"):
        if data.get("type") != "primary":
            continue
        location = data.find(f"{REPO}location")
        checksum = data.find(f"{REPO}checksum")
        if location is None or checksum is None or not location.get("href") or not (checksum.text or "").strip():
            break
        return str(location.get("href")), (str(checksum.get("type", "")), (checksum.text or "").strip().lower())
    raise PackageError(f"{base}: repodata/repomd.xml names no primary data file with a checksum")


def decompress(data: bytes, location: str, base: str) -> bytes:
    """The primary file's XML, whichever of gzip, xz or zstd it is in (by its first bytes)."""
    try:
        if data[:2] == b"\x1f\x8b":
            return gzip.decompress(data)
        if data[:6] == b"\xfd7zXZ\x00":
            return lzma.decompress(data)
        if data[:4] == ZSTD_MAGIC:
            import zstandard  # only for repositories that use it

            return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    except (OSError, EOFError, lzma.LZMAError, ValueError) as error:
        raise PackageError(f"{base}: {location} cannot be decompressed ({error})") from None
    if data.lstrip()[:1] == b"<":
        return data  # not compressed
    raise PackageError(f"{base}: {location} is neither XML nor gzip, xz or zstd")


def parse_primary(xml: bytes, base: str) -> list[RpmPackage]:
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as error:
        raise PackageError(f"{base}: the primary data is not XML ({error})") from None
    packages = []
    for entry in root.iter(f"{COMMON}package"):
        if entry.get("type", "rpm") != "rpm":
            continue
        name, arch = entry.findtext(f"{COMMON}name"), entry.findtext(f"{COMMON}arch")
        version, location = entry.find(f"{COMMON}version"), entry.find(f"{COMMON}location")
        checksum = entry.find(f"{COMMON}checksum")
        if not name or not arch or version is None or location is None or checksum is None:
            continue  # an entry dnf could not install either
        if arch == "src":
            continue
        evr = Evr(int(version.get("epoch") or 0), version.get("ver") or "", version.get("rel") or "")
        packages.append(RpmPackage(name, arch, evr, str(location.get("href")),
                                   (str(checksum.get("type", "")), (checksum.text or "").strip().lower())))
    return packages


def _fetch(fetch: Fetch, url: str, base: str) -> bytes:
    try:
        return fetch(url)
    except MissingIndex:
        raise PackageError(f"{base}: {url.removeprefix(base + '/')} is not there (HTTP 404): is this an RPM "
                           "repository's base URL (the folder that holds repodata/)?") from None
