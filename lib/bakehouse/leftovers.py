"""What bakes and the bake service leave on this machine that no image owns, and that `doit
prune --apply` removes once it is older than the project's retention age (`min_age`, by the
file's own time on this machine):

    .bakehouse/logs/<bake>/<image-id>.log   the log of a bake that failed (no image has that id),
                                            except the one `doit log --failed BAKE` shows
    .bakehouse/serve/<run>.json, .log       an ended run of `doit serve` (its state and log)

A run still queued or running, and any file younger than the age, are kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from .logs import read_failure
from .project import Project
from .serve.runs import ENDED


def old_failed_logs(project: Project, bake: str, images: Iterable[str], older_than: float) -> list[Path]:
    """Logs of `bake` whose image does not exist, last modified before `older_than` (epoch s)."""
    keep = set(images)
    note = read_failure(project, bake)
    if note is not None:
        keep.add(str(note.get("image_id")))
    folder = project.logs_dir / bake
    return sorted(path for path in (folder.glob("*.log") if folder.is_dir() else [])
                  if path.stem not in keep and _older(path, older_than))


def old_service_runs(project: Project, older_than: float) -> list[Path]:
    """The state and log files of the bake service's ended runs, last written before `older_than`."""
    found: list[Path] = []
    folder = project.state_dir / "serve"
    for state in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        log = state.with_suffix(".log")
        try:
            ended = json.loads(state.read_text(encoding="utf-8")).get("state") in ENDED
        except (OSError, ValueError, AttributeError):
            ended = True  # not a run's state: nothing reads it
        if ended and _older(state, older_than) and (not log.exists() or _older(log, older_than)):
            found += [path for path in (state, log) if path.exists()]
    return found


def _older(path: Path, older_than: float) -> bool:
    try:
        return path.stat().st_mtime < older_than
    except OSError:
        return False
