"""An AMI's end of life, set with boto3 after packer (Packer 1.6.6 has none of these options):

- `deprecate_after`: EnableImageDeprecation at the bake's time plus that long (rounded up to
  the minute; never in the past, as EC2 requires), tagged `bakehouse:deprecate-at`;
- `imds_support = "v2.0"`: ModifyImageAttribute ImdsSupport (EC2 cannot undo it), tagged
  `bakehouse:imds-support`;
- `deregistration_protection`: Enable/DisableImageDeregistrationProtection on the AMIs of
  the images a channel points at, and on no other, tagged `bakehouse:protected` (registry.py
  calls protect() after each channel move);
- a revocation deprecates each AMI at once (the next minute).

A new image is set up before its key is tagged (provider.attest), so it counts only once every
setting is in place: an endpoint that does not answer these calls (moto, an old proxy) fails
the bake in one line. An image whose settings differ from its bake file's (a key added later)
is brought in line by the next `doit`, as launch permissions are.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ...errors import ProviderError
from ...registry import ImageRecord, created_at
from .client import AwsError, Ec2
from .settings import Aging

DEPRECATE_TAG = "bakehouse:deprecate-at"
IMDS_TAG = "bakehouse:imds-support"
PROTECTED_TAG = "bakehouse:protected"


def wanted(aging: Aging, image: ImageRecord) -> dict[str, str]:
    """The lifecycle tags an image of a bake aging as `aging` says should carry."""
    tags = {}
    if aging.deprecate_after is not None:
        tags[DEPRECATE_TAG] = _minute(created_at(image) + aging.deprecate_after)
    if aging.imds_support is not None:
        tags[IMDS_TAG] = aging.imds_support
    return tags


def differences(want: dict[str, str], amis: dict[str, dict[str, Any]]) -> list[str]:
    """What is not yet as `want` says on the image's AMIs (each: {"tags": ...}): one phrase each."""
    found = []
    for key, label in ((DEPRECATE_TAG, "deprecation"), (IMDS_TAG, "IMDS support")):
        have = {str((ami.get("tags") or {}).get(key, "none")) for ami in amis.values()}
        if key in want and have != {want[key]}:
            found.append(f"{label}: {', '.join(sorted(have))} -> {want[key]}")
    return found


def apply(ec2: Ec2, bake: str, locations: dict[str, str], want: dict[str, str], now: datetime) -> None:
    """Set what `want` says on each AMI, then tag it so; ProviderError, one line, when an
    endpoint does not take a call (the image then does not count, or stays out of line)."""
    for region, ami in sorted(locations.items()):
        calls = []  # (the key it sets, the call and its arguments)
        if DEPRECATE_TAG in want:
            at = max(_moment(want[DEPRECATE_TAG]), _next_minute(now))
            calls.append(("deprecate_after", "enable_image_deprecation", {"DeprecateAt": at}))
        if IMDS_TAG in want:
            calls.append(("imds_support", "modify_image_attribute", {"ImdsSupport": {"Value": want[IMDS_TAG]}}))
        for key, operation, request in calls:
            try:
                ec2.call(region, operation, ImageId=ami, **request)
            except AwsError as error:
                raise ProviderError(f"{bake}: {key} could not be applied to {ami} in {region}: {error}") from None
        if want:
            ec2.create_tags(region, [ami], want)


def deprecate_now(ec2: Ec2, locations: dict[str, str], now: datetime) -> list[str]:
    """A revocation deprecates each AMI at once; what could not be set, one line each."""
    failed = []
    for region, ami in sorted(locations.items()):
        try:
            ec2.call(region, "enable_image_deprecation", ImageId=ami, DeprecateAt=_next_minute(now))
        except AwsError as error:
            failed.append(f"WARNING: {ami} in {region} could not be deprecated: {error}")
    return failed


def undeprecate(ec2: Ec2, amis: dict[str, dict[str, Any]], now: datetime) -> list[str]:
    """A restore: each AMI's deprecation back to its bake's (its tag), or none."""
    failed = []
    for region, ami in sorted(amis.items()):
        scheduled = (ami.get("tags") or {}).get(DEPRECATE_TAG)
        try:
            ec2.call(region, "disable_image_deprecation", ImageId=ami["ImageId"])
            if scheduled and _moment(scheduled) > now:
                ec2.call(region, "enable_image_deprecation", ImageId=ami["ImageId"], DeprecateAt=_moment(scheduled))
        except AwsError as error:
            failed.append(f"WARNING: {ami['ImageId']} in {region}: its deprecation could not be put back: {error}")
    return failed


def protect(ec2: Ec2, bake: str, region: str, amis: list[dict[str, Any]], pointed: set[str]) -> None:
    """Protect the AMIs of the images in `pointed` from deregistration; lift it from the others
    that bakehouse protected. ProviderError, one line, when a call is not taken."""
    for ami in amis:
        tags = ami.get("tags") or {}
        should = tags.get("bakehouse:image") in pointed
        if should == (tags.get(PROTECTED_TAG) == "true"):
            continue
        try:
            if should:
                ec2.call(region, "enable_image_deregistration_protection", ImageId=ami["ImageId"])
                ec2.create_tags(region, [ami["ImageId"]], {PROTECTED_TAG: "true"})
            else:
                ec2.call(region, "disable_image_deregistration_protection", ImageId=ami["ImageId"])
                ec2.delete_tags(region, [ami["ImageId"]], [PROTECTED_TAG])
        except AwsError as error:
            raise ProviderError(f"{bake}: deregistration_protection could not be {'set on' if should else 'lifted from'} "
                                f"{ami['ImageId']} in {region}: {error}") from None


def shown(amis: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What `doit images` shows of an image's lifecycle, as EC2 reports it."""
    facts: dict[str, Any] = {}
    deprecations = sorted({str(ami["DeprecationTime"]) for ami in amis.values() if ami.get("DeprecationTime")})
    if deprecations:
        facts["deprecation"] = deprecations[0]
    imds = sorted({str(ami["ImdsSupport"]) for ami in amis.values() if ami.get("ImdsSupport")})
    if imds:
        facts["imds_support"] = imds[0]
    if any(ami.get("DeregistrationProtection", "disabled").startswith("enabled") for ami in amis.values()):
        facts["protected"] = True
    return facts


def _minute(moment: datetime) -> str:
    """Rounded up to the minute, as EC2 keeps a deprecation time."""
    rounded = moment.astimezone(UTC).replace(second=0, microsecond=0)
    if rounded < moment:
        rounded += timedelta(minutes=1)
    return rounded.strftime("%Y-%m-%dT%H:%M:%SZ")


def _next_minute(now: datetime) -> datetime:
    return _moment(_minute(now + timedelta(minutes=1)))


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
