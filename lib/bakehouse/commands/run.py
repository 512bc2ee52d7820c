"""`doit` itself (doit's `run`, the default command), with bad options said in one line."""

from __future__ import annotations

from doit.cmd_run import Run

from . import Command


class RunCommand(Command, Run):
    """Replaces doit's `run` (same name, registered through the `doit.COMMAND` entry point):
    `doit --bogus` or `doit bake:hello --bogus` is one line, as for bakehouse's own commands."""

    name = "run"
