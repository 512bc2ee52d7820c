"""Read bakes/*.toml into frozen Bake definitions and check the bake graph.

Every problem is a DefinitionError whose message names the file and the key, with a
did-you-mean for near misses, so a typo costs one line of output, never a traceback.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .aptrepo import Repository
from .errors import DefinitionError
from .project import Project

PROVIDERS = ("local", "aws")
REBUILD_PERIODS = ("day", "week", "month")
# mmdebstrap's own variants, plus "busybox": a tiny dpkg+busybox system for tests and demos.
LOCAL_VARIANTS = (
    "extract", "custom", "essential", "apt", "required", "minbase", "buildd",
    "important", "debootstrap", "standard", "busybox",
)
BAKE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
DURATION = re.compile(r"^(\d+)(s|m|h)$")
DEFAULT_TIMEOUT_SECONDS = 3600
AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
MULTI_REGION_MODES = ("bake", "copy")
COMMUNICATORS = ("ssh", "none")

VarValue = str | int | float | bool


@dataclass(frozen=True)
class LocalSource:
    """Where a local base image starts: a Debian suite built by mmdebstrap."""

    suite: str
    variant: str = "minbase"
    mirror: str | None = None

    def content(self) -> dict[str, Any]:
        return vars(self)


@dataclass(frozen=True)
class AwsSource:
    """Where an AMI bake starts: an AMI id (one for all regions, or one per region), or a
    filter (name pattern, owners) resolved to the newest matching AMI in each region."""

    ami: str | tuple[tuple[str, str], ...] | None = None
    name: str | None = None
    owners: tuple[str, ...] = ()
    most_recent: bool = True

    def content(self) -> dict[str, Any]:
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

    def content(self) -> dict[str, Any]:
        """What can change the image: not names, the SSH user, or how regions are filled."""
        return {
            "regions": list(self.regions), "instance_type": self.instance_type,
            "arch": self.arch, "communicator": self.communicator,
        }


@dataclass(frozen=True)
class Bake:
    """One image to bake, as declared in bakes/<name>.toml (defaults applied)."""

    name: str
    path: Path
    template: str
    provider: str = "local"
    description: str = ""
    base: str | None = None
    source: LocalSource | AwsSource | None = None
    packages: tuple[str, ...] = ()
    vars: tuple[tuple[str, VarValue], ...] = ()
    rebuild_every: str | None = None
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    repositories: tuple[Repository, ...] = ()
    aws: AwsSettings | None = None

    @property
    def vars_dict(self) -> dict[str, VarValue]:
        return dict(self.vars)

    def content_definition(self) -> dict[str, Any]:
        """The normalised definition that goes into the content key.

        Leaves out what cannot change the image: the description, the timeout, and the
        package specs and repositories (resolved names, versions and hashes enter the key).
        """
        definition = {
            "provider": self.provider,
            "template": self.template,
            "base": self.base,
            "source": None if self.source is None else self.source.content(),
            "vars": dict(self.vars),
            "rebuild_every": self.rebuild_every,
        }
        if self.aws is not None:
            definition["aws"] = self.aws.content()
        return definition


@dataclass(frozen=True)
class BakeGraph:
    """All bakes of a repository, in an order where every base comes before its services."""

    bakes: tuple[Bake, ...] = field(default_factory=tuple)

    def __getitem__(self, name: str) -> Bake:
        for bake in self.bakes:
            if bake.name == name:
                return bake
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [bake.name for bake in self.bakes]

    def chain(self, name: str) -> list[Bake]:
        """`name` and the bakes it builds on, base first."""
        chain = [self[name]]
        while chain[0].base is not None:
            chain.insert(0, self[chain[0].base])
        return chain

    def dependents(self, name: str) -> list[Bake]:
        """The bakes built on `name`, directly or through other bakes."""
        found: list[Bake] = []
        for bake in self.bakes:
            if bake.base is not None and (bake.base == name or self[bake.base] in found):
                found.append(bake)
        return found


def load_bakes(project: Project) -> BakeGraph:
    """Every bakes/*.toml, validated, with the graph checked (missing bases, cycles)."""
    paths = sorted(project.bakes_dir.glob("*.toml"))
    bakes = {path.stem: load_bake(project, path) for path in paths}
    return BakeGraph(tuple(_base_first(bakes)))


def load_bake(project: Project, path: Path) -> Bake:
    where = project.relative(path)
    name = path.stem
    if not BAKE_NAME.match(name):
        raise DefinitionError(
            f"{where}: bake name '{name}' must be lower-case letters, digits and '-' "
            "(it names images and tasks); rename the file"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise DefinitionError(f"{where}: invalid TOML: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DefinitionError(f"{where}: cannot read: {error}") from None
    return _parse(project, where, name, path, data)


AWS_KEYS = (
    "regions", "multi_region", "instance_type", "arch", "os", "ami_name", "ami_suffix",
    "communicator", "ssh_username",
)
_TOP_KEYS = (
    "description", "provider", "template", "base", "source", "packages", "vars",
    "rebuild_every", "timeout", "repository",
) + AWS_KEYS
_LOCAL_SOURCE_KEYS = ("suite", "variant", "mirror")
_AWS_SOURCE_KEYS = ("ami", "name", "owners", "most_recent")
_REPOSITORY_KEYS = ("url", "suite", "components", "signed_by", "trusted", "packages")


def _parse(project: Project, where: str, name: str, path: Path, data: dict[str, Any]) -> Bake:
    _reject_unknown(where, "", data, _TOP_KEYS)
    get = _Getter(where, data)
    provider = get.choice("provider", PROVIDERS, default="local")
    template = get.string("template")
    if template is None:
        raise DefinitionError(f"{where}: 'template' is required (a file under templates/)")
    if not (project.templates_dir / template).is_file():
        raise DefinitionError(
            f"{where}: template: no file templates/{template}"
            + did_you_mean(template, _template_names(project))
        )
    base = get.string("base")
    source = _parse_source(where, data.get("source"), provider)
    if base is None and source is None:
        raise DefinitionError(f"{where}: a bake needs either 'base' (another bake) or a [source] table")
    if base is not None and source is not None:
        raise DefinitionError(f"{where}: 'base' and [source] exclude each other: a service builds on its base")
    return Bake(
        name=name,
        path=path,
        template=template,
        provider=provider,
        description=get.string("description") or "",
        base=base,
        source=source,
        packages=tuple(get.string_list("packages")),
        vars=tuple(sorted(get.table("vars", (str, int, float, bool)).items())),
        rebuild_every=get.choice("rebuild_every", REBUILD_PERIODS, default=None),
        timeout_seconds=_parse_duration(where, data.get("timeout")),
        repositories=_parse_repositories(project, where, data.get("repository", [])),
        aws=_parse_aws(where, data, provider),
    )


def _parse_repositories(project: Project, where: str, tables: Any) -> tuple[Repository, ...]:
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise DefinitionError(f"{where}: repository must be tables ([[repository]]), not {_type_name(tables)}")
    return tuple(_parse_repository(project, where, n, table) for n, table in enumerate(tables))


def _parse_repository(project: Project, where: str, n: int, table: dict[str, Any]) -> Repository:
    prefix = f"repository[{n}]."
    _reject_unknown(where, prefix, table, _REPOSITORY_KEYS)
    get = _Getter(where, table, prefix=prefix)
    url, suite = get.string("url"), get.string("suite")
    if url is None or not re.match(r"^https?://[^\s\"'`$]+$", url):
        raise DefinitionError(f"{where}: {prefix}url must be an http:// or https:// URL, not {url!r}")
    if suite is None or not re.match(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$", suite):
        raise DefinitionError(f"{where}: {prefix}suite must be a suite or codename such as 'stable', not {suite!r}")
    components = get.string_list("components") or ["main"]
    for component in components:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$", component):
            raise DefinitionError(f"{where}: {prefix}components: {component!r} is not a component name")
    trusted = table.get("trusted", False)
    if not isinstance(trusted, bool):
        raise DefinitionError(f"{where}: {prefix}trusted must be true or false, not {trusted!r}")
    signed_by = get.string("signed_by")
    keyring = None if signed_by is None else project.root / signed_by
    if keyring is not None and not keyring.is_file():
        raise DefinitionError(f"{where}: {prefix}signed_by: no keyring file {signed_by}")
    if keyring is None and not trusted:
        raise DefinitionError(
            f"{where}: {prefix[:-1]} needs signed_by (a keyring file such as keys/team.gpg), "
            "or trusted = true to use it without checking signatures"
        )
    packages = get.string_list("packages")
    if not packages:
        raise DefinitionError(f"{where}: {prefix}packages: name the packages to take from this repository")
    return Repository(url, suite, tuple(components), keyring, trusted, tuple(packages))


def _parse_source(where: str, table: Any, provider: str) -> LocalSource | AwsSource | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise DefinitionError(f"{where}: source must be a table ([source]), not {_type_name(table)}")
    source_keys = _AWS_SOURCE_KEYS if provider == "aws" else _LOCAL_SOURCE_KEYS
    for key in table:
        if key not in source_keys and did_you_mean(key, _TOP_KEYS + source_keys) == did_you_mean(key, _TOP_KEYS) != "":
            raise DefinitionError(
                f"{where}: unknown key 'source.{key}'{did_you_mean(key, _TOP_KEYS)[:-1]} "
                "It belongs above [source]: keys after a [table] header go into that table.)"
            )
    _reject_unknown(where, "source.", table, source_keys)
    if provider == "aws":
        return _parse_aws_source(where, table)
    get = _Getter(where, table, prefix="source.")
    suite = get.string("suite")
    if suite is None:
        raise DefinitionError(f"{where}: source.suite is required (a Debian suite such as 'bookworm')")
    if not re.match(r"^[a-z][a-z0-9-]*$", suite):
        raise DefinitionError(f"{where}: source.suite: '{suite}' is not a Debian suite name")
    return LocalSource(
        suite=suite,
        variant=get.choice("variant", LOCAL_VARIANTS, default="minbase"),
        mirror=get.string("mirror"),
    )


def _parse_duration(where: str, value: Any) -> int:
    if value is None:
        return DEFAULT_TIMEOUT_SECONDS
    match = DURATION.match(value) if isinstance(value, str) else None
    if match is None or int(match.group(1)) == 0:
        raise DefinitionError(f"{where}: timeout: {value!r} is not a duration such as \"90s\", \"45m\" or \"2h\"")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


class _Getter:
    """Typed access to one TOML table, raising errors that name the file and key."""

    def __init__(self, where: str, data: dict[str, Any], prefix: str = "") -> None:
        self.where, self.data, self.prefix = where, data, prefix

    def _fail(self, key: str, wanted: str, value: Any) -> DefinitionError:
        return DefinitionError(
            f"{self.where}: {self.prefix}{key} must be {wanted}, not {_type_name(value)} {value!r}"
        )

    def string(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise self._fail(key, "a string", value)
        return value

    def choice(self, key: str, allowed: tuple[str, ...], default: str | None) -> Any:
        value = self.string(key)
        if value is None:
            return default
        if value not in allowed:
            raise DefinitionError(
                f"{self.where}: {self.prefix}{key}: '{value}' is not one of {', '.join(allowed)}"
                + did_you_mean(value, allowed)
            )
        return value

    def string_list(self, key: str) -> list[str]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._fail(key, "a list of strings", value)
        return value

    def table(self, key: str, value_types: tuple[type, ...]) -> dict[str, Any]:
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            raise self._fail(key, "a table", value)
        for item_key, item in value.items():
            if not isinstance(item, value_types):
                raise self._fail(f"{key}.{item_key}", "a string, number or boolean", item)
        return value


def _reject_unknown(where: str, prefix: str, data: dict[str, Any], known: tuple[str, ...]) -> None:
    for key in data:
        if key not in known:
            raise DefinitionError(f"{where}: unknown key '{prefix}{key}'" + did_you_mean(key, known))


def did_you_mean(word: str, candidates: Any) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _type_name(value: Any) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _template_names(project: Project) -> list[str]:
    root = project.templates_dir
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()] if root.is_dir() else []


def _base_first(bakes: dict[str, Bake]) -> list[Bake]:
    """Order bakes so each base precedes its services; reject missing bases and cycles."""
    for bake in bakes.values():
        if bake.base is not None and bake.base not in bakes:
            raise DefinitionError(
                f"bakes/{bake.name}.toml: base: '{bake.base}' is not a bake in bakes/"
                + did_you_mean(bake.base, bakes)
            )
        if bake.base is not None and bakes[bake.base].provider != bake.provider:
            raise DefinitionError(
                f"bakes/{bake.name}.toml: base: '{bake.base}' is a {bakes[bake.base].provider} bake, "
                f"but this one is {bake.provider}; a service builds on a base of its own provider"
            )
    _check_aws_chain(bakes)
    ordered: list[Bake] = []
    for name in sorted(bakes):
        _visit(bakes, name, ordered, path=[])
    return ordered


def _visit(bakes: dict[str, Bake], name: str, ordered: list[Bake], path: list[str]) -> None:
    if bakes[name] in ordered:
        return
    if name in path:
        cycle = " -> ".join(path[path.index(name):] + [name])
        raise DefinitionError(f"bakes/{name}.toml: base cycle {cycle}")
    base = bakes[name].base
    if base is not None:
        _visit(bakes, base, ordered, path + [name])
    ordered.append(bakes[name])



def _parse_aws(where: str, data: dict[str, Any], provider: str) -> AwsSettings | None:
    """The AWS keys of a bake; they are refused on bakes of other providers."""
    if provider != "aws":
        for key in AWS_KEYS:
            if key in data:
                raise DefinitionError(f"{where}: {key} is only for provider = \"aws\" (this bake is {provider})")
        return None
    get = _Getter(where, data)
    regions = tuple(get.string_list("regions"))
    if not regions:
        raise DefinitionError(f"{where}: regions is required for provider = \"aws\", e.g. regions = [\"us-east-1\"]")
    for region in regions:
        if not AWS_REGION.match(region):
            raise DefinitionError(f"{where}: regions: '{region}' is not an AWS region name such as 'us-east-1'")
    if len(set(regions)) != len(regions):
        raise DefinitionError(f"{where}: regions: a region is named more than once")
    return AwsSettings(
        regions=regions,
        multi_region=get.choice("multi_region", MULTI_REGION_MODES, default="bake"),
        instance_type=_matching(where, get, "instance_type", r"^[a-z][a-z0-9-]*\.[a-z0-9]+$", "t3.micro",
                                "an EC2 instance type such as 't3.micro'"),
        arch=_matching(where, get, "arch", r"^[a-z0-9_]+$", "x86_64", "lower-case letters, digits and '_'"),
        os=_matching(where, get, "os", r"^[a-z0-9][a-z0-9.]*$", "linux", "lower-case letters, digits and '.'"),
        ami_name=_matching(where, get, "ami_name", r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$", None, _NAME_PART),
        ami_suffix=_matching(where, get, "ami_suffix", r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$", None, _NAME_PART),
        communicator=get.choice("communicator", COMMUNICATORS, default="ssh"),
        ssh_username=_matching(where, get, "ssh_username", r"^[a-z_][a-z0-9_-]{0,31}$", "admin", "a user name"),
    )


_NAME_PART = "letters, digits, '.', '_' and '-' (part of an AMI name)"


def _matching(where: str, get: _Getter, key: str, pattern: str, default: str | None, wanted: str) -> Any:
    value = get.string(key)
    if value is None:
        return default
    if not re.match(pattern, value):
        raise DefinitionError(f"{where}: {key}: {value!r} is not valid: {wanted}")
    return value


def _parse_aws_source(where: str, table: dict[str, Any]) -> AwsSource:
    get = _Getter(where, table, prefix="source.")
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
            raise get._fail("most_recent", "a boolean", most_recent)
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
                raise get._fail(f"ami.{region}", "an AMI id", value)
            _ami_id(where, f"source.ami.{region}", value)
        return AwsSource(ami=tuple(sorted(ami.items())))
    raise get._fail("ami", "an AMI id or a table of region = AMI id", ami)


def _ami_id(where: str, key: str, value: str) -> str:
    if not AMI_ID.match(value):
        raise DefinitionError(f"{where}: {key}: '{value}' is not an AMI id such as 'ami-0123456789abcdef0'")
    return value


def _check_aws_chain(bakes: dict[str, Bake]) -> None:
    """A service builds in each of its regions on its base's image there, so the base must
    exist wherever the service does; AMI ids given per region must cover the regions. (In
    copy mode too: a region that goes missing later is baked there alone.)"""
    for bake in bakes.values():
        if bake.aws is None:
            continue
        base = bakes[bake.base] if bake.base is not None else None
        if base is not None and base.aws is not None:
            outside = [region for region in bake.aws.regions if region not in base.aws.regions]
            if outside:
                raise DefinitionError(
                    f"bakes/{bake.name}.toml: regions: {', '.join(outside)} not in the regions of its base "
                    f"'{base.name}' ({', '.join(base.aws.regions)}); a service bakes on its base's image in each region"
                )
        source = bake.source
        if isinstance(source, AwsSource) and isinstance(source.ami, tuple):
            uncovered = [region for region in bake.aws.regions if source.ami_in(region) is None]
            if uncovered:
                raise DefinitionError(f"bakes/{bake.name}.toml: source.ami names no AMI for {', '.join(uncovered)}")
