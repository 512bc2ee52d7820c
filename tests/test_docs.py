"""The documentation cannot drift: the site builds with `mkdocs build --strict`, the bake-key
reference is made from the tables the loaders check, and every console example of the README
and docs/ runs, in order, in one shell per page, where the page says (its setup), and prints
what the page shows (tests/docs_examples.py says how output is matched)."""

from __future__ import annotations

import os
import queue
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from docs_examples import commands, hidden_prompts, matches, pages, setup_of
from helpers import PROJECT, run_doit

BIN = Path(sys.executable).parent  # doit, bakehouse-image, mkdocs: this environment's
SETUPS = ("new folder", "starter", "starter baked", "starter served")
PAGES = [page for page in pages(PROJECT) if commands(page.read_text())]


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    built = subprocess.run([str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
                           cwd=PROJECT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "site" / "tutorial" / "index.html").is_file()


def test_every_console_example_is_run_and_says_where() -> None:
    for page in pages(PROJECT):
        assert hidden_prompts(page.read_text()) == [], f"{page.relative_to(PROJECT)}: a `$ ` command outside a console block"
    for page in PAGES:
        assert setup_of(page.read_text()) in SETUPS, f"{page.relative_to(PROJECT)}: <!-- examples: ... --> is missing or unknown"


@pytest.fixture
def workspace(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """Where a page's examples run, and what its commands' text is changed by (a served page
    says `localhost:8080`; the test's server listens on a free port)."""
    setup = setup_of(request.node.callspec.params["page"].read_text()) or ""
    if setup == "new folder":
        folder = tmp_path / "work"
        folder.mkdir()
        yield folder, {}
        return
    repo = tmp_path / "starter"
    if setup == "starter":
        subprocess.run([str(BIN / "doit"), "init", str(repo)], check=True, capture_output=True)
        yield repo, {}
        return
    baked: Path = request.getfixturevalue("shipped_baked").repo  # the session's one bake of it (conftest.py)
    shutil.copytree(baked, repo, symlinks=True,
                    ignore=shutil.ignore_patterns("build", "layers"))  # the layer cache holds device nodes
    run_doit(repo, check=True)  # doit's own state names the first folder: here nothing bakes, the package is checked
    if setup != "starter served":
        yield repo, {}
        return
    from test_serve import start_server, stop

    server = start_server(repo)
    try:
        yield repo, {"localhost:8080": f"127.0.0.1:{server.port}"}
    finally:
        stop(server)


class Console:
    """One bash for a page's commands, as a reader's terminal: `cd`, variables and files carry
    from one command to the next. Each command reads nothing (stdin is /dev/null)."""

    def __init__(self, cwd: Path) -> None:
        env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "NO_COLOR": "1", "NO_MKDOCS_2_WARNING": "1"}
        env.pop("BAKEHOUSE_NOW", None)  # the reader's clock runs: the suite's, held still, would show ids it never does
        self.process = subprocess.Popen(["bash", "--noprofile", "--norc"], cwd=cwd, env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def run(self, command: str, seconds: float = 900) -> tuple[int, list[str]]:
        assert self.process.stdin is not None
        marker = f"bakehouse-docs-{secrets.token_hex(8)}"
        self.process.stdin.write(f"{{\n{command}\n}} < /dev/null 2>&1\nprintf '\\n{marker} %s\\n' $?\n")
        self.process.stdin.flush()
        output: list[str] = []
        deadline = time.monotonic() + seconds
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"`{command}` did not finish in {seconds:.0f}s:\n{''.join(output)}") from None
            if line is None:
                raise AssertionError(f"the shell ended during `{command}`:\n{''.join(output)}")
            if line.startswith(marker + " "):
                return int(line.split()[1]), "".join(output).splitlines()
            output.append(line)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(PROJECT)) for page in PAGES])
def test_the_examples_of(page: Path, workspace: tuple[Path, dict[str, str]]) -> None:
    folder, replaced = workspace
    console = Console(folder)
    try:
        for command in commands(page.read_text()):
            text = command.text
            for old, new in replaced.items():
                text = text.replace(old, new)
            status, output = console.run(text)
            where = f"{page.relative_to(PROJECT)}:{command.line}: $ {command.text}"
            shown = "\n".join(output)
            assert status == command.exit, f"{where}\nexited {status}, not {command.exit}:\n{shown}"
            assert matches(command.expected, output), (
                f"{where}\nprinted:\n{shown}\nwhere the page shows:\n" + "\n".join(command.expected))
    finally:
        console.close()


def test_the_bake_key_reference_is_made_from_the_tables_the_loaders_check() -> None:
    from bakehouse.definitions import CORE_KEYS, REPOSITORY_KEY_DOCS
    from bakehouse.keyref import names
    from bakehouse.reference import reference_page
    from bakehouse.providers import definitions
    from bakehouse.retention import POLICY_KEYS

    page = (PROJECT / "docs" / "reference" / "bake-keys.md").read_text()
    assert page == reference_page(), "docs/reference/bake-keys.md is stale: run python -m bakehouse.reference"
    accepted = {*CORE_KEYS, *names(REPOSITORY_KEY_DOCS), *POLICY_KEYS}
    for provider in definitions().values():
        accepted |= {*provider.keys, *provider.source_keys}
        assert names(provider.key_docs) == provider.keys and names(provider.source_key_docs) == provider.source_keys
    shown = set(re.findall(r"^\| `\[{0,2}(?:[a-z]+\.)?([a-z_0-9]+)\]{0,2}`", page, re.M))
    shown |= set(re.findall(r", `(?:[a-z]+\.)?([a-z_0-9]+)`", page))
    assert accepted - shown == set()


def test_the_command_reference_is_made_from_the_commands() -> None:
    from bakehouse.reference import COMMAND_ORDER, commands_page

    page = (PROJECT / "docs" / "reference" / "command-options.md").read_text()
    assert page == commands_page(), "docs/reference/command-options.md is stale: run python -m bakehouse.reference"
    sections = re.split(r"^## ", page, flags=re.M)[1:]
    assert len(sections) == len(COMMAND_ORDER)
    for section in sections:
        assert "| exit | meaning |" in section and re.search(r"^\| 0 \| ", section, re.M), section.splitlines()[0]
    for option in ("--json", "--matrix MATRIX", "--rebake", "--token-file TOKEN_FILE", "--aws", "--files FILES"):
        assert f"`{option}`" in page
