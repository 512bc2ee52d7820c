"""The local image store under .bakehouse/: OCI images plus one JSON record per image.

    .bakehouse/images/<bake>/<image-id>/            the image: an OCI layout (oci/layout.py)
    .bakehouse/records/<bake>/<image-id>.json       key, input summary, packages, base, log
    .bakehouse/records/<bake>/<image-id>.in-use     when a run found it current again, if ever
    .bakehouse/records/<bake>/<image-id>.revoked    its revocation, if it is revoked (revocation.py)
    .bakehouse/records/<bake>/<image-id>.packages   its package manifest (contents.py)

    .bakehouse/cache/layers/<diff-id>/              layers unpacked for service bakes (oci/cache.py)
    .bakehouse/channels/<bake>.json                 its channels' moves (channels.py); each
                                                    layout is also tagged with its channels

The record is written last, by an atomic rename, so an image without a record was never
finished and one with a record is complete. Paths in records are relative to .bakehouse/,
so the store can be copied or moved whole.

Images baked before images were OCI layouts are single `.tar.zst` files; they are still
listed, compared and pruned, and their bakes rebake them once as OCI images (`outdated`).
"""

from __future__ import annotations

import fcntl
from datetime import datetime
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from ...channels import ChannelMove, channels_on
from ...contents import Manifest, read_manifest
from ...errors import RegistryError
from ...files import remove_path, write_atomically
from ...oci.attest import statements
from ...oci.cache import LayerCache
from ...oci.layout import LayoutError, OciImage, own_size, read_image, tag_channels
from ...registry import ImageRecord, newest_first, next_sequence
from ...revocation import Revocation

OLD_FORMAT = ".tar.zst"
LEFTOVER_SUFFIXES = (".partial", ".rootfs.tar", ".partial.tar.zst", OLD_FORMAT)


class LocalRegistry:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def records_dir(self, bake: str) -> Path:
        return self.state_dir / "records" / bake

    def image_path(self, bake: str, image_id: str) -> Path:
        return self.state_dir / "images" / bake / image_id

    @property
    def layer_cache(self) -> LayerCache:
        return LayerCache(self.state_dir / "cache" / "layers")

    def contents_path(self, bake: str, image_id: str) -> Path:
        return self.records_dir(bake) / f"{image_id}.packages"

    def read_contents(self, bake: str, image_id: str) -> Manifest:
        return read_manifest(self.contents_path(bake, image_id), image_id)

    def artifact(self, image: ImageRecord) -> Path:
        return self.state_dir / image.locations["local"]

    def old_format(self, image: ImageRecord) -> bool:
        return image.locations["local"].endswith(OLD_FORMAT)

    def oci_image(self, image: ImageRecord) -> OciImage:
        """The image's OCI layout; RegistryError for an image in the old format."""
        if self.old_format(image):
            raise RegistryError(f"{image.image_id} is a {OLD_FORMAT} file, from before images were OCI layouts; "
                                f"rebake it: doit bake:{image.bake}")
        return read_image(self.artifact(image))

    def images(self, bake: str) -> list[ImageRecord]:
        found = [self._with_use(self._read(path), path) for path in self.records_dir(bake).glob("*.json")]
        return newest_first(image for image in found if self._complete(image))

    def _complete(self, image: ImageRecord) -> bool:
        path = self.artifact(image)
        return path.is_file() if self.old_format(image) else (path / "index.json").is_file()

    def mark_in_use(self, image: ImageRecord, when: str, images: list[ImageRecord]) -> None:
        mark = {"used_at": when, "used_sequence": next_sequence(images)}
        write_atomically(self.records_dir(image.bake) / f"{image.image_id}.in-use", json.dumps(mark) + "\n")

    def _with_use(self, image: ImageRecord, record: Path) -> ImageRecord:
        """The record with its in-use mark (a damaged mark is no mark: it only orders reasons)
        and its revocation (a damaged one is a RegistryError: it keeps an image out of use)."""
        try:
            mark = json.loads(record.with_suffix(".in-use").read_text(encoding="utf-8"))
            image = replace(image, used_at=str(mark["used_at"]), used_sequence=int(mark["used_sequence"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
        revoked = record.with_suffix(".revoked")
        try:
            return replace(image, revoked=Revocation.from_json(json.loads(revoked.read_text(encoding="utf-8"))))
        except FileNotFoundError:
            return image
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise RegistryError(f"{revoked}: not a revocation ({type(error).__name__}: {error}); "
                                f"mend it or revoke the image again") from None

    def revoke(self, image: ImageRecord, revocation: Revocation | None, now: datetime) -> list[str]:
        path = self.records_dir(image.bake) / f"{image.image_id}.revoked"
        if revocation is None:
            path.unlink(missing_ok=True)
        else:
            write_atomically(path, json.dumps(revocation.to_json(), indent=1) + "\n", durable=True)
        return []

    def forget(self, bake: str) -> None:
        """Nothing to forget: every images() call reads the records afresh."""

    def size(self, image: ImageRecord) -> int:
        """What deleting it frees: its file, or the blobs of its layout no other image holds."""
        try:
            path = self.artifact(image)
            return path.stat().st_size if self.old_format(image) else own_size(path)[0]
        except OSError:
            return 0

    def freed(self, images: list[ImageRecord]) -> int:
        """A blob is a file hard-linked into every layout that holds it (a base's layer is in
        each service's): its bytes are freed when every one of its links is deleted."""
        links: dict[tuple[int, int], list[int]] = {}  # (device, inode) -> [size, links in all, links deleted]
        for image in images:
            try:
                path = self.artifact(image)
                files = [path] if path.is_file() else [found for found in path.rglob("*") if found.is_file()]
                for file in files:
                    status = file.lstat()
                    entry = links.setdefault((status.st_dev, status.st_ino), [status.st_size, status.st_nlink, 0])
                    entry[2] += 1
            except OSError:
                continue  # gone meanwhile: frees nothing
        return sum(size for size, nlink, deleted in links.values() if deleted >= nlink)

    def attestations(self, image: ImageRecord) -> list[dict[str, Any]]:
        try:
            return statements(self.oci_image(image))
        except RegistryError:
            return []  # an old-format file: nothing kept with it

    def facts(self, image: ImageRecord) -> dict[str, Any]:
        """Its OCI digest, layers and sizes, for `doit images`; {} for an old-format file."""
        try:
            oci = self.oci_image(image)
        except (RegistryError, LayoutError):
            return {}
        own, total = own_size(oci.layout)
        return {"digest": oci.manifest.digest, "layers": len(oci.layers), "own_bytes": own,
                "shared_bytes": total - own, "total_bytes": total, "oci": oci.transport}

    def used_outside(self, images: list[ImageRecord]) -> dict[str, list[str]]:
        """Nothing outside bakehouse runs a local image file."""
        return {}

    def delete(self, image: ImageRecord) -> list[str]:
        """The record goes first (the image is gone from then on), then its mark, file, log."""
        record = self.records_dir(image.bake) / f"{image.image_id}.json"
        removed = []
        for path in (record, record.with_suffix(".in-use"), record.with_suffix(".packages"), record.with_suffix(".revoked"),
                     self.artifact(image),
                     self._log(image.bake, image.image_id)):
            if path.exists():
                remove_path(path)
                removed.append(str(path.relative_to(self.state_dir)))
        return removed

    def finish_deletions(self, bake: str) -> list[str]:
        """Images, marks and manifests whose record is gone (an interrupted delete or bake)."""
        marks = self._unrecorded(bake, [*self.records_dir(bake).glob("*.in-use"), *self.records_dir(bake).glob("*.packages"),
                                         *self.records_dir(bake).glob("*.revoked")])
        for path in marks:
            remove_path(path)
        return sorted(str(path.relative_to(self.state_dir)) for path in [*self.remove_unrecorded(bake), *marks])

    def remove_unrecorded(self, bake: str) -> list[Path]:
        """Remove what `images/<bake>/` holds of no recorded image (layouts, partial ones,
        old files): left by a bake or a delete that was stopped. Returns what it removed."""
        folder = self.state_dir / "images" / bake
        found = self._unrecorded(bake, list(folder.iterdir()) if folder.is_dir() else [])
        for path in found:
            remove_path(path)
        return found

    def _unrecorded(self, bake: str, paths: list[Path]) -> list[Path]:
        recorded = {path.stem for path in self.records_dir(bake).glob("*.json")}
        return sorted(path for path in paths if _image_id(path.name) not in recorded)

    def clean_caches(self) -> list[str]:
        """Unpacked layers of the cache that no image has any more (none while a bake mounts)."""
        return [f"cache/layers/{name}" for name in self.layer_cache.clean(self._layers_in_use()) or ()]

    def _layers_in_use(self) -> set[str]:
        """The diff ids of every layer of every recorded image, of every bake."""
        found: set[str] = set()
        for record in (self.state_dir / "records").glob("*/*.json"):
            try:
                found.update(layer.diff_id for layer in self.oci_image(self._read(record)).layers)
            except (RegistryError, LayoutError):
                continue
        return found

    def _old_path(self, bake: str, image_id: str) -> Path:
        return self.state_dir / "images" / bake / f"{image_id}{OLD_FORMAT}"

    def _log(self, bake: str, image_id: str) -> Path:
        return self.state_dir / "logs" / bake / f"{image_id}.log"

    def _read(self, path: Path) -> ImageRecord:
        try:
            record = ImageRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
            if not isinstance(record.locations.get("local"), str):
                raise KeyError("locations.local")
            return record
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise RegistryError(
                f"{path}: corrupt image record ({type(error).__name__}: {error}); "
                "delete it to forget that image"
            ) from None

    def unused_id(self, bake: str, stem: str) -> str:
        image_id, n = stem, 1
        while (self.records_dir(bake) / f"{image_id}.json").exists() or any(
                path.exists() for path in (self.image_path(bake, image_id), self._old_path(bake, image_id))):
            n += 1
            image_id = f"{stem}-{n}"
        return image_id

    def record(self, image: ImageRecord, out: TextIO) -> None:
        payload = json.dumps(image.to_json(), indent=2, sort_keys=True) + "\n"
        write_atomically(self.records_dir(image.bake) / f"{image.image_id}.json", payload, durable=True)

    def settle(self, image: ImageRecord, out: TextIO) -> None:
        pass  # a record on this machine shows at once

    def _channels_file(self, bake: str) -> Path:
        return self.state_dir / "channels" / f"{bake}.json"

    def channel_moves(self, bake: str) -> list[ChannelMove]:
        """Every move of `bake`'s channels, oldest first (.bakehouse/channels/BAKE.json)."""
        path = self._channels_file(bake)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return [ChannelMove.from_json(move) for move in data["moves"]]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise RegistryError(f"{path}: not a channel history ({error}); restore it from a backup") from None

    def add_channel_move(self, bake: str, move: ChannelMove, seen: int) -> bool:
        """Record `move` if the history still holds the `seen` moves read before it (under a
        lock of the history's own: read, compare, write is one step)."""
        path = self._channels_file(bake)
        path.parent.mkdir(parents=True, exist_ok=True)
        with (path.parent / f"{bake}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            moves = self.channel_moves(bake)
            if len(moves) != seen:
                return False
            body = {"moves": [known.to_json() for known in [*moves, move]]}
            write_atomically(path, json.dumps(body, indent=1) + "\n", durable=True)
            self._tag_layouts(bake, [*moves, move])
            return True

    def _tag_layouts(self, bake: str, moves: list[ChannelMove]) -> None:
        """Each image's OCI layout is named by the channels that point at it (and no others),
        so `skopeo copy oci:.bakehouse/images/BAKE/ID:stable` and `podman` see the channel too.
        A mark for other tools: the history is the truth (a layout that cannot be written is
        left as it was)."""
        names = tuple(dict.fromkeys(known.channel for known in moves))
        for image in self.images(bake):
            if not self.old_format(image):
                try:
                    tag_channels(self.artifact(image), channels_on(moves, image.image_id, names))
                except (OSError, ValueError, KeyError, TypeError):
                    continue


def _image_id(name: str) -> str:
    """The image id a file or directory of the store belongs to (its layout, or a leftover)."""
    for suffix in LEFTOVER_SUFFIXES + (".in-use", ".packages", ".revoked"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
