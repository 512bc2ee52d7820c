"""Key schema 1, kept so that upgrading bakehouse does not rebake every image.

Schema 1 (bakehouse 0.1) keyed an image by its regions, each region's source and base AMI
ids, the `rebuild_every` period's label, and every file its template could reach. Schema 2
leaves those out (fingerprint.py). An image recorded under schema 1 whose schema-1 key equals
the schema-1 key of the bake's current inputs holds the same contents, so it counts as up to
date (still subject to `rebuild_every`'s freshness rule); only a real change rebakes it,
and the new image is recorded under schema 2.
"""

from __future__ import annotations

from datetime import datetime

from .epoch import epoch
from .fingerprint import content_key
from .model import Bake
from .packages import ResolvedPackage
from .providers import Provider
from .registry import ImageRecord
from .render import Templates

SCHEMA = 1


def schema1_key(
    bake: Bake, packages: tuple[ResolvedPackage, ...], templates: Templates, provider: Provider,
    base_image: ImageRecord | None, now: datetime,
) -> str:
    """The content key schema 1 gave these inputs."""
    parts = provider.schema1(bake, base_image)
    definition = {
        "provider": bake.provider,
        "template": bake.template,
        "base": bake.base,
        "source": parts.get("source_definition"),
        "vars": dict(bake.vars),
        "rebuild_every": bake.rebuild_every,
    }
    if parts.get("settings") is not None:
        definition[bake.provider] = parts["settings"]
    return content_key({
        "schema": SCHEMA,
        "definition": definition,
        "files": dict(sorted(templates.input_files(bake.template).items())),
        "packages": {package.name: package.identity for package in packages},
        "source": parts.get("source"),
        "base_image": parts.get("base_image"),
        "epoch": epoch(bake.rebuild_every, now),
    })
