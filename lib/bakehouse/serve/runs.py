"""Bake runs started over HTTP: each is `doit bake:NAME` in the repository, the very command a
person runs, so it decides, locks and records exactly as the command line does.

A run belongs to the server, never to the request that started it: a client that goes away
leaves it running. Two requests for a bake while it runs share one run. At most `limit` runs
bake at once; the rest wait, queued. Every run is kept as JSON and its output as a log under
.bakehouse/serve/, so its state and log can be read after it ended and after a restart.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..tasks import BASE_CHANNELS_VARIABLE, VERSIONS_VARIABLE

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
ENDED = (SUCCEEDED, FAILED)


@dataclass(frozen=True)
class Outcome:
    """What a finished run made: the bake's current image and where it is, or the error."""

    image: str | None = None
    locations: dict[str, str] = field(default_factory=dict)
    base_image: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class RunState:
    id: str
    bake: str
    rebake: bool
    state: str
    queued_at: str
    started_at: str | None = None
    ended_at: str | None = None
    step: str | None = None  # the last line it printed
    exit_code: int | None = None
    outcome: Outcome | None = None
    versions: dict[str, str] = field(default_factory=dict)  # packages pinned at a requested version
    base_channel: str | None = None  # the channel of its base it builds on, as a request asked (base_label)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunState:
        outcome = data.get("outcome")
        return cls(**{**data, "outcome": None if outcome is None else Outcome(**outcome)})


def _versions_key(versions: dict[str, str] | None, base_channel: str | None = None) -> str:
    return json.dumps([versions or {}, base_channel], sort_keys=True)


def new_run_id(bake: str) -> str:
    """`run.hello.20261206T103000Z.1a2b3c4d`: dots, which no image id holds, so a run is never
    taken for an image (`hello-20261206T103000Z-<key>`)."""
    return f"run.{bake}.{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.{secrets.token_hex(4)}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class Run:
    """One run: its state, and its output lines as they come."""

    def __init__(self, state: RunState, log_path: Path) -> None:
        self.state = state
        self.log_path = log_path
        self.lines: list[str] = []
        self.changed = threading.Condition()

    @property
    def ended(self) -> bool:
        return self.state.state in ENDED

    def output(self) -> str:
        if self.lines or not self.log_path.is_file():
            return "".join(self.lines)
        return self.log_path.read_text(encoding="utf-8", errors="replace")


Finish = Callable[[str], Outcome]  # bake name -> its current image after a successful run


class Runner:
    """Starts and keeps bake runs for one repository."""

    def __init__(self, root: Path, state_dir: Path, finish: Finish, limit: int = 2,
                 command: list[str] | None = None) -> None:
        self.root = root
        self.folder = state_dir / "serve"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.finish = finish
        self.slots = threading.BoundedSemaphore(limit)
        self.command = command or [sys.executable, "-m", "doit"]
        self.lock = threading.Lock()
        self.runs: dict[str, Run] = {}
        self.active: dict[tuple[str, bool, str], Run] = {}  # bake, rebake, versions -> its run now
        self.processes: dict[str, subprocess.Popen[str]] = {}  # run id -> its doit, while it runs
        self.threads: list[threading.Thread] = []  # each run's, which saves its state when it ends
        self._load()

    def _load(self) -> None:
        for path in sorted(self.folder.glob("*.json")):
            try:
                state = RunState.from_json(json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, TypeError, AttributeError, KeyError, OSError):
                continue  # not a run's state (not an object, damaged): not a run
            if state.state not in ENDED:  # the server stopped while it ran: it did not finish here
                state = replace(state, state=FAILED, ended_at=state.ended_at or _now(),
                                outcome=Outcome(error="the server stopped before this bake ended"))
            self.runs[state.id] = Run(state, self.folder / f"{state.id}.log")

    def get(self, run_id: str) -> Run | None:
        with self.lock:
            return self.runs.get(run_id)

    def all(self) -> list[Run]:
        with self.lock:
            return list(self.runs.values())

    def active_run(self, bake: str, versions: dict[str, str] | None = None, base_channel: str | None = None) -> Run | None:
        """The run of `bake` (with these versions pinned, on that base channel) queued or running now, if any."""
        pinned = _versions_key(versions, base_channel)
        with self.lock:
            return self.active.get((bake, False, pinned)) or self.active.get((bake, True, pinned))

    def start(self, bake: str, rebake: bool = False, versions: dict[str, str] | None = None,
              base_channel: str | None = None) -> tuple[Run, bool]:
        """A run of `bake`: the one already queued or running (shared), or a new one.
        Returns the run and whether it is new."""
        pinned = _versions_key(versions, base_channel)
        with self.lock:
            running = self.active.get((bake, rebake, pinned)) or (
                None if rebake else self.active.get((bake, True, pinned)))
            if running is not None:
                return running, False
            run_id = new_run_id(bake)
            run = Run(RunState(run_id, bake, rebake, QUEUED, _now(), versions=dict(versions or {}),
                               base_channel=base_channel),
                      self.folder / f"{run_id}.log")
            self.runs[run_id] = run
            self.active[(bake, rebake, pinned)] = run
            self._save(run)
        thread = threading.Thread(target=self._bake, args=(run,), name=f"bake {run_id}", daemon=True)
        with self.lock:
            self.threads.append(thread)
        thread.start()
        return run, True

    def shutdown(self, seconds: float = 150) -> None:
        """Cancel every running bake as Ctrl-C does (SIGINT to its process group: packer and
        mmdebstrap clean up, nothing is recorded) and wait for each to end, reading its output
        to the end, so none dies of a broken pipe with mounts left behind."""
        with self.lock:
            running = list(self.processes.values())
        for process in running:
            try:
                os.killpg(process.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + seconds
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        with self.lock:
            threads = list(self.threads)
        for thread in threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))  # its state saved as failed

    def done(self, bake: str, outcome: Outcome) -> Run:
        """The run that answers for a bake found up to date with `outcome.image`: the last
        run that made or answered for that image (the same id every time), or a new record
        of it that baked nothing (Spinnaker's "previously baked")."""
        with self.lock:
            for run in reversed(list(self.runs.values())):
                made = run.state.outcome
                if run.state.bake == bake and run.state.state == SUCCEEDED and made and made.image == outcome.image:
                    return run
            now = _now()
            run_id = new_run_id(bake)
            run = Run(RunState(run_id, bake, False, SUCCEEDED, now, now, now, "up to date", 0, outcome),
                      self.folder / f"{run_id}.log")
            run.log_path.write_text(f"[{bake}] up to date: {outcome.image}\n", encoding="utf-8")
            self.runs[run_id] = run
            self._save(run)
        return run

    def _bake(self, run: Run) -> None:
        with self.slots:
            self._update(run, state=RUNNING, started_at=_now())
            args = [*self.command, f"bake:{run.state.bake}"] + (["--rebake"] if run.state.rebake else [])
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            if run.state.versions:  # the versions asked for, as the planner of that run reads them
                env[VERSIONS_VARIABLE] = json.dumps({run.state.bake: run.state.versions})
            if run.state.base_channel:  # the base channel asked for (Spinnaker's base_label)
                env[BASE_CHANNELS_VARIABLE] = json.dumps({run.state.bake: run.state.base_channel})
            code: int
            try:
                # its own session: a signal to the server is not one to the bake; the server
                # cancels its bakes itself when it stops (shutdown), as Ctrl-C would
                with open(run.log_path, "w", encoding="utf-8") as log, subprocess.Popen(
                    args, cwd=self.root, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1, start_new_session=True,
                ) as process:
                    assert process.stdout is not None
                    with self.lock:
                        self.processes[run.state.id] = process
                    for line in process.stdout:
                        log.write(line)
                        log.flush()
                        with run.changed:
                            run.lines.append(line)
                            run.changed.notify_all()
                        if line.strip():
                            self._update(run, step=line.strip()[:200], save=False)
                    code = process.wait()
                with self.lock:
                    self.processes.pop(run.state.id, None)
            except OSError as error:
                code, run.lines = 127, [*run.lines, f"could not start doit: {error}\n"]
            outcome = self._outcome(run, code)
            self._update(run, state=SUCCEEDED if code == 0 else FAILED, ended_at=_now(), exit_code=code,
                         outcome=outcome)
        key = (run.state.bake, run.state.rebake, _versions_key(run.state.versions))
        with self.lock:
            if self.active.get(key) is run:
                del self.active[key]

    def _outcome(self, run: Run, code: int) -> Outcome:
        if code == 0:
            try:
                return self.finish(run.state.bake)
            except Exception as error:  # noqa: BLE001 - the bake ended; say why its image cannot be read
                return Outcome(error=f"baked, but its image cannot be read: {error}")
        said = [line.strip() for line in run.lines if line.strip()]
        # doit says a failed task's message on the line after "TaskFailed - taskid:..."
        failed = [said[at + 1] for at, line in enumerate(said[:-1]) if line.startswith("TaskFailed - taskid:")]
        errors = [line.removeprefix("ERROR: ") for line in said if line.startswith("ERROR: ")]
        return Outcome(error=(failed or errors or said or [f"doit exited with {code}"])[-1])

    def _update(self, run: Run, save: bool = True, **changes: Any) -> None:
        with run.changed:
            run.state = replace(run.state, **changes)
            run.changed.notify_all()
        if save:
            self._save(run)

    def _save(self, run: Run) -> None:
        path = self.folder / f"{run.state.id}.json"
        part = path.with_suffix(".json.part")
        part.write_text(json.dumps(run.state.to_json(), indent=2), encoding="utf-8")
        part.replace(path)
