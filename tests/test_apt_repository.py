"""Package versions from a Debian repository: a real signed repository served on 127.0.0.1."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from apt_repository import AptRepository
from helpers import build_hello_deb, image_file, installed_version, records, run_doit, write


def repository_bake(url: str, keyring: str = "../repository.gpg", packages: str = '["hello-svc"]') -> str:
    return f"""\
template = "local-service.pkr.hcl.j2"
base = "base"

[[repository]]
url = "{url}"
suite = "stable"
components = ["main"]
signed_by = "{keyring}"
packages = {packages}
"""


@pytest.fixture
def apt(repo: Path) -> Iterator[AptRepository]:
    repository = AptRepository(repo.parent / "apt")
    repository.publish(build_hello_deb(repo, "1.0.4", repo.parent))
    repository.serve()
    yield repository
    repository.stop()


@pytest.fixture
def apt_repo(repo: Path, apt: AptRepository) -> Path:
    """The test repository with hello and hello2 taking hello-svc from the apt repository."""
    (repo / "bakes" / "hello.toml").unlink()
    write(repo / "bakes" / "hello.toml", repository_bake(apt.url))
    write(repo / "bakes" / "hello2.toml", repository_bake(apt.url))
    return repo


def plan_json(repo: Path) -> dict:
    result = run_doit(repo, "plan", "--json")
    return json.loads(result.output)


def test_a_published_version_drives_exactly_one_rebake_per_bake_that_uses_it(apt_repo: Path, apt: AptRepository) -> None:
    first = run_doit(apt_repo, check=True)
    assert sorted(re.findall(r"^\[(\w+)\] baked ", first.output, re.M)) == ["hello", "hello2"]
    assert records(apt_repo, "hello")[0]["packages"] == {"hello-svc": "1.0.4"}
    assert apt.requests("InRelease") == 1  # one index fetch for the run, not one per bake

    apt.publish(build_hello_deb(apt_repo, "1.0.5", apt_repo.parent))
    table = run_doit(apt_repo, "plan")
    assert table.returncode == 1
    assert re.search(r"^hello\s+bake\s+hello-\S+\s+hello-svc 1\.0\.4 -> 1\.0\.5$", table.output, re.M)

    run = run_doit(apt_repo, check=True)
    assert sorted(re.findall(r"^\[(\w+)\] baked ", run.output, re.M)) == ["hello", "hello2"]
    newest = records(apt_repo, "hello")[0]
    assert newest["packages"] == {"hello-svc": "1.0.5"}
    assert installed_version(image_file(apt_repo, newest), "hello-svc") == "1.0.5"
    assert run_doit(apt_repo, "plan").returncode == 0


def test_a_package_missing_from_the_repository_is_one_line(apt_repo: Path, apt: AptRepository) -> None:
    write(apt_repo / "bakes" / "hello2.toml", repository_bake(apt.url, packages='["hello-svc", "goodbye-svc"]'))
    run = run_doit(apt_repo, "bake:hello2")
    assert run.returncode == 1
    assert f"bakes/hello2.toml: repository: goodbye-svc is not in {apt.url} stable main (amd64)" in run.output
    assert "Traceback" not in run.output
    plan = plan_json(apt_repo)
    assert [row["action"] for row in plan["bakes"]] == ["keep", "bake", "error"]
    assert plan["exit"] == 2


def test_index_entries_without_the_fields_a_download_needs_are_left_out(apt_repo: Path, apt: AptRepository) -> None:
    apt.extra_entries = (
        b"\nPackage: hello-svc\nVersion: 9.9\nArchitecture: all\n"  # no Filename, no SHA256
        b"\nPackage: odd-svc\nVersion: 1.0\nArchitecture: all\nFilename: pool/main/odd.deb\n"
        b"SHA256: 00\nSize: lots\n"
    )
    apt.publish(build_hello_deb(apt_repo, "1.0.5", apt_repo.parent))
    plan = plan_json(apt_repo)
    rows = {row["bake"]: row for row in plan["bakes"]}
    assert rows["hello"]["reasons"] == ["no image yet"] and rows["hello"]["error"] is None
    run = run_doit(apt_repo, "bake:hello", check=True)
    assert records(apt_repo, "hello")[0]["packages"] == {"hello-svc": "1.0.5"}
    write(apt_repo / "bakes" / "hello2.toml", repository_bake(apt.url, packages='["odd-svc"]'))
    run = run_doit(apt_repo, "plan")
    assert run.returncode == 2 and "Traceback" not in run.output
    assert f"repository: odd-svc is not in {apt.url} stable main (amd64)" in run.output


def test_an_unreachable_repository_is_one_line(apt_repo: Path) -> None:
    write(apt_repo / "bakes" / "hello2.toml", repository_bake("http://127.0.0.1:9"))
    run = run_doit(apt_repo, "bake:hello2")
    assert run.returncode == 1
    assert "cannot fetch http://127.0.0.1:9/dists/stable/InRelease" in run.output
    assert "Traceback" not in run.output


def test_a_repository_signed_by_another_key_is_refused(apt_repo: Path, apt: AptRepository) -> None:
    other = AptRepository(apt_repo.parent / "other")  # a second, unrelated signing key
    other.stop()
    write(apt_repo / "bakes" / "hello2.toml", repository_bake(apt.url, keyring="../other.gpg"))
    (apt_repo.parent / "other.gpg").write_bytes(other.keyring.read_bytes())
    run = run_doit(apt_repo, "bake:hello2")
    assert run.returncode == 1
    assert "InRelease: signature check with" in run.output
    assert not (apt_repo / ".bakehouse" / "records" / "hello2").exists()


def test_a_lock_file_written_before_an_update_is_published_still_bakes_the_old_version(
    apt_repo: Path, apt: AptRepository
) -> None:
    locked = run_doit(apt_repo, "plan", "--lock")
    assert locked.returncode == 1 and "wrote bakehouse.lock: 2 pinned inputs" in locked.output
    lock = (apt_repo / "bakehouse.lock").read_text()
    assert '[bakes.hello.packages.hello-svc]\nversion = "1.0.4"' in lock
    apt.publish(build_hello_deb(apt_repo, "1.0.5", apt_repo.parent))
    reads = apt.requests("InRelease")
    run_doit(apt_repo, check=True)  # as a bake job of the fan-out runs it, lock in hand
    assert records(apt_repo, "hello")[0]["packages"] == {"hello-svc": "1.0.4"}
    assert installed_version(image_file(apt_repo, records(apt_repo, "hello")[0]), "hello-svc") == "1.0.4"
    assert apt.requests("InRelease") == reads  # pinned: the repository's index is not even read
    assert run_doit(apt_repo, "plan").returncode == 0

    (apt_repo / "bakehouse.lock").unlink()  # without the pins, the update is seen
    assert re.search(r"^hello\s+bake\s+\S+\s+hello-svc 1\.0\.4 -> 1\.0\.5$", run_doit(apt_repo, "plan").output, re.M)


def test_a_pinned_package_that_can_no_longer_be_had_is_one_line(apt_repo: Path, apt: AptRepository) -> None:
    run_doit(apt_repo, "plan", "--lock")
    for deb in apt.pool.glob("hello-svc_1.0.4_*.deb"):
        deb.unlink()  # gone from the repository, and never fetched here
    result = run_doit(apt_repo, "bake:hello")
    assert result.returncode != 0 and "Traceback" not in result.output
    assert "hello: hello-svc 1.0.4, pinned by bakehouse.lock, can no longer be had (cannot fetch " in result.output
    assert records(apt_repo, "hello") == []
    # it failed before packer ran: its log says why (there is no packer output to show)
    log = run_doit(apt_repo, "log", "--failed", "hello")
    assert log.returncode == 0, log.output
    assert re.search(r"^hello: the bake of hello-\S+ failed before packer ran: hello: hello-svc 1\.0\.4, pinned by ",
                     log.stdout, re.M)


def test_a_damaged_lock_file_is_one_line(apt_repo: Path) -> None:
    (apt_repo / "bakehouse.lock").write_text("version = 7\n")
    result = run_doit(apt_repo, "plan")
    assert result.returncode == 3
    assert "bakehouse.lock: not a bakehouse lock file (version 7, not 2); delete it or write it again: doit plan --lock" in result.output


def write_pin(repo: Path, pin: dict, repository: dict, version: int = 2) -> None:
    (repo / "bakehouse.lock").write_text(
        f"version = {version}\n[bakes.hello.packages.hello-svc]\n"
        + "".join(f"{key} = {json.dumps(text)}\n" for key, text in pin.items())
        + "repository = {" + ", ".join(f"{key} = {json.dumps(text)}" for key, text in repository.items()) + "}\n")


@pytest.mark.parametrize(("field", "value", "error"), [
    ("version", "1.0;rm -rf", "bakehouse.lock: bake hello: packages: hello-svc='1.0;rm -rf': not a Debian version"),
    ("sha256", "not-hex", "bakehouse.lock: bake hello: packages: hello-svc: sha256 'not-hex' is not 64 hex digits"),
    ("url", "file:///etc/passwd", "bakehouse.lock: bake hello: packages: hello-svc: url 'file:///etc/passwd' is not an http(s) URL"),
    ("url", "http://evil.example/hello-svc_1.0.4-1_all.deb",
     "bakehouse.lock: bake hello: packages: hello-svc: url 'http://evil.example/hello-svc_1.0.4-1_all.deb' is not in "
     "its repository http://127.0.0.1:1"),
    ("key", "none", "bakehouse.lock: bake hello: packages: hello-svc: repository key 'none' is neither 'trusted' nor "
     "sha256:<64 hex digits>"),
])
def test_a_lock_file_pin_is_checked_before_anything_runs(apt_repo: Path, field: str, value: str, error: str) -> None:
    pin = {"version": "1.0.4-1", "sha256": "0" * 64, "url": "http://127.0.0.1:1/pool/hello-svc_1.0.4-1_all.deb"}
    repository = {"url": "http://127.0.0.1:1", "suite": "stable", "key": "trusted"}
    (repository if field == "key" else pin)[field] = value
    write_pin(apt_repo, pin, repository)
    result = run_doit(apt_repo, "plan")
    assert result.returncode == 3, result.output
    assert error in result.output and "Traceback" not in result.output, result.output


def test_a_lock_file_cannot_swap_the_repository_a_bake_takes_a_package_from(apt_repo: Path, apt: AptRepository) -> None:
    run_doit(apt_repo, "plan", "--lock")
    lock = (apt_repo / "bakehouse.lock").read_text()
    assert f'[bakes.hello.packages.hello-svc.repository]\nurl = "{apt.url}"\nsuite = "stable"\nkey = "sha256:' in lock
    # Another repository's package, unsigned: what a tampered lock file would hand a bake job.
    evil = {"url": "http://evil.example/debian", "suite": "stable", "key": "trusted"}
    write_pin(apt_repo, {"version": "1.0.4", "sha256": "0" * 64,
                         "url": "http://evil.example/debian/pool/hello-svc_1.0.4_all.deb"}, evil)
    result = run_doit(apt_repo, "bake:hello")
    assert result.returncode != 0 and "Traceback" not in result.output, result.output
    assert re.search(r"bakes/hello\.toml: hello-svc is pinned by bakehouse\.lock from http://evil\.example/debian stable "
                     rf"\(key trusted\), but the bake takes it from {re.escape(apt.url)} stable \(key sha256:[0-9a-f]{{64}}\); "
                     r"plan again to move the pin: doit plan --lock", result.output), result.output
    assert records(apt_repo, "hello") == []


def test_a_lock_file_of_an_older_bakehouse_is_one_line(apt_repo: Path) -> None:
    (apt_repo / "bakehouse.lock").write_text('version = 1\n[bakes.hello.packages.hello-svc]\nversion = "1.0.4"\n')
    result = run_doit(apt_repo, "plan")
    assert result.returncode == 3
    assert ("bakehouse.lock: not a bakehouse lock file (version 1, not 2: written by an older bakehouse); "
            "delete it or write it again: doit plan --lock") in result.output


def test_plan_lock_moves_the_pins_forward(apt_repo: Path, apt: AptRepository) -> None:
    run_doit(apt_repo, "plan", "--lock")
    apt.publish(build_hello_deb(apt_repo, "1.0.5", apt_repo.parent))
    assert '[bakes.hello.packages.hello-svc]\nversion = "1.0.4"' in (apt_repo / "bakehouse.lock").read_text()
    moved = run_doit(apt_repo, "plan", "--lock")
    assert "wrote bakehouse.lock" in moved.output, moved.output
    assert '[bakes.hello.packages.hello-svc]\nversion = "1.0.5"' in (apt_repo / "bakehouse.lock").read_text()
