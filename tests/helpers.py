"""Helpers for tests: run doit as a user does, and look inside local images with dpkg."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path


def run_doit(repo: Path, *args: str, env: dict[str, str] | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
    """`doit ARGS` in `repo`, as a user runs it; stdout and stderr together in .output."""
    result = subprocess.run(
        [sys.executable, "-m", "doit", *args], cwd=repo, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
    )
    result.output = result.stdout  # type: ignore[attr-defined]
    if check and result.returncode != 0:
        raise AssertionError(f"doit {' '.join(args)} exited {result.returncode}:\n{result.stdout}")
    return result


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def records(repo: Path, bake: str) -> list[dict]:
    """The registry's records of `bake`, newest first."""
    found = [json.loads(p.read_text()) for p in (repo / ".bakehouse" / "records" / bake).glob("*.json")]
    return sorted(found, key=lambda r: (r["created"], r["image_id"]), reverse=True)


def image_file(repo: Path, record: dict) -> Path:
    return repo / ".bakehouse" / record["locations"]["local"]


def installed_version(image: Path, package: str) -> str:
    """dpkg-query inside the unpacked image."""
    with tempfile.TemporaryDirectory(dir="/dev/shm") as root:
        subprocess.run(f"zstd -q -dc '{image}' | tar -x -C '{root}' ./var/lib/dpkg", shell=True, check=True)
        result = subprocess.run(
            ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f=${Version}", package],
            capture_output=True, text=True,
        )
        return result.stdout if result.returncode == 0 else ""


def bump_hello(repo: Path, version: str) -> None:
    set_package_version(repo / "packages" / "hello-svc", version)


def set_package_version(tree: Path, version: str) -> None:
    """Set the version of the hello-svc package source in `tree`."""
    control = tree / "DEBIAN" / "control"
    lines = [f"Version: {version}" if line.startswith("Version:") else line for line in control.read_text().splitlines()]
    control.write_text("\n".join(lines) + "\n")
    (tree / "opt" / "hello-svc" / "VERSION").write_text(version + "\n")


def build_hello_deb(repo: Path, version: str, out_dir: Path) -> Path:
    """hello-svc at `version`, built from the repository's packages/hello-svc/ with dpkg-deb."""
    tree = out_dir / f"hello-svc-{version}"
    shutil.copytree(repo / "packages" / "hello-svc", tree)
    set_package_version(tree, version)
    output = out_dir / f"hello-svc_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(output)], check=True, capture_output=True)
    return output
