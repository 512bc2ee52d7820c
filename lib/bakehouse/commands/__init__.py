"""The commands bakehouse adds to doit (`doit plan`, `doit images`, `doit info`, `doit prune`,
`doit diff`, `doit log`), registered
through doit's `doit.COMMAND` entry points. They sit on top: they ask the planner (decide.py)
and the registries through it, and never reach into a provider."""

from __future__ import annotations

import getopt
from typing import Any

from doit.cmd_base import DoitCmdBase
from doit.cmdparse import CmdParseError


class Command(DoitCmdBase):
    """A bakehouse command: doit's, with a bad option said in one line. doit's own message
    lists the repr of every option it parsed with (a screenful for `doit images --sbom`)."""

    def parse_execute(self, in_args: list[str]) -> Any:
        try:
            return super().parse_execute(in_args)
        except CmdParseError as error:
            cause = error.__context__  # getopt's own message, which doit wraps
            if not isinstance(cause, getopt.GetoptError):
                raise
            if str(error).startswith("Error parsing Task"):  # an option after a task's name
                raise CmdParseError(f"doit: {cause.msg} for a task; `doit help TASK` lists its options") from None
            command = "doit" if self.name == "run" else f"doit {self.name}"
            raise CmdParseError(f"{command}: {cause.msg}; `doit help {self.name}` lists its options") from None


def trailing_flag(pos_args: list[str] | None, flag: str) -> tuple[bool, list[str]]:
    """Whether `flag` is among the names, and the names without it: doit reads a command's
    options only before its first name, and `doit diff A B --json` means `--json` too."""
    names = list(pos_args or [])
    return flag in names, [name for name in names if name != flag]
