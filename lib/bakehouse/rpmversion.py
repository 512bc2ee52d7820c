"""RPM's version order: rpmvercmp (rpm's lib/rpmvercmp.c) on each part of an EVR, epoch first,
then version, then release.

Within a part, the strings are cut into runs of digits and runs of letters (anything else
separates runs and is otherwise ignored). `~` sorts before everything, even the end of the
string (1.0~rc1 < 1.0); `^` sorts after the end but before any further run (1.0 < 1.0^git1 <
1.0.1). Runs compare pairwise: a numeric run beats an alphabetic one; numbers compare as
numbers (leading zeros ignored); letters compare as ASCII. When one string runs out first,
the one with a run left is newer.

No maintained pure-Python implementation was worth the weight (the one on PyPI is archived;
its successor pulls in a package-URL toolkit): this one is tested against the `rpm` binary's
own answers on a table of tricky pairs (tests/test_rpm.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_RUN = re.compile(r"(\d+|[A-Za-z]+|~|\^)")


def vercmp(a: str, b: str) -> int:
    """-1, 0 or 1 as rpm's rpmvercmp(a, b)."""
    if a == b:
        return 0
    left, right = _runs(a), _runs(b)
    for x, y in zip(left, right):
        if x != y:
            return _compare_runs(x, y)
    if len(left) == len(right):
        return 0
    longer, sign = (left, 1) if len(left) > len(right) else (right, -1)
    extra = longer[min(len(left), len(right))]
    if extra == "~":  # a tilde after the common part makes that side older
        return -sign
    return sign  # a caret, or any run, makes it newer


def _runs(text: str) -> list[str]:
    return _RUN.findall(text)


def _compare_runs(x: str, y: str) -> int:
    if x == "~" or y == "~":
        return -1 if x == "~" else 1
    if x == "^" or y == "^":
        return -1 if x == "^" else 1  # the caret is older than any run
    if x.isdigit() != y.isdigit():
        return 1 if x.isdigit() else -1
    if x.isdigit():
        a, b = int(x), int(y)
        return (a > b) - (a < b)
    return (x > y) - (x < y)


@total_ordering
@dataclass(frozen=True)
class Evr:
    """An RPM package's epoch, version and release (`2:1.4.1-3.amzn2023`)."""

    epoch: int
    version: str
    release: str

    @classmethod
    def parse(cls, text: str) -> Evr:
        """`[EPOCH:]VERSION[-RELEASE]`; ValueError for anything else."""
        found = re.fullmatch(r"(?:(\d+):)?([^:\s-]+)(?:-([^:\s-]+))?", text.strip())
        if found is None:
            raise ValueError(f"{text!r} is not an RPM version ([EPOCH:]VERSION[-RELEASE])")
        return cls(int(found[1] or 0), found[2], found[3] or "")

    def __str__(self) -> str:
        epoch = f"{self.epoch}:" if self.epoch else ""
        return f"{epoch}{self.version}-{self.release}" if self.release else f"{epoch}{self.version}"

    def compare(self, other: Evr) -> int:
        if self.epoch != other.epoch:
            return 1 if self.epoch > other.epoch else -1
        return vercmp(self.version, other.version) or (
            vercmp(self.release, other.release) if self.release and other.release else 0)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Evr):
            return NotImplemented
        return self.compare(other) < 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Evr):
            return NotImplemented
        return self.compare(other) == 0

    def __hash__(self) -> int:
        return hash(self.epoch)
