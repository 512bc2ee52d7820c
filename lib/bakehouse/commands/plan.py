"""`doit plan [BAKE ...]`: what `doit` would bake, and why, before anything runs.

One row per bake (the named bakes and what they build on; all bakes when none is named):
the action (keep, bake, or bake only the missing places), the image in use, and every
reason, transitively: a service says when its base will rebake. It uses the same decisions
as the bake tasks, so it agrees with what `doit` then does and with `doit info`.
Lineage, as image registries flag it: a service image built on a base image that is no
longer the newest one of its base is noted.

`--matrix github|gitlab` prints the bakes that would run as a CI matrix in stages (matrix.py);
`--lock` resolves every input afresh (whatever bakehouse.lock pinned) and writes what it
resolved to bakehouse.lock (pins.py).

Exit status: 0 nothing to bake, 1 something would bake (or have its launch permissions set),
2 a bake cannot be planned (its row says why), 3 bad definitions or usage (doit's own). An
AWS bake's row says who may launch its images when they are not private (`launch: public`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field

from doit.exceptions import InvalidCommand

from ..decide import Decision, Planner
from ..errors import BakehouseError
from ..matrix import FORMATS, github, gitlab, stages
from ..publish import pending
from ..revocation import latest
from ..pins import LOCK_FILE, PackagePin, Pins, repository_pin, write_pins
from ..model import BakeGraph
from ..tasks import planner_from_tasks
from ..tomlcheck import did_you_mean
from . import Command

EXIT_NOTHING_TO_BAKE, EXIT_WOULD_BAKE, EXIT_CANNOT_PLAN = 0, 1, 2


@dataclass(frozen=True)
class PlanRow:
    bake: str
    provider: str
    action: str  # "keep" | "share" | "bake" | "bake-missing" | "publish" | "error"
    image: str | None  # the current image when kept, else the newest one
    locations: dict[str, str] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    base: str | None = None
    key: str | None = None
    lineage: str | None = None
    error: str | None = None
    launch: str | None = None  # who may launch the bake's images (AMIs): private, public, shared with ...
    # When the bake's places are built from different things (a source image that has
    # reached only some regions): one entry per group, with its places, action, image and key.
    parts: list[dict[str, object]] = field(default_factory=list)


def plan(planner: Planner, names: list[str]) -> list[PlanRow]:
    return [_row(planner, bake_name) for bake_name in selected(planner.graph, names)]


def selected(graph: BakeGraph, names: list[str]) -> list[str]:
    """The named bakes and what they build on, in bake order; every bake when none is named."""
    if not names:
        return graph.names
    wanted: set[str] = set()
    for name in names:
        name = name.removeprefix("bake:")
        if name not in graph.names:
            raise InvalidCommand(f"no bake '{name}' in bakes/{did_you_mean(name, graph.names)}")
        wanted.update(bake.name for bake in graph.chain(name))
    return [name for name in graph.names if name in wanted]


def _row(planner: Planner, name: str) -> PlanRow:
    bake = planner.graph[name]
    try:
        decision = planner.decide(name)
        lineage = _lineage(planner, decision)
    except BakehouseError as error:
        return PlanRow(name, bake.provider, "error", None, base=bake.base, error=str(error))
    image = decision.current or decision.partial or decision.newest
    locations = {} if image is None else dict(image.locations)
    if decision.parts:  # each place as the image of its own part has it
        locations = {place: ref for part in decision.parts if (shown := part.current or part.partial)
                     for place, ref in shown.locations.items() if place in part.places}
    reasons = list(decision.reasons) + ([decision.relaunch] if decision.relaunch else [])
    action = decision.action
    if action == "keep":  # up to date: its [publish] targets may still not hold its channels' images
        try:
            out_of_date = pending(planner, name)
        except BakehouseError as error:
            return PlanRow(name, bake.provider, "error", None, base=bake.base, error=str(error))
        if out_of_date:
            action, reasons = "publish", [publication.reason() for publication in out_of_date]
    return PlanRow(
        bake=name,
        provider=bake.provider,
        action=action,
        image=None if image is None else image.image_id,
        locations=locations,
        reasons=reasons,
        missing=list(decision.missing),
        base=bake.base,
        key=decision.key,
        lineage=lineage,
        launch=planner.provider_of(name).launch(bake),
        parts=[_part(part) for part in decision.parts],
    )


def _part(part: Decision) -> dict[str, object]:
    image = part.current or part.partial
    return {"places": list(part.places), "action": part.action, "image": None if image is None else image.image_id,
            "key": part.key, "reasons": list(part.reasons), "missing": list(part.missing)}


def _lineage(planner: Planner, decision: Decision) -> str | None:
    """A note when the service image in use is built on an older image of its base."""
    base = decision.bake.base
    image = decision.current or decision.newest
    if base is None or image is None or image.base_image is None:
        return None
    newest = latest(planner.images(base), planner.now)
    if newest is None or newest.image_id == image.base_image:
        return None
    return f"{image.image_id} is built on {image.base_image}, not on the newest {base} image {newest.image_id}"


def exit_code(rows: list[PlanRow]) -> int:
    if any(row.action == "error" for row in rows):
        return EXIT_CANNOT_PLAN
    return EXIT_WOULD_BAKE if any(row.action != "keep" for row in rows) else EXIT_NOTHING_TO_BAKE


def plan_json(rows: list[PlanRow]) -> str:
    counts = {action: sum(row.action == action for row in rows)
              for action in ("keep", "share", "bake", "bake-missing", "publish", "error")}
    return json.dumps({"bakes": [asdict(row) for row in rows], "counts": counts, "exit": exit_code(rows)}, indent=2)


def plan_table(rows: list[PlanRow]) -> str:
    table = [("BAKE", "ACTION", "IMAGE", "WHY")] + [
        (row.bake, row.action, row.image or "-", _why(row)) for row in rows
    ]
    widths = [max(len(line[column]) for line in table) for column in range(3)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line[:3], widths)) + "  " + line[3]
        for line in table
    ]
    lines += [f"note: {row.lineage}" for row in rows if row.lineage]
    to_bake = sum(row.action in ("bake", "bake-missing") for row in rows)
    to_share = sum(row.action == "share" for row in rows)
    to_publish = sum(row.action == "publish" for row in rows)
    errors = sum(row.action == "error" for row in rows)
    summary = f"{to_bake} to bake, {len(rows) - to_bake - errors} up to date"
    summary += f" ({to_share} with launch permissions to set)" if to_share else ""
    summary += f" ({to_publish} to publish)" if to_publish else ""
    lines.append(summary + (f", {errors} cannot be planned" if errors else ""))
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _why(row: PlanRow) -> str:
    if row.error is not None:
        return row.error
    if row.action == "keep":  # a share row's reason says who may launch, from whom before
        return "up to date" + (f"; launch: {row.launch}" if row.launch and row.launch != "private" else "")
    return "; ".join(row.reasons)


class PlanCommand(Command):
    """The `doit plan` command, registered through the `doit.COMMAND` entry point."""

    exit_codes = ((0, "nothing would bake"), (1, "something would bake (or be made in more places, or shared)"),
                  (2, "a bake cannot be planned (its row says why)"), (3, "a bad option or bake file"))

    name = "plan"
    doc_purpose = "say what `doit` would bake, and why, without baking"
    doc_usage = "[BAKE ...]"
    doc_description = (
        "One row per bake: keep / bake / bake-missing, the image in use, and every reason.\n"
        "Exit status: 0 nothing to bake, 1 something would bake, 2 a bake cannot be planned."
    )
    cmd_options = (
        {"name": "as_json", "long": "json", "type": bool, "default": False,
         "help": "print the plan as JSON (for CI)"},
        {"name": "matrix", "long": "matrix", "type": str, "default": "",
         "help": "print the bakes that would run as a CI matrix, in stages: github or gitlab"},
        {"name": "lock", "long": "lock", "type": bool, "default": False,
         "help": f"write the inputs this plan resolved to {LOCK_FILE}, for every bake to use"},
        {"name": "stage", "long": "stage", "type": int, "default": 0,
         "help": "with --matrix github: only stage N's matrix ({\"include\": [...]})"},
    )

    def _execute(self, as_json: bool, matrix: str, lock: bool, stage: int, pos_args: list[str]) -> int:
        if matrix and matrix not in FORMATS:
            raise InvalidCommand(f"--matrix takes {' or '.join(FORMATS)}, not '{matrix}'")
        planner = planner_from_tasks(self.task_list)
        if lock:
            planner.ignore_lock()  # the plan to write resolves afresh: that moves the pins forward
        rows = plan(planner, pos_args or [])
        if matrix:
            if any(row.action == "error" for row in rows):
                for row in rows:
                    if row.error:
                        sys.stderr.write(f"ERROR: {row.bake}: {row.error}\n")
                return EXIT_CANNOT_PLAN
            grouped = stages(planner.graph, {row.bake: row.action for row in rows})
            self.outstream.write((github(grouped, stage or None) if matrix == "github" else gitlab(grouped)) + "\n")
            return EXIT_NOTHING_TO_BAKE  # a matrix, even an empty one, is an answer: the jobs decide
        if lock and exit_code(rows) != EXIT_CANNOT_PLAN:
            pins = resolved_inputs(planner)
            write_pins(planner.project, pins)
            count = sum(map(len, pins.packages.values())) + sum(map(len, pins.sources.values()))
            sys.stderr.write(f"wrote {LOCK_FILE}: {count} pinned inputs\n")
        self.outstream.write(plan_json(rows) + "\n" if as_json else plan_table(rows))
        return exit_code(rows)


def resolved_inputs(planner: Planner) -> Pins:
    """What every bake resolved: repository packages (version, SHA256, URL), source images."""
    packages: dict[str, dict[str, PackagePin]] = {}
    sources: dict[str, dict[str, str]] = {}
    for name in planner.graph.names:
        decision = planner.decide(name)
        taken_from = {spec.partition("=")[0]: repository_pin(repository)
                      for repository in decision.bake.repositories for spec in repository.packages}
        pinned = {package.name: PackagePin(str(package.version), str(package.sha256), str(package.url),
                                           taken_from[package.name])
                  for package in decision.packages
                  if package.origin in ("repository", "locked") and package.sha256 and package.url}
        if pinned:
            packages[name] = pinned
        source = planner.provider_of(name).source_pins(decision.bake)
        if source:
            sources[name] = source
    return Pins(packages, sources)
