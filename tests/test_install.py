"""bakehouse used as another project uses it: a wheel built from this checkout, installed into
a fresh venv (its dependencies from PyPI), `doit init` in an empty folder, the starter baked
(on the tests' tiny busybox base: the same script makes it from the installed wheel as makes
the real minbase base, which tests/test_main_job.py bakes), and the plan up to date afterwards.
Then an upgrade whose built-in template changed rebakes what uses it, and the reason says so."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bakehouse import __version__
from conftest import TINY_BASE
from helpers import PROJECT, records

NEXT_VERSION = "99.0.0"


def checkout_copy(into: Path) -> Path:
    """The checkout's files as git knows them (what a git URL would give pip), symlinks kept."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=PROJECT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = PROJECT / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
    return into


def build_wheel(source: Path, into: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
                    "-w", str(into), str(source)], check=True, capture_output=True)
    (wheel,) = into.glob("bakehouse-*.whl")
    return wheel


def doit(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "doit"), *args], cwd=cwd, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_a_wheel_inits_a_repository_that_bakes_and_an_upgrade_says_which_template_it_changed(tmp_path: Path) -> None:
    wheel = build_wheel(checkout_copy(tmp_path / "src"), tmp_path / "wheels")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)],
                   check=True, capture_output=True)

    made = doit(venv, tmp_path, "init", "ours")
    assert made.returncode == 0, made.stdout
    repo = tmp_path / "ours"
    assert not (repo / "templates").exists()  # the built-in templates, from the installed wheel
    (repo / "bakes" / "base.toml").write_text(TINY_BASE)
    baked = doit(venv, repo)
    assert baked.returncode == 0, baked.stdout
    assert re.findall(r"^\[([\w-]+)\] baked ", baked.stdout, re.M) == ["base", "hello"]
    plan = doit(venv, repo, "plan")
    assert (plan.returncode, plan.stdout.splitlines()[-1]) == (0, "0 to bake, 2 up to date"), plan.stdout
    assert records(repo, "hello")[0]["bakehouse_version"] == __version__

    # An upgrade of bakehouse whose built-in service template changed.
    upgrade = tmp_path / "src-next"
    shutil.copytree(tmp_path / "src", upgrade, symlinks=True)
    init = upgrade / "lib" / "bakehouse" / "__init__.py"
    init.write_text(init.read_text().replace(f'__version__ = "{__version__}"', f'__version__ = "{NEXT_VERSION}"'))
    template = upgrade / "lib" / "bakehouse" / "templates" / "local-service.pkr.hcl.j2"
    template.write_text(template.read_text() + "{# changed in the upgrade #}\n")
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "--no-deps",
                    "--force-reinstall", str(build_wheel(upgrade, tmp_path / "wheels-next"))],
                   check=True, capture_output=True)

    plan = doit(venv, repo, "plan")
    assert plan.returncode == 1
    assert re.search(r"^base +keep +base-\S+ +up to date$", plan.stdout, re.M), plan.stdout
    assert re.search(rf"^hello +bake .* template local-service\.pkr\.hcl\.j2 changed with bakehouse "
                     rf"{re.escape(__version__)} -> {NEXT_VERSION}$", plan.stdout, re.M), plan.stdout
    info = doit(venv, repo, "info", "bake:hello").stdout
    assert f"template: local-service.pkr.hcl.j2 (built in, bakehouse {NEXT_VERSION})" in info


def test_a_wheel_built_from_a_git_url_holds_the_templates_and_the_starter(tmp_path: Path) -> None:
    """What `pip install git+URL` builds: the committed tree, cloned by pip (here this checkout's
    HEAD, by a file:// URL: no network), with the built-in templates and `doit init`'s starter
    (links in the checkout, files in the wheel)."""
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
                    "-w", str(wheels), f"git+file://{PROJECT}"], check=True, capture_output=True)
    (wheel,) = wheels.glob("bakehouse-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        postinst = archive.getinfo("bakehouse/starter/local/packages/hello-svc/DEBIAN/postinst")
    for name in ("bakehouse/templates/local-base.pkr.hcl.j2", "bakehouse/templates/scripts/install-packages.sh",
                 "bakehouse/starter/local/bakes/base.toml", "bakehouse/starter/aws/bakes/aws-base.toml",
                 "bakehouse/starter/common/dodo.py", "bakehouse/starter/common/gitignore"):
        assert name in names, name
    assert postinst.external_attr >> 16 & 0o111  # still executable
