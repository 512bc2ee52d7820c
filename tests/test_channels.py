"""Channels on local images: `doit promote`, `doit rollback`, `doit channels`, kept in the image
store with their history; two promotions at once both land; `doit prune` keeps what a channel
points at and its next rollback targets; `BAKE@CHANNEL` names an image."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

from helpers import records, run_doit


def bake_again(repo: Path) -> str:
    run_doit(repo, "bake:base", "--rebake", check=True)
    return records(repo, "base")[0]["image_id"]


def another_image(repo: Path) -> str:
    """A newer image of base in the store: the newest one's layout and record copied under a
    new id, as a rebake of the same inputs would record it (these tests move pointers between
    images; what is inside them is the same). Saves the suite a bake per image."""
    newest = records(repo, "base")[0]
    n = len(records(repo, "base")) + 1
    image_id = f"{newest['image_id'].rsplit('-', 1)[0]}-{n:08x}"[:60]
    state = repo / ".bakehouse"
    layout = state / "images" / "base" / image_id
    shutil.copytree(state / newest["locations"]["local"], layout, symlinks=True)
    index = json.loads((layout / "index.json").read_text())  # a new image is on no channel yet
    index["manifests"] = [entry for entry in index["manifests"] if "dev.bakehouse.channel" not in entry.get("annotations", {})]
    (layout / "index.json").write_text(json.dumps(index))
    created = datetime.fromisoformat(newest["created"]) + timedelta(seconds=1)
    record = {**newest, "image_id": image_id, "created": created.isoformat(), "sequence": newest["sequence"] + 1,
              "locations": {"local": f"images/base/{image_id}"}}
    (state / "records" / "base" / f"{image_id}.json").write_text(json.dumps(record, indent=2))
    packages = state / "records" / "base" / f"{newest['image_id']}.packages"
    if packages.is_file():
        text = json.loads(packages.read_text())
        (state / "records" / "base" / f"{image_id}.packages").write_text(json.dumps({**text, "image_id": image_id}))
    return image_id


def layout_tags(repo: Path, image_id: str) -> list[str]:
    """The names index.json gives the image's layout: its bake's, and each channel's on it."""
    index = json.loads((repo / ".bakehouse" / "images" / "base" / image_id / "index.json").read_text())
    return sorted(entry["annotations"]["org.opencontainers.image.ref.name"] for entry in index["manifests"]
                  if "org.opencontainers.image.ref.name" in entry.get("annotations", {}))


def inspect_digest(reference: str) -> str:
    return subprocess.run(["skopeo", "inspect", "--format", "{{.Digest}}", reference],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_promote_and_rollback_move_a_channel_and_keep_its_history(repo: Path) -> None:
    first = records(repo, "base")[0]["image_id"]
    assert run_doit(repo, "promote", "base", "stable", "--note", "tested").output == f"base@stable: nothing -> {first}\n"
    second = another_image(repo)
    listed = run_doit(repo, "channels", "base", check=True).output
    assert re.search(rf"^base +latest +{second} ", listed, re.M) and re.search(rf"^base +stable +{first} ", listed, re.M)
    assert f"promote   {first}  by " in listed and ": tested" in listed  # its history, with the note
    assert run_doit(repo, "promote", "base", "stable").output == f"base@stable: {first} -> {second}\n"  # default: latest
    assert run_doit(repo, "promote", "base", "stable", second).output == f"base@stable already points at {second}\n"
    third = another_image(repo)
    run_doit(repo, "promote", "base", "stable", "base@latest", check=True)
    assert layout_tags(repo, third) == ["base", "stable"]
    assert run_doit(repo, "rollback", "base", "stable").output == f"base@stable: {third} -> {second} (rolled back)\n"
    assert layout_tags(repo, third) == ["base"] and layout_tags(repo, second) == ["base", "stable"]
    assert run_doit(repo, "rollback", "base", "stable").output == f"base@stable: {second} -> {first} (rolled back)\n"
    failed = run_doit(repo, "rollback", "base", "stable")
    assert failed.returncode == 2
    assert failed.output == f"ERROR: channel stable has pointed at {first} only: there is nothing before it to roll back to\n"
    history = json.loads(run_doit(repo, "channels", "--json", "base", check=True).stdout)["bakes"][0]["channels"]
    stable = next(channel for channel in history if channel["channel"] == "stable")
    assert [(move["action"], move["image"]) for move in stable["history"]] == [
        ("promote", first), ("promote", second), ("promote", third), ("rollback", second), ("rollback", first)]
    assert stable["image"] == first and stable["locations"] == {"local": f"images/base/{first}"}
    # the layout is tagged with its channel: what skopeo reads as oci:LAYOUT:stable is the image
    layout = repo / ".bakehouse" / stable["locations"]["local"]
    digest = json.loads(run_doit(repo, "images", "--json", "base", check=True).stdout)["base"][-1]["digest"]
    assert inspect_digest(f"oci:{layout}:stable") == inspect_digest(f"oci:{layout}:base") == digest
    images = run_doit(repo, "images", "base", check=True).output
    assert re.search(rf"^  {first} .*\n .* channels: stable$", images, re.M), images
    assert re.search(rf"^  {third} .*\n .* channels: latest$", images, re.M), images
    assert f"channels: latest {third}, candidate (nothing), stable {first}\n" in run_doit(repo, "info", "bake:base").output
    # BAKE@CHANNEL names an image wherever an image is named
    assert run_doit(repo, "images", "--packages", "base@stable", check=True).output.startswith(f"{first} (base)")


def test_what_a_channel_cannot_do_is_one_line(repo: Path) -> None:
    assert run_doit(repo, "promote", "base", "latest").output == (
        "ERROR: base: channel latest is the newest image, moved by each bake; it cannot be moved by hand\n")
    assert run_doit(repo, "promote", "base", "stabel").output == (
        "ERROR: base: no channel 'stabel'; its channels are candidate, stable (declare others with channels = [...] "
        "in its bake file)\n")
    assert run_doit(repo, "promote", "bsae", "stable").output == "ERROR: no bake 'bsae' in bakes/ (did you mean 'base'?)\n"
    assert run_doit(repo, "promote", "base", "stable", "hello@latest").output == (
        "ERROR: hello has no image yet; bake it: doit bake:hello\n")
    assert run_doit(repo, "images", "--packages", "base@stable").output == "ERROR: base@stable points at nothing\n"
    bake = repo / "bakes" / "base.toml"
    bake.write_text('channels = ["prod", "latest"]\n' + bake.read_text())
    plan = run_doit(repo, "plan")
    assert plan.returncode == 3 and plan.output.strip().endswith(
        "bakes/base.toml: channels: latest is always there (the newest image); leave it out"), plan.output


def test_two_promotions_at_once_both_land(repo: Path) -> None:
    """Each is recorded only if no other move came first; the one that loses reads again and
    records after it, so the history holds both and neither is lost."""
    first = records(repo, "base")[0]["image_id"]
    second = another_image(repo)
    for _ in range(3):
        runs = [subprocess.Popen([sys.executable, "-m", "doit", "promote", "base", "candidate", image],
                                 cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for image in (first, second)]
        outputs = [run.communicate(timeout=60)[0] for run in runs]
        assert all(run.returncode == 0 for run in runs), outputs
    history = json.loads(run_doit(repo, "channels", "--json", "base", check=True).stdout)["bakes"][0]["channels"]
    candidate = next(channel for channel in history if channel["channel"] == "candidate")
    moved = [move["image"] for move in candidate["history"]]
    assert len(moved) >= 2 and set(moved) == {first, second}  # a promotion to where it already points moves nothing
    assert all(a != b for a, b in zip(moved, moved[1:])) and candidate["image"] == moved[-1]


def test_prune_keeps_what_a_channel_points_at_and_its_rollback_targets(repo: Path) -> None:
    images = [records(repo, "base")[0]["image_id"]]
    images += [another_image(repo) for _ in range(4)]  # five images, oldest first
    for image in images[:3]:
        run_doit(repo, "promote", "base", "stable", image, check=True)
    (repo / "bakehouse.toml").write_text('[prune]\nkeep = 1\nmin_age = "1m"\n')
    plan = json.loads(run_doit(repo, "prune", "--json", env={"BAKEHOUSE_NOW": "2027-01-01T00:00:00Z"}).stdout)
    rows = {row["image"]: row for row in plan["images"]}
    assert rows[images[2]]["action"] == "keep" and "channel stable" in rows[images[2]]["why"]
    for target in images[:2]:
        assert rows[target]["action"] == "keep" and "rollback target of stable" in rows[target]["why"], rows[target]
    assert rows[images[3]]["action"] == "delete", rows[images[3]]
    (repo / "bakehouse.toml").write_text('[prune]\nkeep = 1\nmin_age = "1m"\nrollback_targets = 1\n')
    plan = json.loads(run_doit(repo, "prune", "--json", env={"BAKEHOUSE_NOW": "2027-01-01T00:00:00Z"}).stdout)
    rows = {row["image"]: row for row in plan["images"]}
    assert [rows[image]["action"] for image in images] == ["delete", "keep", "keep", "delete", "keep"], rows


def test_a_service_on_a_channel_of_its_base_rebakes_only_when_the_channel_moves(repo: Path) -> None:
    first = records(repo, "base")[0]["image_id"]
    hello = repo / "bakes" / "hello.toml"
    hello.write_text(hello.read_text().replace('base = "base"', 'base = { bake = "base", channel = "stable" }'))
    plan = run_doit(repo, "plan")
    assert plan.returncode == 2 and ("bakes/hello.toml: base: channel stable of base points at nothing; promote an "
                                     "image first: doit promote base stable") in plan.output, plan.output
    run_doit(repo, "promote", "base", "stable", check=True)
    run_doit(repo, check=True)
    assert records(repo, "hello")[0]["base_image"] == first

    second = bake_again(repo)  # the weekly base rebuild lands in latest: the service stays as it is
    plan = run_doit(repo, "plan")
    assert plan.returncode == 0 and re.search(r"^hello +keep ", plan.output, re.M), plan.output
    run_doit(repo, check=True)
    assert records(repo, "hello")[0]["base_image"] == first

    run_doit(repo, "promote", "base", "stable", check=True)  # tested, and promoted: now it rebakes
    plan = run_doit(repo, "plan")
    assert re.search(rf"^hello +bake +\S+ +base channel stable: {first} -> {second}$", plan.output, re.M), plan.output
    assert f"base channel stable: {first} -> {second}" in run_doit(repo).output
    assert records(repo, "hello")[0]["base_image"] == second
    assert run_doit(repo, "plan").returncode == 0


def test_the_bake_service_lists_channels_and_moves_them_with_its_token(repo: Path) -> None:
    from test_serve import TOKEN, start_server, stop

    first = records(repo, "base")[0]["image_id"]
    second = another_image(repo)
    server = start_server(repo, env={"BAKEHOUSE_SERVE_TOKEN": TOKEN})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        assert server.request("POST", "/promote/base/stable")[:2] == (
            401, {"error": "moving a channel needs the server's token: Authorization: Bearer <token>"})
        status, answer, _ = server.request("POST", "/promote/base/stable", {"image": first, "note": "from the page"},
                                           headers=auth)
        assert (status, answer["image"], answer["before"], answer["moved"]) == (200, first, None, True), answer
        status, answer, _ = server.request("POST", "/promote/base/stable", headers=auth)  # default: latest
        assert (status, answer["image"], answer["before"]) == (200, second, first), answer
        status, answer, _ = server.request("POST", "/rollback/base/stable", headers=auth)
        assert (status, answer["image"]) == (200, first), answer
        assert server.request("POST", "/promote/base/latest", headers=auth)[:2] == (400, {
            "error": "base: channel latest is the newest image, moved by each bake; it cannot be moved by hand"})
        assert server.request("POST", "/promote/nope/stable", headers=auth)[:2] == (404, {"error": "no bake 'nope' in bakes/"})
        assert server.request("POST", "/promote/base/stable", raw=b"{not json", headers=auth)[0] == 400
        shown = {row["bake"]: row for row in server.get("/channels")["bakes"]}
        stable = next(channel for channel in shown["base"]["channels"] if channel["channel"] == "stable")
        assert stable["image"] == first and [move["note"] for move in stable["history"]] == ["from the page", "", ""]
    finally:
        stop(server)


def test_the_page_shows_channels_and_promotes_from_a_button(repo: Path) -> None:
    """In a real browser (Debian's chromium, headless, through chromium-driver)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from test_serve import browser, start_server, stop

    newest = records(repo, "base")[0]["image_id"]
    server = start_server(repo)
    driver = browser()
    try:
        driver.get(f"http://127.0.0.1:{server.port}/")
        stable = "#channels tr[data-bake=base][data-channel=stable]"

        def cells() -> list[str] | None:  # read in one step: the table is redrawn when the channels change
            return driver.execute_script("const tr = document.querySelector(arguments[0]);"
                                         "return tr && [...tr.querySelectorAll('td')].map(td => td.textContent);", stable)

        WebDriverWait(driver, 30).until(lambda _: cells())
        shown = cells()
        assert shown is not None and shown[:3] == ["base", "stable", "(nothing)"] and shown[4] == "never moved"
        latest = "#channels tr[data-bake=base][data-channel=latest]"
        assert not driver.find_elements(By.CSS_SELECTOR, latest + " button")  # latest moves with each bake only
        driver.find_element(By.CSS_SELECTOR, stable + " button.promote-button").click()
        WebDriverWait(driver, 30).until(lambda _: driver.find_element(By.ID, "result").text
                                        == f"base@stable: nothing -> {newest}")
        WebDriverWait(driver, 30).until(lambda _: (cells() or [""] * 3)[2] == newest)
        listed = {row["bake"]: row for row in server.get("/channels")["bakes"]}
        assert next(c for c in listed["base"]["channels"] if c["channel"] == "stable")["image"] == newest
    finally:
        driver.quit()
        stop(server)


def test_a_spinnaker_base_label_selects_a_base_channel_only_where_the_repository_maps_it(repo: Path) -> None:
    """Rosco sends base_label "release" by default: unmapped, it changes nothing; mapped in
    bakehouse.toml, the service is baked on that channel of its base."""
    from test_serve import JENKINS_BODY, poll, start_server, stop

    first = records(repo, "base")[0]["image_id"]
    run_doit(repo, "promote", "base", "stable", check=True)
    second = bake_again(repo)  # the newest base; stable still points at the first
    server = start_server(repo)
    try:
        body = {**JENKINS_BODY, "region": "us-west-2", "base_label": "release"}
        status, answer, _ = server.request("POST", "/api/v1/us-west-2/bake", body)
        assert status == 200 and poll(server, answer["id"])["result"] == "SUCCESS", answer
        assert records(repo, "hello")[0]["base_image"] == second  # release maps to nothing: the base as it is

        (repo / "bakehouse.toml").write_text('[spinnaker]\nbase_labels = { release = "stable" }\n')
        status, answer, _ = server.request("POST", "/api/v1/us-west-2/bake", body)
        assert status == 200 and poll(server, answer["id"])["result"] == "SUCCESS", answer
        assert records(repo, "hello")[0]["base_image"] == first  # built on base@stable

        (repo / "bakehouse.toml").write_text('[spinnaker]\nbase_labels = { release = "prod" }\n')
        status, answer, _ = server.request("POST", "/api/v1/us-west-2/bake", body)
        assert status == 400 and "base_label 'release' selects channel prod, which base does not have" in str(answer), answer
    finally:
        stop(server)
