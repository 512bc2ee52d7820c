"""The install step waits for the machine to settle: scripts/install-packages.sh (the script
that runs in a chroot locally and over SSH on an AMI) run in a chroot of the session's base
image while this test holds the image's dpkg lock, as unattended-upgrades does on a freshly
booted instance."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bakehouse.project import BUILT_IN_TEMPLATES
from helpers import HeldDpkgLock, build_hello_deb, image_file, records, unpack_image


def unpacked_base(repo: Path, root: Path) -> Path:
    root.parent.mkdir(parents=True, exist_ok=True)
    unpack_image(image_file(repo, records(repo, "base")[0]), "base", root)
    inbox = root / "tmp" / "bakehouse"
    (inbox / "debs").mkdir(parents=True)
    shutil.copy(build_hello_deb(repo, "1.0.4", root.parent), inbox / "debs")
    shutil.copy(BUILT_IN_TEMPLATES / "scripts" / "install-packages.sh", inbox / "install-packages.sh")
    return root


def install_command(root: Path, settle_seconds: int) -> list[str]:
    return ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", f"BAKEHOUSE_SETTLE_SECONDS={settle_seconds}",
            "chroot", str(root), "/bin/sh", "/tmp/bakehouse/install-packages.sh", "/tmp/bakehouse/debs", "hello-svc=1.0.4"]


def test_the_install_waits_for_the_dpkg_lock_then_installs(baked_base: Path, tmp_path: Path) -> None:
    """The lock is let go once the install says it waits (not after a fixed time, which a
    loaded machine could outlast before the install even starts)."""
    root = unpacked_base(baked_base, tmp_path / "root")
    lock = HeldDpkgLock(root)
    lines = []
    with subprocess.Popen(install_command(root, settle_seconds=60), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as run:
        assert run.stdout is not None
        try:
            for line in run.stdout:
                lines.append(line)
                if "install-packages: waiting for the dpkg lock" in line:
                    lock.release()
        finally:
            lock.release()
    output = "".join(lines)
    assert run.returncode == 0, output
    assert "install-packages: waiting for the dpkg lock" in output
    assert "install-packages: hello-svc=1.0.4 installed" in output


def test_a_lock_held_past_the_bound_fails_with_one_line(baked_base: Path, tmp_path: Path) -> None:
    root = unpacked_base(baked_base, tmp_path / "root")
    lock = HeldDpkgLock(root)  # held for the whole install
    try:
        run = subprocess.run(install_command(root, settle_seconds=2), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    finally:
        lock.release()
    assert run.returncode == 1, run.stdout
    assert "install-packages: the dpkg lock was still held after 2s (unattended-upgrades? another apt?); giving up" in run.stdout
