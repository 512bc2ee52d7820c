"""`doit plan`: its table, its lineage note, its selection of bakes, and on AMIs; the table of
edits and the reasons they give is tests/test_scenarios.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

from helpers import amis, bump_hello, ec2, records, run_doit


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


def test_plan_agrees_with_doit_on_amis(aws_repo: Path, aws_env: dict[str, str]) -> None:
    """moto stands in for AWS (no AWS account here): missing regions and a new upstream AMI."""
    run_doit(aws_repo, env=aws_env, check=True)
    lost = amis(aws_env, "us-west-2", "aws-hello")[0]
    ec2(aws_env, "us-west-2").deregister_image(ImageId=lost["ImageId"])

    plan = json.loads(run_doit(aws_repo, "plan", "--json", env=aws_env).stdout)
    rows = {row["bake"]: row for row in plan["bakes"]}
    assert rows["aws-base"]["action"] == "keep"
    assert rows["aws-hello"]["action"] == "bake-missing"
    assert rows["aws-hello"]["missing"] == ["us-west-2"] and rows["aws-hello"]["reasons"] == ["missing in us-west-2"]
    assert plan["exit"] == 1
    run = run_doit(aws_repo, env=aws_env, check=True)
    assert re.findall(r"^\[([\w-]+)\] baked ", run.output, re.M) == ["aws-hello"]
    assert len(amis(aws_env, "us-east-1", "aws-hello")) == 1  # only the missing region was baked

    base_file = aws_repo / "bakes" / "aws-base.toml"
    base_file.write_text(base_file.read_text().replace('owners = ["136693071363"]', 'owners = ["136693071363", "self"]'))
    for region in ("us-east-1", "us-west-2"):
        ec2(aws_env, region).register_image(Name="debian-12-amd64-29990101-9999")
    plan = json.loads(run_doit(aws_repo, "plan", "--json", env=aws_env).stdout)
    rows = {row["bake"]: row for row in plan["bakes"]}
    assert rows["aws-base"]["action"] == "bake" and any(r.startswith("source ") for r in rows["aws-base"]["reasons"])
    assert rows["aws-hello"]["reasons"][0] == "its base 'aws-base' will rebake first"
    run = run_doit(aws_repo, env=aws_env, check=True)
    assert re.findall(r"^\[([\w-]+)\] baked ", run.output, re.M) == ["aws-base", "aws-hello"]
    assert run_doit(aws_repo, "plan", env=aws_env).returncode == 0
