"""The content key of a bake, its input summary, and the diff that explains a rebake.

The summary holds everything that decides what an image contains and nothing else (no
timestamps, output names, log paths or credentials). The key is a sha256 over it. Each image
keeps its summary, so a changed key is explained as a diff against the newest image.
"""

from __future__ import annotations

import json
from typing import Any

from .files import sha256_bytes
from .packages import ResolvedPackage

KEY_SCHEMA = 1
SHORT_HASH = 12

Summary = dict[str, Any]


def summarise(
    definition: dict[str, Any],
    files: dict[str, str],
    packages: tuple[ResolvedPackage, ...],
    source: dict[str, Any] | None,
    base_image: dict[str, Any] | None,
    epoch: str | None,
) -> Summary:
    return {
        "schema": KEY_SCHEMA,
        "definition": definition,
        "files": dict(sorted(files.items())),
        "packages": {package.name: package.identity for package in packages},
        "source": source,
        "base_image": base_image,
        "epoch": epoch,
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
    """Why an image with summary `new` differs from the newest image, whose summary is `old`."""
    if old is None:
        return ["no image yet"]
    old, new = compact(old), compact(new)
    if old.get("schema") != new["schema"]:
        return [f"key schema {old.get('schema')} -> {new['schema']}"]
    reasons = (
        _definition_changes(old.get("definition") or {}, new["definition"])
        + _file_changes(old.get("files") or {}, new["files"])
        + _package_changes(old.get("packages") or {}, new["packages"])
    )
    if old.get("source") != new["source"]:
        reasons.append(f"source {_short(old.get('source'))} -> {_short(new['source'])}")
    if old.get("base_image") != new["base_image"]:
        reasons.append(f"base image {_image_ids(old.get('base_image'))} -> {_image_ids(new['base_image'])}")
    if old.get("epoch") != new["epoch"]:
        reasons.append(f"epoch {old.get('epoch')} -> {new['epoch']}")
    return reasons or ["inputs changed"]


def _definition_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    changed = [key for key in sorted(set(old) | set(new)) if key != "source" and old.get(key) != new.get(key)]
    return [f"definition: {key} {_short(old.get(key))} -> {_short(new.get(key))}" for key in changed]


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


def _image_ids(base_image: dict[str, Any] | None) -> str:
    if not base_image:
        return "none"
    ids = base_image.get("ids") or {}
    return ",".join(ids[place] if len(ids) == 1 else f"{place}:{ids[place]}" for place in sorted(ids))


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_short(v)}" for k, v in sorted(value.items())) + "}"
    return "none" if value is None else str(value)
