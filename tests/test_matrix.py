"""Fanning out over CI: `doit plan --matrix` for GitHub Actions and GitLab, and the shipped
example workflows, checked against each CI system's own schema (check-jsonschema's vendored
copies of GitHub's workflow schema and GitLab's CI schema)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import PROJECT, own_template, run_doit

WORKFLOWS = {"github-actions.yml": "vendor.github-workflows", "gitlab-ci.yml": "vendor.gitlab-ci"}


def check_schema(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)],
                          capture_output=True, text=True)


@pytest.mark.parametrize("workflow", sorted(WORKFLOWS))
def test_the_example_workflows_are_valid_for_their_ci_system(workflow: str) -> None:
    result = check_schema(WORKFLOWS[workflow], PROJECT / "examples" / "ci" / workflow)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_base_and_three_services_fan_out_in_two_stages(repo: Path, tmp_path: Path) -> None:
    for name in ("hello2", "hello3"):
        shutil.copy(repo / "bakes" / "hello.toml", repo / "bakes" / f"{name}.toml")
    with own_template(repo, "scripts/local-base.sh").open("a") as script:
        script.write("# edited: the base rebakes\n")
    full = json.loads(run_doit(repo, "plan", "--matrix", "github", check=True).stdout)
    assert full == {"bakes": 4, "stages": [
        {"include": [{"bake": "base", "stage": 1}]},
        {"include": [{"bake": name, "stage": 2} for name in ("hello", "hello2", "hello3")]},
    ]}
    assert json.loads(run_doit(repo, "plan", "--matrix", "github", "--stage", "2", check=True).stdout) == full["stages"][1]
    assert json.loads(run_doit(repo, "plan", "--matrix", "github", "--stage", "3", check=True).stdout) == {"include": []}

    child = tmp_path / "bake-pipeline.yml"
    child.write_text(run_doit(repo, "plan", "--matrix", "gitlab", check=True).stdout)
    pipeline = json.loads(child.read_text())
    assert pipeline["stages"] == ["bake-1", "bake-2"]
    assert pipeline["bake-1"]["parallel"]["matrix"] == [{"BAKE": ["base"]}]
    assert pipeline["bake-2"]["parallel"]["matrix"] == [{"BAKE": ["hello", "hello2", "hello3"]}]
    assert {"job": "bake-1"} in pipeline["bake-2"]["needs"]
    result = check_schema("vendor.gitlab-ci", child)
    assert result.returncode == 0, result.stdout + result.stderr


def test_nothing_to_bake_is_an_empty_matrix(repo: Path, tmp_path: Path) -> None:
    run_doit(repo, check=True)
    assert json.loads(run_doit(repo, "plan", "--matrix", "github", check=True).stdout) == {"bakes": 0, "stages": []}
    child = tmp_path / "bake-pipeline.yml"
    child.write_text(run_doit(repo, "plan", "--matrix", "gitlab", check=True).stdout)
    assert check_schema("vendor.gitlab-ci", child).returncode == 0
    wrong = run_doit(repo, "plan", "--matrix", "jenkins")
    assert wrong.returncode == 3 and "--matrix takes github or gitlab, not 'jenkins'" in wrong.output
