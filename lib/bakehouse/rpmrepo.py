"""An RPM repository (a `baseurl` with `repodata/`), as dnf reads one: `repodata/repomd.xml`
names the `primary` data file with its checksum; the primary file (gzip, xz or zstd, as
createrepo_c writes them) lists one `<package>` per build: name, arch, epoch/version/release,
the package file's checksum and its location under the base URL.

Everything read is checked: the primary file against the checksum repomd.xml gives it, before
it is parsed. Each problem is one line naming the repository (a PackageError)."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass

from .aptrepo import MissingIndex, fetch_url
from .errors import PackageError
from .rpmversion import Evr

REPO = "{http://linux.duke.edu/metadata/repo}"
COMMON = "{http://linux.duke.edu/metadata/common}"
CHECKSUMS = {"sha256": hashlib.sha256, "sha512": hashlib.sha512, "sha1": hashlib.sha1, "sha": hashlib.sha1}
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
Fetch = Callable[[str], bytes]


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


def read_repository(baseurl: str, fetch: Fetch = fetch_url) -> dict[str, list[RpmPackage]]:
    """Every package of the repository at `baseurl`, by name, newest first."""
    base = baseurl.rstrip("/")
    repomd = _fetch(fetch, f"{base}/repodata/repomd.xml", base)
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
