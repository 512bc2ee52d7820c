"""Publishing AMIs where deployments read them, against moto's EC2 and SSM (moto stands in for
AWS: no AWS account here): SSM parameters of data type aws:ec2:image per region, and launch
template versions made from the default version. Where moto differs from AWS: it accepts an
aws:ec2:image value that is no AMI (AWS checks after answering and drops it, which is why each
value is read back), and it stores only the data a new launch template version is given (so
bakehouse copies the default version's data itself, which is right on AWS too)."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import amis, ec2, run_doit
from providers.aws.test_aws_channels import REGIONS, parameter, ssm

PUBLISH = ('\n[publish]\nchannels = ["stable"]\nssm = "/images/{bake}/{channel}"\n'
           'launch_templates = [{ name = "hello-web", channel = "stable", default = true }]\n')


def launch_template(env: dict[str, str], region: str) -> None:
    """The team's launch template, made outside bakehouse (as Terraform would)."""
    ec2(env, region).create_launch_template(LaunchTemplateName="hello-web", LaunchTemplateData={
        "ImageId": "ami-00000000000000000", "InstanceType": "t3.micro",
        "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "team", "Value": "web"}]}]})


def default_version(env: dict[str, str], region: str) -> dict:
    return ec2(env, region).describe_launch_template_versions(
        LaunchTemplateName="hello-web", Versions=["$Default"])["LaunchTemplateVersions"][0]


def test_a_promotion_publishes_to_ssm_and_launch_templates_and_the_plan_sees_drift(aws_repo: Path, aws_env: dict[str, str]) -> None:
    bake = aws_repo / "bakes" / "aws-hello.toml"
    bake.write_text(bake.read_text() + PUBLISH)
    for region in REGIONS:
        launch_template(aws_env, region)
    run_doit(aws_repo, env=aws_env, check=True)
    assert run_doit(aws_repo, "plan", env=aws_env).output.splitlines()[-1] == "0 to bake, 2 up to date"  # stable: nothing yet
    promoted = run_doit(aws_repo, "promote", "aws-hello", "stable", env=aws_env, check=True).output
    made = {region: amis(aws_env, region, "aws-hello")[0]["ImageId"] for region in REGIONS}
    for region in REGIONS:
        assert f"published ssm /images/aws-hello/stable in {region}: nothing -> {made[region]}" in promoted, promoted
        assert parameter(aws_env, region, "/images/aws-hello/stable") == made[region]
        version = default_version(aws_env, region)
        assert version["VersionNumber"] == 2 and version["LaunchTemplateData"]["ImageId"] == made[region]
        assert version["LaunchTemplateData"]["InstanceType"] == "t3.micro"  # the rest of the default's data kept
        assert version["LaunchTemplateData"]["TagSpecifications"][0]["Tags"] == [{"Key": "team", "Value": "web"}]

    # someone points the parameter elsewhere by hand: the plan says so, and doit puts it back without baking
    ssm(aws_env, "us-west-2").put_parameter(Name="/images/aws-hello/stable", Value="ami-0123456789abcdef0",
                                            Type="String", DataType="aws:ec2:image", Overwrite=True)
    plan = run_doit(aws_repo, "plan", env=aws_env)
    assert plan.returncode == 1
    assert re.search(rf"^aws-hello +publish +\S+ +ssm /images/aws-hello/stable in us-west-2: ami-0123456789abcdef0 -> "
                     rf"{made['us-west-2']}$", plan.output, re.M), plan.output
    run = run_doit(aws_repo, env=aws_env, check=True)
    assert "baking" not in run.output and f"published ssm /images/aws-hello/stable in us-west-2" in run.output, run.output
    assert parameter(aws_env, "us-west-2", "/images/aws-hello/stable") == made["us-west-2"]
    assert run_doit(aws_repo, "plan", env=aws_env).returncode == 0
    assert default_version(aws_env, "us-east-1")["VersionNumber"] == 2  # only what changed is written


def test_a_publish_that_fails_is_one_line_and_the_next_run_publishes(aws_repo: Path, aws_env: dict[str, str]) -> None:
    bake = aws_repo / "bakes" / "aws-hello.toml"
    bake.write_text(bake.read_text() + PUBLISH.replace("/images/", "/ssm/"))  # "ssm" is a prefix AWS reserves
    run_doit(aws_repo, env=aws_env, check=True)
    failed = run_doit(aws_repo, "promote", "aws-hello", "stable", env=aws_env)
    assert failed.returncode == 2
    assert re.search(r"^ERROR: aws-hello: publish ssm /ssm/aws-hello/stable in us-east-1: AWS SSM PutParameter in "
                     r"us-east-1: ValidationException: .*can't be prefixed with \"ssm\"", failed.output, re.M), failed.output
    assert "stable" in run_doit(aws_repo, "channels", "aws-hello", env=aws_env).output  # the move itself is kept

    bake.write_text(bake.read_text().replace("/ssm/", "/images/"))
    missing = run_doit(aws_repo, env=aws_env)
    assert missing.returncode != 0
    assert ("aws-hello: publish launch-template hello-web in us-east-1: no launch template hello-web in us-east-1 "
            "(create it first: bakehouse adds versions, it does not make templates)") in missing.output, missing.output
    for region in REGIONS:
        launch_template(aws_env, region)
    run_doit(aws_repo, env=aws_env, check=True)  # publishes what it could not, bakes nothing
    made = amis(aws_env, "us-east-1", "aws-hello")[0]["ImageId"]
    assert default_version(aws_env, "us-east-1")["LaunchTemplateData"]["ImageId"] == made
    assert parameter(aws_env, "us-east-1", "/images/aws-hello/stable") == made
