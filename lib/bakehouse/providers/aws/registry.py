"""AWS as the registry: AMIs tagged by bakehouse, listed in one call per region per run.

Every AMI a bake makes carries tags (on its snapshots too):

    bakehouse:bake        the bake's name
    bakehouse:image       the image id: one per bake run, shared by its AMIs in all regions
    bakehouse:key         the content key
    bakehouse:created     when the bake ran (UTC, ISO 8601, to the microsecond)
    bakehouse:sequence    grows with each image of the bake: orders images made in one instant
    bakehouse:base-image  the image id of the base it was built on (services)
    bakehouse:log         where the bake's log is, relative to the repository
    bakehouse:used-at     when a `doit` run found it current again after a revert (and
    bakehouse:used-sequence   the sequence number of that mark): the image in use
    bakehouse:launch      who may launch it, as bakehouse last set it (absent: private)
    bakehouse:provenance  the SHA256 of the provenance statement of the run that made it (on
                          the AMI only), a file beside the image's log and manifest named by it:
                          on this machine, and on S3 with shared state
    bakehouse:channel:C   on the AMIs (in every region) of the image channel C points at, and
                          on no other: a mark for filters (`tag:bakehouse:channel:stable`);
                          the channel's moves in SSM are the truth (channels.py)
    bakehouse:revoked-reason, -at, -by, -since, -only
                          its revocation (revocation.py), on every AMI of the image; one
                          AMI so tagged revokes the image (the safe side)
    bakehouse:summary:N   the compact input summary as JSON, cut into tag-sized pieces
    bakehouse:version     the bakehouse version that baked it

Lookups are batched: the first question about any bake in a region lists every bakehouse AMI
of this account there (one paginated DescribeImages) and the answer is kept for the process;
a new image is checked by its AMI ids and added to what is kept.
An image counts in a region only while its AMI there is `available` and tagged with its key,
which bakehouse tags last, once everything else of the bake is done (record()).

Deleting an image (`doit prune --apply`) deregisters its AMI in each region, then deletes the
snapshots that AMI's block device mappings name (DeregisterImage's own option to delete them
is newer than many accounts' tooling, and emulators ignore it). A prune stopped between the
two leaves snapshots tagged `bakehouse:image` whose AMI is gone; the next prune deletes them.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, TextIO

from ...channels import ChannelMove, current
from ...contents import ContentsError, Manifest, read_manifest
from ...errors import RecordedError, RegistryError
from ...files import sha256_bytes
from ...registry import ImageRecord, newest_first, next_sequence
from ...revocation import Revocation
from .lifecycle import deprecate_now, protect, shown, undeprecate
from .client import AwsError, Ec2
from .shared import SharedState, contents_key, provenance_key

PREFIX = "bakehouse:"
BAKE_TAG = PREFIX + "bake"
IMAGE_TAG = PREFIX + "image"
KEY_TAG = PREFIX + "key"
CREATED_TAG = PREFIX + "created"
SEQUENCE_TAG = PREFIX + "sequence"
BASE_TAG = PREFIX + "base-image"
LOG_TAG = PREFIX + "log"
USED_AT_TAG = PREFIX + "used-at"
USED_SEQUENCE_TAG = PREFIX + "used-sequence"
LAUNCH_TAG = PREFIX + "launch"
PROVENANCE_TAG = PREFIX + "provenance"
SUMMARY_TAG = PREFIX + "summary:"
CHANNEL_TAG = PREFIX + "channel:"
REVOKED_TAGS = {field: f"{PREFIX}revoked-{field}" for field in ("reason", "at", "by", "since", "only")}
VERSION_TAG = PREFIX + "version"  # the bakehouse that baked it
TAG_VALUE_LIMIT = 256
# AWS allows 50 tags per resource; this leaves room for bakehouse's others and the user's.
SUMMARY_TAGS_LIMIT = 30
MAX_SETTLE_DELAY_SECONDS = 5.0  # one DescribeImages per region every 5 s at most


def summary_tags(summary: dict[str, Any]) -> dict[str, str]:
    """The summary as compact JSON in pieces of at most 256 characters."""
    text = json.dumps(summary, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    pieces = [text[start:start + TAG_VALUE_LIMIT] for start in range(0, len(text), TAG_VALUE_LIMIT)]
    if len(pieces) > SUMMARY_TAGS_LIMIT:
        raise RegistryError(
            f"the input summary is {len(text)} characters, more than {SUMMARY_TAGS_LIMIT} AMI tags can hold; "
            "shorten the bake's [vars] or split its packages"
        )
    return {f"{SUMMARY_TAG}{index}": piece for index, piece in enumerate(pieces)}


def _summary_from_tags(tags: dict[str, str]) -> dict[str, Any]:
    pieces = []
    while f"{SUMMARY_TAG}{len(pieces)}" in tags:
        pieces.append(tags[f"{SUMMARY_TAG}{len(pieces)}"])
    try:
        summary = json.loads("".join(pieces)) if pieces else {}
    except ValueError:
        return {}  # a damaged summary only makes explanations vaguer; the key still decides
    return summary if isinstance(summary, dict) else {}


CHANNELS_PATH = "/bakehouse/{bake}/channel-moves/"  # SSM: one parameter per move, in the bake's first region
POINTER = "/bakehouse/{bake}/{channel}"  # SSM, per region: the AMI a channel points at there (aws:ec2:image)


class AwsRegistry:
    def __init__(
        self, ec2: Ec2, regions_of: Callable[[str], tuple[str, ...]], logs_dir: Path, settle_seconds: int = 300,
        sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
        shared: SharedState | None = None, protect_of: Callable[[str], bool] = lambda bake: False,
    ) -> None:
        self.ec2 = ec2
        self.regions_of = regions_of
        self.logs_dir = logs_dir
        self.shared = shared
        self.protect_of = protect_of  # bake -> deregistration_protection
        self.settle_seconds = settle_seconds
        self.sleep, self.clock = sleep, clock
        self._listings: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self._failures: dict[str, AwsError] = {}  # a listing that failed with its whole retry budget

    def channel_moves(self, bake: str) -> list[ChannelMove]:
        """The moves of `bake`'s channels: SSM parameters .../channel-moves/000001, ... in the
        bake's first region, each a move as JSON (so any runner, or any tool, reads them)."""
        home = self.regions_of(bake)[0]
        found = self.ec2.paginate(home, "get_parameters_by_path", "Parameters", service="ssm",
                                  Path=CHANNELS_PATH.format(bake=bake), Recursive=False)
        moves = []
        for parameter in sorted(found, key=lambda parameter: str(parameter["Name"])):
            try:
                moves.append(ChannelMove.from_json(json.loads(parameter["Value"])))
            except (ValueError, KeyError, TypeError) as error:
                raise RegistryError(f"SSM parameter {parameter['Name']} in {home}: not a channel move ({error})") from None
        return moves

    def add_channel_move(self, bake: str, move: ChannelMove, seen: int) -> bool:
        """Create the next move's parameter only if it does not exist yet (Overwrite=False:
        SSM's own conditional write), then point the channel's parameters at where it points."""
        home = self.regions_of(bake)[0]
        name = f"{CHANNELS_PATH.format(bake=bake)}{seen + 1:06d}"
        created = self.ec2.service_call("ssm", home, "put_parameter", missing_ok=("ParameterAlreadyExists",),
                                        Name=name, Value=json.dumps(move.to_json(), sort_keys=True), Type="String",
                                        Overwrite=False, Description=f"bakehouse: a move of channel {move.channel}")
        if not created:
            return False
        self.point(bake, move.channel)
        return True

    def point(self, bake: str, channel: str, attempts: int = 5) -> None:
        """The channel's SSM parameter in each region holds the AMI there of the image the
        channel points at (data type aws:ec2:image, as Terraform, CloudFormation and launch
        templates resolve it), each read back; none where it points at nothing. Written again
        while other moves land meanwhile, so the last writer always writes the newest state."""
        for _ in range(attempts):
            moves = self.channel_moves(bake)
            written = self._write_pointers(bake, channel, current(moves, channel))
            self._tag_amis(bake, channel, current(moves, channel))
            if self.protect_of(bake):
                self._protect(bake, moves)
            if written and len(self.channel_moves(bake)) == len(moves):
                return
        raise RegistryError(f"{bake}: channel {channel}: its SSM parameters kept changing while they were written; "
                            f"run the move again")

    def _write_pointers(self, bake: str, channel: str, image_id: str | None) -> bool:
        """Write and read back each region's parameter; False if one reads back otherwise
        (another runner's move wrote it meanwhile)."""
        image = next((found for found in self.images(bake) if found.image_id == image_id), None)
        name = POINTER.format(bake=bake, channel=channel)
        for region in self.regions_of(bake):
            ami = None if image is None else image.locations.get(region)
            if ami is None:
                self.ec2.service_call("ssm", region, "delete_parameter", missing_ok=("ParameterNotFound",), Name=name)
                continue
            self.ec2.service_call("ssm", region, "put_parameter", Name=name, Value=ami, Type="String",
                                  DataType="aws:ec2:image", Overwrite=True,
                                  Description=f"bakehouse: {bake}'s channel {channel} ({image_id})")
            # AWS checks an aws:ec2:image value after it answers, and drops one it refuses: read it back
            read = self.ec2.service_call("ssm", region, "get_parameter", Name=name)
            if read.get("Parameter", {}).get("Value") != ami:
                return False
        return True

    def _protect(self, bake: str, moves: list[ChannelMove]) -> None:
        """deregistration_protection: the AMIs of every image a channel points at are protected,
        the bake's others not (lifecycle.py)."""
        pointed = {image for image in (current(moves, name) for name in {move.channel for move in moves}) if image}
        self.forget(bake)  # the protection tags as they are now
        for region in self.regions_of(bake):
            protect(self.ec2, bake, region, self.listing(region).get(bake, []), pointed)
        self.forget(bake)

    def _tag_amis(self, bake: str, channel: str, image_id: str | None) -> None:
        """Tag the channel's image's AMIs with bakehouse:channel:CHANNEL, then untag the
        bake's other AMIs (a move that lands meanwhile is written again by point())."""
        key = CHANNEL_TAG + channel
        for region in self.regions_of(bake):
            amis = {str(ami["ImageId"]): image for image, by_region in self._grouped(bake).items()
                    for place, ami in by_region.items() if place == region}
            pointed = [ami for ami, image in amis.items() if image == image_id]
            if pointed:
                self.ec2.create_tags(region, pointed, {key: "true"})
            others = sorted(set(amis) - set(pointed))
            if others:
                self.ec2.delete_tags(region, others, [key])

    def listing(self, region: str) -> dict[str, list[dict[str, Any]]]:
        """Every available bakehouse AMI of this account in `region`, by bake, oldest first
        (one call, then kept: indexed once, so each bake's lookup costs only its own AMIs)."""
        if region in self._failures:  # one view per run: every bake that needs it fails alike
            raise self._failures[region]
        if region not in self._listings:
            try:
                images = self.ec2.describe_images(
                    region, Owners=["self"], Filters=[{"Name": "tag-key", "Values": [BAKE_TAG]}]
                )
            except AwsError as error:
                self._failures[region] = error
                raise
            by_bake: dict[str, list[dict[str, Any]]] = {}
            for image in sorted(images, key=lambda image: image.get("CreationDate", "")):
                tags = _tags(image)
                if image.get("State") == "available" and tags.get(IMAGE_TAG) and tags.get(KEY_TAG):
                    by_bake.setdefault(tags.get(BAKE_TAG, ""), []).append({**image, "tags": tags})
            self._listings[region] = by_bake
        return self._listings[region]

    def amis(self, bake: str, image_id: str) -> dict[str, dict[str, Any]]:
        """The AMIs of one image, by region, as DescribeImages gave them (name, tags, ...)."""
        return self._grouped(bake).get(image_id, {})

    def images(self, bake: str) -> list[ImageRecord]:
        records = [_record(bake, image_id, amis) for image_id, amis in self._grouped(bake).items()]
        return newest_first(records)

    def _grouped(self, bake: str) -> dict[str, dict[str, dict[str, Any]]]:
        """{image id: {region: AMI}}; of two AMIs of one image in a region, the newer counts."""
        grouped: dict[str, dict[str, dict[str, Any]]] = {}
        for region in self.regions_of(bake):
            for image in self.listing(region).get(bake, []):
                grouped.setdefault(image["tags"][IMAGE_TAG], {})[region] = image
        return grouped

    def forget(self, bake: str) -> None:
        """Another process may have baked `bake`: list its regions afresh next time."""
        for region in self.regions_of(bake):
            self._listings.pop(region, None)
            self._failures.pop(region, None)

    def revoke(self, image: ImageRecord, revocation: Revocation | None, now: datetime) -> list[str]:
        """Tag (or untag) every AMI of the image with its revocation, in every region it is in;
        one revoked everywhere is deprecated at once, and a restore puts its bake's deprecation
        back (lifecycle.py). What could not be set is returned, one warning each."""
        amis = self.amis(image.bake, image.image_id)
        for region, ami_id in sorted(image.locations.items()):
            if revocation is None:
                self.ec2.delete_tags(region, [ami_id], list(REVOKED_TAGS.values()))
                continue
            self.ec2.create_tags(region, [ami_id], revocation_tags(revocation))  # replaces an earlier one's
            if not revocation.only:  # revoked everywhere now: no embargo left over
                self.ec2.delete_tags(region, [ami_id], [REVOKED_TAGS["only"]])
        self.forget(image.bake)
        if revocation is None:
            return undeprecate(self.ec2, amis, now) if image.revoked and not image.revoked.only else []
        if revocation.only or not revocation.in_effect(now):
            return []
        return deprecate_now(self.ec2, dict(image.locations), now)

    def mark_in_use(self, image: ImageRecord, when: str, images: list[ImageRecord]) -> None:
        """Tag the image's AMIs (snapshots keep their tags: the mark only orders reasons)."""
        tags = {USED_AT_TAG: when, USED_SEQUENCE_TAG: str(next_sequence(images))}
        for region, ami_id in sorted(image.locations.items()):
            self.ec2.create_tags(region, [ami_id], tags)
        self.forget(image.bake)

    def size(self, image: ImageRecord) -> int:
        """The snapshots' volume sizes in every region (what AWS bills for), in bytes."""
        gib = 0
        for ami in self.amis(image.bake, image.image_id).values():
            gib += sum(int((mapping.get("Ebs") or {}).get("VolumeSize") or 0) for mapping in ami.get("BlockDeviceMappings") or [])
        return gib * 2**30

    def freed(self, images: list[ImageRecord]) -> int:
        return sum(self.size(image) for image in images)  # an AMI's snapshots are its own

    def attestations(self, image: ImageRecord) -> list[dict[str, Any]]:
        """The provenance statements its AMIs are tagged with (one per bake run that made some
        of them), each from this machine or shared state, checked against its tag; [] for an
        image baked before provenance was kept."""
        found = []
        for digest in self._provenance_digests(image):
            path = self.provenance_path(image.bake, image.image_id, digest)
            data = path.read_bytes() if path.is_file() else None
            if self.shared is not None and not _is_statement(data, digest):
                data = self.shared.download(provenance_key(image.bake, path.name)) or data
            if not _is_statement(data, digest):
                where = self.shared.url(provenance_key(image.bake, path.name)) if self.shared is not None else str(path)
                held = "nothing" if data is None else "a statement of another digest"
                raise RegistryError(f"{image.image_id}: its AMIs are tagged with provenance {digest}, but {where} "
                                    f"holds {held}")
            try:
                found.append(json.loads(data))
            except ValueError as error:
                raise RegistryError(f"{image.image_id}: cannot read its provenance ({error})") from None
        return found

    def _provenance_digests(self, image: ImageRecord) -> list[str]:
        """The provenance tags of the image's AMIs, each once, in the order of their regions."""
        amis = self.amis(image.bake, image.image_id)
        tags = [str(amis[region]["tags"][PROVENANCE_TAG]) for region in sorted(amis)
                if amis[region]["tags"].get(PROVENANCE_TAG)]
        return list(dict.fromkeys(tags))

    def facts(self, image: ImageRecord) -> dict[str, Any]:
        """Its deprecation time, IMDS support and deregistration protection, as EC2 reports
        them (lifecycle.py); an AMI's size is its snapshots' (size()); it has no digest."""
        return shown(self.amis(image.bake, image.image_id))

    def used_outside(self, images: list[ImageRecord]) -> dict[str, list[str]]:
        """AMIs used by an instance not terminated, a launch template version or a launch
        configuration, in each region the images are in; with shared state, also each image a
        bake running on any runner builds on (its lease names it: shared.py)."""
        owner: dict[tuple[str, str], str] = {
            (region, ami): image.image_id for image in images for region, ami in image.locations.items()
        }
        used: dict[str, list[str]] = {}
        if self.shared is not None:
            wanted = {image.image_id for image in images}
            for image_id, (bake, holder) in self.shared.running_bases().items():
                if image_id in wanted:
                    used.setdefault(image_id, []).append(f"base of the running bake of {bake} on {holder}")
        for region in sorted({region for region, _ in owner}):
            amis = sorted(ami for place, ami in owner if place == region)
            for ami, user in self._users(region, amis):
                if (region, ami) in owner:
                    used.setdefault(owner[(region, ami)], []).append(f"in use by {user} in {region}")
        return used

    def _users(self, region: str, amis: list[str]) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for start in range(0, len(amis), 100):  # a filter takes at most 200 values
            reservations = self.ec2.paginate(region, "describe_instances", "Reservations", Filters=[
                {"Name": "image-id", "Values": amis[start:start + 100]},
                {"Name": "instance-state-name", "Values": ["pending", "running", "shutting-down", "stopping", "stopped"]},
            ])
            found += [(i["ImageId"], f"instance {i['InstanceId']}") for r in reservations for i in r.get("Instances", [])]
        for template in self.ec2.paginate(region, "describe_launch_templates", "LaunchTemplates"):
            versions = self.ec2.paginate(
                region, "describe_launch_template_versions", "LaunchTemplateVersions",
                LaunchTemplateId=template["LaunchTemplateId"],
            )
            found += [
                (str((v.get("LaunchTemplateData") or {}).get("ImageId")),
                 f"launch template {template['LaunchTemplateId']} v{v.get('VersionNumber')}")
                for v in versions
            ]
        configurations = self.ec2.paginate(
            region, "describe_launch_configurations", "LaunchConfigurations", service="autoscaling"
        )
        found += [(str(c.get("ImageId")), f"launch configuration {c.get('LaunchConfigurationName')}") for c in configurations]
        return found

    def contents_path(self, bake: str, image_id: str) -> Path:
        """Beside the bake's log on this machine: an AMI's tags are too small for a manifest
        (with shared state, it is also kept on S3: shared.py)."""
        return self.logs_dir / bake / f"{image_id}.packages"

    def provenance_path(self, bake: str, image_id: str, digest: str) -> Path:
        """Beside its manifest: a provenance statement of the image, named by its SHA256 (which
        the AMIs it is about are tagged with)."""
        return self.logs_dir / bake / f"{image_id}.provenance-{digest.removeprefix('sha256:')[:12]}.json"

    def provenance_paths(self, bake: str, image_id: str) -> list[Path]:
        """The image's provenance statements on this machine."""
        return sorted((self.logs_dir / bake).glob(f"{image_id}.provenance-*.json"))

    def read_contents(self, bake: str, image_id: str) -> Manifest:
        local = self.contents_path(bake, image_id)
        if local.is_file() or self.shared is None:
            return read_manifest(local, image_id)
        data = self.shared.download(contents_key(bake, image_id))
        if data is None:
            raise ContentsError(f"{image_id}: no package manifest was recorded for this image")
        try:
            return Manifest.from_json(json.loads(data), image_id)
        except ValueError as error:
            raise ContentsError(f"{image_id}: cannot read its package manifest ({error})") from None

    def delete(self, image: ImageRecord) -> list[str]:
        removed = []
        statements = [self.provenance_path(image.bake, image.image_id, digest).name
                      for digest in self._provenance_digests(image)]
        for region, ami in sorted(self.amis(image.bake, image.image_id).items()):
            removed += self.deregister(region, ami)
        self.contents_path(image.bake, image.image_id).unlink(missing_ok=True)
        for path in self.provenance_paths(image.bake, image.image_id):
            path.unlink()
        if self.shared is not None:  # its log, inputs, manifest and provenance on S3 go with it
            removed += self.shared.delete_image_files(image.bake, image.image_id, statements)
        return removed

    def deregister(self, region: str, ami: dict[str, Any]) -> list[str]:
        """Deregister one AMI (as DescribeImages gave it), then delete the snapshots its block
        device mappings name; returns what went, as region:id."""
        snapshots = [(mapping.get("Ebs") or {}).get("SnapshotId") for mapping in ami.get("BlockDeviceMappings") or []]
        self.ec2.call(region, "deregister_image", ("InvalidAMIID.NotFound", "InvalidAMIID.Unavailable"),
                      ImageId=ami["ImageId"])
        removed = [f"{region}:{ami['ImageId']}"]
        for snapshot in filter(None, snapshots):
            self.ec2.call(region, "delete_snapshot", ("InvalidSnapshot.NotFound",), SnapshotId=snapshot)
            removed.append(f"{region}:{snapshot}")
        return removed

    def clean_caches(self) -> list[str]:
        return []  # nothing of an AMI is kept on this machine

    def finish_deletions(self, bake: str) -> list[str]:
        """Snapshots tagged with one of `bake`'s images whose AMI is gone (in any state)."""
        removed = []
        for region in self.regions_of(bake):
            tagged = [{"Name": f"tag:{BAKE_TAG}", "Values": [bake]}]
            images = self.ec2.describe_images(region, Owners=["self"], Filters=tagged)
            alive = {_tags(image).get(IMAGE_TAG) for image in images}
            referenced = {
                (mapping.get("Ebs") or {}).get("SnapshotId") for image in images for mapping in image.get("BlockDeviceMappings") or []
            }
            for snapshot in self.ec2.paginate(region, "describe_snapshots", "Snapshots", OwnerIds=["self"], Filters=tagged):
                tags = _tags(snapshot)
                if tags.get(IMAGE_TAG) not in alive and snapshot["SnapshotId"] not in referenced:
                    self.ec2.call(region, "delete_snapshot", ("InvalidSnapshot.NotFound",), SnapshotId=snapshot["SnapshotId"])
                    removed.append(f"{region}:{snapshot['SnapshotId']} (its AMI was deregistered)")
        return removed

    def record(self, image: ImageRecord, out: TextIO) -> None:
        """Packer made and tagged the AMIs; the key tag makes them count. It is written last
        of all the bake's steps: an AMI without it never counts (packer's tags leave it out),
        so a bake that fails before this point leaves nothing that passes for its image."""
        for region, ami_id in sorted(image.locations.items()):
            self.ec2.create_tags(region, [ami_id], {KEY_TAG: image.key})

    def settle(self, image: ImageRecord, out: TextIO) -> None:
        """Wait until AWS shows each AMI available with its bakehouse tags (AWS is eventually
        consistent: a new AMI, its state and its tags show late), asking for the new AMIs by
        id with back-off, for at most the settle budget, then add them to the kept listing
        (not listing the account again: a run that bakes many images would otherwise list
        every region once per bake). When the wait runs out the AMIs are left as they are:
        they count, and the next run adopts them once they show."""
        waiting = dict(image.locations)
        deadline = self.clock() + self.settle_seconds
        delay, said = 1.0, False
        while True:
            for region, ami_id in list(waiting.items()):
                found = [
                    {**ami, "tags": _tags(ami)}
                    for ami in self.ec2.describe_images(region, missing_ok=True, ImageIds=[ami_id])
                    if ami.get("State") == "available" and _tags(ami).get(IMAGE_TAG) == image.image_id
                ]
                if found:
                    del waiting[region]
                    if region in self._listings:
                        kept = self._listings[region].setdefault(image.bake, [])
                        kept[:] = [ami for ami in kept if ami["ImageId"] != ami_id] + found
            left = deadline - self.clock()
            if not waiting:
                return
            shown = ", ".join(f"{region}:{ami}" for region, ami in sorted(waiting.items()))
            if left <= 0:
                raise RecordedError(
                    f"{image.bake}: AWS does not yet show {shown} available with bakehouse's tags after "
                    f"{self.settle_seconds}s (BAKEHOUSE_AWS_SETTLE_SECONDS); they are kept, and the next run "
                    "adopts them once they show"
                )
            if not said:
                out.write(f"[{image.bake}] waiting for AWS to show {shown} available and tagged "
                          f"(up to {self.settle_seconds}s)\n")
                out.flush()
                said = True
            self.sleep(min(delay, left))
            delay = min(delay * 2, MAX_SETTLE_DELAY_SECONDS)


def _is_statement(data: bytes | None, digest: str) -> bool:
    """`data` is the statement whose SHA256 an AMI is tagged with."""
    return data is not None and f"sha256:{sha256_bytes(data)}" == digest


def image_of(ami: dict[str, Any]) -> str | None:
    """The bakehouse image an AMI belongs to, if it is tagged as one."""
    return _tags(ami).get(IMAGE_TAG) or None


def _tags(image: dict[str, Any]) -> dict[str, str]:
    if "tags" in image:  # indexed by listing()
        return image["tags"]
    return {tag["Key"]: tag["Value"] for tag in image.get("Tags") or []}


def _record(bake: str, image_id: str, amis: dict[str, dict[str, Any]]) -> ImageRecord:
    first = _tags(next(iter(amis.values())))
    summary = _summary_from_tags(first)
    packages = summary.get("packages") if isinstance(summary.get("packages"), dict) else {}
    return ImageRecord(
        image_id=image_id,
        bake=bake,
        key=first[KEY_TAG],
        created=min(_tags(ami).get(CREATED_TAG, "") for ami in amis.values()),
        provider="aws",
        locations={region: ami["ImageId"] for region, ami in sorted(amis.items())},
        base_image=first.get(BASE_TAG) or None,
        packages={name: (identity or {}).get("version") for name, identity in packages.items()},
        summary=summary,
        log=first.get(LOG_TAG),
        name=next(iter(amis.values())).get("Name"),
        sequence=_sequence(first.get(SEQUENCE_TAG)),
        used_at=max((_tags(ami).get(USED_AT_TAG, "") for ami in amis.values()), default="") or None,
        used_sequence=max(_sequence(_tags(ami).get(USED_SEQUENCE_TAG)) for ami in amis.values()),
        bakehouse_version=first.get(VERSION_TAG) or None,
        revoked=next(filter(None, (_revocation(_tags(ami)) for _, ami in sorted(amis.items()))), None),
    )


def _revocation(tags: dict[str, str]) -> Revocation | None:
    if REVOKED_TAGS["reason"] not in tags:
        return None
    only = tags.get(REVOKED_TAGS["only"], "")
    return Revocation(tags[REVOKED_TAGS["reason"]], tags.get(REVOKED_TAGS["at"], ""), tags.get(REVOKED_TAGS["by"], ""),
                      tags.get(REVOKED_TAGS["since"], ""), tuple(only.split()) if only else ())


def revocation_tags(revocation: Revocation) -> dict[str, str]:
    tags = {REVOKED_TAGS["reason"]: revocation.reason, REVOKED_TAGS["at"]: revocation.at,
            REVOKED_TAGS["by"]: revocation.by[:TAG_VALUE_LIMIT], REVOKED_TAGS["since"]: revocation.since}
    return {**tags, REVOKED_TAGS["only"]: " ".join(revocation.only)} if revocation.only else tags


def _sequence(tag: str | None) -> int:
    """An AMI's sequence tag; images tagged before there was one (or with a damaged one) are 0."""
    return int(tag) if tag is not None and tag.isdigit() else 0
