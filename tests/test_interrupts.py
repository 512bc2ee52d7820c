"""Ctrl-C at any moment of a bake, on a loaded machine (two busy loops beside it): nothing is
left mounted, in scratch space or running, and what the run says matches what it recorded.
Spread over the whole bake (tests/interrupting.py); bench/run.py interrupts runs more of them."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from interrupting import interrupt_at_random, loaded, timed_run

SEED = int(os.environ.get("BAKEHOUSE_INTERRUPT_SEED", "1"))  # to replay a failure


@pytest.mark.parametrize(("target", "count"), [("bake:hello", 10), ("bake:base", 4)])
def test_ctrl_c_anywhere_in_a_bake_on_a_loaded_machine_leaves_nothing(repo: Path, tmp_path: Path, target: str,
                                                                      count: int) -> None:
    with loaded(2):
        longest = timed_run(repo, target)
        outcomes = interrupt_at_random(repo, target, tmp_path / "scratch", count, longest, SEED)
    failed = [outcome for outcome in outcomes if outcome.problems]
    assert not failed, "\n\n".join(f"Ctrl-C after {o.after:.2f}s, exit {o.code}:\n" + "\n".join(o.problems)
                                   for o in failed)
    assert any(outcome.code != 0 for outcome in outcomes)  # some did land mid-bake


def test_ctrl_c_just_after_the_image_is_recorded_never_hides_it(repo: Path) -> None:
    """Ctrl-C the moment `[hello] baked` is printed, five times: the run either ends 0 (doit had
    finished) or as cancelled with one line naming the image as recorded and current; never
    a bare 130, never an image recorded that the run calls interrupted."""
    from helpers import Running, records

    for _ in range(5):
        before = {record["image_id"] for record in records(repo, "hello")}
        run = Running(repo, "bake:hello", "--rebake")
        run.wait_for("[hello] baked ", seconds=120)
        os.killpg(run.process.pid, signal.SIGINT)
        code = run.finish(seconds=60)
        (new,) = {record["image_id"] for record in records(repo, "hello")} - before
        assert f"[hello] baked {new}" in run.output
        if code != 0:
            assert code in (130, -signal.SIGINT), run.output
            assert (f"bakehouse: cancelled; no bake was running; recorded by this run, whole and current: "
                    f"{new} (hello)") in run.output, run.output
