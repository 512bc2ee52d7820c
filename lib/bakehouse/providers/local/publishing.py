"""Publishing local images to an OCI registry (publish.py): `skopeo copy` of the image's OCI
layout to REGISTRY/NAME:CHANNEL, so `podman pull` runs what was baked, digest unchanged; the
tag's digest is read back (`skopeo inspect`) before it counts. A registry on localhost or
127.0.0.1 is spoken to without TLS (a test or a local registry); any other with TLS."""

from __future__ import annotations

import subprocess
from typing import Any

from ...model import Bake
from ...publish import Publication, PublishError, PublishSpec
from ...registry import ImageRecord


def publications(bake: Bake, spec: PublishSpec, pointed: dict[str, ImageRecord | None],
                 facts: Any) -> list[Publication]:
    if spec.registry is None:
        return []
    found = []
    for channel in spec.channels:
        image = pointed[channel]
        reference = f"{spec.registry}:{channel}"
        want = None if image is None else facts(image).get("digest")
        found.append(Publication("registry", reference, "local", channel, image, want, _digest(reference)))
    return found


def publish(bake: Bake, publication: Publication, facts: Any) -> None:
    assert publication.image is not None
    source = facts(publication.image).get("oci")
    if not source:
        raise PublishError(f"{bake.name}: publish {publication.target}: {publication.image.image_id} is not an OCI layout")
    said = _skopeo("copy", "--quiet", *_tls(publication.name, "dest"), source, f"docker://{publication.name}")
    if said.returncode != 0:
        raise PublishError(f"{bake.name}: publish {publication.target}: skopeo copy failed: {_last(said)}")
    held = _digest(publication.name)
    if held != publication.want:
        raise PublishError(f"{bake.name}: publish {publication.target}: the registry holds {held} after "
                           f"{publication.want} was pushed")


def _digest(reference: str) -> str | None:
    said = _skopeo("inspect", *_tls(reference, "src"), "--format", "{{.Digest}}", f"docker://{reference}")
    if said.returncode != 0:
        if "manifest unknown" in said.stderr or "name unknown" in said.stderr:
            return None  # not pushed yet
        raise PublishError(f"cannot read {reference} from its registry: {_last(said)}")
    return said.stdout.strip() or None


def _tls(reference: str, side: str) -> list[str]:
    host = reference.split("/", 1)[0].split(":", 1)[0]
    if host not in ("localhost", "127.0.0.1"):
        return []
    return [f"--{side}-tls-verify=false"] if side == "dest" else ["--tls-verify=false"]


def _skopeo(*argv: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["skopeo", *argv], capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise PublishError("skopeo is not installed (Debian: apt-get install skopeo)") from None


def _last(said: subprocess.CompletedProcess[str]) -> str:
    lines = (said.stderr or said.stdout).strip().splitlines()
    return lines[-1][:300] if lines else f"exit {said.returncode}"
