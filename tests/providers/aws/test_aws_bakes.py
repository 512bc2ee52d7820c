"""The AWS provider end to end: real doit, packer (amazon-ebs) and boto3 against moto's EC2
server on 127.0.0.1, which stands in for AWS because there is no AWS account here.

The repository is the shipped example (examples/aws/bakes: aws-base from the newest Debian 12
AMI, aws-hello with hello-svc on it, both in us-east-1 and us-west-2). moto cannot run an
instance to log in to, so the tests bake it with communicator = "none" (conftest.aws_repo):
packer starts, stops and images an instance, copies, tags and cleans up for real, but runs
nothing on it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from helpers import PROJECT, SECRET, amis, aws_calls, bump_hello, ec2, own_template, provenance_statements, run_doit, write

REGIONS = ["us-east-1", "us-west-2"]
NAME = re.compile(r"^aws-hello-x86_64-\d{14}-[0-9a-f]{6}-bookworm$")


def baked(output: str) -> list[str]:
    return re.findall(r"^\[([\w-]+)\] baked ", output, re.M)


def listings(calls: list[str]) -> dict[str, int]:
    """Registry listings (DescribeImages of this account's bakehouse AMIs) per region."""
    counts: dict[str, int] = {}
    for call in calls:
        if call.startswith("ec2 DescribeImages ") and '"Owners":["self"]' in call and "bakehouse:bake" in call:
            region = call.split()[2]
            counts[region] = counts.get(region, 0) + 1
    return counts


def test_base_then_service_in_two_regions_tagged_and_named_and_a_second_run_bakes_nothing(
    aws_repo: Path, aws_env: dict[str, str]
) -> None:
    first = run_doit(aws_repo, env=aws_env, check=True)
    assert baked(first.output) == ["aws-base", "aws-hello"]

    for region in REGIONS:
        base, = amis(aws_env, region, "aws-base")
        hello, = amis(aws_env, region, "aws-hello")
        assert NAME.match(hello["Name"]), hello["Name"]
        assert hello["State"] == "available" and hello["RootDeviceType"] == "ebs"
        tags = hello["tags"]
        assert tags["appversion"] == "hello-svc-1.0.4"
        assert tags["base_ami_id"] == base["ImageId"]  # built on the base in the same region
        assert tags["base_ami_name"] == base["Name"]
        assert tags["bakehouse:base-image"] == base["tags"]["bakehouse:image"]
        assert tags["creator"] and tags["creation_time"]
        assert re.fullmatch(r"[0-9a-f]{64}", tags["bakehouse:key"])
        summary = "".join(tags[f"bakehouse:summary:{n}"] for n in range(30) if f"bakehouse:summary:{n}" in tags)
        assert '"hello-svc":{"sha256":' in summary
        assert all(len(value) <= 256 for value in tags.values()) and len(tags) <= 50
        snapshot = hello["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
        snapshot_tags = ec2(aws_env, region).describe_snapshots(SnapshotIds=[snapshot])["Snapshots"][0]["Tags"]
        assert {"Key": "bakehouse:image", "Value": tags["bakehouse:image"]} in snapshot_tags
    east, west = (amis(aws_env, region, "aws-hello")[0] for region in REGIONS)
    assert east["Name"] == west["Name"]  # one timestamp for all regions of a bake
    assert east["tags"]["bakehouse:image"] == west["tags"]["bakehouse:image"]
    assert re.search(
        rf"^\[aws-hello\] baked \S+ \(us-east-1: {east['ImageId']}, us-west-2: {west['ImageId']}\)$", first.output, re.M
    )

    aws_calls(aws_env)
    second = run_doit(aws_repo, env=aws_env, check=True)
    assert baked(second.output) == []
    assert f"-- bake:aws-hello: up to date: {east['tags']['bakehouse:image']}" in second.output
    calls = aws_calls(aws_env)
    assert listings(calls) == {"us-east-1": 1, "us-west-2": 1}
    # ...and one lookup of the source filter per region; nothing else.
    assert len(calls) == 4 and all(call.startswith("ec2 DescribeImages ") for call in calls)

    # Provenance: one statement about both AMIs, beside the log, its SHA256 tagged on each AMI.
    (statement,) = provenance_statements(aws_repo, "aws-hello", env=aws_env)
    assert statement["subject"] == [
        {"name": f"{region}/{ami['ImageId']}", "uri": f"arn:aws:ec2:{region}::image/{ami['ImageId']}",
         "digest": {"awsAmiId": ami["ImageId"]}} for region, ami in zip(REGIONS, (east, west))
    ]
    digest = east["tags"]["bakehouse:provenance"]
    assert west["tags"]["bakehouse:provenance"] == digest
    image_id = east["tags"]["bakehouse:image"]
    kept = aws_repo / ".bakehouse" / "logs" / "aws-hello" / f"{image_id}.provenance-{digest[7:19]}.json"
    assert "sha256:" + hashlib.sha256(kept.read_bytes()).hexdigest() == digest
    dependencies = {dep["name"]: dep for dep in statement["predicate"]["buildDefinition"]["resolvedDependencies"]}
    for region in REGIONS:
        base = amis(aws_env, region, "aws-base")[0]
        on = dependencies[f"base image {base['tags']['bakehouse:image']} in {region}"]
        assert on["digest"] == {"awsAmiId": base["ImageId"]}
        assert on["annotations"] == {"provenance": base["tags"]["bakehouse:provenance"]}
    assert dependencies["hello-svc"]["uri"] == "pkg:deb/debian/hello-svc@1.0.4?arch=amd64"
    assert statement["predicate"]["buildDefinition"]["internalParameters"]["key"] == east["tags"]["bakehouse:key"]
    (base_statement,) = provenance_statements(aws_repo, "aws-base", env=aws_env)
    source = next(dep for dep in base_statement["predicate"]["buildDefinition"]["resolvedDependencies"]
                  if dep["name"] == "source image in us-east-1")
    assert source["annotations"]["name"].startswith("debian-12-amd64-")
    # A statement that is not the one its AMIs name is refused, in one line.
    kept.write_text(kept.read_text().replace("hello-svc", "hello-SVC"))
    refused = run_doit(aws_repo, "images", "--provenance", "aws-hello", env=aws_env)
    assert refused.returncode == 2
    assert f"ERROR: {image_id}: its AMIs are tagged with provenance {digest}, but {kept} holds a statement of " \
        "another digest" in refused.output


def test_a_package_version_bump_rebakes_only_the_service(aws_repo: Path, aws_env: dict[str, str]) -> None:
    run_doit(aws_repo, env=aws_env, check=True)
    bump_hello(aws_repo, "1.0.5")

    info = run_doit(aws_repo, "info", "bake:aws-hello", env=aws_env)
    assert info.returncode == 1 and "hello-svc 1.0.4 -> 1.0.5" in info.output
    assert run_doit(aws_repo, "info", "bake:aws-base", env=aws_env).returncode == 0

    run = run_doit(aws_repo, env=aws_env, check=True)
    assert baked(run.output) == ["aws-hello"]
    for region in REGIONS:
        assert len(amis(aws_env, region, "aws-base")) == 1
        newest, older = amis(aws_env, region, "aws-hello")
        assert newest["tags"]["appversion"] == "hello-svc-1.0.5"
    assert run_doit(aws_repo, "info", "bake:aws-hello", env=aws_env).returncode == 0


def test_a_new_upstream_ami_rebakes_base_and_service(aws_repo: Path, aws_env: dict[str, str]) -> None:
    # Amazon publishes a newer Amazon Linux 2 AMI; in moto we register it in this account.
    base_file = aws_repo / "bakes" / "aws-base.toml"
    base_file.write_text(base_file.read_text().replace('owners = ["136693071363"]', 'owners = ["136693071363", "self"]'))
    run_doit(aws_repo, env=aws_env, check=True)
    old_name = amis(aws_env, "us-east-1", "aws-base")[0]["tags"]["base_ami_name"]
    new_source = {
        region: ec2(aws_env, region).register_image(Name="debian-12-amd64-29990101-9999")["ImageId"]
        for region in REGIONS
    }

    info = run_doit(aws_repo, "info", "bake:aws-base", env=aws_env)
    assert info.returncode == 1
    # The source is keyed by what it is (owner/name), the same image in every region.
    assert f"source image 136693071363/{old_name} -> image 123456789012/debian-12-amd64-29990101-9999" in info.output
    assert "its base 'aws-base' will rebake first" in run_doit(aws_repo, "info", "bake:aws-hello", env=aws_env).output

    run = run_doit(aws_repo, env=aws_env, check=True)
    assert baked(run.output) == ["aws-base", "aws-hello"]
    for region in REGIONS:
        base = amis(aws_env, region, "aws-base")[0]
        assert base["tags"]["base_ami_id"] == new_source[region]
        assert amis(aws_env, region, "aws-hello")[0]["tags"]["base_ami_id"] == base["ImageId"]
    assert baked(run_doit(aws_repo, env=aws_env, check=True).output) == []


def test_a_source_image_that_reached_one_region_first_is_baked_there_alone(
    aws_repo: Path, aws_env: dict[str, str]
) -> None:
    """A publisher's newer image shows in us-east-1 before us-west-2: only us-east-1's base and
    service are baked; us-west-2 keeps its images, says so, and prune keeps them as current."""
    base_file = aws_repo / "bakes" / "aws-base.toml"
    base_file.write_text(base_file.read_text().replace('owners = ["136693071363"]', 'owners = ["136693071363", "self"]'))
    hello_file = aws_repo / "bakes" / "aws-hello.toml"
    hello_file.write_text(hello_file.read_text() + '\n[prune]\nkeep = 1\nmin_age = "1h"\n')
    run_doit(aws_repo, env=aws_env, check=True)
    old = {bake: amis(aws_env, "us-west-2", bake)[0]["tags"]["bakehouse:image"] for bake in ("aws-base", "aws-hello")}
    ec2(aws_env, "us-east-1").register_image(Name="debian-12-amd64-29990101-9999")

    plan = json.loads(run_doit(aws_repo, "plan", "--json", env=aws_env).stdout)
    rows = {row["bake"]: row for row in plan["bakes"]}
    for bake in ("aws-base", "aws-hello"):
        parts = [(part["places"], part["action"], part["image"]) for part in rows[bake]["parts"]]
        assert parts == [(["us-east-1"], "bake", None), (["us-west-2"], "keep", old[bake])], parts

    run = run_doit(aws_repo, env=aws_env, check=True)
    assert baked(run.output) == ["aws-base", "aws-hello"]
    assert f"[aws-base] up to date in us-west-2: {old['aws-base']}" in run.output
    assert re.search(r"^\[aws-base\] baking \S+ in us-east-1: source image ", run.output, re.M), run.output
    assert re.search(r"^\[aws-hello\] baked aws-hello-\S+ \(us-east-1: ami-\w+\)$", run.output, re.M), run.output
    new = {bake: amis(aws_env, "us-east-1", bake)[0] for bake in ("aws-base", "aws-hello")}
    assert new["aws-hello"]["tags"]["base_ami_id"] == new["aws-base"]["ImageId"]

    info = run_doit(aws_repo, "info", "bake:aws-hello", env=aws_env)
    assert info.returncode == 0, info.output
    status = re.findall(r"^status: up to date: (\S+) \((\S+):", info.output, re.M)
    assert status == [(new["aws-hello"]["tags"]["bakehouse:image"], "us-east-1"), (old["aws-hello"], "us-west-2")]
    later = datetime.fromisoformat(os.environ["BAKEHOUSE_NOW"]) + timedelta(hours=2)  # past min_age
    moto = {**aws_env, "AWS_ENDPOINT_URL": aws_env["AWS_ENDPOINT_URL_EC2"], "BAKEHOUSE_NOW": later.isoformat()}
    pruned = run_doit(aws_repo, "prune", "aws-hello", env=moto)
    assert "current image of aws-hello in us-west-2" in pruned.output, pruned.output
    assert run_doit(aws_repo, "plan", env=aws_env).returncode == 0


def test_a_service_ami_deleted_in_one_region_is_baked_again_there_alone(aws_repo: Path, aws_env: dict[str, str]) -> None:
    run_doit(aws_repo, env=aws_env, check=True)
    east = amis(aws_env, "us-east-1", "aws-hello")[0]
    lost = amis(aws_env, "us-west-2", "aws-hello")[0]
    ec2(aws_env, "us-west-2").deregister_image(ImageId=lost["ImageId"])

    info = run_doit(aws_repo, "info", "bake:aws-hello", env=aws_env)
    assert info.returncode == 1 and "missing in us-west-2" in info.output

    run = run_doit(aws_repo, env=aws_env, check=True)
    assert baked(run.output) == ["aws-hello"]
    assert "amazon-ebs.us_east_1" not in run.output  # nothing baked where the image exists
    assert [image["ImageId"] for image in amis(aws_env, "us-east-1", "aws-hello")] == [east["ImageId"]]
    again, = amis(aws_env, "us-west-2", "aws-hello")
    assert again["ImageId"] != lost["ImageId"]
    assert again["tags"]["bakehouse:image"] == east["tags"]["bakehouse:image"]  # the same image, complete again
    assert again["Name"] == east["Name"]
    assert baked(run_doit(aws_repo, env=aws_env, check=True).output) == []
    # the run that completed it made a statement about its own AMI; the first AMI keeps its own
    first, completed = provenance_statements(aws_repo, "aws-hello", env=aws_env)
    assert [s["name"] for s in first["subject"]] == [f"us-east-1/{east['ImageId']}", f"us-west-2/{lost['ImageId']}"]
    assert [s["name"] for s in completed["subject"]] == [f"us-west-2/{again['ImageId']}"]
    assert amis(aws_env, "us-east-1", "aws-hello")[0]["tags"]["bakehouse:provenance"] == east["tags"]["bakehouse:provenance"]
    assert again["tags"]["bakehouse:provenance"] != east["tags"]["bakehouse:provenance"]


def test_copy_mode_bakes_once_and_copies(aws_repo: Path, aws_env: dict[str, str]) -> None:
    for name in ("aws-base.toml", "aws-hello.toml"):
        path = aws_repo / "bakes" / name
        path.write_text(path.read_text().replace("provider = ", 'multi_region = "copy"\nprovider = '))
    run = run_doit(aws_repo, env=aws_env, check=True)
    assert baked(run.output) == ["aws-base", "aws-hello"]
    assert "amazon-ebs.us_west_2" not in run.output  # one source block, in us-east-1
    assert re.search(r"\[aws-hello\] step \d+/\d+ copying to us-west-2 \(\d+:\d\d\)", run.output), run.output
    east, west = (amis(aws_env, region, "aws-hello")[0] for region in REGIONS)
    assert east["tags"]["bakehouse:image"] == west["tags"]["bakehouse:image"]
    assert west["tags"]["base_ami_id"] == amis(aws_env, "us-east-1", "aws-base")[0]["ImageId"]  # copied from east
    assert baked(run_doit(aws_repo, env=aws_env, check=True).output) == []
    (statement,) = provenance_statements(aws_repo, "aws-hello", env=aws_env)  # both AMIs, baked on east's base
    assert [s["name"] for s in statement["subject"]] == [f"us-east-1/{east['ImageId']}", f"us-west-2/{west['ImageId']}"]
    assert [dep["name"].split(" in ")[-1] for dep in statement["predicate"]["buildDefinition"]["resolvedDependencies"]
            if dep["name"].startswith("base image ")] == ["us-east-1"]


def test_copy_mode_copies_an_image_to_an_added_region_without_baking(aws_repo: Path, aws_env: dict[str, str]) -> None:
    (aws_repo / "bakes" / "aws-hello.toml").unlink()
    path = aws_repo / "bakes" / "aws-base.toml"
    path.write_text(path.read_text().replace("provider = ", 'multi_region = "copy"\nprovider = ')
                    .replace('regions = ["us-east-1", "us-west-2"]', 'regions = ["us-east-1"]'))
    run_doit(aws_repo, "bake:aws-base", env=aws_env, check=True)
    (east,) = amis(aws_env, "us-east-1", "aws-base")
    path.write_text(path.read_text().replace('regions = ["us-east-1"]', 'regions = ["us-east-1", "us-west-2"]'))
    aws_calls(aws_env)
    run = run_doit(aws_repo, "bake:aws-base", env=aws_env, check=True)
    assert f"[aws-base] copying {east['ImageId']} from us-east-1 to us-west-2" in run.output
    assert "amazon-ebs" not in run.output  # packer did not run: nothing was baked
    (west,) = amis(aws_env, "us-west-2", "aws-base")
    assert west["Name"] == east["Name"] and west["tags"]["bakehouse:image"] == east["tags"]["bakehouse:image"]
    assert west["tags"]["bakehouse:key"] == east["tags"]["bakehouse:key"]
    assert (east,) == tuple(amis(aws_env, "us-east-1", "aws-base"))  # the original stays as it was
    snapshots = [m["Ebs"]["SnapshotId"] for m in west["BlockDeviceMappings"] if "Ebs" in m]
    tagged = ec2(aws_env, "us-west-2").describe_snapshots(SnapshotIds=snapshots)["Snapshots"]
    assert all({t["Key"]: t["Value"] for t in s.get("Tags", [])}.get("bakehouse:image") == east["tags"]["bakehouse:image"]
               for s in tagged)
    assert not any(" RunInstances " in call for call in aws_calls(aws_env))
    assert baked(run_doit(aws_repo, "bake:aws-base", env=aws_env, check=True).output) == []
    _, copied = provenance_statements(aws_repo, "aws-base", env=aws_env)  # the copy says what it was copied from
    (origin,) = (dep for dep in copied["predicate"]["buildDefinition"]["resolvedDependencies"]
                 if dep["name"].endswith(" in us-east-1, copied"))
    assert origin["digest"] == {"awsAmiId": east["ImageId"]}


def test_rebake_forces_the_service_in_every_region(aws_repo: Path, aws_env: dict[str, str]) -> None:
    run_doit(aws_repo, env=aws_env, check=True)
    forced = run_doit(aws_repo, "bake:aws-hello", "--rebake", env=aws_env, check=True)
    assert baked(forced.output) == ["aws-hello"] and "forced (--rebake)" in forced.output
    for region in REGIONS:
        first, second = amis(aws_env, region, "aws-hello")
        assert first["tags"]["bakehouse:key"] == second["tags"]["bakehouse:key"]
        assert first["Name"] != second["Name"]


def test_no_credential_is_written_to_templates_logs_or_records(aws_repo: Path, aws_env: dict[str, str]) -> None:
    run = run_doit(aws_repo, env=aws_env, check=True)
    assert SECRET not in run.output
    written = [path for path in aws_repo.rglob("*") if path.is_file() and "dist" not in path.parts]
    assert any(path.suffix == ".hcl" for path in written) and any(path.suffix == ".log" for path in written)
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path
    for region in REGIONS:
        for image in amis(aws_env, region, "aws-hello") + amis(aws_env, region, "aws-base"):
            assert SECRET not in str(image["tags"])


def test_a_fixed_ami_suffix_never_replaces_another_images_ami(aws_repo: Path, aws_env: dict[str, str]) -> None:
    bake = aws_repo / "bakes" / "aws-base.toml"
    bake.write_text('ami_suffix = "v1"\n' + bake.read_text())
    run_doit(aws_repo, "bake:aws-base", env=aws_env, check=True)
    before = {region: [image["ImageId"] for image in amis(aws_env, region, "aws-base")] for region in REGIONS}
    rebake = run_doit(aws_repo, "bake:aws-base", "--rebake", env=aws_env)
    assert rebake.returncode == 1
    assert "AMI name aws-base-x86_64-v1-bookworm is taken in us-east-1 by ami-" in rebake.output
    assert "change ami_suffix, or remove it" in rebake.output and "Traceback" not in rebake.output
    assert {region: [image["ImageId"] for image in amis(aws_env, region, "aws-base")] for region in REGIONS} == before


def test_an_unreachable_endpoint_is_one_line(aws_repo: Path, aws_env: dict[str, str]) -> None:
    env = {**aws_env, "AWS_ENDPOINT_URL_EC2": "http://127.0.0.1:9", "BAKEHOUSE_AWS_MAX_ATTEMPTS": "1"}
    result = run_doit(aws_repo, "info", "bake:aws-base", env=env)
    assert result.returncode != 0
    assert "cannot reach http://127.0.0.1:9" in result.output and "is it running?" in result.output
    assert "Traceback" not in result.output


def test_missing_credentials_are_one_line(aws_repo: Path, aws_env: dict[str, str]) -> None:
    env = {**aws_env, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    result = run_doit(aws_repo, "bake:aws-base", env=env)
    assert result.returncode == 1
    assert "no AWS credentials found; set AWS_PROFILE, or AWS_ACCESS_KEY_ID" in result.output
    assert "Traceback" not in result.output


def test_base_and_service_bake_in_one_parallel_run(aws_repo: Path, aws_env: dict[str, str]) -> None:
    """`doit -n 2`: the base bakes in one process and the service in another, which must see
    the base's new AMIs although it listed the regions before they existed."""
    run = run_doit(aws_repo, "-n", "2", env=aws_env, check=True)
    assert sorted(baked(run.output)) == ["aws-base", "aws-hello"]
    for region in REGIONS:
        base, = amis(aws_env, region, "aws-base")
        hello, = amis(aws_env, region, "aws-hello")
        assert hello["tags"]["base_ami_id"] == base["ImageId"]
    assert baked(run_doit(aws_repo, "-n", "2", env=aws_env, check=True).output) == []


def test_the_shipped_example_as_it_is_logs_in_over_ssh_and_finds_debian_12(tmp_path: Path, aws_env: dict[str, str]) -> None:
    """The example unchanged (what a real account bakes): its source filter finds Debian's
    image in both regions (tests/test_render.py checks the SSH steps with packer validate)."""
    example = tmp_path / "example"
    shutil.copytree(PROJECT / "examples" / "aws", example, symlinks=False, ignore=shutil.ignore_patterns(".doit.db*"))
    assert all("communicator" not in bake.read_text() for bake in (example / "bakes").glob("*.toml"))
    plan = json.loads(run_doit(example, "plan", "--json", env=aws_env).stdout)
    rows = {row["bake"]: row for row in plan["bakes"]}
    assert rows["aws-base"]["action"] == "bake" and rows["aws-base"]["reasons"] == ["no image yet"]
    assert rows["aws-base"]["key"] and rows["aws-hello"]["reasons"][0] == "its base 'aws-base' will rebake first"


def test_an_ami_baked_without_logging_in_has_a_partial_manifest_of_what_bakehouse_installed(
    aws_repo: Path, aws_env: dict[str, str]
) -> None:
    run_doit(aws_repo, "bake:aws-hello", env=aws_env, check=True)
    shown = json.loads(run_doit(aws_repo, "images", "--packages", "aws-hello", "--json", env=aws_env, check=True).stdout)
    assert shown["complete"] is False and 'communicator = "none"' in shown["note"]
    # what bakehouse installed here, and in the base it builds on
    assert [(p["name"], p["version"]) for p in shown["packages"]] == [("ca-certificates", "(latest)"), ("hello-svc", "1.0.4")]
    ami = amis(aws_env, "us-west-2", "aws-hello")[0]["ImageId"]  # an AMI id names the image too
    text = run_doit(aws_repo, "images", "--packages", ami, env=aws_env, check=True).stdout
    assert "2 packages, partial" in text.splitlines()[0] and "hello-svc" in text
    sbom = json.loads(run_doit(aws_repo, "images", "--sbom", "aws-hello", env=aws_env, check=True).stdout)
    assert sbom["metadata"]["properties"][0]["value"].startswith("partial: ")


def test_tests_on_an_ami_bake_that_logs_in_to_nothing_are_one_line(aws_repo: Path, aws_env: dict[str, str]) -> None:
    hello = aws_repo / "bakes" / "aws-hello.toml"
    hello.write_text(hello.read_text() + 'tests = ["scripts/install-packages.sh"]\n')
    result = run_doit(aws_repo, "plan", env=aws_env)
    assert result.returncode == 3
    assert result.output.strip() == (
        'ERROR: bakes/aws-hello.toml: tests need communicator = "ssh": with "none" nothing runs on the instance'
    )


def test_a_lock_file_keeps_the_source_ami_the_plan_found_and_says_when_it_is_gone(
    aws_repo: Path, aws_env: dict[str, str]
) -> None:
    base_file = aws_repo / "bakes" / "aws-base.toml"
    base_file.write_text(base_file.read_text().replace('owners = ["136693071363"]', 'owners = ["136693071363", "self"]'))
    run_doit(aws_repo, "plan", "--lock", env=aws_env)
    pinned = {region: ec2(aws_env, region).describe_images(Owners=["136693071363"])["Images"][0]["ImageId"] for region in REGIONS}
    assert all(f'{region} = "{ami}"' in (aws_repo / "bakehouse.lock").read_text() for region, ami in pinned.items())
    for region in REGIONS:  # a newer upstream image, published after the plan
        ec2(aws_env, region).register_image(Name="debian-12-amd64-29990101-9999")
    run_doit(aws_repo, env=aws_env, check=True)
    for region in REGIONS:
        assert amis(aws_env, region, "aws-base")[0]["tags"]["base_ami_id"] == pinned[region]

    ec2(aws_env, "us-west-2").deregister_image(ImageId=pinned["us-west-2"])
    plan = run_doit(aws_repo, "plan", env=aws_env)
    assert plan.returncode == 2
    assert (f"aws-base: its source AMI {pinned['us-west-2']} in us-west-2, pinned by bakehouse.lock, can no longer be had "
            "(deregistered?); plan again to move the pin: doit plan --lock") in plan.output


def test_a_lock_file_cannot_pin_a_source_ami_the_bakes_filter_would_not_choose(
    aws_repo: Path, aws_env: dict[str, str]
) -> None:
    run_doit(aws_repo, "plan", "--lock", env=aws_env)
    lock = aws_repo / "bakehouse.lock"
    # An image of another owner (this account, not Debian's) under another name: what a tampered
    # lock file handed to a bake job would make it start from.
    other = ec2(aws_env, "us-east-1").register_image(Name="someone-elses-image")["ImageId"]
    pinned = ec2(aws_env, "us-east-1").describe_images(Owners=["136693071363"])["Images"][0]["ImageId"]
    lock.write_text(lock.read_text().replace(f'us-east-1 = "{pinned}"', f'us-east-1 = "{other}"'))
    result = run_doit(aws_repo, "bake:aws-base", env=aws_env)
    assert result.returncode != 0 and "Traceback" not in result.output, result.output
    assert (f"aws-base: its source AMI {other} in us-east-1, pinned by bakehouse.lock, is not an AMI named "
            "'debian-12-amd64-*' owned by 136693071363 as bakes/aws-base.toml asks; plan again to move the pin: "
            "doit plan --lock") in result.output, result.output
    assert amis(aws_env, "us-east-1", "aws-base") == []


def running_instances(env: dict[str, str], region: str) -> list[str]:
    client = ec2(env, region)
    return [instance["InstanceId"] for reservation in client.describe_instances()["Reservations"]
            for instance in reservation["Instances"] if instance["State"]["Name"] in ("pending", "running")]


@pytest.mark.parametrize("on_error", ["cleanup", "abort"])
def test_a_failed_ami_bake_leaves_its_build_instance_only_when_asked(aws_repo: Path, aws_env: dict[str, str], on_error: str) -> None:
    """moto stands in for AWS (no AWS account here); packer's amazon-ebs runs for real, and
    fails after its instance is up (a provisioner of the repository's own template exits 1)."""
    template = own_template(aws_repo, "amazon-ebs.pkr.hcl.j2").read_text()
    failing = re.sub(r"(\n  sources = [^\n]+\n)", r'\1  provisioner "shell-local" {\n'
                     r'    inline = ["echo bakehouse-test: failing on purpose", "exit 1"]\n  }\n', template, count=1)
    write(aws_repo / "templates" / "amazon-ebs.pkr.hcl.j2", failing)
    run = run_doit(aws_repo, "bake:aws-base", env={**aws_env, "BAKEHOUSE_ON_ERROR": on_error})
    assert run.returncode != 0 and "bakehouse-test: failing on purpose" in run.output
    left = "BAKEHOUSE_ON_ERROR=abort: packer left what the failed build made"
    left_running = {region: len(running_instances(aws_env, region)) for region in REGIONS}
    if on_error == "abort":
        assert left in run.output and left_running == {region: 1 for region in REGIONS}, run.output
    else:
        assert left not in run.output and left_running == {region: 0 for region in REGIONS}, run.output
    assert [amis(aws_env, region, "aws-base") for region in REGIONS] == [[], []]  # nothing recorded either way


def test_an_unknown_on_error_value_is_one_line(aws_repo: Path, aws_env: dict[str, str]) -> None:
    run = run_doit(aws_repo, "bake:aws-base", env={**aws_env, "BAKEHOUSE_ON_ERROR": "ask"})
    assert run.returncode != 0
    assert "BAKEHOUSE_ON_ERROR='ask': give cleanup (the default) or abort (leave what a failed build made, to look at it)" in run.output
    assert "Traceback" not in run.output
