"""Retention: which images `doit prune` may delete, and why each other one is kept.

A policy keeps the newest `keep` images of a bake and every image younger than `min_age`;
it is set per bake in a `[prune]` table, with a project-wide default in `bakehouse.toml`
(`[prune]`, same keys), else 5 images and 14 days. Whatever the policy, never deleted:
- the image each bake is up to date with (and an image being completed in more places),
- each bake's image in use, and the base of a running bake (commands/prune.py finds both),
- an image a channel points at, and the next images (`rollback_targets`, 2) each channel's
  rollbacks go back to (channels.py),
- an image that a kept image was built on, transitively, whichever bake it belongs to,
  (a revoked image is not among the newest `keep`, nor kept for `min_age`: it goes once it
  has been revoked for `revoked_min_age`, 1 day, unless one of these keeps it),
- an image the provider reports in use outside bakehouse (AMIs: an instance in any state
  but terminated, a launch template version, a launch configuration),
- anything bakehouse did not make: registries list only images they tagged or recorded.
Deciding is pure (`decide_retention`); the command (commands/prune.py) asks the registries
and deletes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .durations import parse_duration
from .errors import DefinitionError
from .keyref import Key, names
from .model import Bake
from .project import Project
from .projectfile import PROJECT_FILE, project_table
from .registry import ImageRecord, created_at
from .revocation import revoked_at, usable, withdrawn
from .tomlcheck import reject_unknown, type_name

DEFAULT_KEEP = 5
DEFAULT_MIN_AGE = timedelta(days=14)
DEFAULT_ROLLBACK_TARGETS = 2
DEFAULT_REVOKED_MIN_AGE = timedelta(days=1)
POLICY_KEY_DOCS = (
    Key(("keep",), "whole number, at least 1", f"`{DEFAULT_KEEP}`",
        "the newest images of each bake that are always kept, whatever their age"),
    Key(("min_age",), "duration", f'`"{DEFAULT_MIN_AGE.days}d"`',
        'an image younger than this is kept (`"90s"`, `"45m"`, `"2h"`, `"14d"`, `"2w"`)'),
    Key(("rollback_targets",), "whole number, at least 0", f"`{DEFAULT_ROLLBACK_TARGETS}`",
        "the images each channel's next rollbacks would go back to that are kept (what a channel points at always is)"),
    Key(("revoked_min_age",), "duration", f'`"{DEFAULT_REVOKED_MIN_AGE.days}d"`',
        "a revoked image is kept this long after it was revoked (to restore it), then goes, whatever `keep` and "
        "`min_age` say, unless something else keeps it"),
)
POLICY_KEYS = names(POLICY_KEY_DOCS)
MAX_AGE_HOURS = 100 * 366 * 24


@dataclass(frozen=True)
class Policy:
    keep: int = DEFAULT_KEEP
    min_age: timedelta = DEFAULT_MIN_AGE
    rollback_targets: int = DEFAULT_ROLLBACK_TARGETS
    revoked_min_age: timedelta = DEFAULT_REVOKED_MIN_AGE

    def describe_age(self) -> str:
        return describe(self.min_age)


@dataclass(frozen=True)
class Verdict:
    image: ImageRecord
    delete: bool
    why: list[str] = field(default_factory=list)  # every reason it is kept, or why it goes


def parse_policy(where: str, table: Any, default: Policy) -> Policy:
    """A `[prune]` table; keys it leaves out come from `default`."""
    if table is None:
        return default
    if not isinstance(table, dict):
        raise DefinitionError(f"{where}: prune must be a table ([prune]), not {type_name(table)}")
    reject_unknown(where, "prune.", table, POLICY_KEYS)
    keep = table.get("keep", default.keep)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise DefinitionError(f"{where}: prune.keep must be a whole number of images, at least 1, not {keep!r}")
    min_age = default.min_age if "min_age" not in table else _age(where, table["min_age"], "min_age")
    revoked_age = default.revoked_min_age if "revoked_min_age" not in table else _age(
        where, table["revoked_min_age"], "revoked_min_age")
    targets = table.get("rollback_targets", default.rollback_targets)
    if isinstance(targets, bool) or not isinstance(targets, int) or targets < 0:
        raise DefinitionError(f"{where}: prune.rollback_targets must be a whole number of images, at least 0, not {targets!r}")
    return Policy(keep, min_age, targets, revoked_age)


def _age(where: str, value: Any, key: str) -> timedelta:
    age = parse_duration(f"{where}: prune.{key}", value)
    if age > timedelta(hours=MAX_AGE_HOURS):
        raise DefinitionError(f"{where}: prune.{key}: {value!r} is more than 100 years")
    return age


def policy_of(bake: Bake, default: Policy) -> Policy:
    return parse_policy(bake.where, dict(bake.prune) if bake.prune else None, default)


def project_policy(project: Project) -> Policy:
    """The project-wide default: bakehouse.toml's [prune], else 5 images and 14 days."""
    return parse_policy(PROJECT_FILE, project_table(project, "prune"), Policy())


def describe(age: timedelta) -> str:
    """An age as a user writes one: 14d, 36h; under an hour in minutes."""
    seconds = int(age.total_seconds())
    if seconds >= 86400:
        return f"{seconds // 86400}d"
    if seconds >= 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m"


def decide_retention(
    bakes: list[Bake],
    images: dict[str, list[ImageRecord]],  # every bake's images, newest first (all bakes, not only the pruned)
    policies: dict[str, Policy],
    protected: dict[str, list[str]],  # image id -> why it must stay (current, in use outside bakehouse)
    now: datetime,
) -> list[Verdict]:
    """A verdict for every image of `bakes`, in bake order, newest first."""
    why: dict[str, list[str]] = {image_id: list(reasons) for image_id, reasons in protected.items()}
    gone: dict[str, str] = {}  # why a revoked image may go
    for bake in bakes:
        policy = policies[bake.name]
        for image in images.get(bake.name, []):
            if image.revoked is not None and withdrawn(image.revoked, now):
                since = now - revoked_at(image.revoked)
                if since < policy.revoked_min_age:
                    why.setdefault(image.image_id, []).append(f"revoked less than {describe(policy.revoked_min_age)} ago")
                gone[image.image_id] = f"revoked {describe(max(since, timedelta(0)))} ago ({image.revoked.reason})"
        for rank, image in enumerate(usable(images.get(bake.name, []), now)):
            if rank < policy.keep:
                why.setdefault(image.image_id, []).append(f"newest {policy.keep}")
            if now - created_at(image) < policy.min_age:
                why.setdefault(image.image_id, []).append(f"younger than {policy.describe_age()}")
    pruned = {bake.name for bake in bakes}
    kept = {image.image_id: image for name, found in images.items() for image in found
            if name not in pruned or why.get(image.image_id)}
    _keep_bases(kept, images, why)
    return [Verdict(image, delete=not why.get(image.image_id), why=why.get(image.image_id) or [_gone(
        image, gone, policies[bake.name])]) for bake in bakes for image in images.get(bake.name, [])]


def _gone(image: ImageRecord, gone: dict[str, str], policy: Policy) -> str:
    """Why an image nothing keeps may be deleted."""
    return gone.get(image.image_id) or f"older than {policy.describe_age()} and not among the newest {policy.keep}"


def _keep_bases(kept: dict[str, ImageRecord], images: dict[str, list[ImageRecord]], why: dict[str, list[str]]) -> None:
    """Every image a kept image was built on is kept too, transitively."""
    by_id = {image.image_id: image for found in images.values() for image in found}
    pending = list(kept.values())
    while pending:
        image = pending.pop()
        base = by_id.get(image.base_image or "")
        if base is None:
            continue
        reason = f"base of {image.image_id}"
        if reason not in why.setdefault(base.image_id, []):
            why[base.image_id].append(reason)
        if base.image_id not in kept:
            kept[base.image_id] = base
            pending.append(base)
