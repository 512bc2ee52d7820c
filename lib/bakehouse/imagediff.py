"""What changed between two images: their packages (from their manifests) and their inputs
(from the input summaries their records keep, explained as a rebake is: fingerprint.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .contents import Manifest
from .fingerprint import explain
from .registry import ImageRecord


@dataclass(frozen=True)
class PackageChange:
    name: str
    before: str
    after: str


@dataclass(frozen=True)
class ImageDiff:
    before: str  # image ids
    after: str
    added: tuple[tuple[str, str], ...]  # (name, version)
    removed: tuple[tuple[str, str], ...]
    changed: tuple[PackageChange, ...]
    inputs: tuple[str, ...]  # one line per input that differs, as `doit plan` words it
    partial: bool  # a manifest lists only what bakehouse installed: unlisted packages unknown

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.before, "to": self.after,
            "packages": {
                "added": [{"name": name, "version": version} for name, version in self.added],
                "removed": [{"name": name, "version": version} for name, version in self.removed],
                "changed": [asdict(change) for change in self.changed],
            },
            "inputs": list(self.inputs), "partial": self.partial,
        }


def diff_images(before: ImageRecord, old: Manifest, after: ImageRecord, new: Manifest) -> ImageDiff:
    old_packages, new_packages = old.by_name(), new.by_name()
    added = tuple((name, new_packages[name].version) for name in sorted(set(new_packages) - set(old_packages)))
    removed = tuple((name, old_packages[name].version) for name in sorted(set(old_packages) - set(new_packages)))
    changed = tuple(
        PackageChange(name, old_packages[name].version, new_packages[name].version)
        for name in sorted(set(old_packages) & set(new_packages))
        if old_packages[name].version != new_packages[name].version
    )
    if before.key == after.key:
        inputs: list[str] = []
    elif not before.summary or not after.summary:
        inputs = ["inputs differ (an image's record keeps no input summary)"]
    else:
        inputs = explain(before.summary, after.summary)
    return ImageDiff(before.image_id, after.image_id, added, removed, changed, tuple(inputs),
                     not (old.complete and new.complete))


def diff_text(diff: ImageDiff) -> str:
    lines = [f"{diff.before} -> {diff.after}"]
    if diff.partial:
        lines.append("  (a manifest is partial: only the packages bakehouse installed are compared)")
    lines.append("packages:" if diff.added or diff.removed or diff.changed else "packages: the same")
    lines += [f"  + {name} {version}" for name, version in diff.added]
    lines += [f"  - {name} {version}" for name, version in diff.removed]
    lines += [f"  ~ {change.name} {change.before} -> {change.after}" for change in diff.changed]
    lines.append("inputs:" if diff.inputs else "inputs: the same")
    lines += [f"  {line}" for line in diff.inputs]
    return "\n".join(lines) + "\n"
