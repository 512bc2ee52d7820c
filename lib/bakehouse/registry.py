"""Registries: where images live, and the source of truth for what is up to date.

A registry answers "which complete images of bake B exist, newest first?" and records a new
image atomically. The doit dep file is only a cache; a fresh clone asks the registry.

Newest means newest, by one rule (`newest_first`) that every question of order uses:
`created` (UTC, to the microsecond; records written before microseconds were kept count
from the start of their second), then `sequence`, a number that grows with each image of a
bake (the next one is given while the bake's lock is held), so two images made in
the same instant (a controlled clock, a coarse one) still order by which came last. Never
by an id or a hash.

The image in use (`in_use`) is the one most recently baked, or found current again by a
`doit` run after a change was reverted (then the registry marks it: `used_at`, with the next
sequence number, so a mark orders against bakes even under a still clock). Reasons for a
rebake are explained against it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from .revocation import Revocation

if TYPE_CHECKING:
    from .channels import ChannelMove
    from .contents import Manifest


@dataclass(frozen=True)
class ImageRecord:
    """One complete image of a bake, as the registry knows it."""

    image_id: str
    bake: str
    key: str
    created: str
    provider: str
    # Where the image is: {"local": "images/hello/<id>"} (an OCI layout) or {region: ami-id} for AWS.
    locations: dict[str, str]
    base_image: str | None
    packages: dict[str, str | None]
    summary: dict[str, Any] = field(default_factory=dict)
    log: str | None = None
    name: str | None = None  # the AMI name, where the provider names images apart from ids
    sequence: int = 0  # grows with each image of a bake; 0 for records older than it
    used_at: str | None = None  # when a `doit` run last found it current again, if ever
    used_sequence: int = 0  # the sequence number that mark was given
    bakehouse_version: str | None = None  # the bakehouse that baked it (None: from before this was kept)
    revoked: Revocation | None = None  # kept apart from the record, by the registry (revocation.py)

    def to_json(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id, "bake": self.bake, "key": self.key, "created": self.created,
            "provider": self.provider, "locations": self.locations, "base_image": self.base_image,
            "packages": self.packages, "summary": self.summary, "log": self.log, "name": self.name,
            "sequence": self.sequence, "used_at": self.used_at, "used_sequence": self.used_sequence,
            "bakehouse_version": self.bakehouse_version,
            "revoked": None if self.revoked is None else self.revoked.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageRecord:
        """A record as written by to_json(); TypeError or KeyError for any other shape."""
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        optional = {"name": None, "sequence": 0, "summary": {}, "log": None, "used_at": None, "used_sequence": 0,
                    "bakehouse_version": None, "revoked": None}
        values = {name: data[name] for name in cls.__dataclass_fields__ if name not in optional}
        values.update({name: data.get(name, default) for name, default in optional.items()})
        for name, wanted in _SHAPE.items():
            if not isinstance(values[name], wanted):
                raise TypeError(f"'{name}' is {type(values[name]).__name__}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in values["locations"].items()):
            raise TypeError("'locations' must map places to strings")
        if values["revoked"] is not None:
            values["revoked"] = Revocation.from_json(values["revoked"])
        return cls(**values)


_SHAPE: dict[str, type | tuple[type, ...]] = {
    "image_id": str, "bake": str, "key": str, "created": str, "provider": str, "locations": dict,
    "base_image": (str, type(None)), "packages": dict, "summary": dict, "log": (str, type(None)),
    "name": (str, type(None)), "sequence": int, "used_at": (str, type(None)), "used_sequence": int,
    "bakehouse_version": (str, type(None)), "revoked": (dict, type(None)),
}


def timestamp(moment: datetime) -> str:
    """How `created` is written: ISO 8601, UTC, to the microsecond (always with a fraction)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def created_at(image: ImageRecord) -> datetime:
    """When `image` was made; a time that cannot be read sorts oldest."""
    return _moment(image.created)


def _moment(text: str | None) -> datetime:
    try:
        moment = datetime.fromisoformat(str(text))
    except (TypeError, ValueError):
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def order(image: ImageRecord) -> tuple[datetime, int]:
    """The one measure of "newer": later `created`, then higher `sequence`."""
    return created_at(image), image.sequence


def newest_first(images: Iterable[ImageRecord]) -> list[ImageRecord]:
    return sorted(images, key=order, reverse=True)


def next_sequence(images: Iterable[ImageRecord]) -> int:
    """The sequence number of the next image (or in-use mark) of a bake whose images are `images`."""
    return max((max(image.sequence, image.used_sequence) for image in images), default=0) + 1


def last_use(image: ImageRecord) -> tuple[datetime, int]:
    """When `image` last became the one in use: baked, or marked current again."""
    made = order(image)
    if image.used_at is None:
        return made
    return max(made, (_moment(image.used_at), image.used_sequence))


def in_use(images: Iterable[ImageRecord]) -> ImageRecord | None:
    """The image in use: the one most recently baked or found current again."""
    return max(images, key=last_use, default=None)


class Registry(Protocol):
    def images(self, bake: str) -> list[ImageRecord]:
        """Every complete image of `bake`, newest first."""
        ...

    def record(self, image: ImageRecord, out: TextIO) -> None:
        """Make `image` count, atomically: it is either fully recorded or not at all. Quick:
        a bake's signals wait while it runs (interrupts.deferred)."""
        ...

    def settle(self, image: ImageRecord, out: TextIO) -> None:
        """Once `image` counts, wait until the registry shows it (AWS is eventually
        consistent; `out` hears of the wait); RecordedError when it does not in time."""
        ...

    def contents_path(self, bake: str, image_id: str) -> Path:
        """Where a bake on this machine writes the image's package manifest (contents.py)."""
        ...

    def read_contents(self, bake: str, image_id: str) -> Manifest:
        """The image's package manifest, wherever it is kept; ContentsError if nowhere."""
        ...

    def forget(self, bake: str) -> None:
        """Drop anything cached about `bake`'s images: the next images() reads afresh."""
        ...

    def mark_in_use(self, image: ImageRecord, when: str, images: list[ImageRecord]) -> None:
        """Note that `image` is in use again since `when` (its bake's images are `images`)."""
        ...

    def size(self, image: ImageRecord) -> int:
        """What keeping `image` costs, in bytes (AMIs: their snapshots' volume sizes)."""
        ...

    def freed(self, images: list[ImageRecord]) -> int:
        """The bytes deleting all of `images` together frees: what they share with each other
        counted once, and only when the last of its users is among them."""
        ...

    def facts(self, image: ImageRecord) -> dict[str, Any]:
        """What `doit images` shows of `image` beyond its record (a digest, sizes); may be {}."""
        ...

    def attestations(self, image: ImageRecord) -> list[dict[str, Any]]:
        """The in-toto statements kept with `image` (its provenance: provenance.py); may be []."""
        ...

    def channel_moves(self, bake: str) -> list[ChannelMove]:
        """Every move of `bake`'s channels (channels.py), oldest first."""
        ...

    def add_channel_move(self, bake: str, move: ChannelMove, seen: int) -> bool:
        """Record `move`, only if the history still has exactly the `seen` moves it had when
        read (a conditional write); False when another move came first."""
        ...

    def revoke(self, image: ImageRecord, revocation: Revocation | None, now: datetime) -> list[str]:
        """Mark `image` revoked (on every AMI; beside the local record), or, with None, clear
        the mark (`doit restore`); warnings of what could not be done besides (an AMI's
        deprecation), one line each."""
        ...

    def used_outside(self, images: list[ImageRecord]) -> dict[str, list[str]]:
        """Images something outside bakehouse uses (an instance, a launch template...), by id,
        with what uses each; an image this cannot be sure of is reported as used."""
        ...

    def delete(self, image: ImageRecord) -> list[str]:
        """Delete `image` everywhere it is, and what it owns (snapshots, its file and log);
        makes it invisible first, so an interrupted delete leaves leftovers, never half an
        image. Returns what it deleted. What the registry keeps of its answers may still show
        the image until forget() (one listing serves a whole prune)."""
        ...

    def finish_deletions(self, bake: str) -> list[str]:
        """Delete what an interrupted delete of `bake`'s images left; returns what it removed."""
        ...

    def clean_caches(self) -> list[str]:
        """After a prune: drop what the registry keeps on this machine for images that are gone
        (unpacked layers); returns what it removed."""
        ...
