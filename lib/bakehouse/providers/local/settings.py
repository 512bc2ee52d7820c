"""The keys of `provider = "local"` bakes: only the [source] of a base (a Debian suite for
mmdebstrap); a local bake has no top-level keys of its own."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import DefinitionError
from ...keyref import Key, names
from ...model import Bake
from ...tomlcheck import Getter

SOURCE_KEY_DOCS = (
    Key(('suite',), 'string',
        'required in `[source]`',
        'the Debian suite, e.g. `"bookworm"`; when the base is due, the plan checks its mirror has it (`\'bookwrom\' is not on the mirror ...; did you mean \'bookworm\'?`)'),
    Key(('variant',), 'string',
        '`"minbase"`',
        'an mmdebstrap variant (`essential`, `apt`, `minbase`, `important`, `standard`, ...) or `"busybox"`: a tiny system of busybox and dpkg, for tests and demos'),
    Key(('mirror',), 'string',
        "the host's",
        'an mmdebstrap mirror argument: a sources line (`"deb http://... bookworm main"`) or a sources file; by default the host\'s `/etc/apt/sources.list.d/debian.sources` when its suite matches (updates and security included), else the host\'s mirror with this suite'),
)
SOURCE_KEYS = names(SOURCE_KEY_DOCS)
# mmdebstrap's own variants, plus "busybox": a tiny dpkg+busybox system for tests and demos.
VARIANTS = (
    "extract", "custom", "essential", "apt", "required", "minbase", "buildd",
    "important", "debootstrap", "standard", "busybox",
)


@dataclass(frozen=True)
class LocalSource:
    """Where a local base image starts: a Debian suite built by mmdebstrap."""

    suite: str
    variant: str = "minbase"
    mirror: str | None = None

    def content(self) -> dict[str, Any]:
        return vars(self)


def parse_source(where: str, table: dict[str, Any]) -> LocalSource:
    get = Getter(where, table, prefix="source.")
    suite = get.string("suite")
    if suite is None:
        raise DefinitionError(f"{where}: source.suite is required (a Debian suite such as 'bookworm')")
    if not re.match(r"^[a-z][a-z0-9-]*$", suite):
        raise DefinitionError(f"{where}: source.suite: '{suite}' is not a Debian suite name")
    return LocalSource(
        suite=suite,
        variant=get.choice("variant", VARIANTS, default="minbase"),
        mirror=get.string("mirror"),
    )


def check_graph(bakes: Mapping[str, Bake]) -> None:
    """No rule between local bakes beyond the core's (a base of the same provider)."""
