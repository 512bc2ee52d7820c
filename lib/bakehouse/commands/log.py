"""`doit log IMAGE`: the full log of the bake that made an image; `doit log --failed BAKE`:
the log of the last bake of BAKE that failed; `doit log --notifications`: the notifications
that could not be delivered (notify.py).

IMAGE is an image id, an AMI id, or a bake name (its image in use). The log is read where the
image's record says it is: this repository's .bakehouse/logs/, or, with shared state, S3, so
any runner can read any bake's log. Exit status: 0 printed, 2 no such image or log.
"""

from __future__ import annotations

import json
import sys

from doit.exceptions import InvalidCommand

from ..errors import BakehouseError
from ..logs import read_failure
from ..notify import failures_log
from ..lookup import find_image
from ..tasks import planner_from_tasks
from . import Command, trailing_flag
from .plan import selected


class LogCommand(Command):
    """The `doit log` command, registered through the `doit.COMMAND` entry point."""

    exit_codes = ((0, "printed"), (2, "no such image, log, or failed bake"), (3, "a bad option"))

    name = "log"
    doc_purpose = "print the log of the bake that made an image, or of a bake's last failure"
    doc_usage = "IMAGE | --failed BAKE | --notifications"
    doc_description = "IMAGE is an image id, an AMI id, or a bake name (its image in use)."
    cmd_options = (
        {"name": "failed", "long": "failed", "type": bool, "default": False,
         "help": "the log of the last bake of BAKE that failed"},
        {"name": "notifications", "long": "notifications", "type": bool, "default": False,
         "help": "the notifications that could not be delivered, oldest first"},
    )

    def _execute(self, failed: bool, notifications: bool, pos_args: list[str]) -> int:
        trailing, names = trailing_flag(pos_args, "--failed")
        failed = failed or trailing
        listed, names = trailing_flag(names, "--notifications")
        if notifications or listed:
            return self._undelivered(names)
        if len(names) != 1:
            raise InvalidCommand("doit log takes one image or bake: doit log IMAGE | doit log --failed BAKE")
        planner = planner_from_tasks(self.task_list)
        try:
            if failed:
                name = names[0].removeprefix("bake:")
                selected(planner.graph, [name])  # an unknown bake: one line with a did-you-mean
                note = planner.provider_of(name).last_failure(name) or read_failure(planner.project, name)
                if note is None:
                    sys.stderr.write(f"{name}: no failed bake is on record\n")
                    return 2
                sys.stderr.write(f"{note.get('image_id')} failed at {note.get('when')}: {note.get('error')}\n"
                                 f"log: {note.get('log')}\n")
                text = planner.provider_of(name).read_log(name, str(note.get("log")))
            else:
                image = find_image(planner, names[0])
                if not image.log:
                    sys.stderr.write(f"ERROR: {image.image_id}: its record names no log\n")
                    return 2
                text = planner.provider_of(image.bake).read_log(image.bake, image.log)
        except BakehouseError as error:
            sys.stderr.write(f"ERROR: {error}\n")
            return 2
        self.outstream.write(text if not text or text.endswith("\n") else text + "\n")
        return 0

    def _undelivered(self, names: list[str]) -> int:
        if names:
            raise InvalidCommand("doit log --notifications takes no image or bake")
        path = failures_log(planner_from_tasks(self.task_list).project)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            try:
                failure = json.loads(line)
                self.outstream.write(f"{failure['at']}  {failure['event']}  {failure['target']}: {failure['error']}\n")
            except (ValueError, KeyError, TypeError):
                self.outstream.write(f"(unreadable) {line}\n")
        if not lines:
            self.outstream.write("every notification was delivered (none failed)\n")
        return 0
