"""`doit info TASK`: for a bake, the dry run users reach for first, in the bake's own words.

A bake task prints its name and description, what it builds on, and its decision: up to date
with which image and where, or each reason it would bake (the same decision `doit` and
`doit plan` make). Other tasks get doit's own report. An unknown task is one line with a
did-you-mean. Exit status as doit's: 0 up to date, 1 it would run (or cannot be decided),
3 a usage error.
"""

from __future__ import annotations

from typing import Any

from doit.cmd_info import Info
from doit.exceptions import InvalidCommand

from .. import __version__
from ..errors import BakehouseError
from ..project import BUILT_IN_TEMPLATES, Project
from ..tasks import ImageUpToDate, planner_for
from ..tomlcheck import did_you_mean
from . import Command
from .channels import channel_table


class InfoCommand(Command, Info):
    """Replaces doit's `info` (same name, registered through the `doit.COMMAND` entry point)."""

    exit_codes = ((0, "up to date"), (1, "it would bake, or cannot be decided"), (3, "no such task, or a bad option"))

    name = "info"

    def _execute(self, pos_args: list[str], hide_status: bool = False) -> int:
        tasks = {task.name: task for task in self.task_list}
        if len(pos_args) == 1 and pos_args[0] not in tasks:
            raise InvalidCommand(f"no task '{pos_args[0]}'{did_you_mean(pos_args[0], tasks)}; `doit list --all` lists them")
        check = _bake_check(tasks[pos_args[0]]) if len(pos_args) == 1 else None
        if check is None:
            return int(super()._execute(pos_args, hide_status=hide_status))
        return self._bake_info(tasks[pos_args[0]], check)

    def _bake_info(self, task: Any, check: ImageUpToDate) -> int:
        planner = planner_for(check.root)
        bake = planner.graph[check.name]
        write = self.outstream.write
        write(f"{task.name}: {bake.description or 'bake the ' + bake.name + ' image'}\n")
        on_channel = f" (the image its channel {bake.base_channel} points at)" if bake.base_channel else ""
        write(f"builds on: {(bake.base + on_channel) if bake.base else 'nothing (a base image)'}\n")
        write(f"template: {_which(planner.project, bake.template)}\n")
        try:
            own = [name for name in sorted({*planner.templates.input_files(bake.template), *bake.tests})
                   if name != bake.template and not planner.project.built_in(name)]
            decision = planner.decide(bake.name)
        except BakehouseError as error:
            write(f"status: cannot decide: {error}\n")
            return 1
        if own:  # the files of its own the template reads, beside the built-in ones
            write(f"own files: {', '.join(_which(planner.project, name) for name in own)}\n")
        try:
            table = channel_table(planner, [bake.name])[0]["channels"]
        except BakehouseError as error:
            table = []
            write(f"channels: cannot be read: {error}\n")
        if any(channel["image"] for channel in table[1:]):  # once a channel has moved: latest moves with each bake
            write("channels: " + ", ".join(f"{channel['channel']} {channel['image'] or '(nothing)'}" for channel in table) + "\n")
        if decision.up_to_date and all(part.current is not None for part in decision.each()):
            for part in decision.each():  # one image, or one per group of places (decide.py)
                assert part.current is not None
                places = ", ".join(f"{place}: {ref}" for place, ref in sorted(part.current.locations.items())
                                   if place in part.places or not decision.parts)
                write(f"status: up to date: {part.current.image_id} ({places})\n")
            launch = planner.provider_of(bake.name).launch(bake)
            if launch is not None:
                write(f"launch: {launch}\n")
            if decision.relaunch:
                write(f"would set: {decision.relaunch}\n")
                return 1
            return 0
        write("status: would bake because:\n" + "".join(f"  - {reason}\n" for reason in decision.reasons))
        return 1


def _which(project: Project, name: str) -> str:
    """Which file a template name means: `local-base.pkr.hcl.j2 (built in, bakehouse 0.1.0)`,
    or the repository's own, saying when it stands in for a built-in file of that name."""
    if project.built_in(name):
        return f"{name} (built in, bakehouse {__version__})"
    overrides = (BUILT_IN_TEMPLATES / name).is_file()
    return f"templates/{name}" + (" (the repository's own, in place of the built-in one)" if overrides else "")


def _bake_check(task: Any) -> ImageUpToDate | None:
    for check, _, _ in task.uptodate:
        if isinstance(check, ImageUpToDate):
            return check
    return None
