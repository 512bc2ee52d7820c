"""An account without a default VPC and with a security team's rules: the build instance in
named subnets and security groups with an instance profile, and encrypted images.

moto's EC2 server stands in for AWS (there is no AWS account here), with real boto3 and real
packer. moto runs the instance where it is told, so placement is checked on moto itself; it
does not encrypt the snapshots of a copy (its CopyImage ignores `Encrypted`), so encryption is
checked on the requests packer made, logged by tests/fault_proxy.py (with no fault injected).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from helpers import ec2, run_doit, start_fault_proxy

REGIONS = ("us-east-1", "us-west-2")


@pytest.fixture
def account(aws_env: dict[str, str], aws_repo: Path, tmp_path: Path) -> Iterator[dict]:
    """Per region a VPC, a subnet, a security group and a KMS key; an instance profile; the
    AWS example's base with keys naming them; and a proxy that logs every call's parameters."""
    clients = dict(endpoint_url=aws_env["AWS_ENDPOINT_URL_EC2"], aws_access_key_id=aws_env["AWS_ACCESS_KEY_ID"],
                   aws_secret_access_key=aws_env["AWS_SECRET_ACCESS_KEY"])
    made: dict = {"vpc": {}, "subnet": {}, "group": {}, "key": {}}
    for region in REGIONS:
        client = ec2(aws_env, region)
        vpc = client.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
        made["vpc"][region] = vpc
        made["subnet"][region] = client.create_subnet(VpcId=vpc, CidrBlock="10.1.1.0/24")["Subnet"]["SubnetId"]
        made["group"][region] = client.create_security_group(GroupName="bake", Description="bake", VpcId=vpc)["GroupId"]
        made["key"][region] = boto3.client("kms", region_name=region, **clients).create_key()["KeyMetadata"]["KeyId"]
    boto3.client("iam", region_name="us-east-1", **clients).create_instance_profile(InstanceProfileName="bakery")
    (aws_repo / "bakes" / "aws-hello.toml").unlink()
    bake = aws_repo / "bakes" / "aws-base.toml"
    table = lambda values: "{ " + ", ".join(f'{r} = {json.dumps(values[r])}' for r in REGIONS) + " }"  # noqa: E731
    bake.write_text(
        f"subnet_id = {table(made['subnet'])}\nvpc_id = {table(made['vpc'])}\n"
        f"security_group_ids = {table({r: [made['group'][r]] for r in REGIONS})}\n"
        'instance_profile = "bakery"\npublic_ip = true\nencrypted = true\n'
        f'kms_key_id = "{made["key"]["us-east-1"]}"\nregion_kms_key_ids = {{ us-west-2 = "{made["key"]["us-west-2"]}" }}\n'
        + bake.read_text()
    )
    events = tmp_path / "calls.jsonl"
    proxy, url = start_fault_proxy(aws_env["AWS_ENDPOINT_URL_EC2"], {"log_params": True}, events)
    try:
        yield {**made, "env": {**aws_env, "AWS_ENDPOINT_URL_EC2": url}, "events": events, "bake": bake}
    finally:
        proxy.kill()
        proxy.wait(timeout=10)


def calls(events: Path, action: str) -> list[dict]:
    return [e for e in map(json.loads, events.read_text().splitlines()) if e["action"] == action and e.get("status") == 200]


def test_the_build_runs_where_the_account_says_and_the_image_is_encrypted(aws_repo: Path, aws_env: dict[str, str], account: dict) -> None:
    run_doit(aws_repo, "bake:aws-base", env=account["env"], check=True)
    for region in REGIONS:
        (instance,) = [i for r in ec2(aws_env, region).describe_instances()["Reservations"] for i in r["Instances"]]
        assert instance["SubnetId"] == account["subnet"][region]
        (launch,) = [c["params"] for c in calls(account["events"], "RunInstances") if c["region"] == region]
        groups = [value for name, value in launch.items() if "SecurityGroupId." in name]
        assert groups == [account["group"][region]], launch
        assert launch.get("IamInstanceProfile.Name") == "bakery"
        assert launch.get("NetworkInterface.1.AssociatePublicIpAddress") == "true"
        (copy,) = [c["params"] for c in calls(account["events"], "CopyImage") if c["region"] == region]
        assert copy["Encrypted"] == "true" and copy["KmsKeyId"] == account["key"][region]
        tagged = ec2(aws_env, region).describe_images(Owners=["self"], Filters=[{"Name": "tag:bakehouse:bake", "Values": ["aws-base"]}])
        assert len(tagged["Images"]) == 1, region  # the encrypted copy; the unencrypted one is gone

    # Where the build ran is not content; the encryption key is.
    bake: Path = account["bake"]
    bake.write_text(bake.read_text().replace("public_ip = true", "public_ip = false"))
    assert "0 to bake, 1 up to date" in run_doit(aws_repo, "plan", env=account["env"]).output
    bake.write_text(bake.read_text().replace(f'us-west-2 = "{account["key"]["us-west-2"]}"', f'us-west-2 = "{account["key"]["us-east-1"]}"'))
    plan = run_doit(aws_repo, "plan", env=account["env"])
    assert plan.returncode == 1 and "definition: aws.region_kms_key_ids {us-west-2=" in plan.output, plan.output


@pytest.mark.parametrize("line, message", [
    ('subnet_id = "subnet-0123456789abcdef0"', "subnet_id belongs to one region, and the bake builds in us-east-1, us-west-2"),
    ('subnet_id = { us-east-1 = "subnet-0123456789abcdef0" }', "subnet_id names none for us-west-2, where the bake builds"),
    ('vpc_id = { us-east-1 = "vpc-1", us-west-2 = "vpc-0123456789abcdef0" }', "vpc_id.us-east-1: 'vpc-1' is not valid: a VPC id"),
    ('kms_key_id = "alias/images"', "a KMS key is given but encrypted is not true: set encrypted = true"),
    ('ssh_cidrs = ["10.0.0.300/8"]', "ssh_cidrs: '10.0.0.300/8' is not a CIDR block"),
    ('encrypted = "yes"', "encrypted must be true or false"),
    ('ssh_interface = "session_manager"', "ssh_interface = \"session_manager\" needs an instance_profile"),
    ('ssh_bastion_host = "bastion.example.com"', "ssh_bastion_host needs ssh_bastion_private_key_file"),
    ('spot_price = "cheap"', "spot_price: 'cheap' is not valid"),
    ('public = true\nami_users = ["111122223333"]', "public = true lets every account launch the image"),
    ('ami_users = ["1234"]', "ami_users: '1234' is not valid: a 12-digit AWS account id"),
    ('ami_org_arns = ["o-abc"]', "ami_org_arns: 'o-abc' is not valid: an organization ARN"),
])
def test_a_bad_account_key_is_one_line(aws_repo: Path, line: str, message: str) -> None:
    bake = aws_repo / "bakes" / "aws-base.toml"
    bake.write_text(line + "\n" + bake.read_text())
    run = run_doit(aws_repo, "list")
    assert run.returncode == 3 and message in run.output and "Traceback" not in run.output, run.output
    assert len([line for line in run.output.splitlines() if line.strip()]) == 1, run.output


def test_imdsv2_is_required_on_the_build_instance(aws_repo: Path, aws_env: dict[str, str]) -> None:
    """packer 1.6.6 has no metadata_options: bakehouse sets them on the running instance."""
    (aws_repo / "bakes" / "aws-hello.toml").unlink()
    bake = aws_repo / "bakes" / "aws-base.toml"
    bake.write_text("imdsv2 = true\n" + bake.read_text())
    run = run_doit(aws_repo, "bake:aws-base", env=aws_env, check=True)
    for region in REGIONS:
        (instance,) = [i for r in ec2(aws_env, region).describe_instances()["Reservations"] for i in r["Instances"]]
        assert instance["MetadataOptions"]["HttpTokens"] == "required", (region, instance["MetadataOptions"])
        assert f"bakehouse: {instance['InstanceId']} in {region} requires IMDSv2 tokens" in run.output


def test_a_copied_image_names_its_subnet_once(aws_repo: Path) -> None:
    """With multi_region = "copy" a new image is built in the first region only."""
    bake = aws_repo / "bakes" / "aws-base.toml"
    bake.write_text('multi_region = "copy"\nsubnet_id = "subnet-0123456789abcdef0"\n' + bake.read_text())
    assert run_doit(aws_repo, "list").returncode == 0


def launch_permissions(aws_env: dict[str, str], region: str) -> list[dict]:
    (image,) = ec2(aws_env, region).describe_images(Owners=["self"], Filters=[{"Name": "tag:bakehouse:bake", "Values": ["aws-base"]}])["Images"]
    found = ec2(aws_env, region).describe_image_attribute(ImageId=image["ImageId"], Attribute="launchPermission")
    return sorted(found["LaunchPermissions"], key=json.dumps)


def test_who_may_launch_follows_the_bake_without_a_rebake(aws_repo: Path, aws_env: dict[str, str]) -> None:
    (aws_repo / "bakes" / "aws-hello.toml").unlink()
    bake = aws_repo / "bakes" / "aws-base.toml"
    original = bake.read_text()
    bake.write_text('ami_users = ["111122223333"]\nsnapshot_users = ["111122223333"]\n' + original)
    run = run_doit(aws_repo, env=aws_env, check=True)
    assert "launch permissions of aws-base-" in run.output and ": shared with account 111122223333" in run.output
    for region in REGIONS:
        assert launch_permissions(aws_env, region) == [{"UserId": "111122223333"}]
        client = ec2(aws_env, region)
        (image,) = client.describe_images(Owners=["self"])["Images"]
        for mapping in image["BlockDeviceMappings"]:
            found = client.describe_snapshot_attribute(SnapshotId=mapping["Ebs"]["SnapshotId"], Attribute="createVolumePermission")
            assert found["CreateVolumePermissions"] == [{"UserId": "111122223333"}]

    organization = "arn:aws:organizations::111122223333:organization/o-abcdefghij"
    bake.write_text(f'ami_users = ["111122223333", "444455556666"]\nami_org_arns = ["{organization}"]\n' + original)
    plan = run_doit(aws_repo, "plan", env=aws_env)
    assert plan.returncode == 1, plan.output
    (row,) = [line for line in plan.output.splitlines() if line.startswith("aws-base")]
    assert row.split()[1] == "share"
    assert ("launch permissions: shared with account 111122223333 -> shared with accounts 111122223333, "
            "444455556666; organization o-abcdefghij") in row
    run = run_doit(aws_repo, env=aws_env, check=True)
    assert "baking" not in run.output and "amazon-ebs" not in run.output  # nothing baked
    for region in REGIONS:
        assert launch_permissions(aws_env, region) == [
            {"OrganizationArn": organization}, {"UserId": "111122223333"}, {"UserId": "444455556666"}]
    assert run_doit(aws_repo, "plan", env=aws_env).returncode == 0

    bake.write_text(original)  # nobody named: private again
    run_doit(aws_repo, env=aws_env, check=True)
    for region in REGIONS:
        assert launch_permissions(aws_env, region) == []

    bake.write_text("public = true\n" + original)
    run_doit(aws_repo, env=aws_env, check=True)
    plan = run_doit(aws_repo, "plan", env=aws_env)
    assert plan.returncode == 0 and "up to date; launch: public" in plan.output, plan.output
    everything_on_moto = {**aws_env, "AWS_ENDPOINT_URL": aws_env["AWS_ENDPOINT_URL_EC2"]}  # Auto Scaling too
    assert "aws-base: 1 image (launch: public)" in run_doit(aws_repo, "images", env=everything_on_moto).output
    for region in REGIONS:
        (image,) = ec2(aws_env, region).describe_images(Owners=["self"])["Images"]
        assert image["Public"] is True


def test_a_share_that_fails_fails_the_bake_and_the_next_run_shares(aws_repo: Path, aws_env: dict[str, str], tmp_path: Path) -> None:
    (aws_repo / "bakes" / "aws-hello.toml").unlink()
    bake = aws_repo / "bakes" / "aws-base.toml"
    bake.write_text('ami_users = ["111122223333"]\n' + bake.read_text())
    proxy, url = start_fault_proxy(aws_env["AWS_ENDPOINT_URL_EC2"], {"faults": [
        {"action": "ModifyImageAttribute", "first": 100, "code": "InvalidAMIAttributeItemValue"}]}, tmp_path / "faults.jsonl")
    try:
        run = run_doit(aws_repo, env={**aws_env, "AWS_ENDPOINT_URL_EC2": url})
    finally:
        proxy.kill()
        proxy.wait(timeout=10)
    assert run.returncode == 1
    assert "AWS ModifyImageAttribute in us-east-1: InvalidAMIAttributeItemValue" in run.output and "Traceback" not in run.output
    for region in REGIONS:  # every AMI left is tagged as the image it is (recorded): none is orphaned
        for image in ec2(aws_env, region).describe_images(Owners=["self"])["Images"]:
            assert "bakehouse:image" in {t["Key"] for t in image.get("Tags", [])}, image
    plan = run_doit(aws_repo, "plan", env=aws_env)
    assert plan.returncode == 1 and "share" in plan.output, plan.output
    run_doit(aws_repo, env=aws_env, check=True)
    for region in REGIONS:
        assert launch_permissions(aws_env, region) == [{"UserId": "111122223333"}]


def test_a_subnet_found_by_its_tags_a_restricted_temporary_group_and_a_spot_instance(
    aws_repo: Path, aws_env: dict[str, str], tmp_path: Path
) -> None:
    subnets = {}
    for region in REGIONS:
        client = ec2(aws_env, region)
        vpc = client.create_vpc(CidrBlock="10.2.0.0/16")["Vpc"]["VpcId"]
        subnets[region] = client.create_subnet(VpcId=vpc, CidrBlock="10.2.1.0/24")["Subnet"]["SubnetId"]
        client.create_tags(Resources=[subnets[region]], Tags=[{"Key": "Purpose", "Value": "bake"}])
    (aws_repo / "bakes" / "aws-hello.toml").unlink()
    bake = aws_repo / "bakes" / "aws-base.toml"
    bake.write_text('subnet_tags = { Purpose = "bake" }\nssh_cidrs = ["10.0.0.0/8"]\nspot_price = "auto"\n' + bake.read_text())
    events = tmp_path / "calls.jsonl"
    proxy, url = start_fault_proxy(aws_env["AWS_ENDPOINT_URL_EC2"], {"log_params": True}, events)
    try:
        run_doit(aws_repo, "bake:aws-base", env={**aws_env, "AWS_ENDPOINT_URL_EC2": url}, check=True)
    finally:
        proxy.kill()
        proxy.wait(timeout=10)
    for region in REGIONS:
        # packer asks for a spot instance with a fleet (moto places its instance in the default
        # subnet whatever the fleet says, so the request is what is checked)
        assert [c for c in calls(events, "CreateFleet") if c["region"] == region]
        (template,) = [c["params"] for c in calls(events, "CreateLaunchTemplate") if c["region"] == region]
        assert subnets[region] in template.values(), template  # the fleet's launch template
        assert not [c for c in calls(events, "RunInstances") if c["region"] == region]
        ingress = [c["params"] for c in calls(events, "AuthorizeSecurityGroupIngress") if c["region"] == region]
        assert ingress and all("10.0.0.0/8" in params.values() for params in ingress), ingress
