"""The commands bakehouse adds to doit (`doit plan`, `doit images`, `doit info`, `doit prune`,
`doit diff`, `doit log`), registered
through doit's `doit.COMMAND` entry points. They sit on top: they ask the planner (decide.py)
and the registries through it, and never reach into a provider."""

from __future__ import annotations

import getopt
import re
from typing import Any

from doit.cmd_base import DoitCmdBase
from doit.cmdparse import CmdOption, CmdParseError
from doit.exceptions import InvalidDodoFile

NO_REPOSITORY = ("doit: no dodo.py here or in any folder above; run doit inside a bakehouse "
                 "repository (`doit init` makes one in an empty folder)")


class OneLineOptions:
    """Options taken before or after the names (doit reads them only before the first), and a
    bad option said in one line. doit's own message lists the repr of every option it parsed
    with (a screenful for `doit images --sbom`). Mixed into every bakehouse command."""

    options_anywhere = True  # doit's own `run` keeps options after a task's name for that task
    name: str
    exit_codes: tuple[tuple[int, str], ...] = ()  # what each exit status means, for the reference (reference.py)

    def get_options(self) -> list[CmdOption]:
        return super().get_options()  # type: ignore[misc]

    def parse_execute(self, in_args: list[str]) -> Any:
        if self.options_anywhere:
            in_args = options_first(in_args, self.get_options())
        try:
            return super().parse_execute(in_args)  # type: ignore[misc]
        except CmdParseError as error:
            cause = error.__context__  # getopt's own message, which doit wraps
            command = "doit" if self.name == "run" else f"doit {self.name}"
            if isinstance(cause, ValueError) and (bad := _bad_value(str(error), in_args, self.get_options())):
                raise CmdParseError(f"{command}: {bad}") from None
            if not isinstance(cause, getopt.GetoptError):
                raise
            if str(error).startswith("Error parsing Task"):  # an option after a task's name
                raise CmdParseError(f"doit: {cause.msg} for a task; `doit help TASK` lists its options") from None
            raise CmdParseError(f"{command}: {cause.msg}; `doit help {self.name}` lists its options") from None


class Command(OneLineOptions, DoitCmdBase):
    """A bakehouse command that reads the repository's tasks (doit's DoitCmdBase)."""

    def get_options(self) -> list[CmdOption]:
        """doit's options, but dodo.py is sought upwards by default (doit's `-k`), as git finds
        its repository: `doit plan` works from `bakes/` or any folder below the repository."""
        options = super().get_options()
        for option in options:
            if option.name == "seek_file":
                option.default = True
        return options

    def execute(self, params: Any, args: list[str]) -> Any:
        try:
            return super().execute(params, args)
        except InvalidDodoFile as error:
            if not str(error).startswith("Could not find dodo file 'dodo.py'"):
                raise
            raise InvalidDodoFile(NO_REPOSITORY) from None


def options_first(args: list[str], options: list[CmdOption]) -> list[str]:
    """The arguments with every option (and the value of one that takes a value) moved before
    the names, in their order; after `--`, everything is a name."""
    takes_value = {f"--{o.long}" for o in options if o.long and o.type is not bool}
    takes_value |= {f"-{o.short}" for o in options if o.short and o.type is not bool}
    flags: list[str] = []
    names: list[str] = []
    rest = iter(args)
    for arg in rest:
        if arg == "--":
            names += list(rest)
            break
        if arg.startswith("-") and arg != "-":
            flags.append(arg)
            value = next(rest, None) if arg in takes_value else None
            if value is not None:
                flags.append(value)
            continue
        names.append(arg)
    return flags + names


def _bad_value(message: str, args: list[str], options: list[CmdOption]) -> str | None:
    """`--port must be a whole number, not 'abc'` for doit's `Error parsing parameter 'port'
    <class 'int'>`; None for any other message."""
    found = re.match(r"Error parsing parameter '(\w+)' <class '(int|float)'>", message)
    option = next((o for o in options if found and o.name == found[1]), None)
    if found is None or option is None:
        return None
    flag = f"--{option.long}" if option.long else f"-{option.short}"
    given = next((arg.split("=", 1)[1] for arg in args if arg.startswith(flag + "=")), None)
    if given is None and flag in args and args.index(flag) + 1 < len(args):
        given = args[args.index(flag) + 1]
    kind = "a whole number" if found[2] == "int" else "a number"
    return f"{flag} must be {kind}, not {given!r}" if given is not None else f"{flag} must be {kind}"


def trailing_flag(pos_args: list[str] | None, flag: str) -> tuple[bool, list[str]]:
    """Whether `flag` is among the names, and the names without it: doit reads a command's
    options only before its first name, and `doit diff A B --json` means `--json` too."""
    names = list(pos_args or [])
    return flag in names, [name for name in names if name != flag]
