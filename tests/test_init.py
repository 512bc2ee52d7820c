"""`doit init`: a new repository from the shipped example, in one command, overwriting nothing."""

from __future__ import annotations

import filecmp
import os
from pathlib import Path

from helpers import PROJECT, run_doit


def same_tree(left: Path, right: Path) -> bool:
    compared = filecmp.dircmp(left, right, ignore=["__pycache__"])
    return (not compared.left_only and not compared.right_only and not compared.diff_files
            and all(same_tree(left / name, right / name) for name in compared.common_dirs))


def test_init_writes_the_shipped_example_and_it_plans(tmp_path: Path) -> None:
    run = run_doit(tmp_path, "init", "ours")
    assert run.returncode == 0, run.output
    repo = tmp_path / "ours"
    assert run.output.startswith(f"made a bakehouse repository {repo} (local images):\n  dodo.py\n")
    assert "\n  cd ours\n  doit plan " in run.output
    assert same_tree(repo / "bakes", PROJECT / "bakes")
    assert same_tree(repo / "packages" / "hello-svc", PROJECT / "packages" / "hello-svc")
    assert sorted(path.name for path in (repo / "packages").iterdir()) == ["hello-svc"]  # no RPM: no rpmbuild needed
    assert os.access(repo / "packages" / "hello-svc" / "DEBIAN" / "postinst", os.X_OK)
    assert (repo / ".gitignore").read_text().splitlines()[1:] == [".bakehouse/", ".doit.db*", "build/", "dist/"]
    assert "loader = bakehouse" in (repo / "doit.cfg").read_text()
    assert all(line.startswith("#") or not line.strip() for line in (repo / "bakehouse.toml").read_text().splitlines())
    plan = run_doit(repo, "plan")
    assert plan.returncode == 1 and plan.output.splitlines()[-1] == "2 to bake, 0 up to date", plan.output
    assert run_doit(repo, "").output.startswith("ERROR: doit: argument 1 is empty")  # its doit.cfg names the loader


def test_init_overwrites_nothing(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("mine\n")
    run = run_doit(tmp_path, "init")
    assert run.returncode == 3
    assert run.output == (f"ERROR: doit init: {tmp_path}: .gitignore already there; doit init overwrites nothing "
                          "(run it in an empty folder, or move those aside)\n")
    assert sorted(path.name for path in tmp_path.iterdir()) == [".gitignore"]
    assert (tmp_path / ".gitignore").read_text() == "mine\n"


def test_init_aws_writes_the_ami_example(tmp_path: Path) -> None:
    run = run_doit(tmp_path, "init", "--aws")
    assert run.returncode == 0 and "(AMIs)" in run.output, run.output
    assert same_tree(tmp_path / "bakes", PROJECT / "examples" / "aws" / "bakes")


def test_init_takes_one_folder(tmp_path: Path) -> None:
    run = run_doit(tmp_path, "init", "a", "b")
    assert (run.returncode, run.output) == (3, "ERROR: doit init takes one folder at most, not 2: a b\n")
