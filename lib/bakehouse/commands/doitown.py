"""doit's own task commands (`doit list`, `doit forget`, `doit clean`, `doit ignore`,
`doit reset-dep`, `doit strace`), registered under their own names so that they, too, find the
repository from a folder below it and say a bad option in one line, as every bakehouse command does."""

from __future__ import annotations

from doit.cmd_clean import Clean
from doit.cmd_forget import Forget
from doit.cmd_ignore import Ignore
from doit.cmd_list import List
from doit.cmd_resetdep import ResetDep
from doit.cmd_strace import Strace

from . import Command


class ListCommand(Command, List):
    name = "list"
    options_anywhere = False  # doit's own reading of its arguments, unchanged


class ForgetCommand(Command, Forget):
    name = "forget"
    options_anywhere = False


class CleanCommand(Command, Clean):
    name = "clean"
    options_anywhere = False


class IgnoreCommand(Command, Ignore):
    name = "ignore"
    options_anywhere = False


class ResetDepCommand(Command, ResetDep):
    name = "reset-dep"
    options_anywhere = False


class StraceCommand(Command, Strace):
    name = "strace"
    options_anywhere = False
