"""Revocation of local images: `doit revoke` (with --cascade, --dry-run, --only, --at) and
`doit restore`. A revoked image is marked in the store, is never `latest` nor current, moves
the channels on it back, and a service built on it rebakes on the next `doit`; what users see
(plan rows, `doit images`, `doit channels`, exit codes) is what is checked."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from helpers import records, run_doit
from test_channels import another_image, layout_tags


def channel(repo: Path, bake: str, name: str) -> str | None:
    shown = json.loads(run_doit(repo, "channels", "--json", bake, check=True).stdout)["bakes"][0]["channels"]
    return next(found["image"] for found in shown if found["channel"] == name)


def plan_rows(repo: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    plan = run_doit(repo, "plan", env=env)
    return {line.split()[0]: line for line in plan.output.splitlines()[1:-1] if line.strip()}


def test_revoking_a_base_with_cascade_moves_channels_back_and_the_next_run_rebakes(repo: Path) -> None:
    run_doit(repo, check=True)  # hello, on base
    base, hello = records(repo, "base")[0]["image_id"], records(repo, "hello")[0]["image_id"]
    run_doit(repo, "promote", "base", "stable", check=True)
    run_doit(repo, "promote", "hello", "stable", check=True)

    dry = run_doit(repo, "revoke", "base", "--cascade", "--dry-run", "--reason", "CVE-2026-0001 in busybox", check=True)
    assert dry.output == (f"would revoke {base} (base): CVE-2026-0001 in busybox  [on stable]\n"
                          f"would revoke {hello} (hello): CVE-2026-0001 in busybox (built on {base})  [on stable]\n"
                          "2 images would be revoked; nothing changed (--dry-run)\n")
    assert "REVOKED" not in run_doit(repo, "images", check=True).output and channel(repo, "base", "stable") == base

    revoked = run_doit(repo, "revoke", "base@stable", "--cascade", "--reason", "CVE-2026-0001 in busybox", check=True)
    assert revoked.output.splitlines() == [
        f"revoked {base} (base): CVE-2026-0001 in busybox",
        f"revoked {hello} (hello): CVE-2026-0001 in busybox (built on {base})",
        f"WARNING: base@stable now points at nothing: {base} was revoked and no image before it is usable; "
        "promote one: doit promote base stable IMAGE",
        f"WARNING: hello@stable now points at nothing: {hello} was revoked and no image before it is usable; "
        "promote one: doit promote hello stable IMAGE",
    ]
    images = run_doit(repo, "images", check=True).output
    assert re.search(rf"^  {base} .*\n.*\n +REVOKED: CVE-2026-0001 in busybox \(by \S+ at ", images, re.M), images
    assert channel(repo, "base", "stable") is None and channel(repo, "base", "latest") is None
    rows = plan_rows(repo)
    assert re.search(rf"^base +bake +- +image {base} revoked \(CVE-2026-0001 in busybox\)$", rows["base"]), rows
    assert rows["hello"].endswith(f"base image {base} revoked (CVE-2026-0001 in busybox); its base 'base' will rebake first"), rows
    refused = run_doit(repo, "promote", "base", "stable", base)
    assert refused.returncode == 2 and refused.output == (
        f"ERROR: {base} is revoked (CVE-2026-0001 in busybox): no channel may point at it "
        f"(doit restore {base} takes the revocation back)\n")

    run_doit(repo, check=True)  # rebakes both, on a new base image
    new_base, new_hello = records(repo, "base")[0], records(repo, "hello")[0]
    assert new_base["image_id"] != base and new_hello["base_image"] == new_base["image_id"]
    assert plan_rows(repo)["hello"].split()[1] == "keep"

    restored = run_doit(repo, "restore", base, "--cascade", check=True).output
    assert restored.startswith(f"restored {base} (base); its channels stay where they are") and f"restored {hello}" in restored
    assert "REVOKED" not in run_doit(repo, "images", check=True).output
    assert run_doit(repo, "restore", base).output == f"ERROR: {base} is not revoked\n"


def test_a_service_on_a_revoked_base_says_so_and_rebakes_on_the_base_in_use(repo: Path) -> None:
    first = records(repo, "base")[0]["image_id"]
    second = another_image(repo)  # a newer base image of the same inputs: base stays up to date
    run_doit(repo, check=True)  # hello, on base's newest
    assert records(repo, "hello")[0]["base_image"] == second
    run_doit(repo, "revoke", second, "--reason", "bad disk", check=True)  # not cascaded: hello is not revoked
    rows = plan_rows(repo)
    assert rows["base"].split()[1] == "keep" and first in rows["base"], rows  # latest is the one before it again
    # the bake's image in use, wherever a bake names one, is not the revoked image
    assert run_doit(repo, "images", "--packages", "base", check=True).output.startswith(f"{first} (base)")
    assert re.search(rf"^hello +bake +\S+ +base image {second} revoked \(bad disk\)$", rows["hello"]), rows
    run_doit(repo, check=True)
    assert records(repo, "hello")[0]["base_image"] == first
    assert plan_rows(repo)["hello"].split()[1] == "keep"


def test_an_embargo_keeps_an_image_off_the_named_channels_only(repo: Path) -> None:
    first = records(repo, "base")[0]["image_id"]
    second = another_image(repo)
    run_doit(repo, "promote", "base", "stable", first, check=True)
    run_doit(repo, "promote", "base", "stable", second, check=True)
    run_doit(repo, "promote", "base", "candidate", second, check=True)
    moved = run_doit(repo, "revoke", second, "--only", "stable", "--reason", "not for production", check=True).output
    assert moved.splitlines() == [f"revoked {second} (base) on stable: not for production",
                                  f"base@stable: {second} -> {first} ({second} revoked)"]
    assert channel(repo, "base", "candidate") == second and channel(repo, "base", "latest") == second
    refused = run_doit(repo, "promote", "base", "stable", second)
    assert refused.returncode == 2 and f"{second} is revoked on stable (not for production)" in refused.output
    assert plan_rows(repo)["base"].split()[1] == "keep"
    images = run_doit(repo, "images", "base", check=True).output
    assert "REVOKED on stable: not for production" in images, images


def test_a_revocation_at_a_later_time_takes_effect_then(repo: Path) -> None:
    first = records(repo, "base")[0]["image_id"]
    second = another_image(repo)
    run_doit(repo, "promote", "base", "stable", first, check=True)
    run_doit(repo, "promote", "base", "stable", second, check=True)
    # an hour ahead, and a clock two hours ahead: within the base's rebuild_every week but for
    # the last hours of a Sunday (then the base is stale too, and the run also rebakes it)
    at = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    said = run_doit(repo, "revoke", second, "--at", at, "--reason", "end of support", check=True)
    assert said.output.splitlines() == [f"revoked {second} (base) from {at}: end of support",
                                        f"in effect from {at}: channels on it move when it takes effect "
                                        "(the next doit run)"]
    assert channel(repo, "base", "stable") == second and plan_rows(repo)["base"].split()[1] == "keep"
    assert f"TO BE REVOKED at {at}: end of support" in run_doit(repo, "images", "base", check=True).output
    later = {"BAKEHOUSE_NOW": (datetime.now(UTC) + timedelta(hours=2)).isoformat()}
    shown = json.loads(run_doit(repo, "channels", "--json", "base", env=later, check=True).stdout)["bakes"][0]["channels"]
    assert {found["channel"]: found["image"] for found in shown}["stable"] == first  # read past the revoked image
    assert layout_tags(repo, second) == ["base", "stable"]  # recorded where it was put, until a run moves it
    run = run_doit(repo, "bake:base", env=later, check=True).output  # the run records the move, and says so
    assert f"base@stable: {second} -> {first} ({second} revoked)" in run, run
    assert layout_tags(repo, second) == ["base"] and layout_tags(repo, first) == ["base", "stable"]
    assert f"base@stable: {second} -> {first}" not in run_doit(repo, "bake:base", env=later, check=True).output


def test_what_a_revocation_cannot_be_is_one_line(repo: Path) -> None:
    first = records(repo, "base")[0]["image_id"]
    cases = {
        ("revoke", first): 'ERROR: say why: --reason "..." (it is shown wherever the image is)\n',
        ("revoke", first, "--reason", "x", "--at", "soon"): (
            "ERROR: --at takes an ISO 8601 time (2026-12-31T00:00Z) or a duration from now (\"7d\", \"12h\"), not 'soon'\n"),
        ("revoke", first, "--reason", "x", "--only", "prod"): (
            "ERROR: --only prod: base has no such channel; its channels are candidate, stable "
            "(latest cannot be embargoed: revoke the image)\n"),
        ("revoke", "nope", "--reason", "x"): "ERROR: no bake or image 'nope'; `doit images` lists them\n",
        ("revoke", first, "--reason", "x" * 300): "ERROR: --reason is 300 characters; at most 256 are kept (an AMI tag's size)\n",
    }
    for argv, expected in cases.items():
        said = run_doit(repo, *argv)
        assert (said.returncode, said.output) == (2, expected), (argv, said.output)
    assert run_doit(repo, "revoke").returncode == 3
    assert "REVOKED" not in run_doit(repo, "images", check=True).output


def test_prune_deletes_a_revoked_image_after_revoked_min_age_whatever_keep_says(repo: Path) -> None:
    first = records(repo, "base")[0]["image_id"]
    second = another_image(repo)
    run_doit(repo, "revoke", second, "--reason", "broken", check=True)
    revoked_at = json.loads(run_doit(repo, "images", "--json", "base", check=True).stdout)["base"][0]["revoked"]["at"]
    soon = {"BAKEHOUSE_NOW": revoked_at.replace("Z", "+00:00")[:11] + "23:59:59+00:00"}  # later that day: < 1d
    rows = {row["image"]: row for row in json.loads(run_doit(repo, "prune", "--json", env=soon, check=True).stdout)["images"]}
    assert rows[second]["action"] == "keep" and rows[second]["why"] == ["revoked less than 1d ago"], rows[second]
    later = {"BAKEHOUSE_NOW": "2030-01-01T00:00:00Z"}
    rows = {row["image"]: row for row in json.loads(run_doit(repo, "prune", "--json", env=later, check=True).stdout)["images"]}
    assert rows[second]["action"] == "delete" and rows[second]["why"][0].startswith("revoked ") \
        and rows[second]["why"][0].endswith(" ago (broken)"), rows[second]
    assert rows[first]["action"] == "keep"  # the newest image that is not revoked, current again
    (repo / "bakehouse.toml").write_text('[prune]\nrevoked_min_age = "soon"\n')
    bad = run_doit(repo, "prune")
    assert bad.returncode != 0 and "prune.revoked_min_age: 'soon' is not a duration" in bad.output, bad.output


def test_a_promotion_racing_a_revocation_never_leaves_the_channel_on_the_revoked_image(repo: Path) -> None:
    """However the two interleave (promote checks the mark after the move lands; revoke moves
    channels after the mark), the channel ends off the revoked image: its history replayed
    (the layout's channel tag, which follows the recorded moves) and as commands read it."""
    first = records(repo, "base")[0]["image_id"]
    run_doit(repo, "promote", "base", "stable", first, check=True)
    for round in range(3):
        image = another_image(repo)
        runs = [subprocess.Popen([sys.executable, "-m", "doit", *argv], cwd=repo, env=os.environ.copy(),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for argv in (("promote", "base", "stable", image), ("revoke", image, "--reason", f"race {round}"))]
        said = [run.communicate(timeout=120)[0] for run in runs]
        assert runs[1].returncode == 0, said[1]
        assert runs[0].returncode in (0, 2), said[0]  # refused, or moved and then moved back
        assert "stable" not in layout_tags(repo, image), (round, said)
        assert channel(repo, "base", "stable") == first, (round, said)


def test_the_bake_service_shows_a_revoked_image_and_why(repo: Path) -> None:
    from test_serve import start_server, stop

    first = records(repo, "base")[0]["image_id"]
    second = another_image(repo)
    run_doit(repo, "revoke", second, "--reason", "bad disk", env={"BAKEHOUSE_USER": "ci"}, check=True)
    server = start_server(repo)
    try:
        status, listed, _ = server.request("GET", "/amis/base")
        assert status == 200
        shown = {image["image_id"]: image.get("revoked") for image in listed["images"]}
        assert shown[first] is None and shown[second]["reason"] == "bad disk" and shown[second]["by"] == "ci", shown
        status, every, _ = server.request("GET", "/amis")  # the image in use is never a revoked one
        base = next(row for row in every["bakes"] if row["bake"] == "base")
        assert base["image"]["image_id"] == first, base
    finally:
        stop(server)
