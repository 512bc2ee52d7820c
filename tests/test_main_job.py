"""The README's main job as a new user runs it: the shipped bakes as they are, on the real
minbase base from the host's Debian mirror (not the tests' tiny busybox base, which once hid
a failure of this job)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from helpers import PROJECT, image_file, installed_version, records, run_doit


def test_the_shipped_example_bakes_its_real_base_and_hello_then_nothing(tmp_path: Path) -> None:
    repo = tmp_path / "clone"
    for part in ("bakes", "templates", "packages"):
        shutil.copytree(PROJECT / part, repo / part)
    shutil.copy(PROJECT / "dodo.py", repo / "dodo.py")

    first = run_doit(repo, check=True)
    assert re.findall(r"^\[([\w-]+)\] baked ", first.output, re.M) == ["base", "hello"]
    (base,), (hello,) = records(repo, "base"), records(repo, "hello")
    assert installed_version(image_file(repo, base), "ca-certificates")
    assert installed_version(image_file(repo, base), "apt")  # minbase, not busybox
    assert installed_version(image_file(repo, hello), "hello-svc") == "1.0.4"
    assert hello["base_image"] == base["image_id"]

    second = run_doit(repo, check=True)
    assert re.findall(r"^\[([\w-]+)\] baked ", second.output, re.M) == []
    assert f"bake:hello: up to date: {hello['image_id']}" in second.output
