"""Package versions from Debian repositories: read the index, take the newest version.

For each `[[repository]]` of a bake, bakehouse reads the repository's InRelease (or Release),
checks its signature with gpgv against the bake's `signed_by` keyring (unless the repository
is declared `trusted`), checks each Packages index against the SHA256 in Release, and parses
it with python-debian. A package resolves to its newest version there (Debian version order);
`name=version` and the .deb's SHA256 enter the content key. At bake time the .deb is
downloaded once into .bakehouse/cache/debs/ and checked against that SHA256, so the image
gets exactly the file the key names. Indexes are fetched once per run, whatever the number
of bakes that use them.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from debian.deb822 import Packages, Release
from debian.debian_support import Version

from .errors import PackageError
from .files import sha256_bytes, sha256_file, write_atomically

FETCH_TIMEOUT_SECONDS = 30
FETCH_ATTEMPTS = 3
FETCH_BACKOFF_SECONDS = 1.0
# Preferred first: smallest to fetch.
INDEX_FORMATS: tuple[tuple[str, Callable[[bytes], bytes]], ...] = (
    (".xz", lzma.decompress), (".gz", gzip.decompress), (".bz2", bz2.decompress), ("", lambda data: data),
)

Fetch = Callable[[str], bytes]


@dataclass(frozen=True)
class Repository:
    """A `[[repository]]` table of a bake file."""

    url: str
    suite: str
    components: tuple[str, ...] = ("main",)
    signed_by: Path | None = None
    trusted: bool = False
    packages: tuple[str, ...] = ()

    @property
    def dists(self) -> str:
        """The URL of the suite's folder (Release, InRelease, the indexes)."""
        return f"{self.url.rstrip('/')}/dists/{self.suite}"

    @property
    def label(self) -> str:
        return f"{self.url} {self.suite} {' '.join(self.components)}"


@dataclass(frozen=True)
class IndexedPackage:
    name: str
    version: str
    url: str
    sha256: str
    size: int


class MissingIndex(Exception):
    """A file the repository does not have (HTTP 404)."""


def fetch_url(url: str) -> bytes:
    """The body at `url`. A mirror that answers 5xx, drops the connection or times out now and
    then is asked again (FETCH_ATTEMPTS in all, backing off), as apt does; a 404 is at once
    MissingIndex, and any other answer one line."""
    for attempt in range(1, FETCH_ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_SECONDS) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            if error.code == 404:
                raise MissingIndex(url) from None
            if error.code < 500 or attempt == FETCH_ATTEMPTS:
                raise PackageError(f"cannot fetch {url}: HTTP {error.code} {error.reason}") from None
        except (urllib.error.URLError, OSError) as error:
            if attempt == FETCH_ATTEMPTS:
                reason = getattr(error, "reason", error)
                raise PackageError(f"cannot fetch {url}: {reason}; is the repository reachable?") from None
        time.sleep(FETCH_BACKOFF_SECONDS * attempt)
    raise AssertionError("unreachable")


INDEX_FIELDS = ("Package", "Version", "Filename", "SHA256")


def _indexed(repository: Repository, paragraph: Any) -> IndexedPackage | None:
    """One entry of a Packages index; an entry without the fields a download needs (or with
    a size that is not a number) is left out, as apt leaves it out: it cannot be fetched and
    checked, so a bake asking for it gets "not in the repository"."""
    if any(not paragraph.get(field) for field in INDEX_FIELDS):
        return None
    try:
        size = int(paragraph.get("Size", "0"))
    except ValueError:
        return None
    return IndexedPackage(
        name=paragraph["Package"], version=paragraph["Version"],
        url=f"{repository.url.rstrip('/')}/{paragraph['Filename']}", sha256=paragraph["SHA256"], size=size,
    )


class AptIndexes:
    """The indexes of every repository used in one run, each fetched once."""

    def __init__(self, fetch: Fetch = fetch_url) -> None:
        self.fetch = fetch
        self._cache: dict[tuple[object, ...], dict[str, list[IndexedPackage]]] = {}

    def packages(self, repository: Repository, architecture: str) -> dict[str, list[IndexedPackage]]:
        """Every package version in the repository for `architecture` (and `all`), by name."""
        cache_key = (repository.url, repository.suite, repository.components, repository.signed_by,
                     repository.trusted, architecture)
        if cache_key not in self._cache:
            self._cache[cache_key] = self._read(repository, architecture)
        return self._cache[cache_key]

    def newest(self, repository: Repository, architecture: str, name: str, version: str | None, where: str) -> IndexedPackage:
        candidates = self.packages(repository, architecture).get(name, [])
        if version is not None:
            candidates = [c for c in candidates if c.version == version]
        if not candidates:
            wanted = name if version is None else f"{name}={version}"
            raise PackageError(f"{where}: repository: {wanted} is not in {repository.label} ({architecture})")
        return max(candidates, key=lambda c: Version(c.version))

    def _read(self, repository: Repository, architecture: str) -> dict[str, list[IndexedPackage]]:
        dists = repository.dists
        checksums = release_checksums(self.release_text(repository), dists)
        found: dict[str, list[IndexedPackage]] = {}
        for component in repository.components:
            index = self.packages_index(dists, f"{component}/binary-{architecture}/Packages", checksums)
            for paragraph in Packages.iter_paragraphs(index.decode("utf-8", "replace"), use_apt_pkg=False):
                package = _indexed(repository, paragraph)
                if package is not None:
                    found.setdefault(package.name, []).append(package)
        return found

    def release_text(self, repository: Repository) -> str:
        """The repository's Release, its signature checked (unless it is `trusted`)."""
        dists = repository.dists
        try:
            signed = self.fetch(f"{dists}/InRelease")
            return self._verified(repository, dists, signed, detached=None)
        except MissingIndex:
            pass
        try:
            release = self.fetch(f"{dists}/Release")
        except MissingIndex:
            raise PackageError(f"{dists}: no InRelease or Release; check url and suite") from None
        signature = None
        if not repository.trusted:
            try:
                signature = self.fetch(f"{dists}/Release.gpg")
            except MissingIndex:
                raise PackageError(f"{dists}: Release is not signed (no Release.gpg); set trusted = true to use it anyway") from None
        return self._verified(repository, dists, release, detached=signature)

    def _verified(self, repository: Repository, dists: str, data: bytes, detached: bytes | None) -> str:
        if repository.trusted:
            return _strip_clearsign(data.decode("utf-8", "replace"))
        assert repository.signed_by is not None
        return gpgv(repository.signed_by, data, detached, f"{dists}/{'Release' if detached else 'InRelease'}")

    def packages_index(self, dists: str, stem: str, checksums: dict[str, dict[str, str]]) -> bytes:
        for suffix, decompress in INDEX_FORMATS:
            entry = checksums.get(stem + suffix)
            if entry is None:
                continue
            data = self.fetch(f"{dists}/{stem}{suffix}")
            if sha256_bytes(data) != entry["sha256"]:
                raise PackageError(f"{dists}/{stem}{suffix} does not match its SHA256 in Release")
            return decompress(data)
        raise PackageError(f"{dists}: Release lists no {stem} index")


def release_checksums(release_text: str, dists: str) -> dict[str, dict[str, str]]:
    """A Release's SHA256 list, by file name (the indexes' own validators)."""
    entries = Release(release_text).get("SHA256", [])
    checksums = {entry["name"]: entry for entry in entries if entry.get("name") and entry.get("sha256")}
    if not checksums:
        raise PackageError(f"{dists}/Release has no SHA256 list; cannot check the indexes")
    return checksums


def gpgv(keyring: Path, data: bytes, detached: bytes | None, shown_as: str) -> str:
    """The signed text, if `keyring` verifies it; gpgv is what apt itself uses."""
    with tempfile.TemporaryDirectory(prefix="bakehouse-gpgv-") as scratch:
        signed = Path(scratch) / "signed"
        signed.write_bytes(data)
        output = Path(scratch) / "verified"
        if detached is None:
            argv = ["gpgv", "--keyring", str(keyring), "--output", str(output), str(signed)]
        else:
            signature = Path(scratch) / "signature"
            signature.write_bytes(detached)
            argv = ["gpgv", "--keyring", str(keyring), str(signature), str(signed)]
        try:
            result = subprocess.run(argv, capture_output=True, text=True)
        except FileNotFoundError:
            raise PackageError("gpgv is not installed (Debian: apt-get install gpgv)") from None
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise PackageError(f"{shown_as}: signature check with {keyring} failed ({last})")
        return (output.read_bytes() if detached is None else data).decode("utf-8", "replace")


def _strip_clearsign(text: str) -> str:
    """The message of a clear-signed InRelease, signature not checked (trusted repository)."""
    if not text.startswith("-----BEGIN PGP SIGNED MESSAGE-----"):
        return text
    body = text.split("\n\n", 1)[1]
    return body.split("\n-----BEGIN PGP SIGNATURE-----", 1)[0]


def cached_path(cache_dir: Path, url: str, sha256: str) -> Path:
    return cache_dir / sha256[:32] / url.rsplit("/", 1)[-1]


def download(url: str, sha256: str, cache_dir: Path) -> Path:
    """The .deb in the local cache, fetched and checked against the index's SHA256 if needed."""
    target = cached_path(cache_dir, url, sha256)
    if target.is_file() and sha256_file(target) == sha256:
        return target
    try:
        data = fetch_url(url)
    except MissingIndex:
        raise PackageError(f"cannot fetch {url}: HTTP 404 (no longer in the repository)") from None
    if sha256_bytes(data) != sha256:
        raise PackageError(f"{url}: downloaded file does not match the SHA256 in the repository index")
    write_atomically(target, data)
    return target


def host_architecture() -> str:
    try:
        return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "amd64"


DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def parse_sources(text: str, default_suite: str, where: str) -> tuple[Repository, ...]:
    """Apt sources as an mmdebstrap mirror argument or a sources file spells them: deb822
    paragraphs (`Types: deb`, `URIs:`, `Suites:`, `Components:`, `Signed-By:`), one-line
    entries (`deb [signed-by=... trusted=yes] URI SUITE COMPONENT...`), or a bare URI (this
    suite, `main`). A source without a keyring is checked against Debian's archive keyring
    when the host has it, as apt does; one whose keyring this machine does not have (an
    image's own, named by its sources) is read unchecked; `deb-src` entries are left out."""
    if "://" in text and "\n" not in text.strip() and not text.strip().startswith("deb"):
        return (_repository(text.strip(), default_suite, ("main",), {}),)
    if any(line.split(":", 1)[0].strip().lower() == "uris" for line in text.splitlines() if ":" in line):
        return tuple(_deb822_sources(text, where))
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("deb-src"):
            continue
        options: dict[str, str] = {}
        if "[" in line:
            head, _, rest = line.partition("[")
            inside, _, tail = rest.partition("]")
            options = dict(item.split("=", 1) for item in inside.split() if "=" in item)
            line = head + tail
        words = line.split()
        if len(words) < 3 or words[0] != "deb":
            raise PackageError(f"{where}:{number}: not a sources line: {line!r}")
        found.append(_repository(words[1], words[2], tuple(words[3:]) or ("main",), options))
    return tuple(found)


def _deb822_sources(text: str, where: str) -> list[Repository]:
    from debian.deb822 import Deb822

    found = []
    for paragraph in Deb822.iter_paragraphs(text):
        if "deb" not in paragraph.get("Types", "deb").split() or paragraph.get("Enabled", "yes") == "no":
            continue
        options = {"signed-by": paragraph.get("Signed-By", ""), "trusted": paragraph.get("Trusted", "")}
        for uri in paragraph.get("URIs", "").split():
            for suite in paragraph.get("Suites", "").split():
                found.append(_repository(uri, suite, tuple(paragraph.get("Components", "main").split()), options))
    if not found:
        raise PackageError(f"{where}: no deb sources in it")
    return found


def _repository(uri: str, suite: str, components: tuple[str, ...], options: dict[str, str]) -> Repository:
    trusted = options.get("trusted", "").lower() == "yes"
    keyring = options.get("signed-by", "").strip()
    signed_by = Path(keyring) if keyring and not keyring.startswith("-----") else None
    # Without a keyring to check it with, a Release is read unchecked: it only decides whether
    # to rebake (what gets installed is checked by apt and mmdebstrap). A source that names no
    # keyring gets apt's default one, Debian's, when this machine has it.
    if signed_by is not None and not signed_by.is_file():
        signed_by, trusted = None, True  # the image's own keyring (a vendor's): not here
    if signed_by is None and not trusted:
        signed_by, trusted = (DEBIAN_KEYRING, False) if DEBIAN_KEYRING.is_file() else (None, True)
    return Repository(url=uri.rstrip("/"), suite=suite, components=components, signed_by=signed_by, trusted=trusted)
