"""What an image was made from, as an in-toto statement with the SLSA provenance v1 predicate.

The statement names the image by its digest (the subject) and lists everything that went into
its content key: the bake's definition and the key itself (buildDefinition.externalParameters
and internalParameters), each file its template used, each package with its version and
SHA256, the source and the base image (resolvedDependencies), the repository's commit when it
is a git checkout, and the versions of the tools that made it (runDetails.builder.version).
The provider keeps it with the image: a local image's in its OCI layout (oci/attest.py), an
AMI's beside its log and manifest, its SHA256 in the AMI's tags (providers/aws/provider.py).

An AMI has no digest of its bytes (AWS holds them), so its subject is named by its id, under
a digest algorithm of bakehouse's own, as in-toto's DigestSet allows for an identifier whose
immutability the platform ensures:

    awsAmiId   the AMI's id as EC2 writes it (`ami-` and 8 or 17 lowercase hex digits); EC2
               never reuses an id, and an AMI's block devices cannot change once it is
               registered, so the id names one image's contents for as long as it exists.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from packageurl import PackageURL

from . import __version__
from .files import sha256_file, write_atomically
from .fingerprint import Summary
from .packages import ResolvedPackage
from .project import Project
from .registry import ImageRecord, created_at

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:bakehouse:bake:v1"  # what buildDefinition means: a bake, decided by its content key


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


AMI_DIGEST = "awsAmiId"


def ami_descriptor(name: str, region: str, ami: str) -> dict[str, Any]:
    """An AMI as an in-toto resource descriptor: by its ARN (AMIs have no account in it) and id."""
    return {"name": name, "uri": f"arn:aws:ec2:{region}::image/{ami}", "digest": {AMI_DIGEST: ami}}


def base_descriptor(base_image: str, oci_digest: str) -> dict[str, Any]:
    """The local base image a service was baked on, by its bakehouse id and manifest digest."""
    return {"name": f"base image {base_image}", "uri": f"urn:bakehouse:image:{base_image}",
            "digest": {"sha256": oci_digest.removeprefix("sha256:")}}


def predicate(root: Path, image: ImageRecord, summary: Summary, packages: tuple[ResolvedPackage, ...],
              built_on: list[dict[str, Any]], architecture: str, finished: datetime,
              tools: dict[str, str], package_format: str = "deb") -> dict[str, Any]:
    """The SLSA provenance v1 predicate of `image`, made from `summary` (its key's inputs), the
    packages installed (each named by the SHA256 of its .deb where there is one) and what the
    provider says the image was built on (`built_on`: its base image, a source AMI per region)."""
    project = Project.at(root)
    dependencies: list[dict[str, Any]] = [  # a built-in file is named by the package that brought it
        {"name": f"templates/{path}", "digest": {"sha256": digest},
         "uri": f"pkg:pypi/bakehouse@{__version__}#templates/{path}" if project.built_in(path) else f"file:templates/{path}"}
        for path, digest in sorted((summary.get("files") or {}).items())
    ]
    for package in packages:
        kind, namespace = ("rpm", "amzn") if package_format == "rpm" else ("deb", "debian")
        purl = PackageURL(type=kind, namespace=namespace, name=package.name, version=package.version,
                          qualifiers={"arch": architecture})
        entry: dict[str, Any] = {"name": package.name, "uri": purl.to_string(),
                                 "annotations": {"origin": package.origin}}
        if package.path is not None and package.path.is_file():
            entry["digest"] = {"sha256": sha256_file(package.path)}
        elif package.sha256:
            entry["digest"] = {"sha256": package.sha256}
        if package.url:
            entry["downloadLocation"] = package.url
        dependencies.append(entry)
    if summary.get("source"):
        dependencies.append({"name": "source", "uri": f"urn:bakehouse:source:{image.provider}",
                             "annotations": summary["source"]})
    dependencies.extend(built_on)
    commit = git_commit(root)
    if commit is not None:
        dependencies.append({"name": "repository", "uri": "git+file:.", "digest": {"gitCommit": commit[0]},
                             "annotations": {"dirty": commit[1]}})
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {"bake": image.bake, "definition": summary.get("definition")},
            "internalParameters": {"key": image.key, "keySchema": summary.get("schema"),
                                   "provider": image.provider, "architecture": architecture},
            "resolvedDependencies": dependencies,
        },
        "runDetails": {
            "builder": {"id": f"urn:bakehouse:builder:{image.provider}", "version": tools},
            "metadata": {"invocationId": image.image_id, "startedOn": rfc3339(created_at(image)),
                         "finishedOn": rfc3339(finished)},
        },
    }


def statement(subjects: list[dict[str, Any]], predicate_body: dict[str, Any],
              predicate_type: str = PREDICATE_TYPE) -> dict[str, Any]:
    """The in-toto statement about `subjects` (resource descriptors, each with a digest)."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": predicate_type,
        "predicate": predicate_body,
    }


def statement_bytes(found: dict[str, Any]) -> bytes:
    """A statement as it is kept in a file of its own: the bytes its SHA256 is taken of."""
    return (json.dumps(found, indent=2, sort_keys=True) + "\n").encode("utf-8")


def oci_subject(name: str, digest: str) -> dict[str, Any]:
    return {"name": name, "digest": {"sha256": digest.removeprefix("sha256:")}}


def git_commit(root: Path) -> tuple[str, bool] | None:
    """(HEAD's commit, whether the checkout has changes) when `root` is a git checkout."""
    if shutil.which("git") is None or not (root / ".git").exists():
        return None
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return None
    status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                            capture_output=True, text=True)
    return head.stdout.strip(), bool(status.stdout.strip())


def tool_versions(tools: dict[str, list[str]], cache_dir: Path | None = None) -> dict[str, str]:
    """The first line each tool prints of its version; bakehouse's own from its package.
    Asking costs about 0.4 s for three tools, so answers are kept in `cache_dir`, by each
    binary's path, size and modification time (a new version is asked again)."""
    cache = None if cache_dir is None else cache_dir / "tool-versions.json"
    try:
        known: dict[str, str] = json.loads(cache.read_text()) if cache is not None and cache.is_file() else {}
    except (OSError, ValueError):
        known = {}
    found = {"bakehouse": __version__}
    for name, command in tools.items():
        binary = shutil.which(command[0])
        if binary is None:
            found[name] = "not installed"
            continue
        status = os.stat(binary)
        identity = f"{os.path.realpath(binary)}:{status.st_size}:{status.st_mtime_ns}:{' '.join(command[1:])}"
        if identity not in known:
            try:
                run = subprocess.run(command, capture_output=True, text=True, timeout=30)
                known[identity] = (run.stdout.strip().splitlines() or ["unknown"])[0]
            except (OSError, subprocess.TimeoutExpired):
                known[identity] = "unknown"
            if cache is not None:
                try:
                    write_atomically(cache, json.dumps(known, indent=1, sort_keys=True))
                except OSError:
                    pass  # only a cache
        found[name] = known[identity]
    return found
