"""`doit` itself (doit's `run`, the default command), with bad options said in one line, and
a name that is no task answered with the nearest task's name."""

from __future__ import annotations

import difflib
import os
from typing import Any

from doit.cmd_run import Run
from doit.exceptions import InvalidCommand

from ..tasks import REBAKE_ALL_VARIABLE
from . import Command


class RunCommand(Command, Run):
    """Replaces doit's `run` (same name, registered through the `doit.COMMAND` entry point):
    `doit --bogus` or `doit bake:hello --bogus` is one line, as for bakehouse's own commands;
    `doit bake:helo`, `doit hello` and `doit bake hello` say `doit: no task ...; did you mean
    bake:hello?` (exit 3). Options after a task's name are that task's: they stay where they are."""

    exit_codes = ((0, "every task done or up to date"), (1, "a task failed: a bake (one line says why; nothing of it is recorded)"),
                  (2, "doit could not run a task"), (3, "nothing ran: a bad option, an unknown task, a bad bake file"))

    name = "run"
    doc_purpose = "bake every image that is not up to date, bases first (doit's `run`, the default command)"
    options_anywhere = False
    cmd_options = (*Run.cmd_options, {
        "name": "rebake_all", "long": "rebake", "type": bool, "default": False,
        "help": "bake every image of the run again, even those up to date (after a task's name, "
                "--rebake is that task's alone)",
    })

    def execute(self, params: Any, args: list[str]) -> Any:
        if params.get("rebake_all"):
            os.environ[REBAKE_ALL_VARIABLE] = "1"  # read by each bake's up-to-date check and action
        try:
            return super().execute(params, args)
        except InvalidCommand as error:
            if error.not_found is None or not getattr(self, "task_list", None):
                raise
            raise InvalidCommand(no_task(str(error.not_found), [task.name for task in self.task_list])) from None


def no_task(wanted: str, names: list[str]) -> str:
    """`doit: no task bake:helo; did you mean bake:hello?`, or the list of bakes when nothing is near."""
    visible = [name for name in names if not name.startswith("_")]
    near = [f"bake:{wanted}"] if f"bake:{wanted}" in visible else difflib.get_close_matches(wanted, visible, n=1)
    if not near:
        near = difflib.get_close_matches(f"bake:{wanted}", visible, n=1)
    if near:
        return f"doit: no task {wanted}; did you mean {near[0]}?"
    bakes = sorted(name for name in visible if name.startswith("bake:"))
    return f"doit: no task {wanted}; the tasks are {', '.join(bakes) or 'listed by doit list'} (doit list shows all)"
