"""Revocation of AMI bakes against moto's EC2 and SSM (moto stands in for AWS: no AWS account
here). A revocation is tags on every AMI of the image in every region, so a fresh clone sees
it; the channels on it move back in SSM, and the bake's [publish] targets follow, read back."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from helpers import amis, run_doit
from providers.aws.test_aws_channels import REGIONS, parameter
from providers.aws.test_aws_publish import PUBLISH, default_version, launch_template
from test_notify import Receiver, receiver  # noqa: F401 - a fixture


def test_revoking_a_base_with_cascade_tags_every_ami_and_moves_channels_and_targets_back(
        aws_repo: Path, aws_env: dict[str, str], tmp_path: Path, receiver: Receiver) -> None:
    aws_env = {**aws_env, "AWS_ENDPOINT_URL": aws_env["AWS_ENDPOINT_URL_EC2"]}  # Auto Scaling (doit images) on moto too
    (aws_repo / "bakehouse.toml").write_text(f'[notify]\nevents = ["revoke"]\nwebhooks = [{{ url = "{receiver.url}" }}]\n')
    bake = aws_repo / "bakes" / "aws-hello.toml"
    bake.write_text(bake.read_text() + PUBLISH)
    for region in REGIONS:
        launch_template(aws_env, region)
    run_doit(aws_repo, env=aws_env, check=True)
    first = {region: amis(aws_env, region, "aws-hello")[0]["ImageId"] for region in REGIONS}
    run_doit(aws_repo, "promote", "aws-base", "stable", env=aws_env, check=True)
    run_doit(aws_repo, "promote", "aws-hello", "stable", env=aws_env, check=True)
    run_doit(aws_repo, "bake:aws-base", "--rebake", env=aws_env, check=True)
    run_doit(aws_repo, env=aws_env, check=True)  # aws-hello again, on the new base
    base = amis(aws_env, "us-east-1", "aws-base")[0]["tags"]["bakehouse:image"]
    second = {region: amis(aws_env, region, "aws-hello")[0]["ImageId"] for region in REGIONS}
    hello = amis(aws_env, "us-east-1", "aws-hello")[0]["tags"]["bakehouse:image"]
    run_doit(aws_repo, "promote", "aws-base", "stable", env=aws_env, check=True)
    run_doit(aws_repo, "promote", "aws-hello", "stable", env=aws_env, check=True)
    assert parameter(aws_env, "us-west-2", "/images/aws-hello/stable") == second["us-west-2"]

    revoked = run_doit(aws_repo, "revoke", base, "--cascade", "--reason", "CVE-2026-0002", env=aws_env, check=True).output
    assert f"revoked {base} (aws-base): CVE-2026-0002\n" in revoked
    # a revocation deprecates the AMIs at once; moto lacks EnableImageDeprecation: one line says so
    assert re.search(r"^WARNING: ami-\w+ in us-east-1 could not be deprecated: ", revoked, re.M), revoked
    assert f"revoked {hello} (aws-hello): CVE-2026-0002 (built on {base})\n" in revoked
    assert re.search(rf"^aws-hello@stable: {hello} -> aws-hello-\S+ \({hello} revoked\)$", revoked, re.M), revoked
    for region in REGIONS:
        assert f"published ssm /images/aws-hello/stable in {region}: {second[region]} -> {first[region]}" in revoked
        for name in ("aws-base", "aws-hello"):  # every AMI of both images, in every region, says so
            newest = amis(aws_env, region, name)[0]
            assert newest["tags"]["bakehouse:revoked-reason"].startswith("CVE-2026-0002"), (region, name)
        assert parameter(aws_env, region, "/bakehouse/aws-hello/stable") == first[region]  # the channel's own pointer
        assert parameter(aws_env, region, "/images/aws-hello/stable") == first[region]  # and what Terraform reads
        assert default_version(aws_env, region)["LaunchTemplateData"]["ImageId"] == first[region]
    (told,) = receiver.bodies()  # the webhook heard of it: both images, and the moves it caused
    assert [image["image"] for image in told["images"]] == [base, hello]
    assert {change["bake"]: change["before"] for change in told["channels"]} == {"aws-base": base, "aws-hello": hello}

    clone = tmp_path / "clone"  # another runner, with no state of its own, sees the revocation
    shutil.copytree(aws_repo, clone, ignore=shutil.ignore_patterns(".bakehouse", ".doit.db*", "build", "dist"))
    images = run_doit(clone, "images", "aws-hello", env=aws_env, check=True).output
    assert re.search(rf"^  {hello} .*(\n      .*)*\n      REVOKED: CVE-2026-0002 \(built on {base}\)", images, re.M), images
    plan = run_doit(clone, "plan", env=aws_env)  # the images before are of the same inputs: in use again
    assert plan.output.splitlines()[-1] == "0 to bake, 2 up to date", plan.output

    # every image of the base revoked: the next doit bakes the base and its service again
    older = amis(aws_env, "us-east-1", "aws-base")[1]["tags"]["bakehouse:image"]
    run_doit(aws_repo, "revoke", older, "--cascade", "--reason", "CVE-2026-0002", env=aws_env, check=True)
    plan = run_doit(aws_repo, "plan", env=aws_env).output
    assert re.search(r"^aws-base +bake +- +image aws-base-\S+ revoked \(CVE-2026-0002\)$", plan, re.M), plan
    assert re.search(r"^aws-hello +bake +- +base image aws-base-\S+ revoked \(CVE-2026-0002\)", plan, re.M), plan
    run_doit(aws_repo, env=aws_env, check=True)
    rebaked = amis(aws_env, "us-east-1", "aws-base")[0]["tags"]["bakehouse:image"]
    assert rebaked not in (base, older)
    assert amis(aws_env, "us-east-1", "aws-hello")[0]["tags"]["bakehouse:base-image"] == rebaked

    restored = run_doit(aws_repo, "restore", base, env=aws_env, check=True).output
    assert f"restored {base} (aws-base)" in restored
    assert all("bakehouse:revoked-reason" not in amis(aws_env, region, "aws-base")[0]["tags"] for region in REGIONS)
