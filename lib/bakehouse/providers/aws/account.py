"""The keys an AWS account imposes on a bake: where the build instance runs, how the image is
encrypted, and who may launch it.

An organisation's account usually has no default VPC and a security team's rules: builds run
in a named subnet with named security groups and an instance profile, and volumes are
encrypted with the organisation's KMS keys. Following the content key's rule (what changes
the image's contents or encryption is content; where the build instance ran is not),
`Encryption` enters the key, and only when a bake sets it, so bakes that do not are keyed
exactly as before; `Placement` and `Sharing` never do (a changed `Sharing` changes the AMIs'
launch permissions in place, without a bake).

Every value is checked when bake files load, with one line naming the key and the value.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any

from ...errors import DefinitionError
from ...keyref import Key, names
from ...tomlcheck import Getter

SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
SECURITY_GROUP_ID = re.compile(r"^sg-[0-9a-f]{8,17}$")
SSH_INTERFACES = ("public_ip", "private_ip", "public_dns", "private_dns", "session_manager")
SPOT_PRICE = re.compile(r"^(auto|\d+(\.\d+)?)$")
INSTANCE_PROFILE = re.compile(r"^[\w+=,.@-]{1,128}$")
# A key id, an alias, or either as an ARN.
KMS_KEY = re.compile(r"^(alias/[\w/-]{1,250}|[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}|mrk-[0-9a-f]{32}|arn:aws[\w-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[\w/-]+)$")
KEY_DOCS = (
    Key(('subnet_id',), 'string, or table of region = string',
        'the default VPC',
        'the subnet the build instance runs in; a subnet is one region\'s, so a bake that builds in several regions names one per region (`{ us-east-1 = "subnet-...", us-west-2 = "subnet-..." }`); a plain string suits one region, or `multi_region = "copy"` (built in the first region)'),
    Key(('subnet_tags',), 'table',
        '',
        "instead of `subnet_id`: the subnet with these tags that has the most free addresses, in each region (packer's `subnet_filter`)"),
    Key(('vpc_id',), 'string, or table of region = string',
        '',
        'the VPC, per region as `subnet_id`'),
    Key(('security_group_ids',), 'list, or table of region = list',
        'a temporary group',
        'security groups for the build instance, per region as `subnet_id`'),
    Key(('ssh_cidrs',), 'list of CIDR blocks',
        '`["0.0.0.0/0"]`',
        'who may reach the temporary security group packer makes (not with `security_group_ids`)'),
    Key(('public_ip',), 'boolean',
        "the subnet's setting",
        '`true` gives the build instance a public address; packer 1.6.6 leaves `false` to the subnet (use a private subnet)'),
    Key(('instance_profile',), 'string',
        'none',
        'the IAM instance profile of the build instance'),
    Key(('ssh_interface',), '`"public_ip"`, `"private_ip"`, `"public_dns"`, `"private_dns"`, `"session_manager"`',
        "packer's choice",
        'how packer reaches the instance; `"session_manager"` (no open port) needs an `instance_profile` that allows Session Manager'),
    Key(('ssh_bastion_host', 'ssh_bastion_username', 'ssh_bastion_private_key_file'), 'strings',
        'none',
        'SSH through a bastion host (the user defaults to `ssh_username`; the key file is a path, never read by bakehouse)'),
    Key(('spot_price',), '`"auto"` or a price per hour',
        'on-demand',
        'build on a spot instance'),
    Key(('imdsv2',), 'boolean',
        '`false`',
        "the build instance requires IMDSv2 tokens: packer's `metadata_options` from packer 1.7 on; packer 1.6.6 has none, so the template's first step (on the host) sets them on the running instance with boto3 (`ModifyInstanceMetadataOptions`) before anything runs on it"),
    Key(('encrypted',), 'boolean',
        '`false`',
        "encrypt the image's snapshots (packer's `encrypt_boot`: the AMI is copied encrypted in its region, and the unencrypted one removed)"),
    Key(('kms_key_id',), 'string',
        "the account's default EBS key",
        'the KMS key (id, `alias/...`, or ARN); needs `encrypted = true`'),
    Key(('region_kms_key_ids',), 'table of region = key',
        '`kms_key_id`',
        'a key per region where they differ (keys are regional): for the regions baked in, and for the copies of `multi_region = "copy"`'),
    Key(('ami_users',), 'list of account ids',
        'none: private',
        'the accounts that may launch the image'),
    Key(('ami_org_arns', 'ami_ou_arns'), 'lists of ARNs',
        'none',
        'the organisations and organisational units that may launch it'),
    Key(('public',), 'boolean',
        '`false`',
        'every account may launch it; only when said explicitly, and not with the three above'),
    Key(('snapshot_users',), 'list of account ids',
        'none',
        'the accounts that may create volumes from its snapshots (to copy it, or encrypt it with their own key)'),
)
KEYS = names(KEY_DOCS)


@dataclass(frozen=True)
class Placement:
    """Where packer runs the build instance (none of it is content). Subnets, VPCs and
    security groups belong to one region: each is given per region ({region: value})."""

    subnet_ids: tuple[tuple[str, str], ...] = ()
    subnet_tags: tuple[tuple[str, str], ...] = ()  # the subnet with the most free addresses among these
    vpc_ids: tuple[tuple[str, str], ...] = ()
    security_group_ids: tuple[tuple[str, tuple[str, ...]], ...] = ()
    ssh_cidrs: tuple[str, ...] = ()  # who may reach packer's temporary security group
    public_ip: bool | None = None  # None: the subnet's own setting
    instance_profile: str | None = None
    ssh_interface: str | None = None  # how packer reaches it: an address, or "session_manager"
    bastion_host: str | None = None
    bastion_username: str | None = None
    bastion_key_file: str | None = None  # a path: the key itself is never read by bakehouse
    spot_price: str | None = None  # "auto", or a maximum price per hour
    imdsv2: bool = False  # the build instance requires IMDSv2 tokens

    def in_region(self, region: str) -> dict[str, Any]:
        """The build instance's placement in `region`, as the template's `build.placement`."""
        return {
            "subnet_id": dict(self.subnet_ids).get(region),
            "subnet_filters": {f"tag:{name}": value for name, value in self.subnet_tags},
            "vpc_id": dict(self.vpc_ids).get(region),
            "security_group_ids": list(dict(self.security_group_ids).get(region, ())),
            "ssh_cidrs": list(self.ssh_cidrs),
            "public_ip": self.public_ip,
            "instance_profile": self.instance_profile,
            "ssh_interface": self.ssh_interface,
            "bastion": None if self.bastion_host is None else {
                "host": self.bastion_host, "username": self.bastion_username, "key_file": self.bastion_key_file,
            },
            "spot_price": self.spot_price,
            "imdsv2": self.imdsv2,
        }


@dataclass(frozen=True)
class Encryption:
    """How the image's snapshots are encrypted: content, when set."""

    encrypted: bool = False
    kms_key_id: str | None = None  # None: the account's default EBS key
    region_kms_key_ids: tuple[tuple[str, str], ...] = ()  # a key per region, where they differ

    def content(self) -> dict[str, Any]:
        if not self.encrypted:
            return {}
        return {"encrypted": True, "kms_key_id": self.kms_key_id, "region_kms_key_ids": dict(self.region_kms_key_ids)}

    def key_in(self, region: str) -> str | None:
        return dict(self.region_kms_key_ids).get(region, self.kms_key_id)


def parse_placement(where: str, get: Getter, regions: tuple[str, ...], building: tuple[str, ...]) -> Placement:
    """`building`: the regions a new image is built in (all, or the first when copied)."""
    subnet_ids = _per_region(where, get, "subnet_id", SUBNET_ID, "a subnet id such as 'subnet-0123456789abcdef0'",
                             regions, building)
    subnet_tags = _string_table(where, get, "subnet_tags")
    if subnet_ids and subnet_tags:
        raise DefinitionError(f"{where}: subnet_id and subnet_tags both choose the subnet: give one")
    groups = _per_region_lists(where, get, "security_group_ids", SECURITY_GROUP_ID,
                               "a security group id such as 'sg-0123456789abcdef0'", regions, building)
    cidrs = tuple(get.string_list("ssh_cidrs"))
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr)
        except ValueError:
            raise DefinitionError(f"{where}: ssh_cidrs: {cidr!r} is not a CIDR block such as '10.0.0.0/8'") from None
    if groups and cidrs:
        raise DefinitionError(
            f"{where}: ssh_cidrs restricts the temporary security group packer makes; with security_group_ids "
            "none is made: give one"
        )
    instance_profile = get.matching("instance_profile", INSTANCE_PROFILE, "an IAM instance profile name")
    interface = get.choice("ssh_interface", SSH_INTERFACES, default=None)
    if interface == "session_manager" and instance_profile is None:
        raise DefinitionError(f"{where}: ssh_interface = \"session_manager\" needs an instance_profile that allows "
                              "Session Manager (AmazonSSMManagedInstanceCore)")
    bastion = get.string("ssh_bastion_host")
    key_file = get.string("ssh_bastion_private_key_file")
    if bastion is not None and key_file is None:
        raise DefinitionError(f"{where}: ssh_bastion_host needs ssh_bastion_private_key_file (the key packer logs in to it with)")
    if bastion is None and (key_file is not None or get.string("ssh_bastion_username") is not None):
        raise DefinitionError(f"{where}: ssh_bastion_username and ssh_bastion_private_key_file go with ssh_bastion_host")
    spot = get.string("spot_price")
    if spot is not None and not SPOT_PRICE.match(spot):
        raise DefinitionError(f"{where}: spot_price: {spot!r} is not valid: \"auto\" or a price per hour such as \"0.05\"")
    return Placement(
        instance_profile=instance_profile,
        ssh_interface=interface,
        bastion_host=bastion,
        bastion_username=get.string("ssh_bastion_username"),
        bastion_key_file=key_file,
        spot_price=spot,
        imdsv2=bool(get.boolean("imdsv2")),
        subnet_ids=subnet_ids,
        subnet_tags=tuple(sorted(subnet_tags.items())),
        vpc_ids=_per_region(where, get, "vpc_id", VPC_ID, "a VPC id such as 'vpc-0123456789abcdef0'", regions, building),
        security_group_ids=groups,
        ssh_cidrs=cidrs,
        public_ip=get.boolean("public_ip"),
    )


def parse_encryption(where: str, get: Getter, regions: tuple[str, ...]) -> Encryption:
    encrypted = bool(get.boolean("encrypted"))
    kms_key_id = get.matching("kms_key_id", KMS_KEY, "a KMS key id, alias/NAME, or a key or alias ARN")
    per_region = _string_table(where, get, "region_kms_key_ids")
    for region, key in per_region.items():
        if region not in regions:
            raise DefinitionError(f"{where}: region_kms_key_ids: {region} is not one of the bake's regions")
        if not KMS_KEY.match(key):
            raise DefinitionError(
                f"{where}: region_kms_key_ids.{region}: {key!r} is not valid: a KMS key id, alias/NAME, or a key or alias ARN"
            )
    if (kms_key_id or per_region) and not encrypted:
        raise DefinitionError(f"{where}: a KMS key is given but encrypted is not true: set encrypted = true")
    return Encryption(encrypted=encrypted, kms_key_id=kms_key_id, region_kms_key_ids=tuple(sorted(per_region.items())))


def _per_region(
    where: str, get: Getter, key: str, pattern: re.Pattern[str], wanted: str,
    regions: tuple[str, ...], building: tuple[str, ...],
) -> tuple[tuple[str, str], ...]:
    """One id for the one region a bake builds in, or a table of one per region it builds in."""
    value = get.data.get(key)
    if value is None:
        return ()
    table = _region_table(where, get, key, value, (str,), "a string", regions, building)
    for region, item in table.items():
        if not pattern.match(item):
            raise DefinitionError(f"{where}: {key}.{region}: {item!r} is not valid: {wanted}")
    return tuple(sorted(table.items()))


def _per_region_lists(
    where: str, get: Getter, key: str, pattern: re.Pattern[str], wanted: str,
    regions: tuple[str, ...], building: tuple[str, ...],
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    value = get.data.get(key)
    if value is None:
        return ()
    table = _region_table(where, get, key, value, (list,), "a list of strings", regions, building)
    for region, items in table.items():
        for item in items:
            if not isinstance(item, str) or not pattern.match(item):
                raise DefinitionError(f"{where}: {key}.{region}: {item!r} is not valid: {wanted}")
    return tuple(sorted((region, tuple(items)) for region, items in table.items()))


def _region_table(
    where: str, get: Getter, key: str, value: Any, kinds: tuple[type, ...], kind: str,
    regions: tuple[str, ...], building: tuple[str, ...],
) -> dict[str, Any]:
    """`value` as {region: item}: a plain item stands for the one region a bake builds in."""
    if isinstance(value, kinds):
        if len(building) > 1:
            raise DefinitionError(
                f"{where}: {key} belongs to one region, and the bake builds in {', '.join(building)}: "
                f"give one per region, e.g. {key} = {{ {building[0]} = ..., {building[1]} = ... }}"
            )
        return {building[0]: value}
    if not isinstance(value, dict):
        raise get.fail(key, f"{kind}, or a table of region = {kind}", value)
    for region, item in value.items():
        if region not in regions:
            raise DefinitionError(f"{where}: {key}: {region} is not one of the bake's regions")
        if not isinstance(item, kinds):
            raise get.fail(f"{key}.{region}", kind, item)
    missing = [region for region in building if region not in value]
    if missing:
        raise DefinitionError(f"{where}: {key} names none for {', '.join(missing)}, where the bake builds")
    return dict(value)


def _string_table(where: str, get: Getter, key: str) -> dict[str, str]:
    table = get.table(key, (str,))
    return {str(name): str(value) for name, value in table.items()}


ACCOUNT_ID = re.compile(r"^\d{12}$")
ORG_ARN = re.compile(r"^arn:aws[\w-]*:organizations::\d{12}:organization/o-[a-z0-9]{10,32}$")
OU_ARN = re.compile(r"^arn:aws[\w-]*:organizations::\d{12}:ou/o-[a-z0-9]{10,32}/ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}$")
TAG_VALUE_LIMIT = 256


@dataclass(frozen=True)
class Sharing:
    """Who may launch the image (not content: changing it changes the AMIs' launch
    permissions, never the image). Private unless the bake names someone."""

    accounts: tuple[str, ...] = ()
    organizations: tuple[str, ...] = ()
    units: tuple[str, ...] = ()  # organisational units
    public: bool = False
    snapshot_accounts: tuple[str, ...] = ()  # may create volumes from the snapshots

    def describe(self) -> str:
        """Who may launch, for people: `private`, `public`, or whom it is shared with."""
        if self.public:
            return "public"
        parts = [f"account {', '.join(self.accounts)}" if len(self.accounts) == 1 else
                 f"accounts {', '.join(self.accounts)}" if self.accounts else "",
                 f"organization {', '.join(a.rsplit('/', 1)[-1] for a in self.organizations)}" if self.organizations else "",
                 f"OU {', '.join(a.rsplit('/', 1)[-1] for a in self.units)}" if self.units else ""]
        shared = "; ".join(part for part in parts if part)
        return f"shared with {shared}" if shared else "private"

    def identity(self) -> str:
        """What the `bakehouse:launch` tag holds once an AMI's permissions are set: short
        enough for a tag (a digest when the lists are long)."""
        text = json.dumps([sorted(self.accounts), sorted(self.organizations), sorted(self.units), self.public,
                           sorted(self.snapshot_accounts)], separators=(",", ":"))
        if text == json.dumps([[], [], [], False, []], separators=(",", ":")):
            return "private"
        return text if len(text) <= TAG_VALUE_LIMIT else "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    @staticmethod
    def from_identity(identity: str) -> Sharing | None:
        """The sharing a `bakehouse:launch` tag records (None when it holds only a digest)."""
        if identity == "private":
            return Sharing()
        try:
            accounts, organizations, units, public, snapshots = json.loads(identity)
            return Sharing(tuple(accounts), tuple(organizations), tuple(units), bool(public), tuple(snapshots))
        except (ValueError, TypeError):
            return None

    def launch_permissions(self) -> list[dict[str, str]]:
        """As EC2's LaunchPermission items."""
        return ([{"Group": "all"}] if self.public else []) + [{"UserId": a} for a in self.accounts] + [
            {"OrganizationArn": a} for a in self.organizations] + [{"OrganizationalUnitArn": a} for a in self.units]


def parse_sharing(where: str, get: Getter) -> Sharing:
    lists = {}
    for key, pattern, wanted in (
        ("ami_users", ACCOUNT_ID, "a 12-digit AWS account id"),
        ("snapshot_users", ACCOUNT_ID, "a 12-digit AWS account id"),
        ("ami_org_arns", ORG_ARN, "an organization ARN such as 'arn:aws:organizations::123456789012:organization/o-abcdefghij'"),
        ("ami_ou_arns", OU_ARN, "an OU ARN such as 'arn:aws:organizations::123456789012:ou/o-abcdefghij/ou-ab12-cdefgh34'"),
    ):
        values = get.string_list(key)
        for value in values:
            if not pattern.match(value):
                raise DefinitionError(f"{where}: {key}: {value!r} is not valid: {wanted}")
        lists[key] = tuple(sorted(set(values)))
    public = bool(get.boolean("public"))
    if public and (lists["ami_users"] or lists["ami_org_arns"] or lists["ami_ou_arns"]):
        raise DefinitionError(f"{where}: public = true lets every account launch the image: drop ami_users, "
                              "ami_org_arns and ami_ou_arns, or public")
    return Sharing(accounts=lists["ami_users"], organizations=lists["ami_org_arns"], units=lists["ami_ou_arns"],
                   public=public, snapshot_accounts=lists["snapshot_users"])
