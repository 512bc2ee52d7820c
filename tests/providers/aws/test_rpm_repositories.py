"""RPM repositories (`[[repository]] type = "rpm"`) on the Amazon Linux example, against moto's
EC2 server (moto stands in for AWS: no AWS account here; with communicator = "none" nothing
runs on its instances, so what is checked is what bakehouse decides, fetches, checks and
records). The repository is real: packages rpmbuild built and rpmsign signed, indexed by
createrepo_c, served on 127.0.0.1 (tests/rpm_repository.py)."""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import amis, run_doit, write
from providers.aws.test_amazon_linux import al2023_repo
from rpm_repository import RpmRepository


@pytest.fixture
def rpm_repository(tmp_path: Path) -> Iterator[RpmRepository]:
    repository = RpmRepository(tmp_path / "rpm-repo")
    repository.publish("hello-lib", "1.0")
    repository.serve()
    try:
        yield repository
    finally:
        repository.stop()


def with_repository(tmp_path: Path, repository: RpmRepository, bake: str = "al2023-hello",
                    packages: str = '["hello-lib"]', extra: str = "") -> Path:
    repo = al2023_repo(tmp_path)
    (repo / "keys").mkdir()
    shutil.copy(repository.key, repo / "keys" / "team.asc")
    path = repo / "bakes" / f"{bake}.toml"
    path.write_text(extra + path.read_text() + f'\n[[repository]]\ntype = "rpm"\nbaseurl = "{repository.url}"\n'
                    f'gpgkey = "keys/team.asc"\npackages = {packages}\n')
    return repo


def test_an_rpm_repository_package_is_baked_at_its_newest_version_locked_and_bumped(
        tmp_path: Path, aws_env: dict[str, str], rpm_repository: RpmRepository) -> None:
    repo = with_repository(tmp_path, rpm_repository)
    locked = run_doit(repo, "plan", "--lock", env=aws_env)
    assert "wrote bakehouse.lock: " in locked.output, locked.output
    pins = tomllib.loads((repo / "bakehouse.lock").read_text())["bakes"]["al2023-hello"]["packages"]
    pin = pins["hello-lib"]
    assert (pin["version"], pin["url"]) == ("1.0-1", f"{rpm_repository.url}hello-lib-1.0-1.noarch.rpm")
    assert pin["repository"]["suite"] == "" and pin["repository"]["key"].startswith("sha256:")

    run = run_doit(repo, env=aws_env, check=True)
    assert f"[al2023-hello] fetching hello-lib 1.0-1 from {rpm_repository.url}hello-lib-1.0-1.noarch.rpm" in run.output
    (hello,) = amis(aws_env, "us-east-1", "al2023-hello")
    listed = run_doit(repo, "images", "--packages", "al2023-hello", env=aws_env, check=True).output
    assert re.search(r"^ +hello-lib +1\.0-1 +x86_64$", listed, re.M), listed

    rpm_repository.publish("hello-lib", "1.0.10")  # newer in RPM's order than 1.0 (and than 1.0.9)
    assert run_doit(repo, "plan", env=aws_env).output.splitlines()[-1] == "0 to bake, 2 up to date"  # the lock holds
    (repo / "bakehouse.lock").unlink()
    plan = run_doit(repo, "plan", env=aws_env)
    assert plan.returncode == 1
    assert re.search(r"^al2023-hello +bake +\S+ +hello-lib 1\.0-1 -> 1\.0\.10-1$", plan.output, re.M), plan.output
    run_doit(repo, env=aws_env, check=True)
    newest = amis(aws_env, "us-east-1", "al2023-hello")[0]
    assert newest["ImageId"] != hello["ImageId"]
    diff = run_doit(repo, "diff", "al2023-hello", env=aws_env)
    assert diff.returncode == 1  # as diff(1): they differ
    assert "packages:\n  ~ hello-lib 1.0-1 -> 1.0.10-1\ninputs:\n  hello-lib 1.0-1 -> 1.0.10-1\n" in diff.output, diff.output


def test_a_pinned_rpm_that_can_no_longer_be_had_is_one_line(
        tmp_path: Path, aws_env: dict[str, str], rpm_repository: RpmRepository) -> None:
    repo = with_repository(tmp_path, rpm_repository, packages='["hello-lib=1.0"]')
    assert "wrote bakehouse.lock" in run_doit(repo, "plan", "--lock", env=aws_env).output  # exit 1: 2 to bake
    rpm_repository.withdraw("hello-lib-1.0-1.noarch.rpm")
    run = run_doit(repo, env=aws_env)
    assert run.returncode != 0
    assert re.search(r"^al2023-hello: hello-lib 1\.0-1, pinned by bakehouse\.lock, can no longer be had "
                     r"\(cannot fetch \S+hello-lib-1\.0-1\.noarch\.rpm: HTTP 404 \(no longer in the repository\)\); "
                     r"plan again to move the pin: doit plan --lock$", run.output, re.M), run.output
    assert amis(aws_env, "us-east-1", "al2023-hello") == []
    replanned = run_doit(repo, "plan", "--lock", env=aws_env)
    assert re.search(r"repository: hello-lib=1\.0 is not in \S+ \(rpm\) \(noarch or x86_64\)$", replanned.output, re.M), \
        replanned.output


def test_an_rpm_signed_by_another_key_or_unsigned_is_not_baked(
        tmp_path: Path, aws_env: dict[str, str], rpm_repository: RpmRepository) -> None:
    rpm_repository.publish("hello-lib", "1.1", signed=False)
    repo = with_repository(tmp_path, rpm_repository)
    run = run_doit(repo, env=aws_env)
    assert run.returncode != 0
    assert re.search(r"^al2023-hello: hello-lib 1\.1-1: its signature does not check out against "
                     r"keys/team\.asc \(digests SIGNATURES NOT OK\)$", run.output, re.M), run.output
    assert amis(aws_env, "us-east-1", "al2023-hello") == []
    # trusted = true takes it as dnf's gpgcheck=0 does
    bake = repo / "bakes" / "al2023-hello.toml"
    bake.write_text(bake.read_text().replace('gpgkey = "keys/team.asc"', "trusted = true"))
    run_doit(repo, env=aws_env, check=True)
    assert len(amis(aws_env, "us-east-1", "al2023-hello")) == 1


def test_updates_in_an_rpm_repository_rebake_an_image_that_asks_for_them(
        tmp_path: Path, aws_env: dict[str, str], rpm_repository: RpmRepository) -> None:
    repo = with_repository(tmp_path, rpm_repository, bake="al2023-base", packages='["hello-lib=1.0-1"]',
                           extra='rebuild_when = "updates"\n')
    run_doit(repo, env=aws_env, check=True)
    assert run_doit(repo, "plan", env=aws_env).output.splitlines()[-1] == "0 to bake, 2 up to date"
    rpm_repository.publish("hello-lib", "1.0", release="2")  # a rebuild: same version, newer release
    plan = json.loads(run_doit(repo, "plan", "--json", env=aws_env).stdout)
    rows = {row["bake"]: row for row in plan["bakes"]}
    assert rows["al2023-base"]["reasons"] == ["hello-lib 1.0-1 -> 1.0-2 available"], rows
    assert rows["al2023-hello"]["action"] == "bake"
    run_doit(repo, env=aws_env, check=True)  # pinned at 1.0-1, it bakes 1.0-1 again, and has seen 1.0-2
    assert run_doit(repo, "plan", env=aws_env).output.splitlines()[-1] == "0 to bake, 2 up to date"

    bake = repo / "bakes" / "al2023-base.toml"  # `=1.0`: any release of 1.0, as dnf's hello-lib-1.0
    bake.write_text(bake.read_text().replace('"hello-lib=1.0-1"', '"hello-lib=1.0"'))
    plan = run_doit(repo, "plan", env=aws_env)
    assert re.search(r"^al2023-base +bake +\S+ +hello-lib 1\.0-1 -> 1\.0-2$", plan.output, re.M), plan.output


@pytest.mark.parametrize(("table", "message"), [
    ('type = "rpm"\nbaseurl = "http://127.0.0.1:9/"\nsuite = "stable"\ntrusted = true\npackages = ["x"]',
     'repository[0].suite is a key of type = "deb" repositories; this one is type = "rpm"'),
    ('type = "rpm"\nbaseurl = "http://127.0.0.1:9/"\npackages = ["x"]',
     "repository[0] needs gpgkey (a public key file such as keys/team.asc), or trusted = true"),
    ('type = "rpm"\nurl = "http://127.0.0.1:9/"\ntrusted = true\npackages = ["x"]',
     'repository[0].url is a key of type = "deb" repositories; this one is type = "rpm"'),
    ('type = "yum"\nbaseurl = "http://127.0.0.1:9/"\ntrusted = true\npackages = ["x"]',
     "repository[0].type"),
    ('type = "rpm"\nbaseurl = "ftp://127.0.0.1/"\ntrusted = true\npackages = ["x"]',
     "repository[0].baseurl must be an http:// or https:// URL"),
])
def test_a_mistake_in_an_rpm_repository_table_is_one_line(tmp_path: Path, table: str, message: str) -> None:
    repo = al2023_repo(tmp_path)
    bake = repo / "bakes" / "al2023-hello.toml"
    bake.write_text(bake.read_text() + "\n[[repository]]\n" + table + "\n")
    plan = run_doit(repo, "plan")
    assert plan.returncode == 3, plan.output
    assert message in plan.output, plan.output
    assert len(plan.output.strip().splitlines()) == 1, plan.output


def test_rpm_names_follow_rpms_rules_and_an_rpm_repository_on_a_debian_image_is_refused(
        tmp_path: Path, aws_env: dict[str, str], rpm_repository: RpmRepository) -> None:
    repo = al2023_repo(tmp_path)
    base = repo / "bakes" / "al2023-base.toml"
    base.write_text(base.read_text().replace('packages = ["ca-certificates"]',
                                             'packages = ["ca-certificates", "python3-PyYAML", "perl-Data-Dumper=2.183-1.amzn2023"]'))
    plan = run_doit(repo, "plan", env=aws_env)
    assert plan.returncode == 1 and "python3-PyYAML" not in plan.output, plan.output  # Debian's rules would refuse both
    write(repo / "bakes" / "deb.toml", 'provider = "aws"\ntemplate = "amazon-ebs.pkr.hcl.j2"\nregions = ["us-east-1"]\n'
          'communicator = "none"\n[source]\nname = "debian-12-amd64-*"\nowners = ["136693071363"]\n'
          f'[[repository]]\ntype = "rpm"\nbaseurl = "{rpm_repository.url}"\ntrusted = true\npackages = ["hello-lib"]\n')
    plan = run_doit(repo, "plan", env=aws_env)
    assert ("bakes/deb.toml: packages: hello-lib is an RPM package, and deb's aws images install "
            "Debian packages (.deb)") in plan.output, plan.output
