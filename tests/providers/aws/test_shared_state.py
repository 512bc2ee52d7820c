"""Many runners, one truth: the shared lock on S3 (providers/aws/shared.py), with several real
`doit` processes as runners, each in its own clone (nothing shared but AWS), against moto's
S3 and EC2 on 127.0.0.1 (there is no AWS account here). moto's conditional writes are made
atomic by the test launcher, as S3's are (tests/moto_ec2.py)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import hashlib
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3

from helpers import amis, own_template, provenance_statements, run_doit, start_fault_proxy, wait_until

BUCKET = "bakery-state"


def shared_env(aws_env: dict[str, str]) -> dict[str, str]:
    """moto serves S3 (and Auto Scaling, which `doit images` and prune ask) too."""
    moto = aws_env["AWS_ENDPOINT_URL_EC2"]
    return {**aws_env, "AWS_ENDPOINT_URL_S3": moto, "AWS_ENDPOINT_URL": moto}


def s3(env: dict[str, str]):  # type: ignore[no-untyped-def]
    return boto3.client("s3", region_name="us-east-1", endpoint_url=env["AWS_ENDPOINT_URL_S3"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def runners(aws_repo: Path, count: int, lease: str = "3s", bucket: str = BUCKET) -> list[Path]:
    """`count` clones of the repository, as CI runners have them, sharing state on S3."""
    (aws_repo / "bakehouse.toml").write_text(f'[shared]\ns3 = "s3://{bucket}/state"\nregion = "us-east-1"\nlease = "{lease}"\n')
    clones = []
    for number in range(1, count + 1):
        clone = aws_repo.parent / f"runner-{number}"
        shutil.copytree(aws_repo, clone)
        clones.append(clone)
    return clones


def start(repo: Path, env: dict[str, str], name: str, *args: str) -> subprocess.Popen[str]:
    log = (repo / "runner.log").open("w")
    return subprocess.Popen([sys.executable, "-m", "doit", *args], cwd=repo, text=True, stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, **env, "BAKEHOUSE_RUNNER": name},
                            start_new_session=True)


def output(repo: Path) -> str:
    return (repo / "runner.log").read_text()


@contextmanager
def stalled_after_packer(repo: Path, env: dict[str, str], tmp_path: Path, target: str) -> Iterator[subprocess.Popen[str]]:
    """Runner A's `doit TARGET`, its statement's upload held (packer is done, its instance
    gone) and the runner stopped there (SIGSTOP, a paused VM); when the block ends it resumes,
    is waited for, and the fault proxy in front of S3 is stopped by its own pid."""
    events = tmp_path / "faults.jsonl"
    proxy, url = start_fault_proxy(env["AWS_ENDPOINT_URL_S3"], {"faults": [
        {"s3": "PutObject", "path": "provenance", "hold_seconds": 1}]}, events)
    process = start(repo, {**env, "AWS_ENDPOINT_URL_S3": url}, "runner-a", target)
    try:
        wait_until(lambda: events.exists() and '"held"' in events.read_text(), seconds=120)
        os.killpg(process.pid, signal.SIGSTOP)
        yield process
    finally:
        os.killpg(process.pid, signal.SIGCONT)
        process.wait(timeout=300)
        proxy.kill()
        proxy.wait(timeout=10)


def test_one_bake_started_on_three_runners_at_once_bakes_once_and_all_finish_with_its_ami(
    aws_repo: Path, aws_env: dict[str, str]
) -> None:
    env = shared_env(aws_env)
    s3(env).create_bucket(Bucket=BUCKET)
    clones = runners(aws_repo, 3, lease="20s")  # long: no renewal may miss on a loaded machine
    processes = [start(clone, env, f"runner-{n}", "bake:aws-base") for n, clone in enumerate(clones, 1)]
    for process in processes:
        assert process.wait(timeout=300) == 0, "\n".join(output(clone) for clone in clones)
    texts = [output(clone) for clone in clones]
    assert sum("[aws-base] baked " in text for text in texts) == 1, texts
    ids = {re.search(r"\[aws-base\] (?:baked|up to date:) (aws-base-\S+)", text)[1] for text in texts}  # type: ignore[index]
    assert len(ids) == 1, texts
    assert not any("expired" in text for text in texts), texts
    assert any("waiting: aws-base is being baked by runner-" in text for text in texts), texts
    for region in ("us-east-1", "us-west-2"):
        assert len(amis(env, region, "aws-base")) == 1
    assert s3(env).list_objects_v2(Bucket=BUCKET, Prefix="state/locks/").get("KeyCount") == 0  # released


def test_a_killed_runner_s_lease_expires_and_the_next_runner_bakes_one_image(aws_repo: Path, aws_env: dict[str, str]) -> None:
    env = shared_env(aws_env)
    s3(env).create_bucket(Bucket=BUCKET)
    first, second = runners(aws_repo, 2, lease="4s")
    doomed = start(first, env, "runner-7", "bake:aws-base")
    wait_until(lambda: "[aws-base] baking " in output(first), seconds=120)
    os.killpg(doomed.pid, signal.SIGKILL)  # a lost machine: no clean-up, no release
    doomed.wait(timeout=30)
    assert s3(env).list_objects_v2(Bucket=BUCKET, Prefix="state/locks/")["KeyCount"] == 1  # the lease stays
    result = run_doit(second, "bake:aws-base", env={**env, "BAKEHOUSE_RUNNER": "runner-8"}, check=True)
    assert re.search(r"lock of aws-base held by runner-7 since \d\d:\d\d:\d\dZ expired; baking", result.output), result.output
    for region in ("us-east-1", "us-west-2"):
        assert len(amis(env, region, "aws-base")) == 1


def test_a_bucket_that_does_not_exist_is_one_line_and_bakes_nothing(aws_repo: Path, aws_env: dict[str, str]) -> None:
    env = shared_env(aws_env)
    (clone,) = runners(aws_repo, 1, bucket="no-such-bucket")
    result = run_doit(clone, "bake:aws-base", env=env)
    assert result.returncode != 0
    assert "bakehouse.toml: shared.s3: the bucket no-such-bucket does not exist" in result.output
    assert "Traceback" not in result.output
    assert amis(env, "us-east-1", "aws-base") == []


def test_an_endpoint_that_refuses_connections_is_one_line(aws_repo: Path, aws_env: dict[str, str]) -> None:
    env = {**shared_env(aws_env), "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9", "BAKEHOUSE_AWS_MAX_ATTEMPTS": "2"}
    (clone,) = runners(aws_repo, 1)
    result = run_doit(clone, "bake:aws-base", env=env)
    assert result.returncode != 0 and "Traceback" not in result.output
    assert re.search(r"AWS S3 HeadBucket bakery-state in us-east-1: cannot reach http://127\.0\.0\.1:9", result.output), result.output
    assert amis(env, "us-east-1", "aws-base") == []


def test_bad_shared_settings_are_one_line(aws_repo: Path, aws_env: dict[str, str]) -> None:
    (aws_repo / "bakehouse.toml").write_text('[shared]\ns3 = "bakery-state/state"\n')
    result = run_doit(aws_repo, "plan", env=shared_env(aws_env))
    assert "bakehouse.toml: shared.s3 must be s3://BUCKET/PREFIX (got 'bakery-state/state')" in result.output
    assert "Traceback" not in result.output
    (aws_repo / "bakehouse.toml").write_text('[shared]\ns3 = "s3://bakery-state/state"\nlease = "99999999999999m"\n')
    result = run_doit(aws_repo, "plan", env=shared_env(aws_env))
    assert "bakehouse.toml: shared.lease must be from 3s to 60m, not '99999999999999m'" in result.output, result.output
    assert "Traceback" not in result.output


def test_every_runner_reads_a_bake_s_log_and_manifest_and_a_failed_bake_leaves_its_log_and_no_image(
    aws_repo: Path, aws_env: dict[str, str]
) -> None:
    env = shared_env(aws_env)
    s3(env).create_bucket(Bucket=BUCKET)
    baker, other = runners(aws_repo, 2)
    run_doit(baker, "bake:aws-base", env=env, check=True)
    image = amis(env, "us-east-1", "aws-base")[0]
    tags = {tag["Key"]: tag["Value"] for tag in image["Tags"]}
    image_id = tags["bakehouse:image"]
    assert tags["bakehouse:log"] == f"s3://{BUCKET}/state/logs/aws-base/{image_id}.log"
    # another runner, which baked nothing: the log, the catalogue and the manifest
    log = run_doit(other, "log", "aws-base", env=env)
    assert log.returncode == 0 and "amazon-ebs" in log.stdout and "Builds finished" in log.stdout
    assert f"log: s3://{BUCKET}/state/logs/aws-base/{image_id}.log" in run_doit(other, "images", env=env, check=True).stdout
    assert "ca-certificates" in run_doit(other, "images", "--packages", "aws-base", env=env, check=True).stdout
    # ...and its provenance, kept on S3 under the SHA256 its AMIs are tagged with
    digest = tags["bakehouse:provenance"]
    stored = s3(env).get_object(Bucket=BUCKET, Key=f"state/logs/aws-base/{image_id}.provenance-{digest[7:19]}.json")
    assert "sha256:" + hashlib.sha256(stored["Body"].read()).hexdigest() == digest
    (statement,) = provenance_statements(other, "aws-base", env=env)
    assert [subject["digest"]["awsAmiId"] for subject in statement["subject"]] == [
        amis(env, region, "aws-base")[0]["ImageId"] for region in ("us-east-1", "us-west-2")]

    template = own_template(other, "amazon-ebs.pkr.hcl.j2")
    template.write_text(template.read_text().replace('{% if aws.communicator == "ssh" %}', (
        '  provisioner "shell-local" {\n    inline = ["echo the image check failed on this runner", "exit 1"]\n  }\n'
        '{% if aws.communicator == "ssh" %}'), 1))
    failed = run_doit(other, "bake:aws-base", env={**env, "BAKEHOUSE_RUNNER": "runner-2"})
    assert failed.returncode != 0
    assert len(amis(env, "us-east-1", "aws-base")) == 1  # nothing recorded
    # the first runner reads the failure's log, as anyone would
    shown = run_doit(baker, "log", "--failed", "aws-base", env=env)
    assert shown.returncode == 0, shown.output
    assert "the image check failed on this runner" in shown.stdout
    assert "packer exited 1" in shown.output


def test_a_runner_that_waited_on_a_holder_that_failed_bakes_itself(
    aws_repo: Path, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """runner-1 bakes the same inputs (the same key, so the same lease) through a proxy that
    keeps its AMIs pending, so its bake times out (a timeout is not content) and fails."""
    env = shared_env(aws_env)
    s3(env).create_bucket(Bucket=BUCKET)
    failing, waiting = runners(aws_repo, 2, lease="6s")  # renewed every 2 s: a stall of 4 s is allowed
    base = failing / "bakes" / "aws-base.toml"
    base.write_text('timeout = "13s"\n' + base.read_text())
    proxy, url = start_fault_proxy(env["AWS_ENDPOINT_URL_EC2"], {"pending_seconds": 120}, tmp_path / "events.jsonl")
    try:
        doomed = start(failing, {**env, "AWS_ENDPOINT_URL_EC2": url}, "runner-1", "bake:aws-base")
        wait_until(lambda: "[aws-base] baking " in output(failing), seconds=120)
        result = run_doit(waiting, "bake:aws-base", env={**env, "BAKEHOUSE_RUNNER": "runner-2"}, check=True)
        assert doomed.wait(timeout=120) != 0 and "timed out after 13s" in output(failing)
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
    assert "waiting: aws-base is being baked by runner-1" in result.output
    assert "expired" not in result.output  # runner-1 held a 6 s lease for 13 s: its renewals kept it
    assert "[aws-base] baked " in result.output
    for region in ("us-east-1", "us-west-2"):
        assert len(amis(env, region, "aws-base")) == 1


def test_prune_deletes_an_image_s_files_on_s3_with_its_amis(aws_repo: Path, aws_env: dict[str, str]) -> None:
    env = shared_env(aws_env)
    s3(env).create_bucket(Bucket=BUCKET)
    (clone,) = runners(aws_repo, 1)
    run_doit(clone, "bake:aws-base", env=env, check=True)
    first = amis(env, "us-east-1", "aws-base")[0]
    old = {tag["Key"]: tag["Value"] for tag in first["Tags"]}["bakehouse:image"]
    (clone / "bakes" / "aws-base.toml").write_text((clone / "bakes" / "aws-base.toml").read_text() + "\n[prune]\nkeep = 1\nmin_age = \"0h\"\n")
    run_doit(clone, "bake:aws-base", "--rebake", env=env, check=True)
    keys = lambda: {item["Key"] for item in s3(env).list_objects_v2(Bucket=BUCKET, Prefix="state/").get("Contents", [])}  # noqa: E731
    assert f"state/logs/aws-base/{old}.log" in keys()
    assert any(key.startswith(f"state/logs/aws-base/{old}.provenance-") for key in keys())
    pruned = subprocess.run([sys.executable, "-m", "doit", "prune", "--apply", "aws-base"], cwd=clone, text=True,
                            capture_output=True, env={**os.environ, **env})
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert f"s3://{BUCKET}/state/logs/aws-base/{old}.log" in pruned.stdout + pruned.stderr
    assert not any(old in key for key in keys()) and len(amis(env, "us-east-1", "aws-base")) == 1


def test_bakehouse_toml_holds_retention_and_shared_state_and_refuses_a_misspelt_table(
    aws_repo: Path, aws_env: dict[str, str]
) -> None:
    env = shared_env(aws_env)
    s3(env).create_bucket(Bucket=BUCKET)
    (aws_repo / "bakehouse.toml").write_text(
        f'[prune]\nkeep = 3\n\n[shared]\ns3 = "s3://{BUCKET}/state"\nregion = "us-east-1"\n')
    assert run_doit(aws_repo, "plan", env=env).returncode == 1  # plans: both tables are read
    (aws_repo / "bakehouse.toml").write_text(f'[sahred]\ns3 = "s3://{BUCKET}/state"\n')
    result = run_doit(aws_repo, "plan", env=env)
    assert "bakehouse.toml: unknown key 'sahred' (did you mean 'shared'?)" in result.output, result.output


def test_a_bake_whose_provenance_cannot_be_stored_fails_and_leaves_no_image(
    aws_repo: Path, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """S3 fails every PUT of the provenance statement, past the retries: the bake fails, and
    no AMI of it passes for the image (every runner would call it up to date and the
    statement would never be stored). The next bake, with S3 well again, bakes it whole."""
    env = shared_env(aws_env)
    s3(env).create_bucket(Bucket=BUCKET)
    (clone,) = runners(aws_repo, 1, lease="20s")
    proxy, url = start_fault_proxy(env["AWS_ENDPOINT_URL_S3"], {"faults": [
        {"s3": "PutObject", "path": "provenance", "code": "InternalError"}]}, tmp_path / "faults.jsonl")
    try:
        failed = run_doit(clone, "bake:aws-base", env={**env, "AWS_ENDPOINT_URL_S3": url, "BAKEHOUSE_AWS_MAX_ATTEMPTS": "2"})
    finally:
        proxy.kill()
        proxy.wait(timeout=10)
    assert failed.returncode != 0, failed.output
    assert "InternalError" in failed.output and "made by the bake that failed" in failed.output, failed.output
    for region in ("us-east-1", "us-west-2"):
        assert amis(env, region, "aws-base") == [], region  # deregistered: none can pass for the image
    plan = run_doit(clone, "plan", "aws-base", env=env)
    assert plan.returncode == 1 and "no image yet" in plan.output, plan.output

    again = run_doit(clone, "bake:aws-base", env=env, check=True)
    (image_id,) = re.findall(r"\[aws-base\] baked (aws-base-\S+)", again.output)
    assert provenance_statements(clone, image_id, env=env)  # stored, and matching its tag
    assert run_doit(clone, "plan", "aws-base", env=env).returncode == 0


def test_a_stalled_runner_that_lost_its_lease_records_nothing_and_removes_what_it_made(
    aws_repo: Path, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """Runner A is paused (a VM pause, a long GC: SIGSTOP) past its lease after packer made its
    AMIs and before they count (while it stores its provenance statement: a proxy in front of
    S3 says when); runner B takes over, bakes, records and releases; A resumes. One key, one
    image: A finds its lease gone, records nothing and deregisters its AMIs."""
    env = shared_env(aws_env)
    s3(env).create_bucket(Bucket=BUCKET)
    first, second = runners(aws_repo, 2, lease="4s")
    with stalled_after_packer(first, env, tmp_path, "bake:aws-base") as stalled:
        taken = run_doit(second, "bake:aws-base", env={**env, "BAKEHOUSE_RUNNER": "runner-b"}, check=True)
        assert "held by runner-a" in taken.output and "[aws-base] baked " in taken.output, taken.output
    code = stalled.returncode
    assert code != 0, output(first)
    assert "lost the shared lock" in output(first), output(first)
    assert "[aws-base] baked " not in output(first), output(first)
    (image_id,) = re.findall(r"\[aws-base\] baked (aws-base-\S+)", taken.output)
    for region in ("us-east-1", "us-west-2"):
        found = amis(env, region, "aws-base")
        assert [ami["tags"]["bakehouse:image"] for ami in found] == [image_id], (region, found)
    assert run_doit(first, "plan", "aws-base", env=env).returncode == 0


def test_prune_on_one_runner_keeps_the_base_a_bake_on_another_runner_builds_on(
    aws_repo: Path, aws_env: dict[str, str], tmp_path: Path
) -> None:
    """Runner A bakes aws-hello on the first base and is held after packer (its instance gone,
    so no instance protects the base); runner B rebakes the base and prunes it to one image.
    The base A builds on is kept, because A's lease names it; once A is done, it may go."""
    env = shared_env(aws_env)
    s3(env).create_bucket(Bucket=BUCKET)
    first, second = runners(aws_repo, 2, lease="60s")  # long: A is stopped a while, and must keep it
    run_doit(first, "bake:aws-base", env=env, check=True)
    (old_base,) = {ami["tags"]["bakehouse:image"] for ami in amis(env, "us-east-1", "aws-base")}
    later = {"BAKEHOUSE_NOW": "2030-01-01T00:00:00+00:00"}  # every image past min_age
    with stalled_after_packer(first, env, tmp_path, "bake:aws-hello") as running:
        bake_file = second / "bakes" / "aws-base.toml"
        bake_file.write_text(bake_file.read_text() + '\n[prune]\nkeep = 1\nmin_age = "1h"\n')
        run_doit(second, "bake:aws-base", "--rebake", env={**env, "BAKEHOUSE_RUNNER": "runner-b"}, check=True)
        pruned = run_doit(second, "prune", "--apply", "aws-base", env={**env, **later, "BAKEHOUSE_RUNNER": "runner-b"})
        assert pruned.returncode == 0, pruned.output
        assert re.search(rf"^aws-base\s+{old_base}\s.*keep\s+base of the running bake of aws-hello on runner-a$",
                         pruned.output, re.M), pruned.output
        assert old_base in {ami["tags"]["bakehouse:image"] for ami in amis(env, "us-east-1", "aws-base")}
    code = running.returncode
    assert code == 0, output(first)
    assert "[aws-hello] baked " in output(first), output(first)
    # A is done and its lease gone: the old base is kept now as the base of aws-hello's image.
    pruned = run_doit(second, "prune", "aws-base", env={**env, **later, "BAKEHOUSE_RUNNER": "runner-b"})
    assert pruned.returncode == 0, pruned.output
    assert re.search(rf"^aws-base\s+{old_base}\s.*keep\s+base of aws-hello-\S+$", pruned.output, re.M), pruned.output
    assert s3(env).list_objects_v2(Bucket=BUCKET, Prefix="state/locks/").get("KeyCount") == 0
