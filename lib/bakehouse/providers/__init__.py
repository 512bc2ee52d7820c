"""Providers: what differs between baking a local image and an AMI.

A provider owns its registry and knows how to name a bake's source for the content key,
what the template needs to know about where the image goes, and how to read the packer
manifest into the image's locations. Everything else (keys, rendering, packer, recording)
is shared by all providers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..definitions import Bake, BakeGraph
from ..packages import ResolvedPackage
from ..project import Project
from ..registry import ImageRecord, Registry


@dataclass(frozen=True)
class BakeJob:
    """One bake about to run: the image it will make and where its files go."""

    bake: Bake
    key: str
    image_id: str
    created: str  # the image's `created` (registry.timestamp), kept when completing an image
    sequence: int  # its place among the bake's images (registry.next_sequence)
    base_image: ImageRecord | None
    manifest: Path
    log: Path
    # The places to bake; all of needed_locations() unless an image of this key exists
    # in some of them already (then `extends` is that image, and only the rest are made).
    locations: tuple[str, ...] = ()
    extends: ImageRecord | None = None
    # What the image is made of, for providers that label images with it (AMI tags).
    summary: dict[str, Any] = field(default_factory=dict)
    packages: tuple[ResolvedPackage, ...] = ()


class Provider(Protocol):
    name: str
    registry: Registry

    def source(self, bake: Bake) -> dict[str, Any] | None:
        """The resolved source of a base bake, as it enters the content key."""
        ...

    def needed_locations(self, bake: Bake) -> tuple[str, ...]:
        """Every place a complete image of `bake` must exist: ("local",) or its regions."""
        ...

    def base_identity(self, image: ImageRecord) -> dict[str, Any]:
        """How a service's key names the base image it builds on: ids, never names."""
        ...

    def new_image_id(self, job_stem: str, bake: Bake) -> str:
        ...

    def context(self, job: BakeJob) -> dict[str, Any]:
        """Provider-specific template values (where the image goes, the base image, ...)."""
        ...

    def locations(self, job: BakeJob, manifest: dict[str, Any]) -> dict[str, str]:
        """Where the finished image is, read from packer's manifest and checked."""
        ...

    def discard(self, job: BakeJob) -> None:
        """Remove whatever a failed or cancelled bake left behind."""
        ...

    def sweep(self, bake: Bake) -> list[str]:
        """Remove what bakes of `bake` that never finished left (a killed run cannot discard
        its own), called while the bake's lock is held; returns what it removed."""
        ...


def make_providers(project: Project, graph: BakeGraph) -> dict[str, Provider]:
    """Every provider, by the name bake files use in `provider = "..."`. Each is made when
    first asked for, so a repository of local bakes never loads boto3 or looks for AWS."""
    return _Providers(project, graph)


class _Providers(dict[str, Provider]):
    def __init__(self, project: Project, graph: BakeGraph) -> None:
        super().__init__()
        self.project = project
        self.graph = graph

    def __missing__(self, name: str) -> Provider:
        if name == "local":
            from .local import LocalProvider

            self[name] = LocalProvider(self.project)
        elif name == "aws":
            from .aws import AwsProvider

            self[name] = AwsProvider(self.project, self.graph)
        else:
            raise KeyError(name)
        return self[name]
