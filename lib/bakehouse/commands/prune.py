"""`doit prune [BAKE ...]`: delete old images and what they own, never one in use.

A dry run by default: one row per image (its age, size, places, and keep or delete with
every reason), then a total. `--apply` deletes what the rows say, holding each pruned bake's
lock (a bake of it waits; a bake of another image never loses its base: the base's current
image and every image a kept image was built on are kept). An interrupted prune is finished
by the next one (retention.py says what is kept; each registry how it deletes). It also
removes cached package indexes no run has used for 30 days (updates.py), and the logs of
failed bakes and the bake service's ended runs older than the project's min_age (leftovers.py).

Exit status: 0 done (or nothing to do), 2 cannot prune (a bake cannot be decided, AWS cannot
be asked what uses an image; nothing is deleted), 3 bad bake files or usage.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from doit.exceptions import InvalidCommand

from ..channels import current, rollback_targets
from ..decide import Planner
from ..errors import BakehouseError
from ..notify import notify
from ..leftovers import old_failed_logs, old_service_runs
from ..locks import bake_lock, running_bases
from ..registry import ImageRecord, created_at, in_use
from ..retention import Verdict, decide_retention, describe, policy_of, project_policy
from ..revocation import usable, withdrawn
from ..tasks import planner_from_tasks
from ..tomlcheck import did_you_mean
from ..updates import UNUSED_DAYS
from . import Command

EXIT_DONE, EXIT_CANNOT_PRUNE = 0, 2


@dataclass(frozen=True)
class PruneRow:
    bake: str
    image: str
    created: str
    age: str
    bytes: int
    places: list[str]
    action: str  # "keep" | "delete"
    why: list[str]


def pruned_bakes(planner: Planner, names: list[str]) -> list[str]:
    """The named bakes (only those: a service's base is pruned when named), else all."""
    for name in names:
        if name not in planner.graph.names:
            raise InvalidCommand(f"no bake '{name}' in bakes/{did_you_mean(name, planner.graph.names)}")
    return [name for name in planner.graph.names if not names or name in names]


def verdicts(planner: Planner, names: list[str], held: frozenset[str] = frozenset()) -> list[Verdict]:
    """What a prune of `names` would keep and delete, asked of the registries now (under the
    locks of the bakes in `held`). Whatever the plan says today, never deleted: each bake's
    image in use (the one a run last baked or found current: its base may be a week stale,
    or just rebaked, and it is still what is deployed), and each image a running bake builds on."""
    default = project_policy(planner.project)
    bakes = [planner.graph[name] for name in names]
    for name in planner.graph.names:
        planner.forget(name)
    images = {name: planner.images(name) for name in planner.graph.names}
    protected: dict[str, list[str]] = {}
    for bake in bakes:
        decision = planner.decide(bake.name)
        for part in decision.each():
            where = f" in {', '.join(part.places)}" if decision.parts else ""
            if part.current is not None:
                protected.setdefault(part.current.image_id, []).append(f"current image of {bake.name}{where}")
            if part.partial is not None:
                protected.setdefault(part.partial.image_id, []).append(
                    f"being completed in {', '.join(part.missing)}")
        used = in_use(usable(images[bake.name], planner.now))
        if used is not None and used.image_id not in protected:  # else kept as current or being completed
            protected.setdefault(used.image_id, []).append(f"image in use of {bake.name}")
        moves = planner.provider_of(bake.name).registry.channel_moves(bake.name)
        for channel in bake.channels:  # what a channel points at, and where its next rollbacks go
            pointed = current(moves, channel)
            if pointed is not None:
                protected.setdefault(pointed, []).append(f"channel {channel}")
            revoked = {image.image_id for image in images[bake.name] if withdrawn(image.revoked, planner.now)}
            for target in rollback_targets(moves, channel, policy_of(bake, default).rollback_targets):
                if target not in revoked:  # no rollback goes back to a revoked image
                    protected.setdefault(target, []).append(f"rollback target of {channel}")
    for image_id, bake_name in running_bases(planner.project.state_dir / "locks", set(held)).items():
        protected.setdefault(image_id, []).append(f"base of the running bake of {bake_name}")
    by_provider: dict[str, list[ImageRecord]] = {}
    for bake in bakes:
        by_provider.setdefault(bake.provider, []).extend(images[bake.name])
    for provider, found in by_provider.items():
        for image_id, users in planner.providers[provider].registry.used_outside(found).items():
            protected.setdefault(image_id, []).extend(users)
    policies = {bake.name: policy_of(bake, default) for bake in bakes}
    return decide_retention(bakes, images, policies, protected, planner.now)


def rows(planner: Planner, found: list[Verdict]) -> list[PruneRow]:
    return [
        PruneRow(
            bake=v.image.bake, image=v.image.image_id, created=v.image.created,
            age=_age(planner.now, v.image), bytes=planner.provider_of(v.image.bake).registry.size(v.image),
            places=sorted(v.image.locations), action="delete" if v.delete else "keep", why=v.why,
        )
        for v in found
    ]


def _age(now: datetime, image: ImageRecord) -> str:
    return describe(max(now - created_at(image), timedelta(0)))


def size_text(size: int) -> str:
    if size >= 2**30:
        return f"{size / 2**30:.1f} GiB"
    if size < 2**20:
        return f"{size / 2**10:.1f} KiB"
    return f"{size / 2**20:.1f} MiB"


def prune_table(table: list[PruneRow], applied: bool, freed: int | None = None) -> str:
    lines = [("BAKE", "IMAGE", "AGE", "SIZE", "WHERE", "ACTION", "WHY")] + [
        (row.bake, row.image, row.age, size_text(row.bytes), ",".join(row.places), row.action, _why(row.why))
        for row in table
    ]
    widths = [max(len(line[column]) for line in lines) for column in range(6)]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line[:6], widths)) + "  " + line[6] for line in lines]
    return "\n".join(line.rstrip() for line in text) + "\n" + total(table, applied, freed) + "\n"


def _why(why: list[str]) -> str:
    shown = "; ".join(why[:3])
    return shown + (f"; and {len(why) - 3} more" if len(why) > 3 else "")


def to_delete(table: list[PruneRow], freed: int | None = None) -> tuple[int, int]:
    """How many images the rows delete, and how many bytes that frees (`freed`, counted over
    them together, where known; else the sum of each row's own bytes)."""
    gone = [row for row in table if row.action == "delete"]
    return len(gone), sum(row.bytes for row in gone) if freed is None else freed


def freed_by(planner: Planner, found: list[Verdict]) -> int:
    """What deleting every image the verdicts delete frees, each registry counting its
    images together: a base's layer, shared with the services deleted with it, counts once."""
    by_registry: dict[int, tuple[Any, list[ImageRecord]]] = {}
    for verdict in found:
        if verdict.delete:
            registry = planner.provider_of(verdict.image.bake).registry
            by_registry.setdefault(id(registry), (registry, []))[1].append(verdict.image)
    return sum(registry.freed(images) for registry, images in by_registry.values())


def total(table: list[PruneRow], applied: bool, freed: int | None = None) -> str:
    count, size = to_delete(table, freed)
    verb = "deleted" if applied else "to delete"
    return f"{len(table)} images: {count} {verb} ({size_text(size)}), {len(table) - count} kept"


class PruneCommand(Command):
    """The `doit prune` command, registered through the `doit.COMMAND` entry point."""

    exit_codes = ((0, "listed (or, with --apply, deleted)"), (2, "cannot prune: the registry cannot be read or written"),
                  (3, "a bad option or bake file"))

    name = "prune"
    doc_purpose = "delete old images and their snapshots, never one in use (a dry run unless --apply)"
    doc_usage = "[BAKE ...]"
    doc_description = (
        "Keeps the newest `keep` images of each bake and every image younger than `min_age`\n"
        "([prune] in the bake file, or in bakehouse.toml; else 5 and 14d), the current image,\n"
        "what kept images were built on, and AMIs used by instances, launch templates or\n"
        "launch configurations. Exit status: 0 done, 2 cannot prune, 3 usage."
    )
    cmd_options = (
        {"name": "apply", "long": "apply", "type": bool, "default": False,
         "help": "delete what the dry run lists"},
        {"name": "as_json", "long": "json", "type": bool, "default": False, "help": "print JSON"},
    )

    def _execute(self, apply: bool, as_json: bool, pos_args: list[str]) -> int:
        planner = planner_from_tasks(self.task_list)
        names = pruned_bakes(planner, [name.removeprefix("bake:") for name in pos_args or []])
        out = sys.stderr if as_json else self.outstream
        try:
            with ExitStack() as locks:
                if apply:
                    for name in sorted(names):  # one order for every prune: two never deadlock
                        locks.enter_context(bake_lock(planner.project.state_dir / "locks", name, out))
                found = verdicts(planner, names, frozenset(names) if apply else frozenset())
                table = rows(planner, found)
                freed = freed_by(planner, found)  # before anything is deleted
                deleted = self._delete(planner, names, found, out) if apply else []
        except BakehouseError as error:
            sys.stderr.write(f"ERROR: cannot prune: {error}\n")
            return EXIT_CANNOT_PRUNE
        if deleted:
            gone = [{"bake": v.image.bake, "image": v.image.image_id, "why": v.why} for v in found
                    if v.image.image_id in deleted]
            notify(planner.project, "prune", {"deleted": gone}, lambda line: sys.stderr.write(line + "\n"))
        if as_json:
            count, size = to_delete(table, freed)
            self.outstream.write(json.dumps({
                "images": [vars(row) for row in table], "applied": apply, "deleted": deleted,
                "delete": count, "bytes": size,
            }, indent=2) + "\n")
        else:
            self.outstream.write(prune_table(table, apply, freed))
        return EXIT_DONE

    def _delete(self, planner: Planner, names: list[str], found: list[Verdict], out: Any) -> list[str]:
        deleted = []
        for verdict in found:
            if verdict.delete:
                image = verdict.image
                gone = planner.provider_of(image.bake).registry.delete(image)
                out.write(f"[{image.bake}] deleted {image.image_id}: {', '.join(gone)}\n")
                deleted.append(image.image_id)
        for name in names:
            planner.forget(name)  # what is kept of the registry predates the deletes
            for leftover in planner.provider_of(name).registry.finish_deletions(name):
                out.write(f"[{name}] removed {leftover}, left by an interrupted prune or bake\n")
        for registry in {id(r): r for r in (planner.provider_of(name).registry for name in names)}.values():
            for cached in registry.clean_caches():  # once per registry, not once per bake
                out.write(f"removed {cached}, which no image has any more\n")
        for cached in planner.updates.clean(time.time()):  # file times are the machine's, not BAKEHOUSE_NOW's
            out.write(f"removed {cached}, which no run has used for {UNUSED_DAYS} days\n")
        project = planner.project
        age = project_policy(project).min_age
        older_than = time.time() - age.total_seconds()
        for name in names:
            images = [image.image_id for image in planner.images(name)]
            for log in old_failed_logs(project, name, images, older_than):
                log.unlink(missing_ok=True)
                out.write(f"[{name}] removed {project.relative(log)}, the log of a failed bake older than {describe(age)}\n")
        if set(names) == set(planner.graph.names):  # the service's runs belong to no one bake
            for path in old_service_runs(project, older_than):
                path.unlink(missing_ok=True)
                out.write(f"removed {project.relative(path)}, of a bake service run older than {describe(age)}\n")
        return deleted
