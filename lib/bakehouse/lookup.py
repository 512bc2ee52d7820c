"""Images named on the command line: by image id (or an AMI id), or by bake name.

`doit images --packages`, `--sbom` and `doit diff` take either. A bake name means the bake's
image in use (registry.in_use: the one most recently baked, or found current again; not a
revoked one, unless every image of the bake is revoked), and its
previous image is the one in use before it: the newest image made before it. `BAKE@CHANNEL`
means the image the channel points at (`hello@stable`; `hello@latest`: its newest image).
"""

from __future__ import annotations

from .channels import LATEST
from .contents import Manifest
from .decide import Planner
from .errors import BakehouseError
from .registry import ImageRecord, in_use, order
from .revocation import latest, pointed_at, usable
from .tomlcheck import did_you_mean


class UnknownImage(BakehouseError):
    """A name that is neither a bake nor the id of one of their images."""


def find_image(planner: Planner, name: str) -> ImageRecord:
    """The image `name` names: a bake's image in use, or an image by its id."""
    name = name.removeprefix("bake:")
    if "@" in name:
        return channel_image(planner, *name.split("@", 1))
    if name in planner.graph.names:
        images = planner.images(name)
        image = in_use(usable(images, planner.now)) or in_use(images)  # a revoked one only when all are
        if image is None:
            raise UnknownImage(f"{name} has no image yet; bake it: doit bake:{name}")
        return image
    # the bake whose name starts the id first (ids are <bake>-<time>-<key>); an AMI id is
    # looked for in every bake
    for bake in sorted(planner.graph.names, key=lambda bake: not name.startswith(bake + "-")):
        for image in planner.images(bake):
            if name in (image.image_id, image.name) or name in image.locations.values():
                return image
    raise UnknownImage(
        f"no bake or image '{name}'{did_you_mean(name, planner.graph.names)}; `doit images` lists them"
    )


def channel_image(planner: Planner, bake: str, channel: str) -> ImageRecord:
    """The image `bake`'s `channel` points at (`latest`: its newest image)."""
    if bake not in planner.graph.names:
        raise UnknownImage(f"no bake '{bake}'{did_you_mean(bake, planner.graph.names)}")
    images = planner.images(bake)
    if channel == LATEST:
        newest = latest(images, planner.now)
        if newest is None:
            raise UnknownImage(f"{bake} has no image yet; bake it: doit bake:{bake}" if not images
                               else f"{bake} has no image that is not revoked; bake it: doit bake:{bake}")
        return newest
    names = planner.graph[bake].channels
    if channel not in names:
        raise UnknownImage(f"{bake} has no channel '{channel}'; its channels are latest, {', '.join(names)}")
    moves = planner.provider_of(bake).registry.channel_moves(bake)
    image_id = pointed_at(moves, channel, {image.image_id: image for image in images}, planner.now)
    found = next((image for image in images if image.image_id == image_id), None)
    if found is None:
        raise UnknownImage(f"{bake}@{channel} points at nothing" if image_id is None
                           else f"{bake}@{channel} points at {image_id}, which is no longer there")
    return found


def previous_image(planner: Planner, image: ImageRecord) -> ImageRecord:
    """The image of the same bake made just before `image`."""
    older = [other for other in planner.images(image.bake) if order(other) < order(image)]
    if not older:
        raise UnknownImage(f"{image.image_id} is the first image of {image.bake}: nothing to compare it with")
    return older[0]


def manifest_of(planner: Planner, image: ImageRecord) -> Manifest:
    """The package manifest recorded with `image`."""
    return planner.provider_of(image.bake).registry.read_contents(image.bake, image.image_id)
