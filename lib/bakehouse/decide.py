"""Decide, without baking, whether each bake is up to date, and explain why not.

Up to date means: the registry holds a complete image whose content key equals the key of
the bake's current inputs. A service's key includes its base's image id, so a service whose
base will rebake cannot be up to date either, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .aptrepo import AptIndexes
from .debpkg import SourcePackage, find_source_packages
from .model import Bake, BakeGraph
from .epoch import epoch
from .fingerprint import Summary, content_key, explain, summarise
from .packages import ResolvedPackage, resolve_packages
from .project import Project
from .providers import Provider
from .registry import ImageRecord
from .render import Templates

FORCED = "forced (--rebake)"


@dataclass(frozen=True)
class Decision:
    bake: Bake
    reasons: tuple[str, ...]  # empty when the current image is kept
    current: ImageRecord | None  # the image whose key matches, if any
    newest: ImageRecord | None  # the newest image of this bake, whatever its key
    key: str | None = None  # None while the base has yet to be rebaked
    summary: Summary | None = None
    packages: tuple[ResolvedPackage, ...] = ()
    base_image: ImageRecord | None = None
    # An image of this key that exists in only some of the places it must: bake just those.
    partial: ImageRecord | None = None
    missing: tuple[str, ...] = ()

    @property
    def up_to_date(self) -> bool:
        return not self.reasons

    @property
    def action(self) -> str:
        """"keep", "bake", or "bake-missing" (only the places in `missing`)."""
        if self.up_to_date:
            return "keep"
        return "bake-missing" if self.partial is not None else "bake"

    def describe(self) -> str:
        if self.up_to_date and self.current is not None:
            return f"up to date: {self.current.image_id}"
        return "; ".join(self.reasons)


class Planner:
    """Makes decisions for one run. Keeps only decisions that cannot go stale in the run
    (images that are up to date), so a service decided after its base baked sees the new base."""

    def __init__(
        self, project: Project, graph: BakeGraph, providers: dict[str, Provider], now: datetime
    ) -> None:
        self.project = project
        self.graph = graph
        self.providers = providers
        self.now = now
        self.templates = Templates(project.templates_dir)
        self.indexes = AptIndexes()
        self._source_packages: tuple[SourcePackage, ...] | None = None
        self._kept: dict[str, Decision] = {}

    @property
    def source_packages(self) -> tuple[SourcePackage, ...]:
        if self._source_packages is None:
            self._source_packages = find_source_packages(self.project)
        return self._source_packages

    def forget(self, name: str) -> None:
        """Drop what this run knows of `name`'s images (another process may have baked it)."""
        self._kept.pop(name, None)
        self.provider_of(name).registry.forget(name)

    def provider_of(self, name: str) -> Provider:
        """The provider that bakes `name` (opened on first use)."""
        return self.providers[self.graph[name].provider]

    def images(self, name: str) -> list[ImageRecord]:
        """Every complete image of `name`, newest first, from its provider's registry."""
        return self.provider_of(name).registry.images(name)

    def decide(self, name: str, forced: bool = False) -> Decision:
        if not forced and name in self._kept:
            return self._kept[name]
        decision = self._decide(self.graph[name], forced)
        if decision.up_to_date:
            self._kept[name] = decision
        return decision

    def _decide(self, bake: Bake, forced: bool) -> Decision:
        provider = self.provider_of(bake.name)
        packages = resolve_packages(
            self.project, bake.where, bake.packages, self.source_packages,
            bake.repositories, self.indexes, provider.architecture(bake) if bake.repositories else "",
        )
        files = self.templates.input_files(bake.template)
        images = provider.registry.images(bake.name)
        newest = images[0] if images else None

        base_decision = self.decide(bake.base) if bake.base is not None else None
        base_image = base_decision.current if base_decision is not None else None
        base_identity: dict[str, Any] | None = None
        if base_image is not None:
            base_identity = provider.base_identity(base_image)
        summary = summarise(
            bake.content_definition(), files, packages, provider.source(bake), base_identity,
            epoch(bake.rebuild_every, self.now),
        )
        old_summary = newest.summary if newest is not None else None

        if base_decision is not None and not base_decision.up_to_date:
            own = [r for r in explain(old_summary, summary) if not r.startswith("base image")]
            reasons = [f"its base '{bake.base}' will rebake first"] + [r for r in own if r != "inputs changed"]
            return Decision(bake, tuple(reasons), None, newest, packages=packages)

        key = content_key(summary)
        needed = provider.places(bake)
        matching = [image for image in images if image.key == key]
        current = next((image for image in matching if set(needed) <= set(image.locations)), None)
        partial, missing = None, ()
        if forced:
            reasons = [FORCED] + ([] if current is not None else explain(old_summary, summary))
        elif current is not None:
            reasons = []
        elif matching:
            partial = max(matching, key=lambda image: len(set(needed) & set(image.locations)))
            missing = tuple(place for place in needed if place not in partial.locations)
            reasons = [f"missing in {', '.join(missing)}"]
        else:
            reasons = explain(old_summary, summary)
        return Decision(
            bake, tuple(reasons), current, newest, key, summary, packages, base_image, partial, missing
        )
