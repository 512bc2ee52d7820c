"""`doit revoke` and `doit restore`: taking an image out of use, and back (revoking.py does it).

`doit revoke IMAGE --reason TEXT [--at WHEN] [--only CHANNEL,...] [--cascade] [--dry-run]`
marks the image revoked in the registry (every AMI's tags; the local store), so every runner
sees it. In effect now, it moves each channel that points at it back to the last image before
it that is not revoked (or to nothing, said loudly), then publishes what moved. `--cascade`
revokes every image built on it too, transitively; `--dry-run` lists what would be revoked and
the channels on each, and changes nothing. `--only` is an embargo: the image stays usable
except on the channels named. `doit restore IMAGE [--cascade]` takes revocations back;
channels stay where they are.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from doit.exceptions import InvalidCommand

from ..errors import BakehouseError
from ..revoking import restore, revoke
from ..tasks import planner_from_tasks
from . import Command


def _run(action: Any, out: TextIO) -> int:
    try:
        action(lambda line: out.write(line + "\n"))
    except BakehouseError as error:
        sys.stderr.write(f"ERROR: {error}\n")
        return 2
    return 0


class RevokeCommand(Command):
    name = "revoke"
    doc_purpose = "take an image out of use (and, with --cascade, every image built on it)"
    doc_usage = "IMAGE --reason TEXT"
    doc_description = ("IMAGE is an image id, an AMI id, BAKE@CHANNEL or a bake (its image in use). Channels on it "
                       "move back to their last image that is not revoked, and are published.")
    exit_codes = ((0, "revoked (or listed, with --dry-run)"), (2, "refused (no such image, no reason...)"),
                  (3, "a bad option"))
    cmd_options = (
        {"name": "reason", "long": "reason", "type": str, "default": "", "help": "why (required; shown wherever the image is)"},
        {"name": "at", "long": "at", "type": str, "default": "",
         "help": "when it takes effect: an ISO 8601 time or a duration from now (7d) [default: now]"},
        {"name": "only", "long": "only", "type": str, "default": "",
         "help": "an embargo: keep it off these channels only (comma-separated)"},
        {"name": "cascade", "long": "cascade", "type": bool, "default": False,
         "help": "revoke every image built on it too, transitively"},
        {"name": "dry_run", "long": "dry-run", "type": bool, "default": False,
         "help": "list what would be revoked; change nothing"},
    )

    def _execute(self, reason: str, at: str, only: str, cascade: bool, dry_run: bool, pos_args: list[str]) -> int:
        if len(pos_args or []) != 1:
            raise InvalidCommand('doit revoke takes one image: doit revoke hello@stable --reason "CVE-2026-1234"')
        planner = planner_from_tasks(self.task_list)
        channels = tuple(channel for channel in only.replace(",", " ").split())
        return _run(lambda say: revoke(planner, pos_args[0], reason, at, channels, cascade, dry_run, say), self.outstream)


class RestoreCommand(Command):
    name = "restore"
    doc_purpose = "take an image's revocation back"
    doc_usage = "IMAGE"
    doc_description = "Its channels stay where they are: promote it again to put one back."
    exit_codes = ((0, "restored"), (2, "refused (no such image, not revoked)"), (3, "a bad option"))
    cmd_options = (
        {"name": "cascade", "long": "cascade", "type": bool, "default": False,
         "help": "restore every image built on it too"},
    )

    def _execute(self, cascade: bool, pos_args: list[str]) -> int:
        if len(pos_args or []) != 1:
            raise InvalidCommand("doit restore takes one image: doit restore hello-20261206T120000Z-0a1b2c3d")
        planner = planner_from_tasks(self.task_list)
        return _run(lambda say: restore(planner, pos_args[0], cascade, say), self.outstream)
