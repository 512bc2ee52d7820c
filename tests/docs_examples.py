"""The console examples of the README and docs/, as the tests run them.

A console example is a fenced block marked `console`: lines starting with `$ ` are commands
(a line ending in a backslash goes on to the next), the lines after each command are what it
prints (stdout and stderr together), and a last line `[exit N]` is its exit status (0 when
there is none). Each page names where its examples run in an HTML comment at its top,
`<!-- examples: SETUP -->` (tests/test_docs.py has the setups); a page with console examples
and no setup fails, so no example goes unrun.

Output is compared after both sides are normalised: image ids, times, digests, AMI ids, sizes,
ages and elapsed times become placeholders, runs of spaces become one, so a doc shows real
output and still matches the next run. A line `...` stands for any number of lines, and `...`
within a line for any text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```console[^\n]*\n(.*?)^```", re.M | re.S)
SETUP = re.compile(r"<!--\s*examples:\s*([\w -]+?)\s*-->")
EXIT = re.compile(r"^\[exit (\d+)\]$")

# Each pattern, in order, and what it becomes; a doc's text and a run's output alike.
VOLATILE = (
    (re.compile(r"\x1b\[[0-9;]*m"), ""),
    (re.compile(r"\b(run\.[\w-]+)\.\d{8}T\d{6}Z\.[0-9a-f]{8}\b"), r"\1.<run>"),  # a run of the bake service
    (re.compile(r"\b\d{8}T\d{6}Z-[0-9a-f]{8}\b"), "<id>"),  # the changing part of an image id
    (re.compile(r"\b1\d{12}\b"), "<epoch-ms>"),
    (re.compile(r"\b\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?"), "<time>"),
    (re.compile(r"\b\d{8}T\d{6}Z\b"), "<time>"),
    (re.compile(r"\b\d{4}-\d\d-\d\d\b"), "<date>"),
    (re.compile(r"\b\d{4}-W\d\d\b"), "<week>"),
    (re.compile(r"\bbakehouse \d+\.\d+\.\d+\b"), "bakehouse <version>"),
    (re.compile(r"\b\d{14}-[0-9a-f]{6}\b"), "<stamp>"),  # an AMI name's timestamp
    (re.compile(r"sha256:[0-9a-f]{12,64}"), "sha256:<digest>"),
    (re.compile(r"\b[0-9a-f]{40,64}\b"), "<hex>"),
    (re.compile(r"\b(ami|snap|i|sg|subnet|vpc)-[0-9a-f]{8,17}\b"), r"\1-<aws>"),
    (re.compile(r"\b\d+(\.\d+)? (B|KiB|MiB|GiB|kB|MB|GB)\b"), "<size>"),
    (re.compile(r"\b(\d+|an?) (second|minute|hour|day|week)s?( ago| old)?\b"), "<age>"),
    (re.compile(r"\b\d+:\d\d(:\d\d)?\b"), "<elapsed>"),
    (re.compile(r"\b\d+(\.\d+)? ?(ms|s)\b"), "<seconds>"),
    (re.compile(r"/tmp/\S*"), "<tmp>"),
    (re.compile(r"[ \t]+"), " "),
)


@dataclass(frozen=True)
class Command:
    line: int  # where it is in the page, for messages
    text: str
    expected: tuple[str, ...]
    exit: int


ANY_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)


def hidden_prompts(text: str) -> list[str]:
    """Commands with a `$ ` prompt in a block that is not a console example: each would go
    unrun, so none may be there (write the block as `console`, or drop the prompt)."""
    return [line for block in ANY_FENCE.finditer(text) if block[1] != "console"
            for line in block[2].splitlines() if line.startswith("$ ")]


def setup_of(text: str) -> str | None:
    found = SETUP.search(text)
    return found[1] if found else None


def commands(text: str) -> list[Command]:
    """Every command of every console block of a page, in order."""
    found: list[Command] = []
    for block in FENCE.finditer(text):
        first_line = text[: block.start(1)].count("\n") + 1
        lines = block[1].rstrip("\n").split("\n")
        index = 0
        while index < len(lines):
            if not lines[index].startswith("$ "):
                raise ValueError(f"line {first_line + index}: a console block starts with a `$ ` command")
            start = index
            command = lines[index][2:]
            while command.endswith("\\") and index + 1 < len(lines):
                index += 1
                command = command + "\n" + lines[index]  # bash reads the backslash-newline as one line
            index += 1
            output = []
            while index < len(lines) and not lines[index].startswith("$ "):
                output.append(lines[index])
                index += 1
            status = 0
            if output and (code := EXIT.match(output[-1])):
                status, output = int(code[1]), output[:-1]
            found.append(Command(first_line + start, command, tuple(output), status))
    return found


def normalised(line: str) -> str:
    for pattern, replacement in VOLATILE:
        line = pattern.sub(replacement, line)
    return line.strip()


def _line_pattern(expected: str) -> re.Pattern[str]:
    parts = normalised(expected).split("...")
    return re.compile(".*".join(re.escape(part) for part in parts) + r"\Z")


def matches(expected: tuple[str, ...], actual: list[str]) -> bool:
    """The run's output lines fit the example's (after normalising both)."""
    wanted = [line for line in expected]
    got = [normalised(line) for line in actual if line.strip()]
    wanted = [line for line in wanted if line.strip()]
    return _fit(wanted, got)


def _fit(wanted: list[str], got: list[str]) -> bool:
    if not wanted:
        return not got
    head, rest = wanted[0], wanted[1:]
    if head.strip() == "...":
        return any(_fit(rest, got[skip:]) for skip in range(len(got) + 1))
    return bool(got) and bool(_line_pattern(head).match(got[0])) and _fit(rest, got[1:])


def pages(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
