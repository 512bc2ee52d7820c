"""`doit images [BAKE ...]`: the image catalogue, read from the registry, and what retention
(`doit prune`) would delete of it.

The newest images of each bake (10 unless --limit says otherwise): id, where it is (file or
region:AMI), when it was made, its packages with versions, and the base image it is built on;
for AMIs, who may launch them (private, public, or the accounts shared with).

`--packages IMAGE` prints what is inside one image (its package manifest, contents.py) and
`--sbom IMAGE` the same as a CycloneDX 1.6 JSON SBOM (sbom.py), `--provenance IMAGE` the in-toto
statement kept with it (provenance.py); IMAGE is an image id, an AMI
id, or a bake name (its image in use).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from doit.exceptions import InvalidCommand

from ..contents import manifest_text
from ..decide import Planner
from ..epoch import now_utc
from ..errors import BakehouseError
from ..lookup import find_image, manifest_of
from ..oci.listing import image_files, listing
from ..provenance import PREDICATE_TYPE
from ..registry import ImageRecord, created_at
from ..sbom import cyclonedx_json
from ..channels import LATEST
from ..revocation import latest, pointed_at
from ..tasks import planner_from_tasks
from . import Command
from .plan import selected
from .prune import freed_by, rows, size_text, to_delete, verdicts

DEFAULT_LIMIT = 10


Facts = dict[str, dict[str, Any]]  # image id -> what its registry adds (Registry.facts)


def catalogue_json(catalogue: dict[str, list[ImageRecord]], facts: Facts | None = None) -> str:
    return json.dumps(
        {name: [_public(image, (facts or {}).get(image.image_id, {})) for image in images]
         for name, images in catalogue.items()}, indent=2
    )


def channels_of(planner: Planner, name: str, images: list[ImageRecord]) -> dict[str, list[str]]:
    """The channels each of `images` is on (`latest`: the bake's newest image)."""
    moves = planner.provider_of(name).registry.channel_moves(name)
    newest = latest(planner.images(name), planner.now)
    by_id = {image.image_id: image for image in planner.images(name)}
    found = {}
    for image in images:
        on = ([LATEST] if newest is not None and newest.image_id == image.image_id else [])
        on += [channel for channel in planner.graph[name].channels if pointed_at(moves, channel, by_id, planner.now) == image.image_id]
        if on:
            found[image.image_id] = on
    return found


def _public(image: ImageRecord, facts: dict[str, Any]) -> dict[str, Any]:
    data = image.to_json()
    del data["summary"]  # the key's inputs: long, and `doit info` explains them better
    return {**data, **facts}


def catalogue_text(catalogue: dict[str, list[ImageRecord]], launch: dict[str, str | None] | None = None,
                   facts: Facts | None = None) -> str:
    """`launch`: who may launch each bake's images, where the provider has launch permissions;
    `facts`: an image's digest and sizes, where its registry knows them."""
    lines = []
    now = now_utc()  # once: whether a revocation given with --at is in effect yet
    for name, images in catalogue.items():
        who = (launch or {}).get(name)
        lines.append(f"{name}: {len(images) or 'no'} image{'s' if len(images) != 1 else ''}"
                     + (f" (launch: {who})" if who else ""))
        for image in images:
            where = ", ".join(f"{place}:{ref}" if place != "local" else ref for place, ref in sorted(image.locations.items()))
            named = f"  {image.name}" if image.name else ""
            lines.append(f"  {image.image_id}  {image.created}{named}  {where}")
            packages = " ".join(name if v is None else f"{name}={v}" for name, v in sorted(image.packages.items()))
            known = (facts or {}).get(image.image_id) or {}
            details = [f"packages: {packages}" if packages else "", f"base: {image.base_image}" if image.base_image else "",
                       f"log: {image.log}" if image.log else "",
                       f"channels: {', '.join(known['channels'])}" if known.get("channels") else ""]
            if any(details):
                lines.append("      " + "  ".join(detail for detail in details if detail))
            if image.revoked is not None:
                revoked = image.revoked
                where = f" on {', '.join(revoked.only)}" if revoked.only else ""
                state = "REVOKED" if revoked.in_effect(now) else f"TO BE REVOKED at {revoked.at}"
                lines.append(f"      {state}{where}: {revoked.reason} (by {revoked.by} at {revoked.since})")
            aging = [f"deprecated from {known['deprecation']}" if known.get("deprecation") else "",
                     f"IMDS {known['imds_support']} only" if known.get("imds_support") else "",
                     "protected from deregistration" if known.get("protected") else ""]
            if any(aging):
                lines.append("      " + "  ".join(part for part in aging if part))
            if "digest" in known:
                layers = f"{known['layers']} layer{'s' if known['layers'] != 1 else ''}"
                shared = f"{size_text(known['shared_bytes'])} shared with other images, " if known.get("shared_bytes") else ""
                lines.append(f"      {known['digest']}  {layers}, {size_text(known['own_bytes'])} own, {shared}"
                             f"{size_text(known['total_bytes'])} in all  {known['oci']}")
    return "\n".join(lines) + "\n"


class ImagesCommand(Command):
    """The `doit images` command, registered through the `doit.COMMAND` entry point."""

    exit_codes = ((0, "shown"), (2, "no such image, or it cannot be read"), (3, "a bad option or bake file"))

    name = "images"
    doc_purpose = "list the newest images of each bake, from the registry"
    doc_usage = "[BAKE ...]"
    doc_description = "Images of the named bakes (all bakes when none is named), newest first."
    cmd_options = (
        {"name": "limit", "long": "limit", "type": int, "default": DEFAULT_LIMIT,
         "help": "how many images per bake [default: %(default)s]"},
        {"name": "as_json", "long": "json", "type": bool, "default": False, "help": "print JSON"},
        {"name": "packages", "long": "packages", "type": str, "default": "",
         "help": "print the packages inside IMAGE (an image id, an AMI id, or a bake: its image in use)"},
        {"name": "sbom", "long": "sbom", "type": str, "default": "",
         "help": "print IMAGE's packages as a CycloneDX 1.6 JSON SBOM"},
        {"name": "provenance", "long": "provenance", "type": str, "default": "",
         "help": "print IMAGE's provenance: the in-toto statement (SLSA provenance v1) kept with it"},
        {"name": "files", "long": "files", "type": str, "default": "",
         "help": "list the files inside local IMAGE (under the PATH given as a name, else all), as ls -l does"},
    )

    def _execute(self, limit: int, as_json: bool, packages: str, sbom: str, provenance: str, files: str,
                 pos_args: list[str]) -> int:
        planner = planner_from_tasks(self.task_list)
        if files:
            return self._files(planner, files, pos_args)
        if provenance:
            return self._provenance(planner, provenance)
        if packages or sbom:
            return self._contents(planner, packages or sbom, as_json, as_sbom=bool(sbom))
        names = [name.removeprefix("bake:") for name in pos_args or []]
        shown = names or selected(planner.graph, [])
        selected(planner.graph, names)  # unknown names: one clear error
        try:
            catalogue = {
                name: planner.images(name)[:limit]
                for name in shown
            }
        except BakehouseError as error:
            sys.stderr.write(f"ERROR: {error}\n")
            return 2
        facts = {image.image_id: planner.provider_of(name).registry.facts(image)
                 for name, images in catalogue.items() for image in images}
        for name, images in catalogue.items():
            try:
                for image_id, on in channels_of(planner, name, images).items():
                    facts[image_id]["channels"] = on
            except BakehouseError as error:  # the images are still worth listing
                sys.stderr.write(f"note: {name}'s channels cannot be read: {error}\n")
        if as_json:
            self.outstream.write(catalogue_json(catalogue, facts) + "\n")
            return 0
        launch = {name: planner.provider_of(name).launch(planner.graph[name]) for name in shown}
        self.outstream.write(catalogue_text(catalogue, launch, facts) + prunable(planner, shown) + "\n")
        return 0


    def _files(self, planner: Planner, name: str, paths: list[str]) -> int:
        """The files of a local image, its layers applied (oci/listing.py)."""
        if len(paths) > 1:
            raise InvalidCommand(f"doit images --files IMAGE takes one PATH, not {' '.join(paths)}")
        try:
            image = find_image(planner, name)
            if image.provider != "local":
                raise BakehouseError(f"{image.image_id} is an AMI: its files are inside AWS, not here "
                                     "(doit images --packages lists its packages)")
            found = image_files(planner.provider_of(image.bake).registry.oci_image(image))
        except BakehouseError as error:
            sys.stderr.write(f"ERROR: {error}\n")
            return 2
        lines = listing(found, paths[0] if paths else "/")
        if not lines:
            sys.stderr.write(f"ERROR: {image.image_id} has no {paths[0]}\n")
            return 2
        self.outstream.write("".join(line + "\n" for line in lines))
        return 0

    def _provenance(self, planner: Planner, name: str) -> int:
        try:
            image = find_image(planner, name)
            found = [statement for statement in planner.provider_of(image.bake).registry.attestations(image)
                     if statement.get("predicateType") == PREDICATE_TYPE]
        except BakehouseError as error:
            sys.stderr.write(f"ERROR: {error}\n")
            return 2
        if not found:
            sys.stderr.write(f"ERROR: {image.image_id} has no provenance kept with it (it was baked before "
                             "bakehouse kept provenance)\n")
            return 2
        # one statement per bake run that made some of it (an AMI completed in a region later):
        # a stream of JSON documents, as jq reads and writes them
        self.outstream.write("".join(json.dumps(statement, indent=2) + "\n" for statement in found))
        return 0

    def _contents(self, planner: Planner, name: str, as_json: bool, as_sbom: bool) -> int:
        try:
            image = find_image(planner, name)
            manifest = manifest_of(planner, image)
        except BakehouseError as error:
            sys.stderr.write(f"ERROR: {error}\n")
            return 2
        if as_sbom:
            self.outstream.write(cyclonedx_json(manifest, created_at(image), image.provider))
        elif as_json:
            self.outstream.write(json.dumps(manifest.to_json(), indent=2) + "\n")
        else:
            self.outstream.write(manifest_text(manifest))
        return 0


def prunable(planner: Planner, names: list[str]) -> str:
    """What retention would delete, so what old images cost is in sight."""
    try:
        found = verdicts(planner, names)
        table = rows(planner, found)
        freed = freed_by(planner, found)
    except BakehouseError as error:
        return f"prunable: cannot tell ({error})"
    count, size = to_delete(table, freed)
    if not count:
        return "prunable: nothing (retention keeps every image)"
    return f"prunable: {count} images, {size_text(size)} (`doit prune` lists them)"
