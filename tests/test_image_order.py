"""Newest means newest: images made in the same instant order by the registry's sequence,
in `doit images`, its JSON, the current-image choice and forced rebakes; never by a hash.

The clock is held still with BAKEHOUSE_NOW (the override users have), so every bake here is
made "in the same instant", as two quick bakes within one second were before times had
microseconds."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path

from helpers import HeldInstalls, Running, amis, bump_hello, records, run_doit

INSTANT = {"BAKEHOUSE_NOW": os.environ["BAKEHOUSE_NOW"]}  # the session's instant (conftest.py)


def baked_ids(output: str) -> list[str]:
    return re.findall(r"^\[hello\] baked (\S+)", output, re.M)


def plan_row(repo: Path, bake: str, env: dict[str, str]) -> dict:
    plan = json.loads(run_doit(repo, "plan", "--json", env=env).stdout)
    return next(row for row in plan["bakes"] if row["bake"] == bake)


def test_images_made_in_one_instant_order_by_which_came_last(repo: Path) -> None:
    (first,) = baked_ids(run_doit(repo, "bake:hello", env=INSTANT, check=True).output)
    bump_hello(repo, "1.0.5")
    (second,) = baked_ids(run_doit(repo, "bake:hello", env=INSTANT, check=True).output)
    (third,) = baked_ids(run_doit(repo, "bake:hello", "--rebake", env=INSTANT, check=True).output)
    made = {record["image_id"]: record["created"] for record in records(repo, "hello")}
    assert set(made) == {first, second, third}
    assert len(set(made.values())) == 1, made  # one instant, written to the microsecond
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", made[first]), made[first]

    text = run_doit(repo, "images", "hello", env=INSTANT, check=True).output
    listed = re.findall(r"^  (hello-\S+)  ", text, re.M)
    assert listed == [third, second, first], text
    catalogue = json.loads(run_doit(repo, "images", "--json", env=INSTANT).stdout)
    assert [image["image_id"] for image in catalogue["hello"]] == [third, second, first]
    assert [image["sequence"] for image in catalogue["hello"]] == [3, 2, 1]
    # Two images of the current inputs: the one made last is current.
    row = plan_row(repo, "hello", INSTANT)
    assert (row["action"], row["image"]) == ("keep", third)

    bump_hello(repo, "1.0.4")  # back to the first image's inputs: it is current again, no bake
    row = plan_row(repo, "hello", INSTANT)
    assert (row["action"], row["image"]) == ("keep", first)
    assert baked_ids(run_doit(repo, env=INSTANT, check=True).output) == []


def test_records_with_second_resolution_times_still_order(repo: Path) -> None:
    (old,) = baked_ids(run_doit(repo, "bake:hello", env=INSTANT, check=True).output)
    path = repo / ".bakehouse" / "records" / "hello" / f"{old}.json"
    record = json.loads(path.read_text())
    # as bakehouse wrote it before microseconds: to the second, no sequence
    record["created"] = datetime.fromisoformat(record["created"]).isoformat(timespec="seconds")
    del record["sequence"]
    path.write_text(json.dumps(record))

    bump_hello(repo, "1.0.5")
    (new,) = baked_ids(run_doit(repo, "bake:hello", env=INSTANT, check=True).output)
    catalogue = json.loads(run_doit(repo, "images", "--json", "hello").stdout)
    assert [image["image_id"] for image in catalogue["hello"]] == [new, old]
    assert [image["sequence"] for image in catalogue["hello"]] == [1, 0]


def test_racing_forced_rebakes_bake_once_per_request(repo: Path, tmp_path: Path) -> None:
    """The second request arrives while the first bakes, in the same instant: the first bake
    began before it was asked for, so the second bakes again after waiting."""
    run_doit(repo, "bake:hello", check=True)
    installs = HeldInstalls(repo, tmp_path / "scratch")
    first = Running(repo, "bake:hello", "--rebake", env=installs.env)
    installs.wait_until_held(1)
    second = Running(repo, "bake:hello", "--rebake", env=installs.env)
    second.wait_for("waiting: hello is being baked by pid")
    installs.release()
    installs.wait_until_held(1)  # the second request's own bake
    installs.release()
    assert first.finish() == 0 and second.finish() == 0, first.output + second.output
    (by_first,), (by_second,) = baked_ids(first.output), baked_ids(second.output)
    assert [record["image_id"] for record in records(repo, "hello")][:2] == [by_second, by_first]
    assert len(records(repo, "hello")) == 3
    row = plan_row(repo, "hello", {})
    assert (row["action"], row["image"]) == ("keep", by_second)


def test_amis_made_in_one_instant_order_by_their_sequence_tag(aws_repo: Path, aws_env: dict[str, str]) -> None:
    """moto stands in for AWS (no AWS account here)."""
    env = {**aws_env, **INSTANT}
    run_doit(aws_repo, env=env, check=True)
    forced = run_doit(aws_repo, "bake:aws-hello", "--rebake", env=env, check=True)
    (rebaked,) = re.findall(r"^\[aws-hello\] baked (\S+)", forced.output, re.M)
    for region in ("us-east-1", "us-west-2"):
        newer, older = amis(env, region, "aws-hello")
        assert newer["tags"]["bakehouse:image"] == rebaked
        assert newer["tags"]["bakehouse:created"] == older["tags"]["bakehouse:created"]
        assert (newer["tags"]["bakehouse:sequence"], older["tags"]["bakehouse:sequence"]) == ("2", "1")
    catalogue = json.loads(run_doit(aws_repo, "images", "--json", "aws-hello", env=env).stdout)
    assert catalogue["aws-hello"][0]["image_id"] == rebaked
    row = plan_row(aws_repo, "aws-hello", env)
    assert (row["action"], row["image"]) == ("keep", rebaked)
