"""Ctrl-C at random moments of a bake, with the machine loaded: what each interrupted run
leaves must be nothing (no mount, no scratch file, no process), and what it says must match
what it recorded. Used by tests/test_interrupts.py and bench/run.py interrupts."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from helpers import Running, processes_mentioning, records

INTERRUPTED = (130, -signal.SIGINT)


@dataclass(frozen=True)
class Outcome:
    after: float  # seconds from the start to the Ctrl-C
    code: int
    problems: tuple[str, ...]  # empty when the run kept every promise


@contextmanager
def loaded(workers: int = 2) -> Iterator[None]:
    """`workers` busy loops beside the bakes (`yes > /dev/null`), stopped by their own pids."""
    busy = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(workers)]
    try:
        yield
    finally:
        for process in busy:
            process.kill()
            process.wait()


def mounts_under(*folders: Path) -> list[str]:
    lines = Path("/proc/mounts").read_text().splitlines()
    return [line for line in lines if any(str(folder) in line for folder in folders)]


def interrupt_once(repo: Path, target: str, scratch: Path, after: float) -> Outcome:
    """Run `doit TARGET --rebake` with its scratch space under `scratch`, Ctrl-C it (SIGINT to
    its process group, as a terminal sends it) `after` seconds into the bake (from its
    `baking` line), and check what it left."""
    tmp, shm = scratch / "tmp", scratch / "shm"
    for folder in (tmp, shm):
        folder.mkdir(parents=True, exist_ok=True)
    bake = target.removeprefix("bake:")
    before = {record["image_id"] for record in records(repo, bake)}
    run = Running(repo, target, "--rebake", env={"TMPDIR": str(tmp), "BAKEHOUSE_SCRATCH": str(shm)})
    run.wait_for(f"[{bake}] baking ", seconds=120)
    time.sleep(after)
    try:
        os.killpg(run.process.pid, signal.SIGINT)
    except ProcessLookupError:
        pass  # it had finished already
    code = run.finish(seconds=180)
    output = run.output
    problems = []
    new = {record["image_id"] for record in records(repo, bake)} - before
    if "Traceback" in output:
        problems.append("a traceback")
    if code == 0:
        if len(new) != 1 or f"[{bake}] baked {next(iter(new), '?')}" not in output:
            problems.append(f"exit 0 but recorded {sorted(new)}")
    elif code in INTERRUPTED:
        line = next((text for text in output.splitlines() if text.startswith("bakehouse: cancelled")), None)
        if line is None:
            problems.append("interrupted without the 'bakehouse: cancelled' line")
        else:
            said = set(re.findall(rf"({re.escape(bake)}-\S+) \({re.escape(bake)}\)", line))
            if said != new:
                problems.append(f"the cancel line names {sorted(said)} as recorded, the registry has {sorted(new)}")
    else:
        problems.append(f"exit {code}")
    left = mounts_under(tmp, shm, repo)
    if left:
        problems.append(f"mounts left: {left}")
    files = sorted(str(path.relative_to(scratch)) for path in scratch.rglob("*") if path.parent in (tmp, shm))
    if files:
        problems.append(f"scratch left: {files}")
    running = processes_mentioning(str(repo)) + processes_mentioning(str(scratch))
    if running:
        problems.append(f"processes left: {running}")
    if problems:
        problems.append("output:\n" + output[-3000:])
    return Outcome(after, code, tuple(problems))


def timed_run(repo: Path, target: str) -> float:
    """How long the bake of `doit TARGET --rebake` takes (from its `baking` line to its end),
    uninterrupted, on the machine as it is now."""
    run = Running(repo, target, "--rebake")
    run.wait_for(f"[{target.removeprefix('bake:')}] baking ", seconds=120)
    start = time.monotonic()
    assert run.finish(seconds=300) == 0, run.output
    return time.monotonic() - start


def interrupt_at_random(repo: Path, target: str, scratch: Path, count: int, longest: float,
                        seed: int) -> list[Outcome]:
    """`count` runs, each Ctrl-C'd at a random moment of its own slice of [0, `longest`]
    (stratified: every part of the bake is hit, from packer's start to the record)."""
    chance = random.Random(seed)
    moments = [(slot + chance.random()) * longest / count for slot in range(count)]
    return [interrupt_once(repo, target, scratch, moment) for moment in moments]
