"""`rebuild_when = "updates"`, baked for real: a base made by mmdebstrap from Debian's mirror
and a test apt repository (tests/apt_repository.py, on 127.0.0.1), whose image is rebaked,
with its services, when the repository publishes a newer version of a package it has, and
for nothing else."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from apt_repository import AptRepository
from helpers import records, run_doit, write

BASE = """\
description = "a base whose updates rebake it"
template = "local-base.pkr.hcl.j2"
packages = ["base-motd"]
rebuild_when = "updates"

[source]
suite = "bookworm"
variant = "busybox"
mirror = "{sources}"
"""


def tiny_deb(out: Path, name: str, version: str) -> Path:
    tree = out / f"{name}-{version}"
    write(tree / "DEBIAN" / "control", f"""\
        Package: {name}
        Version: {version}
        Architecture: all
        Maintainer: bakehouse tests <tests@example.invalid>
        Description: a package of the test repository
    """)
    write(tree / "etc" / name, f"{name} {version}\n")
    deb = out / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)], check=True, capture_output=True)
    return deb


@pytest.fixture
def apt(tmp_path: Path) -> Iterator[AptRepository]:
    repository = AptRepository(tmp_path / "apt" / "root")
    repository.publish(tiny_deb(tmp_path, "base-motd", "1.0"))
    repository.serve()
    yield repository
    repository.stop()


def test_a_newer_version_in_a_base_source_rebakes_the_base_and_its_services_and_nothing_else_does(
    repo: Path, apt: AptRepository, tmp_path: Path
) -> None:
    sources = write(tmp_path / "sources.list", f"""\
        deb http://deb.debian.org/debian bookworm main
        deb [trusted=yes] {apt.url} stable main
    """)
    write(repo / "bakes" / "base.toml", BASE.format(sources=sources))
    run_doit(repo, check=True)
    bases = len(records(repo, "base"))  # the tiny base of the test repository, and this one

    # unchanged sources: up to date, and the index is not read again (its Release is)
    index_reads, release_reads = apt.requests("/Packages"), apt.requests("/InRelease")
    assert run_doit(repo, "plan").returncode == 0
    assert apt.requests("/Packages") == index_reads and apt.requests("/InRelease") == release_reads + 1

    # a package the base does not have: nothing to bake
    apt.publish(tiny_deb(tmp_path, "other-tool", "2.0"))
    unrelated = run_doit(repo, "plan")
    assert unrelated.returncode == 0, unrelated.output

    apt.publish(tiny_deb(tmp_path, "base-motd", "1.1"))
    plan = run_doit(repo, "plan")
    assert plan.returncode == 1
    rows = {line.split()[0]: line for line in plan.output.splitlines()[1:3]}
    assert rows["base"].split()[1] == "bake" and rows["base"].endswith("base-motd 1.0 -> 1.1 available")
    assert rows["hello"].split()[1] == "bake" and "its base 'base' will rebake first" in rows["hello"]

    result = run_doit(repo, check=True)
    assert "[base] baking" in result.output and "[hello] baking" in result.output
    shown = run_doit(repo, "images", "--packages", "base", check=True).stdout
    assert any(line.split()[:2] == ["base-motd", "1.1"] for line in shown.splitlines())
    assert run_doit(repo, "plan").returncode == 0
    assert len(records(repo, "base")) == bases + 1 and len(records(repo, "hello")) == 2

    # The cache of indexes: what a plan uses stays, what no run used for 30 days is pruned.
    cache = repo / ".bakehouse" / "cache"
    cached = [*cache.glob("indexes/*.json"), *cache.glob("updates/*.json")]
    month_ago = time.time() - 40 * 86400
    for path in cached:
        os.utime(path, (month_ago, month_ago))
    assert run_doit(repo, "plan").returncode == 0  # uses today's indexes: renews them
    pruned = run_doit(repo, "prune", "--apply", check=True).output
    removed = re.findall(r"^removed (cache/\S+), which no run has used for 30 days$", pruned, re.M)
    assert removed and len(removed) < len(cached)
    assert any(name.startswith("cache/indexes/") for name in removed)  # the index before base-motd 1.1
    index_reads = apt.requests("/Packages")
    assert run_doit(repo, "plan").returncode == 0 and apt.requests("/Packages") == index_reads  # kept: still used


def test_sources_are_read_as_apt_spells_them(tmp_path: Path) -> None:
    from bakehouse.aptrepo import DEBIAN_KEYRING, parse_sources
    from bakehouse.errors import PackageError

    keyring = write(tmp_path / "k.gpg", "")
    one_line = parse_sources(
        f"# a comment\ndeb [signed-by={keyring}] http://a.example/debian/ bookworm main contrib\n"
        "deb-src http://a.example/debian bookworm main\ndeb [trusted=yes] http://b.example stable main\n",
        "bookworm", "x",
    )
    assert [(s.url, s.suite, s.components, s.signed_by, s.trusted) for s in one_line] == [
        ("http://a.example/debian", "bookworm", ("main", "contrib"), keyring, False),
        ("http://b.example", "stable", ("main",), None, True),
    ]
    deb822 = parse_sources(
        "Types: deb\nURIs: http://c.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb-src\nURIs: http://c.example/debian\nSuites: bookworm\n", "bookworm", "x",
    )
    assert [(s.suite, s.signed_by) for s in deb822] == [
        (suite, DEBIAN_KEYRING if DEBIAN_KEYRING.is_file() else None) for suite in ("bookworm", "bookworm-updates")
    ]
    assert [(s.url, s.suite) for s in parse_sources("http://d.example/debian", "trixie", "x")] == [("http://d.example/debian", "trixie")]
    with pytest.raises(PackageError, match="x:1: not a sources line"):
        parse_sources("deb http://e.example\n", "bookworm", "x")


def test_an_update_the_bake_already_saw_offered_is_not_asked_for_again() -> None:
    from bakehouse.contents import InstalledPackage, Manifest
    from bakehouse.updates import SourcesState, update_reasons

    state = SourcesState({"S": "r2"}, lambda: (("S", {"openssl": ["3.0.15-1~deb12u1", "3.0.17-1~deb12u1"], "zlib1g": ["1:1.2.13"]}),))
    packages = (InstalledPackage("openssl", "3.0.15-1~deb12u1", "amd64"), InstalledPackage("zlib1g", "1:1.2.13", "amd64"))
    assert update_reasons(Manifest("i", "base", packages, sources_seen={"S": "r1"}), state) == [
        "openssl 3.0.15-1~deb12u1 -> 3.0.17-1~deb12u1 available"
    ]
    # baked while S already offered 3.0.17 (its Release then was r2) and kept 3.0.15: a pin
    assert update_reasons(Manifest("i", "base", packages, sources_seen={"S": "r2"}), state) == []
