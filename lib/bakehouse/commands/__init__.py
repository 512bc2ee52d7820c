"""The commands bakehouse adds to doit (`doit plan`, `doit images`, `doit info`, `doit prune`,
`doit diff`, `doit log`), registered
through doit's `doit.COMMAND` entry points. They sit on top: they ask the planner (decide.py)
and the registries through it, and never reach into a provider."""


def trailing_flag(pos_args: list[str] | None, flag: str) -> tuple[bool, list[str]]:
    """Whether `flag` is among the names, and the names without it: doit reads a command's
    options only before its first name, and `doit diff A B --json` means `--json` too."""
    names = list(pos_args or [])
    return flag in names, [name for name in names if name != flag]
