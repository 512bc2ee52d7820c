"""Shared fixtures: throwaway bakehouse repositories baked with the real tools.

Every end-to-end test runs the real `doit`, `packer`, `mmdebstrap` and `dpkg`. To stay fast,
one tiny base image (busybox + dpkg, about 10 MB) is baked once per test session; each test
gets a copy of that repository, registry included, as a fresh clone would have it (no dep file).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from helpers import PROJECT, SECRET, mirror_packages, run_doit, start_moto, write

# One instant for the whole session (the clock override users have too): a suite that runs
# across midnight or into a new ISO week decides as it would have at its start, and every
# bake in it is "made in the same instant", so image order rests on the registry's sequence.
os.environ.setdefault("BAKEHOUSE_NOW", datetime.now(UTC).isoformat(timespec="seconds"))

TINY_BASE = """\
description = "tiny base for tests: busybox and dpkg"
template = "local-base.pkr.hcl.j2"
rebuild_every = "week"

[source]
suite = "bookworm"
variant = "busybox"
"""


def new_repo(root: Path) -> Path:
    """A repository with the shipped packages and hello bake (the built-in templates), on a tiny base."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(PROJECT / "packages" / "hello-svc", root / "packages" / "hello-svc")  # the .deb example only
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
    # without the unpacked layer cache: it holds device nodes (dev/null...), which a copy would
    # open and read; the first service bake of each test unpacks the tiny base again
    shutil.copytree(baked_base, copy, symlinks=True, ignore=shutil.ignore_patterns(".doit.db*", "build", "dist", "layers"))
    return copy


@dataclass(frozen=True)
class Baked:
    repo: Path  # not to be changed: copy it
    output: str  # what its first `doit` printed
    mirror: dict[str, str]  # the mirror's package indexes before it baked (helpers.mirror_packages)


@pytest.fixture(scope="session")
def shipped_baked(tmp_path_factory: pytest.TempPathFactory) -> Baked:
    """The shipped example as `doit init` writes it, baked from the host's Debian mirror once
    per test session, whichever worker asks first (the others wait on a lock): the real minbase
    base is the slowest bake of the suite, and the main-job and docs tests read the same one."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # this run's, under xdist
    repo, done = shared / "shipped" / "repo", shared / "shipped" / "baked.json"
    done.parent.mkdir(exist_ok=True)
    with open(shared / "shipped" / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.is_file():
            mirror = mirror_packages()
            subprocess.run([sys.executable, "-m", "doit", "init", str(repo)], check=True, capture_output=True)
            first = run_doit(repo, check=True)
            done.write_text(json.dumps({"output": first.output, "mirror": mirror}))
    found = json.loads(done.read_text())
    return Baked(repo, found["output"], found["mirror"])


@pytest.fixture
def empty_repo(tmp_path: Path) -> Path:
    """A repository with no bakes yet (the built-in templates)."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(PROJECT / "dodo.py", root / "dodo.py")
    (root / "bakes").mkdir()
    return root


# --- AWS: moto's EC2 server on loopback stands in for AWS (there is no AWS account here) ---

@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's EC2 server (tests/moto_ec2.py) on 127.0.0.1 and a free port; stopped by its pid."""
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server, url = start_moto(log)
    try:
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def aws_env(moto_url: str, tmp_path: Path) -> dict[str, str]:
    """A fresh moto, and the environment a user sets to point bakehouse and packer at it."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"), timeout=10)
    return {
        "AWS_ACCESS_KEY_ID": "AKIAMOTOTESTKEY",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_EC2": moto_url,
        "AWS_ENDPOINT_URL_SSM": moto_url,  # channels (SSM parameters)
        "BAKEHOUSE_AWS_CALL_LOG": str(tmp_path / "aws-calls.log"),
        "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",  # never ask an instance metadata service
    }


MOTO_VARIANT = 'communicator = "none"  # moto runs no instance to log in to: nothing runs on it\n'


@pytest.fixture
def aws_repo(tmp_path: Path) -> Path:
    """A repository with the shipped AWS example (examples/aws/bakes) and templates, as one
    tries it against moto: the same bakes with communicator = "none" (the one change moto
    needs; the example itself logs in over SSH, as a bake in a real account does)."""
    root = tmp_path / "repo"
    shutil.copytree(PROJECT / "packages" / "hello-svc", root / "packages" / "hello-svc")
    shutil.copytree(PROJECT / "examples" / "aws" / "bakes", root / "bakes")
    shutil.copy(PROJECT / "examples" / "aws" / "dodo.py", root / "dodo.py")
    for bake in (root / "bakes").glob("*.toml"):
        bake.write_text(MOTO_VARIANT + bake.read_text())
    return root


# --- markers: which tests bake and which talk to moto, by the fixtures they use ---

BAKE_FIXTURES = {"baked_base", "repo", "target_tarball", "shipped_baked"}
AWS_FIXTURES = {"moto_url"}
BAKE_MODULES = {"test_main_job.py", "test_install.py", "test_docs.py"}  # bake the shipped example from scratch
# The longest test (the shipped example: two minbase bakes, then its verify, two minutes) starts
# first, so no worker begins it when the others are nearly done.
LONGEST_FIRST = ("test_main_job.py", "test_install.py", "test_docs.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`bake`: the test runs real packer/mmdebstrap/dpkg bakes; `aws`: it uses moto's server
    (every AWS fixture depends on moto_url). Derived, not hand-kept, so no slow test is
    missed when someone runs only the fast half (`-m "not bake and not aws"`)."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & BAKE_FIXTURES or item.path.name in BAKE_MODULES:
            item.add_marker(pytest.mark.bake)
        if names & AWS_FIXTURES:
            item.add_marker(pytest.mark.aws)
    items.sort(key=lambda item: item.path.name not in LONGEST_FIRST)  # stable: the rest keep their order
