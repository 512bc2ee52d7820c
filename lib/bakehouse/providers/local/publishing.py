"""Publishing local images to an OCI registry (publish.py): `skopeo copy` of the image's OCI
layout to REGISTRY/NAME:CHANNEL, so `podman pull` runs what was baked, digest unchanged; the
tag's digest is read back (`skopeo inspect`) before it counts. A registry on localhost or
127.0.0.1 is spoken to without TLS (a test or a local registry); any other with TLS.

The statements kept with the image (its provenance and SBOM: OCI referrers, oci/attest.py)
are pushed too, each manifest by its own digest, unchanged, and read back: a registry with
the OCI 1.1 referrers API (distribution 3, zot, Harbor, ECR, GHCR) lists them as the image's
referrers. One without it (distribution 2.8, Debian's docker-registry) keeps them by digest
only: the referrers tag scheme's index (`sha256-<digest>`) is not written, since skopeo
rewrites an index it pushes and would drop its `artifactType`s."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ...model import Bake
from ...oci.attest import MEDIA_IN_TOTO
from ...oci.layout import REF_NAME
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
    layout = Path(source.removeprefix("oci:").rpartition(":")[0])
    for referrer in referrers(layout):
        _push_referrer(bake, publication, layout, referrer)


def referrers(layout: Path) -> list[dict[str, Any]]:
    """The index entries of what refers to the image (its statements), as its layout lists them."""
    index = json.loads((layout / "index.json").read_text(encoding="utf-8"))
    return [entry for entry in index["manifests"] if entry.get("artifactType") == MEDIA_IN_TOTO]


def _push_referrer(bake: Bake, publication: Publication, layout: Path, entry: dict[str, Any]) -> None:
    """Push one referrer manifest (and its blobs) by its digest, from a layout of its own that
    names it (skopeo copies a named manifest; the image's layout is left as it is)."""
    repository = _repository(publication.name)
    digest = str(entry["digest"])
    with tempfile.TemporaryDirectory(prefix="bakehouse-referrer-") as scratch:
        blobs = Path(scratch) / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        manifest = json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes())
        for blob in [digest, manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]:
            shutil.copyfile(layout / "blobs" / "sha256" / blob.split(":")[1], blobs / blob.split(":")[1])
        (Path(scratch) / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}', encoding="utf-8")
        named = {**entry, "annotations": {**entry.get("annotations", {}), REF_NAME: "referrer"}}
        (Path(scratch) / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [named]}), encoding="utf-8")
        said = _skopeo("copy", "--quiet", "--preserve-digests", *_tls(repository, "dest"),
                       f"oci:{scratch}:referrer", f"docker://{repository}@{digest}")
    if said.returncode != 0:
        raise PublishError(f"{bake.name}: publish {publication.target}: pushing {digest} (a statement about the "
                           f"image) failed: {_last(said)}")
    read = _skopeo("inspect", "--raw", *_tls(repository, "src"), f"docker://{repository}@{digest}")
    if read.returncode != 0 or f"sha256:{hashlib.sha256(read.stdout.encode()).hexdigest()}" != digest:
        raise PublishError(f"{bake.name}: publish {publication.target}: the registry does not hold {digest} "
                           f"(a statement about the image) after it was pushed")


def _repository(reference: str) -> str:
    """REGISTRY/NAME of REGISTRY/NAME:TAG (a registry's port is not a tag)."""
    name, _, tag = reference.rpartition(":")
    return name if name and "/" not in tag else reference


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
