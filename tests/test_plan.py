"""`doit plan`: its table, its lineage note and its selection of bakes; the table of edits,
and the bakes and reasons each must cause (local and on moto), is tests/test_scenarios.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

from helpers import bump_hello, records, run_doit


def test_the_plan_table_flags_a_service_built_on_an_older_base(repo: Path) -> None:
    run_doit(repo, check=True)
    old_base = records(repo, "base")[0]["image_id"]
    hello = records(repo, "hello")[0]["image_id"]
    run_doit(repo, "bake:base", "--rebake", check=True)
    new_base = records(repo, "base")[0]["image_id"]

    table = run_doit(repo, "plan")
    assert table.returncode == 1
    lines = table.output.splitlines()
    assert re.match(r"^BAKE\s+ACTION\s+IMAGE\s+WHY$", lines[0])
    assert re.match(rf"^base\s+keep\s+{new_base}\s+up to date$", lines[1])
    assert re.match(rf"^hello\s+bake\s+{hello}\s+base image {old_base} -> {new_base}$", lines[2])
    assert f"note: {hello} is built on {old_base}, not on the newest base image {new_base}" in lines
    assert lines[-1] == "1 to bake, 1 up to date"


def test_plan_of_one_bake_covers_what_it_builds_on(repo: Path) -> None:
    plan = json.loads(run_doit(repo, "plan", "--json", "bake:base").stdout)
    assert [row["bake"] for row in plan["bakes"]] == ["base"]
    plan = json.loads(run_doit(repo, "plan", "--json", "hello").stdout)
    assert [row["bake"] for row in plan["bakes"]] == ["base", "hello"]
    wrong = run_doit(repo, "plan", "helo")
    assert wrong.returncode == 3 and "no bake 'helo' in bakes/ (did you mean 'hello'?)" in wrong.output


def test_images_lists_the_catalogue_newest_first(repo: Path) -> None:
    run_doit(repo, check=True)
    bump_hello(repo, "1.0.5")
    run_doit(repo, check=True)
    text = run_doit(repo, "images", "hello", check=True).output
    newest, older = records(repo, "hello")
    assert text.index(newest["image_id"]) < text.index(older["image_id"])
    assert "packages: hello-svc=1.0.5" in text and f"base: {newest['base_image']}" in text
    catalogue = json.loads(run_doit(repo, "images", "--json", "--limit", "1").stdout)
    assert [image["image_id"] for image in catalogue["hello"]] == [newest["image_id"]]
    assert catalogue["hello"][0]["packages"] == {"hello-svc": "1.0.5"}
    assert set(catalogue) == {"base", "hello"}


def test_a_version_pinned_by_name_that_the_mirror_lacks_is_refused_at_plan_time(repo: Path) -> None:
    """hello names busybox at a version Debian's real mirror does not have: the plan says so in
    one line (before, apt failed minutes into the bake); the version the mirror has is taken."""
    hello = repo / "bakes" / "hello.toml"
    text = hello.read_text()
    hello.write_text(re.sub(r"packages = \[", 'packages = ["busybox=1:0.1-1", ', text, count=1))
    plan = run_doit(repo, "plan", "hello")
    assert plan.returncode == 2, plan.output
    found = re.search(r"^hello\s+error\s+-\s+bakes/hello\.toml: packages: busybox=1:0\.1-1: no such version in its "
                      r"sources \(http://\S+ bookworm main; .*\): the newest there is (\S+)$", plan.output, re.M)
    assert found, plan.output
    hello.write_text(re.sub(r"packages = \[", f'packages = ["busybox={found[1]}", ', text, count=1))
    assert "no such version" not in run_doit(repo, "plan", "hello").output


def test_a_suite_the_mirror_does_not_have_is_one_line_at_plan_time(repo: Path) -> None:
    """Debian's real mirror answers 404 for dists/bookwrom/: the plan says so, with the suite
    meant, and the bake stops there (before, mmdebstrap failed minutes in)."""
    base = repo / "bakes" / "base.toml"
    base.write_text(base.read_text().replace('suite = "bookworm"', 'suite = "bookwrom"'))
    line = (r"bakes/base\.toml: source\.suite: 'bookwrom' is not on the mirror http://\S+ \(it has no "
            r"dists/bookwrom/InRelease or Release\); did you mean 'bookworm'\?")
    plan = run_doit(repo, "plan")
    assert plan.returncode == 2, plan.output
    assert re.search(rf"^base\s+error\s+-\s+{line}$", plan.output, re.M), plan.output
    baked = run_doit(repo, "bake:base")
    assert baked.returncode != 0 and re.search(line, baked.output) and "mmdebstrap" not in baked.output, baked.output
    assert len(records(repo, "base")) == 1  # the session's base only
