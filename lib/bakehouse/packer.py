"""The one place that runs packer.

Packer runs in its own session (process group), so a cancel reaches packer and everything it
started: on Ctrl-C, SIGTERM or a timeout we send SIGINT to the group, give packer a bounded
time to clean up after itself, then kill what is left. Output streams to the terminal with a
`[bake]` prefix and goes whole into the bake's log; the image made is read from the manifest
post-processor, never scraped from log lines.
"""

from __future__ import annotations

import collections
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TextIO

from . import scratch
from .interrupts import CANCELLING, deferred
from .progress import Progress, Step, coloured
from .errors import BakehouseError, PackerError
from .files import write_atomically

CLEANUP_GRACE_SECONDS = 120
# `BAKEHOUSE_ON_ERROR=abort`: packer's `-on-error=abort`, which leaves what a failed build made
# (an AMI bake's instance, key pair and security group) to be looked at; nothing is recorded.
ON_ERROR_VARIABLE = "BAKEHOUSE_ON_ERROR"
ON_ERROR_CHOICES = ("cleanup", "abort")
PR_SET_PDEATHSIG = 1  # linux/prctl.h
TAIL_LINES = 15


@dataclass(frozen=True)
class PackerRun:
    label: str
    template: Path
    log_path: Path
    timeout_seconds: int
    packer: str = "packer"
    inherit_fds: tuple[int, ...] = ()  # e.g. the bake's lock, held by packer while it runs
    append_log: bool = False  # a retry of the same bake: its log goes on after the first
    scratch: Path | None = None  # the run's own scratch folder (scratch.py): made, then cleared
    steps: tuple[Step, ...] = ()  # the template's steps, for progress lines (progress.py)


class Cancelled(KeyboardInterrupt):
    """Raised after packer was stopped because the run was cancelled."""


class TimedOut(PackerError):
    """Packer ran past the bake's timeout and was cancelled (never retried)."""


def packer_version(packer: str = "packer", cache_dir: Path | None = None) -> tuple[int, ...]:
    """(1, 6, 6) for `Packer v1.6.6`. Asking packer costs about 0.1 s, so the answer is kept
    in `cache_dir`, keyed by the binary's path, size and modification time."""
    binary = shutil.which(packer)
    if binary is None:
        raise PackerError(f"'{packer}' is not installed (Debian: apt-get install packer)")
    stat = os.stat(binary)
    identity = f"{os.path.realpath(binary)}:{stat.st_size}:{stat.st_mtime_ns}"
    cache = None if cache_dir is None else cache_dir / "packer-version.json"
    if cache is not None and cache.is_file():
        try:
            known = json.loads(cache.read_text())
            if known.get("binary") == identity:
                return tuple(known["version"])
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache is asked again
    version = _ask_version(binary)
    if cache is not None:
        write_atomically(cache, json.dumps({"binary": identity, "version": version}))
    return version


@lru_cache(maxsize=None)
def _ask_version(binary: str) -> tuple[int, ...]:
    try:
        output = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as error:
        raise _cannot_run(binary, error) from None
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", output)
    if match is None:
        said = output.strip().splitlines()[0][:80] if output.strip() else ""
        raise PackerError(f"{binary} is not packer, or is broken: `{binary} version` printed "
                          + (f"{said!r}, not a version such as 'Packer v1.6.6'" if said else "nothing"))
    return tuple(int(part) for part in match.groups())


def build(run: PackerRun, out: TextIO) -> None:
    """`packer build` the template; returns when packer succeeded, raises otherwise. The
    run's scratch folder is its scripts' (BAKEHOUSE_RUN_DIR), and is cleared when packer
    ends, however it ends."""
    if shutil.which(run.packer) is None:
        raise PackerError(f"'{run.packer}' is not installed (Debian: apt-get install packer)")
    env = {**os.environ, "PACKER_CHECKPOINT_DISABLE": "1", "CHECKPOINT_DISABLE": "1"}
    if run.scratch is None:
        _build(run, env, out)
        return
    run.scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        env = {**env, scratch.RUN_VARIABLE: run.scratch.name, scratch.RUN_DIR_VARIABLE: str(run.scratch)}
        own = scratch.packer_tmp(run.scratch)  # packer's own files too (its log, if it is killed)
        if own is not None:
            own.mkdir(mode=0o700, parents=True, exist_ok=True)
            env["TMPDIR"] = str(own)
        _build(run, env, out)
    finally:
        _clear(run.label, run.scratch, out)


def _clear(label: str, run_scratch: Path, out: TextIO) -> None:
    """Remove the run's scratch; say so when a step had left something there (a cancel)."""
    ours = {run_scratch, scratch.packer_tmp(run_scratch)}  # made by bakehouse for the run: expected
    try:
        for cleared in scratch.clear(run_scratch):
            if cleared.unmounted or cleared.path not in ours:
                out.write(f"[{label}] removed {cleared.path}"
                          f"{f' and unmounted {cleared.unmounted} mounts in it' if cleared.unmounted else ''}, "
                          "left by the interrupted step\n")
    except BakehouseError as error:  # the bake's own outcome is the one to report
        out.write(f"[{label}] {error}\n")
    out.flush()


def on_error() -> str:
    """What packer does with a failed build's resources: `cleanup` (packer's default) or `abort`."""
    value = os.environ.get(ON_ERROR_VARIABLE) or "cleanup"
    if value not in ON_ERROR_CHOICES:
        raise PackerError(f"{ON_ERROR_VARIABLE}={value!r}: give cleanup (the default) or abort "
                          "(leave what a failed build made, to look at it)")
    return value


def _build(run: PackerRun, env: dict[str, str], out: TextIO) -> None:
    run.log_path.parent.mkdir(parents=True, exist_ok=True)
    keep = on_error() == "abort"
    argv = [run.packer, "build", "-color=false", *(["-on-error=abort"] if keep else []), str(run.template)]
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    said: list[str] = []
    with run.log_path.open("a" if run.append_log else "w", encoding="utf-8") as log:
        log.write(f"$ {' '.join(argv)}\n")
        # Started as one step: a Ctrl-C that arrives while packer starts waits until the
        # `except KeyboardInterrupt` below can cancel it, instead of leaving it running.
        with deferred():
            try:
                process = subprocess.Popen(
                    argv, cwd=run.template.parent, env=env, stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                    start_new_session=True,  # our Ctrl-C reaches packer only through us, as SIGINT
                    pass_fds=run.inherit_fds, preexec_fn=_cancel_when_parent_dies,
                )
            except OSError as error:
                raise _cannot_run(run.packer, error) from None
            deadline = _Deadline(process, run.timeout_seconds)
        try:
            _stream(process, run.label, out, log, tail, said, Progress(run.label, run.steps, coloured(out)))
            returncode = process.wait()
        except KeyboardInterrupt:
            _note(f"cancelled: asking packer to clean up (up to {CLEANUP_GRACE_SECONDS}s; "
                  "Ctrl-C again to kill it now)", run.label, out, log)
            deadline.stop()
            _stop(process, run.label, out, log, tail)
            raise Cancelled() from None
        finally:
            deadline.stop()
        if deadline.fired:
            _note(f"timed out after {_duration(run.timeout_seconds)}; packer was cancelled", run.label, out, log)
    if deadline.fired:
        raise TimedOut(
            f"{run.label}: timed out after {_duration(run.timeout_seconds)} (the bake's timeout) and was "
            f"cancelled; full log: {run.log_path}"
        )
    if returncode != 0:
        out.write(Progress(run.label, (), coloured(out)).failed(f"[{run.label}] packer failed; last lines:") + "\n")
        for line in tail:
            out.write(f"[{run.label}]   {line}\n")
        if keep:
            out.write(f"[{run.label}] {ON_ERROR_VARIABLE}=abort: packer left what the failed build made (an AMI "
                      "bake's instance, key pair and security group) for you to look at; remove it when done\n")
        if said:  # a script of the bake said why, in one line: that is the error
            raise PackerError(f"{run.label}: {said[-1]}; nothing was recorded; full log: {run.log_path}")
        failed_test = next((match for line in tail if (match := FAILED_TEST.search(line))), None)
        if failed_test is not None:  # the bake's own test said no: name it, not packer
            raise PackerError(
                f"{run.label}: test {failed_test[1]} failed (exit {failed_test[2]}) inside the image; "
                f"nothing was recorded; full log: {run.log_path}"
            )
        raise PackerError(f"{run.label}: packer exited {returncode}; full log: {run.log_path}")


# How a bake's script (templates/scripts/) says why it failed, in one line for the user.
SCRIPT_ERROR = re.compile(r"bakehouse: error: (.+)$")
# How scripts/run-tests.sh reports a bake's test script that failed inside the image.
FAILED_TEST = re.compile(r"test (\S+): FAILED \(exit (\d+)\)")


def _cannot_run(binary: str, error: Exception) -> PackerError:
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return PackerError(
        f"'{shutil.which(binary) or binary}' cannot run ({reason}); "
        "install packer (Debian: apt-get install packer) or put a working one first on PATH"
    )


def _cancel_when_parent_dies() -> None:
    """In the child, before packer starts: if this process dies without cancelling packer
    (SIGKILL, a crash), the kernel sends packer SIGTERM (its wrapper ignores a lone SIGINT),
    and packer cancels and cleans up instead of baking on with no one to record or remove
    what it makes. What its scripts leave is swept by the next bake (Provider.sweep)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, CANCELLING)  # held by the parent while it starts us


def _note(message: str, label: str, out: TextIO, log: TextIO) -> None:
    log.write(f"bakehouse: {message}\n")
    log.flush()
    out.write(f"[{label}] {message}\n")
    out.flush()


def _stream(
    process: subprocess.Popen[str], label: str, out: TextIO, log: TextIO, tail: collections.deque[str],
    said: list[str] | None = None, progress: Progress | None = None,
) -> None:
    """Show and log packer's output; keep its last lines in `tail`, and in `said` what the
    bake's scripts said was wrong (SCRIPT_ERROR), wherever it came in the output."""
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.rstrip("\n")
        tail.append(line)
        if said is not None and (error := SCRIPT_ERROR.search(line)):
            said.append(error[1].strip())
        step = progress.line(line) if progress is not None else None
        if step is not None:
            out.write(step + "\n")
        log.write(raw)
        log.flush()
        out.write(f"[{label}] {line}\n")
        out.flush()


def _stop(process: subprocess.Popen[str], label: str, out: TextIO, log: TextIO, tail: collections.deque[str]) -> None:
    """SIGINT to packer's group, drain its output while it cleans up, then kill the rest."""
    _signal_group(process, signal.SIGINT)
    kill = threading.Timer(CLEANUP_GRACE_SECONDS, _signal_group, (process, signal.SIGKILL))
    kill.daemon = True
    kill.start()
    try:
        _stream(process, label, out, log, tail)
        process.wait()
        # packer may exit before what it started has cleaned up (mmdebstrap unmounting and
        # removing its scratch): let them finish within the grace period, then kill the rest.
        _wait_for_group(process.pid, deadline=time.monotonic() + CLEANUP_GRACE_SECONDS)
    finally:
        kill.cancel()
        _signal_group(process, signal.SIGKILL)  # anything packer left behind in its group
        process.wait()


def _wait_for_group(group: int, deadline: float) -> None:
    """Until no live process is left in process group `group` (zombies do not count: an
    orphan's is reaped by whoever adopted it, which may be slow), or until `deadline`."""
    while time.monotonic() < deadline and _live_members(group):
        time.sleep(0.1)


def _live_members(group: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        state, pgrp = fields[0], int(fields[2])
        if pgrp == group and state not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


def _signal_group(process: subprocess.Popen[str], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


class _Deadline:
    """Cancels packer like Ctrl-C once `seconds` have passed, and kills it after the grace."""

    def __init__(self, process: subprocess.Popen[str], seconds: int) -> None:
        self.fired = False
        self.process = process
        self._timers = [threading.Timer(seconds, self._fire)]
        self._start(self._timers[0])

    @staticmethod
    def _start(timer: threading.Timer) -> None:
        timer.daemon = True
        timer.start()

    def _fire(self) -> None:
        self.fired = True
        _signal_group(self.process, signal.SIGINT)
        kill = threading.Timer(CLEANUP_GRACE_SECONDS, _signal_group, (self.process, signal.SIGKILL))
        self._timers.append(kill)
        self._start(kill)

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()


def read_manifest(path: Path, label: str) -> dict[str, Any]:
    """The last build entry of packer's manifest post-processor output."""
    return read_manifest_builds(path, label)[-1]


def read_manifest_builds(path: Path, label: str, every_run: bool = False) -> list[dict[str, Any]]:
    """Every build entry of the manifest's last packer run (one per source block), or of
    every run that wrote to it (`every_run`: a bake retried in the places that failed)."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        builds = manifest["builds"]
        last_run = None if every_run else manifest.get("last_run_uuid")
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
