"""The bake model: one Bake per bakes/<name>.toml, and the graph of bases and services.

Frozen and provider-neutral: a bake's provider-specific keys are its `settings` and its
[source], objects its provider parsed (providers/<name>/settings.py); the core only asks them
for their `content()`, what of them can change the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .aptrepo import Repository
from .rpmrepo import RpmRepository

DEFAULT_TIMEOUT_SECONDS = 3600
VarValue = str | int | float | bool


class ProviderSettings(Protocol):
    """A provider's top-level keys of one bake, parsed (frozen)."""

    def content(self) -> dict[str, Any]:
        """What of these settings can change the image: it enters the content key."""
        ...


class ProviderSource(Protocol):
    """A base bake's [source] table, parsed by its provider (frozen)."""

    def content(self) -> dict[str, Any]:
        ...


@dataclass(frozen=True)
class Bake:
    """One image to bake, as declared in bakes/<name>.toml (defaults applied)."""

    name: str
    path: Path
    template: str
    provider: str = "local"
    description: str = ""
    base: str | None = None
    source: ProviderSource | None = None
    packages: tuple[str, ...] = ()
    vars: tuple[tuple[str, VarValue], ...] = ()
    rebuild_every: str | None = None
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    repositories: tuple[Repository | RpmRepository, ...] = ()
    settings: ProviderSettings | None = None  # the provider's own keys, if it has any
    where: str = ""  # the bake file as messages name it: bakes/<name>.toml
    prune: tuple[tuple[str, Any], ...] = ()  # its [prune] table (retention.py), checked when loaded
    tests: tuple[str, ...] = ()  # test scripts under templates/, run inside the finished image
    rebuild_when: str | None = None  # "updates": rebake when its sources offer newer packages
    channels: tuple[str, ...] = ("candidate", "stable")  # moved by doit promote (channels.py); not in the key
    # base = { bake, channel }: built on the image that channel of the base points at; not in
    # the key, which names the base image itself
    base_channel: str | None = None
    publish: Any = None  # its [publish] table (publish.PublishSpec): where channels are written; not in the key

    @property
    def vars_dict(self) -> dict[str, VarValue]:
        return dict(self.vars)

    def content_definition(self) -> dict[str, Any]:
        """The normalised definition that goes into the content key.

        Leaves out what cannot change the image: the description, the timeout,
        `rebuild_every` and `rebuild_when` (freshness rules), the test scripts' names (their contents enter as
        files the template uses), the package specs and repositories (resolved names,
        versions and hashes enter the key) and the [source] as written (the source image it
        resolves to enters the key). A provider's settings enter under its name.
        """
        definition: dict[str, Any] = {
            "provider": self.provider,
            "template": self.template,
            "base": self.base,
            "vars": dict(self.vars),
        }
        if self.settings is not None:
            definition[self.provider] = self.settings.content()
        return definition


@dataclass(frozen=True)
class BakeGraph:
    """All bakes of a repository, in an order where every base comes before its services."""

    bakes: tuple[Bake, ...] = field(default_factory=tuple)

    def __getitem__(self, name: str) -> Bake:
        for bake in self.bakes:
            if bake.name == name:
                return bake
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [bake.name for bake in self.bakes]

    def chain(self, name: str) -> list[Bake]:
        """`name` and the bakes it builds on, base first."""
        chain = [self[name]]
        while chain[0].base is not None:
            chain.insert(0, self[chain[0].base])
        return chain
