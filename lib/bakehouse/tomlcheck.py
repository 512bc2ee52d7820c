"""Typed access to TOML tables with errors a user can act on: each names the file and the key,
says what was expected, and suggests the nearest known key for a typo."""

from __future__ import annotations

import difflib
import re
from typing import Any

from .errors import DefinitionError


class Getter:
    """Typed access to one TOML table, raising errors that name the file and key."""

    def __init__(self, where: str, data: dict[str, Any], prefix: str = "") -> None:
        self.where, self.data, self.prefix = where, data, prefix

    def fail(self, key: str, wanted: str, value: Any) -> DefinitionError:
        return DefinitionError(
            f"{self.where}: {self.prefix}{key} must be {wanted}, not {type_name(value)} {value!r}"
        )

    def string(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise self.fail(key, "a string", value)
        return value

    def matching(self, key: str, pattern: str | re.Pattern[str], wanted: str, default: str | None = None) -> Any:
        """A string that must match `pattern` (`wanted` says what that is, for the error)."""
        value = self.string(key)
        if value is None:
            return default
        if not re.match(pattern, value):
            raise DefinitionError(f"{self.where}: {self.prefix}{key}: {value!r} is not valid: {wanted}")
        return value

    def boolean(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, bool):
            raise self.fail(key, "true or false", value)
        return value

    def choice(self, key: str, allowed: tuple[str, ...], default: str | None) -> Any:
        value = self.string(key)
        if value is None:
            return default
        if value not in allowed:
            raise DefinitionError(
                f"{self.where}: {self.prefix}{key}: '{value}' is not one of {', '.join(allowed)}"
                + did_you_mean(value, allowed)
            )
        return value

    def string_list(self, key: str) -> list[str]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.fail(key, "a list of strings", value)
        return value

    def table(self, key: str, value_types: tuple[type, ...]) -> dict[str, Any]:
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, "a table", value)
        for item_key, item in value.items():
            if not isinstance(item, value_types):
                raise self.fail(f"{key}.{item_key}", "a string, number or boolean", item)
        return value


def reject_unknown(where: str, prefix: str, data: dict[str, Any], known: tuple[str, ...]) -> None:
    for key in data:
        if key not in known:
            raise DefinitionError(f"{where}: unknown key '{prefix}{key}'" + did_you_mean(key, known))


def did_you_mean(word: str, candidates: Any) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def type_name(value: Any) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)
