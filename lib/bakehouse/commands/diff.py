"""`doit diff A B`: what changed between two images, packages and inputs.

A and B are image ids (or AMI ids) or bake names (a bake's image in use); `doit diff BAKE`
compares a bake's image in use with the image before it. Packages come from the images'
manifests (contents.py): added, removed, and changed with both versions. Inputs come from the
input summaries the records keep, worded as `doit plan` words a rebake: template files,
definition values, package versions, the source and the base image. `--json` for tools.
Exit status: 0 the images hold the same packages and inputs, 1 they differ, 2 an image or
its manifest cannot be found.
"""

from __future__ import annotations

import json
import sys

from doit.exceptions import InvalidCommand

from ..decide import Planner
from ..errors import BakehouseError
from ..imagediff import ImageDiff, diff_images, diff_text
from ..lookup import find_image, manifest_of, previous_image
from ..tasks import planner_from_tasks
from . import Command, trailing_flag


class DiffCommand(Command):
    """The `doit diff` command, registered through the `doit.COMMAND` entry point."""

    exit_codes = ((0, "the same"), (1, "different"), (2, "an image not found"), (3, "a bad option"))

    name = "diff"
    doc_purpose = "show what changed between two images: packages and inputs"
    doc_usage = "A [B]"
    doc_description = (
        "A and B are image ids or bake names (a bake's image in use); with one name, a bake's "
        "image in use is compared with the image before it."
    )
    cmd_options = (
        {"name": "as_json", "long": "json", "type": bool, "default": False, "help": "print JSON"},
    )

    def _execute(self, as_json: bool, pos_args: list[str]) -> int:
        trailing, pos_args = trailing_flag(pos_args, "--json")
        as_json = as_json or trailing
        if len(pos_args) not in (1, 2):
            raise InvalidCommand("doit diff takes two images, or one bake: doit diff A B | doit diff BAKE")
        planner = planner_from_tasks(self.task_list)
        try:
            diff = _diff(planner, pos_args)
        except BakehouseError as error:
            sys.stderr.write(f"ERROR: {error}\n")
            return 2
        self.outstream.write(json.dumps(diff.to_json(), indent=2) + "\n" if as_json else diff_text(diff))
        return 1 if diff.added or diff.removed or diff.changed or diff.inputs else 0


def _diff(planner: Planner, names: list[str]) -> ImageDiff:
    if len(names) == 2:
        before, after = find_image(planner, names[0]), find_image(planner, names[1])
    else:
        after = find_image(planner, names[0])
        before = previous_image(planner, after)
    return diff_images(before, manifest_of(planner, before), after, manifest_of(planner, after))
