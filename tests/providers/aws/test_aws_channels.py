"""Channels of AMI bakes against moto's EC2 and SSM (moto stands in for AWS: no AWS account
here). The moves live in SSM Parameter Store, so a fresh clone with no state of its own sees
the same channels; each move points a per-region `aws:ec2:image` parameter at the channel's
AMI there, read back, as Terraform reads it. Where moto differs from AWS: it accepts an
`aws:ec2:image` value that is no AMI at all (AWS checks after it answers and drops such a
value), which is why bakehouse reads each value back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import amis, run_doit

REGIONS = ("us-east-1", "us-west-2")


def ssm(env: dict[str, str], region: str):  # type: ignore[no-untyped-def]
    """A boto3 SSM client on moto, as Terraform or a user would read a parameter."""
    import boto3

    return boto3.client("ssm", region_name=region, endpoint_url=env["AWS_ENDPOINT_URL_SSM"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def parameter(env: dict[str, str], region: str, name: str) -> str:
    return str(ssm(env, region).get_parameter(Name=name)["Parameter"]["Value"])


def test_a_promotion_is_in_ssm_per_region_and_a_fresh_clone_sees_it(aws_repo: Path, aws_env: dict[str, str], tmp_path: Path) -> None:
    run_doit(aws_repo, env=aws_env, check=True)
    first = {region: amis(aws_env, region, "aws-hello")[0]["ImageId"] for region in REGIONS}
    promoted = run_doit(aws_repo, "promote", "aws-hello", "stable", "--note", "canary ok", env=aws_env)
    assert promoted.returncode == 0 and promoted.output.startswith("aws-hello@stable: nothing -> aws-hello-"), promoted.output
    for region in REGIONS:  # what Terraform's aws_ssm_parameter reads, in each region
        assert parameter(aws_env, region, "/bakehouse/aws-hello/stable") == first[region]
        described = ssm(aws_env, region).get_parameter(Name="/bakehouse/aws-hello/stable")["Parameter"]
        assert described["DataType"] == "aws:ec2:image"

    run_doit(aws_repo, "bake:aws-hello", "--rebake", env=aws_env, check=True)
    second = {region: amis(aws_env, region, "aws-hello")[0]["ImageId"] for region in REGIONS}
    run_doit(aws_repo, "promote", "aws-hello", "stable", env=aws_env, check=True)
    assert parameter(aws_env, "us-west-2", "/bakehouse/aws-hello/stable") == second["us-west-2"]
    for region in REGIONS:  # the AMIs say so too, for filters: the channel's tag moved with it
        tagged = {ami["ImageId"] for ami in amis(aws_env, region, "aws-hello")
                  if ami["tags"].get("bakehouse:channel:stable") == "true"}
        assert tagged == {second[region]}, (region, tagged)

    clone = tmp_path / "clone"  # another runner: the bakes, no state
    shutil.copytree(aws_repo, clone, ignore=shutil.ignore_patterns(".bakehouse", ".doit.db*", "build", "dist"))
    shown = json.loads(run_doit(clone, "channels", "--json", "aws-hello", env=aws_env, check=True).stdout)
    stable = next(channel for channel in shown["bakes"][0]["channels"] if channel["channel"] == "stable")
    assert stable["locations"] == second and [move["note"] for move in stable["history"]] == ["canary ok", ""]
    rolled = run_doit(clone, "rollback", "aws-hello", "stable", env=aws_env, check=True)
    assert rolled.output.endswith("(rolled back)\n")
    for region in REGIONS:
        assert parameter(aws_env, region, "/bakehouse/aws-hello/stable") == first[region]
    tfvars = run_doit(aws_repo, "channels", "aws-hello", "--format", "tfvars", env=aws_env, check=True).output
    assert tfvars.startswith("images = {") and f'"us-west-2": "{first["us-west-2"]}"' in tfvars


def test_an_image_missing_in_a_region_is_not_promoted(aws_repo: Path, aws_env: dict[str, str]) -> None:
    from helpers import ec2

    run_doit(aws_repo, env=aws_env, check=True)
    west = amis(aws_env, "us-west-2", "aws-hello")[0]
    ec2(aws_env, "us-west-2").deregister_image(ImageId=west["ImageId"])
    refused = run_doit(aws_repo, "promote", "aws-hello", "stable", env=aws_env)
    assert refused.returncode == 2
    assert refused.output.startswith("ERROR: aws-hello-") and refused.output.endswith(
        " is not complete: it is missing in us-west-2 (doit bake:aws-hello completes it)\n"), refused.output


def test_two_promotions_at_once_both_land_in_ssm(aws_repo: Path, aws_env: dict[str, str]) -> None:
    run_doit(aws_repo, env=aws_env, check=True)
    run_doit(aws_repo, "bake:aws-base", "--rebake", env=aws_env, check=True)
    images = [image["tags"]["bakehouse:image"] for image in amis(aws_env, "us-east-1", "aws-base")][:2]

    runs = [subprocess.Popen([sys.executable, "-m", "doit", "promote", "aws-base", "candidate", image], cwd=aws_repo,
                             env={**os.environ, **aws_env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for image in images]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    moves = ssm(aws_env, "us-east-1").get_parameters_by_path(Path="/bakehouse/aws-base/channel-moves/")["Parameters"]
    assert sorted(json.loads(move["Value"])["image"] for move in moves) == sorted(images)  # both, neither lost
    shown = json.loads(run_doit(aws_repo, "channels", "--json", "aws-base", env=aws_env, check=True).stdout)
    candidate = next(channel for channel in shown["bakes"][0]["channels"] if channel["channel"] == "candidate")
    for region in REGIONS:  # the parameters hold the last move's AMIs, whichever runner wrote last
        assert parameter(aws_env, region, "/bakehouse/aws-base/candidate") == candidate["locations"][region]
