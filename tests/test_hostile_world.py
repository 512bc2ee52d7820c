"""What a hostile or unlucky world does: bad tools, bad state, bad endpoints, bad values.
Each ends in one clear line (never a traceback) and records nothing half-made.

The AWS cases need no AWS account: the endpoints here are servers of the test's own on
127.0.0.1 that answer badly or not at all (they stand in for a broken or hung endpoint)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bakehouse import __version__
from helpers import PROJECT, own_template, records, run_doit, serve_directory, write


def one_line_error(output: str, expected: str) -> None:
    assert expected in output, output
    assert "Traceback" not in output, output


def test_a_packer_that_cannot_run_is_one_line(repo: Path, tmp_path: Path) -> None:
    broken = write(tmp_path / "bin" / "packer", "not a program\n")
    broken.chmod(0o755)
    broken.write_bytes(b"\x7fELF garbage")
    env = {"PATH": f"{broken.parent}:{os.environ['PATH']}"}
    run = run_doit(repo, "bake:hello", env=env)
    assert run.returncode == 1
    one_line_error(run.output, f"'{broken}' cannot run (Exec format error); install packer")
    assert records(repo, "hello") == []


@pytest.mark.parametrize("damage", [
    {"locations": "images/hello/x.tar.zst"},
    {"locations": {"elsewhere": "x"}},
    {"packages": ["hello-svc"]},
    {"created": 20261201},
    {"sequence": "3"},
])
def test_a_record_of_the_right_syntax_but_the_wrong_shape_is_named(repo: Path, damage: dict) -> None:
    run_doit(repo, "bake:hello", check=True)
    (path,) = (repo / ".bakehouse" / "records" / "hello").glob("*.json")
    path.write_text(json.dumps({**json.loads(path.read_text()), **damage}))
    for command in (("plan",), ("images",), ("bake:hello",)):
        run = run_doit(repo, *command)
        assert run.returncode in (1, 2), run.output
        one_line_error(run.output, f"{path}: corrupt image record")


def test_a_deb_outside_the_repository_is_one_line(repo: Path) -> None:
    bake = repo / "bakes" / "hello.toml"
    bake.write_text(bake.read_text().replace('"dist/hello-svc_*.deb"', '"/tmp/hello-svc_1.0.4_all.deb"'))
    run = run_doit(repo, "plan")
    assert run.returncode == 2
    one_line_error(run.output, "bakes/hello.toml: packages: '/tmp/hello-svc_1.0.4_all.deb' is outside the repository")


def test_a_timeout_longer_than_a_week_is_one_line(repo: Path) -> None:
    bake = repo / "bakes" / "hello.toml"
    bake.write_text('timeout = "99999999999999h"\n' + bake.read_text())
    run = run_doit(repo, "plan")
    assert run.returncode == 3
    one_line_error(run.output, "bakes/hello.toml: timeout: '99999999999999h' is longer than a week (168h)")


def test_an_endpoint_without_a_scheme_is_one_line(aws_repo: Path, aws_env: dict[str, str]) -> None:
    env = {**aws_env, "AWS_ENDPOINT_URL_EC2": "127.0.0.1:5000"}
    run = run_doit(aws_repo, "plan", env=env)
    assert run.returncode == 2
    one_line_error(run.output, "AWS_ENDPOINT_URL_EC2='127.0.0.1:5000' is not a URL such as http://127.0.0.1:5000")


def test_an_endpoint_answering_with_an_html_page_is_one_line(aws_repo: Path, aws_env: dict[str, str], tmp_path: Path) -> None:
    server, url = serve_directory(tmp_path, tmp_path / "http.log")  # POST: 501 and an HTML page
    try:
        env = {**aws_env, "AWS_ENDPOINT_URL_EC2": url, "BAKEHOUSE_AWS_MAX_ATTEMPTS": "1"}
        run = run_doit(aws_repo, "plan", env=env)
    finally:
        server.kill()
        server.wait()
    assert run.returncode == 2
    (row,) = [line for line in run.output.splitlines() if line.startswith("aws-base")]
    one_line_error(row, f"AWS DescribeImages in us-east-1: {url} answered with something that is not an AWS response")
    assert len(row) < 500, row


def test_an_endpoint_that_never_answers_is_bounded_and_named(aws_repo: Path, aws_env: dict[str, str]) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        env = {**aws_env, "AWS_ENDPOINT_URL_EC2": url, "BAKEHOUSE_AWS_MAX_ATTEMPTS": "1",
               "BAKEHOUSE_AWS_READ_TIMEOUT": "1"}
        run = run_doit(aws_repo, "plan", env=env)
    assert run.returncode == 2
    one_line_error(run.output, f"{url}/ did not answer in time, on every attempt")


def test_doit_info_of_a_misspelt_bake_is_one_line(repo: Path) -> None:
    run = run_doit(repo, "info", "bake:helo")
    assert run.returncode == 3
    one_line_error(run.output, "ERROR: no task 'bake:helo' (did you mean 'bake:hello'?)")


@pytest.mark.parametrize("args, line", [
    (["images", "--sbom"], "doit images: option --sbom requires argument; `doit help images` lists its options"),
    (["plan", "--matrix"], "doit plan: option --matrix requires argument; `doit help plan` lists its options"),
    (["prune", "--aply"], "doit prune: option --aply not recognized; `doit help prune` lists its options"),
    (["info", "--json", "bake:base"], "doit info: option --json not recognized; `doit help info` lists its options"),
    (["--bogus"], "doit: option --bogus not recognized; `doit help run` lists its options"),
    (["bake:base", "--bogus"], "doit: option --bogus not recognized for a task; `doit help TASK` lists its options"),
])
def test_a_bad_option_is_one_line(empty_repo: Path, args: list[str], line: str) -> None:
    """doit's own message for it lists the repr of every option it parsed with. (The shipped
    base is there for `bake:base`'s options; nothing bakes.)"""
    shutil.copy(PROJECT / "bakes" / "base.toml", empty_repo / "bakes" / "base.toml")
    run = run_doit(empty_repo, *args)
    assert run.returncode == 3
    assert run.output == f"ERROR: {line}\n"


def test_doit_info_of_a_bake_reads_like_a_dry_run(repo: Path) -> None:
    run = run_doit(repo, "info", "bake:hello")
    assert run.returncode == 1
    assert run.output.splitlines() == [
        "bake:hello: hello-svc on the base image",
        "builds on: base",
        f"template: local-service.pkr.hcl.j2 (built in, bakehouse {__version__})",
        "status: would bake because:",
        "  - no image yet",
    ]
    run_doit(repo, "bake:hello", check=True)
    (record,) = records(repo, "hello")
    run = run_doit(repo, "info", "bake:hello")
    assert run.returncode == 0
    assert run.output.splitlines()[-1] == (
        f"status: up to date: {record['image_id']} (local: {record['locations']['local']})"
    )
    assert "kwargs" not in run.output and "verbosity" not in run.output


def test_links_in_a_package_tree_are_packed_as_links(repo: Path) -> None:
    tree = repo / "packages" / "hello-svc" / "opt" / "hello-svc"
    (tree / "host-file").symlink_to("/etc/hostname")  # points into the image, not at this host
    (tree / "dangling").symlink_to("/opt/hello-svc/not-there")
    (tree / "etc").symlink_to("/etc")
    run = run_doit(repo, "bake:hello", check=True)
    assert "Traceback" not in run.output
    (deb,) = (repo / "dist").glob("hello-svc_*.deb")
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], check=True, capture_output=True, text=True).stdout
    assert "./opt/hello-svc/host-file -> /etc/hostname" in listing
    assert "./opt/hello-svc/dangling -> /opt/hello-svc/not-there" in listing
    assert "./opt/hello-svc/etc -> /etc" in listing and "./opt/hello-svc/etc/" not in listing
    key = records(repo, "hello")[0]["key"]

    (tree / "dangling").unlink()
    (tree / "dangling").symlink_to("/opt/hello-svc/elsewhere")  # a link's target is content
    assert "hello-svc 1.0.4 rebuilt with other content" in run_doit(repo, "info", "bake:hello").output
    run_doit(repo, "bake:hello", check=True)
    assert records(repo, "hello")[0]["key"] != key
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], check=True, capture_output=True, text=True).stdout
    assert "./opt/hello-svc/dangling -> /opt/hello-svc/elsewhere" in listing


def test_a_file_name_that_is_not_utf8_is_packed(repo: Path) -> None:
    tree = repo / "packages" / "hello-svc" / "opt" / "hello-svc"
    (Path(os.fsdecode(bytes(tree) + b"/caf\xe9.txt"))).write_text("latin-1 name\n")
    run = run_doit(repo, "bake:hello", check=True)
    assert "Traceback" not in run.output
    (deb,) = (repo / "dist").glob("hello-svc_*.deb")
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], check=True, capture_output=True).stdout
    assert b"./opt/hello-svc/caf\\351.txt" in listing  # tar shows the byte 0xe9 escaped


def test_a_control_file_in_another_encoding_is_one_line(repo: Path) -> None:
    control = repo / "packages" / "hello-svc" / "DEBIAN" / "control"
    control.write_bytes(control.read_bytes() + "Description-fr: caf\xe9\n".encode("latin-1"))
    run = run_doit(repo, "plan")
    assert run.returncode == 3
    one_line_error(run.output, "packages/hello-svc/DEBIAN/control: not UTF-8")


def test_a_template_expression_that_fails_on_this_bakes_values_is_one_line(repo: Path) -> None:
    template = own_template(repo, "local-service.pkr.hcl.j2")
    template.write_text(template.read_text() + "# {{ (vars.environment | length) / 0 }}\n")
    run = run_doit(repo, "bake:hello")
    assert run.returncode == 1
    one_line_error(run.output, "templates/local-service.pkr.hcl.j2:")
    assert "rendering failed: ZeroDivisionError: division by zero" in run.output
    assert records(repo, "hello") == []


def test_a_small_dev_shm_falls_back_to_tmpdir(repo: Path, tmp_path: Path) -> None:
    """An 8 MiB /dev/shm (a container's is 64 MiB), in a mount namespace of this test's own,
    so the machine's /dev/shm is untouched."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    shell = f"mount -t tmpfs -o size=8m tmpfs /dev/shm && exec {sys.executable} -m doit bake:hello"
    run = subprocess.run(["unshare", "--mount", "sh", "-c", shell], cwd=repo, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "TMPDIR": str(scratch)})
    assert run.returncode == 0, run.stdout
    assert f"MiB free; working in {scratch}" in run.stdout
    assert len(records(repo, "hello")) == 1 and list(scratch.iterdir()) == []


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00", "1969-12-31T23:59:59Z"])
def test_a_clock_override_out_of_range_is_one_line(repo: Path, moment: str) -> None:
    """Both ends, and just before the epoch: a time whose UTC is not a date datetime can
    hold (year 10000, year 0) or a day before SOURCE_DATE_EPOCH's start."""
    for command in ("plan", "prune", "images"):
        run = run_doit(repo, command, env={"BAKEHOUSE_NOW": moment})
        assert run.returncode == 3, run.output
        one_line_error(run.output, f"BAKEHOUSE_NOW='{moment}' is out of range: give a time from 1970-01-01 to "
                                   "9998-12-31 (UTC)")


@pytest.mark.parametrize("moment", ["9998-12-31T23:59:59Z", "1970-01-01T00:00:00Z"])
def test_a_clock_override_at_either_end_of_the_range_plans_and_prunes(repo: Path, moment: str) -> None:
    for command in ("plan", "prune", "images", "info"):
        run = run_doit(repo, command, *(["bake:hello"] if command == "info" else []), env={"BAKEHOUSE_NOW": moment})
        assert run.returncode in (0, 1) and "Traceback" not in run.output, run.output


@pytest.mark.parametrize(("args", "line"), [
    ([""], "doit: argument 1 is empty; an unset variable? Give it a value, or leave the argument out"),
    (["plan", "--matrix", ""], "doit: argument 3 is empty (the value of --matrix); an unset variable? Give it a "
                               "value, or leave the argument out"),
    (["bake:hello", ""], "doit: argument 2 is empty; an unset variable? Give it a value, or leave the argument out"),
])
def test_an_empty_argument_is_one_line(repo: Path, args: list[str], line: str) -> None:
    """doit itself indexes every argument's first character before any command runs; the
    repository's pyproject.toml names bakehouse's loader, which doit imports first."""
    write(repo / "pyproject.toml", '[tool.doit]\nloader = "bakehouse"\n')
    run = run_doit(repo, *args)
    assert run.returncode == 3
    assert run.output == f"ERROR: {line}\n"
    assert run_doit(repo, "plan").returncode in (0, 1)  # the loader loads dodo.py as doit's own does


def test_a_repository_s_own_template_file_overrides_the_built_in_one_and_info_says_so(repo: Path) -> None:
    run_doit(repo, "bake:hello", check=True)
    script = own_template(repo, "scripts/install-packages.sh")  # the same bytes: nothing to rebake yet
    assert run_doit(repo, "plan", "hello").returncode == 0
    info = run_doit(repo, "info", "bake:hello").output.splitlines()
    assert "own files: templates/scripts/install-packages.sh (the repository's own, in place of the built-in one)" in info
    shebang, rest = script.read_text().split("\n", 1)
    script.write_text(f'{shebang}\necho "installed by our own script"\n{rest}')
    plan = run_doit(repo, "plan", "hello")
    assert plan.returncode == 1 and "template file scripts/install-packages.sh changed" in plan.output
    run_doit(repo, "bake:hello", check=True)
    log = run_doit(repo, "log", records(repo, "hello")[0]["image_id"], check=True)
    assert "installed by our own script" in log.output  # the own file is the one packer ran
    script.unlink()  # back to the built-in script: the image of its bytes is the one in use again
    assert run_doit(repo, "plan", "hello").returncode == 0
