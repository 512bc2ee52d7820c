"""The keys of `provider = "aws"` bakes: regions, how an AMI is built and named, its source.

Parsed with the same one-line errors as every other key (see tomlcheck.py); the rest of a
bake file is read by the core (definitions.py). Imports nothing heavy: reading bake files
never loads boto3.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ...durations import parse_duration
from ...errors import DefinitionError
from ...keyref import Key, names
from ...model import Bake
from ...tomlcheck import Getter, reject_unknown
from .account import KEY_DOCS as ACCOUNT_KEY_DOCS
from .account import Encryption, Placement, Sharing, parse_encryption, parse_placement, parse_sharing

AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
MULTI_REGION_MODES = ("bake", "copy")
COMMUNICATORS = ("ssh", "none")
PACKAGE_FORMATS = ("deb", "rpm")
KEY_DOCS = (
    Key(('regions',), 'list of strings',
        'required',
        "every region the AMI must exist in; a service's regions must be among its base's"),
    Key(('multi_region',), '`"bake"`, `"copy"`',
        '`"bake"`',
        '`"bake"`: one bake per region, in parallel (like Spinnaker); `"copy"`: bake in the first region, copy to the others (`ami_regions`)'),
    Key(('instance_type',), 'string',
        '`"t3.micro"`',
        'the instance packer builds on'),
    Key(('arch',), 'string',
        '`"x86_64"`',
        'the architecture, in the AMI name and the key'),
    Key(('os',), 'string',
        '`"linux"`',
        "the operating system's label, last part of the AMI name"),
    Key(('ami_name',), 'string',
        "the bake's name",
        'first part of the AMI name'),
    Key(('ami_suffix',), 'string',
        'a timestamp',
        'replaces the timestamp in the AMI name (AWS refuses a second AMI of the same name in a region, so a fixed suffix allows one image per region)'),
    Key(('communicator',), '`"ssh"`, `"none"`',
        '`"ssh"`',
        '`"none"` runs nothing on the instance (for an emulator such as moto)'),
    Key(('ssh_username',), 'string',
        '`"admin"`',
        'the user packer logs in as (Debian: `admin`, Ubuntu: `ubuntu`, Amazon Linux: `ec2-user`)'),
    Key(('package_format',), '`"deb"`, `"rpm"`',
        '`"deb"`',
        'what its images install: Debian packages with apt and dpkg, or RPMs with dnf (Amazon Linux 2023); a package file of the other kind is refused in one line; a service installs what its base does'),
    *ACCOUNT_KEY_DOCS,
)
AGING_KEY_DOCS = (
    Key(('deprecate_after',), 'duration', "bakehouse.toml's `[aws]`, else none",
        'each AMI is deprecated this long after it was baked (EC2 image deprecation, every region: `"90d"`; '
        'at most 10 years); a revocation deprecates it at once'),
    Key(('deregistration_protection',), 'boolean', "bakehouse.toml's `[aws]`, else `false`",
        "protect the AMIs a channel points at from deregistration, and lift it when none does (so prune may delete them)"),
    Key(('imds_support',), '`"v2.0"`', "bakehouse.toml's `[aws]`, else none",
        'register the AMIs IMDSv2-only (instances launched from them require session tokens; EC2 cannot undo it)'),
)
KEY_DOCS = (*KEY_DOCS, *AGING_KEY_DOCS)
KEYS = names(KEY_DOCS)
AGING_KEYS = names(AGING_KEY_DOCS)
MAX_DEPRECATE_AFTER = timedelta(days=3650)
SOURCE_KEY_DOCS = (
    Key(('ami',), 'string or table',
        '',
        'an AMI id (`"ami-0123..."`, used in every region: AMI ids are regional, so this suits one region), or one per region (`{ us-east-1 = "ami-...", eu-west-1 = "ami-..." }`)'),
    Key(('name',), 'string',
        '',
        'an AMI name pattern (`*` wildcards), resolved with DescribeImages in each region when planning; the image found enters the key by its owner and name'),
    Key(('owners',), 'list of strings',
        'required with `name`',
        'account ids, `"self"` or `"amazon"`: whose images may match'),
    Key(('most_recent',), 'boolean',
        '`true`',
        'take the newest match; `false` makes more than one match an error'),
)
SOURCE_KEYS = names(SOURCE_KEY_DOCS)
# bakehouse.toml's [shared] (shared.py reads it)
SHARED_KEY_DOCS = (
    Key(("s3",), "string", "required", "where the shared state lives: `s3://BUCKET/PREFIX` "
        "([Many runners](../how-to/shared-state.md))"),
    Key(("region",), "string", "`AWS_DEFAULT_REGION`", "the bucket's region"),
    Key(("lease",), "duration", '`"60s"`', "how long a runner's claim on a bake lasts without renewal, from `3s` to `60m`"),
)
# How EC2 names an architecture, and how Debian does (packages from a [[repository]]).
DEBIAN_ARCHITECTURES = {"x86_64": "amd64", "arm64": "arm64", "i386": "i386"}


@dataclass(frozen=True)
class AwsSource:
    """Where an AMI bake starts: an AMI id (one for all regions, or one per region), or a
    filter (name pattern, owners) resolved to the newest matching AMI in each region."""

    ami: str | tuple[tuple[str, str], ...] | None = None
    name: str | None = None
    owners: tuple[str, ...] = ()
    most_recent: bool = True

    def content(self) -> dict[str, Any]:
        """How the source is chosen, as key schema 1 held it (schema 2 keys the image found)."""
        ami = dict(self.ami) if isinstance(self.ami, tuple) else self.ami
        return {"ami": ami, "name": self.name, "owners": list(self.owners), "most_recent": self.most_recent}

    def ami_in(self, region: str) -> str | None:
        """The AMI id given for `region`, when the source names ids rather than a filter."""
        if isinstance(self.ami, tuple):
            return dict(self.ami).get(region)
        return self.ami


@dataclass(frozen=True)
class AwsSettings:
    """The keys of an AMI bake: where it must exist and how it is built and named."""

    regions: tuple[str, ...]
    multi_region: str = "bake"  # "bake": one bake per region, in parallel; "copy": bake once, copy
    instance_type: str = "t3.micro"
    arch: str = "x86_64"
    os: str = "linux"
    ami_name: str | None = None
    ami_suffix: str | None = None
    communicator: str = "ssh"
    ssh_username: str = "admin"
    package_format: str | None = None  # what its images install: "deb" (apt, dpkg) or "rpm" (dnf); a service: its base's
    placement: Placement = Placement()
    encryption: Encryption = Encryption()
    sharing: Sharing = Sharing()
    aging: Aging = field(default_factory=lambda: Aging())  # what the bake file says; the project's fill the rest

    def content(self) -> dict[str, Any]:
        """What can change the image: not where it is (regions) or how regions are filled,
        not names, not the SSH user, not where the build instance ran; its encryption, when set."""
        return {"instance_type": self.instance_type, "arch": self.arch, "communicator": self.communicator,
                **self.encryption.content(),
                # named only when not the default, so the keys of every .deb image stay as they were
                **({"package_format": self.package_format} if self.package_format not in (None, "deb") else {})}

    def content_schema1(self) -> dict[str, Any]:
        """What key schema 1 held (legacy.py): the regions too, in the order written."""
        return {"regions": list(self.regions), **self.content()}


def parse_settings(where: str, data: dict[str, Any]) -> AwsSettings:
    """The AWS keys of a bake (the core refuses them on bakes of other providers)."""
    get = Getter(where, data)
    regions = tuple(get.string_list("regions"))
    if not regions:
        raise DefinitionError(f"{where}: regions is required for provider = \"aws\", e.g. regions = [\"us-east-1\"]")
    for region in regions:
        if not AWS_REGION.match(region):
            raise DefinitionError(f"{where}: regions: '{region}' is not an AWS region name such as 'us-east-1'")
    if len(set(regions)) != len(regions):
        raise DefinitionError(f"{where}: regions: a region is named more than once")
    multi_region = get.choice("multi_region", MULTI_REGION_MODES, default="bake")
    building = regions if multi_region == "bake" else regions[:1]
    return AwsSettings(
        regions=regions,
        multi_region=multi_region,
        instance_type=get.matching("instance_type", r"^[a-z][a-z0-9-]*\.[a-z0-9]+$",
                                   "an EC2 instance type such as 't3.micro'", "t3.micro"),
        arch=get.matching("arch", r"^[a-z0-9_]+$", "lower-case letters, digits and '_'", "x86_64"),
        os=get.matching("os", r"^[a-z0-9][a-z0-9.]*$", "lower-case letters, digits and '.'", "linux"),
        ami_name=get.matching("ami_name", r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$", _NAME_PART, None),
        ami_suffix=get.matching("ami_suffix", r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$", _NAME_PART, None),
        communicator=get.choice("communicator", COMMUNICATORS, default="ssh"),
        ssh_username=get.matching("ssh_username", r"^[a-z_][a-z0-9_-]{0,31}$", "a user name", "admin"),
        package_format=get.choice("package_format", PACKAGE_FORMATS, default=None),
        placement=parse_placement(where, get, regions, building),
        encryption=parse_encryption(where, get, regions),
        sharing=parse_sharing(where, get),
        aging=parse_aging(where, data),
    )


@dataclass(frozen=True)
class Aging:
    """An AMI's end of life (lifecycle.py); None: not said here (the project's default, else off)."""

    deprecate_after: timedelta | None = None
    deregistration_protection: bool | None = None
    imds_support: str | None = None

    def over(self, defaults: Aging) -> Aging:
        """These settings, each one not given taken from `defaults` (bakehouse.toml's [aws])."""
        return Aging(
            self.deprecate_after if self.deprecate_after is not None else defaults.deprecate_after,
            self.deregistration_protection if self.deregistration_protection is not None
            else defaults.deregistration_protection,
            self.imds_support if self.imds_support is not None else defaults.imds_support,
        )


def parse_aging(where: str, data: dict[str, Any], prefix: str = "") -> Aging:
    """The aging keys of a bake file, or of bakehouse.toml's [aws] (`prefix` "aws.": there, no other key)."""
    if prefix:
        reject_unknown(where, prefix, data, AGING_KEYS)
    get = Getter(where, data, prefix=prefix)
    return Aging(_deprecate_after(f"{where}: {prefix}", data.get("deprecate_after")),
                 get.boolean("deregistration_protection"), get.choice("imds_support", ("v2.0",), default=None))


def _deprecate_after(where: str, value: Any) -> timedelta | None:
    if value is None:
        return None
    after = parse_duration(f"{where}deprecate_after", value)
    if not timedelta(minutes=1) <= after <= MAX_DEPRECATE_AFTER:
        raise DefinitionError(f"{where}deprecate_after: {value!r} must be from 1m to 10 years (EC2's limit)")
    return after


_NAME_PART = "letters, digits, '.', '_' and '-' (part of an AMI name)"


def parse_source(where: str, table: dict[str, Any]) -> AwsSource:
    get = Getter(where, table, prefix="source.")
    ami, name = table.get("ami"), get.string("name")
    if (ami is None) == (name is None):
        raise DefinitionError(
            f"{where}: [source] of an AWS bake needs either ami (an AMI id, or a table of one per region) "
            "or name (an AMI name pattern, with owners)"
        )
    if name is not None:
        owners = tuple(get.string_list("owners"))
        if not owners:
            raise DefinitionError(
                f"{where}: source.owners is required with source.name (account ids, 'self' or 'amazon'), "
                "so an image of someone else with a matching name is never picked"
            )
        most_recent = table.get("most_recent", True)
        if not isinstance(most_recent, bool):
            raise get.fail("most_recent", "a boolean", most_recent)
        return AwsSource(name=name, owners=owners, most_recent=most_recent)
    for key in ("owners", "most_recent"):
        if key in table:
            raise DefinitionError(f"{where}: source.{key} goes with source.name (a filter), not with source.ami")
    if isinstance(ami, str):
        return AwsSource(ami=_ami_id(where, "source.ami", ami))
    if isinstance(ami, dict) and ami:
        for region, value in ami.items():
            if not AWS_REGION.match(region):
                raise DefinitionError(f"{where}: source.ami: '{region}' is not an AWS region name such as 'us-east-1'")
            if not isinstance(value, str):
                raise get.fail(f"ami.{region}", "an AMI id", value)
            _ami_id(where, f"source.ami.{region}", value)
        return AwsSource(ami=tuple(sorted(ami.items())))
    raise get.fail("ami", "an AMI id or a table of region = AMI id", ami)


def _ami_id(where: str, key: str, value: str) -> str:
    if not AMI_ID.match(value):
        raise DefinitionError(f"{where}: {key}: '{value}' is not an AMI id such as 'ami-0123456789abcdef0'")
    return value


def settings_of(bake: Bake) -> AwsSettings:
    """The AWS settings of an AWS bake."""
    assert isinstance(bake.settings, AwsSettings), f"{bake.name} is not an AWS bake"
    return bake.settings


def package_format_of(bake: Bake, bakes: Mapping[str, Bake]) -> str:
    """What `bake`'s images install: its own package_format, else its base's, else "deb"."""
    while settings_of(bake).package_format is None and bake.base is not None:
        bake = bakes[bake.base]
    return settings_of(bake).package_format or "deb"


def check_graph(bakes: Mapping[str, Bake]) -> None:
    """A service builds in each of its regions on its base's image there, so the base must
    exist wherever the service does; AMI ids given per region must cover the regions. (In
    copy mode too: a region that goes missing later is baked there alone.)"""
    for bake in bakes.values():
        regions = settings_of(bake).regions
        if bake.tests and settings_of(bake).communicator == "none":
            raise DefinitionError(
                f"{bake.where}: tests need communicator = \"ssh\": with \"none\" nothing runs on the instance"
            )
        if bake.base is not None:
            base = bakes[bake.base]
            own, root = settings_of(bake).package_format, package_format_of(base, bakes)
            if own is not None and own != root:
                raise DefinitionError(
                    f"{bake.where}: package_format: '{own}', but its base '{base.name}' installs '{root}' "
                    "packages; a service's images install what its base's do (leave it out)"
                )
            outside = [region for region in regions if region not in settings_of(base).regions]
            if outside:
                raise DefinitionError(
                    f"{bake.where}: regions: {', '.join(outside)} not in the regions of its base "
                    f"'{base.name}' ({', '.join(settings_of(base).regions)}); a service bakes on its base's image in each region"
                )
        source = bake.source
        if isinstance(source, AwsSource) and isinstance(source.ami, tuple):
            uncovered = [region for region in regions if source.ami_in(region) is None]
            if uncovered:
                raise DefinitionError(f"{bake.where}: source.ami names no AMI for {', '.join(uncovered)}")
