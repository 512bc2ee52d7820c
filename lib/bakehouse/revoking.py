"""Revoking and restoring images (revocation.py has the model; commands/revoke.py the command
line): marking them in the registry, finding what was built on them (`--cascade`), moving
channels off them, publishing what moved and telling [notify]'s receivers.

A revocation is marked on the image first, then every channel that may no longer point at it
is moved back (a `revoke` move, a conditional write like any move, so a promotion that lands
meanwhile is seen and moved back too). A promotion checks the mark after it lands as well
(commands/channels.py), so however the two interleave, no channel is left on a revoked image.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Callable

from .channels import ChannelMove, channels_on, current, stack, who
from .durations import PATTERN, parse_duration
from .errors import DefinitionError
from .lookup import find_image
from .notify import notify
from .publish import publish_pending
from .registry import ImageRecord
from .revocation import REASON_LIMIT, Revocation, RevocationError, check_reason

if TYPE_CHECKING:
    from .decide import Planner

ATTEMPTS = 10


@dataclass(frozen=True)
class ChannelChange:
    bake: str
    channel: str
    before: str
    after: str | None  # None: nothing left to point at

    def line(self) -> str:
        if self.after is None:
            return (f"WARNING: {self.bake}@{self.channel} now points at nothing: {self.before} was revoked and "
                    f"no image before it is usable; promote one: doit promote {self.bake} {self.channel} IMAGE")
        return f"{self.bake}@{self.channel}: {self.before} -> {self.after} ({self.before} revoked)"


def when(text: str, now: datetime) -> datetime:
    """`--at`: an ISO 8601 time (UTC unless it says otherwise) or a duration from now (`7d`)."""
    if PATTERN.match(text):
        try:
            return now + parse_duration("--at", text)
        except (DefinitionError, OverflowError):
            raise RevocationError(f"--at {text}: too far ahead") from None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RevocationError(f"--at takes an ISO 8601 time (2026-12-31T00:00Z) or a duration from now "
                              f"(\"7d\", \"12h\"), not {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=now.tzinfo)


def descendants(planner: Planner, image: ImageRecord) -> list[ImageRecord]:
    """Every image built on `image`, transitively (services, and services of those), in the
    order they were found: nearest first."""
    found: list[ImageRecord] = []
    parents = {image.image_id}
    while parents:
        children = [child for name in planner.graph.names if planner.graph[name].base is not None
                    for child in planner.images(name) if child.base_image in parents
                    and child.image_id not in {known.image_id for known in found}]
        found += children
        parents = {child.image_id for child in children}
    return found


def revocation_for(reason: str, at: datetime, now: datetime, by: str, only: tuple[str, ...]) -> Revocation:
    return Revocation(check_reason(reason), _iso(max(at, now)), by, _iso(now), only)


def cascaded(revocation: Revocation, parent: ImageRecord) -> Revocation:
    """The revocation of an image built on `parent`: the same, saying why."""
    suffix = f" (built on {parent.image_id})"
    return Revocation(revocation.reason[:REASON_LIMIT - len(suffix)] + suffix, revocation.at, revocation.by,
                      revocation.since, revocation.only)


def check_only(planner: Planner, image: ImageRecord, only: tuple[str, ...]) -> None:
    channels = planner.graph[image.bake].channels
    for channel in only:
        if channel not in channels:
            raise RevocationError(f"--only {channel}: {image.bake} has no such channel; its channels are "
                                  f"{', '.join(channels)} (latest cannot be embargoed: revoke the image)")


def move_off(planner: Planner, bake: str, now: datetime, by: str) -> list[ChannelChange]:
    """Move every channel of `bake` that points at an image it may not be on (revoked, or
    embargoed on that channel) back to the last image it pointed at that it may be on."""
    registry = planner.provider_of(bake).registry
    known = {image.image_id: image for image in planner.images(bake)}
    moves = registry.channel_moves(bake)
    changes = []
    for channel in planner.graph[bake].channels:
        if not _barred(known.get(current(moves, channel) or ""), channel, now):
            continue  # the common case, without reading anything again
        for _ in range(ATTEMPTS):
            planner.forget(bake)
            images = {image.image_id: image for image in planner.images(bake)}
            moves = registry.channel_moves(bake)
            before = current(moves, channel)
            if before is None or not _barred(images.get(before), channel, now):
                break
            target = next((image_id for image_id in reversed(stack(moves, channel))
                           if image_id is not None and image_id in images
                           and not _barred(images[image_id], channel, now)), None)
            revoked = images[before].revoked
            note = f"{before} revoked: {revoked.reason if revoked else ''}"
            if registry.add_channel_move(bake, ChannelMove(channel, target, "revoke", _iso(now), by, note), len(moves)):
                changes.append(ChannelChange(bake, channel, before, target))
                break
        else:
            raise RevocationError(f"{bake}: channel {channel}: other moves kept being recorded first; "
                                  f"run the revocation again")
    return changes


def unsettled(planner: Planner, bake: str) -> bool:
    """A channel of `bake` still points, in its history, at an image revoked since (with --at):
    the bake's task then runs, to record the move and publish it. Reads the moves only when an
    image of the bake has such a revocation in effect (the images are known already)."""
    now = planner.now
    known = {image.image_id: image for image in planner.images(bake)}
    if not any(image.revoked is not None and image.revoked.at != image.revoked.since and image.revoked.in_effect(now)
               for image in known.values()):
        return False
    moves = planner.provider_of(bake).registry.channel_moves(bake)
    return any(_barred(known.get(current(moves, channel) or ""), channel, now) for channel in planner.graph[bake].channels)


def _barred(image: ImageRecord | None, channel: str, now: datetime) -> bool:
    return image is not None and image.revoked is not None and image.revoked.bars(channel, now)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def settle(planner: Planner, bakes: list[str], say: Callable[[str], None]) -> list[ChannelChange]:
    """Move the bakes' channels off what they may no longer point at, then publish what moved
    (and `latest`, which a revocation may move). Run by `doit revoke`, and by each `doit`
    (tasks.py), which so carries out a revocation given with --at once it is in effect."""
    changes = []
    for bake in dict.fromkeys(bakes):
        for change in move_off(planner, bake, planner.now, who()):
            say(change.line())
            changes.append(change)
        planner.forget(bake)
        publish_pending(planner, bake, say)
    return changes


def revoke(planner: Planner, name: str, reason: str, at: str, only: tuple[str, ...], cascade: bool,
           dry_run: bool, say: Callable[[str], None]) -> None:
    image = find_image(planner, name)
    check_only(planner, image, only)
    now = planner.now
    revocation = revocation_for(reason, when(at, now) if at else now, now, who(), only)
    targets = [(image, revocation)] + [(child, cascaded(revocation, image))
                                       for child in (descendants(planner, image) if cascade else [])]
    if dry_run:
        for target, revoked in targets:
            on = channels_on(planner.provider_of(target.bake).registry.channel_moves(target.bake), target.image_id,
                             planner.graph[target.bake].channels)
            say(f"would revoke {target.image_id} ({target.bake}): {revoked.reason}"
                + (f"  [on {', '.join(on)}]" if on else ""))
        say(f"{len(targets)} image{'s' if len(targets) != 1 else ''} would be revoked; nothing changed (--dry-run)")
        return
    for target, revoked in targets:
        warnings = planner.provider_of(target.bake).registry.revoke(target, revoked, now)
        say(f"revoked {target.image_id} ({target.bake}){_scope(revoked)}: {revoked.reason}")
        for warning in warnings:
            say(warning)
    if revocation.in_effect(now):
        changes = settle(planner, [target.bake for target, _ in targets], say)
    else:
        changes = []
        say(f"in effect from {revocation.at}: channels on it move when it takes effect (the next doit run)")
    notify(planner.project, "revoke", {
        "images": [{"bake": target.bake, "image": target.image_id, "locations": target.locations, **revoked.to_json()}
                   for target, revoked in targets],
        "channels": [vars(change) for change in changes]}, say)


def restore(planner: Planner, name: str, cascade: bool, say: Callable[[str], None]) -> None:
    image = find_image(planner, name)
    targets = [image] + (descendants(planner, image) if cascade else [])
    restored = [target for target in targets if target.revoked is not None]
    if not restored:
        raise RevocationError(f"{image.image_id} is not revoked" + (" (nor anything built on it)" if cascade else ""))
    for target in restored:
        warnings = planner.provider_of(target.bake).registry.revoke(target, None, planner.now)
        for warning in warnings:
            say(warning)
        say(f"restored {target.image_id} ({target.bake}); its channels stay where they are "
            f"(doit promote {target.bake} CHANNEL {target.image_id} puts one back)")
    for bake in dict.fromkeys(target.bake for target in restored):
        planner.forget(bake)
        publish_pending(planner, bake, say)  # `latest` may be it again
    notify(planner.project, "restore", {"images": [{"bake": target.bake, "image": target.image_id}
                                                   for target in restored]}, say)



def _scope(revocation: Revocation) -> str:
    where = f" on {', '.join(revocation.only)}" if revocation.only else ""
    return where + ("" if revocation.at == revocation.since else f" from {revocation.at}")
