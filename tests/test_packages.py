"""Package resolution: versions come from the .deb's control data, newest by Debian order."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bakehouse.debpkg import build_deb, find_source_packages
from bakehouse.errors import PackageError
from bakehouse.packages import resolve_packages
from bakehouse.project import Project


def make_deb(directory: Path, file_name: str, package: str, version: str) -> Path:
    tree = directory / f"tree-{package}-{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: tests <tests@example.invalid>\nDescription: test package\n"
    )
    output = directory / file_name
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(output)], check=True, capture_output=True)
    return output


def test_the_newest_version_wins_by_debian_order_not_by_file_name(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    make_deb(dist, "svc-a.deb", "svc", "1.0.9")
    make_deb(dist, "svc-b.deb", "svc", "1.0.10")
    make_deb(dist, "svc-c.deb", "svc", "1.0.11~rc1")
    make_deb(dist, "svc-z.deb", "svc", "1.0.10~rc1")
    make_deb(dist, "other_9.9_all.deb", "tool", "2:0.1")
    resolved = resolve_packages(Project.at(tmp_path), "bakes/x.toml", ("dist/*.deb",), ())
    assert [(p.name, p.version, p.path.name if p.path else None) for p in resolved] == [
        ("svc", "1.0.11~rc1", "svc-c.deb"),
        ("tool", "2:0.1", "other_9.9_all.deb"),
    ]
    assert all(p.sha256 and len(p.sha256) == 64 for p in resolved)


def test_pinned_and_unpinned_names(tmp_path: Path) -> None:
    resolved = resolve_packages(Project.at(tmp_path), "bakes/x.toml", ("curl=7.88.1-10+deb12u8", "jq"), ())
    assert [(p.spec, p.origin) for p in resolved] == [("curl=7.88.1-10+deb12u8", "pinned"), ("jq", "unpinned")]


@pytest.mark.parametrize("spec", ["curl=`id`", "curl=1.0\nfoo", "curl=${x}", 'curl="1"', "-curl", "c"])
def test_specs_a_shell_or_hcl_would_read_are_refused(tmp_path: Path, spec: str) -> None:
    with pytest.raises(PackageError, match=r"^bakes/x\.toml: packages: "):
        resolve_packages(Project.at(tmp_path), "bakes/x.toml", (spec,), ())


def test_a_package_built_here_is_known_before_it_is_built_and_its_build_is_reproducible(tmp_path: Path) -> None:
    source = tmp_path / "packages" / "svc"
    (source / "DEBIAN").mkdir(parents=True)
    (source / "DEBIAN" / "control").write_text(
        "Package: svc\nVersion: 2.0\nArchitecture: all\nMaintainer: t <t@example.invalid>\nDescription: t\n"
    )
    (source / "payload").write_text("content\n")
    project = Project.at(tmp_path)
    (package,) = find_source_packages(project)
    (before,) = resolve_packages(project, "bakes/x.toml", ("dist/svc_*.deb",), (package,))
    assert (before.name, before.version, before.origin) == ("svc", "2.0", "source")
    assert not package.output.exists()

    first = build_deb(package).read_bytes()
    (source / "payload").touch()  # a new checkout: same content, new mtimes
    assert build_deb(package).read_bytes() == first
    (after,) = resolve_packages(project, "bakes/x.toml", ("dist/svc_*.deb",), (package,))
    assert after == before


def test_stale_builds_of_a_package_built_here_are_ignored(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    make_deb(dist, "svc_9.0_all.deb", "svc", "9.0")  # left over from before a version was lowered
    source = tmp_path / "packages" / "svc"
    (source / "DEBIAN").mkdir(parents=True)
    (source / "DEBIAN" / "control").write_text(
        "Package: svc\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.invalid>\nDescription: t\n"
    )
    project = Project.at(tmp_path)
    (resolved,) = resolve_packages(project, "bakes/x.toml", ("dist/svc_*.deb",), find_source_packages(project))
    assert resolved.version == "1.0"
