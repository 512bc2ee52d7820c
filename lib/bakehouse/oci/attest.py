"""What is said about an image (its provenance, its SBOM), kept in its own OCI layout as OCI 1.1
referrers, the way BuildKit keeps its attestations.

Each in-toto statement (provenance.py's SLSA provenance; the CycloneDX SBOM, sbom.py, under
the predicate type https://cyclonedx.org/bom) is a blob of type application/vnd.in-toto+json,
the one layer of an artifact manifest whose `subject` is the image's manifest, listed in the
layout's index.json beside the image (with its `artifactType`, and no ref name, so tools that
open `oci:<layout>:<ref>` see the image alone). The image's digest never changes: its
manifest does not name what refers to it. Tools that copy referrers (`oras cp -r`,
`regctl image copy --referrers`) carry the statement along; `skopeo copy` copies the image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..files import write_atomically
from .layout import MEDIA_MANIFEST, OciImage, LayoutError, put_json, read_blob

MEDIA_IN_TOTO = "application/vnd.in-toto+json"
MEDIA_EMPTY = "application/vnd.oci.empty.v1+json"
PREDICATE_TYPE_ANNOTATION = "in-toto.io/predicate-type"


def attach(image: OciImage, statement: dict[str, Any]) -> str:
    """Keep `statement` in the image's layout as a referrer of it; its manifest's digest. A
    statement of the same predicate type that was there before is replaced."""
    layout = image.layout
    statement_blob = put_json(layout, statement, MEDIA_IN_TOTO)
    empty = put_json(layout, {}, MEDIA_EMPTY)
    predicate_type = str(statement.get("predicateType", ""))
    manifest = {
        "schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "artifactType": MEDIA_IN_TOTO,
        "config": empty.descriptor(),
        "layers": [statement_blob.descriptor({PREDICATE_TYPE_ANNOTATION: predicate_type})],
        "subject": image.manifest.descriptor(),
    }
    referrer = put_json(layout, manifest, MEDIA_MANIFEST)
    index = json.loads((layout / "index.json").read_text(encoding="utf-8"))
    others = [entry for entry in index["manifests"] if entry.get("digest") != referrer.digest
              and (entry.get("annotations") or {}).get(PREDICATE_TYPE_ANNOTATION) != predicate_type]
    entry = {**referrer.descriptor({PREDICATE_TYPE_ANNOTATION: predicate_type}), "artifactType": MEDIA_IN_TOTO}
    index["manifests"] = [*others, entry]
    write_atomically(layout / "index.json", json.dumps(index, sort_keys=True, separators=(",", ":")))
    return referrer.digest


def statements(image: OciImage) -> list[dict[str, Any]]:
    """The in-toto statements that refer to the image, as kept in its layout, each checked:
    the referrer manifest and the statement blob against their digests, and the statement's
    subject against the image's manifest digest. LayoutError, naming what does not match."""
    layout = image.layout
    found = []
    try:
        index = json.loads((layout / "index.json").read_text(encoding="utf-8"))
        for entry in index["manifests"]:
            if entry.get("artifactType") != MEDIA_IN_TOTO:
                continue
            manifest = json.loads(read_blob(layout, entry["digest"], entry.get("size")))
            if (manifest.get("subject") or {}).get("digest") != image.manifest.digest:
                continue
            for layer in manifest.get("layers", []):
                if layer.get("mediaType") == MEDIA_IN_TOTO:
                    statement = json.loads(read_blob(layout, layer["digest"], layer.get("size")))
                    _check_subject(layout, statement, image.manifest.digest)
                    found.append(statement)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise LayoutError(f"{layout}: its attestations cannot be read ({type(error).__name__}: {error})") from None
    return found


def _check_subject(layout: Path, statement: dict[str, Any], digest: str) -> None:
    algorithm, _, value = digest.partition(":")
    subjects = statement.get("subject") or []
    if not any((subject.get("digest") or {}).get(algorithm) == value for subject in subjects):
        raise LayoutError(f"{layout}: a statement kept with the image is not about it (its subject is not {digest})")
