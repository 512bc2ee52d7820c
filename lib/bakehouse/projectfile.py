"""bakehouse.toml: the repository's own settings, beside bakes/. Each top-level table belongs
to one reader: `[prune]` to retention (the project-wide default), `[spinnaker]` to the bake
service's Spinnaker routes (serve/spinnaker.py), and a provider's tables to
that provider (`[shared]`: the AWS provider's shared state). A table no one reads is refused
with a did-you-mean, so a misspelt table never silently does nothing."""

from __future__ import annotations

import tomllib
from typing import Any

from .errors import DefinitionError
from .project import Project
from .providers import definitions
from .tomlcheck import reject_unknown

PROJECT_FILE = "bakehouse.toml"
CORE_TABLES = ("prune", "spinnaker", "notify")


def project_table(project: Project, name: str) -> Any:
    """The table `name` of bakehouse.toml, or None when the file or the table is absent."""
    path = project.root / PROJECT_FILE
    if not path.is_file():
        return None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as error:
        raise DefinitionError(f"{PROJECT_FILE}: cannot read: {error}") from None
    known = CORE_TABLES + tuple(table for provider in definitions().values() for table in provider.project_tables)
    reject_unknown(PROJECT_FILE, "", data, known)
    table = data.get(name)
    if table is not None and not isinstance(table, dict):
        raise DefinitionError(f"{PROJECT_FILE}: [{name}] must be a table")
    return table
