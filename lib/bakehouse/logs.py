"""Bake logs on this machine: each bake's full log under .bakehouse/logs/<bake>/<image-id>.log
(packer.py writes it), and a note of the last bake of each bake that failed, so `doit log
--failed BAKE` finds its log after the run ended. Providers with shared state keep both
where every runner can read them too (providers/aws/shared.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import BakehouseError
from .files import write_atomically
from .project import Project

FAILED_NOTE = "last-failed.json"


class LogError(BakehouseError):
    """A log that cannot be found or read."""


def failure_note(image_id: str, log: str, error: str) -> dict[str, Any]:
    return {"image_id": image_id, "log": log, "error": error, "when": datetime.now(UTC).isoformat(timespec="seconds")}


def write_failure(project: Project, bake: str, note: dict[str, Any]) -> None:
    write_atomically(project.logs_dir / bake / FAILED_NOTE, json.dumps(note, indent=1) + "\n")


def read_failure(project: Project, bake: str) -> dict[str, Any] | None:
    try:
        return dict(json.loads((project.logs_dir / bake / FAILED_NOTE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def read_local_log(project: Project, ref: str) -> str:
    """A log named as records name it: relative to the repository (or absolute)."""
    path = Path(ref) if Path(ref).is_absolute() else project.root / ref
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        raise LogError(f"{ref}: no such log on this machine (it stays on the machine that baked; "
                       "shared state on S3 keeps logs for every runner: docs/how-to/shared-state.md)") from None
