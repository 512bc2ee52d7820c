"""Cancellation, failures, timeouts, concurrent runs: a bake is recorded whole or not at all.

Real processes and real signals: doit runs in its own process group as a terminal runs it,
and the test sends SIGINT to that group (Ctrl-C) or SIGTERM to doit alone (a CI cancel)."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from helpers import (
    own_template,
    HeldInstalls, wait_until, Running, amis, ec2, processes_mentioning, records, run_doit, slow_postinst, write,
)

INTERRUPTED = (130, -signal.SIGINT)  # a shell shows both as 130


def hello_images(repo: Path) -> list[str]:
    folder = repo / ".bakehouse" / "images" / "hello"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "sighup"])
def test_a_cancelled_bake_stops_packer_records_nothing_and_keeps_what_finished(repo: Path, tmp_path: Path, how: str) -> None:
    """The base rebakes first (and is kept) in the Ctrl-C case; the other signals reach the
    same cancellation, so they cancel the service alone (a base bake is 10 s)."""
    base_first = how == "ctrl-c"
    if base_first:
        script = own_template(repo, "scripts/local-base.sh")
        script.write_text(script.read_text() + "# edited: base rebakes first\n")
    slow_postinst(repo, 60)
    bases_before = len(records(repo, "base"))
    scratch = tmp_path / "scratch"  # where the service bake unpacks (else /dev/shm, shared by other tests)
    scratch.mkdir()

    run = Running(repo, "bake:hello", env={"BAKEHOUSE_SCRATCH": str(scratch)})
    run.wait_for("local-service: installing")
    if how == "ctrl-c":
        os.killpg(run.process.pid, signal.SIGINT)
    else:  # a CI job cancelled, a terminal closed: the signal reaches doit alone
        os.kill(run.process.pid, signal.SIGTERM if how == "sigterm" else signal.SIGHUP)
    code = run.finish(seconds=30)

    assert code in INTERRUPTED, run.output
    assert "[hello] cancelled: asking packer to clean up" in run.output
    assert "bakehouse: cancelled" in run.output
    assert "Traceback" not in run.output
    assert records(repo, "hello") == [] and hello_images(repo) == []
    assert len(records(repo, "base")) == bases_before + base_first  # finished before the cancel: kept
    assert sorted(path.name for path in scratch.iterdir()) == []
    assert processes_mentioning(str(repo)) == []

    slow_postinst(repo, 0)
    assert re.findall(r"^\[(\w+)\] baked", run_doit(repo, check=True).output, re.M) == ["hello"]


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_cancelled_base_bake_leaves_no_scratch_mount_or_process(repo: Path, tmp_path: Path, how: str) -> None:
    """Cancelled while mmdebstrap works: it unmounts /proc, /sys, /dev/pts and the host's
    /dev/shm from its scratch root and removes it (and its keyring dir) before the run ends."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    run = Running(repo, "bake:base", "--rebake", env={"TMPDIR": str(scratch)})
    run.wait_for("I: downloading packages with apt")  # mmdebstrap's own line: its scratch exists
    if how == "ctrl-c":
        os.killpg(run.process.pid, signal.SIGINT)
    else:
        os.kill(run.process.pid, signal.SIGTERM)
    assert run.finish(seconds=150) in INTERRUPTED, run.output
    assert [line for line in Path("/proc/mounts").read_text().splitlines() if str(scratch) in line] == []
    assert sorted(path.name for path in scratch.iterdir()) == []
    assert processes_mentioning(str(repo)) == [] and processes_mentioning(str(scratch)) == []
    assert len(records(repo, "base")) == 1  # the session's base only: nothing recorded


def test_a_killed_run_cancels_packer_and_the_next_run_cleans_up_and_bakes(repo: Path, tmp_path: Path) -> None:
    """SIGKILL leaves doit no chance to cancel anything: the kernel cancels packer, and packer
    holds the bake's lock until it has cleaned up, so the rerun never bakes beside it."""
    installs = HeldInstalls(repo, tmp_path / "scratch")
    run = Running(repo, "bake:hello", env=installs.env)
    installs.wait_until_held(1)
    os.kill(run.process.pid, signal.SIGKILL)
    run.finish(seconds=30)
    # packer is cancelled by the kernel even though its install is still held (so it has
    # written nothing, and no broken pipe could have stopped it)
    wait_until(lambda: not [p for p in processes_mentioning(str(repo / "build")) if "packer" in p])
    # What a run killed between packing and recording leaves: a complete image, no record.
    stray = repo / ".bakehouse" / "images" / "hello" / "hello-20261201T000000Z-0123abcd"
    write(stray / "index.json", '{"note": "an image whose bake was killed before it was recorded"}\n')
    rerun = Running(repo, "bake:hello", env=installs.env)
    installs.release()  # the orphan's install, if packer had not stopped it yet
    installs.wait_until_held(1)
    installs.release()  # the rerun's own
    assert rerun.finish(seconds=120) == 0, rerun.output
    assert f"[hello] removed {stray.relative_to(repo)}, left by a bake that never finished" in rerun.output
    (record,) = records(repo, "hello")
    assert hello_images(repo) == [record["image_id"]]  # no partial layout beside it
    assert processes_mentioning(str(repo)) == []
    # the killed bake's overlay of its base is unmounted, and its scratch removed
    assert [m for m in Path("/proc/mounts").read_text().splitlines() if str(tmp_path) in m] == []
    assert list(installs.scratch.iterdir()) == []


def test_a_bake_past_its_timeout_is_cancelled_and_says_so(repo: Path) -> None:
    bake = repo / "bakes" / "hello.toml"
    bake.write_text('timeout = "3s"\n' + bake.read_text())
    slow_postinst(repo, 60)
    run = run_doit(repo, "bake:hello")
    assert run.returncode == 1
    assert "hello: timed out after 3s (the bake's timeout) and was cancelled; full log: " in run.output
    assert records(repo, "hello") == [] and hello_images(repo) == []
    assert processes_mentioning(str(repo)) == []


def test_two_runs_of_one_bake_bake_it_once(repo: Path, tmp_path: Path) -> None:
    installs = HeldInstalls(repo, tmp_path / "scratch")
    first = Running(repo, "bake:hello", env=installs.env)
    installs.wait_until_held(1)
    second = Running(repo, "bake:hello", env=installs.env)
    second.wait_for("waiting: hello is being baked by pid")
    installs.release()
    assert first.finish() == 0 and second.finish() == 0, first.output + second.output
    assert len(records(repo, "hello")) == 1
    image = records(repo, "hello")[0]["image_id"]
    assert f"[hello] up to date: {image} (baked by the run we waited for)" in second.output


def test_two_different_bakes_run_in_parallel(repo: Path, tmp_path: Path) -> None:
    write(repo / "bakes" / "hello2.toml", (repo / "bakes" / "hello.toml").read_text())
    installs = HeldInstalls(repo, tmp_path / "scratch")
    one = Running(repo, "bake:hello", env=installs.env)
    two = Running(repo, "bake:hello2", env=installs.env)
    installs.wait_until_held(2)  # both are installing at the same time: neither waited
    installs.release()
    assert one.finish() == 0 and two.finish() == 0, one.output + two.output
    assert "waiting" not in one.output + two.output
    assert len(records(repo, "hello")) == 1 and len(records(repo, "hello2")) == 1


def test_a_failure_leaves_independent_bakes_to_continue(repo: Path) -> None:
    write(repo / "bakes" / "broken.toml", """\
        template = "local-service.pkr.hcl.j2"
        base = "base"
        packages = ["jq"]
        """)  # named, so apt must install it, and the tiny base has no apt: packer fails
    run = run_doit(repo, "--continue")
    assert run.returncode in (1, 2)  # 2: doit also reports the `bake` group as unmet
    assert "apt-get: not found" in run.output or "install-packages:" in run.output
    assert "[broken] packer failed; last lines:" in run.output
    assert re.findall(r"^\[(\w+)\] baked", run.output, re.M) == ["hello"]
    assert records(repo, "broken") == []


def test_a_template_without_a_manifest_records_nothing(repo: Path) -> None:
    template = own_template(repo, "local-service.pkr.hcl.j2").read_text()
    without = re.sub(r'\n    post-processor "manifest" \{.*?\n    \}', "", template, flags=re.S)
    assert "manifest" not in without.split("post-processors")[1]
    write(repo / "templates" / "no-manifest.pkr.hcl.j2", without)
    bake = repo / "bakes" / "hello.toml"
    bake.write_text(bake.read_text().replace("local-service.pkr.hcl.j2", "no-manifest.pkr.hcl.j2"))
    run = run_doit(repo, "bake:hello")
    assert run.returncode == 1
    assert "hello: packer succeeded but wrote no manifest at" in run.output
    assert records(repo, "hello") == [] and hello_images(repo) == []


def test_an_undefined_template_value_is_one_line(repo: Path) -> None:
    template = own_template(repo, "local-service.pkr.hcl.j2")
    template.write_text(template.read_text() + "# {{ vars.region | hcl }}\n")
    run = run_doit(repo, "bake:hello")
    assert run.returncode == 1
    assert ("templates/local-service.pkr.hcl.j2: undefined template value: "
            "'dict object' has no attribute 'region'") in run.output
    assert "Traceback" not in run.output
    assert records(repo, "hello") == []


def test_a_corrupt_registry_record_is_named(repo: Path) -> None:
    (record,) = (repo / ".bakehouse" / "records" / "base").glob("*.json")
    record.write_text('{"image_id": "base-1", "bake"')
    for command in (("bake:hello",), ("plan",)):
        run = run_doit(repo, *command)
        assert run.returncode in (1, 2)
        assert f"{record}: corrupt image record" in run.output and "delete it" in run.output
        assert "Traceback" not in run.output


def test_a_cancelled_ami_bake_leaves_no_instance_key_pair_group_or_ami(aws_repo: Path, aws_env: dict[str, str]) -> None:
    """moto stands in for AWS (no AWS account here); packer's amazon-ebs runs for real."""
    run_doit(aws_repo, "bake:aws-base", env=aws_env, check=True)
    # A template that waits once the instances are up, so the cancel lands mid-bake.
    template = own_template(aws_repo, "amazon-ebs.pkr.hcl.j2").read_text()
    slow = re.sub(r"(\n  sources = [^\n]+\n)", r'\1  provisioner "shell-local" {\n'
                  r'    inline = ["echo bakehouse-test: instances are up", "sleep 60"]\n  }\n', template, count=1)
    write(aws_repo / "templates" / "amazon-ebs-slow.pkr.hcl.j2", slow)
    bake = aws_repo / "bakes" / "aws-hello.toml"
    bake.write_text(bake.read_text().replace('"amazon-ebs.pkr.hcl.j2"', '"amazon-ebs-slow.pkr.hcl.j2"'))
    clients = {region: ec2(aws_env, region) for region in ("us-east-1", "us-west-2")}
    groups_before = {r: {g["GroupId"] for g in c.describe_security_groups()["SecurityGroups"]} for r, c in clients.items()}

    run = Running(aws_repo, "bake:aws-hello", env=aws_env)
    run.wait_for("bakehouse-test: instances are up")
    assert any(
        instance["State"]["Name"] in ("pending", "running")
        for c in clients.values() for r in c.describe_instances()["Reservations"] for instance in r["Instances"]
    )
    os.killpg(run.process.pid, signal.SIGINT)
    # packer gets up to 2 minutes to clean up (packer.CLEANUP_GRACE_SECONDS), polling AWS as
    # it does in a real account: a busy machine can take a while, and that is within bounds.
    assert run.finish(seconds=180) in INTERRUPTED, run.output

    for region, client in clients.items():
        states = [i["State"]["Name"] for r in client.describe_instances()["Reservations"] for i in r["Instances"]]
        assert set(states) <= {"terminated", "shutting-down"}, (region, states)
        assert [k["KeyName"] for k in client.describe_key_pairs()["KeyPairs"] if k["KeyName"].startswith("packer")] == []
        assert {g["GroupId"] for g in client.describe_security_groups()["SecurityGroups"]} == groups_before[region]
        assert amis(aws_env, region, "aws-hello") == []
    assert processes_mentioning(str(aws_repo)) == []
