"""The bake half of the local provider: template values for mmdebstrap and chroot, reading
packer's manifest into the OCI image it made, and removing what a failed bake left."""

from __future__ import annotations

import difflib
import re
import shutil
import sysconfig
from contextlib import AbstractContextManager, nullcontext
from functools import cached_property
from pathlib import Path
from typing import Any, TextIO

from ...aptrepo import MissingIndex, Repository, fetch_url, host_architecture, parse_sources
from ...epoch import now_utc
from ...errors import PackageError, PackerError
from ...files import remove_path
from ...logs import read_local_log
from ...oci.attest import attach
from ...oci.layout import EPOCH_TIME, SOURCE_DATE_EPOCH, LayoutError, read_image
from ...model import Bake
from ...project import Project
from ...publish import Publication
from ...provenance import base_descriptor, oci_subject, predicate, statement, tool_versions
from ...registry import ImageRecord, created_at
from ...sbom import PREDICATE_TYPE as SBOM_PREDICATE, cyclonedx_predicate
from .. import BakeJob, NotShared, SharedHold
from .publishing import publications as publications_of, publish as publish_to
from .registry import OLD_FORMAT, LocalRegistry
from .settings import LocalSource

HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
IMAGE_TOOL = "bakehouse-image"  # oci/tool.py, installed beside this interpreter's scripts
# The tools that make a local image, by the command that prints each one's version (provenance)
TOOLS = {"packer": ["packer", "version"], "mmdebstrap": ["mmdebstrap", "--version"], "dpkg": ["dpkg", "--version"]}
HOST_OS_RELEASE = Path("/etc/os-release")
FALLBACK_MIRROR = "http://deb.debian.org/debian"


class LocalProvider:
    name = "local"
    retries = 0

    def __init__(self, project: Project) -> None:
        self.project = project
        self.registry = LocalRegistry(project.state_dir)

    def source(self, bake: Bake, place: str) -> dict[str, Any] | None:
        source = bake.source
        if not isinstance(source, LocalSource):
            return None
        return {"suite": source.suite, "variant": source.variant, "mirror": source.mirror}

    def publications(self, bake: Bake, pointed: dict[str, ImageRecord | None]) -> list[Publication]:
        if bake.publish is None:
            return []
        return publications_of(bake, bake.publish, pointed, self.registry.facts)

    def publish(self, bake: Bake, publication: Publication) -> None:
        publish_to(bake, publication, self.registry.facts)

    def upstream(self, bake: Bake, place: str) -> dict[str, Any]:
        return self.source(bake, place) or {}

    def source_pins(self, bake: Bake) -> dict[str, str]:
        return {}  # a suite from a mirror: its packages are what a lock could pin, not an id

    def ignore_lock(self) -> None:
        pass  # nothing of a local bake's source is pinned

    def package_sources(self, bake: Bake) -> tuple[Repository, ...]:
        """The base's mirror argument as mmdebstrap reads it: a sources file, lines, or a URI."""
        source = bake.source
        if not isinstance(source, LocalSource):
            return ()
        mirror = source.mirror or host_mirror(source.suite)
        path = Path(mirror)
        if "\n" not in mirror and not mirror.startswith("deb") and "://" not in mirror:
            try:
                return parse_sources(path.read_text(encoding="utf-8"), source.suite, mirror)
            except OSError as error:
                raise PackageError(f"{bake.where}: source.mirror: cannot read {mirror}: {error.strerror}") from None
        return parse_sources(mirror, source.suite, f"{bake.where}: source.mirror")

    def preflight(self, bake: Bake) -> None:
        """A base's suite must be on its mirror: a misspelt one (`bookwrom`) is one line at plan
        time, not an mmdebstrap failure minutes in. Only a mirror's plain "no such file" (404)
        counts; a mirror that cannot be reached now is the bake's to report."""
        source = bake.source
        if not isinstance(source, LocalSource):
            return
        for repository in self.package_sources(bake):
            if repository.suite != source.suite:
                continue  # -updates, -security: they follow the suite
            if _suite_missing(repository):
                near = difflib.get_close_matches(source.suite, KNOWN_SUITES, n=1)
                raise PackageError(f"{bake.where}: source.suite: '{source.suite}' is not on the mirror {repository.url} "
                                   f"(it has no dists/{source.suite}/InRelease or Release)"
                                   + (f"; did you mean '{near[0]}'?" if near else ""))

    def before_packer(self, bake: Bake) -> None:
        pass  # what can be told is told at plan time (preflight)

    def attest(self, job: BakeJob, image: ImageRecord, out: TextIO) -> None:
        made = read_image(self._image_path(job))
        built_on = [] if job.base_image is None else [
            base_descriptor(job.base_image.image_id, self.registry.oci_image(job.base_image).manifest.digest)]
        body = predicate(self.project.root, image, job.summary, job.packages, built_on, self.architecture(job.bake),
                         now_utc(), tool_versions(TOOLS, self.project.state_dir / "cache"))
        subject = [oci_subject(job.bake.name, made.manifest.digest)]
        attach(made, statement(subject, body))
        contents = self.registry.read_contents(job.bake.name, job.image_id)
        attach(made, statement(subject, cyclonedx_predicate(contents, created_at(image), self.name), SBOM_PREDICATE))
        out.write(f"[{job.bake.name}] provenance and SBOM kept in its layout (in-toto statements about "
                  f"{made.manifest.digest}, as OCI referrers)\n")

    def os_name(self, bake: Bake) -> str:
        return bake.source.suite if isinstance(bake.source, LocalSource) else "linux"

    def places(self, bake: Bake) -> tuple[str, ...]:
        return ("local",)

    def architecture(self, bake: Bake) -> str:
        return self._host_architecture

    def package_format(self, bake: Bake) -> str:
        return "deb"  # roots made by mmdebstrap and dpkg

    @cached_property
    def _host_architecture(self) -> str:
        return host_architecture()

    def schema1(self, bake: Bake, base_image: ImageRecord | None) -> dict[str, Any]:
        source = self.source(bake, "local")
        return {
            "settings": None, "source_definition": source, "source": source,
            "base_image": None if base_image is None else {"bake": base_image.bake, "ids": {"local": base_image.image_id}},
        }

    def new_image_id(self, job_stem: str, bake: Bake) -> str:
        return self.registry.unused_id(bake.name, job_stem)

    def context(self, job: BakeJob) -> dict[str, Any]:
        source = job.bake.source
        assert source is None or isinstance(source, LocalSource)
        return {
            "image": {
                "id": job.image_id, "path": str(self._image_path(job)), "ref": job.bake.name,
                "created": job.created, "architecture": self.architecture(job.bake),
                # Every time inside the image: the same inputs give the same bytes (docs/how-to/reproducible.md,
                # "Reproducible local images"); the record keeps `created`, the real time.
                "source_date_epoch": SOURCE_DATE_EPOCH, "epoch_time": EPOCH_TIME,
            },
            "base_image": None if job.base_image is None else {
                "id": job.base_image.image_id,
                "path": str(self.registry.artifact(job.base_image)),
            },
            "image_tool": self._image_tool,
            "layer_cache": str(self.registry.layer_cache.root),
            "source": None if source is None else {
                "suite": source.suite,
                "variant": source.variant,
                "mirror": source.mirror or host_mirror(source.suite),
            },
        }

    @cached_property
    def _image_tool(self) -> str:
        """bakehouse-image where pip put this interpreter's scripts (a venv's bin/), else on PATH."""
        beside = Path(sysconfig.get_path("scripts")) / IMAGE_TOOL
        found = str(beside) if beside.is_file() else shutil.which(IMAGE_TOOL)
        if found is None:
            raise PackerError(f"{IMAGE_TOOL} is not installed beside this Python ({beside}); reinstall bakehouse")
        return found

    def made(self, job: BakeJob, manifest: dict[str, Any]) -> dict[str, str]:
        expected = self._image_path(job)
        made = [Path(item.get("name", "")) for item in manifest.get("files") or []]
        if expected not in made:
            raise PackerError(f"{job.bake.name}: packer's manifest does not name the image {expected}")
        if expected.is_file():  # a template written before local images were OCI images
            raise PackerError(f"{job.bake.name}: the template wrote a file at {expected}, not an OCI image; local "
                              "templates write one with bakehouse-image (docs/explanation/registry.md: Local images are OCI images)")
        try:
            read_image(expected)
        except LayoutError as error:
            raise PackerError(f"{job.bake.name}: the template made no OCI image: {error}") from None
        return {"local": str(expected.relative_to(self.registry.state_dir))}

    def outdated(self, bake: Bake, image: ImageRecord) -> str | None:
        if self.registry.old_format(image):
            return f"{image.image_id} is a {OLD_FORMAT} file: rebaked once as an OCI image"
        return None

    def launch(self, bake: Bake) -> str | None:
        return None  # a local image is a file: no launch permissions

    def out_of_line(self, bake: Bake, image: ImageRecord) -> str | None:
        return None

    def bring_in_line(self, bake: Bake, image: ImageRecord, out: TextIO) -> None:
        pass

    def fill(self, job: BakeJob, out: TextIO) -> dict[str, str] | None:
        return None  # one place: nothing to copy from

    def finished(self, job: BakeJob) -> dict[str, str]:
        return {}  # one place: a failed bake made nothing

    def retryable(self, job: BakeJob) -> dict[str, str]:
        return {}  # a local bake fails only on its inputs or the machine: baking again would not help

    def discard(self, job: BakeJob, out: TextIO) -> None:
        image = self._image_path(job)
        for leftover in (image, image.with_name(image.name + ".partial"), image.with_name(image.name + ".rootfs.tar")):
            remove_path(leftover)

    def log_ref(self, job: BakeJob) -> str:
        return self.project.relative(job.log)

    def keep(self, job: BakeJob, error: str | None, out: TextIO) -> None:
        pass  # the log stays where packer wrote it, on the one machine a local image is

    def read_log(self, bake: str, ref: str) -> str:
        return read_local_log(self.project, ref)

    def last_failure(self, bake: str) -> dict[str, Any] | None:
        return None

    def lock(self, bake: Bake, key: str, out: TextIO) -> AbstractContextManager[SharedHold]:
        return nullcontext(NotShared())  # a local image is this machine's: its flock suffices

    def sweep(self, bake: Bake) -> list[str]:
        """Images without a record, and partial ones: no bake of `bake` is running (its lock
        is held), so these were left by one that was killed."""
        return [self.project.relative(path) for path in self.registry.remove_unrecorded(bake.name)]

    def _image_path(self, job: BakeJob) -> Path:
        return self.registry.image_path(job.bake.name, job.image_id)


# Debian's and Ubuntu's suite names, for a did-you-mean when a mirror lacks the one asked for.
KNOWN_SUITES = ("buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid", "stable", "testing", "unstable",
                "oldstable", "oldoldstable", "experimental", "focal", "jammy", "noble", "oracular", "plucky")


def _suite_missing(repository: Repository) -> bool:
    """Whether the mirror answers 404 for both the suite's InRelease and its Release."""
    for name in ("InRelease", "Release"):
        try:
            fetch_url(f"{repository.dists}/{name}")
            return False
        except MissingIndex:
            continue
        except PackageError:
            return False  # not reachable now: not this check's to say
    return True


def host_mirror(suite: str) -> str:
    """The mirror argument for mmdebstrap when the bake names none: the host's own sources
    when they are for the same suite (so updates and security come too), else its mirror."""
    if HOST_SOURCES.is_file() and suite == _host_codename():
        return str(HOST_SOURCES)
    uris = re.findall(r"^URIs:\s*(\S+)", HOST_SOURCES.read_text(), re.M) if HOST_SOURCES.is_file() else []
    return f"deb {uris[0] if uris else FALLBACK_MIRROR} {suite} main"


def _host_codename() -> str | None:
    if not HOST_OS_RELEASE.is_file():
        return None
    match = re.search(r"^VERSION_CODENAME=(\S+)", HOST_OS_RELEASE.read_text(), re.M)
    return match.group(1) if match else None
