"""A plan as a CI system's build matrix (`doit plan --matrix`): the bakes that would run,
grouped in stages so a base bakes before the services on it, one job per bake.

A bake's stage is 1 plus the highest stage of the bakes it builds on that also run (a base
that is kept costs no stage). Every job runs `doit bake:<name>`: it bakes what it builds on
if that is still needed, and the shared lock (providers/aws/shared.py) makes a second runner
reuse what the first baked, so a matrix is safe even when jobs overlap; stages only save the
waiting.

- `github`: `{"stages": [{"include": [{"bake": "base", "stage": 1}]}, ...]}`; `--stage N`
  prints one stage's `{"include": [...]}` for `strategy.matrix: ${{ fromJSON(...) }}`.
- `gitlab`: a child pipeline (JSON is YAML) with one `parallel: matrix` job per stage, for a
  `trigger: include: artifact:` job; each takes the plan job's artifacts (bakehouse.lock)
  from the parent pipeline (`PARENT_PIPELINE_ID`).
"""

from __future__ import annotations

import json
from typing import Any

from .model import BakeGraph

RUNS = ("bake", "bake-missing", "share")  # plan actions a job has work for
FORMATS = ("github", "gitlab")


def stages(graph: BakeGraph, actions: dict[str, str]) -> list[list[str]]:
    """The bakes whose action runs something, by stage, each stage in bake order."""
    stage_of: dict[str, int] = {}
    for bake in graph.bakes:  # bases come first
        if actions.get(bake.name) not in RUNS:
            continue
        ancestors = [step.name for step in graph.chain(bake.name)[:-1]]
        stage_of[bake.name] = 1 + max((stage_of.get(name, 0) for name in ancestors), default=0)
    count = max(stage_of.values(), default=0)
    return [[name for name in graph.names if stage_of.get(name) == number] for number in range(1, count + 1)]


def github(grouped: list[list[str]], stage: int | None = None) -> str:
    matrices = [{"include": [{"bake": name, "stage": number} for name in names]}
                for number, names in enumerate(grouped, 1)]
    if stage is not None:
        return json.dumps(matrices[stage - 1] if 0 < stage <= len(matrices) else {"include": []})
    return json.dumps({"stages": matrices, "bakes": sum(len(names) for names in grouped)})


def gitlab(grouped: list[list[str]]) -> str:
    pipeline: dict[str, Any] = {"stages": [f"bake-{number}" for number in range(1, len(grouped) + 1)] or ["plan"]}
    for number, names in enumerate(grouped, 1):
        # the plan job's bakehouse.lock from the parent pipeline, and the stage before
        needs: list[Any] = [{"pipeline": "$PARENT_PIPELINE_ID", "job": "plan"}]
        pipeline[f"bake-{number}"] = {
            "stage": f"bake-{number}",
            "needs": needs + ([{"job": f"bake-{number - 1}"}] if number > 1 else []),
            "script": ["sh scripts/setup", ".venv/bin/doit bake:$BAKE"],
            "parallel": {"matrix": [{"BAKE": names}]},
        }
    if not grouped:  # a child pipeline needs a job: say there is nothing to bake
        pipeline["nothing-to-bake"] = {"stage": "plan", "script": ["echo nothing to bake"]}
    return json.dumps(pipeline, indent=2)
