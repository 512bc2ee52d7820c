"""Decide, without baking, whether each bake is up to date, and explain why not.

Up to date in a place (the local store, an AWS region) means: the registry holds an image
there whose content key equals the key of the bake's current inputs (or, for an image
recorded under key schema 1, the schema-1 key of the same inputs: legacy.py), and, for a bake
with `rebuild_every`, that image was created in the current period (epoch.py), and is in a
format its provider still makes (Provider.outdated: a local `.tar.zst` is not). A place that
has no such image is made (`bake-missing`); a place the bake no longer names costs nothing.

A service's key includes the id of its base's current image, so a service whose base will
rebake cannot be up to date either, and says so. Reasons are a diff against the image in use
(registry.in_use: the one most recently baked or found current again), never against one the
bake has moved away from.

A bake's places are decided together while they are built from the same things. When they are
not (a publisher's new source image has reached only some regions, or the base's image
differs by region because of that), each group of places that shares a source image and a
base image is a part of the decision, with a key of its own: only the places whose inputs
changed are baked, and the key of a group equals the key all places would have if they agreed,
so the others catch up later as `bake-missing` rather than as a new image.

A bake with `rebuild_when = "updates"` is not up to date either while its sources offer newer
versions of packages its image has (updates.py); the reasons name each one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from . import __version__
from .aptrepo import Repository, parse_sources
from .contents import ContentsError, Manifest
from .context import KEY_PLACEHOLDER, template_context
from .debpkg import SourcePackage, find_source_packages
from .rpmpkg import find_rpm_sources
from .epoch import staleness
from .errors import BakehouseError, PackageError
from .fingerprint import KEY_SCHEMA, Summary, content_key, explain, summarise
from .legacy import schema1_key
from .model import Bake, BakeGraph
from .packages import RepositoryIndexes, ResolvedPackage, resolve_packages, with_versions
from .rpmrepo import RpmRepository
from .channels import ChannelError, current
from .pins import Pins, read_pins
from .project import Project
from .providers import BakeJob, OpenProviders, Provider
from .registry import ImageRecord, created_at, in_use, timestamp
from .render import Templates
from .revocation import pointed_at, usable, withdrawn
from .updates import SourcesState, UpdateIndexes

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
    in_use: ImageRecord | None = None  # what the reasons are explained against
    # The current image's launch permissions differ from the bake's: set them, bake nothing.
    relaunch: str | None = None
    places: tuple[str, ...] = ()  # the places decided: all of the bake's, or a part's
    # One decision per group of places built from different things (see the module's text);
    # empty when all places agree, as they almost always do.
    parts: tuple[Decision, ...] = ()

    @property
    def up_to_date(self) -> bool:
        """The current image holds the current inputs (its launch permissions aside)."""
        return not self.reasons

    @property
    def action(self) -> str:
        """"keep", "share" (only the launch permissions change), "bake", or "bake-missing"
        (only the places in `missing`)."""
        if self.parts:
            actions = {part.action for part in self.parts}
            return next((action for action in ("bake", "bake-missing", "share") if action in actions), "keep")
        if self.up_to_date:
            return "share" if self.relaunch else "keep"
        return "bake-missing" if self.partial is not None else "bake"

    def each(self) -> tuple[Decision, ...]:
        """The decisions to carry out: the parts, or this one."""
        return self.parts or (self,)

    def part_at(self, place: str) -> Decision:
        """The decision that covers `place` (the first part for a place the bake lacks)."""
        return next((part for part in self.parts if place in part.places), self.each()[0])

    def describe(self) -> str:
        if self.parts and self.up_to_date:
            return "up to date: " + "; ".join(
                f"{part.current.image_id} in {', '.join(part.places)}" for part in self.parts if part.current
            ) + (f"; {self.relaunch}" if self.relaunch else "")
        if self.up_to_date and self.current is not None:
            return f"up to date: {self.current.image_id}" + (f"; {self.relaunch}" if self.relaunch else "")
        return "; ".join(self.reasons)


class Planner:
    """Makes decisions for one run. Keeps only decisions that cannot go stale in the run
    (images that are up to date), so a service decided after its base baked sees the new base."""

    def __init__(
        self, project: Project, graph: BakeGraph, providers: OpenProviders, now: datetime,
        versions: dict[str, dict[str, str]] | None = None, freshness: bool = True,
        base_channels: dict[str, str] | None = None,
    ) -> None:
        self.project = project
        # False: an image of the current inputs is current however old (doit verify compares
        # what inputs make, whatever rebuild_every says of their age)
        self.freshness = freshness
        # bake -> package -> version: the versions a bake request asked for (doit serve)
        self.versions = versions or {}
        # bake -> channel of its base to build on, whatever its bake file says (a base_label)
        self.base_channels = base_channels or {}
        self.graph = graph
        self.providers = providers
        self.now = now
        self.templates = Templates(project.template_dirs)
        self.indexes = RepositoryIndexes()
        self.updates = UpdateIndexes(project.state_dir / "cache")
        self.pins = read_pins(project)  # bakehouse.lock, if the repository has one
        self._source_packages: tuple[SourcePackage, ...] | None = None
        self._kept: dict[str, Decision] = {}

    @property
    def source_packages(self) -> tuple[SourcePackage, ...]:
        """The packages built here: .deb trees and RPM specs under packages/."""
        if self._source_packages is None:
            self._source_packages = find_source_packages(self.project) + find_rpm_sources(self.project)
        return self._source_packages

    def ignore_lock(self) -> None:
        """Resolve every input afresh, as if there were no bakehouse.lock: `doit plan --lock`
        moves the pins forward (else it would write back the pins it read)."""
        self.pins = Pins()
        self._kept.clear()
        self.providers.ignore_lock()

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

    def note_in_use(self, decision: Decision) -> None:
        """`doit` found `decision.current` up to date: when another image was in use (a change
        was reverted), record that this one is in use again, so the next change is explained
        against it. Only `doit` runs note this; `doit plan` and `doit info` change nothing."""
        current = decision.current
        if current is None or decision.in_use is None or decision.in_use.image_id == current.image_id:
            return
        registry = self.provider_of(decision.bake.name).registry
        registry.mark_in_use(current, timestamp(self.now), registry.images(decision.bake.name))
        self.forget(decision.bake.name)

    def _decide(self, bake: Bake, forced: bool) -> Decision:
        provider = self.provider_of(bake.name)
        if bake.name in self.base_channels and bake.base is not None:
            bake = replace(bake, base_channel=self.base_channels[bake.name])
        asked = self.versions.get(bake.name)
        if asked:  # taken from a repository at the version asked for: a pin, and in the key as any
            bake = replace(bake, packages=with_versions(bake.where, bake.packages, asked), repositories=tuple(
                replace(repository, packages=with_versions(bake.where, repository.packages, asked))
                for repository in bake.repositories))
        packages = resolve_packages(
            self.project, bake.where, bake.packages, self.source_packages,
            bake.repositories, self.indexes, provider.architecture(bake) if bake.repositories else "",
            locked=self.pins.packages.get(bake.name), package_format=provider.package_format(bake),
        )
        self._check_kind(bake, provider.package_format(bake), packages)
        self._check_offered(bake, provider, packages)
        every = provider.registry.images(bake.name)
        images = usable(every, self.now)  # a revoked image is never current, nor the one in use
        if bake.base is not None and bake.base_channel is not None:
            base_decision: Decision | None = self._channel_base(bake)
        else:
            base_decision = self.decide(bake.base) if bake.base is not None else None
        parts = tuple(
            self._decide_places(bake, provider, packages, images, places, source, base_part, forced)
            for places, source, base_part in self._groups(bake, provider, base_decision)
        )
        decision = parts[0] if len(parts) == 1 else _combined(bake, parts)
        decision = self._revoked_reasons(bake, decision, every)
        if not decision.up_to_date:
            provider.preflight(bake)  # what can be told now to make the bake fail: one line here
        return decision

    def _revoked_reasons(self, bake: Bake, decision: Decision, every: list[ImageRecord]) -> Decision:
        """Say so when a revocation is why the bake is not up to date: its image of these
        inputs is revoked (`image X revoked (why)`), or the base its image in use was built
        on is (`base image X revoked (why)`)."""
        if decision.up_to_date or FORCED in decision.reasons:
            return decision
        revoked = [image for image in every if withdrawn(image.revoked, self.now)]
        own = next((image for image in revoked if image.key == decision.key), None)
        if own is not None and own.revoked is not None:
            return replace(decision, reasons=(f"image {own.image_id} {own.revoked.describe()}",))
        # every image it had is revoked: explain against the newest of them
        used = decision.in_use or (revoked[0] if revoked and len(revoked) == len(every) else None)
        base = None if bake.base is None or used is None or used.base_image is None else next(
            (image for image in self.images(bake.base) if image.image_id == used.base_image), None)
        others = tuple(reason for reason in decision.reasons if reason != "no image yet")
        if base is not None and base.revoked is not None and withdrawn(base.revoked, self.now):
            others = tuple(reason for reason in others if not reason.startswith(("base image", "base channel")))
            return replace(decision, reasons=(f"base image {base.image_id} {base.revoked.describe()}", *others))
        if decision.in_use is None and used is not None and used.revoked is not None:
            return replace(decision, reasons=(f"image {used.image_id} {used.revoked.describe()}", *others))
        return decision

    def _channel_base(self, bake: Bake) -> Decision:
        """A service built on a channel of its base: the base as that channel has it, whatever
        the base's own newest image is (a new base image rebakes the service once promoted)."""
        assert bake.base is not None and bake.base_channel is not None
        base = self.graph[bake.base]
        moves = self.provider_of(base.name).registry.channel_moves(base.name)
        image_id = pointed_at(moves, bake.base_channel, {image.image_id: image for image in self.images(base.name)}, self.now)
        if image_id is None:
            revoked = " that is not revoked" if current(moves, bake.base_channel) is not None else ""
            raise ChannelError(f"{bake.where}: base: channel {bake.base_channel} of {base.name} points at nothing"
                               f"{revoked}; promote an image first: doit promote {base.name} {bake.base_channel}")
        image = next((found for found in self.images(base.name) if found.image_id == image_id), None)
        if image is None:
            raise ChannelError(f"{bake.where}: base: channel {bake.base_channel} of {base.name} points at {image_id}, "
                               "which is no longer there")
        return Decision(base, (), image, image, places=tuple(sorted(image.locations)))

    def _groups(
        self, bake: Bake, provider: Provider, base_decision: Decision | None
    ) -> list[tuple[tuple[str, ...], Any, Decision | None]]:
        """The bake's places, grouped by what they are built from there: the source image
        found in the place and the part of the base's decision that covers it."""
        groups: dict[str, tuple[list[str], Any, Decision | None]] = {}
        for place in provider.places(bake):
            source = provider.source(bake, place)
            base_part = None if base_decision is None else base_decision.part_at(place)
            label = json.dumps([source, None if base_part is None else base_part.places], sort_keys=True)
            groups.setdefault(label, ([], source, base_part))[0].append(place)
        return [(tuple(places), source, base_part) for places, source, base_part in groups.values()]

    def _decide_places(
        self, bake: Bake, provider: Provider, packages: tuple[ResolvedPackage, ...], images: list[ImageRecord],
        needed: tuple[str, ...], source: Any, base_decision: Decision | None, forced: bool,
    ) -> Decision:
        """The decision for the places in `needed`, which are all built from `source` and
        from the base image `base_decision` names."""
        newest = images[0] if images else None
        used = in_use(images)
        old_summary = used.summary if used is not None else None

        if base_decision is not None and base_decision.action == "bake-missing":
            # The base is only made in more places, under the same image id: the service's
            # key stays, and it is up to date wherever it already is.
            base_image: ImageRecord | None = base_decision.partial
        elif base_decision is not None and not base_decision.up_to_date:
            # Its key names a base image that does not exist yet: say what else changed.
            summary = self._summary(bake, provider, packages, source, base_decision.newest, stand_in=True)
            own = [r for r in explain(old_summary, summary) if not r.startswith(("base image", "template file"))]
            reasons = [f"its base '{bake.base}' will rebake first"] + [r for r in own if r != "inputs changed"]
            return Decision(bake, tuple(reasons), None, newest, packages=packages, in_use=used, places=needed)
        else:
            base_image = base_decision.current if base_decision is not None else None
        summary = self._summary(bake, provider, packages, source, base_image)
        key = content_key(summary)
        keys = {key}
        if any((image.summary or {}).get("schema") != KEY_SCHEMA for image in images):
            keys.add(schema1_key(bake, packages, self.templates, provider, base_image, self.now))
        matching = [image for image in images if image.key in keys]
        usable = [image for image in matching if provider.outdated(bake, image) is None]
        fresh = [image for image in usable if self._stale(bake, image) is None]
        current = next((image for image in fresh if set(needed) <= set(image.locations)), None)
        # An image of this key in only some places: the one in most of them is completed.
        best = None if current is not None or not fresh else max(
            fresh, key=lambda image: len(set(needed) & set(image.locations)))
        missing = () if best is None else tuple(place for place in needed if place not in best.locations)
        reasons = [FORCED] if forced else []
        if current is None:
            reasons += self._why(bake, provider, missing, matching, used, summary)
        partial = None if forced else best  # a forced rebake makes a new image everywhere
        missing = () if forced else missing
        if bake.rebuild_when == "updates" and current is not None and not reasons:
            reasons = self._updates(bake, provider, current)
            current = None if reasons else current
        relaunch = None if current is None or reasons else provider.out_of_line(bake, current)
        return Decision(
            bake, tuple(reasons), current, newest, key, summary, packages, base_image, partial, missing, used,
            relaunch, needed,
        )

    def _updates(self, bake: Bake, provider: Provider, image: ImageRecord) -> list[str]:
        """`rebuild_when = "updates"`: the newer versions its sources offer of its packages."""
        try:
            manifest = provider.registry.read_contents(bake.name, image.image_id)
        except ContentsError:
            # baked before manifests were kept, or an AMI baked on another machine: nothing to
            # compare, and a fresh clone must decide as the machine that baked it
            return []
        return self.updates.reasons(manifest, self._sources_state(bake, provider, manifest))

    def sources_seen(self, bake: Bake, manifest: Manifest) -> dict[str, str]:
        """The Release of each of the image's sources now, for its manifest (updates.py)."""
        return self._sources_state(bake, self.provider_of(bake.name), manifest).releases

    def _sources_state(self, bake: Bake, provider: Provider, manifest: Manifest) -> SourcesState:
        sources = list(self._chain_sources(bake))
        if manifest.sources:
            sources += parse_sources("\n".join(manifest.sources), "", f"{manifest.image_id}: its apt sources")
        try:
            return self.updates.state(tuple(sources), provider.architecture(bake))
        except PackageError as error:
            raise PackageError(f"{bake.name}: checking for updates: {error}") from None

    def _chain_sources(self, bake: Bake) -> tuple[Repository | RpmRepository, ...]:
        """The apt sources bakehouse knows before looking inside the image: those of the
        bakes it builds on and its own (a local base's mirror, every `[[repository]]`)."""
        return tuple(source for step in self.graph.chain(bake.name)
                     for source in (*self.provider_of(step.name).package_sources(step), *step.repositories))

    def _check_kind(self, bake: Bake, package_format: str, packages: tuple[ResolvedPackage, ...]) -> None:
        """A package file of the other kind than the image installs (an .rpm on a Debian image,
        a .deb on an RPM one) is refused in one line before anything runs, not by the image's
        package manager minutes into the bake."""
        shown = {"deb": "Debian packages (.deb)", "rpm": "RPM packages (.rpm)"}
        for package in packages:
            kind = package.path.suffix.lstrip(".") if package.path is not None else package_format
            if kind in shown and kind != package_format:
                raise PackageError(f"{bake.where}: packages: {package.name} is {'an RPM' if kind == 'rpm' else 'a Debian'} "
                                   f"package, and {bake.name}'s {bake.provider} images install {shown[package_format]}")

    def _check_offered(self, bake: Bake, provider: Provider, packages: tuple[ResolvedPackage, ...]) -> None:
        """A version a bake pins by name (apt takes it from the image's sources) must be one
        those sources offer: refused here, in one line, not by apt minutes into the bake. The
        sources are known when the chain starts from a mirror (a local base); an AMI's own are
        known only inside it, and apt answers there."""
        pinned = [package for package in packages if package.origin == "pinned" and package.version is not None]
        root = self.graph.chain(bake.name)[0]
        if not pinned or not self.provider_of(root.name).package_sources(root):
            return
        sources = self._chain_sources(bake)
        try:
            state = self.updates.state(sources, provider.architecture(bake))
            missing = [package for package in pinned if not state.offers_version(package.name, str(package.version))]
            newest = {package.name: state.newest(package.name) for package in missing}
        except PackageError as error:
            raise PackageError(f"{bake.name}: checking its pinned versions: {error}") from None
        for package in missing:
            found = newest[package.name]
            offered = f"the newest there is {found.version}" if found else "none has it at all"
            raise PackageError(f"{bake.where}: packages: {package.spec}: no such version in its sources "
                               f"({'; '.join(source.label for source in sources)}): {offered}")

    def _why(
        self, bake: Bake, provider: Provider, missing: tuple[str, ...], matching: list[ImageRecord],
        used: ImageRecord | None, summary: Summary,
    ) -> list[str]:
        """Why no image is current: missing places, an image stale or in a format no longer
        made, or what changed (and the old format of the image in use, if it is)."""
        if missing:
            return [f"missing in {', '.join(missing)}"]
        if matching:
            return [provider.outdated(bake, matching[0]) or str(self._stale(bake, matching[0]))]
        outdated = None if used is None else provider.outdated(bake, used)
        reasons = explain(used.summary if used is not None else None, summary)
        if bake.base_channel is not None:  # the base image moved because its channel did
            reasons = [f"base channel {bake.base_channel}: {reason.removeprefix('base image ')}"
                       if reason.startswith("base image ") else reason for reason in reasons]
        return [self._upgraded(reason, used) for reason in reasons] + ([outdated] if outdated else [])

    def _upgraded(self, reason: str, used: ImageRecord | None) -> str:
        """`template X changed with bakehouse A -> B` for a built-in file an upgrade changed
        (the image in use says which bakehouse baked it); any other reason as it is."""
        name = reason.removeprefix("template file ").removesuffix(" changed")
        if used is None or f"template file {name} changed" != reason or not self.project.built_in(name):
            return reason
        if used.bakehouse_version in (None, __version__):
            return reason
        return f"template {name} changed with bakehouse {used.bakehouse_version} -> {__version__}"

    def _stale(self, bake: Bake, image: ImageRecord) -> str | None:
        if not self.freshness:
            return None
        return staleness(bake.rebuild_every, self.now, created_at(image))

    def _summary(
        self, bake: Bake, provider: Provider, packages: tuple[ResolvedPackage, ...], source: Any,
        base_image: ImageRecord | None, stand_in: bool = False,
    ) -> Summary:
        if not stand_in:
            files = self._used_files(bake, provider, packages, base_image)
        else:  # the base's newest image stands in for one not baked yet: best effort
            try:
                files = {} if base_image is None else self._used_files(bake, provider, packages, base_image)
            except BakehouseError:
                files = {}
        base = None if base_image is None else {"bake": base_image.bake, "image": base_image.image_id}
        return summarise(
            provider.name, provider.architecture(bake), bake.content_definition(), files, packages,
            source, base,
        )

    def _used_files(
        self, bake: Bake, provider: Provider, packages: tuple[ResolvedPackage, ...], base_image: ImageRecord | None
    ) -> dict[str, str]:
        """The files the template uses when rendered with this bake's values (render.py)."""
        work = self.project.build_dir / bake.name
        probe = BakeJob(
            bake=bake, key=KEY_PLACEHOLDER, image_id=f"{bake.name}-(image id)", created=timestamp(self.now),
            sequence=0, base_image=base_image, manifest=work / "(image id).manifest.json",
            contents=work / "(image id).packages.tsv",
            log=self.project.logs_dir / bake.name / "(image id).log", places=provider.places(bake),
            packages=packages, probe=True,
        )
        context = template_context(bake, packages, probe, provider, self.project.state_dir / "cache")
        return self.templates.render_used(bake.template, context)[1]


def _combined(bake: Bake, parts: tuple[Decision, ...]) -> Decision:
    """One decision of a bake whose places differ in what they are built from: each reason
    says where it holds."""
    reasons = tuple(
        reason if reason.startswith("missing in ") else f"in {', '.join(part.places)}: {reason}"
        for part in parts for reason in part.reasons
    )
    first = parts[0]
    return Decision(
        bake, reasons, None, first.newest, packages=first.packages, in_use=first.in_use,
        missing=tuple(place for part in parts for place in part.missing),
        relaunch=next((part.relaunch for part in parts if part.relaunch), None),
        places=tuple(place for part in parts for place in part.places), parts=parts,
    )
