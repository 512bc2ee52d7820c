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
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

import tomli_w

from .debpolicy import check_name, check_version
from .errors import DefinitionError, PackageError
from .files import write_atomically
from .project import Project

LOCK_FILE = "bakehouse.lock"
LOCK_VERSION = 1
HEADER = (
    "# bakehouse.lock: the inputs `doit plan --lock` resolved; every bake uses these.\n"
    "# Commit it to pin the bakes, or hand it from a plan job to the bake jobs; plan again to move it.\n"
)


@dataclass(frozen=True)
class PackagePin:
    version: str
    sha256: str
    url: str


@dataclass(frozen=True)
class Pins:
    packages: dict[str, dict[str, PackagePin]] = field(default_factory=dict)  # bake -> name -> pin
    sources: dict[str, dict[str, str]] = field(default_factory=dict)  # bake -> place -> source image id

    def to_toml(self) -> dict[str, Any]:
        bakes: dict[str, Any] = {}
        for bake in sorted(set(self.packages) | set(self.sources)):
            entry: dict[str, Any] = {}
            if self.packages.get(bake):
                entry["packages"] = {name: vars(pin) for name, pin in sorted(self.packages[bake].items())}
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
            raise ValueError(f"version {data.get('version')!r}, not {LOCK_VERSION}")
        packages: dict[str, dict[str, PackagePin]] = {}
        sources: dict[str, dict[str, str]] = {}
        for bake, entry in dict(data.get("bakes", {})).items():
            packages[bake] = {
                name: PackagePin(str(pin["version"]), str(pin["sha256"]), str(pin["url"]))
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
    try:
        check_name(where, name)
        check_version(where, name, pin.version)
    except PackageError as error:
        raise DefinitionError(str(error)) from None
    if not re.fullmatch(r"[0-9a-f]{64}", pin.sha256):
        raise DefinitionError(f"{where}: packages: {name}: sha256 {pin.sha256!r} is not 64 hex digits; "
                              "write the file again: doit plan --lock")
    if not re.fullmatch(r"https?://[^\s\"'`$\\]+", pin.url):
        raise DefinitionError(f"{where}: packages: {name}: url {pin.url!r} is not an http(s) URL; "
                              "write the file again: doit plan --lock")


def write_pins(project: Project, pins: Pins) -> None:
    write_atomically(project.root / LOCK_FILE, HEADER + tomli_w.dumps(pins.to_toml()))
