"""RPM packages built here: packages/<name>/<name>.spec, built by `doit package:<name>` with
Debian's rpmbuild, known to the plan by a hash of its source before it is built; and refused in
one line by a bake whose images install .deb packages."""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers import run_doit, write

SPEC = """\
Name: hello-rpm
Version: {version}
Release: 1
Summary: hello, as an RPM
License: MIT
BuildArch: noarch
AutoReqProv: no
Source0: hello-rpm.sh

%description
hello, as an RPM

%install
mkdir -p %{{buildroot}}/opt/hello-rpm
cp %{{SOURCE0}} %{{buildroot}}/opt/hello-rpm/hello-rpm.sh

%files
/opt/hello-rpm/hello-rpm.sh
"""


def rpm_repo(empty_repo: Path, version: str = "1.0.4") -> Path:
    write(empty_repo / "packages" / "hello-rpm" / "hello-rpm.spec", SPEC.format(version=version))
    write(empty_repo / "packages" / "hello-rpm" / "hello-rpm.sh", "#!/bin/sh\necho hello\n")
    return empty_repo


def test_a_spec_is_built_by_its_package_task_into_dist(empty_repo: Path) -> None:
    repo = rpm_repo(empty_repo)
    assert "package:hello-rpm" in run_doit(repo, "list", "--all", check=True).output
    run_doit(repo, "package:hello-rpm", check=True)
    built = repo / "dist" / "hello-rpm-1.0.4-1.noarch.rpm"
    query = subprocess.run(["rpm", "-qp", "--qf", "%{NAME} %{VERSION}-%{RELEASE}\n", "-l", str(built)],
                           capture_output=True, text=True, check=True).stdout
    assert query.splitlines() == ["hello-rpm 1.0.4-1", "/opt/hello-rpm/hello-rpm.sh"]
    assert "-- package:hello-rpm" in run_doit(repo, "package:hello-rpm", check=True).output  # up to date

    (repo / "packages" / "hello-rpm" / "hello-rpm.spec").write_text(SPEC.format(version="1.0.5"))
    run_doit(repo, "package:hello-rpm", check=True)
    assert sorted(path.name for path in (repo / "dist").iterdir()) == ["hello-rpm-1.0.5-1.noarch.rpm"]


def test_a_bake_of_debian_images_refuses_an_rpm_in_one_line(empty_repo: Path) -> None:
    repo = rpm_repo(empty_repo)
    write(repo / "bakes" / "base.toml", 'template = "local-base.pkr.hcl.j2"\npackages = ["dist/hello-rpm-*.rpm"]\n\n'
          '[source]\nsuite = "bookworm"\n')
    line = "bakes/base.toml: packages: hello-rpm is an RPM package, and base's local images install Debian packages (.deb)"
    plan = run_doit(repo, "plan")
    assert plan.returncode == 2 and f"error   -      {line}" in plan.output, plan.output  # cannot be planned
    baked = run_doit(repo, "bake:base")
    assert baked.returncode != 0 and line in baked.output and "Traceback" not in baked.output, baked.output
    assert not (repo / ".bakehouse" / "records").exists() or not any((repo / ".bakehouse" / "records").rglob("*.json"))


def test_a_spec_rpmspec_cannot_read_is_one_line(empty_repo: Path) -> None:
    write(empty_repo / "packages" / "broken" / "broken.spec", "Name: broken\n")
    run = run_doit(empty_repo, "list")
    assert run.returncode == 3
    assert run.output.startswith("ERROR: packages/broken/broken.spec: rpmspec cannot read it: "), run.output
    assert "Traceback" not in run.output


def test_the_rpm_image_contents_script_lists_what_an_rpmdb_holds(empty_repo: Path, tmp_path: Path) -> None:
    """scripts/image-contents-rpm.sh, run on a root whose rpmdb holds the package built here
    (Debian's rpm installs it there; no RPM distribution is reachable from here)."""
    from bakehouse.project import BUILT_IN_TEMPLATES

    repo = rpm_repo(empty_repo)
    run_doit(repo, "package:hello-rpm", check=True)
    root = tmp_path / "root"
    subprocess.run(["rpm", "--root", str(root), "--initdb"], check=True)
    subprocess.run(["rpm", "--root", str(root), "-i", "--nodeps", str(repo / "dist" / "hello-rpm-1.0.4-1.noarch.rpm")],
                   check=True, capture_output=True)
    listed = subprocess.run(["sh", str(BUILT_IN_TEMPLATES / "scripts" / "image-contents-rpm.sh"), str(root)],
                            capture_output=True, text=True, check=True).stdout
    assert listed.splitlines() == ["hello-rpm\t1.0.4-1\tnoarch\thello-rpm\t1.0.4-1"]
