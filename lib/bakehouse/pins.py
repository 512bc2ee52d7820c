"""bakehouse.lock: the inputs a plan resolved, so a bake made later, elsewhere, bakes those.

`doit plan --lock` writes it (TOML, tomli-w) beside bakes/: for each bake, the version, SHA256
and URL of each package it takes from a `[[repository]]`, and the source AMI it starts from in
each region. With the file present, every command (`doit`, `doit plan`, `doit info`) uses
those instead of asking the repositories and AWS again:

- In a CI fan-out, the plan job writes it and hands it to every bake job, so each bakes what
  the plan planned, even if an apt index or an upstream AMI moved meanwhile.
- Committed, it pins a repository's bakes as a package manager's lock file does; `doit plan
  --lock` again moves the pins forward.

An input the file names that can no longer be had (a .deb gone from its repository, a source
AMI deregistered) fails the bake with one line. Bakes and packages the file does not name
are resolved as usual.

A pin never widens what a bake accepts: a package's pin names the repository it was taken from
(URL, suite, and the SHA256 of the keyring that checked it, or "trusted"; an RPM repository's
suite is empty and its key is its `gpgkey`), and is refused when
the bake takes that package from another; a source AMI's pin must still pass the bake's own
`owners` and `name` filter (providers/aws/provider.py).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

import tomli_w

from . import debpolicy, rpmpolicy
from .aptrepo import Repository
from .rpmrepo import RpmRepository
from .errors import DefinitionError, PackageError
from .files import sha256_file, write_atomically
from .project import Project

LOCK_FILE = "bakehouse.lock"
LOCK_VERSION = 2  # 2: each package pin names its repository
HEADER = (
    "# bakehouse.lock: the inputs `doit plan --lock` resolved; every bake uses these.\n"
    "# Commit it to pin the bakes, or hand it from a plan job to the bake jobs; plan again to move it.\n"
)


@dataclass(frozen=True)
class RepositoryPin:
    """Which repository a package was taken from, and with which key its index was checked."""

    url: str
    suite: str
    key: str  # "sha256:<keyring file's digest>", or "trusted" (no signature checked)

    @property
    def label(self) -> str:
        return f"{self.url} {self.suite or '(rpm)'} (key {self.key})"


def repository_pin(repository: Repository | RpmRepository) -> RepositoryPin:
    key = "trusted" if repository.trusted or repository.signed_by is None else f"sha256:{sha256_file(repository.signed_by)}"
    return RepositoryPin(repository.url.rstrip("/"), repository.suite, key)


@dataclass(frozen=True)
class PackagePin:
    version: str
    sha256: str
    url: str
    repository: RepositoryPin

    def to_toml(self) -> dict[str, Any]:
        return {"version": self.version, "sha256": self.sha256, "url": self.url, "repository": vars(self.repository)}


@dataclass(frozen=True)
class Pins:
    packages: dict[str, dict[str, PackagePin]] = field(default_factory=dict)  # bake -> name -> pin
    sources: dict[str, dict[str, str]] = field(default_factory=dict)  # bake -> place -> source image id

    def to_toml(self) -> dict[str, Any]:
        bakes: dict[str, Any] = {}
        for bake in sorted(set(self.packages) | set(self.sources)):
            entry: dict[str, Any] = {}
            if self.packages.get(bake):
                entry["packages"] = {name: pin.to_toml() for name, pin in sorted(self.packages[bake].items())}
            if self.sources.get(bake):
                entry["source"] = dict(sorted(self.sources[bake].items()))
            bakes[bake] = entry
        return {"version": LOCK_VERSION, "bakes": bakes}


def read_pins(project: Project) -> Pins:
    path = project.root / LOCK_FILE
    if not path.is_file():
        return Pins()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != LOCK_VERSION:
            older = isinstance(data.get("version"), int) and data["version"] < LOCK_VERSION
            raise ValueError(f"version {data.get('version')!r}, not {LOCK_VERSION}" + (": written by an older bakehouse" if older else ""))
        packages: dict[str, dict[str, PackagePin]] = {}
        sources: dict[str, dict[str, str]] = {}
        for bake, entry in dict(data.get("bakes", {})).items():
            packages[bake] = {
                name: PackagePin(str(pin["version"]), str(pin["sha256"]), str(pin["url"]), RepositoryPin(
                    str(pin["repository"]["url"]), str(pin["repository"]["suite"]), str(pin["repository"]["key"])))
                for name, pin in dict(entry.get("packages", {})).items()
            }
            sources[bake] = {str(place): str(image) for place, image in dict(entry.get("source", {})).items()}
        for bake, pinned in packages.items():
            for name, pin in pinned.items():
                _check_pin(bake, name, pin)
        return Pins(packages, sources)
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise DefinitionError(f"{LOCK_FILE}: not a bakehouse lock file ({error}); delete it or write it again: doit plan --lock") from None


def _check_pin(bake: str, name: str, pin: PackagePin) -> None:
    """A pin is checked as a bake file's package is, before anything runs: a lock file is
    input too (handed from job to job, edited by hand), and its values reach a shell and HCL."""
    where = f"{LOCK_FILE}: bake {bake}"
    policy = rpmpolicy if pin.url.endswith(".rpm") else debpolicy
    try:
        policy.check_name(where, name)
        policy.check_version(where, name, pin.version)
    except PackageError as error:
        raise DefinitionError(str(error)) from None
    if not re.fullmatch(r"[0-9a-f]{64}", pin.sha256):
        raise DefinitionError(f"{where}: packages: {name}: sha256 {pin.sha256!r} is not 64 hex digits; "
                              "write the file again: doit plan --lock")
    if not re.fullmatch(r"https?://[^\s\"'`$\\]+", pin.url):
        raise DefinitionError(f"{where}: packages: {name}: url {pin.url!r} is not an http(s) URL; "
                              "write the file again: doit plan --lock")
    if not pin.url.startswith(pin.repository.url.rstrip("/") + "/"):
        raise DefinitionError(f"{where}: packages: {name}: url {pin.url!r} is not in its repository "
                              f"{pin.repository.url}; write the file again: doit plan --lock")
    if not re.fullmatch(r"trusted|sha256:[0-9a-f]{64}", pin.repository.key):
        raise DefinitionError(f"{where}: packages: {name}: repository key {pin.repository.key!r} is neither "
                              "'trusted' nor sha256:<64 hex digits>; write the file again: doit plan --lock")


def check_pin_source(where: str, name: str, pin: PackagePin, repository: Repository | RpmRepository) -> None:
    """A pin is used only for the repository the bake takes the package from: a lock file
    must not swap a bake's repository (or its key) for another."""
    wanted = repository_pin(repository)
    if pin.repository != wanted:
        raise PackageError(f"{where}: {name} is pinned by {LOCK_FILE} from {pin.repository.label}, but the bake "
                           f"takes it from {wanted.label}; plan again to move the pin: doit plan --lock")


def write_pins(project: Project, pins: Pins) -> None:
    write_atomically(project.root / LOCK_FILE, HEADER + tomli_w.dumps(pins.to_toml()))
