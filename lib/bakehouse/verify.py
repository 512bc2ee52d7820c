"""`doit verify`: bake an image's inputs again, elsewhere, and compare the bytes.

A local image is reproducible (docs/how-to/reproducible.md): its inputs, baked in
another directory at another time, give the same OCI manifest digest. To check it, the
repository's bakes, templates and packages are copied into a scratch repository under
`.<repository>.verify.<bake>/` beside it, which shares only the cache of downloaded package files (by sha256), and
`doit bake:NAME` bakes there: the registry is never touched. Each image of the chain is then
compared with the current image of the same bake; when they differ, the files that differ are
named (path, and whether size, mode, owner, link or content differ). The image on disk is read
as it is, not as its index says: every blob (manifest, config, each layer) is hashed against its
digest first, and one that does not match makes the image NOT reproducible, naming the blob.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .decide import Planner
from .errors import BakehouseError
from .oci.layout import LayoutError, OciImage, check_layers, image_entry, read_image
from .registry import ImageRecord

# What a scratch repository is made of: what decides an image, nothing of the registry's.
COPIED = ("bakes", "templates", "packages", "dodo.py", "bakehouse.lock")


class CannotVerify(BakehouseError):
    """An input can no longer be had, or the image to compare with does not exist."""


@dataclass(frozen=True)
class Verdict:
    bake: str
    image: str  # the registry's image
    digest: str
    rebaked: str  # the rebake's manifest digest
    differences: tuple[str, ...] = ()

    @property
    def reproducible(self) -> bool:
        return self.digest == self.rebaked and not self.differences


def current_images(planner: Planner, name: str) -> list[ImageRecord]:
    """The current image of `name` and of each bake it builds on, bases first."""
    found = []
    for step in planner.graph.chain(name):
        if step.provider != "local":
            raise CannotVerify(f"{step.name}: only local images are verified (an AMI's bytes are AWS's)")
        decision = planner.decide(step.name)
        if decision.current is None:
            raise CannotVerify(f"{step.name}: no image of its current inputs to verify "
                               f"({decision.describe()}); bake it first: doit bake:{step.name}")
        found.append(decision.current)
    return found


def scratch_repository(planner: Planner, into: Path) -> Path:
    """A copy of the repository's inputs at `into`, sharing the downloaded package files."""
    root = planner.project.root
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    for part in COPIED:
        source = root / part
        if source.is_dir():
            shutil.copytree(source, into / part, symlinks=True)
        elif source.is_file():
            shutil.copy2(source, into / part)
    debs = planner.project.state_dir / "cache" / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    (into / ".bakehouse" / "cache").mkdir(parents=True)
    (into / ".bakehouse" / "cache" / "debs").symlink_to(debs)
    return into


def rebake(scratch: Path, name: str, say: Callable[[str], None]) -> None:
    """`doit bake:NAME` in the scratch repository, saying which bake starts and ends as it
    goes (a rebake takes as long as the bakes); CannotVerify with doit's own last word."""
    say(f"{name}: rebaking it and what it builds on in {scratch}")
    output: list[str] = []
    with subprocess.Popen([sys.executable, "-m", "doit", f"bake:{name}"], cwd=scratch, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if re.match(r"\[[\w-]+\] (baking|baked) ", line):
                say(f"  {line.rstrip()}")
    text = "".join(output)
    lines = [line for line in text.splitlines() if line.strip()]
    (scratch / "rebake.log").write_text(text, encoding="utf-8")
    if process.returncode != 0:
        failed = [lines[at + 1] for at, line in enumerate(lines[:-1]) if line.startswith("TaskFailed - taskid:")]
        raise CannotVerify(f"{name}: the rebake failed: {(failed or lines or ['no output'])[-1]} "
                           f"(its log: {scratch / 'rebake.log'})")
    say(f"{name}: rebaked in {scratch}")


def verify(planner: Planner, name: str, say: Callable[[str], None]) -> list[Verdict]:
    """Rebake `name`'s chain in a scratch repository beside this one and compare each image.
    Beside it, so a path a bake file names relative to the repository (`../keys.gpg`) names
    the same file from the scratch repository."""
    images = current_images(planner, name)
    root = planner.project.root
    scratch = scratch_repository(planner, root.parent / f".{root.name}.verify.{name}")
    try:
        rebake(scratch, name, say)
        verdicts = []
        for image in images:
            layout = planner.provider_of(image.bake).registry.artifact(image)
            theirs = _rebaked_image(scratch, image.bake)
            try:  # what is on disk, not what index.json says: every blob against its digest
                mine = read_image(layout)
                check_layers(mine)
            except LayoutError as error:
                verdicts.append(Verdict(image.bake, image.image_id, _listed_digest(layout), theirs.manifest.digest,
                                        (str(error).removeprefix(f"{layout}: "),)))
                continue
            differences = () if mine.manifest.digest == theirs.manifest.digest else tuple(differ(mine, theirs))
            verdicts.append(Verdict(image.bake, image.image_id, mine.manifest.digest, theirs.manifest.digest,
                                    differences))
        return verdicts
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _listed_digest(layout: Path) -> str:
    """The image's manifest digest as index.json lists it (its blobs may say otherwise)."""
    try:
        return str(image_entry(layout)["digest"])
    except (OSError, ValueError, KeyError, TypeError):
        return "(unreadable)"


def _rebaked_image(scratch: Path, bake: str) -> OciImage:
    layouts = sorted(path for path in (scratch / ".bakehouse" / "images" / bake).glob("*") if path.is_dir())
    if not layouts:
        raise CannotVerify(f"{bake}: the rebake recorded no image")
    return read_image(layouts[-1])


Entry = tuple[int, int, int, int, str, str]  # mode, uid, gid, size, link target, content sha256


def differ(mine: OciImage, theirs: OciImage) -> list[str]:
    """What differs between two images, file by file, in the layers that differ; else where."""
    found: list[str] = []
    for at, (ours, rebaked) in enumerate(zip(mine.layers, theirs.layers)):
        if ours.diff_id == rebaked.diff_id:
            continue
        before, after = _entries(mine, ours.blob.digest), _entries(theirs, rebaked.blob.digest)
        files = [f"{path}: only in the image" if path not in after else f"{path}: only in the rebake"
                 if path not in before else f"{path}: {_how(before[path], after[path])}"
                 for path in sorted(set(before) | set(after)) if before.get(path) != after.get(path)]
        found += [f"layer {at + 1}: {line}" for line in
                  files or ["the same files, in another order or with other tar headers"]]
    if len(mine.layers) != len(theirs.layers):
        found.append(f"{len(mine.layers)} layers in the image, {len(theirs.layers)} in the rebake")
    if not found:
        found.append("the same layers; the image's config or manifest differs")
    return found


def _entries(image: OciImage, digest: str) -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    with tarfile.open(image.blob(digest), "r:gz") as tar:
        for info in tar:
            content = ""
            if info.isreg():
                stream = tar.extractfile(info)
                content = hashlib.sha256(stream.read() if stream else b"").hexdigest()
            entries[info.name.removeprefix("./")] = (info.mode, info.uid, info.gid, info.size, info.linkname, content)
    return entries


def _how(before: Entry, after: Entry) -> str:
    named = ("mode", "owner", "owner", "size", "link", "content")
    parts = []
    for what, old, new in zip(named, before, after):
        if old != new and what not in parts:
            shown = (f"{old:o} -> {new:o}" if what == "mode" else f"{old} -> {new}" if what in ("size", "link")
                     else "")
            parts.append(f"{what} {shown}".strip())
    return ", ".join(parts) + " differs"
