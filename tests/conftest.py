"""Shared fixtures: throwaway bakehouse repositories baked with the real tools.

Every end-to-end test runs the real `doit`, `packer`, `mmdebstrap` and `dpkg`. To stay fast,
one tiny base image (busybox + dpkg, about 10 MB) is baked once per test session; each test
gets a copy of that repository, registry included, as a fresh clone would have it (no dep file).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import run_doit, write

PROJECT = Path(__file__).resolve().parent.parent

TINY_BASE = """\
description = "tiny base for tests: busybox and dpkg"
template = "local-base.pkr.hcl.j2"
rebuild_every = "week"

[source]
suite = "bookworm"
variant = "busybox"
"""


def new_repo(root: Path) -> Path:
    """A repository with the shipped templates, packages and hello bake, on a tiny base."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(PROJECT / "templates", root / "templates")
    shutil.copytree(PROJECT / "packages", root / "packages")
    shutil.copy(PROJECT / "dodo.py", root / "dodo.py")
    shutil.copy(PROJECT / "bakes" / "hello.toml", write(root / "bakes" / "base.toml", TINY_BASE).parent / "hello.toml")
    return root


@pytest.fixture(scope="session")
def baked_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = new_repo(tmp_path_factory.mktemp("session") / "repo")
    run_doit(repo, "bake:base", check=True)
    return repo


@pytest.fixture
def repo(baked_base: Path, tmp_path: Path) -> Path:
    """A copy of the session repository: base image baked, no dep file, nothing else."""
    copy = tmp_path / "repo"
    shutil.copytree(baked_base, copy, symlinks=True, ignore=shutil.ignore_patterns(".doit.db*", "build", "dist"))
    return copy


@pytest.fixture
def empty_repo(tmp_path: Path) -> Path:
    """A repository with the shipped templates and no bakes yet."""
    root = tmp_path / "repo"
    shutil.copytree(PROJECT / "templates", root / "templates")
    shutil.copy(PROJECT / "dodo.py", root / "dodo.py")
    (root / "bakes").mkdir()
    return root
