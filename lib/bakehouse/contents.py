"""What is inside an image: its package manifest, read from the image's own dpkg database.

Every bake ends with the image's installed packages listed by dpkg-query inside the image
(templates/scripts/image-contents.sh: against the unpacked root locally, on the instance over
SSH for AMIs), one line per package:

    <name> TAB <version> TAB <architecture> TAB <source name> TAB <source version>
    #apt TAB <sources file> TAB <one of its lines>     (inside the image only: its apt sources)

bakehouse turns that into the image's manifest and keeps it beside the image's record
(registry.contents_path), never in a tag (tags are small). Where a bake cannot look inside the
image (an AMI baked with `communicator = "none"`), the manifest lists what bakehouse itself
installed and says it is partial.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .aptrepo import Repository, parse_sources
from .errors import BakehouseError, PackageError
from .files import write_atomically

MANIFEST_FORMAT = 1
SOURCE_LINE = "#apt\t"
PARTIAL_NOTE = "bakehouse could not look inside this image (communicator = \"none\"): these are only the packages it installed"


class ContentsError(BakehouseError):
    """An image's manifest is missing, damaged, or was not produced by its bake."""


@dataclass(frozen=True, order=True)
class InstalledPackage:
    name: str
    version: str
    architecture: str = ""
    source: str = ""  # the source package's name; empty when it is the same as `name`
    source_version: str = ""  # empty when the same as `version`

    def to_json(self) -> dict[str, str]:
        data = {"name": self.name, "version": self.version, "architecture": self.architecture}
        if self.source:
            data["source"] = self.source
        if self.source_version:
            data["source_version"] = self.source_version
        return data


@dataclass(frozen=True)
class Manifest:
    """The packages of one image, sorted by name and architecture."""

    image_id: str
    bake: str
    packages: tuple[InstalledPackage, ...]
    complete: bool = True  # False: only what bakehouse installed (see `note`)
    note: str = ""
    # The apt sources the image itself names (listed inside it over SSH), as one-line entries
    # (`deb URI SUITE COMPONENT`), and, for `rebuild_when = "updates"`, the Release (sha256)
    # each source had when the image was baked (updates.py).
    sources: tuple[str, ...] = ()
    sources_seen: dict[str, str] = field(default_factory=dict)
    package_format: str = "deb"  # "rpm": an Amazon Linux image's rpmdb (its SBOM names RPMs)

    def by_name(self) -> dict[str, InstalledPackage]:
        """One entry per package name (a Multi-Arch package shows as name:arch, and a package
        installed at several versions at once, as RPM keeps kernels, as name-version.arch)."""
        names = Counter(package.name for package in self.packages)
        builds = Counter((package.name, package.architecture) for package in self.packages)

        def shown(package: InstalledPackage) -> str:
            if names[package.name] == 1:
                return package.name
            if builds[package.name, package.architecture] == 1:
                return f"{package.name}:{package.architecture}"
            return f"{package.name}-{package.version}.{package.architecture}"

        return {shown(package): package for package in self.packages}

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT, "image_id": self.image_id, "bake": self.bake,
            "complete": self.complete, "note": self.note,
            "packages": [package.to_json() for package in self.packages],
            "sources": list(self.sources), "sources_seen": self.sources_seen,
            **({"package_format": self.package_format} if self.package_format != "deb" else {}),
        }

    @classmethod
    def from_json(cls, data: Any, shown_as: str) -> Manifest:
        try:
            if data.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            packages = tuple(
                InstalledPackage(
                    name=str(item["name"]), version=str(item["version"]), architecture=str(item.get("architecture", "")),
                    source=str(item.get("source", "")), source_version=str(item.get("source_version", "")),
                )
                for item in data["packages"]
            )
            return cls(
                str(data["image_id"]), str(data["bake"]), packages, bool(data["complete"]), str(data.get("note", "")),
                tuple(str(line) for line in data.get("sources", [])),
                {str(k): str(v) for k, v in dict(data.get("sources_seen", {})).items()},
                str(data.get("package_format", "deb")),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise ContentsError(f"{shown_as}: not a bakehouse package manifest ({error})") from None


def parse_dpkg_query(text: str, image_id: str, bake: str, shown_as: str) -> Manifest:
    """The manifest from image-contents.sh's output."""
    packages, source_files = [], {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith(SOURCE_LINE):  # a line of the image's apt sources (no package starts with '#')
            file, _, entry = line[len(SOURCE_LINE):].partition("\t")
            source_files.setdefault(file, []).append(entry)
            continue
        fields = line.split("\t")
        if len(fields) != 5 or not fields[0] or not fields[1]:
            raise ContentsError(f"{shown_as}:{number}: not a package line: {line[:80]!r}")
        name, version, architecture, source, source_version = fields
        # dpkg-query names the source as "name (version)" when its version differs; keep both apart
        source = source.split(" ", 1)[0]
        packages.append(InstalledPackage(
            name, version, architecture,
            "" if source in ("", name) else source,
            "" if source_version in ("", version) else source_version,
        ))
    sources = []
    for file, lines in source_files.items():
        try:
            sources += [one_line(source) for source in parse_sources("\n".join(lines), "", f"{shown_as}: {file}")]
        except PackageError:
            continue  # a sources file apt itself would not read: no updates from it
    if not packages:
        raise ContentsError(f"{shown_as}: the image lists no installed packages")
    return Manifest(image_id, bake, tuple(sorted(packages)), sources=tuple(dict.fromkeys(sources)))


def one_line(source: Repository) -> str:
    """An apt source as a one-line entry (aptrepo.parse_sources reads it back)."""
    options = " [trusted=yes]" if source.trusted else f" [signed-by={source.signed_by}]" if source.signed_by else ""
    return f"deb{options} {source.url} {source.suite} {' '.join(source.components)}"


def partial_manifest(image_id: str, bake: str, installed: dict[str, str | None], architecture: str) -> Manifest:
    """What bakehouse installed, for an image it could not look inside (a service: with what
    its base's manifest lists)."""
    packages = tuple(sorted(
        InstalledPackage(name, version or "(latest)", architecture) for name, version in installed.items()
    ))  # "(latest)": installed unpinned, at whatever version its source had then
    return Manifest(image_id, bake, packages, complete=False, note=PARTIAL_NOTE)


def write_manifest(path: Path, manifest: Manifest) -> None:
    write_atomically(path, json.dumps(manifest.to_json(), indent=1, sort_keys=True) + "\n", durable=True)


def read_manifest(path: Path, shown_as: str) -> Manifest:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ContentsError(f"{shown_as}: no package manifest was recorded for this image") from None
    except (OSError, ValueError) as error:
        raise ContentsError(f"{shown_as}: cannot read its package manifest ({error})") from None
    return Manifest.from_json(data, shown_as)


def manifest_text(manifest: Manifest) -> str:
    """The manifest for people: one package per line, aligned."""
    rows = [(package.name, package.version, package.architecture) for package in manifest.packages]
    width = max((len(name) for name, _, _ in rows), default=0)
    vwidth = max((len(version) for _, version, _ in rows), default=0)
    header = f"{manifest.image_id} ({manifest.bake}): {len(rows)} packages"
    if not manifest.complete:
        header += f", partial: {manifest.note}"
    return "\n".join([header] + [f"  {n:<{width}}  {v:<{vwidth}}  {a}" for n, v, a in rows]) + "\n"
