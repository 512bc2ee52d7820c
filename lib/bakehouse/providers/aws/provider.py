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
  image id, so the image becomes complete again; in copy mode its AMI is copied there instead.
- Names follow Spinnaker: {ami_name or bake}-{arch}-{ami_suffix or timestamp}-{os}, one
  timestamp for all regions of a bake (UTC seconds and 6 random hex digits, so two bakes in
  the same second never collide).
"""

from __future__ import annotations

import getpass
import json
import re
import shlex
import sys
import secrets
import urllib.parse
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Any, TextIO

from ... import __version__, packer
from ...aptrepo import Repository
from ...epoch import now_utc
from ...errors import PackerError
from ...files import sha256_bytes, write_atomically
from ...logs import LogError, failure_note, read_local_log
from ...fingerprint import compact
from ...model import Bake, BakeGraph
from ...pins import LOCK_FILE, read_pins
from ...project import Project
from ...projectfile import PROJECT_FILE, project_table
from ...publish import Publication
from ...provenance import ami_descriptor, predicate, statement, statement_bytes, tool_versions
from ...registry import ImageRecord
from .. import BakeJob, NotShared, SharedHold
from .lifecycle import apply as apply_lifecycle, differences as lifecycle_differences, wanted as lifecycle_wanted
from .account import Sharing
from .budget import budget
from .shared import SharedState, contents_key, failure_key, inputs_key, log_key, provenance_key, read_config
from .client import AwsError, Ec2, ec2_endpoint
from .publishing import publications as publications_of, publish as publish_to
from .imds import endpoint as imds_endpoint, this_instance
from .registry import (
    BAKE_TAG, BASE_TAG, CREATED_TAG, IMAGE_TAG, KEY_TAG, LAUNCH_TAG, LOG_TAG, PROVENANCE_TAG, SEQUENCE_TAG, VERSION_TAG,
    AwsRegistry, image_of, summary_tags,
)
from .settings import DEBIAN_ARCHITECTURES, Aging, AwsSettings, AwsSource, package_format_of, parse_aging, settings_of

# The tools of an AMI bake on this machine (what runs on the instance is the image's own)
TOOLS = {"packer": ["packer", "version"]}
PLUGINS_SINCE = (1, 7)  # packer 1.7 moved amazon-ebs into a plugin that must be required
# packer 1.6.6: "Build 'aws-hello.amazon-ebs.us_west_2' errored: ..."; later: "errored after 2 seconds: ..."
BUILD_ERRORED = re.compile(r"Build '(?:[^']*\.)?amazon-(?:ebs|chroot)\.([a-z0-9_]+)' errored(?: after [^:]*)?: (.*)")
CHROOT_SOURCE = re.compile(r'^\s*source\s+"amazon-chroot"', re.M)
# AWS's error codes for "try again" (throttling, its own failures, a request that took too long).
TRANSIENT = re.compile(
    r"\b(RequestLimitExceeded|Throttling(?:Exception)?|RequestThrottled|ThrottledException|TooManyRequestsException"
    r"|InternalError|InternalFailure|ServiceUnavailable|Unavailable|RequestExpired|RequestTimeout(?:Exception)?"
    r"|connection reset by peer|i/o timeout)\b"
)


AWS_HOST_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")  # AWS's own endpoints


class AwsProvider:
    name = "aws"

    def __init__(self, project: Project, graph: BakeGraph, ec2: Ec2 | None = None) -> None:
        self.project = project
        self.graph = graph
        self.ec2 = ec2 or Ec2()
        limits = budget()
        self.retries = limits.region_retries
        shared = read_config(project)
        self.shared = None if shared is None else SharedState(shared)
        table = project_table(project, "aws")
        self._aging_defaults = Aging() if table is None else parse_aging(PROJECT_FILE, table, prefix="aws.")
        self.registry = AwsRegistry(self.ec2, self._regions_of, project.logs_dir, limits.settle_seconds,
                                    shared=self.shared, protect_of=self._protected)
        self._resolved: dict[tuple[str, str, tuple[str, ...]], dict[str, Any] | AwsError] = {}
        self._pinned_sources = read_pins(project).sources  # bakehouse.lock
        self._copied: dict[str, tuple[str, str]] = {}  # image id: the AMI fill() copied, by region

    def ignore_lock(self) -> None:
        self._pinned_sources = {}
        self._resolved.clear()

    def _protected(self, bake: str) -> bool:
        return bake in self.graph.names and bool(self.aging(self.graph[bake]).deregistration_protection)

    def aging(self, bake: Bake) -> Aging:
        """The bake's aging keys, each one it leaves out from bakehouse.toml's [aws]."""
        return settings_of(bake).aging.over(self._aging_defaults)

    def _regions_of(self, bake: str) -> tuple[str, ...]:
        return settings_of(self.graph[bake]).regions

    def source(self, bake: Bake, place: str) -> dict[str, Any] | None:
        if not isinstance(bake.source, AwsSource):
            return None
        # By owner and name: a publisher copies one image to every region under one name.
        image = self._source_ami(bake, place)
        return {"image": {"owner": image.get("OwnerId"), "name": image.get("Name")}}

    def publications(self, bake: Bake, pointed: dict[str, ImageRecord | None]) -> list[Publication]:
        if bake.publish is None:
            return []
        return publications_of(self.ec2, bake, settings_of(bake).regions, bake.publish, pointed)

    def publish(self, bake: Bake, publication: Publication) -> None:
        publish_to(self.ec2, bake, bake.publish, publication)

    def upstream(self, bake: Bake, place: str) -> dict[str, Any]:
        if not isinstance(bake.source, AwsSource):
            return {}
        image = self._source_ami(bake, place)
        return {"id": image.get("ImageId"), "name": image.get("Name"), "owner": image.get("OwnerId"),
                "created": image.get("CreationDate")}

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
        pinned = self._pinned_sources.get(bake.name, {}).get(region)
        lookup = (region, pinned or given or source.name or "", source.owners)
        if lookup not in self._resolved:
            try:
                if pinned:
                    self._resolved[lookup] = self._locked(bake, region, pinned)
                else:
                    self._resolved[lookup] = self._given(bake, region, given) if given else self._newest(bake, region, source)
            except AwsError as error:  # asked once: every row that needs it says the same
                self._resolved[lookup] = error
        found = self._resolved[lookup]
        if isinstance(found, AwsError):
            raise found
        return found

    def _locked(self, bake: Bake, region: str, ami: str) -> dict[str, Any]:
        """The pinned source AMI, if it is still there and still one the bake would choose:
        its given id, or one of the AMIs its own owners and name filter finds (the query that
        chooses the newest, so owner aliases such as `amazon` or `self` mean the same)."""
        source = bake.source
        assert isinstance(source, AwsSource)
        found = self.ec2.describe_images(region, missing_ok=True, ImageIds=[ami])
        if not found or found[0].get("State") not in (None, "available"):
            raise AwsError(f"{bake.name}: its source AMI {ami} in {region}, pinned by {LOCK_FILE}, can no longer be "
                           f"had (deregistered?); plan again to move the pin: doit plan --lock")
        given = source.ami_in(region)
        if given is not None:
            fits = ami == given
            wanted = f"source.ami {given}"
        else:
            fits = any(image.get("ImageId") == ami for image in self._matching(region, source))
            wanted = f"an AMI named '{source.name}' owned by {', '.join(source.owners)}"
        if not fits:
            raise AwsError(f"{bake.name}: its source AMI {ami} in {region}, pinned by {LOCK_FILE}, is not {wanted} "
                           f"as {bake.where} asks; plan again to move the pin: doit plan --lock")
        return found[0]

    def source_pins(self, bake: Bake) -> dict[str, str]:
        if not isinstance(bake.source, AwsSource):
            return {}
        return {region: str(self._source_ami(bake, region)["ImageId"]) for region in settings_of(bake).regions}

    def _given(self, bake: Bake, region: str, ami: str) -> dict[str, Any]:
        found = self.ec2.describe_images(region, ImageIds=[ami])
        if not found:
            raise AwsError(f"{bake.where}: source.ami {ami} does not exist in {region}")
        return found[0]

    def _matching(self, region: str, source: AwsSource) -> list[dict[str, Any]]:
        """The available AMIs the source's owners and name filter finds in `region`."""
        return self.ec2.describe_images(
            region, Owners=list(source.owners),
            Filters=[{"Name": "name", "Values": [str(source.name)]}, {"Name": "state", "Values": ["available"]}],
        )

    def _newest(self, bake: Bake, region: str, source: AwsSource) -> dict[str, Any]:
        found = self._matching(region, source)
        wanted = f"no available AMI named '{source.name}' owned by {', '.join(source.owners)} in {region}"
        if not found:
            raise AwsError(f"{bake.where}: source: {wanted}")
        if len(found) > 1 and not source.most_recent:
            raise AwsError(
                f"{bake.where}: source: {len(found)} AMIs match in {region}; "
                "narrow source.name or set most_recent = true"
            )
        return max(found, key=lambda image: (image.get("CreationDate", ""), image.get("Name", "")))

    def package_sources(self, bake: Bake) -> tuple[Repository, ...]:
        return ()  # an AMI names its own: listed inside it over SSH (contents.py)

    def preflight(self, bake: Bake) -> None:
        """The source AMI is found when planning (source()); the rest only AWS can tell, but
        for what packer's amazon-chroot cannot do: bake in several regions at once."""
        settings = settings_of(bake)
        if self._uses_chroot(bake) and settings.multi_region != "copy" and len(settings.regions) > 1:
            raise AwsError(f"{bake.where}: {bake.template} builds with packer's amazon-chroot, on the EC2 instance "
                           f"bakehouse runs on, in its region only: set multi_region = \"copy\" (bake in "
                           f"{settings.regions[0]}, copy to the others)")

    def _uses_chroot(self, bake: Bake) -> bool:
        """Whether the bake's template builds with amazon-chroot (the built-in one, or a
        repository's own that names the builder)."""
        template = self.project.template_file(bake.template)
        return template is not None and CHROOT_SOURCE.search(template.read_text(encoding="utf-8")) is not None

    def before_packer(self, bake: Bake) -> None:
        """What would make packer fail late, said first in one line. amazon-chroot builds on
        the EC2 instance packer runs on, in the bake's first region: anywhere else packer
        fails only after asking for instance metadata. And an endpoint that is not AWS's own
        (an emulator such as moto on 127.0.0.1) runs no instance anyone can log in to: with
        communicator = "ssh", packer would wait for SSH until it gives up, minutes later."""
        if self._uses_chroot(bake):
            self._check_chroot_host(bake)
        endpoint = ec2_endpoint()
        if endpoint is None or settings_of(bake).communicator != "ssh":
            return
        host = urllib.parse.urlsplit(endpoint).hostname or ""
        if host.endswith(AWS_HOST_SUFFIXES):
            return  # a VPC or FIPS endpoint of AWS itself: its instances are real
        raise AwsError(f"{bake.where}: communicator = \"ssh\" against {endpoint}, which is not AWS: an emulator's "
                       "instances run nothing to log in to, so packer would wait for SSH until it gives up; "
                       "set communicator = \"none\" to bake against it")

    def _check_chroot_host(self, bake: Bake) -> None:
        region = settings_of(bake).regions[0]
        instance = this_instance()
        if instance is None:
            raise AwsError(f"{bake.where}: {bake.template} builds with packer's amazon-chroot, which attaches the image's "
                           f"volume to the EC2 instance it runs on; this machine is not one (no instance metadata at "
                           f"{imds_endpoint()}): run this bake on an EC2 instance in {region}, or use amazon-ebs.pkr.hcl.j2")
        if instance.region != region:
            raise AwsError(f"{bake.where}: {bake.template} builds with packer's amazon-chroot on this instance "
                           f"({instance.instance_id}), which is in {instance.region}; the bake builds in {region}: run "
                           f"it on an instance there, or put {instance.region} first in regions")

    def attest(self, job: BakeJob, image: ImageRecord, out: TextIO) -> None:
        """The provenance (provenance.py) of the AMIs this run made: one statement about them
        (by id: AWS holds an AMI's bytes, so no digest of them exists), written beside the
        image's log and manifest, named by its SHA256 (and to shared state with them: keep()),
        and that SHA256 tagged on each of them (`bakehouse:provenance`). An image completed in
        a region later gets a statement of that run; the AMIs made before keep theirs."""
        made = {region: image.locations[region] for region in job.places if region in image.locations}
        subjects = [ami_descriptor(f"{region}/{ami}", region, ami) for region, ami in sorted(made.items())]
        package_format = self.package_format(job.bake)  # RPM names EC2's architecture (x86_64), Debian its own (amd64)
        body = predicate(self.project.root, image, job.summary, job.packages, self._built_on(job, sorted(made)),
                         settings_of(job.bake).arch if package_format == "rpm" else self.architecture(job.bake),
                         now_utc(), tool_versions(TOOLS, self.project.state_dir / "cache"), package_format)
        data = statement_bytes(statement(subjects, body))
        digest = f"sha256:{sha256_bytes(data)}"
        write_atomically(self.registry.provenance_path(job.bake.name, job.image_id, digest), data)
        for region, ami in sorted(made.items()):
            self.ec2.create_tags(region, [ami], {PROVENANCE_TAG: digest})
        out.write(f"[{job.bake.name}] provenance {digest}: an in-toto statement about "
                  f"{', '.join(f'{region}:{ami}' for region, ami in sorted(made.items()))}, tagged on them\n")
        want = lifecycle_wanted(self.aging(job.bake), image)
        if want:  # before the key: the image counts only with every setting in place
            apply_lifecycle(self.ec2, job.bake.name, made, want, now_utc())
            settings = ", ".join(f"{key.removeprefix('bakehouse:')} {value}" for key, value in want.items())
            out.write(f"[{job.bake.name}] {settings}\n")

    def _built_on(self, job: BakeJob, regions: list[str]) -> list[dict[str, Any]]:
        """What each AMI was made from: the AMI it was copied from (multi_region = "copy"), the
        base image's AMI a service was baked on (with the base's own provenance digest), or
        the source AMI a base was baked from (with its owner and name)."""
        copied = self._copied.get(job.image_id)
        if copied is not None:
            region, ami = copied
            return [ami_descriptor(f"image {job.image_id} in {region}, copied", region, ami)]
        if settings_of(job.bake).multi_region == "copy":
            regions = [region for region, _ in _plan(settings_of(job.bake), job.places)]  # packer copied the rest
        found = []
        for region in regions:
            if job.base_image is not None:
                ami = job.base_image.locations.get(region)
                if ami is None:
                    continue
                tags = (self.registry.amis(job.base_image.bake, job.base_image.image_id).get(region) or {}).get("tags") or {}
                entry = ami_descriptor(f"base image {job.base_image.image_id} in {region}", region, ami)
                if tags.get(PROVENANCE_TAG):
                    entry["annotations"] = {"provenance": tags[PROVENANCE_TAG]}
            elif isinstance(job.bake.source, AwsSource):
                source = self._source_ami(job.bake, region)
                entry = ami_descriptor(f"source image in {region}", region, str(source["ImageId"]))
                entry["annotations"] = {"owner": source.get("OwnerId"), "name": source.get("Name")}
            else:
                continue
            found.append(entry)
        return found

    def os_name(self, bake: Bake) -> str:
        return settings_of(bake).os

    def places(self, bake: Bake) -> tuple[str, ...]:
        return settings_of(bake).regions

    def package_format(self, bake: Bake) -> str:
        return package_format_of(bake, {step.name: step for step in self.graph.chain(bake.name)})

    def architecture(self, bake: Bake) -> str:
        arch = settings_of(bake).arch
        return DEBIAN_ARCHITECTURES.get(arch, arch)

    def new_image_id(self, job_stem: str, bake: Bake) -> str:
        return f"{job_stem}-{secrets.token_hex(3)}"

    def context(self, job: BakeJob) -> dict[str, Any]:
        settings = settings_of(job.bake)
        sources = {region: self._start_from(job, region) for region in job.places}
        name = self._ami_name(job, settings)
        if settings.ami_suffix and not job.probe:
            self._check_name_is_free(job, name)
        tags = self._common_tags(job, name)
        limits = budget()
        plugins = packer.packer_version(cache_dir=self.project.state_dir / "cache") >= PLUGINS_SINCE
        # Before 1.7 packer has no metadata_options: a first step on the host sets them itself.
        imdsv2_command = (  # the template adds packer's source name and instance id
            f"{shlex.quote(sys.executable)} -m bakehouse.providers.aws.client require-imdsv2"
        ) if settings.placement.imdsv2 and not plugins else None
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
                        # each region's own key (the build's, then each copy's), where one is named
                        "placement": settings.placement.in_region(region),
                        "kms_key_id": settings.encryption.key_in(region),
                        "region_kms_key_ids": {
                            copy: settings.encryption.key_in(copy) for copy in copies if settings.encryption.key_in(copy)
                        },
                    }
                    for region, copies in _plan(settings, job.places)
                ],
                "encrypted": settings.encryption.encrypted,
                "ami_name": name,
                "instance_type": settings.instance_type,
                "communicator": settings.communicator,
                "ssh_username": settings.ssh_username,
                "endpoint": ec2_endpoint(),
                "max_retries": limits.packer_retries,
                "poll_seconds": limits.poll_seconds,
                "poll_attempts": limits.poll_attempts,
                "required_plugins": plugins,
                "imdsv2_command": imdsv2_command,
            },
            "base_image": None if job.base_image is None else {
                "id": job.base_image.image_id, "amis": job.base_image.locations,
            },
            "package_format": self.package_format(job.bake),  # provision-packages.pkr.hcl.j2: dnf or apt
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

    def _check_name_is_free(self, job: BakeJob, name: str) -> None:
        """The template replaces an AMI of the image's name (force_deregister), which can only
        be a leftover when names carry a timestamp and random digits; a fixed ami_suffix can
        name another image's AMI, which must never be replaced: refuse, in one line."""
        for region in job.places:
            for ami in self._amis_named(region, name):
                owner = image_of(ami)
                if owner not in (None, job.image_id):
                    raise AwsError(
                        f"{job.bake.where}: AMI name {name} is taken in {region} by {ami['ImageId']} (image {owner}); "
                        "AWS allows one AMI of a name per region: change ami_suffix, or remove it to name AMIs by time"
                    )

    def _amis_named(self, region: str, name: str) -> list[dict[str, Any]]:
        """This account's AMIs of `name` in `region`, in any state (AWS allows at most one)."""
        return self.ec2.describe_images(region, Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])

    def _common_tags(self, job: BakeJob, name: str) -> dict[str, str]:
        tags = {
            "Name": name,
            BAKE_TAG: job.bake.name,
            IMAGE_TAG: job.image_id,  # no KEY_TAG: an AMI counts once bakehouse tags its key, last
            CREATED_TAG: job.created,
            SEQUENCE_TAG: str(job.sequence),
            VERSION_TAG: __version__,
            LOG_TAG: self.log_ref(job),
            "appversion": _appversion(job),
            "creator": _creator(),
            "creation_time": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if job.base_image is not None:
            tags[BASE_TAG] = job.base_image.image_id
        return {**tags, **summary_tags(compact(job.summary))}

    def made(self, job: BakeJob, manifest: dict[str, Any]) -> dict[str, str]:
        made = self._manifest_amis(job, every_run=False)
        missing = [region for region in job.places if region not in made]
        if missing:
            raise PackerError(f"{job.bake.name}: packer's manifest names no AMI in {', '.join(missing)}")
        return {region: made[region] for region in job.places}

    def fill(self, job: BakeJob, out: TextIO) -> dict[str, str] | None:
        """With multi_region = "copy", a region an image is missing from gets a copy of its
        AMI in the first region that has one (CopyImage, as packer's ami_regions does), with
        the same tags on the AMI and its snapshots: the same image, not a new bake of it."""
        if settings_of(job.bake).multi_region != "copy" or job.extends is None:
            return None
        source_region = next((r for r in settings_of(job.bake).regions if r in job.extends.locations), None)
        if source_region is None:
            return None
        source = self.registry.amis(job.bake.name, job.extends.image_id).get(source_region)
        if source is None:
            return None
        limits = budget()
        encryption = settings_of(job.bake).encryption
        self._copied[job.image_id] = (source_region, str(source["ImageId"]))
        made: dict[str, str] = {}
        for region in job.places:
            out.write(f"[{job.bake.name}] copying {source['ImageId']} from {source_region} to {region} "
                      "(multi_region = \"copy\")\n")
            out.flush()
            key = encryption.key_in(region)
            made[region] = self.ec2.copy_image(
                region, source_region, source, limits.wait_seconds, limits.poll_seconds,
                {"Encrypted": True, **({"KmsKeyId": key} if key else {})} if encryption.encrypted else None,
            )
        return made

    def finished(self, job: BakeJob) -> dict[str, str]:
        if not job.manifest.is_file():
            return {}
        try:
            made = self._manifest_amis(job, every_run=True)
        except PackerError:
            return {}
        return {region: ami for region, ami in made.items() if region in job.places}

    def _manifest_amis(self, job: BakeJob, every_run: bool) -> dict[str, str]:
        made: dict[str, str] = {}
        for build in packer.read_manifest_builds(job.manifest, job.bake.name, every_run=every_run):
            for pair in str(build.get("artifact_id", "")).split(","):
                region, _, ami = pair.partition(":")
                if region and ami.startswith("ami-"):
                    made[region] = ami
        return made

    def retryable(self, job: BakeJob) -> dict[str, str]:
        """The regions whose build ended on a transient AWS error, read from packer's
        `Build '...amazon-ebs.<region>' errored` lines in this attempt's part of the log (a
        region's failure has no other record; a script's failure never names these codes)."""
        try:
            text = job.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return {}
        attempt = text[text.rfind("$ packer build"):] if "$ packer build" in text else text
        failed: dict[str, str] = {}
        builds = {region.replace("-", "_"): (region, *copies) for region, copies in _plan(settings_of(job.bake), job.places)}
        for source, message in BUILD_ERRORED.findall(attempt):
            cause = TRANSIENT.search(message)
            if cause is not None and source in builds:
                failed.update({place: cause.group(0) for place in builds[source]})  # a copy fails with its build
        return failed

    def discard(self, job: BakeJob, out: TextIO) -> None:
        """After a failed, cancelled or timed-out bake: in each region the job baked and packer
        did not finish, deregister the AMIs of this image's name (packer's own cleanup is
        skipped when it is killed, and its calls can fail as any other), with their snapshots,
        so no AMI is left that could block the next run. A region packer finished stays, and
        is tagged with the key so it counts: the next run bakes only the rest. A bake that
        failed after packer (its statement or log not stored, its lease lost) removed its
        manifest first (bake.py): nothing of it is finished, so every AMI it made goes."""
        finished = self.finished(job)
        name = self._ami_name(job, settings_of(job.bake))
        for region in job.places:
            if region in finished:
                continue
            for ami in self._amis_named(region, name):
                if image_of(ami) not in (None, job.image_id):
                    continue  # another image's AMI (a fixed ami_suffix): never ours to remove
                removed = self.registry.deregister(region, ami)
                out.write(f"[{job.bake.name}] removed {', '.join(removed)}, made by the bake that failed\n")
        for region, ami in sorted(finished.items()):  # after the removals: a failed tag call leaves no orphan
            self.ec2.create_tags(region, [ami], {KEY_TAG: job.key})
        out.flush()

    def launch(self, bake: Bake) -> str | None:
        return settings_of(bake).sharing.describe()

    def out_of_line(self, bake: Bake, image: ImageRecord) -> str | None:
        """Why the image's launch permissions must change: an AMI whose `bakehouse:launch`
        tag is not what the bake says (no tag: private)."""
        wanted = settings_of(bake).sharing
        known = self.registry.amis(bake.name, image.image_id)
        for region in image.locations:
            tag = ((known.get(region) or {}).get("tags") or {}).get(LAUNCH_TAG, "private")
            if tag != wanted.identity():
                before = Sharing.from_identity(tag)
                return f"launch permissions: {before.describe() if before else 'as set before'} -> {wanted.describe()}"
        differences = lifecycle_differences(lifecycle_wanted(self.aging(bake), image), known)
        return "; ".join(differences) or None

    def outdated(self, bake: Bake, image: ImageRecord) -> str | None:
        return None  # an AMI has one format

    def bring_in_line(self, bake: Bake, image: ImageRecord, out: TextIO) -> None:
        """Set each AMI's launch permissions (and its snapshots' volume permissions) to what
        the bake says, then tag it so; packer 1.6.6 cannot share with organisations, so every
        share is made here, after the bake, and the same calls keep older images in line."""
        sharing = settings_of(bake).sharing
        known = self.registry.amis(bake.name, image.image_id)
        want = lifecycle_wanted(self.aging(bake), image)
        for difference in lifecycle_differences(want, known):
            out.write(f"[{bake.name}] {image.image_id}: {difference}\n")
        apply_lifecycle(self.ec2, bake.name, dict(image.locations), want, now_utc())
        if all(((known.get(region) or {}).get("tags") or {}).get(LAUNCH_TAG, "private") == sharing.identity()
               for region in image.locations):
            self.registry.forget(bake.name)
            return
        out.write(f"[{bake.name}] launch permissions of {image.image_id}: {sharing.describe()}\n")
        out.flush()
        for region, ami_id in sorted(image.locations.items()):
            self.ec2.set_launch_permissions(region, ami_id, sharing.launch_permissions())
            listed = known.get(region)
            ami = listed if listed is not None and listed["ImageId"] == ami_id else (
                self.ec2.describe_images(region, ImageIds=[ami_id]) or [{}])[0]  # just baked: not listed yet
            for mapping in ami.get("BlockDeviceMappings") or []:
                snapshot = (mapping.get("Ebs") or {}).get("SnapshotId")
                if snapshot:
                    self.ec2.set_snapshot_users(region, snapshot, list(sharing.snapshot_accounts))
            self.ec2.create_tags(region, [ami_id], {LAUNCH_TAG: sharing.identity()})
        self.registry.forget(bake.name)

    def log_ref(self, job: BakeJob) -> str:
        if self.shared is not None:
            return self.shared.url(log_key(job.bake.name, job.image_id))
        return self.project.relative(job.log)

    def keep(self, job: BakeJob, error: str | None, out: TextIO) -> None:
        """The log, input summary, manifest and provenance on S3 with shared state, so any
        runner can read them, and a failure's note there too."""
        if self.shared is None:
            return
        name = job.bake.name
        note = None if error is None else failure_note(job.image_id, self.log_ref(job), error)
        self.shared.upload(log_key(name, job.image_id), job.log.read_bytes() if job.log.is_file() else b"")
        self.shared.upload(inputs_key(name, job.image_id), json.dumps(job.summary, indent=1).encode())
        contents = self.registry.contents_path(name, job.image_id)
        if note is None and contents.is_file():
            self.shared.upload(contents_key(name, job.image_id), contents.read_bytes())
        for provenance in self.registry.provenance_paths(name, job.image_id) if note is None else []:
            self.shared.upload(provenance_key(name, provenance.name), provenance.read_bytes())
        if note is not None:
            self.shared.upload(failure_key(name), json.dumps(note, indent=1).encode())
        out.write(f"[{name}] log: {self.log_ref(job)}\n")

    def read_log(self, bake: str, ref: str) -> str:
        if not ref.startswith("s3://"):
            return read_local_log(self.project, ref)
        key = None if self.shared is None else self.shared.key_of(ref)
        if self.shared is None or key is None:
            raise LogError(f"{ref}: not in this repository's shared state (bakehouse.toml [shared] s3)")
        data = self.shared.download(key)
        if data is None:
            raise LogError(f"{ref}: no such log")
        return data.decode("utf-8", "replace")

    def last_failure(self, bake: str) -> dict[str, Any] | None:
        if self.shared is None:
            return None
        data = self.shared.download(failure_key(bake))
        try:
            return None if data is None else dict(json.loads(data))
        except (ValueError, TypeError):
            return None

    def lock(self, bake: Bake, key: str, out: TextIO) -> AbstractContextManager[SharedHold]:
        """The shared lease on S3 when bakehouse.toml configures shared state (shared.py)."""
        if self.shared is None:
            return nullcontext(NotShared())
        return self.shared.hold(bake.name, key, out)

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
