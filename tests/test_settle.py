"""The install step waits for the machine to settle: scripts/install-packages.sh (the script
that runs in a chroot locally and over SSH on an AMI) run in a chroot of the session's base
image while this test holds the image's dpkg lock, as unattended-upgrades does on a freshly
booted instance."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from helpers import PROJECT, build_hello_deb, hold_dpkg_lock, image_file, records, unpack_image


def unpacked_base(repo: Path, root: Path) -> Path:
    root.parent.mkdir(parents=True, exist_ok=True)
    unpack_image(image_file(repo, records(repo, "base")[0]), "base", root)
    inbox = root / "tmp" / "bakehouse"
    (inbox / "debs").mkdir(parents=True)
    shutil.copy(build_hello_deb(repo, "1.0.4", root.parent), inbox / "debs")
    shutil.copy(PROJECT / "templates" / "scripts" / "install-packages.sh", inbox / "install-packages.sh")
    return root


def install(root: Path, settle_seconds: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", f"BAKEHOUSE_SETTLE_SECONDS={settle_seconds}",
         "chroot", str(root), "/bin/sh", "/tmp/bakehouse/install-packages.sh", "/tmp/bakehouse/debs", "hello-svc=1.0.4"],
        text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
    )


def test_the_install_waits_for_the_dpkg_lock_then_installs(baked_base: Path, tmp_path: Path) -> None:
    root = unpacked_base(baked_base, tmp_path / "root")
    holder = hold_dpkg_lock(root, seconds=3)
    run = install(root, settle_seconds=60)
    holder.join()
    assert run.returncode == 0, run.stdout
    assert "install-packages: waiting for the dpkg lock" in run.stdout
    assert "install-packages: hello-svc=1.0.4 installed" in run.stdout


def test_a_lock_held_past_the_bound_fails_with_one_line(baked_base: Path, tmp_path: Path) -> None:
    root = unpacked_base(baked_base, tmp_path / "root")
    holder = hold_dpkg_lock(root, seconds=8)
    run = install(root, settle_seconds=2)
    holder.join()
    assert run.returncode == 1, run.stdout
    assert "install-packages: the dpkg lock was still held after 2s (unattended-upgrades? another apt?); giving up" in run.stdout
