"""The doit tasks of a bakehouse repository: `package:<name>`, `bake:<name>` and, for a bake
with a [publish] table, `publish:<name>` (publish.py).

A bake task is up to date when the registry holds an image of its current content key; that
check is an object whose str() explains the decision, so `doit info bake:<name>` says why a
bake would run. Tasks carry no image ids through doit's dep file: it is only a cache, and a
fresh clone decides from the registry alone.
"""

from __future__ import annotations

import fnmatch
import json
import os
import signal
import sys
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

from doit.exceptions import InvalidCommand, InvalidDodoFile, TaskFailed
from doit.reporter import ConsoleReporter
from doit.tools import config_changed

from .bake import bake_image
from .debpkg import build_deb
from .rpmpkg import build_rpm
from .decide import Decision, Planner
from .definitions import load_bakes
from .epoch import now_utc
from .errors import BakehouseError
from .interrupts import JOURNAL, finished
from .model import Bake, BakeGraph
from .packages import is_artifact_spec
from .project import Project
from .providers import open_providers
from .publish import pending
from .notify import notify, settings as notify_settings
from .revoking import settle, unsettled

class Reporter(ConsoleReporter):
    """doit's console reporter; once doit has finished the run, a signal cannot change its
    outcome (interrupts.py): a bake recorded just before Ctrl-C stays a success."""

    def complete_run(self) -> None:
        super().complete_run()
        finished()


DOIT_CONFIG: dict[str, Any] = {
    "backend": "sqlite3",  # two doit processes at once cannot corrupt it
    "dep_file": ".doit.db",
    "verbosity": 2,  # stream packer's output as it comes
    "reporter": Reporter,
}


def dodo_globals(root: str | Path) -> dict[str, Any]:
    """What a dodo.py exposes: `globals().update(dodo_globals(Path(__file__).parent))`."""
    project = Project.at(root)
    _cancel_like_ctrl_c()

    def task_package() -> Iterator[dict[str, Any]]:
        """Build the packages under packages/ (.deb trees, RPM specs) into dist/."""
        for package in _guard(lambda: planner_for(project.root).source_packages):
            yield {
                "name": package.name,
                "doc": f"build {project.relative(package.output)} from {project.relative(package.source_dir)}/",
                "actions": [(_build_package, [str(project.root), package.name])],
                "file_dep": [str(path) for path in package.files],
                # links and names are in the tree's hash, not in file_dep: rebuild when it changes
                "uptodate": [config_changed(package.tree_sha256)],
                "targets": [str(package.output)],
                "clean": True,
            }

    def task_bake() -> Iterator[dict[str, Any]]:
        """Bake images: `doit bake:<name>` bakes one image and what it builds on."""
        planner = _guard(lambda: planner_for(project.root))
        built_here = _guard(lambda: planner.source_packages)
        for bake in planner.graph.bakes:
            check = ImageUpToDate(project.root, bake.name)
            yield {
                "name": bake.name,
                "doc": bake.description or f"bake the {bake.name} image",
                "actions": [(_bake, [str(project.root), bake.name])],
                "task_dep": _task_deps(project, bake, built_here),
                "uptodate": [check],
                "title": check.title,
                "params": [{
                    "name": "rebake", "long": "rebake", "type": bool, "default": False,
                    "help": "bake even if an image of the current inputs exists",
                }],
                "verbosity": 2,
            }

    def task_publish() -> Iterator[dict[str, Any]]:
        """Write each bake's [publish] targets that do not hold what its channels point at."""
        planner = _guard(lambda: planner_for(project.root))
        for bake in planner.graph.bakes:
            if bake.publish is None:
                continue
            yield {
                "name": bake.name,
                "doc": f"publish {bake.name}'s channels ({', '.join(bake.publish.channels)})",
                "actions": [(_publish, [str(project.root), bake.name])],
                "task_dep": [f"bake:{bake.name}"],
                "uptodate": [Published(project.root, bake.name)],
                "verbosity": 2,
            }

    return {"DOIT_CONFIG": dict(DOIT_CONFIG), "task_package": task_package, "task_bake": task_bake,
            "task_publish": task_publish}


def _cancel_like_ctrl_c() -> None:
    """SIGTERM (a CI cancel) and SIGHUP (a closed terminal) cancel a run as Ctrl-C does (doit
    saves what finished; the running bake stops packer and records nothing), and a cancelled
    run ends with one line, not a traceback. The process then ends as killed by SIGINT:
    status 130 in a shell."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGHUP, _interrupt)
    if getattr(sys.excepthook, "bakehouse", False):
        return
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, trace: Any) -> None:
        if not issubclass(kind, KeyboardInterrupt):
            previous(kind, value, trace)
            return
        sys.stderr.write(JOURNAL.cancelled_line() + "\n")
        sys.stdout.flush()
        sys.stderr.flush()
        # End as killed by SIGINT, so a calling shell or CI sees the interrupt (status 130).
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)

    hook.bakehouse = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt()


def _task_deps(project: Project, bake: Bake, built_here: Any) -> list[str]:
    deps = [] if bake.base is None else [f"bake:{bake.base}"]
    globs = [spec for spec in bake.packages if is_artifact_spec(spec)]
    for package in built_here:
        if any(fnmatch.fnmatch(project.relative(package.output), pattern) for pattern in globs):
            deps.append(f"package:{package.name}")
    return deps


def _guard(load: Callable[[], Any]) -> Any:
    """Loading errors become doit's own one-line `ERROR: ...` (exit 3), not a traceback."""
    try:
        return load()
    except BakehouseError as error:
        raise InvalidDodoFile(str(error)) from None


@lru_cache(maxsize=None)
def planner_for(root: Path) -> Planner:
    """One planner per process and repository, shared by task loading, checks and actions:
    bake files are read and package sources hashed once per run."""
    return new_planner(root)


def new_planner(
    root: Path, versions: dict[str, dict[str, str]] | None = None, graph: BakeGraph | None = None,
    freshness: bool = True, base_channels: dict[str, str] | None = None,
) -> Planner:
    """A planner that reads the registry afresh, and the bake files unless `graph` is given
    (`doit serve`, per request). `versions` (else BAKEHOUSE_VERSIONS, JSON) pins packages a
    bake takes from a repository: {"hello": {"hello-svc": "1.0.5"}}, as a bake service request asks."""
    project = Project.at(root)
    graph = graph or load_bakes(project)
    notify_settings(project)  # a mistake in [notify] is one line now, not a lost notification later
    if versions is None:
        versions = requested_versions(os.environ.get(VERSIONS_VARIABLE, ""))
    if base_channels is None:
        base_channels = requested_base_channels(os.environ.get(BASE_CHANNELS_VARIABLE, ""))
    return Planner(project, graph, open_providers(project, graph), now_utc(), versions, freshness, base_channels)


VERSIONS_VARIABLE = "BAKEHOUSE_VERSIONS"
# {"hello": "stable"}: bake hello on its base's channel stable, whatever its bake file says (a
# bake service request's base_label: serve/spinnaker.py)
BASE_CHANNELS_VARIABLE = "BAKEHOUSE_BASE_CHANNELS"


def _json_variable(name: str, text: str, fits: Callable[[Any], bool], example: str) -> Any:
    """The JSON object a variable holds ({} when it is empty), one line if it is not one that fits."""
    if not text:
        return {}
    try:
        found = json.loads(text)
    except ValueError:
        found = None
    if not isinstance(found, dict) or not all(fits(value) for value in found.values()):
        raise BakehouseError(f"{name} is not JSON such as {example}")
    return found


def requested_base_channels(text: str) -> dict[str, str]:
    return dict(_json_variable(BASE_CHANNELS_VARIABLE, text, lambda v: isinstance(v, str), '{"hello": "stable"}'))


def requested_versions(text: str) -> dict[str, dict[str, str]]:
    return dict(_json_variable(
        VERSIONS_VARIABLE, text, lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in [*v, *v.values()]),
        '{"hello": {"hello-svc": "1.0.5"}}'))


def planner_from_tasks(tasks: list[Any]) -> Planner:
    """The planner of the repository whose dodo.py doit loaded (for `doit plan`, `doit images`)."""
    for task in tasks:
        for check, _, _ in task.uptodate:
            if isinstance(check, ImageUpToDate):
                return planner_for(check.root)
    raise InvalidCommand("this dodo.py defines no bakes: run this in a bakehouse repository with bakes/*.toml")


class ImageUpToDate:
    """doit uptodate check: True when the registry has an image of the current inputs."""

    def __init__(self, root: Path, name: str) -> None:
        self.root, self.name = root, name
        self.decision: Decision | None = None
        self.error: BakehouseError | None = None

    def __call__(self, task: Any, values: dict[str, Any]) -> bool:
        forced = bool((task.options or {}).get("rebake")) or rebake_all()
        try:
            self.decision = planner_for(self.root).decide(self.name, forced)
        except BakehouseError as error:
            self.error = error
            return False
        current = self.decision.current
        if self.decision.up_to_date and current is not None:
            try:
                planner_for(self.root).note_in_use(self.decision)
            except BakehouseError as error:  # the mark only orders reasons: never fail a run on it
                sys.stderr.write(f"bakehouse: {self.name}: could not mark {current.image_id} in use: {error}\n")
            task.meta = {"image": current.image_id, "created": current.created,
                         "locations": current.locations, "packages": current.packages}
        try:  # a revocation given with --at that took effect: the task moves the channels on it
            settled = not unsettled(planner_for(self.root), self.name)
        except BakehouseError:
            settled = False  # the action says why, in one line
        return self.decision.up_to_date and not self.decision.relaunch and settled  # else the task sets them

    def title(self, task: Any) -> str:
        if self.error is not None:
            return f"{task.name}: error"
        if self.decision is None:
            return task.name
        if self.decision.up_to_date:
            return f"{task.name}: {self.decision.describe()}"
        return f"{task.name}: baking ({self.decision.describe()})"

    def __str__(self) -> str:
        if self.error is not None:
            return f"{self.name}: {self.error}"
        if self.decision is None:
            return f"{self.name}: not checked yet"
        if self.decision.up_to_date and self.decision.relaunch:
            return f"{self.name} would set {self.decision.relaunch}\n     "
        return f"{self.name} would bake because:\n" + "".join(
            f"        - {reason}\n" for reason in self.decision.reasons
        ) + "     "


REBAKE_ALL_VARIABLE = "BAKEHOUSE_REBAKE_ALL"  # set by `doit --rebake` (commands/run.py)


def rebake_all() -> bool:
    """`doit --rebake`: every bake of the run is baked again, as each `--rebake` would."""
    return os.environ.get(REBAKE_ALL_VARIABLE) == "1"


def _bake(root: str, name: str, rebake: bool = False) -> TaskFailed | None:
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:  # each line as it happens, also into a pipe or a CI log
        reconfigure(line_buffering=True)
    planner = planner_for(Path(root))
    try:
        made = bake_image(planner, name, rebake or rebake_all(), sys.stdout)
    except BakehouseError as error:
        notify(planner.project, "bake.failed", {"bake": name, "error": str(error)}, print)
        return TaskFailed(str(error))
    if made:
        notify(planner.project, "bake.succeeded", {"bake": name, "images": [
            {"image": image.image_id, "locations": image.locations, "base_image": image.base_image} for image in made]}, print)
    try:
        planner.forget(name)  # its new image, which `latest` now points at
        settle(planner, [name], print)  # channels off what was revoked since, then publish
    except BakehouseError as error:
        return TaskFailed(str(error))
    return None


def _publish(root: str, name: str) -> TaskFailed | None:
    planner = planner_for(Path(root))
    try:
        planner.forget(name)
        settle(planner, [name], print)
    except BakehouseError as error:
        return TaskFailed(str(error))
    return None


class Published:
    """doit uptodate check of `publish:<name>`: every target of the bake's [publish] holds
    what its channels point at (a target written by hand elsewhere, or one a failed run did not
    write, is written again)."""

    def __init__(self, root: Path, name: str) -> None:
        self.root, self.name = root, name

    def __call__(self, task: Any, values: dict[str, Any]) -> bool:
        planner = planner_for(self.root)
        try:
            planner.forget(self.name)
            return not pending(planner, self.name)
        except BakehouseError:
            return False  # the action says why, in one line


def _build_package(root: str, name: str) -> TaskFailed | None:
    try:
        package = next(p for p in planner_for(Path(root)).source_packages if p.name == name)
        build_rpm(package) if package.kind == "rpm" else build_deb(package)
    except BakehouseError as error:
        return TaskFailed(str(error))
    return None
