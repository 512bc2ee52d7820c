"""The scenario table: one row per kind of edit, with the exact bakes it must cause and the
exact reasons, through the real `doit plan` and `doit` (local images, and AMIs on moto's EC2
server, which stands in for AWS: there is no AWS account here).

Each row starts from everything baked, makes its edit, and checks that
- `doit plan --json` gives each bake exactly the expected action and reasons,
- `doit` then bakes exactly the bakes the plan said, in that order,
- and afterwards nothing is left to bake.
A reason is a regular expression (image ids and dates differ from run to run).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from helpers import amis, bump_hello, ec2, own_template, records, run_doit, write

Env = dict[str, str]
Change = Callable[[Path, Env], Env]  # makes the edit; returns the environment to plan and run with
NOW = datetime.fromisoformat(os.environ["BAKEHOUSE_NOW"])  # the suite's still clock (conftest)


@dataclass(frozen=True)
class Row:
    change: Change
    reasons: dict[str, list[str]]  # bake -> exact reasons (regular expressions); [] keeps it
    actions: dict[str, str] = field(default_factory=dict)  # when not "bake"/"keep" (bake-missing)
    after: Callable[[Env], None] | None = None  # what else must hold once `doit` ran


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def clock(moment: datetime) -> Env:
    return {"BAKEHOUSE_NOW": moment.isoformat()}


def week_start(moment: datetime) -> datetime:
    return (moment - timedelta(days=moment.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)


NEXT_WEEK = NOW + timedelta(days=7)
STALE_WEEK = rf"older than this week \({NEXT_WEEK:%G-W%V} began {week_start(NEXT_WEEK):%Y-%m-%d}\)"
BASE_FIRST = r"its base 'base' will rebake first"


# --- local rows: the shipped hello service on the suite's tiny base ---

def nothing(repo: Path, env: Env) -> Env:
    return env


def bump(repo: Path, env: Env) -> Env:
    bump_hello(repo, "1.0.5")
    return env


def revert(repo: Path, env: Env) -> Env:
    bump_hello(repo, "1.0.5")
    run_doit(repo, env=env, check=True)
    bump_hello(repo, "1.0.4")
    return env


def revert_then_rebuild(repo: Path, env: Env) -> Env:
    """The reverted-to image is in use again: the next change is explained against it."""
    revert(repo, env)
    kept = run_doit(repo, env=env, check=True)
    assert "] baked " not in kept.output, kept.output
    append(repo / "packages" / "hello-svc" / "opt" / "hello-svc" / "bin" / "hello-svc", "# rebuilt\n")
    return env


def edit_script(name: str) -> Change:
    def change(repo: Path, env: Env) -> Env:
        append(own_template(repo, f"scripts/{name}"), "# edited\n")
        return env
    return change


def next_week(repo: Path, env: Env) -> Env:
    return {**env, **clock(NEXT_WEEK)}


def schedule(period: str, moment: datetime) -> Change:
    def change(repo: Path, env: Env) -> Env:
        edit(repo / "bakes" / "base.toml", 'rebuild_every = "week"', f'rebuild_every = "{period}"')
        return {**env, **clock(moment)}
    return change


def vars_changed(repo: Path, env: Env) -> Env:
    edit(repo / "bakes" / "hello.toml", 'environment = "demo"', 'environment = "prod"')
    return env


def not_content(repo: Path, env: Env) -> Env:
    """What cannot change an image: a description, a timeout, a comment, a template no bake uses."""
    bake = repo / "bakes" / "hello.toml"
    edit(bake, 'description = "', 'description = "Edited: ')
    bake.write_text("# a comment\ntimeout = \"2h\"\n" + bake.read_text())
    write(repo / "templates" / "unused.pkr.hcl.j2", "# no bake uses this\n")
    for dep_file in repo.glob(".doit.db*"):  # and a fresh clone's missing dep file
        dep_file.unlink()
    return env


def base_rebaked(repo: Path, env: Env) -> Env:
    run_doit(repo, "bake:base", "--rebake", env=env, check=True)  # the weekly cron job
    return env


def image_deleted(repo: Path, env: Env) -> Env:
    for record in records(repo, "hello"):
        shutil.rmtree(repo / ".bakehouse" / record["locations"]["local"])
    return env


def add_a_test(repo: Path, env: Env) -> Env:
    write(repo / "templates" / "scripts" / "check-hello.sh", "#!/bin/sh\n/opt/hello-svc/bin/hello-svc\n")
    bake = repo / "bakes" / "hello.toml"
    bake.write_text('tests = ["scripts/check-hello.sh"]\n' + bake.read_text())
    return env


def edit_a_test(repo: Path, env: Env) -> Env:
    add_a_test(repo, env)
    run_doit(repo, env=env, check=True)
    append(repo / "templates" / "scripts" / "check-hello.sh", "test -f /opt/hello-svc/VERSION\n")
    return env


def updates_asked_for(repo: Path, env: Env) -> Env:
    """A freshness rule, not content: with no newer package in the base's sources, nothing."""
    edit(repo / "bakes" / "base.toml", 'rebuild_every = "week"', 'rebuild_every = "week"\nrebuild_when = "updates"')
    return env


A_WEEK_ON = NOW + timedelta(days=7)
SAME_MONTH = A_WEEK_ON.month == NOW.month
STALE_MONTH = rf"older than this month \({A_WEEK_ON:%Y-%m} began {A_WEEK_ON:%Y-%m}-01\)"
TOMORROW = NOW + timedelta(days=1)

LOCAL: dict[str, Row] = {
    "nothing changed": Row(nothing, {"base": [], "hello": []}),
    "package version bump": Row(bump, {"base": [], "hello": [r"hello-svc 1\.0\.4 -> 1\.0\.5"]}),
    "bump reverted": Row(revert, {"base": [], "hello": []}),
    "reverted, then rebuilt": Row(revert_then_rebuild, {"base": [], "hello": [r"hello-svc 1\.0\.4 rebuilt with other content"]}),
    "base script edited": Row(edit_script("local-base.sh"), {
        "base": [r"template file scripts/local-base\.sh changed"], "hello": [BASE_FIRST]}),
    "install script edited": Row(edit_script("install-packages.sh"), {
        "base": [], "hello": [r"template file scripts/install-packages\.sh changed"]}),
    "a new week": Row(next_week, {"base": [STALE_WEEK], "hello": [BASE_FIRST]}),
    "week to month, same day": Row(schedule("month", NOW), {"base": [], "hello": []}),
    "week to month, a week on": Row(schedule("month", A_WEEK_ON), {
        "base": [] if SAME_MONTH else [STALE_MONTH], "hello": [] if SAME_MONTH else [BASE_FIRST]}),
    "week to day, a day on": Row(schedule("day", TOMORROW), {
        "base": [rf"older than today \({TOMORROW:%Y-%m-%d} began {TOMORROW:%Y-%m-%d}\)"], "hello": [BASE_FIRST]}),
    "vars changed": Row(vars_changed, {"base": [], "hello": [r"definition: vars \{environment=demo\} -> \{environment=prod\}"]}),
    "not content, fresh clone": Row(not_content, {"base": [], "hello": []}),
    "base rebaked alone": Row(base_rebaked, {"base": [], "hello": [r"base image base-\S+ -> base-\S+"]}),
    "image deleted": Row(image_deleted, {"base": [], "hello": [r"no image yet"]}),
    "test script added": Row(add_a_test, {"base": [], "hello": [
        r"template file scripts/check-hello\.sh added", r"template file scripts/run-tests\.sh added"]}),
    "test script edited": Row(edit_a_test, {"base": [], "hello": [r"template file scripts/check-hello\.sh changed"]}),
    "updates asked for, none offered": Row(updates_asked_for, {"base": [], "hello": []}),
}


# --- AWS rows: the shipped AWS example on moto, in us-east-1 and us-west-2 ---

def aws_edit(bake: str, old: str, new: str) -> Change:
    def change(repo: Path, env: Env) -> Env:
        edit(repo / "bakes" / f"{bake}.toml", old, new)
        return env
    return change


def both(*changes: Change) -> Change:
    def change(repo: Path, env: Env) -> Env:
        for one in changes:
            env = one(repo, env)
        return env
    return change


def only_eu_west_1_was_baked(env: Env) -> None:
    for bake in ("aws-base", "aws-hello"):
        images = {region: amis(env, region, bake) for region in ("us-east-1", "us-west-2", "eu-west-1")}
        assert [len(found) for found in images.values()] == [1, 1, 1], images
        assert len({found[0]["tags"]["bakehouse:image"] for found in images.values()}) == 1


NEW_SOURCE = "debian-12-amd64-29990101-9999"


def published(*regions: str) -> Change:
    """The publisher's newer source image, in `regions` so far (moto registers it in this
    account, so the base's filter also looks at the account's own images)."""
    def change(repo: Path, env: Env) -> Env:
        edit(repo / "bakes" / "aws-base.toml", 'owners = ["136693071363"]', 'owners = ["136693071363", "self"]')
        for region in regions:
            ec2(env, region).register_image(Name=NEW_SOURCE)
        return env
    return change


def published_east_then_west(repo: Path, env: Env) -> Env:
    env = published("us-east-1")(repo, env)
    run_doit(repo, env=env, check=True)
    ec2(env, "us-west-2").register_image(Name=NEW_SOURCE)
    return env


def only_us_east_1_was_baked(env: Env) -> None:
    """us-west-2 keeps its images (its source is as it was); us-east-1 has new ones."""
    for bake in ("aws-base", "aws-hello"):
        east, west = amis(env, "us-east-1", bake), amis(env, "us-west-2", bake)
        assert (len(east), len(west)) == (2, 1), (bake, east, west)
        assert east[1]["tags"]["bakehouse:image"] == west[0]["tags"]["bakehouse:image"]
    assert amis(env, "us-east-1", "aws-base")[0]["tags"]["base_ami_name"] == NEW_SOURCE
    assert amis(env, "us-west-2", "aws-base")[0]["tags"]["base_ami_name"] != NEW_SOURCE


def west_caught_up(env: Env) -> None:
    """The image baked in us-east-1 is completed in us-west-2: one image id in both."""
    for bake in ("aws-base", "aws-hello"):
        east, west = amis(env, "us-east-1", bake), amis(env, "us-west-2", bake)
        assert (len(east), len(west)) == (2, 2), (bake, east, west)
        assert east[0]["tags"]["bakehouse:image"] == west[0]["tags"]["bakehouse:image"]
    assert amis(env, "us-west-2", "aws-base")[0]["tags"]["base_ami_name"] == NEW_SOURCE


REGIONS = 'regions = ["us-east-1", "us-west-2"]'
ADD_REGION = 'regions = ["us-east-1", "us-west-2", "eu-west-1"]'
AWS_BASE_FIRST = r"its base 'aws-base' will rebake first"

AWS: dict[str, Row] = {
    "region dropped from the service": Row(aws_edit("aws-hello", REGIONS, 'regions = ["us-east-1"]'),
                                           {"aws-base": [], "aws-hello": []}),
    "region dropped from both": Row(both(aws_edit("aws-hello", REGIONS, 'regions = ["us-west-2"]'),
                                         aws_edit("aws-base", REGIONS, 'regions = ["us-west-2"]')),
                                    {"aws-base": [], "aws-hello": []}),
    "regions reordered": Row(both(aws_edit("aws-hello", REGIONS, 'regions = ["us-west-2", "us-east-1"]'),
                                  aws_edit("aws-base", REGIONS, 'regions = ["us-west-2", "us-east-1"]')),
                             {"aws-base": [], "aws-hello": []}),
    "region added to the base": Row(aws_edit("aws-base", REGIONS, ADD_REGION),
                                    {"aws-base": [r"missing in eu-west-1"], "aws-hello": []},
                                    {"aws-base": "bake-missing"}),
    "region added to both": Row(both(aws_edit("aws-base", REGIONS, ADD_REGION), aws_edit("aws-hello", REGIONS, ADD_REGION)),
                                {"aws-base": [r"missing in eu-west-1"], "aws-hello": [r"missing in eu-west-1"]},
                                {"aws-base": "bake-missing", "aws-hello": "bake-missing"}, only_eu_west_1_was_baked),
    "owners reordered": Row(aws_edit("aws-base", 'owners = ["136693071363"]', 'owners = ["self", "136693071363"]'),
                            {"aws-base": [], "aws-hello": []}),
    "script it does not run edited": Row(edit_script("install-packages.sh"), {"aws-base": [], "aws-hello": []}),
    "names and region filling changed": Row(
        aws_edit("aws-hello", 'os = "bookworm"', 'os = "debian12"\nami_name = "hello"\nmulti_region = "copy"'),
        {"aws-base": [], "aws-hello": []}),
    "a new week": Row(next_week, {"aws-base": [STALE_WEEK], "aws-hello": [AWS_BASE_FIRST]}),
    "new source image in one region": Row(published("us-east-1"), {
        "aws-base": [rf"in us-east-1: source image 136693071363/debian-12-\S+ -> image 123456789012/{NEW_SOURCE}"],
        "aws-hello": [rf"in us-east-1: {AWS_BASE_FIRST}"]}, after=only_us_east_1_was_baked),
    "new source image in one region, then in the other": Row(published_east_then_west, {
        "aws-base": [r"missing in us-west-2"], "aws-hello": [r"missing in us-west-2"]},
        {"aws-base": "bake-missing", "aws-hello": "bake-missing"}, west_caught_up),
    "new source image in both regions": Row(published("us-east-1", "us-west-2"), {
        "aws-base": [rf"source image 136693071363/debian-12-\S+ -> image 123456789012/{NEW_SOURCE}"],
        "aws-hello": [AWS_BASE_FIRST]}),
    "reverted, then rebuilt": Row(revert_then_rebuild, {  # the in-use mark is an AMI tag here
        "aws-base": [], "aws-hello": [r"hello-svc 1\.0\.4 rebuilt with other content"]}),
}


def check_row(repo: Path, row: Row, env: Env) -> None:
    run_doit(repo, env=env, check=True)
    check_change(repo, row, env)


def check_change(repo: Path, row: Row, env: Env) -> None:
    """From everything baked: make the row's edit, then plan and run."""
    env = row.change(repo, env)

    plan = json.loads(run_doit(repo, "plan", "--json", env=env).stdout)
    found = {r["bake"]: (r["action"], r["reasons"]) for r in plan["bakes"]}
    for bake, reasons in row.reasons.items():
        action, given = found[bake]
        expected_action = row.actions.get(bake, "bake" if reasons else "keep")
        assert action == expected_action, (bake, found[bake])
        assert len(given) == len(reasons) and all(re.fullmatch(p, r) for p, r in zip(reasons, given)), (bake, given)
    to_bake = [bake for bake in found if found[bake][0] != "keep"]
    assert plan["exit"] == (1 if to_bake else 0)

    run = run_doit(repo, env=env, check=True)
    assert re.findall(r"^\[([\w-]+)\] baked ", run.output, re.M) == to_bake, run.output
    after = run_doit(repo, "plan", env=env)
    assert after.returncode == 0, after.output
    if row.after is not None:
        row.after(env)


# Rows that bake nothing leave the registry as it was: they share one baked repository, each
# edit undone before the next (the rows that bake each start from a fresh one).
SHARED = {name for table in (LOCAL, AWS) for name, row in table.items()
          if not any(row.reasons.values()) and row.change is not revert}


@contextmanager
def undone(repo: Path) -> Iterator[None]:
    """The repository's bakes, templates and packages as they were, after the block."""
    saved = repo.parent / "saved"
    for folder in ("bakes", "templates", "packages"):
        if (repo / folder).exists():
            shutil.copytree(repo / folder, saved / folder, symlinks=True)
    try:
        yield
    finally:
        for folder in ("bakes", "templates", "packages"):
            shutil.rmtree(repo / folder, ignore_errors=True)
            if (saved / folder).exists():
                shutil.copytree(saved / folder, repo / folder, symlinks=True)
        shutil.rmtree(saved)


def check_shared(repo: Path, table: dict[str, Row], env: Env) -> None:
    run_doit(repo, env=env, check=True)
    for name, row in table.items():
        if name in SHARED:
            with undone(repo):
                try:
                    check_change(repo, row, env)
                except AssertionError as error:
                    raise AssertionError(f"row {name!r}: {error}") from None


@pytest.mark.parametrize("name", [name for name in LOCAL if name not in SHARED])
def test_local_scenario(repo: Path, name: str) -> None:
    check_row(repo, LOCAL[name], {})


def test_local_edits_that_bake_nothing(repo: Path) -> None:
    check_shared(repo, LOCAL, {})


@pytest.mark.parametrize("name", [name for name in AWS if name not in SHARED])
def test_aws_scenario(aws_repo: Path, aws_env: Env, name: str) -> None:
    check_row(aws_repo, AWS[name], aws_env)


def test_aws_edits_that_bake_nothing(aws_repo: Path, aws_env: Env) -> None:
    check_shared(aws_repo, AWS, aws_env)


def test_a_script_counts_for_ami_bakes_only_where_they_run_it(aws_repo: Path, aws_env: Env, tmp_path: Path) -> None:
    """install-packages.sh is uploaded only over SSH: editing it moves the key of an SSH bake
    and not of a bake with communicator = "none" (planned only: moto runs no SSH server)."""
    ssh_repo = tmp_path / "ssh"
    shutil.copytree(aws_repo, ssh_repo)
    for bake in (ssh_repo / "bakes").glob("*.toml"):
        edit(bake, 'communicator = "none"', 'communicator = "ssh"')

    def base_key(repo: Path) -> str:
        plan = json.loads(run_doit(repo, "plan", "--json", env=aws_env).stdout)
        return next(r["key"] for r in plan["bakes"] if r["bake"] == "aws-base")

    before = {repo: base_key(repo) for repo in (aws_repo, ssh_repo)}
    for repo in (aws_repo, ssh_repo):
        append(own_template(repo, "scripts/install-packages.sh"), "# edited\n")
    assert base_key(aws_repo) == before[aws_repo]
    assert base_key(ssh_repo) != before[ssh_repo]
