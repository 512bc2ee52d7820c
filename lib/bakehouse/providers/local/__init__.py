"""The local provider: root filesystems as OCI images in .bakehouse/ (oci/), made by packer's
shell-local steps with mmdebstrap, an overlay mount and chroot (templates/scripts/), recorded
in the local image store. Needs no cloud account.

    settings.py   its keys: the [source] of a base (a Debian suite)
    registry.py   the local image store: OCI layouts and one JSON record per image
    provider.py   the bake half: template values, reading packer's manifest, cleanup
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...keyref import Key
from ...model import Bake, BakeGraph
from ...project import Project
from . import settings

if TYPE_CHECKING:
    from .provider import LocalProvider


class LocalDefinition:
    """The parse half (see providers/__init__.py)."""

    name = "local"
    publish_targets = ("registry",)  # what its bakes' [publish] may name (publish.py)
    keys: tuple[str, ...] = ()
    key_docs: tuple[Key, ...] = ()
    source_keys = settings.SOURCE_KEYS
    source_key_docs = settings.SOURCE_KEY_DOCS
    project_tables: tuple[str, ...] = ()
    project_table_docs: tuple[tuple[str, tuple[Key, ...]], ...] = ()

    def parse_settings(self, where: str, data: dict[str, Any]) -> None:
        return None

    def parse_source(self, where: str, table: dict[str, Any]) -> settings.LocalSource:
        return settings.parse_source(where, table)

    def check_graph(self, bakes: Mapping[str, Bake]) -> None:
        settings.check_graph(bakes)

    def notifier(self, target: str) -> None:
        return None  # nothing to publish to

    def open(self, project: Project, graph: BakeGraph) -> LocalProvider:
        from .provider import LocalProvider

        return LocalProvider(project)


PROVIDER = LocalDefinition()
