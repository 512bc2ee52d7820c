"""A real Debian repository for tests: dpkg-scanpackages and apt-ftparchive build it, gpg signs
it, and Python's http.server serves it on 127.0.0.1 (stopped by its own pid)."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from helpers import serve_directory

SUITE = "stable"


class AptRepository:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.pool = root / "pool" / "main"
        self.pool.mkdir(parents=True)
        self.log = root.parent / "http.log"
        self.extra_entries = b""  # hand-written index entries, added as they are
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
                                  check=True, capture_output=True).stdout + self.extra_entries
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
        self.server, self.url = serve_directory(self.root, self.log)
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


