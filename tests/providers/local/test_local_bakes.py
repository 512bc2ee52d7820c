"""The bake graph end to end on local images: real doit, packer, mmdebstrap and dpkg."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from helpers import bump_hello, image_file, installed_version, records, run_doit


def baked(output: str) -> list[str]:
    """The bakes a doit run baked, in order."""
    return re.findall(r"^\[([\w-]+)\] baked ", output, re.M)


def test_first_run_bakes_hello_on_the_base_and_the_second_run_bakes_nothing(repo: Path) -> None:
    first = run_doit(repo, check=True)
    assert baked(first.output) == ["hello"]
    hello = records(repo, "hello")
    assert len(hello) == 1
    assert hello[0]["base_image"] == records(repo, "base")[0]["image_id"]
    assert hello[0]["packages"] == {"hello-svc": "1.0.4"}
    assert installed_version(image_file(repo, hello[0]), "hello-svc") == "1.0.4"

    second = run_doit(repo, check=True)
    assert baked(second.output) == []
    assert re.search(r"^-- bake:base: up to date: base-", second.output, re.M)
    assert re.search(rf"^-- bake:hello: up to date: {hello[0]['image_id']}$", second.output, re.M)


def test_a_version_bump_is_explained_and_rebakes_only_the_service(repo: Path) -> None:
    run_doit(repo, check=True)
    bump_hello(repo, "1.0.5")

    info = run_doit(repo, "info", "bake:hello")
    assert info.returncode == 1
    assert "hello-svc 1.0.4 -> 1.0.5" in info.output
    assert run_doit(repo, "info", "bake:base").returncode == 0

    run = run_doit(repo, check=True)
    assert baked(run.output) == ["hello"]
    newest = records(repo, "hello")[0]
    assert newest["packages"] == {"hello-svc": "1.0.5"}
    assert installed_version(image_file(repo, newest), "hello-svc") == "1.0.5"
    assert run_doit(repo, "info", "bake:hello").returncode == 0


def test_rebake_forces_one_image_and_what_builds_on_it(repo: Path) -> None:
    run_doit(repo, check=True)
    forced = run_doit(repo, "bake:hello", "--rebake", check=True)
    assert baked(forced.output) == ["hello"]
    assert "forced (--rebake)" in forced.output
    assert len(records(repo, "hello")) == 2

    base_forced = run_doit(repo, "bake:base", "--rebake", check=True)
    assert baked(base_forced.output) == ["base"]
    info = run_doit(repo, "info", "bake:hello")
    assert re.search(r"base image base-\S+ -> base-\S+", info.output)
    assert baked(run_doit(repo, check=True).output) == ["hello"]


def test_a_failed_bake_records_nothing_keeps_the_log_and_is_retried(repo: Path) -> None:
    run_doit(repo, check=True)
    postinst = repo / "packages" / "hello-svc" / "DEBIAN" / "postinst"
    postinst.write_text("#!/bin/sh\necho 'hello-svc: cannot configure' >&2\nexit 1\n")
    before = {r["image_id"] for r in records(repo, "hello")}

    failed = run_doit(repo)
    assert failed.returncode != 0
    assert "hello-svc: cannot configure" in failed.output
    log = re.search(r"full log: (\S+\.log)", failed.output)
    assert log and Path(log.group(1)).is_file()
    assert "Traceback" not in failed.output
    assert {r["image_id"] for r in records(repo, "hello")} == before
    assert sorted(p.name for p in (repo / ".bakehouse" / "images" / "hello").iterdir()) == sorted(before)

    postinst.write_text("#!/bin/sh\nexit 0\n")
    assert baked(run_doit(repo, check=True).output) == ["hello"]


def test_a_repository_path_with_spaces_and_quotes_bakes(repo: Path, tmp_path: Path) -> None:
    spaced = tmp_path / "team's images" / "my repo"
    shutil.copytree(repo, spaced, symlinks=True)
    run = run_doit(spaced, "bake:hello", check=True)
    assert baked(run.output) == ["hello"]
    assert installed_version(image_file(spaced, records(spaced, "hello")[0]), "hello-svc") == "1.0.4"
