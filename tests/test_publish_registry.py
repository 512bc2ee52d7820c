"""Publishing local images to an OCI registry: Debian's docker-registry (the CNCF distribution)
on 127.0.0.1, stopped by its own pid. A channel's image is pushed as the tag of the channel's
name with skopeo, digest unchanged, and pulled back the same."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import free_port, records, run_doit


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    for _ in range(5):  # a free port can be taken before the registry binds it: try another
        port = free_port()
        config = tmp_path / "registry.yml"
        config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'registry'}\n"
                          f"http:\n  addr: 127.0.0.1:{port}\n")
        server = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                                  stderr=(tmp_path / "registry.log").open("w"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and server.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        if server.poll() is None:
            try:
                yield f"127.0.0.1:{port}"
            finally:
                os.kill(server.pid, signal.SIGTERM)
                server.wait(timeout=10)
            return
    raise RuntimeError("docker-registry did not start")


def digest_of(reference: str) -> str:
    return subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", f"docker://{reference}"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_a_channel_is_pushed_as_a_tag_with_its_digest_unchanged(repo: Path, registry: str, tmp_path: Path) -> None:
    bake = repo / "bakes" / "base.toml"
    bake.write_text(bake.read_text() + f'\n[publish]\nregistry = "{registry}/base"\n')
    run_doit(repo, "bake:base", "--rebake", check=True)  # a bake publishes latest
    first = records(repo, "base")[0]["image_id"]
    facts = json.loads(run_doit(repo, "images", "--json", "base", check=True).stdout)["base"][0]
    assert digest_of(f"{registry}/base:latest") == facts["digest"]
    promoted = run_doit(repo, "promote", "base", "stable", check=True).output
    assert f"published registry {registry}/base:stable: nothing -> {facts['digest']}" in promoted, promoted
    assert digest_of(f"{registry}/base:stable") == facts["digest"]
    pulled = tmp_path / "pulled"
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{registry}/base:stable",
                    f"oci:{pulled}:base"], check=True, capture_output=True)
    assert json.loads((pulled / "index.json").read_text())["manifests"][0]["digest"] == facts["digest"]
    # its provenance and SBOM went along, each by its own digest, about the image pushed
    kept = json.loads((repo / ".bakehouse" / "images" / "base" / first / "index.json").read_text())["manifests"]
    statements = [entry for entry in kept if entry.get("artifactType") == "application/vnd.in-toto+json"]
    assert len(statements) == 2
    for entry in statements:
        raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry}/base@{entry['digest']}"],
                             capture_output=True, check=True).stdout
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == entry["digest"]
        assert json.loads(raw)["subject"]["digest"] == facts["digest"]

    run_doit(repo, "bake:base", "--rebake", check=True)  # latest moves on; stable stays
    second = json.loads(run_doit(repo, "images", "--json", "base", check=True).stdout)["base"][0]
    assert second["image_id"] != first
    assert digest_of(f"{registry}/base:latest") == second["digest"]
    assert digest_of(f"{registry}/base:stable") == facts["digest"]
    assert run_doit(repo, "plan", "base").returncode == 0  # every target holds what its channel points at
