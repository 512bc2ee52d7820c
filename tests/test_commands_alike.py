"""The commands behave alike: options before or after the names, a misspelt task answered with
the nearest one, one vocabulary of durations, each bad value named with what is expected, and
nothing done in silence (verify with nothing to verify, a busy port)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from helpers import free_port, run_doit, write


@pytest.mark.parametrize("args", [["bake:helo"], ["hello"], ["bake", "hello"]])
def test_a_task_that_does_not_exist_gets_the_nearest_one(repo: Path, args: list[str]) -> None:
    run = run_doit(repo, *args)
    wanted = "bake:helo" if args == ["bake:helo"] else "hello"
    assert run.returncode == 3
    assert run.output == f"ERROR: doit: no task {wanted}; did you mean bake:hello?\n"


@pytest.mark.parametrize("command", ["images", "plan", "prune"])
def test_options_may_come_after_the_names(repo: Path, command: str) -> None:
    before = run_doit(repo, command, "--json", "hello")
    after = run_doit(repo, command, "hello", "--json")
    assert after.returncode == before.returncode and before.returncode in (0, 1), after.output
    assert json.loads(after.stdout) == json.loads(before.stdout)


@pytest.mark.parametrize(("args", "line"), [
    (["serve", "--port", "abc"], "doit serve: --port must be a whole number, not 'abc'"),
    (["images", "--limit=x"], "doit images: --limit must be a whole number, not 'x'"),
])
def test_a_value_of_the_wrong_kind_is_named_with_what_is_expected(repo: Path, args: list[str], line: str) -> None:
    run = run_doit(repo, *args)
    assert run.returncode == 3
    assert run.output == f"ERROR: {line}\n"


@pytest.mark.parametrize(("setting", "line"), [
    ('timeout = "30d"', "bakes/hello.toml: timeout: '30d' is longer than a week (168h)"),
    ('timeout = "soon"', "bakes/hello.toml: timeout: 'soon' is not a duration such as \"90s\", \"45m\", \"2h\", \"14d\" or \"2w\""),
    ('timeout = "0m"', "bakes/hello.toml: timeout: '0m' is no time at all; give at least \"1s\""),
])
def test_durations_share_one_vocabulary(repo: Path, setting: str, line: str) -> None:
    hello = repo / "bakes" / "hello.toml"
    text = hello.read_text()
    hello.write_text(f"{setting}\n{text}")
    run = run_doit(repo, "plan")
    assert run.returncode == 3 and run.output == f"ERROR: {line}\n", run.output
    for good in ('timeout = "2d"', 'timeout = "90m"', 'timeout = "1w"'):  # the units min_age knows, too
        hello.write_text(f"{good}\n{text}")
        assert run_doit(repo, "plan").returncode in (0, 1)


def test_verify_with_no_local_bake_says_so(aws_repo: Path, aws_env: dict[str, str]) -> None:
    run = run_doit(aws_repo, "verify", env=aws_env)  # AMI bakes only: nothing is rebaked
    assert run.returncode == 0
    assert run.output == "nothing to verify: bakes/ has no local bakes (doit verify rebakes local images)\n"


def test_serve_on_a_busy_port_is_one_line_and_never_says_serving(repo: Path) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", port))
        taken.listen(1)
        run = run_doit(repo, "serve", "--port", str(port))
    assert run.returncode == 3
    assert run.output == f"ERROR: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_a_program_named_packer_that_prints_no_version_is_named(repo: Path, tmp_path: Path) -> None:
    fake = write(tmp_path / "bin" / "packer", "#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    run = run_doit(repo, "bake:hello", "--rebake", env={"PATH": f"{fake.parent}:{os.environ['PATH']}"})
    assert run.returncode != 0 and "Traceback" not in run.output
    assert f"{fake} is not packer, or is broken: `{fake} version` printed nothing" in run.output, run.output


def test_rebake_before_the_names_rebakes_every_bake_of_the_run(repo: Path) -> None:
    run = run_doit(repo, "--rebake")
    assert run.returncode == 0, run.output
    assert "[base] baking " in run.output and "[hello] baking " in run.output
    assert "forced (--rebake)" in run.output
    again = run_doit(repo)  # the option is the run's, not remembered
    assert "baking" not in again.output


def test_an_unreachable_endpoint_is_never_a_silent_wait(aws_repo: Path, aws_env: dict[str, str]) -> None:
    """Each attempt boto3 will make again is said as it fails; the last is the one-line error."""
    env = {**aws_env, "AWS_ENDPOINT_URL_EC2": "http://127.0.0.1:9", "BAKEHOUSE_AWS_MAX_ATTEMPTS": "3"}
    run = run_doit(aws_repo, "plan", env=env)
    assert run.returncode == 2, run.output
    said = [line for line in run.output.splitlines() if line.startswith("waiting for AWS:")]
    assert said[:2] == [
        f"waiting for AWS: EC2 DescribeImages in us-east-1 at http://127.0.0.1:9: Could not connect to the endpoint "
        f"URL; attempt {n} of 3, trying again" for n in (1, 2)], run.output
    assert "attempt 3 of 3" not in run.output  # the last attempt's failure is the error, not a wait


def test_ssh_against_an_emulator_is_said_before_packer_waits_for_it(aws_repo: Path, aws_env: dict[str, str]) -> None:
    """The shipped AWS example logs in over SSH; against moto (not AWS) packer would wait for
    SSH for minutes. The bake says why it cannot work, in one line, before packer starts; the
    plan (and the key) stay as they are."""
    base = aws_repo / "bakes" / "aws-base.toml"
    base.write_text(base.read_text().replace('communicator = "none"', 'communicator = "ssh"', 1))
    endpoint = aws_env["AWS_ENDPOINT_URL_EC2"]
    line = (f'bakes/aws-base.toml: communicator = "ssh" against {endpoint}, which is not AWS: an emulator\'s '
            "instances run nothing to log in to, so packer would wait for SSH until it gives up; set "
            'communicator = "none" to bake against it')
    plan = run_doit(aws_repo, "plan", "aws-base", env=aws_env)
    assert plan.returncode == 1 and line not in plan.output, plan.output
    baked = run_doit(aws_repo, "bake:aws-base", env=aws_env)
    assert baked.returncode != 0 and line in baked.output and "Waiting for SSH" not in baked.output, baked.output


def _on_a_terminal(repo: Path, args: list[str], env: dict[str, str]) -> str:
    """`doit ARGS` with its output on a pseudo-terminal, as in an interactive shell."""
    import pty
    import sys

    pid, fd = pty.fork()
    if pid == 0:  # the child: doit, on the terminal
        os.chdir(repo)
        os.execve(sys.executable, [sys.executable, "-m", "doit", *args], {**os.environ, **env})
    output = b""
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # the terminal closed: doit ended
            break
        if not data:
            break
        output += data
    os.waitpid(pid, 0)
    return output.decode(errors="replace")


def test_a_bake_says_which_step_of_how_many_it_is_at_in_colour_only_on_a_terminal(repo: Path) -> None:
    piped = run_doit(repo, "bake:hello", "--rebake", check=True).output
    steps = [line for line in piped.splitlines() if " step " in line and line.startswith("[hello] step")]
    assert [line.rsplit(" (", 1)[0] for line in steps] == [
        "[hello] step 1/3 mounting the base", "[hello] step 2/3 installing packages", "[hello] step 3/3 writing the image"]
    assert all(line.endswith(")") and line.rsplit(" (", 1)[1][:-1].count(":") == 1 for line in steps)  # elapsed m:ss
    assert "\x1b[" not in piped  # piped: no colour
    shown = _on_a_terminal(repo, ["bake:hello", "--rebake"], {})
    assert "\x1b[1;36m[hello] step 1/3 mounting the base (" in shown
    plain = _on_a_terminal(repo, ["bake:hello", "--rebake"], {"NO_COLOR": "1"})
    assert "[hello] step 1/3 mounting the base (" in plain and "\x1b[" not in plain


def test_commands_find_the_repository_from_a_folder_below_it(repo: Path) -> None:
    below = repo / "bakes"
    at_root = run_doit(repo, "plan", "hello")
    from_below = run_doit(below, "plan", "hello")
    assert from_below.returncode == at_root.returncode == 1, from_below.output  # hello is not baked yet
    assert from_below.output == at_root.output
    assert "bake:hello" in run_doit(below, "list", "--all", check=True).output
    assert "-- bake:base" in run_doit(below, "bake:base", check=True).output  # up to date, as at the root
    assert not (below / ".bakehouse").exists() and not list(below.glob(".doit.db*"))


def test_outside_any_repository_is_one_line(tmp_path: Path) -> None:
    for args in (["plan"], [], ["list"]):
        run = run_doit(tmp_path, *args)
        assert run.returncode == 3
        assert run.output == ("ERROR: doit: no dodo.py here or in any folder above; run doit inside a "
                              "bakehouse repository (`doit init` makes one in an empty folder)\n"), args
