"""`doit prune`: a dry run that says why each image stays or goes, `--apply` that deletes
exactly those (AMIs in every region and their snapshots; local files, records and logs), and
never an image in use. Local images are really baked; AMIs live on moto's EC2 server (there
is no AWS account here), some baked by packer, some registered with boto3 and tagged as
bakehouse tags its AMIs (docs/explanation/registry.md, "The registry is AWS itself").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from helpers import HeldInstalls, Running, amis, bump_hello, ec2, records, run_doit

NOW = datetime.fromisoformat(os.environ["BAKEHOUSE_NOW"])
LATER = {"BAKEHOUSE_NOW": (NOW + timedelta(hours=2)).isoformat()}
REGIONS = ("us-east-1", "us-west-2")


def prune(repo: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """`doit prune --json ARGS`: the JSON on stdout (what it deletes is told on stderr)."""
    result = subprocess.run(
        [sys.executable, "-m", "doit", "prune", "--json", *args], cwd=repo, capture_output=True, text=True,
        env={**os.environ, **LATER, **(env or {})},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def verdicts(found: Any) -> dict[str, tuple[str, list[str]]]:
    return {row["image"]: (row["action"], row["why"]) for row in found["images"]}


def add_policy(bake: Path, keep: int, min_age: str) -> None:
    bake.write_text(bake.read_text() + f"\n[prune]\nkeep = {keep}\nmin_age = \"{min_age}\"\n")


def test_local_prune_keeps_the_current_images_and_their_bases_and_deletes_the_rest(repo: Path) -> None:
    run_doit(repo, check=True)                                   # hello A on base 1
    run_doit(repo, "bake:base", "--rebake", check=True)          # base 2
    run_doit(repo, check=True)                                   # hello B on base 2
    bump_hello(repo, "1.0.5")
    run_doit(repo, check=True)                                   # hello C on base 2
    (hello_c, hello_b, hello_a), (base_2, base_1) = [[r["image_id"] for r in records(repo, b)] for b in ("hello", "base")]
    for bake in ("base", "hello"):
        add_policy(repo / "bakes" / f"{bake}.toml", keep=1, min_age="1h")

    found = verdicts(prune(repo))
    assert found == {
        base_2: ("keep", ["current image of base", "newest 1", f"base of {hello_c}"]),
        base_1: ("delete", ["older than 1h and not among the newest 1"]),
        hello_c: ("keep", ["current image of hello", "newest 1"]),
        hello_b: ("delete", ["older than 1h and not among the newest 1"]),
        hello_a: ("delete", ["older than 1h and not among the newest 1"]),
    }, found
    assert len(list((repo / ".bakehouse" / "images").glob("*/*"))) == 5  # a dry run deletes nothing
    assert "5 images: 3 to delete (" in run_doit(repo, "prune", env=LATER).output

    young = verdicts(prune(repo, env={"BAKEHOUSE_NOW": NOW.isoformat()}))
    assert all(action == "keep" and "younger than 1h" in why for action, why in young.values())

    # A kept service image keeps the base it was built on, even when only the base is pruned.
    hello_file = repo / "bakes" / "hello.toml"
    policy = hello_file.read_text()
    hello_file.write_text(policy.replace("keep = 1", "keep = 3"))
    assert verdicts(prune(repo, "base"))[base_1] == ("keep", [f"base of {hello_a}"])
    hello_file.write_text(policy)

    applied = prune(repo, "--apply")
    assert sorted(applied["deleted"]) == sorted([base_1, hello_b, hello_a])
    assert [r["image_id"] for r in records(repo, "hello")] == [hello_c]
    assert [r["image_id"] for r in records(repo, "base")] == [base_2]
    assert sorted(p.name for p in (repo / ".bakehouse" / "images").glob("*/*")) == sorted((base_2, hello_c))
    assert not (repo / ".bakehouse" / "logs" / "hello" / f"{hello_a}.log").exists()
    assert run_doit(repo, "plan").returncode == 0  # nothing in use was touched
    assert prune(repo, "--apply")["deleted"] == []


def test_the_image_in_use_is_kept_when_its_bake_is_not_up_to_date(repo: Path) -> None:
    """Right after the weekly `doit bake:base && doit prune --apply`, no service is up to date
    (its base changed), and what runs is still each service's image in use."""
    run_doit(repo, check=True)                                   # hello A
    bump_hello(repo, "1.0.5")
    run_doit(repo, check=True)                                   # hello B
    bump_hello(repo, "1.0.4")
    assert "up to date: " in run_doit(repo, check=True).output  # A is current again: in use
    hello_b, hello_a = [r["image_id"] for r in records(repo, "hello")]
    run_doit(repo, "bake:base", "--rebake", check=True)          # the weekly base
    add_policy(repo / "bakes" / "hello.toml", keep=1, min_age="1h")
    assert run_doit(repo, "info", "bake:hello").returncode == 1  # hello would bake: nothing is current

    found = verdicts(prune(repo, "hello"))
    assert found[hello_a] == ("keep", ["image in use of hello"]), found
    assert found[hello_b] == ("keep", ["newest 1"]), found
    assert prune(repo, "--apply")["deleted"] == []
    assert [r["image_id"] for r in records(repo, "hello")] == [hello_b, hello_a]


def test_prune_keeps_the_base_a_running_bake_builds_on(repo: Path, tmp_path: Path) -> None:
    run_doit(repo, "bake:base", check=True)
    (old_base,) = [r["image_id"] for r in records(repo, "base")]
    installs = HeldInstalls(repo, tmp_path / "scratch")
    hello = Running(repo, "bake:hello", env=installs.env)        # on the old base, held mid-install
    installs.wait_until_held(1)
    run_doit(repo, "bake:base", "--rebake", check=True)          # the base moves on meanwhile
    add_policy(repo / "bakes" / "base.toml", keep=1, min_age="1h")

    try:
        found = verdicts(prune(repo, "--apply", "base"))
    finally:
        installs.release()
        finished = hello.finish(120)
    assert found[old_base] == ("keep", ["base of the running bake of hello"]), found
    assert finished == 0, hello.output
    assert records(repo, "hello")[0]["base_image"] == old_base
    assert "[hello] baked " in hello.output


def test_prune_removes_old_logs_of_failed_bakes_and_old_service_runs(repo: Path) -> None:
    run_doit(repo, check=True)
    month_ago = time.time() - 30 * 86400
    logs, serve = repo / ".bakehouse" / "logs" / "hello", repo / ".bakehouse" / "serve"
    serve.mkdir(parents=True, exist_ok=True)
    left = {
        logs / "hello-20261101T000000Z-deadbeef.log": "a failed bake's log\n",
        logs / "hello-20261102T000000Z-feedface.log": "the last failed bake's log\n",
        serve / "r-old.json": json.dumps({"state": "failed"}), serve / "r-old.log": "its log\n",
        serve / "r-running.json": json.dumps({"state": "running"}), serve / "r-running.log": "...\n",
    }
    for path, text in left.items():
        path.write_text(text)
        os.utime(path, (month_ago, month_ago))
    (logs / "last-failed.json").write_text(json.dumps({"image_id": "hello-20261102T000000Z-feedface"}))
    (serve / "r-young.json").write_text(json.dumps({"state": "succeeded"}))

    result = run_doit(repo, "prune", "--apply", env=LATER)
    assert result.returncode == 0, result.output
    assert ("[hello] removed .bakehouse/logs/hello/hello-20261101T000000Z-deadbeef.log, the log of a failed bake "
            "older than 14d") in result.output, result.output
    assert "removed .bakehouse/serve/r-old.json, of a bake service run older than 14d" in result.output
    assert sorted(p.name for p in serve.iterdir()) == ["r-running.json", "r-running.log", "r-young.json"]
    assert (logs / "hello-20261102T000000Z-feedface.log").exists()  # `doit log --failed hello` shows it
    assert all((logs / f"{r['image_id']}.log").exists() for r in records(repo, "hello"))


def test_an_interrupted_prune_is_finished_by_the_next(repo: Path) -> None:
    run_doit(repo, check=True)
    image = records(repo, "hello")[0]
    (repo / ".bakehouse" / "records" / "hello" / f"{image['image_id']}.json").unlink()  # killed after this
    result = run_doit(repo, "prune", "--apply", "hello", env=LATER)
    assert result.returncode == 0, result.output
    assert f"removed images/hello/{image['image_id']}, left by an interrupted prune or bake" in result.output
    assert not list((repo / ".bakehouse" / "images" / "hello").iterdir())


@pytest.mark.parametrize(("policy", "error"), [
    ("[prune]\nkeep = -1\n", "bakes/hello.toml: prune.keep must be a whole number of images, at least 1, not -1"),
    ("[prune]\nmin_age = \"2 weeks\"\n", "bakes/hello.toml: prune.min_age: '2 weeks' is not a duration such as"),
    ("[prune]\nkeeep = 3\n", "bakes/hello.toml: unknown key 'prune.keeep' (did you mean 'keep'?)"),
    ("[prune]\nmin_age = \"999999999d\"\n", "bakes/hello.toml: prune.min_age: '999999999d' is more than 100 years"),
])
def test_a_bad_policy_is_one_line_and_deletes_nothing(repo: Path, policy: str, error: str) -> None:
    bake = repo / "bakes" / "hello.toml"
    bake.write_text(bake.read_text() + "\n" + policy)
    result = run_doit(repo, "prune", "--apply", env=LATER)
    assert result.returncode == 3 and error in result.output.strip().splitlines()[-1], result.output
    assert records(repo, "base")


def test_an_unknown_bake_is_one_line(repo: Path) -> None:
    result = run_doit(repo, "prune", "helo")
    assert result.returncode == 3 and "no bake 'helo' in bakes/ (did you mean 'hello'?)" in result.output


# --- AMIs on moto ---

def plant_base_ami(env: dict[str, str], image_id: str, days_old: int, sequence: int) -> dict[str, str]:
    """An older aws-base image in both regions: an AMI with a snapshot, tagged as bakehouse tags."""
    tags = {"bakehouse:bake": "aws-base", "bakehouse:image": image_id, "bakehouse:key": "0" * 64,
            "bakehouse:created": (NOW - timedelta(days=days_old)).isoformat(), "bakehouse:sequence": str(sequence)}
    made = {}
    for region in REGIONS:
        client = ec2(env, region)
        volume = client.create_volume(Size=8, AvailabilityZone=f"{region}a")["VolumeId"]
        snapshot = client.create_snapshot(VolumeId=volume)["SnapshotId"]
        ami = client.register_image(Name=image_id, RootDeviceName="/dev/xvda", BlockDeviceMappings=[
            {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snapshot, "VolumeSize": 8}}])["ImageId"]
        pairs = [{"Key": k, "Value": v} for k, v in tags.items()]
        client.create_tags(Resources=[ami, snapshot], Tags=pairs)
        made[region] = ami
        made[f"{region}:snapshot"] = snapshot
    return made


def snapshot_exists(env: dict[str, str], region: str, snapshot: str) -> bool:
    found = ec2(env, region).describe_snapshots(OwnerIds=["self"])["Snapshots"]
    return any(s["SnapshotId"] == snapshot for s in found)


def test_ami_prune_spares_what_is_used_and_deletes_amis_and_snapshots_in_every_region(
    aws_repo: Path, aws_env: dict[str, str],
) -> None:
    env = {**aws_env, "AWS_ENDPOINT_URL": aws_env["AWS_ENDPOINT_URL_EC2"]}  # Auto Scaling too, on moto
    run_doit(aws_repo, env=env, check=True)
    current = amis(env, "us-east-1", "aws-base")[0]["tags"]["bakehouse:image"]
    planted = {f"aws-base-old-{n}": plant_base_ami(env, f"aws-base-old-{n}", 20 + n, n) for n in range(1, 8)}
    ec2(env, "us-west-2").run_instances(ImageId=planted["aws-base-old-2"]["us-west-2"], MinCount=1, MaxCount=1)
    template = ec2(env, "us-east-1").create_launch_template(
        LaunchTemplateName="web", LaunchTemplateData={"ImageId": "ami-12345678"})["LaunchTemplate"]["LaunchTemplateId"]
    ec2(env, "us-east-1").create_launch_template_version(
        LaunchTemplateId=template, LaunchTemplateData={"ImageId": planted["aws-base-old-3"]["us-east-1"]})
    boto3.client("autoscaling", region_name="us-east-1", endpoint_url=env["AWS_ENDPOINT_URL"],
                 aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                 ).create_launch_configuration(LaunchConfigurationName="web-old", InstanceType="t3.micro",
                                               ImageId=planted["aws-base-old-6"]["us-east-1"])
    service = ec2(env, "us-east-1").register_image(Name="aws-hello-old", RootDeviceName="/dev/xvda")["ImageId"]
    ec2(env, "us-east-1").create_tags(Resources=[service], Tags=[{"Key": k, "Value": v} for k, v in {
        "bakehouse:bake": "aws-hello", "bakehouse:image": "aws-hello-old", "bakehouse:key": "1" * 64,
        "bakehouse:created": NOW.isoformat(), "bakehouse:base-image": "aws-base-old-4"}.items()])
    add_policy(aws_repo / "bakes" / "aws-base.toml", keep=2, min_age="14d")

    found = verdicts(prune(aws_repo, "aws-base", env=env))
    assert found == {
        current: ("keep", ["current image of aws-base", "newest 2", "younger than 14d",
                           f"base of {amis(env, 'us-east-1', 'aws-hello')[0]['tags']['bakehouse:image']}"]),
        "aws-base-old-1": ("keep", ["newest 2"]),
        "aws-base-old-2": ("keep", [f"in use by instance {_instance(env)} in us-west-2"]),
        "aws-base-old-3": ("keep", [f"in use by launch template {template} v2 in us-east-1"]),
        "aws-base-old-4": ("keep", ["base of aws-hello-old"]),
        "aws-base-old-6": ("keep", ["in use by launch configuration web-old in us-east-1"]),
        **{f"aws-base-old-{n}": ("delete", ["older than 14d and not among the newest 2"]) for n in (5, 7)},
    }, found
    assert all(len(amis(env, region, "aws-base")) == 8 for region in REGIONS)  # a dry run deletes nothing

    applied = prune(aws_repo, "--apply", "aws-base", env=env)
    assert sorted(applied["deleted"]) == ["aws-base-old-5", "aws-base-old-7"]
    for region in REGIONS:
        left = {ami["tags"]["bakehouse:image"] for ami in amis(env, region, "aws-base")}
        assert left == {current} | {f"aws-base-old-{n}" for n in (1, 2, 3, 4, 6)}
        for n in range(1, 8):
            assert snapshot_exists(env, region, planted[f"aws-base-old-{n}"][f"{region}:snapshot"]) == (n not in (5, 7))
    assert prune(aws_repo, "--apply", "aws-base", env=env)["deleted"] == []
    assert run_doit(aws_repo, "plan", env=env).returncode == 0


def test_an_interrupted_ami_prune_leaves_snapshots_the_next_one_deletes(aws_repo: Path, aws_env: dict[str, str]) -> None:
    env = {**aws_env, "AWS_ENDPOINT_URL": aws_env["AWS_ENDPOINT_URL_EC2"]}
    run_doit(aws_repo, env=env, check=True)
    old = plant_base_ami(env, "aws-base-old", 30, 0)
    for region in REGIONS:  # a prune killed after deregistering, before deleting the snapshots
        ec2(env, region).deregister_image(ImageId=old[region])
    result = run_doit(aws_repo, "prune", "--apply", "aws-base", env={**LATER, **env})
    assert result.returncode == 0, result.output
    for region in REGIONS:
        assert f"removed {region}:{old[f'{region}:snapshot']} (its AMI was deregistered)" in result.output
        assert not snapshot_exists(env, region, old[f"{region}:snapshot"])


def _instance(env: dict[str, str]) -> str:
    reservations = ec2(env, "us-west-2").describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["running"]}])["Reservations"]
    return reservations[0]["Instances"][0]["InstanceId"]


def stored_bytes(folder: Path) -> int:
    """What a tree holds on disk, each file (inode) once: the truth a prune's total must match."""
    seen: dict[tuple[int, int], int] = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            status = path.lstat()
            seen[(status.st_dev, status.st_ino)] = status.st_size
    return sum(seen.values())


def test_a_prune_says_the_bytes_it_frees_counting_a_shared_layer_once(repo: Path) -> None:
    """The old base's layer is hard-linked into the old hello: deleting both frees it once,
    and the total says so (before, each image counted only its unshared blobs: KiB, not MiB)."""
    run_doit(repo, check=True)                                   # hello A on base 1
    run_doit(repo, "--rebake", check=True)                       # base 2, hello B on it
    for bake in ("base", "hello"):
        add_policy(repo / "bakes" / f"{bake}.toml", keep=1, min_age="1h")
    images = repo / ".bakehouse" / "images"
    before = stored_bytes(images)
    planned = prune(repo)
    assert planned["delete"] == 2
    applied = prune(repo, "--apply")
    freed = before - stored_bytes(images)
    assert freed > 1_000_000  # the tiny base's layer is MiBs
    assert planned["bytes"] == applied["bytes"] == freed
    listing = run_doit(repo, "images", "base", check=True).stdout
    assert re.search(r"1 layer, [\d.]+ KiB own, [\d.]+ MiB shared with other images, [\d.]+ MiB in all", listing), listing
