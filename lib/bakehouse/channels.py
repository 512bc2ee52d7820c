"""Channels: a named pointer per bake to one of its images, moved by hand and kept with its
history, as HCP Packer's channels are (and Spinnaker's base labels, by another name).

- `latest` is managed: the bake's newest complete image, moved by the bake itself; it cannot
  be moved by hand.
- Every other channel moves only by `doit promote` (to an image) and `doit rollback` (back to
  the image it pointed at before the move being undone). A channel's moves are its history:
  who, when, why; replaying them gives where it points (a promote pushes an image, a rollback
  pops one), so a rollback after a rollback goes one step further back. A revocation moves a
  channel off a revoked image: back to the last image before it that is not revoked (a
  `revoke` move pops down to it), or to nothing (revocation.py).
- The registry keeps the moves (the local image store; SSM parameters in AWS), so every
  runner sees the same channels. A move is recorded only if no other move came first
  (`Registry.add_channel_move` is a conditional write); the command reads again and retries,
  so two promotions at once both land, one after the other, and neither is lost.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import asdict, dataclass
from typing import Any

from .errors import BakehouseError

LATEST = "latest"
DEFAULT_CHANNELS = ("candidate", "stable")
ACTIONS = ("promote", "rollback", "revoke")


class ChannelError(BakehouseError):
    """A channel that cannot be moved as asked (unknown, `latest`, nothing to roll back to)."""


@dataclass(frozen=True)
class ChannelMove:
    """One move of one channel."""

    channel: str
    image: str | None  # the image it points at after the move; None: it points at nothing
    action: str  # "promote" | "rollback" | "revoke" (back to `image`, off a revoked one)
    at: str  # ISO 8601, UTC
    by: str
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChannelMove:
        action = str(data["action"])
        if action not in ACTIONS:
            raise ValueError(f"unknown channel move {action!r}")
        image = data.get("image")
        return cls(str(data["channel"]), None if image is None else str(image), action, str(data["at"]),
                   str(data.get("by", "")), str(data.get("note", "")))


def who() -> str:
    """Who moves a channel or revokes an image: BAKEHOUSE_USER (a CI job, the bake service's
    caller), else the login name."""
    try:
        return os.environ.get("BAKEHOUSE_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def moves_of(moves: list[ChannelMove], channel: str) -> list[ChannelMove]:
    return [move for move in moves if move.channel == channel]


def stack(moves: list[ChannelMove], channel: str) -> list[str | None]:
    """The images the channel has pointed at that a rollback can go back to, oldest first;
    the last is where it points now."""
    pointed: list[str | None] = []
    for move in moves_of(moves, channel):
        if move.action == "promote":
            pointed.append(move.image)
        elif move.action == "revoke":  # back past the revoked image(s), to `image` (or nothing)
            while pointed and pointed[-1] != move.image:
                pointed.pop()
        elif pointed:
            pointed.pop()
    return pointed


def current(moves: list[ChannelMove], channel: str) -> str | None:
    """The image `channel` points at, or None."""
    pointed = stack(moves, channel)
    return pointed[-1] if pointed else None


def rollback_target(moves: list[ChannelMove], channel: str) -> str | None:
    """Where `doit rollback` takes the channel: the image before its current one."""
    pointed = stack(moves, channel)
    if not pointed:
        raise ChannelError(f"channel {channel} points at nothing: there is nothing to roll back")
    if len(pointed) == 1:
        raise ChannelError(f"channel {channel} has pointed at {pointed[0]} only: there is nothing before it to roll back to")
    return pointed[-2]


def rollback_targets(moves: list[ChannelMove], channel: str, keep: int) -> list[str]:
    """The images the next `keep` rollbacks would go back to, nearest first."""
    earlier = [image for image in reversed(stack(moves, channel)[:-1]) if image is not None]
    return list(dict.fromkeys(earlier))[:keep]


def channels_on(moves: list[ChannelMove], image_id: str, names: tuple[str, ...]) -> list[str]:
    """The channels (of `names`) that point at `image_id` now."""
    return [name for name in names if current(moves, name) == image_id]


def check_movable(bake: str, channel: str, names: tuple[str, ...]) -> None:
    """A channel a user may move on this bake: declared, and not the managed `latest`."""
    if channel == LATEST:
        raise ChannelError(f"{bake}: channel latest is the newest image, moved by each bake; it cannot be moved by hand")
    if channel not in names:
        raise ChannelError(f"{bake}: no channel {channel!r}; its channels are {', '.join(names)} "
                           "(declare others with channels = [...] in its bake file)")
