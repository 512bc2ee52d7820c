"""The SSH path of an Amazon Linux bake, run for real: packer's SSH communicator runs the
provisioning steps an amazon-ebs bake with package_format = "rpm" includes
(provision-packages.pkr.hcl.j2: install-rpms.sh, image-contents-rpm.sh) against a real sshd on
127.0.0.1, logging in as `ec2-user`.

No RPM distribution's mirror is reachable here, so the target is a Debian root with Debian's
`rpm` and `dnf` installed (tests/ssh_target.py): its rpmdb (at /var/lib/rpm, as on Amazon
Linux) and dnf are real, and dnf's own repository is a real one made with createrepo_c and
served on 127.0.0.1 (tests/rpm_repository.py), standing in for Amazon Linux's. One more
stand-in: an RPM that provides /bin/sh, which Debian's dpkg (not the rpmdb) holds there, so
that packages with scriptlets install as on Amazon Linux."""

from __future__ import annotations

import io
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bakehouse.contents import parse_dpkg_query
from bakehouse.errors import PackerError
from helpers import wait_until
from providers.aws.test_ssh_provisioning import bake_over_ssh
from rpm_repository import RpmRepository, build_rpm
from ssh_target import SshTarget, shared_root_tarball

USER = "ec2-user"
PROVIDES_SH = """\
Name: target-provides
Version: 1
Release: 1
Summary: what the Debian root holds outside the rpmdb
License: MIT
BuildArch: noarch
AutoReqProv: no
Provides: /bin/sh

%description
stand-in

%files
"""


@pytest.fixture(scope="session")
def rpm_target_tarball(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A Debian root with sshd, sudo, rpm and dnf: built once per test session (a minute), the
    same one the Debian SSH tests use."""
    return shared_root_tarball(tmp_path_factory.getbasetemp(), worker_id)


@pytest.fixture
def dnf_repository(tmp_path: Path) -> Iterator[RpmRepository]:
    """The target's own dnf repository (Amazon Linux's, here): hello-lib 1.0-1 and 1.1-1."""
    repository = RpmRepository(tmp_path / "dnf-repo")
    repository.publish("hello-lib", "1.0", signed=False)
    repository.publish("hello-lib", "1.1", signed=False)
    repository.serve()
    try:
        yield repository
    finally:
        repository.stop()


@pytest.fixture
def target(rpm_target_tarball: Path, tmp_path: Path, dnf_repository: RpmRepository) -> Iterator[SshTarget]:
    machine = SshTarget(rpm_target_tarball, tmp_path / "target", user=USER)
    try:
        root = machine.root
        (root / "etc" / "rpm").mkdir(parents=True, exist_ok=True)
        (root / "etc" / "rpm" / "macros").write_text("%_dbpath /var/lib/rpm\n")  # Debian's rpm: ~/.rpmdb
        (root / "etc" / "dnf" / "vars").mkdir(parents=True, exist_ok=True)
        (root / "etc" / "dnf" / "vars" / "releasever").write_text("2023\n")
        (root / "etc" / "yum.repos.d").mkdir(parents=True, exist_ok=True)
        (root / "etc" / "yum.repos.d" / "amazonlinux.repo").write_text(
            f"[amazonlinux]\nname=stand-in for Amazon Linux\nbaseurl={dnf_repository.url}\ngpgcheck=0\n")
        spec = tmp_path / "provides.spec"
        spec.write_text(PROVIDES_SH)
        subprocess.run(["rpmbuild", "-bb", "--define", f"_topdir {tmp_path / 'provides'}", str(spec)],
                       check=True, capture_output=True)
        (provides,) = (tmp_path / "provides" / "RPMS" / "noarch").glob("*.rpm")
        (root / "tmp" / provides.name).write_bytes(provides.read_bytes())
        machine.chroot("rpm", "-i", "--nodeps", f"/tmp/{provides.name}")
        (root / "tmp" / provides.name).unlink()
        yield machine
    finally:
        machine.stop()


def test_rpms_are_installed_over_ssh_at_their_versions_and_listed_from_the_rpmdb(target: SshTarget, tmp_path: Path) -> None:
    uploaded = build_rpm(tmp_path / "built", "hello-rpm", "1.0.4")  # built here (or taken from a [[repository]])
    output = bake_over_ssh(tmp_path, target.port, target.key, [uploaded], ["hello-lib=1.0-1", "hello-rpm=1.0.4-1"],
                           user=USER, package_format="rpm")
    assert "install-rpms: hello-lib 1.0-1 installed" in output and "install-rpms: hello-rpm 1.0.4-1 installed" in output
    assert (target.installed_rpm("hello-lib"), target.installed_rpm("hello-rpm")) == ("1.0-1", "1.0.4-1")  # not 1.1-1
    manifest = parse_dpkg_query((tmp_path / "packages.tsv").read_text(), "image", "hello", "packages.tsv")
    listed = {package.name: (package.version, package.architecture) for package in manifest.packages}
    assert listed == {"hello-lib": ("1.0-1", "noarch"), "hello-rpm": ("1.0.4-1", "noarch"),
                      "target-provides": ("1-1", "noarch")}
    assert not (target.root / "tmp" / "bakehouse").exists()


def test_a_failing_post_scriptlet_fails_the_bake_with_the_remote_output(target: SshTarget, tmp_path: Path) -> None:
    broken = build_rpm(tmp_path / "built", "hello-rpm", "1.0.4", post="echo 'hello-rpm: cannot configure here' >&2\nexit 3")
    with pytest.raises(PackerError) as failure:
        bake_over_ssh(tmp_path, target.port, target.key, [broken], ["hello-rpm=1.0.4-1"], user=USER, package_format="rpm")
    said = str(failure.value)
    assert said.splitlines()[0].startswith(
        "target: dnf: Error in POSTIN scriptlet in rpm package hello-rpm (its output is above); nothing was recorded")
    assert "hello-rpm: cannot configure here" in said  # the scriptlet's own output, from the machine
    assert "hello-rpm: cannot configure here" in (tmp_path / "bake.log").read_text()
    assert not (tmp_path / "packages.tsv").exists()  # the build stopped before listing anything


def test_the_install_waits_while_another_dnf_holds_its_lock(target: SshTarget, tmp_path: Path) -> None:
    """As dnf-makecache holds it on a fresh Amazon Linux instance. dnf's lock is a pid file
    whose process is alive; pid 1 of the target's namespace (its sshd) is, so dnf waits until
    the file goes, which this test removes once the install says it is waiting."""
    lock = target.root / "var" / "lib" / "dnf" / "rpmdb_lock.pid"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("1")
    streamed = io.StringIO()

    def release_when_waiting() -> None:
        wait_until(lambda: "Waiting for process with pid 1 to finish" in streamed.getvalue(), seconds=120)
        lock.unlink()

    releaser = threading.Thread(target=release_when_waiting, daemon=True)
    releaser.start()
    output = bake_over_ssh(tmp_path, target.port, target.key, [], ["hello-lib=1.1-1"], user=USER,
                           package_format="rpm", out=streamed)
    releaser.join()
    assert "Waiting for process with pid 1 to finish" in output
    assert target.installed_rpm("hello-lib") == "1.1-1"


def test_a_name_missing_from_the_images_repositories_is_one_line(target: SshTarget, tmp_path: Path) -> None:
    with pytest.raises(PackerError) as failure:
        bake_over_ssh(tmp_path, target.port, target.key, [], ["hello-libb"], user=USER, package_format="rpm")
    assert str(failure.value).splitlines()[0].startswith(
        "target: no package 'hello-libb' in the image's dnf repositories (misspelt? another version?)")
