"""A machine to bake over SSH, on this one: a real Debian root filesystem (minbase plus
openssh-server, sudo, and Debian's rpm and dnf for the Amazon Linux tests, from the host's
mirror) running sshd on 127.0.0.1, with a user `admin` (or `ec2-user`) who may sudo, as on
Debian's (Amazon Linux's) AMIs. It stands in for an EC2 instance, which cannot run
here (no AWS account); everything packer does over SSH to it is real.

sshd runs chrooted in a mount and PID namespace of its own (`unshare --mount --pid --fork
--kill-child`, with /proc mounted in the root), so /proc goes away with it and stopping it by
the pid of `unshare` ends every process it started.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from helpers import PROJECT, free_port

HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")


def build_root_tarball(out: Path, include: str = "openssh-server,sudo,rpm,dnf") -> Path:
    """The target's root filesystem, made once per test session (about a minute)."""
    tarball = out / "ssh-target.tar"
    partial = out / "ssh-target.partial.tar"  # a build that fails midway leaves no tarball
    mirror = str(HOST_SOURCES) if HOST_SOURCES.is_file() else "http://deb.debian.org/debian"
    subprocess.run(
        ["mmdebstrap", "--mode=root", "--variant=minbase", f"--include={include}",
         "bookworm", str(partial), mirror],
        check=True, capture_output=True, stdin=subprocess.DEVNULL,
    )
    partial.rename(tarball)
    return tarball


def shared_root_tarball(session: Path, worker_id: str, name: str = "ssh-target",
                        include: str = "openssh-server,sudo,rpm,dnf") -> Path:
    """build_root_tarball once per test session, shared by every xdist worker (under a lock:
    the first builds it, the others wait and reuse it). `session`: pytest's base temp folder."""
    shared = (session if worker_id == "master" else session.parent) / name
    shared.mkdir(exist_ok=True)
    with (shared / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        tarball = shared / "ssh-target.tar"
        return tarball if tarball.is_file() else build_root_tarball(shared, include)


class SshTarget:
    """One target: its own unpacked root, its own key, its own sshd. Stop it with stop()."""

    user = "admin"

    def __init__(self, tarball: Path, work: Path, user: str = "admin") -> None:
        self.user = user
        self.root = work / "root"
        self.root.mkdir(parents=True)
        subprocess.run(["tar", "-xf", str(tarball), "-C", str(self.root)], check=True)
        self._chroot("useradd", "--create-home", "--shell", "/bin/bash", self.user)
        sudoers = self.root / "etc" / "sudoers.d" / self.user
        sudoers.write_text(f"{self.user} ALL=(ALL) NOPASSWD:ALL\n")
        sudoers.chmod(0o440)
        self._chroot("ssh-keygen", "-q", "-A")
        self._chroot("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "/root/bakehouse-test-key")
        self.key = work / "id_ed25519"
        shutil.move(self.root / "root" / "bakehouse-test-key", self.key)
        ssh_dir = self.root / "home" / self.user / ".ssh"
        ssh_dir.mkdir(mode=0o700)
        shutil.move(self.root / "root" / "bakehouse-test-key.pub", ssh_dir / "authorized_keys")
        self._chroot("chown", "-R", f"{self.user}:{self.user}", f"/home/{self.user}/.ssh")
        (self.root / "run" / "sshd").mkdir(parents=True, exist_ok=True)
        self.server, self.port = self._start_sshd(work / "sshd.log")

    def _chroot(self, *argv: str) -> None:
        subprocess.run(["chroot", str(self.root), *argv], check=True, capture_output=True)

    def _start_sshd(self, log: Path) -> tuple[subprocess.Popen[bytes], int]:
        """sshd on a free port of 127.0.0.1; a port taken meanwhile makes sshd exit: try another."""
        for _ in range(5):
            port = free_port()
            with log.open("ab") as output:
                server = subprocess.Popen(
                    ["unshare", "--mount", "--pid", "--fork", "--kill-child", f"--mount-proc={self.root}/proc",
                     "chroot", str(self.root), "/usr/sbin/sshd", "-D", "-e", "-p", str(port),
                     "-o", "ListenAddress=127.0.0.1", "-o", "UseDNS=no"],
                    stdout=output, stderr=output, stdin=subprocess.DEVNULL,
                )
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and server.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                        if connection.recv(4).startswith(b"SSH-"):
                            return server, port
                except OSError:
                    time.sleep(0.05)
            server.kill()
            server.wait()
        raise RuntimeError(f"sshd did not start on 127.0.0.1; see {log}")

    def chroot(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """A command run inside the target's root (not in sshd's namespace), as root."""
        return subprocess.run(["chroot", str(self.root), *argv], check=True, capture_output=True, text=True)

    def installed_rpm(self, package: str) -> str:
        """The VERSION-RELEASE the target's rpmdb has of `package`, or ''."""
        result = subprocess.run(["rpm", "--root", str(self.root), "--dbpath", "/var/lib/rpm", "-q", "--qf",
                                 "%{VERSION}-%{RELEASE}", package], capture_output=True, text=True)
        return result.stdout if result.returncode == 0 else ""

    def installed(self, package: str) -> str:
        """The version dpkg in the target has of `package`, or ''."""
        result = subprocess.run(
            ["dpkg-query", f"--admindir={self.root}/var/lib/dpkg", "-W", "-f=${Version}", package],
            capture_output=True, text=True,
        )
        return result.stdout if result.returncode == 0 else ""

    def stop(self) -> None:
        # unshare ignores SIGTERM while its child runs: stop its child, sshd (the namespace's
        # first process, so every process of the namespace ends with it), and unshare reaps it
        # and exits. Killing unshare instead would leave sshd's zombie to whoever adopts it.
        children = Path(f"/proc/{self.server.pid}/task/{self.server.pid}/children")
        for pid in children.read_text().split() if children.exists() else []:
            os.kill(int(pid), signal.SIGTERM)
        try:
            self.server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.server.kill()  # --kill-child takes sshd with it
            self.server.wait(timeout=10)


def templates_with_target(work: Path) -> Path:
    """A templates directory holding the tests' SSH target template (the built-in templates
    and scripts are found after it, as in a repository)."""
    templates = work / "templates"
    templates.mkdir(parents=True)
    shutil.copy(PROJECT / "tests" / "templates" / "ssh-target.pkr.hcl.j2", templates)
    return templates
