"""A real RPM repository for tests: rpmbuild builds the packages (Debian's rpm), rpmsign signs
them with a gpg key of the repository's own, createrepo_c indexes them, and Python's
http.server serves the folder on 127.0.0.1 (stopped by its own pid). No RPM distribution's
mirror is reachable here: the packages are tiny noarch ones made for the test."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from helpers import serve_directory

SPEC = """\
Name: {name}
Version: {version}
Release: {release}
{epoch}Summary: a test package
License: MIT
BuildArch: noarch
AutoReqProv: no

%description
a test package

{post}%files
"""


def build_rpm(out: Path, name: str, version: str, release: str = "1", epoch: int | None = None,
              post: str | None = None) -> Path:
    """A noarch RPM with no files; `post` is its %post scriptlet."""
    top = out / "rpmbuild"
    (top / "SPECS").mkdir(parents=True, exist_ok=True)
    spec = top / "SPECS" / f"{name}-{version}-{release}.spec"
    spec.write_text(SPEC.format(name=name, version=version, release=release,
                                epoch="" if epoch is None else f"Epoch: {epoch}\n",
                                post="" if post is None else f"%post\n{post}\n\n"))
    subprocess.run(["rpmbuild", "-bb", "--define", f"_topdir {top}", str(spec)], check=True, capture_output=True)
    (built,) = (top / "RPMS" / "noarch").glob(f"{name}-{version}-{release}.noarch.rpm")
    return built


class RpmRepository:
    """A served folder with repodata/; `publish` adds a package as a team's CI would."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True)
        self.builds = root.parent / "rpm-builds"
        self.log = root.parent / "rpm-http.log"
        self.gnupg = Path(tempfile.mkdtemp(prefix="gpg-", dir="/tmp"))  # sockets need a short path
        self.gnupg.chmod(0o700)
        self._gpg("--quick-generate-key", "bakehouse tests <rpm-tests@example.invalid>", "rsa2048", "sign", "never")
        self.key = root.parent / "repository.asc"  # as dnf's gpgkey: armoured
        self.key.write_bytes(self._gpg("--armor", "--export"))
        self.server: subprocess.Popen[str] | None = None
        self.url = ""

    def _gpg(self, *args: str) -> bytes:
        return subprocess.run(["gpg", "--batch", "--quiet", "--passphrase", "", *args], env=self._env(),
                              check=True, capture_output=True).stdout

    def _env(self) -> dict[str, str]:
        return {**os.environ, "GNUPGHOME": str(self.gnupg)}

    def publish(self, name: str, version: str, release: str = "1", signed: bool = True, post: str | None = None) -> Path:
        """Build, sign (unless told not to) and add a package, and index the folder again."""
        built = build_rpm(self.builds, name, version, release, post=post)
        if signed:
            subprocess.run(["rpmsign", "--define", "__gpg /usr/bin/gpg", "--define", "_gpg_name rpm-tests@example.invalid",
                            "--addsign", str(built)], env=self._env(), check=True, capture_output=True, stdin=subprocess.DEVNULL)
        shutil.copy(built, self.root / built.name)
        self.index()
        return self.root / built.name

    def withdraw(self, file_name: str) -> None:
        (self.root / file_name).unlink()
        self.index()

    def index(self) -> None:
        shutil.rmtree(self.root / "repodata", ignore_errors=True)
        subprocess.run(["createrepo_c", "--checksum", "sha256", str(self.root)], check=True, capture_output=True)

    def serve(self) -> str:
        self.server, url = serve_directory(self.root, self.log)
        self.url = url + "/"
        return self.url

    def stop(self) -> None:
        if self.server is not None:
            os.kill(self.server.pid, signal.SIGTERM)
            self.server.wait(timeout=10)
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=self._env(), capture_output=True)
        shutil.rmtree(self.gnupg, ignore_errors=True)
