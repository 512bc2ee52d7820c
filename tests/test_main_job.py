"""The README's main job as a new user runs it: the shipped bakes as they are, on the real
minbase base from the host's Debian mirror (not the tests' tiny busybox base, which once hid
a failure of this job); then hello with a package from the mirror, and `doit verify` of both:
the same images, baked again in another directory at another time."""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest

from conftest import Baked
from helpers import image_file, image_layers, installed_version, mirror_packages, records, run_doit

def test_the_shipped_example_bakes_its_real_base_and_hello_then_nothing(shipped_baked: Baked, tmp_path: Path) -> None:
    """The session's one bake of the shipped example (conftest.shipped_baked), then, in a copy
    of it, the second run and the verify."""
    mirror_before = shipped_baked.mirror
    first = shipped_baked.output
    assert re.findall(r"^\[([\w-]+)\] baked ", first, re.M) == ["base", "hello"]
    repo = tmp_path / "clone"
    shutil.copytree(shipped_baked.repo, repo, symlinks=True, ignore=shutil.ignore_patterns("build", "layers"))
    (base,), (hello,) = records(repo, "base"), records(repo, "hello")
    assert installed_version(image_file(repo, base), "ca-certificates")
    assert installed_version(image_file(repo, base), "apt")  # minbase, not busybox
    assert installed_version(image_file(repo, hello), "hello-svc") == "1.0.4"
    assert hello["base_image"] == base["image_id"]

    second = run_doit(repo, check=True)
    assert re.findall(r"^\[([\w-]+)\] baked ", second.output, re.M) == []
    assert f"bake:hello: up to date: {hello['image_id']}" in second.output


def test_a_service_on_the_real_base_installs_a_package_by_name_from_the_mirror(shipped_baked: Baked, tmp_path: Path) -> None:
    """The next thing a user does: add a package from Debian's mirror to hello. apt in the
    service's chroot resolves the mirror with this machine's resolver, lent for the install:
    nothing of it, nor apt's lists or downloads, lands in the layer. A resolver that cannot
    answer is one line naming the host."""
    repo = tmp_path / "clone"
    mirror_before = shipped_baked.mirror
    shutil.copytree(shipped_baked.repo, repo, symlinks=True, ignore=shutil.ignore_patterns("build", "layers"))
    hello_file = repo / "bakes" / "hello.toml"
    hello_file.write_text(hello_file.read_text().replace("packages = [", 'packages = ["jq", ', 1))

    baked = run_doit(repo, check=True)
    assert re.findall(r"^\[([\w-]+)\] baked ", baked.output, re.M) == ["hello"]  # on the session's real base
    hello = records(repo, "hello")[0]
    assert installed_version(image_file(repo, hello), "jq")
    assert installed_version(image_file(repo, hello), "hello-svc") == "1.0.4"
    with tarfile.open(image_layers(image_file(repo, hello))[-1]) as layer:
        names = layer.getnames()
    assert any(name.endswith("usr/bin/jq") for name in names), names
    leaked = [name for name in names if re.search(r"etc/(resolv\.conf|hostname)|var/lib/apt/lists|var/cache/apt|tmp/", name)]
    assert leaked == [], leaked
    # Same inputs, same bytes: baked again in another directory at another time, the real base
    # and hello with jq from the mirror are the same OCI images (unless the mirror published in between).
    catalogue = json.loads(run_doit(repo, "images", "--json", check=True).stdout)
    verified = run_doit(repo, "verify", "hello", env={"BAKEHOUSE_NOW": "2027-03-01T09:30:00Z"})
    if verified.returncode != 0 and mirror_packages() != mirror_before:
        pytest.skip("Debian's mirror published between the bake and its rebake: the rebake's packages differ")
    assert verified.returncode == 0, verified.output
    for bake in ("base", "hello"):
        assert f"{bake}: reproducible ({catalogue[bake][0]['digest']})" in verified.output
    assert not list(tmp_path.glob(".clone.verify*"))  # the scratch repositories are gone
    after = json.loads(run_doit(repo, "images", "--json", check=True).stdout)
    assert [(i["image_id"], i["digest"]) for b in ("base", "hello") for i in after[b]] == [
        (i["image_id"], i["digest"]) for b in ("base", "hello") for i in catalogue[b]]  # the registry as it was

    unanswered = tmp_path / "resolv.conf"
    unanswered.write_text("nameserver 127.0.0.254\n")  # loopback, where no DNS server listens
    hello_file.write_text(hello_file.read_text().replace('"jq", ', '"jq", "tree", ', 1))
    failed = run_doit(repo, "bake:hello", env={"BAKEHOUSE_RESOLV_CONF": str(unanswered)})
    assert failed.returncode == 1, failed.output
    assert re.search(r"^hello: apt cannot resolve [\w.-]+, which the image's apt sources name \(is DNS reachable from "
                     r"this machine\?\); nothing was recorded; full log: ", failed.output, re.M), failed.output
    assert records(repo, "hello")[0] == hello

    hello_file.write_text(hello_file.read_text().replace('"tree", ', '"jqq", ', 1))  # a misspelt name
    failed = run_doit(repo, "bake:hello")
    assert failed.returncode == 1, failed.output
    assert re.search(r"^hello: no package 'jqq' in the image's apt sources \(misspelt\? in another suite or "
                     r"repository\?\); nothing was recorded; full log: ", failed.output, re.M), failed.output
    assert records(repo, "hello")[0] == hello
