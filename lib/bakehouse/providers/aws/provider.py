"""The bake half of the AWS provider: AMIs baked by packer's amazon-ebs, one region or many, registered by tags.

- Source: an AMI id (or one per region), or a filter (name pattern, owners) resolved to the
  newest match in each region at plan time. The image found enters the content key by what it
  is, its owner and name (a publisher copies one image to every region under one name), never
  by its per-region ids: a new upstream AMI rebakes the base, and with it every service, but
  adding a region does not.
- A service bakes in each region on its base's AMI in that region; its key names the base
  image by its bakehouse image id, which all the base's AMIs share.
- Regions: by default one amazon-ebs source per region in one packer run (packer runs them in
  parallel); with multi_region = "copy", one bake in the first region copied to the others
  (`ami_regions`). Regions an image is missing from are baked there alone, under the same
  image id, so the image becomes complete again.
- Names follow Spinnaker: {ami_name or bake}-{arch}-{ami_suffix or timestamp}-{os}, one
  timestamp for all regions of a bake (UTC seconds and 6 random hex digits, so two bakes in
  the same second never collide).
"""

from __future__ import annotations

import getpass
import secrets
from datetime import UTC, datetime
from typing import Any

from ... import packer
from ...errors import PackerError
from ...fingerprint import compact
from ...model import Bake, BakeGraph
from ...project import Project
from ...registry import ImageRecord
from .. import BakeJob
from .client import AwsError, Ec2, ec2_endpoint
from .registry import (
    BAKE_TAG, BASE_TAG, CREATED_TAG, IMAGE_TAG, KEY_TAG, LOG_TAG, SEQUENCE_TAG, AwsRegistry, summary_tags,
)
from .settings import DEBIAN_ARCHITECTURES, AwsSettings, AwsSource, settings_of

PLUGINS_SINCE = (1, 7)  # packer 1.7 moved amazon-ebs into a plugin that must be required


class AwsProvider:
    name = "aws"

    def __init__(self, project: Project, graph: BakeGraph, ec2: Ec2 | None = None) -> None:
        self.project = project
        self.graph = graph
        self.ec2 = ec2 or Ec2()
        self.registry = AwsRegistry(self.ec2, self._regions_of)
        self._resolved: dict[tuple[str, str, tuple[str, ...]], dict[str, Any]] = {}

    def _regions_of(self, bake: str) -> tuple[str, ...]:
        return settings_of(self.graph[bake]).regions

    def source(self, bake: Bake) -> dict[str, Any] | None:
        if not isinstance(bake.source, AwsSource):
            return None
        found = {region: self._source_ami(bake, region) for region in settings_of(bake).regions}
        identities = {region: {"owner": image.get("OwnerId"), "name": image.get("Name")} for region, image in found.items()}
        if len({(i["owner"], i["name"]) for i in identities.values()}) == 1:
            return {"image": next(iter(identities.values()))}
        # Regions disagree (a publisher's copy has not reached one yet): each region's image counts.
        return {"by_region": dict(sorted(identities.items()))}

    def schema1(self, bake: Bake, base_image: ImageRecord | None) -> dict[str, Any]:
        source = bake.source
        regions = settings_of(bake).regions
        return {
            "settings": settings_of(bake).content_schema1(),
            "source_definition": source.content() if isinstance(source, AwsSource) else None,
            "source": {"ids": {region: self._source_ami(bake, region)["ImageId"] for region in regions}}
            if isinstance(source, AwsSource) else None,
            "base_image": None if base_image is None
            else {"bake": base_image.bake, "ids": dict(sorted(base_image.locations.items()))},
        }

    def _source_ami(self, bake: Bake, region: str) -> dict[str, Any]:
        """The source AMI of a base bake in `region`, as DescribeImages gives it (one lookup
        per region and source in a run)."""
        source = bake.source
        assert isinstance(source, AwsSource)
        given = source.ami_in(region)
        lookup = (region, given or source.name or "", source.owners)
        if lookup not in self._resolved:
            self._resolved[lookup] = self._given(bake, region, given) if given else self._newest(bake, region, source)
        return self._resolved[lookup]

    def _given(self, bake: Bake, region: str, ami: str) -> dict[str, Any]:
        found = self.ec2.describe_images(region, ImageIds=[ami])
        if not found:
            raise AwsError(f"{bake.where}: source.ami {ami} does not exist in {region}")
        return found[0]

    def _newest(self, bake: Bake, region: str, source: AwsSource) -> dict[str, Any]:
        found = self.ec2.describe_images(
            region, Owners=list(source.owners),
            Filters=[{"Name": "name", "Values": [str(source.name)]}, {"Name": "state", "Values": ["available"]}],
        )
        wanted = f"no available AMI named '{source.name}' owned by {', '.join(source.owners)} in {region}"
        if not found:
            raise AwsError(f"{bake.where}: source: {wanted}")
        if len(found) > 1 and not source.most_recent:
            raise AwsError(
                f"{bake.where}: source: {len(found)} AMIs match in {region}; "
                "narrow source.name or set most_recent = true"
            )
        return max(found, key=lambda image: (image.get("CreationDate", ""), image.get("Name", "")))

    def places(self, bake: Bake) -> tuple[str, ...]:
        return settings_of(bake).regions

    def architecture(self, bake: Bake) -> str:
        arch = settings_of(bake).arch
        return DEBIAN_ARCHITECTURES.get(arch, arch)

    def new_image_id(self, job_stem: str, bake: Bake) -> str:
        return f"{job_stem}-{secrets.token_hex(3)}"

    def context(self, job: BakeJob) -> dict[str, Any]:
        settings = settings_of(job.bake)
        sources = {region: self._start_from(job, region) for region in job.places}
        name = self._ami_name(job, settings)
        tags = self._common_tags(job, name)
        return {
            "aws": {
                "builds": [
                    {
                        "name": region.replace("-", "_"),
                        "source": f"source.amazon-ebs.{region.replace('-', '_')}",
                        "region": region,
                        "source_ami": sources[region]["ImageId"],
                        "copy_to": copies,
                        "tags": {**tags, "base_ami_id": sources[region]["ImageId"],
                                 "base_ami_name": sources[region].get("Name", "")},
                    }
                    for region, copies in _plan(settings, job.places)
                ],
                "ami_name": name,
                "instance_type": settings.instance_type,
                "communicator": settings.communicator,
                "ssh_username": settings.ssh_username,
                "endpoint": ec2_endpoint(),
                "required_plugins": packer.packer_version(cache_dir=self.project.state_dir / "cache") >= PLUGINS_SINCE,
            },
            "base_image": None if job.base_image is None else {
                "id": job.base_image.image_id, "amis": job.base_image.locations,
            },
        }

    def _start_from(self, job: BakeJob, region: str) -> dict[str, Any]:
        """The AMI a bake starts from in `region`, with its name (for the base_ami_name tag)."""
        if job.base_image is not None:
            base = self.registry.amis(job.base_image.bake, job.base_image.image_id).get(region)
            ami = job.base_image.locations.get(region)
            if ami is None and job.probe:
                return {"ImageId": "ami-00000000000000000", "Name": ""}
            if ami is None:
                raise AwsError(f"{job.bake.name}: its base image {job.base_image.image_id} has no AMI in {region}")
            return {"ImageId": ami, "Name": (base or {}).get("Name", "")}
        return self._source_ami(job.bake, region)

    def _ami_name(self, job: BakeJob, settings: AwsSettings) -> str:
        """Spinnaker's {name}-{arch}-{suffix or timestamp}-{os}; an image that is being
        completed keeps the name its AMIs have in the other regions."""
        if job.extends is not None:
            existing = self.registry.amis(job.bake.name, job.extends.image_id)
            if existing:
                return str(next(iter(existing.values()))["Name"])
        made = datetime.fromisoformat(job.created)
        stamp = settings.ami_suffix or f"{made:%Y%m%d%H%M%S}-{job.image_id[-6:]}"
        return f"{settings.ami_name or job.bake.name}-{settings.arch}-{stamp}-{settings.os}"

    def _common_tags(self, job: BakeJob, name: str) -> dict[str, str]:
        tags = {
            "Name": name,
            BAKE_TAG: job.bake.name,
            IMAGE_TAG: job.image_id,
            KEY_TAG: job.key,
            CREATED_TAG: job.created,
            SEQUENCE_TAG: str(job.sequence),
            LOG_TAG: self.project.relative(job.log),
            "appversion": _appversion(job),
            "creator": _creator(),
            "creation_time": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if job.base_image is not None:
            tags[BASE_TAG] = job.base_image.image_id
        return {**tags, **summary_tags(compact(job.summary))}

    def made(self, job: BakeJob, manifest: dict[str, Any]) -> dict[str, str]:
        made: dict[str, str] = {}
        for build in packer.read_manifest_builds(job.manifest, job.bake.name):
            for pair in str(build.get("artifact_id", "")).split(","):
                region, _, ami = pair.partition(":")
                if region and ami.startswith("ami-"):
                    made[region] = ami
        missing = [region for region in job.places if region not in made]
        if missing:
            raise PackerError(f"{job.bake.name}: packer's manifest names no AMI in {', '.join(missing)}")
        return {region: made[region] for region in job.places}

    def discard(self, job: BakeJob) -> None:
        """Nothing to do: packer removes what a failed build made; an AMI a region did finish
        stays, tagged, and the next run bakes only the regions still missing."""

    def sweep(self, bake: Bake) -> list[str]:
        """Nothing to sweep: an AMI counts only once it is available and tagged, and packer
        (cancelled by the kernel when its parent dies) cleans up its own instances."""
        return []


def _plan(settings: AwsSettings, regions: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """(region to bake in, regions to copy to): one bake per region, or one copied to the rest."""
    if settings.multi_region == "copy":
        return [(regions[0], list(regions[1:]))]
    return [(region, []) for region in regions]


def _appversion(job: BakeJob) -> str:
    """name-version of the bake's application: its first local package, else its first pinned one."""
    packages = sorted(job.packages, key=lambda package: package.origin not in ("source", "artifact"))
    for package in packages:
        if package.version is not None:
            return f"{package.name}-{package.version}"
    return f"{job.bake.name}-{job.key[:12]}"


def _creator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "bakehouse"
