"""One vocabulary for every length of time a user writes (a bake's `timeout`, `[prune]
min_age`, `[shared] lease`): a whole number and a unit, `s`, `m`, `h`, `d` or `w` ("90s",
"45m", "2h", "14d", "2w"). Each key says its own range; a value outside it, or not a duration
at all, is one line naming the key and what is expected."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from .errors import DefinitionError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
PATTERN = re.compile(r"^(\d+)([smhdw])$")
EXAMPLES = '"90s", "45m", "2h", "14d" or "2w"'


def parse_duration(where: str, value: Any) -> timedelta:
    """`value` as a duration; DefinitionError (`where` names the file and key) if it is not one."""
    match = PATTERN.match(value) if isinstance(value, str) else None
    if match is None:
        raise DefinitionError(f"{where}: {value!r} is not a duration such as {EXAMPLES}")
    try:
        return timedelta(seconds=int(match.group(1)) * UNITS[match.group(2)])
    except OverflowError:  # beyond any range a key allows: its caller says how long it may be
        return timedelta.max

