"""The local image store under .bakehouse/: image files plus one JSON record per image.

    .bakehouse/images/<bake>/<image-id>.tar.zst     the root filesystem
    .bakehouse/records/<bake>/<image-id>.json       key, input summary, packages, base, log
    .bakehouse/records/<bake>/<image-id>.in-use     when a run found it current again, if ever
    .bakehouse/records/<bake>/<image-id>.packages   its package manifest (contents.py)

The record is written last, by an atomic rename, so an image without a record was never
finished and one with a record is complete. Paths in records are relative to .bakehouse/,
so the store can be copied or moved whole.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from ...contents import Manifest, read_manifest
from ...errors import RegistryError
from ...files import write_atomically
from ...registry import ImageRecord, newest_first, next_sequence


class LocalRegistry:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def records_dir(self, bake: str) -> Path:
        return self.state_dir / "records" / bake

    def image_path(self, bake: str, image_id: str) -> Path:
        return self.state_dir / "images" / bake / f"{image_id}.tar.zst"

    def contents_path(self, bake: str, image_id: str) -> Path:
        return self.records_dir(bake) / f"{image_id}.packages"

    def read_contents(self, bake: str, image_id: str) -> Manifest:
        return read_manifest(self.contents_path(bake, image_id), image_id)

    def artifact(self, image: ImageRecord) -> Path:
        return self.state_dir / image.locations["local"]

    def images(self, bake: str) -> list[ImageRecord]:
        found = [self._with_use(self._read(path), path) for path in self.records_dir(bake).glob("*.json")]
        complete = [image for image in found if self.artifact(image).is_file()]
        return newest_first(complete)

    def mark_in_use(self, image: ImageRecord, when: str, images: list[ImageRecord]) -> None:
        mark = {"used_at": when, "used_sequence": next_sequence(images)}
        write_atomically(self.records_dir(image.bake) / f"{image.image_id}.in-use", json.dumps(mark) + "\n")

    def _with_use(self, image: ImageRecord, record: Path) -> ImageRecord:
        """The record with its in-use mark; a damaged mark is no mark (it only orders reasons)."""
        try:
            mark = json.loads(record.with_suffix(".in-use").read_text(encoding="utf-8"))
            return replace(image, used_at=str(mark["used_at"]), used_sequence=int(mark["used_sequence"]))
        except (OSError, ValueError, KeyError, TypeError):
            return image

    def forget(self, bake: str) -> None:
        """Nothing to forget: every images() call reads the records afresh."""

    def size(self, image: ImageRecord) -> int:
        try:
            return self.artifact(image).stat().st_size
        except OSError:
            return 0

    def used_outside(self, images: list[ImageRecord]) -> dict[str, list[str]]:
        """Nothing outside bakehouse runs a local image file."""
        return {}

    def delete(self, image: ImageRecord) -> list[str]:
        """The record goes first (the image is gone from then on), then its mark, file, log."""
        record = self.records_dir(image.bake) / f"{image.image_id}.json"
        removed = []
        for path in (record, record.with_suffix(".in-use"), record.with_suffix(".packages"), self.artifact(image),
                     self._log(image.bake, image.image_id)):
            if path.exists():
                path.unlink()
                removed.append(str(path.relative_to(self.state_dir)))
        return removed

    def finish_deletions(self, bake: str) -> list[str]:
        """Image files, marks, manifests and logs whose record is gone (an interrupted delete or bake)."""
        recorded = {path.stem for path in self.records_dir(bake).glob("*.json")}
        leftovers = [
            *(self.state_dir / "images" / bake).glob("*.tar.zst"),
            *self.records_dir(bake).glob("*.in-use"),
            *self.records_dir(bake).glob("*.packages"),
        ]
        removed = []
        for path in sorted(leftovers):
            if path.name.removesuffix(".tar.zst").removesuffix(".in-use").removesuffix(".packages") not in recorded:
                path.unlink(missing_ok=True)
                removed.append(str(path.relative_to(self.state_dir)))
        return removed

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
        while (self.records_dir(bake) / f"{image_id}.json").exists() or self.image_path(bake, image_id).exists():
            n += 1
            image_id = f"{stem}-{n}"
        return image_id

    def record(self, image: ImageRecord, out: TextIO) -> None:
        payload = json.dumps(image.to_json(), indent=2, sort_keys=True) + "\n"
        write_atomically(self.records_dir(image.bake) / f"{image.image_id}.json", payload, durable=True)
