"""An AMI's end of life: deprecate_after, deregistration_protection and imds_support, set with
boto3 after packer. moto 5.2 implements none of EC2's calls for them, so tests/fault_proxy.py
stands in for those calls (its "lifecycle" setting) in front of moto, keeping their effect and
showing it in DescribeImages as AWS does; everything else is moto's. Against moto alone (an
endpoint without the calls) the bake fails in one line and no image counts."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import boto3
import pytest

from helpers import run_doit, start_fault_proxy

REGIONS = ("us-east-1", "us-west-2")
AGING = 'deprecate_after = "30d"\nderegistration_protection = true\nimds_support = "v2.0"\n'


@pytest.fixture
def stand_in(aws_env: dict[str, str], aws_repo: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    (aws_repo / "bakes" / "aws-hello.toml").unlink()
    bake = aws_repo / "bakes" / "aws-base.toml"
    bake.write_text('deprecate_after = "90d"\n' + bake.read_text())
    (aws_repo / "bakehouse.toml").write_text(f"[aws]\n{AGING}")  # the project's defaults; the bake's own key wins
    proxy, url = start_fault_proxy(aws_env["AWS_ENDPOINT_URL_EC2"], {"lifecycle": True}, tmp_path / "calls.jsonl")
    try:
        # Auto Scaling (what `doit images` asks before it says what prune would delete) on moto too
        yield {**aws_env, "AWS_ENDPOINT_URL_EC2": url, "AWS_ENDPOINT_URL": aws_env["AWS_ENDPOINT_URL_EC2"],
               "BAKEHOUSE_USER": "ci"}
    finally:
        proxy.kill()
        proxy.wait(timeout=10)


def described(env: dict[str, str], region: str) -> list[dict]:
    """The bake's AMIs as EC2 (here: the stand-in) describes them, newest first."""
    client = boto3.client("ec2", region_name=region, endpoint_url=env["AWS_ENDPOINT_URL_EC2"],
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    found = client.describe_images(Owners=["self"], Filters=[{"Name": "tag:bakehouse:bake", "Values": ["aws-base"]}])["Images"]
    return sorted(found, key=lambda ami: ami["CreationDate"], reverse=True)


def test_an_ami_is_deprecated_imdsv2_only_and_protected_while_a_channel_points_at_it(stand_in: dict[str, str],
                                                                                   aws_repo: Path) -> None:
    baked = run_doit(aws_repo, "bake:aws-base", env=stand_in, check=True).output
    assert re.search(r"\[aws-base\] deprecate-at \S+Z, imds-support v2.0$", baked, re.M), baked
    first = {region: described(stand_in, region)[0] for region in REGIONS}
    recorded = json.loads(run_doit(aws_repo, "images", "--json", "aws-base", env=stand_in, check=True).stdout)["aws-base"][0]
    created = datetime.fromisoformat(recorded["created"])  # when the bake ran, as bakehouse records it
    for ami in first.values():
        deprecation = datetime.fromisoformat(ami["DeprecationTime"].replace("Z", "+00:00"))
        assert timedelta(days=90) <= deprecation - created < timedelta(days=90, minutes=1), ami["DeprecationTime"]
        assert ami["ImdsSupport"] == "v2.0" and ami.get("DeregistrationProtection", "disabled") == "disabled"
    shown = run_doit(aws_repo, "images", "aws-base", env=stand_in, check=True).output
    assert re.search(r"^      deprecated from \S+  IMDS v2.0 only$", shown, re.M), shown

    run_doit(aws_repo, "promote", "aws-base", "stable", env=stand_in, check=True)
    assert all(described(stand_in, region)[0]["DeregistrationProtection"] == "enabled" for region in REGIONS)
    assert "protected from deregistration" in run_doit(aws_repo, "images", "aws-base", env=stand_in, check=True).output

    run_doit(aws_repo, "bake:aws-base", "--rebake", env=stand_in, check=True)
    run_doit(aws_repo, "promote", "aws-base", "stable", env=stand_in, check=True)  # protection moves with the channel
    for region in REGIONS:
        newest, older = described(stand_in, region)[:2]
        assert (newest["DeregistrationProtection"], older["DeregistrationProtection"]) == ("enabled", "disabled"), region

    second = json.loads(run_doit(aws_repo, "images", "--json", "aws-base", env=stand_in, check=True).stdout)["aws-base"][0]
    revoked = run_doit(aws_repo, "revoke", second["image_id"], "--reason", "bad kernel", env=stand_in, check=True).output
    assert "aws-base@stable: " in revoked and "WARNING" not in revoked, revoked
    for region in REGIONS:  # deprecated at once; the channel went back, and its protection with it
        newest, older = described(stand_in, region)[:2]
        deprecation = datetime.fromisoformat(newest["DeprecationTime"].replace("Z", "+00:00"))
        assert deprecation - datetime.now(deprecation.tzinfo) < timedelta(minutes=3), newest["DeprecationTime"]
        assert (newest["DeregistrationProtection"], older["DeregistrationProtection"]) == ("disabled", "enabled"), region
    run_doit(aws_repo, "restore", second["image_id"], env=stand_in, check=True)
    newest = described(stand_in, "us-east-1")[0]
    assert datetime.fromisoformat(newest["DeprecationTime"].replace("Z", "+00:00")) - datetime.now(
        datetime.fromisoformat(newest["DeprecationTime"].replace("Z", "+00:00")).tzinfo) > timedelta(days=89)


def test_a_bad_aging_key_is_one_line(aws_env: dict[str, str], aws_repo: Path) -> None:
    (aws_repo / "bakehouse.toml").write_text('[aws]\ndeprecate_after = "3y"\n')
    said = run_doit(aws_repo, "plan", env=aws_env)
    assert said.returncode == 2 and "bakehouse.toml: aws.deprecate_after: '3y' is not a duration" in said.output, said.output
    (aws_repo / "bakehouse.toml").write_text('[aws]\nimds = "v2.0"\n')
    said = run_doit(aws_repo, "plan", env=aws_env)
    assert said.returncode == 2 and "bakehouse.toml: unknown key 'aws.imds'" in said.output, said.output


def test_an_endpoint_without_the_calls_fails_the_bake_in_one_line_and_nothing_counts(aws_env: dict[str, str],
                                                                                    aws_repo: Path) -> None:
    (aws_repo / "bakes" / "aws-hello.toml").unlink()
    bake = aws_repo / "bakes" / "aws-base.toml"
    bake.write_text('deprecate_after = "90d"\n' + bake.read_text())
    failed = run_doit(aws_repo, "bake:aws-base", env=aws_env)
    assert failed.returncode != 0
    assert re.search(r"aws-base: deprecate_after could not be applied to ami-\w+ in us-(east-1|west-2): ", failed.output), failed.output
    plan = run_doit(aws_repo, "plan", env=aws_env)
    assert re.search(r"^aws-base +bake +- ", plan.output, re.M), plan.output  # no image counts
