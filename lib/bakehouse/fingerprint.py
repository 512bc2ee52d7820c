"""The content key of a bake, its input summary, and the diff that explains a rebake.

The summary holds everything that decides what an image contains and nothing else: no
timestamps, output names, log paths, credentials, places (regions) or refresh schedule
(`rebuild_every` is a freshness rule, epoch.py). The key is a sha256 over it. Each image
keeps its summary, so a changed key is explained as a diff against the image in use.

Schema 2 (this one) holds: the provider and the image's architecture; the definition (the
template, the base, [vars], the provider's settings that change the image); the files the
template, rendered with this bake's values, reads or includes; each package's version and
hash; the source image by what it is (a Debian suite, an AMI's owner and name); for a
service, the id of the base image it builds on, one id shared by all the base's places.
Lists whose order means nothing (regions, owners) are sorted or left out by the providers
before they get here; packages are keyed by name. Images recorded under schema 1 are still
recognised (legacy.py).
"""

from __future__ import annotations

import json
from typing import Any

from .files import sha256_bytes
from .packages import ResolvedPackage

KEY_SCHEMA = 2
SHORT_HASH = 12

Summary = dict[str, Any]


def summarise(
    provider: str,
    architecture: str,
    definition: dict[str, Any],
    files: dict[str, str],
    packages: tuple[ResolvedPackage, ...],
    source: dict[str, Any] | None,
    base_image: dict[str, Any] | None,
) -> Summary:
    return {
        "schema": KEY_SCHEMA,
        "provider": provider,
        "architecture": architecture,
        "definition": definition,
        "files": dict(sorted(files.items())),
        "packages": {package.name: package.identity for package in packages},
        "source": source,
        "base_image": base_image,
    }


def content_key(summary: Summary) -> str:
    canonical = json.dumps(summary, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return sha256_bytes(canonical.encode())


def compact(summary: Summary) -> Summary:
    """The summary with its sha256 digests cut to 12 hex characters: small enough to travel in
    AMI tags, still telling which file or package changed. The key is always computed over the
    full summary; explain() compares compact forms, so a compact summary explains as well."""
    short = dict(summary)
    if isinstance(summary.get("files"), dict):
        short["files"] = {name: str(digest)[:SHORT_HASH] for name, digest in summary["files"].items()}
    if isinstance(summary.get("packages"), dict):
        short["packages"] = {
            name: {**identity, "sha256": identity["sha256"][:SHORT_HASH] if identity.get("sha256") else None}
            for name, identity in summary["packages"].items()
        }
    return short


def explain(old: Summary | None, new: Summary) -> list[str]:
    """Why an image with summary `new` differs from the image in use, whose summary is `old`.
    Each reason names one thing that changed; nothing that is the same is named."""
    if old is None:
        return ["no image yet"]
    old, new = compact(old), compact(new)
    if old.get("schema") != new["schema"]:
        return _explain_across_schemas(old, new)
    reasons = (
        _definition_changes(old.get("definition") or {}, new["definition"])
        + _file_changes(old.get("files") or {}, new["files"])
        + _package_changes(old.get("packages") or {}, new["packages"])
    )
    if old.get("source") != new["source"]:
        reasons.append(f"source {_source(old.get('source'))} -> {_source(new['source'])}")
    if old.get("base_image") != new["base_image"]:
        reasons.append(f"base image {_image_id(old.get('base_image'))} -> {_image_id(new['base_image'])}")
    if old.get("architecture") != new["architecture"]:
        reasons.append(f"architecture {old.get('architecture')} -> {new['architecture']}")
    return reasons or ["inputs changed"]


def _explain_across_schemas(old: Summary, new: Summary) -> list[str]:
    """An image recorded under an older key schema that legacy.py did not recognise: name
    what can be compared across schemas (packages, files, vars), and the schema itself."""
    old_definition = old.get("definition") or {}
    reasons = [
        f"definition: vars {_short(old_definition.get('vars'))} -> {_short(new['definition'].get('vars'))}"
    ] if old_definition.get("vars") != new["definition"].get("vars") else []
    if old_definition.get("template") != new["definition"].get("template"):
        reasons.append(f"definition: template {old_definition.get('template')} -> {new['definition'].get('template')}")
    old_files = {name: digest for name, digest in (old.get("files") or {}).items() if name in new["files"]}
    reasons += _file_changes(old_files, new["files"]) + _package_changes(old.get("packages") or {}, new["packages"])
    return reasons or [f"bakehouse key schema {old.get('schema')} -> {new['schema']}"]


def _definition_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """One reason per changed key; a provider's settings (a table under its name, e.g. `aws`)
    name each changed setting, never the whole table."""
    reasons = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if key == "source" or before == after:
            continue
        if key not in ("vars",) and isinstance(before, dict) and isinstance(after, dict):
            reasons += [
                f"definition: {key}.{name} {_short(before.get(name))} -> {_short(after.get(name))}"
                for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name)
            ]
        else:
            reasons.append(f"definition: {key} {_short(before)} -> {_short(after)}")
    return reasons


def _file_changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    reasons = []
    for name in sorted(set(old) | set(new)):
        if name not in old:
            reasons.append(f"template file {name} added")
        elif name not in new:
            reasons.append(f"template file {name} no longer used")
        elif old[name] != new[name]:
            reasons.append(f"template file {name} changed")
    return reasons


def _package_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    reasons = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before is None:
            reasons.append(f"{name} {_version(after)} added")
        elif after is None:
            reasons.append(f"{name} removed")
        elif before.get("version") != after.get("version"):
            reasons.append(f"{name} {_version(before)} -> {_version(after)}")
        elif before != after:
            reasons.append(f"{name} {_version(after)} rebuilt with other content")
    return reasons


def _version(identity: dict[str, Any]) -> str:
    return identity.get("version") or "(latest)"


def _image_id(base_image: dict[str, Any] | None) -> str:
    if not base_image:
        return "none"
    return str(base_image.get("image"))


def _source(source: Any) -> str:
    """A source image as its owner/name (by region in summaries recorded before regions whose
    images differ were decided apart)."""
    if isinstance(source, dict) and isinstance(source.get("image"), dict):
        return f"image {source['image'].get('owner')}/{source['image'].get('name')}"
    if isinstance(source, dict) and isinstance(source.get("by_region"), dict):
        return "images " + ", ".join(
            f"{region}:{image.get('owner')}/{image.get('name')}" for region, image in sorted(source["by_region"].items())
        )
    return _short(source)


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_short(v)}" for k, v in sorted(value.items())) + "}"
    return "none" if value is None else str(value)
