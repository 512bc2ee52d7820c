"""The one place that runs packer.

Packer runs in its own session (process group), so a cancel reaches packer and everything it
started: on Ctrl-C, SIGTERM or a timeout we send SIGINT to the group, give packer a bounded
time to clean up after itself, then kill what is left. Output streams to the terminal with a
`[bake]` prefix and goes whole into the bake's log; the image made is read from the manifest
post-processor, never scraped from log lines.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, TextIO

from .errors import PackerError

CLEANUP_GRACE_SECONDS = 120
TAIL_LINES = 15


@dataclass(frozen=True)
class PackerRun:
    label: str
    template: Path
    log_path: Path
    timeout_seconds: int
    env: dict[str, str] = field(default_factory=dict)
    packer: str = "packer"


class Cancelled(KeyboardInterrupt):
    """Raised after packer was stopped because the run was cancelled."""


@lru_cache(maxsize=None)
def packer_version(packer: str = "packer") -> tuple[int, ...]:
    """(1, 6, 6) for `Packer v1.6.6`."""
    try:
        output = subprocess.run([packer, "version"], capture_output=True, text=True, timeout=60).stdout
    except FileNotFoundError:
        raise PackerError(f"'{packer}' is not installed (Debian: apt-get install packer)") from None
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", output)
    if match is None:
        raise PackerError(f"cannot tell the packer version from {output.strip()!r}")
    return tuple(int(part) for part in match.groups())


def build(run: PackerRun, out: TextIO) -> None:
    """`packer build` the template; returns when packer succeeded, raises otherwise."""
    packer_version(run.packer)  # a clear error when packer is missing
    run.log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [run.packer, "build", "-color=false", str(run.template)]
    env = {**os.environ, "PACKER_CHECKPOINT_DISABLE": "1", "CHECKPOINT_DISABLE": "1", **run.env}
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    with run.log_path.open("w", encoding="utf-8") as log, _sigterm_as_interrupt():
        log.write(f"$ {' '.join(argv)}\n")
        process = subprocess.Popen(
            argv, cwd=run.template.parent, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
            start_new_session=True,
        )
        timer = _Timeout(process, run.timeout_seconds)
        try:
            _stream(process, run.label, out, log, tail)
            returncode = process.wait()
        except KeyboardInterrupt:
            log.write("bakehouse: cancelled; asking packer to clean up\n")
            out.write(f"[{run.label}] cancelled: asking packer to clean up (up to {CLEANUP_GRACE_SECONDS}s)\n")
            _stop(process, run.label, out, log, tail)
            raise Cancelled() from None
        finally:
            timer.cancel()
    if timer.fired:
        raise PackerError(
            f"{run.label}: timed out after {_duration(run.timeout_seconds)} and was cancelled; "
            f"full log: {run.log_path}"
        )
    if returncode != 0:
        out.write(f"[{run.label}] packer failed; last lines:\n")
        for line in tail:
            out.write(f"[{run.label}]   {line}\n")
        raise PackerError(f"{run.label}: packer exited {returncode}; full log: {run.log_path}")


def _stream(process: subprocess.Popen[str], label: str, out: TextIO, log: TextIO, tail: collections.deque[str]) -> None:
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.rstrip("\n")
        tail.append(line)
        log.write(raw)
        log.flush()
        out.write(f"[{label}] {line}\n")
        out.flush()


def _stop(process: subprocess.Popen[str], label: str, out: TextIO, log: TextIO, tail: collections.deque[str]) -> None:
    """SIGINT to packer's group, drain its output while it cleans up, then kill the rest."""
    _signal_group(process, signal.SIGINT)
    deadline = threading.Timer(CLEANUP_GRACE_SECONDS, _signal_group, (process, signal.SIGKILL))
    deadline.start()
    try:
        _stream(process, label, out, log, tail)
        process.wait()
    finally:
        deadline.cancel()
        _signal_group(process, signal.SIGKILL)  # anything packer left behind in its group


def _signal_group(process: subprocess.Popen[str], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


class _Timeout:
    """Cancels packer like Ctrl-C once `seconds` have passed."""

    def __init__(self, process: subprocess.Popen[str], seconds: int) -> None:
        self.fired = False
        self.process = process
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        _signal_group(self.process, signal.SIGINT)
        time.sleep(CLEANUP_GRACE_SECONDS)
        _signal_group(self.process, signal.SIGKILL)

    def cancel(self) -> None:
        self._timer.cancel()


class _sigterm_as_interrupt:
    """While packer runs, SIGTERM cancels the bake like Ctrl-C (only the main thread can)."""

    def __enter__(self) -> None:
        self.previous: Any = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._raise)

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt()

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def read_manifest(path: Path, label: str) -> dict[str, Any]:
    """The last build entry of packer's manifest post-processor output."""
    return read_manifest_builds(path, label)[-1]


def read_manifest_builds(path: Path, label: str) -> list[dict[str, Any]]:
    """Every build entry of the manifest's last packer run (one per source block)."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        builds = manifest["builds"]
        last_run = manifest.get("last_run_uuid")
        builds = [build for build in builds if last_run is None or build.get("packer_run_uuid") == last_run]
        if not builds:
            raise IndexError("no builds")
        return builds
    except FileNotFoundError:
        raise PackerError(f"{label}: packer succeeded but wrote no manifest at {path}") from None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
        raise PackerError(f"{label}: malformed packer manifest {path} ({error})") from None


def _duration(seconds: int) -> str:
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"
