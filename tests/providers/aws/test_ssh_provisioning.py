"""The SSH path of AMI bakes, run for real: packer's SSH communicator runs the provisioning
steps amazon-ebs bakes include (templates/provision-packages.pkr.hcl.j2) against a real sshd
on 127.0.0.1 in a Debian root (tests/ssh_target.py), through bakehouse's own packer runner.
The target stands in for an EC2 instance, which cannot run here (no AWS account)."""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bakehouse import packer
from bakehouse.contents import parse_dpkg_query
from bakehouse.errors import PackerError
from bakehouse.render import Templates
from helpers import PROJECT, HeldDpkgLock, build_hello_deb
from bakehouse.project import BUILT_IN_TEMPLATES
from ssh_target import SshTarget, shared_root_tarball, templates_with_target


@pytest.fixture(scope="session")
def target_tarball(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """Built once per test session, shared by every xdist worker: a build costs a minute."""
    return shared_root_tarball(tmp_path_factory.getbasetemp(), worker_id)


@pytest.fixture
def target(target_tarball: Path, tmp_path: Path) -> Iterator[SshTarget]:
    machine = SshTarget(target_tarball, tmp_path / "target")
    try:
        yield machine
    finally:
        machine.stop()


def bake_over_ssh(
    work: Path, port: int, key: Path, debs: list[Path], checks: list[str], timeout: str = "60s",
    tests: dict[str, str] | None = None, out: io.StringIO | None = None, user: str = SshTarget.user,
    package_format: str = "deb",
) -> str:
    """Render the SSH target template with these values and `packer build` it; packer's
    output as bakehouse shows it. Raises PackerError as a bake does. `tests`: test scripts
    (name under templates/: text); the image's package listing goes to work/packages.tsv.
    `out`: where packer's output streams while it runs (the caller may watch it). `debs`:
    the package files to upload (.rpm files with package_format = "rpm")."""
    templates = templates_with_target(work)
    for name, text in (tests or {}).items():
        (templates / name).parent.mkdir(parents=True, exist_ok=True)
        (templates / name).write_text(text)
    context = {
        "deb_paths": [str(deb) for deb in debs], "package_checks": checks,
        "target": {"port": port, "user": user, "key": str(key), "timeout": timeout},
        "tests": list(tests or {}), "contents": str(work / "packages.tsv"), "package_format": package_format,
    }
    template = work / "build" / "ssh-target.pkr.hcl"
    template.parent.mkdir(parents=True)
    template.write_text(Templates((templates, BUILT_IN_TEMPLATES)).render("ssh-target.pkr.hcl.j2", context))
    out = out if out is not None else io.StringIO()
    try:
        packer.build(packer.PackerRun(label="target", template=template, log_path=work / "bake.log",
                                      timeout_seconds=300), out)
    except PackerError as error:
        raise PackerError(f"{error}\n{out.getvalue()}") from None
    return out.getvalue()


def hello_deb(tmp_path: Path, postinst: str | None = None) -> Path:
    """hello-svc 1.0.4 built from the shipped package source (with another postinst if given)."""
    source = tmp_path / "source"
    shutil.copytree(PROJECT / "packages", source / "packages")
    if postinst is not None:
        (source / "packages" / "hello-svc" / "DEBIAN" / "postinst").write_text(postinst)
    return build_hello_deb(source, "1.0.4", tmp_path)


def test_packages_are_installed_over_ssh_at_their_versions(target: SshTarget, tmp_path: Path) -> None:
    output = bake_over_ssh(tmp_path, target.port, target.key, [hello_deb(tmp_path)], ["hello-svc=1.0.4"])
    assert "install-packages: hello-svc=1.0.4 installed" in output
    assert target.installed("hello-svc") == "1.0.4"
    assert not (target.root / "tmp" / "bakehouse").exists()  # the steps clean up after themselves


def test_tests_run_on_the_machine_and_its_packages_are_listed_as_dpkg_has_them(target: SshTarget, tmp_path: Path) -> None:
    check = "#!/bin/sh\nset -eu\n/opt/hello-svc/bin/hello-svc\ntest \"$(id -u)\" = 0 && echo 'runs as root'\n"
    output = bake_over_ssh(tmp_path, target.port, target.key, [hello_deb(tmp_path)], ["hello-svc=1.0.4"],
                           tests={"scripts/check-hello.sh": check})
    assert "test check-hello.sh: passed" in output and "hello from hello-svc 1.0.4" in output and "runs as root" in output
    lines = (tmp_path / "packages.tsv").read_text().splitlines()
    listed = {line.split("\t")[0]: line.split("\t")[1] for line in lines if not line.startswith("#")}
    # and the apt sources the machine names, where its updates would come from
    manifest = parse_dpkg_query("\n".join(lines), "image", "hello", "packages.tsv")
    assert "http://deb.debian.org/debian bookworm main" in " ".join(manifest.sources)
    dpkg = subprocess.run(["dpkg-query", f"--admindir={target.root}/var/lib/dpkg", "-W", "-f=${Package}\t${Version}\n"],
                          capture_output=True, text=True, check=True).stdout
    assert listed == dict(line.split("\t") for line in dpkg.splitlines()) and listed["hello-svc"] == "1.0.4"
    assert not (target.root / "tmp" / "bakehouse").exists() and not (target.root / "tmp" / "bakehouse-tests").exists()


def test_a_failing_test_on_the_machine_fails_the_bake_naming_it(target: SshTarget, tmp_path: Path) -> None:
    check = "#!/bin/sh\necho 'hello-svc does not answer on port 8080' >&2\nexit 4\n"
    with pytest.raises(PackerError) as failure:
        bake_over_ssh(tmp_path, target.port, target.key, [hello_deb(tmp_path)], ["hello-svc=1.0.4"],
                      tests={"scripts/check-hello.sh": check})
    assert "target: test check-hello.sh failed (exit 4) inside the image" in str(failure.value)
    assert "hello-svc does not answer on port 8080" in str(failure.value)
    assert not (tmp_path / "packages.tsv").exists()  # the build stopped before listing anything


def test_an_install_that_fails_fails_the_bake_with_the_remote_output(target: SshTarget, tmp_path: Path) -> None:
    broken = "#!/bin/sh\necho 'hello-svc: cannot configure on this machine' >&2\nexit 1\n"
    with pytest.raises(PackerError) as failure:
        bake_over_ssh(tmp_path, target.port, target.key, [hello_deb(tmp_path, broken)], ["hello-svc=1.0.4"])
    assert "target: packer exited 1; full log: " in str(failure.value)
    assert "hello-svc: cannot configure on this machine" in str(failure.value)
    assert "hello-svc: cannot configure on this machine" in (tmp_path / "bake.log").read_text()


def test_the_install_waits_while_the_targets_dpkg_lock_is_held(target: SshTarget, tmp_path: Path) -> None:
    """As unattended-upgrades holds it on a fresh instance: dpkg's own (fcntl) locks, taken
    from outside the target, and let go once the install says it is waiting."""
    streamed = io.StringIO()
    holder = HeldDpkgLock(target.root).release_when(lambda: "waiting for the dpkg lock" in streamed.getvalue())
    output = bake_over_ssh(tmp_path, target.port, target.key, [hello_deb(tmp_path)], ["hello-svc=1.0.4"], out=streamed)
    holder.join()
    assert "install-packages: waiting for the dpkg lock" in output
    assert target.installed("hello-svc") == "1.0.4"


def test_a_target_that_never_answers_ssh_times_out_with_one_line(target: SshTarget, tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never speaks SSH
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        with pytest.raises(PackerError) as failure:
            bake_over_ssh(tmp_path, silent.getsockname()[1], target.key, [], ["hello-svc"], timeout="5s")
    first_line = str(failure.value).splitlines()[0]
    assert first_line.startswith("target: packer exited 1; full log: ")
    assert "Timeout waiting for SSH" in str(failure.value)


def test_the_install_waits_for_cloud_init_to_finish(target: SshTarget, tmp_path: Path) -> None:
    """A stand-in for cloud-init on a fresh instance (the target has none): `status --wait`
    returns once a flag file appears, which this test writes after the install has begun."""
    fake = target.root / "usr" / "local" / "bin" / "cloud-init"
    fake.write_text("#!/bin/sh\n: > /tmp/cloud-init-asked\n"
                    "while [ ! -e /tmp/cloud-init-done ]; do sleep 0.1; done\necho 'status: done'\n")
    fake.chmod(0o755)

    def finish_when_asked() -> None:
        while not (target.root / "tmp" / "cloud-init-asked").exists():
            time.sleep(0.05)
        time.sleep(1)
        (target.root / "tmp" / "cloud-init-done").touch()

    threading.Thread(target=finish_when_asked, daemon=True).start()
    output = bake_over_ssh(tmp_path, target.port, target.key, [hello_deb(tmp_path)], ["hello-svc=1.0.4"])
    assert "install-packages: waiting for cloud-init to finish" in output
    assert target.installed("hello-svc") == "1.0.4"
