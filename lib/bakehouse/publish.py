"""Publishing: the images a bake's channels point at, written where deployments read them.

A bake's `[publish]` table names the targets, and which channels go there:

    [publish]
    channels = ["stable"]                      # default: every channel of the bake, and latest
    ssm = "/images/{bake}/{channel}"           # AMIs: an SSM parameter per region (aws:ec2:image)
    launch_templates = [{ name = "hello-web", channel = "stable", default = true }]
    registry = "registry.example.com/hello"    # local images: REGISTRY/NAME:CHANNEL, by skopeo

Each target is a `Publication`: the value it should hold (an AMI id, an image digest) and the
one it holds. Only one that differs is written (by its provider, which reads it back before it
counts), after a bake (for `latest`), after `doit promote` or `doit rollback`, and by
`doit publish:BAKE`, which `doit` runs after each bake: so a publish that failed is done by the
next run. `doit plan` shows each that is out of date. A failed publish is one line naming the
target; nothing else changes.
"""

from __future__ import annotations

import re
from datetime import datetime
from dataclasses import dataclass
from typing import Any

from .channels import LATEST
from .errors import BakehouseError, DefinitionError
from .keyref import Key, names
from .registry import ImageRecord
from .revocation import latest, pointed_at
from .tomlcheck import reject_unknown, type_name

PUBLISH_KEY_DOCS = (
    Key(("channels",), "list of strings", "every channel of the bake, and `latest`",
        "the channels published (`latest` is the newest image)"),
    Key(("ssm",), "string", "none",
        "AMIs: an SSM parameter in each region of the bake, named with `{bake}`, `{channel}` and `{region}` "
        "(`/images/{bake}/{channel}`), holding the channel's AMI there, data type `aws:ec2:image`"),
    Key(("launch_templates",), "list of tables", "`[]`",
        "AMIs: `{ name = \"...\", channel = \"stable\", default = true }`: a new version of the launch template, "
        "in each region of the bake, made from its default version with the channel's AMI; `default` makes it the default version"),
    Key(("registry",), "string", "none",
        "local images: an OCI registry repository (`HOST[:PORT]/NAME`); each channel is pushed as the tag of its name, "
        "by `skopeo copy`, digest unchanged"),
)
PUBLISH_KEYS = names(PUBLISH_KEY_DOCS)
PLACEHOLDERS = ("bake", "channel", "region")


class PublishError(BakehouseError):
    """A target that could not be written, or that read back otherwise."""


@dataclass(frozen=True)
class LaunchTemplate:
    name: str
    channel: str
    make_default: bool = True


@dataclass(frozen=True)
class PublishSpec:
    channels: tuple[str, ...]
    ssm: str | None = None
    launch_templates: tuple[LaunchTemplate, ...] = ()
    registry: str | None = None


@dataclass(frozen=True)
class Publication:
    """One value at one place: what it should hold, and what it holds."""

    kind: str  # "ssm", "launch-template", "registry"
    name: str  # the parameter, the template, the repository:tag
    place: str  # a region, or "local"
    channel: str
    image: ImageRecord | None  # what the channel points at
    want: str | None  # the value it should hold (an AMI id, a digest); None: nothing to publish
    have: str | None  # the value it holds now

    @property
    def target(self) -> str:
        return f"{self.kind} {self.name}" + ("" if self.place == "local" else f" in {self.place}")

    @property
    def out_of_date(self) -> bool:
        return self.want is not None and self.want != self.have

    def reason(self) -> str:
        return f"{self.target}: {self.have or 'nothing'} -> {self.want}"


def parse_publish(where: str, table: Any, channels: tuple[str, ...]) -> PublishSpec | None:
    """A bake's [publish] table, checked now (one line per mistake)."""
    if table is None:
        return None
    if not isinstance(table, dict):
        raise DefinitionError(f"{where}: publish must be a table ([publish]), not {type_name(table)}")
    reject_unknown(where, "publish.", table, PUBLISH_KEYS)
    known = (LATEST, *channels)
    published = table.get("channels", list(known))
    if not isinstance(published, list) or not all(isinstance(name, str) for name in published):
        raise DefinitionError(f"{where}: publish.channels must be a list of channel names")
    for name in published:
        if name not in known:
            raise DefinitionError(f"{where}: publish.channels: no channel {name!r}; the bake's are {', '.join(known)}")
    ssm = table.get("ssm")
    if ssm is not None:
        _check_ssm_name(where, ssm)
    templates = tuple(_launch_template(where, n, entry, known) for n, entry in enumerate(table.get("launch_templates", [])))
    registry = table.get("registry")
    if registry is not None and (not isinstance(registry, str) or not re.fullmatch(r"[a-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)+", registry)):
        raise DefinitionError(f"{where}: publish.registry must be a repository such as registry.example.com/hello, not {registry!r}")
    if ssm is None and not templates and registry is None:
        raise DefinitionError(f"{where}: publish names no target: ssm, launch_templates or registry")
    return PublishSpec(tuple(published), ssm, templates, registry)


def _check_ssm_name(where: str, name: Any) -> None:
    if not isinstance(name, str) or not name.startswith("/"):
        raise DefinitionError(f"{where}: publish.ssm must be a parameter name starting with /, such as /images/{{bake}}/{{channel}}")
    for field in re.findall(r"\{([^}]*)\}", name):
        if field not in PLACEHOLDERS:
            raise DefinitionError(f"{where}: publish.ssm: {{{field}}} is not one of {{bake}}, {{channel}}, {{region}}")
    if "{channel}" not in name:
        raise DefinitionError(f"{where}: publish.ssm must name {{channel}}, or every channel would write one parameter")


def _launch_template(where: str, n: int, entry: Any, known: tuple[str, ...]) -> LaunchTemplate:
    prefix = f"publish.launch_templates[{n}]"
    if not isinstance(entry, dict):
        raise DefinitionError(f"{where}: {prefix} must be a table: {{ name = \"...\", channel = \"stable\" }}")
    reject_unknown(where, prefix + ".", entry, ("name", "channel", "default"))
    name, channel, default = entry.get("name"), entry.get("channel"), entry.get("default", True)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9()./_-]{3,128}", name):
        raise DefinitionError(f"{where}: {prefix}.name must be a launch template's name, not {name!r}")
    if channel not in known:
        raise DefinitionError(f"{where}: {prefix}.channel: no channel {channel!r}; the bake's are {', '.join(known)}")
    if not isinstance(default, bool):
        raise DefinitionError(f"{where}: {prefix}.default must be true or false")
    return LaunchTemplate(name, channel, default)


def channel_images(images: list[ImageRecord], moves: list[Any], channels: tuple[str, ...],
                   now: datetime) -> dict[str, ImageRecord | None]:
    """The image each channel points at now (`latest`: the newest not revoked)."""
    by_id = {image.image_id: image for image in images}
    return {channel: latest(images, now) if channel == LATEST else by_id.get(pointed_at(moves, channel, by_id, now) or "")
            for channel in channels}


def pending(planner: Any, name: str) -> list[Publication]:
    """The targets of bake `name` that do not hold what its channels point at (planner: decide.Planner)."""
    bake = planner.graph[name]
    if bake.publish is None:
        return []
    provider = planner.provider_of(name)
    pointed = channel_images(planner.images(name), provider.registry.channel_moves(name), bake.publish.channels, planner.now)
    return [publication for publication in provider.publications(bake, pointed) if publication.out_of_date]


def publish_pending(planner: Any, name: str, say: Any) -> int:
    """Write every target of `name` that is out of date, saying each (`say` takes a line);
    the first that fails stops it, in one line. Returns how many were written."""
    provider = planner.provider_of(name)
    written = 0
    for publication in pending(planner, name):
        provider.publish(planner.graph[name], publication)
        say(f"[{name}] published {publication.reason()}")
        written += 1
    return written
