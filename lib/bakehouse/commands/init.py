"""`doit init [--aws] [DIRECTORY]`: make a new bakehouse repository (newrepo.py) in an empty
folder, this one by default. It needs no dodo.py, so it runs where there is none yet."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from doit.cmd_base import Command as DoitCommand
from doit.exceptions import InvalidCommand

from ..errors import BakehouseError
from ..newrepo import make_repository
from . import OneLineOptions


class InitCommand(OneLineOptions, DoitCommand):
    """The `doit init` command, registered through the `doit.COMMAND` entry point."""

    exit_codes = ((0, "written"), (3, "nothing written: a file is already there, or a bad option"))

    name = "init"
    doc_purpose = "make a new bakehouse repository in an empty folder (this one, or DIRECTORY)"
    doc_usage = "[--aws] [DIRECTORY]"
    doc_description = ("Writes dodo.py, doit.cfg, bakehouse.toml, .gitignore, bakes/ (a local Debian base and "
                       "a service on it; with --aws, the AMI example) and packages/ (one example package). "
                       "Overwrites nothing.")
    cmd_options = (
        {"name": "aws", "long": "aws", "type": bool, "default": False,
         "help": "start from the AWS example (AMIs) instead of local images"},
    )

    def execute(self, params: Any, args: list[str]) -> int:
        if len(args) > 1:
            raise InvalidCommand(f"doit init takes one folder at most, not {len(args)}: {' '.join(args)}")
        target = Path(args[0] if args else ".").absolute()
        kind = "aws" if params["aws"] else "local"
        try:
            written = make_repository(target, kind)
        except BakehouseError as error:
            raise InvalidCommand(f"doit init: {error}") from None
        where = "here" if target == Path.cwd() else str(target)
        out = sys.stdout
        out.write(f"made a bakehouse repository {where} ({'AMIs' if kind == 'aws' else 'local images'}):\n")
        for name in written:
            out.write(f"  {name}\n")
        out.write("next:\n" + ("" if target == Path.cwd() else f"  cd {args[0]}\n") +
                  "  doit plan              what would bake, and why\n"
                  "  doit                   bake what is not up to date, bases first\n"
                  "  doit info bake:hello   one bake's decision, and the template files it uses\n")
        if kind == "aws":
            out.write("  (AWS bakes need an account and credentials first: see the docs, AWS account set-up)\n")
        return 0
