"""Registries: where images live, and the source of truth for what is up to date.

A registry answers "which complete images of bake B exist, newest first?" and records a new
image atomically. The doit dep file is only a cache; a fresh clone asks the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ImageRecord:
    """One complete image of a bake, as the registry knows it."""

    image_id: str
    bake: str
    key: str
    created: str
    provider: str
    # Where the image is: {"local": "images/hello/<id>.tar.zst"} or {region: ami-id} for AWS.
    locations: dict[str, str]
    base_image: str | None
    packages: dict[str, str | None]
    summary: dict[str, Any] = field(default_factory=dict)
    log: str | None = None
    name: str | None = None  # the AMI name, where the provider names images apart from ids

    def to_json(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id, "bake": self.bake, "key": self.key, "created": self.created,
            "provider": self.provider, "locations": self.locations, "base_image": self.base_image,
            "packages": self.packages, "summary": self.summary, "log": self.log, "name": self.name,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageRecord:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name != "name"}, name=data.get("name"))


class Registry(Protocol):
    def images(self, bake: str) -> list[ImageRecord]:
        """Every complete image of `bake`, newest first."""
        ...

    def record(self, image: ImageRecord) -> None:
        """Make `image` visible, atomically: it is either fully recorded or not at all."""
        ...

    def forget(self, bake: str) -> None:
        """Drop anything cached about `bake`'s images: the next images() reads afresh."""
        ...
