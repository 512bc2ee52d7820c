"""The reference pages made from the code, so they cannot miss what the code accepts:
docs/reference/bake-keys.md from the tables the loaders check keys against (keyref.py), and
docs/reference/command-options.md from the commands' own options and exit statuses.
`python -m bakehouse.reference` writes both; a test fails when a page is not what this makes."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .definitions import CORE_KEY_DOCS, REPOSITORY_KEY_DOCS
from .keyref import Key
from .providers import definitions
from .publish import PUBLISH_KEY_DOCS
from .notify import NOTIFY_KEY_DOCS
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
    lines += ["", "## `[[repository]]`", "", "A Debian or RPM repository to take packages from; one table per repository.",
              "", *_rows(REPOSITORY_KEY_DOCS, "repository.")]
    lines += ["", "## `[publish]`", "", "Where the bake's channels are published ([Channels](../how-to/channels.md)); "
              "a target is written when it no longer holds what its channel points at, and read back.",
              "", *_rows(PUBLISH_KEY_DOCS, "publish.")]
    lines += ["", "## `[prune]`", "", "Retention for `doit prune`, in a bake file (that bake's) or in "
              "`bakehouse.toml` (the project's default).", "", *_rows(POLICY_KEY_DOCS, "prune.")]
    lines += ["", "## `bakehouse.toml`: `[notify]`", "", "Who hears of bakes, promotions, rollbacks, revocations, "
              "restores and prunes ([Notifications](../how-to/notifications.md)).", "", *_rows(NOTIFY_KEY_DOCS, "notify.")]
    project_tables = [(table, keys) for provider in providers.values() for table, keys in provider.project_table_docs]
    for table, keys in project_tables:
        lines += ["", f"## `bakehouse.toml`: `[{table}]`", "", *_rows(keys, f"{table}.")]
    return "\n".join(lines) + "\n"


# The commands in the order a user meets them; doit's own task commands are not listed.
COMMAND_ORDER = ("run", "plan", "info", "images", "diff", "log", "prune", "verify", "promote", "rollback", "channels", "revoke", "restore", "serve", "init")


def commands_page() -> str:
    """docs/reference/command-options.md."""
    found = {point.name: point.load() for point in entry_points(group="doit.COMMAND")
             if point.value.startswith("bakehouse.commands.") and point.name in COMMAND_ORDER}
    lines = [
        "# Command options and exit statuses",
        "",
        "<!-- Made by `python -m bakehouse.reference` from the commands' own options "
        "(lib/bakehouse/commands/); do not edit by hand. -->",
        "",
        "Every option of every bakehouse command, and what each exit status means. Options go before",
        "or after the names; a bad one is one line and exit 3. [Commands](commands.md) says what each",
        "command is for, with examples.",
    ]
    for name in COMMAND_ORDER:
        command = found[name]
        shown = "doit" if name == "run" else f"doit {name}"
        usage = "[TASK ...]" if name == "run" else getattr(command, "doc_usage", "")
        purpose = getattr(command, "doc_purpose", "") or "run the tasks: bake what is not up to date"
        lines += ["", f"## `{shown}`", "", f"`{f'{shown} {usage}'.strip()}`",
                  "", purpose[0].upper() + purpose[1:] + ".", ""]
        options = [option for option in command.cmd_options if option.get("long") or option.get("short")]
        if options:
            lines += ["| option | default | meaning |", "| --- | --- | --- |"]
            lines += [f"| {_flags(option)} | {_default(option)} | {_help(option)} |" for option in options]
            lines.append("")
        lines += ["| exit | meaning |", "| --- | --- |"]
        lines += [f"| {code} | {meaning} |" for code, meaning in command.exit_codes]
    return "\n".join(lines) + "\n"


def _flags(option: dict[str, Any]) -> str:
    value = "" if option.get("type") is bool else " " + option["name"].upper()
    flags = ([f"-{option['short']}"] if option.get("short") else []) + ([f"--{option['long']}"] if option.get("long") else [])
    return ", ".join(f"`{flag}{value}`" for flag in flags)


def _default(option: dict[str, Any]) -> str:
    default = option.get("default")
    if isinstance(default, bool) or not isinstance(default, (str, int, float)) or default == "":
        return ""
    return f"`{default}`"


def _help(option: dict[str, Any]) -> str:
    text = " ".join(str(option.get("help", "")).split())
    text = re.sub(r"\s*\[default: [^\]]*\]", "", text)  # the default has its own column
    return text.replace("|", "\\|")


PAGES = {"bake-keys.md": reference_page, "command-options.md": commands_page}

if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/reference")
    for page, make in PAGES.items():
        (folder / page).write_text(make())
