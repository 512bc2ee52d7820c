"""Revocation: taking an image out of use, as HCP Packer revokes a version and Maestro's
`embargo` tag kept an AMI out of an environment.

A revocation is a mark the registry keeps on the image (tags on every AMI; a file beside the
local record), so every runner sees it:

- in effect from `at` (now, or a time given with `--at`), until `doit restore` removes it;
- whole (the image is out of use everywhere), or an embargo (`only`: the image stays usable
  except on the named channels).

An image revoked whole is not `latest`, is never the current image of its bake (the bake is
not up to date while its only image of the current inputs is revoked), and a service built on
it is not up to date. No channel may point at a revoked image: the revocation moves each such
channel back to the image it pointed at before that is not revoked (a `revoke` move), or to
nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .channels import ChannelMove, stack
from .errors import BakehouseError

REASON_LIMIT = 256  # an AMI tag's value


class RevocationError(BakehouseError):
    """A revocation that cannot be made as asked (no reason, a bad time, an unknown channel)."""


@dataclass(frozen=True)
class Revocation:
    reason: str
    at: str  # when it takes effect: ISO 8601, UTC
    by: str
    since: str  # when it was recorded
    only: tuple[str, ...] = ()  # an embargo: the channels it keeps the image off; () = everywhere

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "at": self.at, "by": self.by, "since": self.since, "only": list(self.only)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Revocation:
        only = data.get("only") or []
        if not isinstance(only, list):
            raise TypeError("'only' must be a list of channels")
        return cls(str(data["reason"]), str(data["at"]), str(data.get("by", "")), str(data.get("since", data["at"])),
                   tuple(str(channel) for channel in only))

    def in_effect(self, now: datetime) -> bool:
        return _moment(self.at) <= now

    def bars(self, channel: str, now: datetime) -> bool:
        """Whether the image may not be on `channel` (now)."""
        return self.in_effect(now) and (not self.only or channel in self.only)

    def describe(self) -> str:
        where = f" on {', '.join(self.only)}" if self.only else ""
        return f"revoked{where} ({self.reason})"


def withdrawn(revocation: Revocation | None, now: datetime) -> bool:
    """Out of use everywhere, now: revoked whole, and in effect."""
    return revocation is not None and not revocation.only and revocation.in_effect(now)


def usable(images: Iterable[Any], now: datetime) -> list[Any]:
    """The images (ImageRecords, newest first) that are not withdrawn."""
    return [image for image in images if not withdrawn(image.revoked, now)]


def latest(images: Iterable[Any], now: datetime) -> Any | None:
    """The image `latest` points at: the newest that is not withdrawn."""
    return next(iter(usable(images, now)), None)


def pointed_at(moves: list[ChannelMove], channel: str, images: Mapping[str, Any], now: datetime) -> str | None:
    """Where `channel` points, read past any image it may not be on (revoked since its last
    move: a revocation given with --at that took effect), to the one before it. The moves
    say where it was put; this is where it points."""
    for image_id in reversed(stack(moves, channel)):
        image = images.get(image_id) if image_id is not None else None
        if image is None or image.revoked is None or not image.revoked.bars(channel, now):
            return image_id
    return None


def revoked_at(revocation: Revocation) -> datetime:
    """When the revocation took (or takes) effect."""
    return _moment(revocation.at)


def check_reason(reason: str) -> str:
    reason = " ".join(reason.split())
    if not reason:
        raise RevocationError("say why: --reason \"...\" (it is shown wherever the image is)")
    if len(reason) > REASON_LIMIT:
        raise RevocationError(f"--reason is {len(reason)} characters; at most {REASON_LIMIT} are kept (an AMI tag's size)")
    return reason


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)  # unreadable: in effect (the safe side)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
