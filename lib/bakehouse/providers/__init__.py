"""Providers: what differs between baking a local image, an AMI, or any other kind of image.

Each provider is one package, `providers/<name>/`, holding everything it is: the TOML keys it
owns, its registry, its bake step and its client. The core finds providers only through the
`bakehouse.providers` entry-point group (the way doit finds its commands and pytest its
plugins) and never names one, so a third provider is a new folder, its templates and one line
in pyproject.toml.

A provider comes in two halves, as packer's builders do:

- `ProviderDefinition`, the parse half: the keys it owns in a bake file, parsed and checked
  with one-line errors, and no side effect (it never reaches a network, a cloud account or a
  heavy library), so reading bake files costs the same whatever providers are installed.
- `Provider`, the bake half, made by `ProviderDefinition.open()` only when a bake of that
  provider is decided or baked: its registry (where its images are), what names its source
  and its base images in the content key, the template values, and reading packer's manifest
  into where the image was made. A local-only repository never imports boto3.

Three words for places, each with one meaning: a bake's `places` are where a complete image
must exist ("local", or each AWS region); `made` is what packer's manifest says one run
produced ({place: reference}); a recorded image's `locations` are where it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, TextIO

from ..aptrepo import Repository
from ..errors import DefinitionError
from ..keyref import Key
from ..model import Bake, BakeGraph, ProviderSettings, ProviderSource
from ..packages import ResolvedPackage
from ..project import Project
from ..publish import Publication
from ..registry import ImageRecord, Registry

ENTRY_POINT_GROUP = "bakehouse.providers"
DEFAULT_PROVIDER = "local"


class ProviderDefinition(Protocol):
    """The parse half of a provider: its keys in bake files. No side effects."""

    name: str
    keys: tuple[str, ...]  # the top-level keys it owns, refused on bakes of other providers
    source_keys: tuple[str, ...]  # the keys of its [source] table
    project_tables: tuple[str, ...]  # the tables of bakehouse.toml it reads (projectfile.py)
    publish_targets: tuple[str, ...]  # the keys of [publish] its bakes may use (publish.py)
    key_docs: tuple[Key, ...]  # its keys as the reference shows them (keyref.py); `keys` are their names
    source_key_docs: tuple[Key, ...]
    project_table_docs: tuple[tuple[str, tuple[Key, ...]], ...]  # each table of bakehouse.toml it reads, documented

    def parse_settings(self, where: str, data: dict[str, Any]) -> ProviderSettings | None:
        """Its top-level keys of a bake file (`where` names the file in errors)."""
        ...

    def parse_source(self, where: str, table: dict[str, Any]) -> ProviderSource:
        """A base bake's [source] table, unknown keys already refused."""
        ...

    def check_graph(self, bakes: Mapping[str, Bake]) -> None:
        """Rules between its bakes and their bases (every base is of the same provider)."""
        ...

    def open(self, project: Project, graph: BakeGraph) -> Provider:
        """The bake half, for one run over `graph`."""
        ...

    def notifier(self, target: str) -> Callable[[str, str, str], None] | None:
        """How to publish a notification to `target` (an SNS topic ARN for AWS): a callable
        taking (target, subject, message), or None when the target is not this provider's."""
        ...


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
    contents: Path  # where the template lists the image's packages (contents.py)
    # The places to bake this run: all of the bake's places, unless an image of this key
    # exists in some of them already (then `extends` is that image, and only the rest are made).
    places: tuple[str, ...] = ()
    extends: ImageRecord | None = None
    # What the image is made of, for providers that label images with it (AMI tags).
    summary: dict[str, Any] = field(default_factory=dict)
    packages: tuple[ResolvedPackage, ...] = ()
    # A render only to learn which files the template uses (decide.py): the key and image id
    # are placeholders, and a provider stands in for what does not exist yet (a base's AMI in
    # a region it is about to be baked in) instead of failing.
    probe: bool = False


class SharedHold(Protocol):
    """A lock that runners on other machines respect too, held while a bake runs."""

    waited: bool  # another runner held it, and this one waited

    def check(self, bake: str) -> None:
        """Raise if the lock was lost while baking (then nothing may be recorded)."""
        ...

    def note_base(self, image_id: str) -> None:
        """Tell the other runners which base image this bake builds on: a prune there keeps it."""
        ...


@dataclass
class NotShared:
    """The hold of a provider without shared state: the local flock is the only lock."""

    waited: bool = False

    def check(self, bake: str) -> None:
        pass

    def note_base(self, image_id: str) -> None:
        pass  # the lock file says it (locks.note_base): only this machine runs bakes


class Provider(Protocol):
    """The bake half of a provider, for one run."""

    name: str
    registry: Registry
    # How many times a place whose build failed on a transient error (retryable()) is baked
    # again, alone, before the bake fails.
    retries: int

    def source(self, bake: Bake, place: str) -> dict[str, Any] | None:
        """The source image a base bake starts from in `place`, by what it is (never by
        where it is), as it enters the content key; None for a service. Places whose
        sources differ are decided apart (decide.py)."""
        ...

    def publications(self, bake: Bake, pointed: dict[str, ImageRecord | None]) -> list[Publication]:
        """Each target of the bake's [publish] table, with what it should hold (from the image
        each channel points at, `pointed`) and what it holds now."""
        ...

    def publish(self, bake: Bake, publication: Publication) -> None:
        """Write one target and read it back; PublishError, in one line, if it cannot."""
        ...

    def upstream(self, bake: Bake, place: str) -> dict[str, Any]:
        """What a base bake starts from in `place` now, as Baker's `GET /amis` listed the
        newest public base AMI: an AMI's id, name, owner and creation time; a local base's
        suite and mirror."""
        ...

    def source_pins(self, bake: Bake) -> dict[str, str]:
        """The source image a base bake starts from in each place, by id, for bakehouse.lock
        (pins.py); {} where the source has no id to pin (a Debian suite)."""
        ...

    def ignore_lock(self) -> None:
        """Find source images afresh, whatever bakehouse.lock pins (`doit plan --lock`)."""

    def package_sources(self, bake: Bake) -> tuple[Repository, ...]:
        """The apt sources a base bake's image is made from, as bakehouse knows them before
        looking inside it (a local base's mirror); () where the image names its own."""
        ...

    def preflight(self, bake: Bake) -> None:
        """Before a bake that is due: raise (one line) what can be told now to make it fail
        (a suite its mirror does not have); a check that cannot be made now is skipped."""
        ...

    def before_packer(self, bake: Bake) -> None:
        """Just before packer runs: raise (one line) what can be told now to make packer fail
        or hang (SSH asked of an emulator's instances). Not at plan time: such a bake's plan
        and key stay what they are."""
        ...

    def os_name(self, bake: Bake) -> str:
        """The OS a base bake's images are (a Debian suite, an AMI bake's `os`), as Spinnaker's
        `base_os` names it (doit serve)."""
        ...

    def places(self, bake: Bake) -> tuple[str, ...]:
        """Every place a complete image of `bake` must exist: ("local",) or its regions."""
        ...

    def architecture(self, bake: Bake) -> str:
        """The Debian architecture of `bake`'s images (for packages from a [[repository]])."""
        ...

    def package_format(self, bake: Bake) -> str:
        """What `bake`'s images install: "deb" or "rpm"."""
        ...

    def schema1(self, bake: Bake, base_image: ImageRecord | None) -> dict[str, Any]:
        """How key schema 1 named this provider's inputs of `bake` (legacy.py): "settings",
        "source_definition", "source" and "base_image", each a value or None."""
        ...

    def new_image_id(self, job_stem: str, bake: Bake) -> str:
        ...

    def context(self, job: BakeJob) -> dict[str, Any]:
        """Provider-specific template values (where the image goes, the base image, ...)."""
        ...

    def made(self, job: BakeJob, manifest: dict[str, Any]) -> dict[str, str]:
        """Where this run made the image ({place: reference}), read from packer's manifest
        and checked: every one of `job.places`, and nothing else."""
        ...

    def launch(self, bake: Bake) -> str | None:
        """Who may launch `bake`'s images, for people ("private", "public", "shared with ...");
        None where the provider has no such thing."""
        ...

    def out_of_line(self, bake: Bake, image: ImageRecord) -> str | None:
        """Why `image`'s launch permissions must change to match the bake (a reason for the
        plan), or None. Never a reason to bake: the image stays as it is."""
        ...

    def bring_in_line(self, bake: Bake, image: ImageRecord, out: TextIO) -> None:
        """Set `image`'s launch permissions to what the bake says, in every place it is."""
        ...

    def outdated(self, bake: Bake, image: ImageRecord) -> str | None:
        """Why `image`, of the bake's current inputs, must still be baked again (a format this
        provider no longer makes, as a reason for the plan), or None."""
        ...

    def fill(self, job: BakeJob, out: TextIO) -> dict[str, str] | None:
        """Complete an image (`job.extends`) in `job.places` from where it already is, without
        packer, when the bake says so (an AMI copied to a new region); None when the places
        must be baked. Returns where it made the image, as made() does."""
        ...

    def finished(self, job: BakeJob) -> dict[str, str]:
        """After packer failed: the places it finished anyway ({place: reference}, from the
        manifest of every attempt of `job`). They stay part of the image."""
        ...

    def retryable(self, job: BakeJob) -> dict[str, str]:
        """After packer failed: the places of `job` whose build failed on a transient error
        of the platform (throttling, a 5xx), each with the error's name; a place that failed
        on anything else (the template, a script) is not in it."""
        ...

    def discard(self, job: BakeJob, out: TextIO) -> None:
        """Remove whatever a failed or cancelled bake left behind, except what finished()
        keeps; say on `out` what was removed."""
        ...

    def log_ref(self, job: BakeJob) -> str:
        """Where the job's log is kept for people to read, as its record names it: a path in
        the repository, or a URL every runner can read (shared state)."""
        ...

    def attest(self, job: BakeJob, image: ImageRecord, out: TextIO) -> None:
        """Keep the provenance of what the job made (provenance.py) with the image, before it
        is recorded: a local image's in its layout, an AMI's beside its log (keep() shares it)."""
        ...

    def keep(self, job: BakeJob, error: str | None, out: TextIO) -> None:
        """A bake ended (`error` None: it succeeded, before it is recorded): keep its log (and
        its manifest, and a failure's note) where log_ref() says, when that is not this
        machine's .bakehouse/logs/ (bake.py notes every failure there itself)."""
        ...

    def read_log(self, bake: str, ref: str) -> str:
        """The text of a log as log_ref() named it."""
        ...

    def last_failure(self, bake: str) -> dict[str, Any] | None:
        """The last failed bake of `bake` (logs.failure_note) as every runner sees it (shared
        state), or None: then this machine's note (logs.read_failure) is the one."""
        ...

    def lock(self, bake: Bake, key: str, out: TextIO) -> AbstractContextManager[SharedHold]:
        """Hold the lock of `bake`'s image of `key` that every runner shares, if there is one
        (providers/aws/shared.py); else a NotShared."""
        ...

    def sweep(self, bake: Bake) -> list[str]:
        """Remove what bakes of `bake` that never finished left (a killed run cannot discard
        its own), called while the bake's lock is held; returns what it removed."""
        ...


@lru_cache(maxsize=1)
def definitions() -> dict[str, ProviderDefinition]:
    """Every installed provider's parse half, by the name bake files use in `provider = "..."`:
    the default first, then by name (so lists in messages read the same on every machine)."""
    found: dict[str, ProviderDefinition] = {}
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: (p.name != DEFAULT_PROVIDER, p.name)):
        definition = point.load()
        if getattr(definition, "name", None) != point.name:
            raise DefinitionError(f"provider entry point '{point.name}' ({point.value}) is not a provider named so")
        found.setdefault(point.name, definition)
    if not found:
        raise DefinitionError(
            f"no providers are installed (entry points '{ENTRY_POINT_GROUP}'); "
            "reinstall bakehouse: sh scripts/setup"
        )
    return found


def definition(name: str) -> ProviderDefinition:
    return definitions()[name]


def open_providers(project: Project, graph: BakeGraph) -> OpenProviders:
    """The bake half of every provider, by name, each opened when first asked for."""
    return OpenProviders(project, graph)


class OpenProviders(dict[str, "Provider"]):
    def __init__(self, project: Project, graph: BakeGraph) -> None:
        super().__init__()
        self.project = project
        self.graph = graph
        self.lock_ignored = False

    def __missing__(self, name: str) -> Provider:
        provider = definitions()[name].open(self.project, self.graph)
        if self.lock_ignored:
            provider.ignore_lock()
        self[name] = provider
        return provider

    def ignore_lock(self) -> None:
        """Every provider, opened or still to open, finds its sources afresh (`doit plan --lock`)."""
        self.lock_ignored = True
        for provider in self.values():
            provider.ignore_lock()
