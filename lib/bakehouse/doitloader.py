"""bakehouse's doit loader: doit's own dodo.py loader, named in the repository's
pyproject.toml (`[tool.doit] loader = "bakehouse"`), because a loader is the one part of a
doit extension that doit imports before it reads the command line.

That is where an empty argument must be caught: doit indexes each argument's first character
while it looks for `NAME=VALUE` variables (DoitMain.process_args), so `doit ''` or
`doit plan --matrix "$UNSET"` stops with IndexError and a traceback before any command, task
or dodo.py is read. Loading this module wraps that one method: an empty argument is one line
(`ERROR: doit: argument 2 is empty (the value of --matrix) ...`) and exit 3, as doit's own
errors before a run are; every other argument goes to doit untouched.
"""

from __future__ import annotations

import sys
from typing import Any

from doit.cmd_base import DodoTaskLoader
from doit.doit_cmd import DoitMain


class Loader(DodoTaskLoader):
    """Loads dodo.py exactly as doit's default loader does."""


def empty_argument(args: list[str]) -> str | None:
    """The one-line error for the first empty argument, or None when there is none."""
    for position, arg in enumerate(args, 1):
        if arg == "":
            before = args[position - 2] if position > 1 else ""
            whose = f" (the value of {before})" if before.startswith("-") else ""
            return (f"doit: argument {position} is empty{whose}; an unset variable? "
                    "Give it a value, or leave the argument out")
    return None


_process_args = DoitMain.process_args


def _process_args_refusing_empty(self: DoitMain, cmd_args: list[str]) -> Any:
    problem = empty_argument(list(cmd_args))
    if problem is not None:
        sys.stderr.write(f"ERROR: {problem}\n")
        raise SystemExit(3)
    return _process_args(self, cmd_args)


DoitMain.process_args = _process_args_refusing_empty  # type: ignore[method-assign]
