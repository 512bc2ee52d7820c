"""Run one bake: render the template, run packer, read the manifest, record the image.

Nothing is recorded unless every step succeeded; whatever a failed or cancelled bake left
behind is removed, and the next run simply tries again.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TextIO

from . import __version__, packer, scratch
from .aptrepo import download
from .rpmrepo import RPM_ARCHITECTURES, check_signature
from .contents import ContentsError, Manifest, parse_dpkg_query, partial_manifest, write_manifest
from .context import template_context
from .decide import Decision, Planner
from .epoch import now_utc
from .errors import BakehouseError, PackageError, PackerError, RecordedError
from .files import write_atomically
from .interrupts import JOURNAL, deferred
from .pins import LOCK_FILE
from .progress import steps_of
from .locks import bake_lock, note_base, note_log
from .logs import failure_note, write_failure
from .providers import BakeJob, NotShared, Provider, SharedHold
from .registry import ImageRecord, next_sequence, timestamp


def bake_image(planner: Planner, name: str, forced: bool, out: TextIO) -> list[ImageRecord]:
    """Bake `name` unless an image of its current inputs exists (or `forced`): in each group
    of places built from the same things, one image (decide.py; almost always one group)."""
    decision = planner.decide(name, forced)
    if any(_predates_its_base(part) for part in decision.each()):
        # doit runs a bake after what it builds on; when that ran in another process
        # (`doit -n`), what this process knows of those images predates it (a base not
        # baked yet, or not yet in every place this bake needs it): ask again.
        for ancestor in planner.graph.chain(name)[:-1]:
            planner.forget(ancestor.name)
        decision = planner.decide(name, forced)
    split = len(decision.parts) > 1
    return [_bake_part(planner, part, forced, split, out) for part in decision.each()]


def _predates_its_base(decision: Decision) -> bool:
    base = decision.base_image
    return decision.key is None or (base is not None and not set(decision.places) <= set(base.locations))


def _bake_part(planner: Planner, decision: Decision, forced: bool, split: bool, out: TextIO) -> ImageRecord:
    name = decision.bake.name
    where = f" in {', '.join(decision.places)}" if split else ""
    if decision.up_to_date and decision.current is not None:
        out.write(f"[{name}] up to date{where}: {decision.current.image_id}\n")
        if decision.relaunch:
            planner.provider_of(name).bring_in_line(decision.bake, decision.current, out)
        return decision.current
    provider = planner.provider_of(name)
    with bake_lock(planner.project.state_dir / "locks", name, out) as held, \
            provider.lock(decision.bake, decision.key or "(no key yet)", out) as shared:
        if held.waited or shared.waited or not isinstance(shared, NotShared):
            # Whoever held the lock may have baked exactly this image meanwhile (on another
            # runner, it may have finished just before we asked: always look again): reuse
            # it, unless this is a forced rebake: that bake began before this request was
            # made (it held the lock when we asked), so it cannot answer it. No clock is compared.
            planner.forget(name)
            decision = planner.decide(name, forced).part_at(decision.places[0])
            if decision.up_to_date and decision.current is not None:
                by = "the run we waited for" if held.waited or shared.waited else "another runner, just before"
                out.write(f"[{name}] up to date{where}: {decision.current.image_id} (baked by {by})\n")
                return decision.current
        return _bake_locked(planner, decision, held.fd, shared, where, out)


def _bake_locked(
    planner: Planner, decision: Decision, lock_fd: int, shared: SharedHold, where: str, out: TextIO
) -> ImageRecord:
    name = decision.bake.name
    if decision.key is None or decision.summary is None:
        base = decision.bake.base
        raise BakehouseError(f"{name}: its base '{base}' has no current image; bake it first: doit bake:{base}")
    provider = planner.provider_of(name)
    provider.before_packer(decision.bake)  # what would make packer fail or hang, in one line first
    for leftover in provider.sweep(decision.bake):
        out.write(f"[{name}] removed {leftover}, left by a bake that never finished\n")
    for cleared in scratch.sweep(planner.project.root, name):  # a killed run's scratch, mounts and all
        mounts = f" and unmounted {cleared.unmounted} mounts in it" if cleared.unmounted else ""
        out.write(f"[{name}] removed {cleared.path}{mounts}, left by a bake that never finished\n")
    job = _job(planner, provider, decision, now_utc())
    note_log(lock_fd, job.log)  # `doit serve` shows a bake started anywhere, with its log
    if job.base_image is not None:  # a prune keeps what a running bake builds on, here and on other runners
        note_base(lock_fd, job.base_image.image_id)
        shared.note_base(job.base_image.image_id)
    out.write(f"[{name}] baking {job.image_id}{where}: {'; '.join(decision.reasons)}\n")
    JOURNAL.baking = name
    try:
        image = _run(planner, provider, decision, job, lock_fd, shared, out)
    except BaseException as failure:
        if not isinstance(failure, KeyboardInterrupt):
            JOURNAL.baking = None  # failed, not interrupted: the run goes on to what else it can
        try:
            provider.discard(job, out)
        except BakehouseError as error:  # the bake's own failure is the one to report
            out.write(f"[{name}] could not remove what the failed bake left: {error}\n")
        error_text = str(failure) or type(failure).__name__
        try:  # for `doit log --failed`: here, and where every runner reads it
            if not job.log.is_file():  # it failed before packer ran: its log says why, not nothing
                write_atomically(job.log, f"{job.bake.name}: the bake of {job.image_id} failed before packer ran: "
                                          f"{error_text}\n")
            write_failure(planner.project, name, failure_note(job.image_id, provider.log_ref(job), error_text))
            provider.keep(job, error_text, out)
        except (BakehouseError, OSError) as error:
            out.write(f"[{name}] could not keep the failed bake's log: {error}\n")
        raise
    # The image counts from here on: nothing below removes it, whatever fails or arrives.
    provider.registry.settle(image, out)
    if provider.out_of_line(decision.bake, image):
        # Shared as the bake says once it counts; if sharing fails, the bake fails but the
        # image stays (it is whole) and the next run shares it (`doit plan` says so).
        provider.bring_in_line(decision.bake, image, out)
    out.write(f"[{name}] baked {image.image_id} ({', '.join(f'{k}: {v}' for k, v in image.locations.items())})\n")
    return image


def _job(planner: Planner, provider: Provider, decision: Decision, now: datetime) -> BakeJob:
    bake = decision.bake
    assert decision.key is not None
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    if decision.partial is not None:
        # Completing an image: its new places join it, and it keeps its time and place in order.
        image_id, sequence = decision.partial.image_id, decision.partial.sequence
        created = decision.partial.created
    else:
        image_id = provider.new_image_id(f"{bake.name}-{stamp}-{decision.key[:8]}", bake)
        sequence, created = next_sequence(provider.registry.images(bake.name)), timestamp(now)
    work = planner.project.build_dir / bake.name
    return BakeJob(
        bake=bake,
        key=decision.key,
        image_id=image_id,
        created=created,
        sequence=sequence,
        base_image=decision.base_image,
        manifest=work / f"{image_id}.manifest.json",
        contents=work / f"{image_id}.packages.tsv",
        log=planner.project.logs_dir / bake.name / f"{image_id}.log",
        places=decision.missing or decision.places,
        extends=decision.partial,
        summary=decision.summary or {},
        packages=decision.packages,
    )


def _build(
    planner: Planner, provider: Provider, decision: Decision, job: BakeJob, lock_fd: int, out: TextIO
) -> dict[str, str]:
    """Render the template and run packer for the job's places. A place whose build failed on
    a transient error of the platform (provider.retryable: throttling, a 5xx) is baked again,
    alone, up to provider.retries times; the places that finished stay made."""
    made: dict[str, str] = {}
    attempts, attempt = 1 + provider.retries, 1
    while True:
        this = replace(job, places=tuple(place for place in job.places if place not in made))
        try:
            _packer(planner, provider, decision, this, lock_fd, out, retry=attempt > 1)
            return {**made, **provider.made(this, packer.read_manifest(job.manifest, job.bake.name))}
        except packer.TimedOut:
            raise
        except PackerError:
            made.update(provider.finished(this))
            failed = [place for place in this.places if place not in made]
            transient = provider.retryable(this)
            if attempt == attempts or not failed or any(place not in transient for place in failed):
                raise
        attempt += 1
        by_cause: dict[str, list[str]] = {}
        for place in failed:
            by_cause.setdefault(transient[place], []).append(place)
        causes = "; ".join(f"{', '.join(places)} failed on {cause}" for cause, places in by_cause.items())
        out.write(f"[{job.bake.name}] {causes}; retrying ({attempt}/{attempts})\n")
        out.flush()


def _packer(
    planner: Planner, provider: Provider, decision: Decision, job: BakeJob, lock_fd: int, out: TextIO, retry: bool
) -> None:
    context = template_context(decision.bake, decision.packages, job, provider, planner.project.state_dir / "cache")
    rendered = planner.templates.render(decision.bake.template, context)
    template_path = job.manifest.parent / f"{job.key}.pkr.hcl"
    template_path.parent.mkdir(parents=True, exist_ok=True)
    template_path.write_text(rendered, encoding="utf-8")
    packer.build(
        packer.PackerRun(
            label=job.bake.name, template=template_path, log_path=job.log,
            timeout_seconds=job.bake.timeout_seconds, inherit_fds=(lock_fd,), append_log=retry,
            scratch=scratch.new_run(planner.project.root, job.bake.name), steps=steps_of(decision.bake.template),
        ),
        out,
    )


def _run(
    planner: Planner, provider: Provider, decision: Decision, job: BakeJob, lock_fd: int, shared: SharedHold,
    out: TextIO,
) -> ImageRecord:
    assert decision.summary is not None
    for package in decision.packages:
        if package.url is not None and package.sha256 is not None:
            if package.path is None or not package.path.is_file():
                out.write(f"[{job.bake.name}] fetching {package.name} {package.version} from {package.url}\n")
            try:
                fetched = download(package.url, package.sha256, planner.project.state_dir / "cache" / "debs")
            except PackageError as error:
                if package.origin != "locked":
                    raise
                raise PackageError(f"{job.bake.name}: {package.name} {package.version}, pinned by {LOCK_FILE}, can no "
                                   f"longer be had ({error}); plan again to move the pin: doit plan --lock") from None
            if package.signed_by is not None:  # an RPM repository's gpgkey, checked as dnf's gpgcheck
                check_signature(fetched, package.signed_by, f"{job.bake.name}: {package.name} {package.version}",
                                planner.project.relative(package.signed_by))
        if package.path is not None and not package.path.is_file():
            shown = planner.project.relative(package.path)
            raise BakehouseError(f"{job.bake.name}: {shown} is not built; run: doit package:{package.name}")
    job.manifest.unlink(missing_ok=True)
    job.contents.unlink(missing_ok=True)
    made = provider.fill(job, out) if job.extends is not None else None
    if made is None:
        made = _build(planner, provider, decision, job, lock_fd, out)
    contents = provider.registry.contents_path(job.bake.name, job.image_id)
    copied = job.extends is not None and not job.contents.is_file()  # AMIs copied: nothing listed
    if not (copied and contents.is_file()):  # a copy keeps the image's manifest as recorded
        write_manifest(contents, _manifest(planner, provider, decision, job, out))
    locations = made if job.extends is None else {**job.extends.locations, **made}
    image = ImageRecord(
        image_id=job.image_id,
        bake=job.bake.name,
        key=job.key,
        created=job.created,
        sequence=job.sequence,
        provider=provider.name,
        locations=locations,
        base_image=None if job.base_image is None else job.base_image.image_id,
        packages={package.name: package.version for package in decision.packages},
        summary=decision.summary,
        log=provider.log_ref(job),
        bakehouse_version=__version__,
    )
    try:
        shared.check(job.bake.name)  # a runner whose lease was taken over records nothing
        provider.attest(job, image, out)  # what it was made from, kept with it
        provider.keep(job, None, out)  # its log and manifest where every runner can read them
        shared.check(job.bake.name)  # confirmed again just before it counts: the uploads took time
        with deferred():  # recorded and noted as one step: a signal waits, then finds it recorded
            provider.registry.record(image, out)
            JOURNAL.recorded.append(f"{image.image_id} ({image.bake})")
            JOURNAL.baking = None
    except BaseException as failure:
        if isinstance(failure, RecordedError):
            raise  # it counts already; the registry shows it later
        if job.extends is None:
            contents.unlink(missing_ok=True)  # nothing recorded: no manifest of it either
        # Nothing of this run may count: without packer's manifest no place is finished,
        # so discarding the job (its caller) removes everything the run made.
        job.manifest.unlink(missing_ok=True)
        raise
    return image


def _manifest(planner: Planner, provider: Provider, decision: Decision, job: BakeJob, out: TextIO) -> Manifest:
    """The image's packages as its template listed them, or what bakehouse installed when
    the template could not look inside (an AMI baked with communicator = "none")."""
    name = job.bake.name
    if job.contents.is_file():
        shown = planner.project.relative(job.contents)
        manifest = parse_dpkg_query(job.contents.read_text(encoding="utf-8"), job.image_id, name, shown)
        manifest = replace(manifest, package_format=provider.package_format(job.bake))
        out.write(f"[{name}] {len(manifest.packages)} packages in {job.image_id}\n")
        if job.bake.rebuild_when == "updates":  # what the sources offered as it was baked
            manifest = replace(manifest, sources_seen=planner.sources_seen(job.bake, manifest))
        return manifest
    out.write(f"[{name}] the template listed no packages of the image: its manifest is partial\n")
    inherited: dict[str, str | None] = {}
    if job.base_image is not None:  # what the base holds, as far as its own manifest knows
        base = job.base_image
        try:
            known = provider.registry.read_contents(base.bake, base.image_id)
            inherited = {package.name: package.version for package in known.packages}
        except ContentsError:
            inherited = dict(base.packages)
    installed = {**inherited, **{package.name: package.version for package in decision.packages}}
    package_format = provider.package_format(job.bake)
    architecture = provider.architecture(job.bake)  # dpkg's name; rpm names it its own way (x86_64)
    if package_format == "rpm":
        architecture = RPM_ARCHITECTURES.get(architecture, architecture)
    manifest = replace(partial_manifest(job.image_id, name, installed, architecture), package_format=package_format)
    if job.bake.rebuild_when == "updates":  # else the versions it saw and did not take would rebake it again and again
        manifest = replace(manifest, sources_seen=planner.sources_seen(job.bake, manifest))
    return manifest
