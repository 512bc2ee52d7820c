"""AWS as it really behaves: throttling, 5xx answers and eventual consistency.

moto's EC2 server stands in for AWS (there is no AWS account here), and tests/fault_proxy.py
sits between it and both bakehouse (boto3) and packer (amazon-ebs, run for real), injecting
seeded faults. Each heavy scenario is one test: the AWS example (a base and a service in two
regions) bakes through the faults, leaves exactly one tagged AMI per bake and region and
nothing else (no instance, key pair, security group, volume or orphan snapshot), and a
following `doit plan`, through the same faults, says everything is up to date.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import Running, amis, ec2, run_doit, start_fault_proxy

REGIONS = ("us-east-1", "us-west-2")
BAKES = ("aws-base", "aws-hello")
INTERRUPTED = (130, -signal.SIGINT)

Proxy = Callable[..., dict[str, str]]


@pytest.fixture
def faulty(aws_env: dict[str, str], tmp_path: Path) -> Iterator[Proxy]:
    """Start a fault proxy in front of moto: returns the environment that points bakehouse
    and packer at it (the test's own checks ask moto directly). Stopped by its pid."""
    started: list[subprocess.Popen[bytes]] = []

    def start(**config: object) -> dict[str, str]:
        proxy, url = start_fault_proxy(aws_env["AWS_ENDPOINT_URL_EC2"], {"seed": 7, **config}, tmp_path / "faults.jsonl")
        started.append(proxy)
        return {**aws_env, "AWS_ENDPOINT_URL_EC2": url}

    yield start
    for proxy in started:
        proxy.kill()
        proxy.wait(timeout=10)


def events(tmp_path: Path) -> list[dict]:
    path = tmp_path / "faults.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def baseline(aws_env: dict[str, str]) -> dict[str, set[str]]:
    """What moto has before a bake, by region: its default security groups, and the
    snapshots of its own built-in images (which it lists as the account's)."""
    found = {}
    for region in REGIONS:
        client = ec2(aws_env, region)
        found[region] = {g["GroupId"] for g in client.describe_security_groups()["SecurityGroups"]} | {
            s["SnapshotId"] for s in client.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    return found


def assert_one_clean_image_per_region(aws_env: dict[str, str], before: dict[str, set[str]]) -> None:
    """Exactly one tagged AMI per bake and region, and nothing else left behind."""
    for region in REGIONS:
        client = ec2(aws_env, region)
        for bake in BAKES:
            found = amis(aws_env, region, bake)
            assert len(found) == 1 and found[0]["State"] == "available", (region, bake, found)
        own = client.describe_images(Owners=["self"])["Images"]
        assert len(own) == len(BAKES), (region, [(i["ImageId"], i.get("Name"), i["State"]) for i in own])
        states = [i["State"]["Name"] for r in client.describe_instances()["Reservations"] for i in r["Instances"]]
        assert set(states) <= {"terminated"}, (region, states)
        assert [k["KeyName"] for k in client.describe_key_pairs()["KeyPairs"]] == [], region
        assert {g["GroupId"] for g in client.describe_security_groups()["SecurityGroups"]} <= before[region]
        assert [v["VolumeId"] for v in client.describe_volumes()["Volumes"] if v["State"] != "deleted"] == [], region
        referenced = {m["Ebs"]["SnapshotId"] for i in own for m in i.get("BlockDeviceMappings", []) if "Ebs" in m}
        snapshots = {s["SnapshotId"] for s in client.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
        assert snapshots - before[region] <= referenced, (region, snapshots - before[region] - referenced)


def assert_plan_up_to_date(repo: Path, env: dict[str, str]) -> None:
    plan = run_doit(repo, "plan", env=env)
    assert plan.returncode == 0, plan.output
    assert "0 to bake, 2 up to date" in plan.output, plan.output


def bake_through(repo: Path, env: dict[str, str], aws_env: dict[str, str]) -> str:
    before = baseline(aws_env)
    run = run_doit(repo, env=env)
    assert run.returncode == 0, run.output
    assert_one_clean_image_per_region(aws_env, before)
    assert_plan_up_to_date(repo, env)
    return run.output


def test_bakes_survive_one_call_in_five_throttled(aws_repo: Path, aws_env: dict[str, str], faulty: Proxy, tmp_path: Path) -> None:
    env = faulty(faults=[{"action": "*", "rate": 0.2, "burst": 2, "code": "RequestLimitExceeded"}])
    bake_through(aws_repo, env, aws_env)
    assert sum("fault" in event for event in events(tmp_path)) >= 10


def test_bakes_survive_half_of_describe_images_throttled(aws_repo: Path, aws_env: dict[str, str], faulty: Proxy, tmp_path: Path) -> None:
    env = faulty(faults=[{"action": "DescribeImages", "rate": 0.5, "burst": 3, "code": "RequestLimitExceeded"}])
    bake_through(aws_repo, env, aws_env)
    assert sum(event.get("fault") == "RequestLimitExceeded" for event in events(tmp_path)) >= 10


def test_bakes_survive_internal_errors(aws_repo: Path, aws_env: dict[str, str], faulty: Proxy, tmp_path: Path) -> None:
    env = faulty(faults=[{"action": "*", "rate": 0.1, "code": "InternalError"}])
    bake_through(aws_repo, env, aws_env)
    assert sum(event.get("fault") == "InternalError" for event in events(tmp_path)) >= 3


def test_tags_that_show_late_are_waited_for(aws_repo: Path, aws_env: dict[str, str], faulty: Proxy) -> None:
    env = faulty(tags_late_seconds=10)
    output = bake_through(aws_repo, env, aws_env)
    assert "[aws-base] waiting for AWS to show us-east-1:ami-" in output


def test_an_ami_pending_for_long_is_waited_for_whatever_aws_max_attempts_says(
    aws_repo: Path, aws_env: dict[str, str], faulty: Proxy
) -> None:
    """AMIs are pending 12 s (3 minutes on AWS, shortened with a 1 s poll) and invisible for
    the first 2; AWS_MAX_ATTEMPTS=3 and AWS_POLL_DELAY_SECONDS=1, set for boto3, would make
    packer's waiters give up after 3 s."""
    env = {**faulty(pending_seconds=12, hidden_seconds=2), "AWS_MAX_ATTEMPTS": "3", "AWS_POLL_DELAY_SECONDS": "1",
           "BAKEHOUSE_AWS_POLL_SECONDS": "1"}
    bake_through(aws_repo, env, aws_env)


def test_a_region_that_fails_on_throttling_is_rebaked_alone(aws_repo: Path, aws_env: dict[str, str], faulty: Proxy) -> None:
    """Packer's SDK gets one retry (BAKEHOUSE_AWS_PACKER_RETRIES=1), so two throttled
    RunInstances in us-west-2 fail that region's build; bakehouse bakes it again, alone."""
    env = {**faulty(faults=[{"action": "RunInstances", "region": "us-west-2", "first": 2, "code": "RequestLimitExceeded"}]),
           "BAKEHOUSE_AWS_PACKER_RETRIES": "1"}
    output = bake_through(aws_repo, env, aws_env)
    assert "[aws-base] us-west-2 failed on RequestLimitExceeded; retrying (2/3)" in output
    assert output.count("retrying") == 1


def test_a_copied_image_whose_bake_fails_on_throttling_is_baked_and_copied_again(
    aws_repo: Path, aws_env: dict[str, str], faulty: Proxy
) -> None:
    bake = aws_repo / "bakes" / "aws-base.toml"
    bake.write_text('multi_region = "copy"\n' + bake.read_text())
    env = {**faulty(faults=[{"action": "RunInstances", "region": "us-east-1", "first": 2, "code": "RequestLimitExceeded"}]),
           "BAKEHOUSE_AWS_PACKER_RETRIES": "1"}
    output = bake_through(aws_repo, env, aws_env)
    assert "[aws-base] us-east-1, us-west-2 failed on RequestLimitExceeded; retrying (2/3)" in output


def test_a_bake_cancelled_while_its_ami_is_pending_leaves_no_ami(
    aws_repo: Path, aws_env: dict[str, str], faulty: Proxy, tmp_path: Path
) -> None:
    env = {**faulty(pending_seconds=300), "BAKEHOUSE_AWS_POLL_SECONDS": "1"}
    before = baseline(aws_env)
    run = Running(aws_repo, "bake:aws-base", env=env)
    deadline = time.monotonic() + 60
    while not any(event.get("action") == "CreateImage" and event.get("status") == 200 for event in events(tmp_path)):
        assert run.process.poll() is None and time.monotonic() < deadline, run.output
        time.sleep(0.1)
    time.sleep(1)  # packer is polling for the pending AMI
    os.killpg(run.process.pid, signal.SIGINT)
    assert run.finish(seconds=180) in INTERRUPTED, run.output  # within packer's 2-minute clean-up grace
    for region in REGIONS:
        client = ec2(aws_env, region)
        assert client.describe_images(Owners=["self"])["Images"] == [], region
        assert {s["SnapshotId"] for s in client.describe_snapshots(OwnerIds=["self"])["Snapshots"]} <= before[region]
        states = [i["State"]["Name"] for r in client.describe_instances()["Reservations"] for i in r["Instances"]]
        assert set(states) <= {"terminated"}, (region, states)
        assert {g["GroupId"] for g in client.describe_security_groups()["SecurityGroups"]} <= before[region]


def test_an_ami_left_by_a_killed_run_does_not_block_the_image(aws_repo: Path, aws_env: dict[str, str]) -> None:
    """A run killed after packer made its AMI in us-west-2 but before it was tagged leaves an
    untagged AMI of the image's name: the next run completes the image there anyway."""
    run_doit(aws_repo, "bake:aws-base", env=aws_env, check=True)
    (image,) = amis(aws_env, "us-west-2", "aws-base")
    west = ec2(aws_env, "us-west-2")
    west.deregister_image(ImageId=image["ImageId"])
    leftover = west.register_image(Name=image["Name"], RootDeviceName="/dev/xvda", BlockDeviceMappings=[])["ImageId"]
    run = run_doit(aws_repo, "bake:aws-base", env=aws_env)
    assert run.returncode == 0, run.output
    assert "missing in us-west-2" in run.output
    (completed,) = west.describe_images(Owners=["self"])["Images"]
    assert completed["ImageId"] != leftover and completed["Name"] == image["Name"]
    assert {t["Key"]: t["Value"] for t in completed["Tags"]}["bakehouse:image"] == image["tags"]["bakehouse:image"]


def test_a_listing_that_fails_is_asked_once_and_every_row_says_so(aws_repo: Path, aws_env: dict[str, str], faulty: Proxy, tmp_path: Path) -> None:
    env = {**faulty(faults=[{"action": "DescribeImages", "region": "us-west-2", "rate": 1.0, "code": "RequestLimitExceeded"}]),
           "BAKEHOUSE_AWS_MAX_ATTEMPTS": "2"}
    plan = run_doit(aws_repo, "plan", env=env)
    assert plan.returncode == 2, plan.output
    rows = [line for line in plan.output.splitlines() if line.startswith(BAKES)]
    assert len(rows) == 2 and all("error" in row for row in rows), plan.output
    errors = {row.split("error", 1)[1].strip() for row in rows}
    assert len(errors) == 1 and "RequestLimitExceeded" in errors.pop(), plan.output
    assert sum(event.get("action") == "DescribeImages" and event["region"] == "us-west-2" for event in events(tmp_path)) == 2
