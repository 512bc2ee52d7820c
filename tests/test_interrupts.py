"""Ctrl-C at any moment of a bake, on a loaded machine (two busy loops beside it): nothing is
left mounted, in scratch space or running, and what the run says matches what it recorded.
Spread over the whole bake (tests/interrupting.py); bench/interrupts.py runs more of them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from interrupting import interrupt_at_random, loaded, timed_run

SEED = int(os.environ.get("BAKEHOUSE_INTERRUPT_SEED", "1"))  # to replay a failure


@pytest.mark.parametrize(("target", "count"), [("bake:hello", 20), ("bake:base", 8)])
def test_ctrl_c_anywhere_in_a_bake_on_a_loaded_machine_leaves_nothing(repo: Path, tmp_path: Path, target: str,
                                                                      count: int) -> None:
    with loaded(2):
        longest = timed_run(repo, target)
        outcomes = interrupt_at_random(repo, target, tmp_path / "scratch", count, longest, SEED)
    failed = [outcome for outcome in outcomes if outcome.problems]
    assert not failed, "\n\n".join(f"Ctrl-C after {o.after:.2f}s, exit {o.code}:\n" + "\n".join(o.problems)
                                   for o in failed)
    assert any(outcome.code != 0 for outcome in outcomes)  # some did land mid-bake
