"""The values a bake's template is rendered with: the bake's own (name, vars, packages, key,
manifest) and its provider's (where the image goes, what it starts from).

Built twice per bake: when deciding, to learn which files the template uses with these values
(the key and image id are not known yet and stand in as placeholders, which a template must
not branch on), and when baking, for the template packer runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import packer
from .model import Bake
from .packages import ResolvedPackage
from .providers import BakeJob, Provider

KEY_PLACEHOLDER = "(content key)"


def template_context(
    bake: Bake, packages: tuple[ResolvedPackage, ...], job: BakeJob, provider: Provider, cache_dir: Path
) -> dict[str, Any]:
    common = {
        "bake": {"name": bake.name, "description": bake.description, "provider": bake.provider},
        "vars": bake.vars_dict,
        "key": job.key,
        "packages": [
            {"name": p.name, "version": p.version, "spec": p.spec, "origin": p.origin,
             "path": None if p.path is None else str(p.path)}
            for p in packages
        ],
        "package_specs": [p.spec for p in packages if p.path is None],
        "deb_paths": [str(p.path) for p in packages if p.path is not None],
        "package_checks": [p.spec for p in packages],
        "manifest": str(job.manifest),
        # where image-contents.sh's listing of the image's packages goes (contents.py)
        "contents": str(job.contents),
        "tests": list(bake.tests),  # names under templates/, for file()
        "packer_version": ".".join(str(part) for part in packer.packer_version(cache_dir=cache_dir)),
    }
    return {**common, **provider.context(job)}
