"""Helpers for tests: run doit as a user does, and look inside local images with dpkg."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
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
    control = repo / "packages" / "hello-svc" / "DEBIAN" / "control"
    lines = [f"Version: {version}" if line.startswith("Version:") else line for line in control.read_text().splitlines()]
    control.write_text("\n".join(lines) + "\n")
    (repo / "packages" / "hello-svc" / "opt" / "hello-svc" / "VERSION").write_text(version + "\n")


# --- AWS (moto stands in for AWS: there is no AWS account here) ---

SECRET = "moto-test-secret-never-written-anywhere"
MOTO_LAUNCHER = Path(__file__).resolve().parent / "moto_ec2.py"


def start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """tests/moto_ec2.py on 127.0.0.1 and a free port; returns the process and its URL."""
    for _ in range(5):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with log.open("ab") as output:
            server = subprocess.Popen([sys.executable, str(MOTO_LAUNCHER), str(port)], stdout=output, stderr=output)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and server.poll() is None:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
                return server, url
            except OSError:
                time.sleep(0.1)
        server.kill()
        server.wait()
    raise RuntimeError(f"moto's server did not start; see {log}")


def ec2(env: dict[str, str], region: str):  # type: ignore[no-untyped-def]
    """A boto3 EC2 client on moto, as a user would look at their AMIs."""
    import boto3

    return boto3.client(
        "ec2", region_name=region, endpoint_url=env["AWS_ENDPOINT_URL_EC2"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def amis(env: dict[str, str], region: str, bake: str) -> list[dict]:
    """The bake's AMIs in `region`, newest first, each with a `tags` dict."""
    found = ec2(env, region).describe_images(
        Owners=["self"], Filters=[{"Name": "tag:bakehouse:bake", "Values": [bake]}]
    )["Images"]
    for image in found:
        image["tags"] = {tag["Key"]: tag["Value"] for tag in image.get("Tags", [])}
    return sorted(found, key=lambda image: image["tags"]["bakehouse:created"], reverse=True)


def aws_calls(env: dict[str, str]) -> list[str]:
    """The AWS calls bakehouse made (BAKEHOUSE_AWS_CALL_LOG), then forgets them."""
    log = Path(env["BAKEHOUSE_AWS_CALL_LOG"])
    calls = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return calls
