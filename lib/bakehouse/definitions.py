"""Read bakes/*.toml into frozen Bake definitions and check the bake graph.

Every problem is a DefinitionError whose message names the file and the key, with a
did-you-mean for near misses, so a typo costs one line of output, never a traceback.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from .aptrepo import Repository
from .channels import DEFAULT_CHANNELS, LATEST
from .publish import PublishSpec, parse_publish
from .rpmrepo import RpmRepository
from .durations import parse_duration
from .errors import DefinitionError
from .model import DEFAULT_TIMEOUT_SECONDS, Bake, BakeGraph, ProviderSettings, ProviderSource
from .project import Project
from .providers import DEFAULT_PROVIDER, ProviderDefinition, definitions
from .retention import Policy, parse_policy
from .keyref import Key, names
from .tomlcheck import Getter, did_you_mean, reject_unknown, type_name

REBUILD_PERIODS = ("day", "week", "month")
BAKE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600  # a bake longer than a week is a mistake, and timers must hold it


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


CORE_KEY_DOCS = (
    Key(('template',), 'string',
        'required',
        'a built-in template (`local-base.pkr.hcl.j2`, `local-service.pkr.hcl.j2`, `amazon-ebs.pkr.hcl.j2`, `amazon-chroot.pkr.hcl.j2`) or a file of the repository\'s own under `templates/`, which overrides a built-in one of the same name'),
    Key(('provider',), '`"local"`, `"aws"`',
        '`"local"`',
        'where images are made and registered'),
    Key(('base',), 'string, or `{ bake = "...", channel = "..." }`',
        '',
        "the bake this image builds on (a service): its current image, or with a channel the image that channel of the base points at (`base = { bake = \"base\", channel = \"stable\" }`); excludes `[source]`"),
    Key(('source',), 'table',
        '',
        'where a base image starts; excludes `base`'),
    Key(('packages',), 'list of strings',
        '`[]`',
        'what to install: `name`, `name=version`, or a glob of `.deb` files built here (`dist/hello-svc_*.deb`); see [Bake files](bake-files.md#packages)'),
    Key(('vars',), 'table',
        '`{}`',
        "extra values handed to the template as `vars` (strings, numbers, booleans), like Spinnaker's extended attributes"),
    Key(('rebuild_every',), '`"day"`, `"week"`, `"month"`',
        'none',
        'rebake an image made before the current period began (UTC; ISO weeks from Monday), even if nothing else changed; not part of the key'),
    Key(('rebuild_when',), '`"updates"`',
        'none',
        "rebake when the image's package sources offer newer versions of packages it has (security updates); not part of the key; see [The content key](../explanation/content-key.md)"),
    Key(('repository',), 'tables',
        '',
        'Debian or RPM repositories to take packages from ([below](#repository))'),
    Key(('tests',), 'list of strings',
        '`[]`',
        'test scripts (files under `templates/`, e.g. `"scripts/check-hello.sh"`) run as root inside the finished image before anything is recorded; the first that fails fails the bake. Their contents are in the key. An `aws` bake needs `communicator = "ssh"` for them'),
    Key(('description',), 'string',
        '',
        'shown by `doit list`'),
    Key(('timeout',), '`"90s"`, `"45m"`, `"2h"`',
        '`"60m"`',
        'cancel packer after this long, like Ctrl-C, and fail the bake'),
    Key(('channels',), 'list of strings',
        '`["candidate", "stable"]`',
        "the channels `doit promote` and `doit rollback` move (lower-case names); `latest`, the newest image, is always there; not part of the key"),
    Key(('publish',), 'table',
        'none',
        "where the bake's channels are published: SSM parameters and launch templates (AMIs), an OCI registry (local images) ([below](#publish))"),
    Key(('prune',), 'table',
        'the project\'s `[prune]`',
        "this bake\'s retention for `doit prune` ([below](#prune))"),
)
CORE_KEYS = names(CORE_KEY_DOCS)
# `rebuild_when = "updates"`: rebake when the package sources offer newer versions of packages
# the image has installed (updates.py), besides any `rebuild_every` schedule.
REBUILD_TRIGGERS = ("updates",)
REPOSITORY_KEY_DOCS = (
    Key(("type",), '`"deb"`, `"rpm"`', '`"deb"`',
        "a Debian repository (the keys `url`, `suite`, `components`, `signed_by`) or an RPM one "
        "(`baseurl`, `gpgkey`), for an image of that package format"),
    Key(("url",), "string", "required (deb)", "the repository's URL, `http://` or `https://`"),
    Key(("suite",), "string", "required (deb)", "a suite or codename (`stable`, `bookworm`)"),
    Key(("components",), "list of strings", '`["main"]`', "the components to read"),
    Key(("signed_by",), "string", "required, or `trusted`",
        "a binary OpenPGP keyring in this repository (`gpg --export`); its `InRelease` (or `Release` and "
        "`Release.gpg`) is checked with `gpgv` against it"),
    Key(("baseurl",), "string", "required (rpm)",
        "the RPM repository's base URL, `http://` or `https://`: the folder that holds `repodata/`, as dnf's `baseurl`"),
    Key(("gpgkey",), "string", "required (rpm), or `trusted`",
        "an OpenPGP public key file in this repository (`gpg --armor --export`); each package's own signature "
        "is checked against it when it is downloaded, as dnf's `gpgcheck`"),
    Key(("trusted",), "boolean", "`false`", "`true` takes an unsigned repository (or unsigned RPMs); instead of `signed_by` or `gpgkey`"),
    Key(("packages",), "list of strings", "`[]`",
        "what to take from it: `name` (its newest version there) or `name=version` (for RPM: `VERSION`, "
        "`VERSION-RELEASE` or `EPOCH:VERSION-RELEASE`)"),
)
_REPOSITORY_KEYS = names(REPOSITORY_KEY_DOCS)
_DEB_ONLY = ("url", "suite", "components", "signed_by")
_RPM_ONLY = ("baseurl", "gpgkey")


def _top_keys() -> tuple[str, ...]:
    """Every key a bake file may have at its top: the core's and every provider's."""
    return CORE_KEYS + tuple(key for provider in definitions().values() for key in provider.keys)


def _parse(project: Project, where: str, name: str, path: Path, data: dict[str, Any]) -> Bake:
    reject_unknown(where, "", data, _top_keys())
    get = Getter(where, data)
    provider = definitions()[get.choice("provider", tuple(definitions()), default=DEFAULT_PROVIDER)]
    template = get.string("template")
    if template is None:
        raise DefinitionError(f"{where}: 'template' is required (a file under templates/)")
    if project.template_file(template) is None:
        raise DefinitionError(
            f"{where}: template: no template {template}, built in or under templates/"
            + did_you_mean(template, project.template_names())
        )
    base, base_channel = _parse_base(where, data.get("base"))
    channels = _parse_channels(where, data.get("channels"))
    source = _parse_source(where, data.get("source"), provider)
    if base is None and source is None:
        raise DefinitionError(f"{where}: a bake needs either 'base' (another bake) or a [source] table")
    if base is not None and source is not None:
        raise DefinitionError(f"{where}: 'base' and [source] exclude each other: a service builds on its base")
    return Bake(
        name=name,
        path=path,
        template=template,
        provider=provider.name,
        description=get.string("description") or "",
        base=base,
        source=source,
        packages=tuple(get.string_list("packages")),
        vars=tuple(sorted(get.table("vars", (str, int, float, bool)).items())),
        rebuild_every=get.choice("rebuild_every", REBUILD_PERIODS, default=None),
        timeout_seconds=_parse_duration(where, data.get("timeout")),
        repositories=_parse_repositories(project, where, data.get("repository", [])),
        settings=_parse_settings(where, data, provider),
        where=where,
        prune=_parse_prune(where, data.get("prune")),
        tests=_parse_tests(project, where, get.string_list("tests")),
        rebuild_when=get.choice("rebuild_when", REBUILD_TRIGGERS, default=None),
        channels=channels,
        base_channel=base_channel,
        publish=_parse_publish(where, data.get("publish"), channels, provider),
    )


def _parse_publish(where: str, table: Any, channels: tuple[str, ...], provider: ProviderDefinition) -> PublishSpec | None:
    spec = parse_publish(where, table, channels)
    if spec is None:
        return None
    used = {"ssm": spec.ssm is not None, "launch_templates": bool(spec.launch_templates), "registry": spec.registry is not None}
    for target, named in used.items():
        if named and target not in provider.publish_targets:
            raise DefinitionError(f"{where}: publish.{target} is not for {provider.name} images; they publish to "
                                  f"{', '.join(provider.publish_targets)}")
    return spec


def _parse_base(where: str, value: Any) -> tuple[str | None, str | None]:
    """`base = "NAME"`, or `base = { bake = "NAME", channel = "CHANNEL" }`."""
    if value is None or isinstance(value, str):
        return value, None
    if not isinstance(value, dict):
        raise DefinitionError(f"{where}: base must be a bake's name or {{ bake = ..., channel = ... }}, not {type_name(value)}")
    reject_unknown(where, "base.", value, ("bake", "channel"))
    bake, channel = value.get("bake"), value.get("channel")
    if not isinstance(bake, str) or not isinstance(channel, str):
        raise DefinitionError(f"{where}: base needs bake and channel, both strings: base = {{ bake = \"base\", channel = \"stable\" }}")
    if channel == LATEST:
        raise DefinitionError(f'{where}: base: channel latest is what base = "{bake}" means; leave the channel out')
    return bake, channel


def _parse_channels(where: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_CHANNELS
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise DefinitionError(f"{where}: channels must be a list of names, not {type_name(value)}")
    for name in value:
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,39}", name):
            raise DefinitionError(f"{where}: channels: {name!r} is not a channel name (lower-case letters, digits, '-')")
        if name == LATEST:
            raise DefinitionError(f"{where}: channels: latest is always there (the newest image); leave it out")
    if len(set(value)) != len(value):
        raise DefinitionError(f"{where}: channels: a channel is named twice")
    return tuple(value)


def _parse_tests(project: Project, where: str, tests: list[str]) -> tuple[str, ...]:
    """Test scripts, named as files under templates/ (as a template's file() names them)."""
    for test in tests:
        if project.template_file(test) is None:
            raise DefinitionError(f"{where}: tests: no file templates/{test} (test scripts live under templates/)")
    if len(set(tests)) != len(tests):
        raise DefinitionError(f"{where}: tests: a test script is named twice")
    return tuple(tests)


def _parse_prune(where: str, table: Any) -> tuple[tuple[str, Any], ...]:
    """The [prune] table, checked now (a mistake is one line before anything runs)."""
    parse_policy(where, table, Policy())
    return tuple(sorted((table or {}).items()))


def _parse_settings(where: str, data: dict[str, Any], provider: ProviderDefinition) -> ProviderSettings | None:
    """The provider's own keys; those of other providers are refused, naming their owner."""
    for other in definitions().values():
        for key in other.keys:
            if other is not provider and key in data and key not in provider.keys:
                raise DefinitionError(
                    f"{where}: {key} is only for provider = \"{other.name}\" (this bake is {provider.name})"
                )
    return provider.parse_settings(where, data)


def _parse_repositories(project: Project, where: str, tables: Any) -> tuple[Repository | RpmRepository, ...]:
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise DefinitionError(f"{where}: repository must be tables ([[repository]]), not {type_name(tables)}")
    return tuple(_parse_repository(project, where, n, table) for n, table in enumerate(tables))


def _parse_repository(project: Project, where: str, n: int, table: dict[str, Any]) -> Repository | RpmRepository:
    prefix = f"repository[{n}]."
    reject_unknown(where, prefix, table, _REPOSITORY_KEYS)
    get = Getter(where, table, prefix=prefix)
    kind = get.choice("type", ("deb", "rpm"), default="deb")
    foreign = [key for key in (_DEB_ONLY if kind == "rpm" else _RPM_ONLY) if key in table]
    if foreign:
        other = "deb" if kind == "rpm" else "rpm"
        raise DefinitionError(f'{where}: {prefix}{foreign[0]} is a key of type = "{other}" repositories; '
                              f'this one is type = "{kind}"')
    if kind == "rpm":
        return _parse_rpm_repository(project, where, prefix, get, table)
    url, suite = get.string("url"), get.string("suite")
    if url is None or not re.match(r"^https?://[^\s\"'`$]+$", url):
        raise DefinitionError(f"{where}: {prefix}url must be an http:// or https:// URL, not {url!r}")
    if suite is None or not re.match(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$", suite):
        raise DefinitionError(f"{where}: {prefix}suite must be a suite or codename such as 'stable', not {suite!r}")
    components = get.string_list("components") or ["main"]
    for component in components:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$", component):
            raise DefinitionError(f"{where}: {prefix}components: {component!r} is not a component name")
    keyring, trusted, packages = _trust_and_packages(
        project, where, prefix, get, table, "signed_by", "keyring file", "a keyring file such as keys/team.gpg")
    return Repository(url, suite, tuple(components), keyring, trusted, packages)


def _parse_rpm_repository(
    project: Project, where: str, prefix: str, get: Getter, table: dict[str, Any]
) -> RpmRepository:
    baseurl = get.string("baseurl")
    if baseurl is None or not re.match(r"^https?://[^\s\"'`$]+$", baseurl):
        raise DefinitionError(f"{where}: {prefix}baseurl must be an http:// or https:// URL "
                              f"(the folder that holds repodata/), not {baseurl!r}")
    key, trusted, packages = _trust_and_packages(
        project, where, prefix, get, table, "gpgkey", "key file", "a public key file such as keys/team.asc")
    return RpmRepository(baseurl.rstrip("/"), key, trusted, packages)


def _trust_and_packages(
    project: Project, where: str, prefix: str, get: Getter, table: dict[str, Any], key_name: str, kind: str,
    example: str,
) -> tuple[Path | None, bool, tuple[str, ...]]:
    """A repository's key file (`signed_by`, `gpgkey`) or `trusted = true`, and its packages."""
    trusted = table.get("trusted", False)
    if not isinstance(trusted, bool):
        raise DefinitionError(f"{where}: {prefix}trusted must be true or false, not {trusted!r}")
    named = get.string(key_name)
    key = None if named is None else project.root / named
    if key is not None and not key.is_file():
        raise DefinitionError(f"{where}: {prefix}{key_name}: no {kind} {named}")
    if key is None and not trusted:
        raise DefinitionError(f"{where}: {prefix[:-1]} needs {key_name} ({example}), "
                              "or trusted = true to use it without checking signatures")
    packages = get.string_list("packages")
    if not packages:
        raise DefinitionError(f"{where}: {prefix}packages: name the packages to take from this repository")
    return key, trusted, tuple(packages)


def _parse_source(where: str, table: Any, provider: ProviderDefinition) -> ProviderSource | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise DefinitionError(f"{where}: source must be a table ([source]), not {type_name(table)}")
    top_keys, source_keys = _top_keys(), provider.source_keys
    for key in table:
        if key not in source_keys and did_you_mean(key, top_keys + source_keys) == did_you_mean(key, top_keys) != "":
            raise DefinitionError(
                f"{where}: unknown key 'source.{key}'{did_you_mean(key, top_keys)[:-1]} "
                "It belongs above [source]: keys after a [table] header go into that table.)"
            )
    reject_unknown(where, "source.", table, source_keys)
    return provider.parse_source(where, table)


def _parse_duration(where: str, value: Any) -> int:
    if value is None:
        return DEFAULT_TIMEOUT_SECONDS
    seconds = int(parse_duration(f"{where}: timeout", value).total_seconds())
    if seconds == 0:
        raise DefinitionError(f"{where}: timeout: {value!r} is no time at all; give at least \"1s\"")
    if seconds > MAX_TIMEOUT_SECONDS:
        raise DefinitionError(f"{where}: timeout: {value!r} is longer than a week (168h)")
    return seconds


def _base_first(bakes: dict[str, Bake]) -> list[Bake]:
    """Order bakes so each base precedes its services; reject missing bases and cycles."""
    for bake in bakes.values():
        if bake.base is not None and bake.base not in bakes:
            raise DefinitionError(
                f"{bake.where}: base: '{bake.base}' is not a bake in bakes/"
                + did_you_mean(bake.base, bakes)
            )
        if bake.base_channel is not None and bake.base_channel not in bakes[bake.base].channels:
            raise DefinitionError(
                f"{bake.where}: base: '{bake.base}' has no channel '{bake.base_channel}'; its channels are "
                f"{', '.join(bakes[bake.base].channels)}"
            )
        if bake.base is not None and bakes[bake.base].provider != bake.provider:
            raise DefinitionError(
                f"{bake.where}: base: '{bake.base}' is a {bakes[bake.base].provider} bake, "
                f"but this one is {bake.provider}; a service builds on a base of its own provider"
            )
    for provider in definitions().values():
        provider.check_graph({name: bake for name, bake in bakes.items() if bake.provider == provider.name})
    ordered: list[Bake] = []
    for name in sorted(bakes):
        _visit(bakes, name, ordered, path=[])
    return ordered


def _visit(bakes: dict[str, Bake], name: str, ordered: list[Bake], path: list[str]) -> None:
    if bakes[name] in ordered:
        return
    if name in path:
        cycle = " -> ".join(path[path.index(name):] + [name])
        raise DefinitionError(f"{bakes[name].where}: base cycle {cycle}")
    base = bakes[name].base
    if base is not None:
        _visit(bakes, base, ordered, path + [name])
    ordered.append(bakes[name])


