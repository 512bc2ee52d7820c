"""docs/reference/bake-keys.md, made from the tables the loaders check keys against (keyref.py):
`python -m bakehouse.reference > docs/reference/bake-keys.md`. A test fails when the page is
not what this makes."""

from __future__ import annotations

from collections.abc import Iterable

from .definitions import CORE_KEY_DOCS, REPOSITORY_KEY_DOCS
from .keyref import Key
from .providers import definitions
from .retention import POLICY_KEY_DOCS


def _rows(keys: Iterable[Key], prefix: str = "") -> list[str]:
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for key in keys:
        shown = ", ".join(_shown(prefix, name, key.kind) for name in key.names)
        rows.append(f"| {shown} | {key.kind} | {key.default} | {key.meaning} |")
    return rows


def _shown(prefix: str, name: str, kind: str) -> str:
    if kind == "table":
        return f"`[{prefix}{name}]`"
    if kind == "tables":
        return f"`[[{prefix}{name}]]`"
    return f"`{prefix}{name}`"


def reference_page() -> str:
    """docs/reference/bake-keys.md."""
    providers = definitions()
    lines = [
        "# Bake keys",
        "",
        "<!-- Made by `python -m bakehouse.reference` from the tables the loaders check keys against "
        "(lib/bakehouse/keyref.py, reference.py); do not edit by hand. -->",
        "",
        "Every key of a bake file, `bakes/<name>.toml`. A key not listed here is refused in one line",
        "with a did-you-mean; so is a key of another provider. See [Bake files](bake-files.md) for",
        "how they work together, with examples.",
        "",
        "## Every bake",
        "",
        *_rows(CORE_KEY_DOCS),
    ]
    for name, provider in sorted(providers.items()):
        article = "an" if name[0] in "aeiou" else "a"
        lines += ["", f"## `[source]` of {article} {name} base", "", *_rows(provider.source_key_docs, "source.")]
    for name, provider in sorted(providers.items()):
        if provider.key_docs:
            lines += ["", f"## Only for `provider = \"{name}\"`", "", *_rows(provider.key_docs)]
    lines += ["", "## `[[repository]]`", "", "A Debian repository to take packages from; one table per repository.",
              "", *_rows(REPOSITORY_KEY_DOCS, "repository.")]
    lines += ["", "## `[prune]`", "", "Retention for `doit prune`, in a bake file (that bake's) or in "
              "`bakehouse.toml` (the project's default).", "", *_rows(POLICY_KEY_DOCS, "prune.")]
    project_tables = [(table, keys) for provider in providers.values() for table, keys in provider.project_table_docs]
    for table, keys in project_tables:
        lines += ["", f"## `bakehouse.toml`: `[{table}]`", "", *_rows(keys, f"{table}.")]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference_page(), end="")
