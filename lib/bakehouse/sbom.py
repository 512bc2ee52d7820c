"""An image's package manifest as a CycloneDX 1.6 SBOM (JSON), for security scanners.

Written with CycloneDX's own Python library (cyclonedx-python-lib), imported only when an
SBOM is asked for. The image is the BOM's subject (an operating system, named by its id);
each installed package is a component with its package URL, which scanners match advisories on:
`pkg:deb/debian/openssl@3.0.15-1~deb12u1?arch=amd64`, or on an Amazon Linux image
`pkg:rpm/amzn/openssl@1:3.0.8-1.amzn2023.0.14?arch=x86_64`.
The same image gives the same document: its serial number is derived from the image id and
its timestamp is the image's creation time, never the time of the export.

A local image carries its SBOM in its layout as an in-toto statement whose predicate is the
BOM (predicate type https://cyclonedx.org/bom, as cosign and BuildKit attach one), beside its
provenance (oci/attest.py).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from .contents import Manifest

PARTIAL_PROPERTY = "bakehouse:manifest"
PREDICATE_TYPE = "https://cyclonedx.org/bom"


def cyclonedx_json(manifest: Manifest, created: datetime, provider: str) -> str:
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    subject = Component(
        type=ComponentType.OPERATING_SYSTEM, name=manifest.image_id, bom_ref=f"image:{manifest.image_id}",
        description=f"{provider} image of the bake '{manifest.bake}', baked by bakehouse",
    )
    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"bakehouse:image:{manifest.image_id}"))
    bom.metadata.timestamp = created
    bom.metadata.component = subject
    if not manifest.complete:
        bom.metadata.properties.add(Property(name=PARTIAL_PROPERTY, value=f"partial: {manifest.note}"))
    for package in manifest.packages:
        known = package.version != "(latest)"
        qualifiers = {"arch": package.architecture} if package.architecture else {}
        if package.source:
            qualifiers["upstream"] = package.source + (f"@{package.source_version}" if package.source_version else "")
        kind, namespace = ("rpm", "amzn") if manifest.package_format == "rpm" else ("deb", "debian")
        purl = PackageURL(type=kind, namespace=namespace, name=package.name,
                          version=package.version if known else None, qualifiers=qualifiers or None)
        component = Component(
            type=ComponentType.LIBRARY, name=package.name, version=package.version if known else None,
            purl=purl, bom_ref=purl.to_string(),
        )
        bom.components.add(component)
        bom.register_dependency(subject, [component])
    return JsonV1Dot6(bom).output_as_string(indent=2) + "\n"


def cyclonedx_predicate(manifest: Manifest, created: datetime, provider: str) -> dict[str, Any]:
    """The SBOM as an in-toto statement's predicate (provenance.statement, PREDICATE_TYPE)."""
    return dict(json.loads(cyclonedx_json(manifest, created, provider)))
