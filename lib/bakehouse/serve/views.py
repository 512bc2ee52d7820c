"""What `doit serve` answers, read from a fresh planner: the same graph, decisions and
registry as `doit plan` and `doit images`, never a second way to decide."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..commands.plan import plan, plan_json
from ..decide import Planner
from ..definitions import load_bakes
from ..model import Bake, BakeGraph
from ..project import Project
from ..errors import BakehouseError
from ..registry import ImageRecord, created_at, in_use
from ..retention import describe
from ..revocation import usable
from ..tasks import new_planner
from .runs import Outcome


_graphs: dict[Path, tuple[tuple[Any, ...], BakeGraph]] = {}


def planner(root: Path, versions: dict[str, dict[str, str]] | None = None,
            base_channels: dict[str, str] | None = None) -> Planner:
    """A planner that reads the registry afresh; the bake files are parsed again only when
    one of them (or the list of templates) changed, which saves most of a request's time."""
    project = Project.at(root)
    seen = _signature(project)
    cached = _graphs.get(project.root)
    if cached is None or cached[0] != seen:
        cached = (seen, load_bakes(project))
        _graphs[project.root] = cached
    return new_planner(root, versions or {}, cached[1], base_channels=base_channels or {})


def _signature(project: Project) -> tuple[Any, ...]:
    files = sorted(project.bakes_dir.glob("*.toml")) + [project.root / "bakehouse.toml"]
    stats = tuple((path.name, path.stat().st_mtime_ns, path.stat().st_size) for path in files if path.is_file())
    templates = tuple(sorted(str(path) for path in project.templates_dir.rglob("*"))) if project.templates_dir.is_dir() else ()
    return stats, templates


def image_json(image: ImageRecord, now: datetime) -> dict[str, Any]:
    data = image.to_json()
    del data["summary"]  # the key's inputs: `doit info` explains them
    return {**data, "age": describe(max(now - created_at(image), timedelta(0)))}  # as doit prune says it


def amis(p: Planner) -> list[dict[str, Any]]:
    """The image in use of every bake (never a revoked one), bases first (the graph's order), with the fields
    `/amis/{bake}` gives each image (a local image's digest, layers and sizes too); and, for a
    base, what it starts from upstream in each place now, as Baker listed the newest public
    base AMI per region."""
    rows = []
    for name in p.graph.names:
        bake = p.graph[name]
        image = in_use(usable(p.images(name), p.now))
        shown = None if image is None else {**image_json(image, p.now), **p.provider_of(name).registry.facts(image)}
        row = {"bake": name, "base": bake.base, "provider": bake.provider, "image": shown}
        if bake.base is None:
            row["upstream"] = _upstream(p, bake)
        rows.append(row)
    return rows


def _upstream(p: Planner, bake: Bake) -> dict[str, Any]:
    provider = p.provider_of(bake.name)
    found: dict[str, Any] = {}
    for place in provider.places(bake):
        try:
            found[place] = provider.upstream(bake, place)
        except BakehouseError as error:  # one region's lookup failing leaves the others listed
            found[place] = {"error": str(error)}
    return found


def images_of(p: Planner, name: str, limit: int) -> list[dict[str, Any]]:
    """The newest images, as `doit images --json` shows them (a local image's digest and sizes too)."""
    registry = p.provider_of(name).registry
    return [{**image_json(image, p.now), **registry.facts(image)} for image in p.images(name)[:limit]]


def plan_of(p: Planner, names: list[str]) -> dict[str, Any]:
    return dict(json.loads(plan_json(plan(p, names))))


def up_to_date(p: Planner, name: str) -> bool:
    """`name` and everything it builds on would bake nothing."""
    return all(row.action == "keep" for row in plan(p, [name]))


def ready_in(p: Planner, name: str, place: str) -> Outcome | None:
    """The image of `name`'s current inputs in `place`, when it is there already (so a
    request for that place bakes nothing, even while another place of the bake is missing)."""
    part = p.decide(name).part_at(place)
    image = part.current if part.up_to_date else None
    if image is None and part.action == "bake-missing" and place not in part.missing:
        image = part.partial
    if image is None or place not in image.locations:
        return None
    return Outcome(image=image.image_id, locations=dict(image.locations), base_image=image.base_image)


def outcome(root: Path, name: str, p: Planner | None = None) -> Outcome:
    """The bake's image in use (after a run of it succeeded, or found up to date): never a
    revoked one, which the run did not use."""
    p = p or planner(root)
    image = in_use(usable(p.images(name), p.now))
    if image is None:
        return Outcome(error=f"{name} has no image after its bake")
    return Outcome(image=image.image_id, locations=dict(image.locations), base_image=image.base_image)


def health(root: Path) -> list[dict[str, Any]]:
    """Each check: the bake files load, packer runs, each registry in use answers."""
    checks: list[dict[str, Any]] = []
    try:
        p = planner(root)
        checks.append({"check": "bake files", "ok": True, "detail": f"{len(p.graph.names)} bakes load"})
    except BakehouseError as error:
        return [{"check": "bake files", "ok": False, "detail": str(error)}]
    packer = shutil.which("packer")
    if packer is None:
        checks.append({"check": "packer", "ok": False, "detail": "packer is not on PATH"})
    else:
        try:
            found = subprocess.run([packer, "version"], capture_output=True, text=True, timeout=30)
            version = (found.stdout.strip().splitlines() or ["?"])[0]
            checks.append({"check": "packer", "ok": found.returncode == 0, "detail": version})
        except (OSError, subprocess.TimeoutExpired) as error:
            checks.append({"check": "packer", "ok": False, "detail": str(error)})
    for provider in sorted({p.graph[name].provider for name in p.graph.names}):
        first = next(name for name in p.graph.names if p.graph[name].provider == provider)
        try:
            found_images = len(p.images(first))
            checks.append({"check": f"registry {provider}", "ok": True, "detail": f"answers ({first}: {found_images} images)"})
        except BakehouseError as error:
            checks.append({"check": f"registry {provider}", "ok": False, "detail": str(error)})
    return checks
