"""One image's OCI layout (image-spec v1.1), as bakehouse writes and reads it.

    <layout>/oci-layout            {"imageLayoutVersion": "1.0.0"}
    <layout>/index.json            one manifest, named by org.opencontainers.image.ref.name
                                   (the bake's name), and once more under the name of each
                                   channel that points at it (tag_channels)
    <layout>/blobs/sha256/<hex>    the manifest, the config and the layers (gzip tars)

A service's layout holds its base's layers as hard links to the base layout's blobs (the same
bytes, stored once) and one layer of its own. Every layout stands alone: deleting one image
never breaks another, and `skopeo`, `umoci`, `podman` and `docker` read it as it is.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BakehouseError
from ..files import sha256_bytes, sha256_file, write_atomically

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"
BASE_NAME = "org.opencontainers.image.base.name"
CREATED = "org.opencontainers.image.created"
# Every time inside a local image, as SOURCE_DATE_EPOCH (mmdebstrap, dpkg, the layers' tar
# entries, the config): the Unix epoch, as Nix and apko use, since nothing in a bake's inputs
# is a time. Two bakes of the same inputs then give the same bytes.
SOURCE_DATE_EPOCH = 0
EPOCH_TIME = "1970-01-01T00:00:00Z"
TITLE = "org.opencontainers.image.title"
CHANNEL = "dev.bakehouse.channel"  # marks an index entry that names the image by a channel
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# dpkg's architecture names -> OCI's (Go's GOARCH, and a variant where Go has one).
ARCHITECTURES = {
    "amd64": ("amd64", None), "arm64": ("arm64", "v8"), "armhf": ("arm", "v7"), "armel": ("arm", "v5"),
    "i386": ("386", None), "ppc64el": ("ppc64le", None), "s390x": ("s390x", None),
    "riscv64": ("riscv64", None), "mips64el": ("mips64le", None),
}


class LayoutError(BakehouseError):
    """An OCI layout is missing, damaged, or not one bakehouse wrote."""


@dataclass(frozen=True)
class Blob:
    digest: str  # "sha256:<hex>"
    size: int
    media_type: str

    def descriptor(self, annotations: dict[str, str] | None = None) -> dict[str, Any]:
        found: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if annotations:
            found["annotations"] = annotations
        return found


@dataclass(frozen=True)
class Layer:
    blob: Blob  # the compressed tar, as stored
    diff_id: str  # "sha256:<hex>" of the uncompressed tar, as the config lists it


@dataclass(frozen=True)
class OciImage:
    """What one layout holds: its image manifest, config and layers, bottom first."""

    layout: Path
    ref: str
    manifest: Blob
    config: dict[str, Any]
    layers: tuple[Layer, ...]

    def blob(self, digest: str) -> Path:
        return blob_path(self.layout, digest)

    @property
    def transport(self) -> str:
        """How skopeo and podman name it: oci:<layout>:<ref>."""
        return f"oci:{self.layout}:{self.ref}"


def blob_path(layout: Path, digest: str) -> Path:
    algorithm, _, hex_digest = digest.partition(":")
    if algorithm != "sha256" or len(hex_digest) != 64:
        raise LayoutError(f"{layout}: '{digest}' is not a sha256 digest")
    return layout / "blobs" / "sha256" / hex_digest


def read_blob(layout: Path, digest: str, size: int | None = None) -> bytes:
    """A blob's bytes, checked against its digest (and size, when known): LayoutError, naming
    the blob, when they do not match (a blob edited on disk, or damaged)."""
    data = blob_path(layout, digest).read_bytes()
    if f"sha256:{sha256_bytes(data)}" != digest or (size is not None and len(data) != size):
        raise LayoutError(f"{layout}: blob {digest} does not match its digest (tampered with or damaged)")
    return data


def check_blob(layout: Path, digest: str, size: int | None = None) -> None:
    """As read_blob, for a blob too large to hold (a layer): hashed in blocks."""
    path = blob_path(layout, digest)
    if f"sha256:{sha256_file(path)}" != digest or (size is not None and path.stat().st_size != size):
        raise LayoutError(f"{layout}: blob {digest} does not match its digest (tampered with or damaged)")


def image_entry(layout: Path) -> dict[str, Any]:
    """The image's entry in index.json: the image, not what refers to it (an attestation:
    attest.py). Raises OSError, ValueError, KeyError or TypeError when there is no one such entry."""
    index = _json(layout / "index.json")
    (entry,) = [m for m in index["manifests"] if m.get("mediaType") == MEDIA_MANIFEST and "artifactType" not in m
                and CHANNEL not in (m.get("annotations") or {})]
    return dict(entry)


def tag_channels(layout: Path, channels: list[str]) -> bool:
    """Name the image in index.json by each of `channels` too (so `skopeo copy
    oci:LAYOUT:stable` takes it), and by no other channel; True if index.json changed. The
    image, its manifest and its digest are untouched: only the layout's list of names moves."""
    index = _json(layout / "index.json")
    own = image_entry(layout)
    others = [m for m in index["manifests"] if CHANNEL not in (m.get("annotations") or {})]
    names = [name for name in channels if name != (own.get("annotations") or {}).get(REF_NAME)]
    tags = [{**own, "annotations": {REF_NAME: name, CHANNEL: name}} for name in names]
    if index["manifests"] == [*others, *tags]:
        return False
    index["manifests"] = [*others, *tags]
    write_atomically(layout / "index.json", json.dumps(index, sort_keys=True, separators=(",", ":")))
    return True


def read_image(layout: Path) -> OciImage:
    """The one image in `layout`; LayoutError, one line, if it is not a complete layout. Its
    manifest and config are checked against their digests (its layers, large, by check_layers)."""
    try:
        entry = image_entry(layout)
        manifest_blob = Blob(entry["digest"], int(entry["size"]), MEDIA_MANIFEST)
        manifest = json.loads(read_blob(layout, manifest_blob.digest, manifest_blob.size))
        config_digest = manifest["config"]["digest"]
        config = json.loads(read_blob(layout, config_digest))
        diff_ids = config["rootfs"]["diff_ids"]
        layers = tuple(
            Layer(Blob(item["digest"], int(item["size"]), item["mediaType"]), diff_id)
            for item, diff_id in zip(manifest["layers"], diff_ids, strict=True)
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise LayoutError(f"{layout}: not a complete OCI image layout ({type(error).__name__}: {error})") from None
    for layer in layers:
        if not blob_path(layout, layer.blob.digest).is_file():
            raise LayoutError(f"{layout}: layer {layer.blob.digest} is missing")
    ref = (entry.get("annotations") or {}).get(REF_NAME, "")
    return OciImage(layout, ref, manifest_blob, config, layers)


def check_layers(image: OciImage) -> None:
    """Every layer blob of the image is what its digest says: LayoutError naming the first that is not."""
    for layer in image.layers:
        check_blob(image.layout, layer.blob.digest, layer.blob.size)


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def put_json(layout: Path, data: dict[str, Any], media_type: str) -> Blob:
    """`data` as a blob, in a canonical form (sorted keys, no spaces): the same data, the same digest."""
    payload = json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")
    blob = Blob(f"sha256:{sha256_bytes(payload)}", len(payload), media_type)
    path = blob_path(layout, blob.digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return blob


def link_layers(base: OciImage, layout: Path) -> None:
    """The base's layer blobs in `layout`, as hard links (a copy where links cannot be made)."""
    for layer in base.layers:
        target = blob_path(layout, layer.blob.digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(base.blob(layer.blob.digest), target)
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            shutil.copyfile(base.blob(layer.blob.digest), target)


def image_config(architecture: str, created: str, layers: tuple[Layer, ...], history: list[dict[str, Any]],
                 base: OciImage | None) -> dict[str, Any]:
    """The image's config: a service keeps its base's platform and runtime settings; a base
    gets `architecture` (dpkg's name) and a shell."""
    if base is not None:
        platform = {key: base.config[key] for key in ("architecture", "os", "variant") if key in base.config}
        runtime = base.config.get("config", {})
    else:
        oci_arch, variant = ARCHITECTURES.get(architecture, (architecture, None))
        platform = {"architecture": oci_arch, "os": "linux", **({"variant": variant} if variant else {})}
        runtime = {"Env": [DEFAULT_PATH], "Cmd": ["/bin/sh"]}
    return {
        "created": created, **platform, "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [*(base.config.get("history", []) if base else []), *history],
    }


def write_image(layout: Path, ref: str, config: dict[str, Any], layers: tuple[Layer, ...],
                annotations: dict[str, str]) -> OciImage:
    """The config, manifest and index of an image whose layer blobs are already in `layout`."""
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}), encoding="utf-8")
    config_blob = put_json(layout, config, MEDIA_CONFIG)
    manifest = {
        "schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config_blob.descriptor(),
        "layers": [layer.blob.descriptor() for layer in layers], "annotations": annotations,
    }
    manifest_blob = put_json(layout, manifest, MEDIA_MANIFEST)
    index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [manifest_blob.descriptor({REF_NAME: ref})]}
    (layout / "index.json").write_text(json.dumps(index, sort_keys=True, separators=(",", ":")), encoding="utf-8")
    return OciImage(layout, ref, manifest_blob, config, layers)


def own_size(layout: Path) -> tuple[int, int]:
    """(bytes only this layout holds, bytes of all its blobs): what deleting it frees, and its
    whole size. A blob hard-linked into another layout (a base's layer) is not its own."""
    own = total = 0
    for path in (layout / "blobs" / "sha256").iterdir() if (layout / "blobs" / "sha256").is_dir() else ():
        status = path.lstat()
        total += status.st_size
        own += status.st_size if status.st_nlink == 1 else 0
    return own, total
