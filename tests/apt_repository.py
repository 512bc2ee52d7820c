"""A real Debian repository for tests: dpkg-scanpackages and apt-ftparchive build it, gpg signs
it, and Python's http.server serves it on 127.0.0.1 (stopped by its own pid)."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = "stable"


class AptRepository:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.pool = root / "pool" / "main"
        self.pool.mkdir(parents=True)
        self.log = root.parent / "http.log"
        self.gnupg = Path(tempfile.mkdtemp(prefix="gpg-", dir="/tmp"))  # sockets need a short path
        self.gnupg.chmod(0o700)
        self._gpg("--quick-generate-key", "bakehouse tests <tests@example.invalid>", "ed25519", "sign", "never")
        self.keyring = root.parent / "repository.gpg"
        self.keyring.write_bytes(self._gpg("--export"))
        self.server: subprocess.Popen[bytes] | None = None
        self.url = ""

    def _gpg(self, *args: str) -> bytes:
        env = {**os.environ, "GNUPGHOME": str(self.gnupg)}
        return subprocess.run(["gpg", "--batch", "--quiet", "--passphrase", "", *args], env=env,
                              check=True, capture_output=True).stdout

    def publish(self, deb: Path) -> None:
        """Add a .deb and rebuild the indexes, as a team's CI publishes a release."""
        shutil.copy(deb, self.pool / deb.name)
        binary = self.root / "dists" / SUITE / "main" / "binary-amd64"
        binary.mkdir(parents=True, exist_ok=True)
        packages = subprocess.run(["dpkg-scanpackages", "--multiversion", "pool", "/dev/null"], cwd=self.root,
                                  check=True, capture_output=True).stdout
        (binary / "Packages").write_bytes(packages)
        (binary / "Packages.gz").write_bytes(gzip.compress(packages))
        release = subprocess.run(
            ["apt-ftparchive", "-o", f"APT::FTPArchive::Release::Suite={SUITE}",
             "-o", "APT::FTPArchive::Release::Components=main",
             "-o", "APT::FTPArchive::Release::Architectures=amd64", "release", f"dists/{SUITE}"],
            cwd=self.root, check=True, capture_output=True,
        ).stdout
        dists = self.root / "dists" / SUITE
        (dists / "Release").write_bytes(release)
        (dists / "InRelease").unlink(missing_ok=True)
        self._gpg("--clearsign", "--output", str(dists / "InRelease"), str(dists / "Release"))

    def serve(self) -> str:
        port = _free_port()
        with self.log.open("wb") as log:
            self.server = subprocess.Popen(
                [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
            )
        _wait_for_port(port)
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def requests(self, path_part: str) -> int:
        return sum(path_part in line for line in self.log.read_text().splitlines())

    def stop(self) -> None:
        if self.server is not None:
            os.kill(self.server.pid, signal.SIGTERM)
            self.server.wait(timeout=10)
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env={**os.environ, "GNUPGHOME": str(self.gnupg)},
                       capture_output=True)
        shutil.rmtree(self.gnupg, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")
