"""A documented key: the tuples of Key each loader checks a table's keys against (it takes their
names with `names()`), so a key the code accepts cannot go undocumented. reference.py writes
them all out as docs/reference/bake-keys.md."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Key:
    """One key (or a few that go together), as the reference shows it."""

    names: tuple[str, ...]
    kind: str  # its type, as a reader writes it ("string", "`\"bake\"`, `\"copy\"`", "table")
    default: str  # "required", "" for none, or the value it takes when left out
    meaning: str


def names(keys: Iterable[Key]) -> tuple[str, ...]:
    """The key names a loader accepts."""
    return tuple(name for key in keys for name in key.names)
