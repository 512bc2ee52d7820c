"""State shared by every runner of a repository's AWS bakes, on S3: a lease per bake and
content key, so two CI runners never bake the same image, and each bake's log, input summary
and package manifest, so any runner can read them:

    <prefix>/locks/<bake>/<key>.json            the lease
    <prefix>/logs/<bake>/<image-id>.log         the bake's full log (also when it failed)
    <prefix>/logs/<bake>/<image-id>.inputs.json its input summary
    <prefix>/logs/<bake>/<image-id>.provenance-<sha256 prefix>.json
                                                its provenance: an in-toto statement per run
    <prefix>/logs/<bake>/last-failed.json       the last failed bake of <bake>: id, log, error
    <prefix>/contents/<bake>/<image-id>.packages its package manifest

Configured in the repository's `bakehouse.toml`:

    [shared]
    s3 = "s3://my-bakery-state/bakehouse"   # bucket and prefix
    region = "us-east-1"                     # the bucket's region (default: AWS_DEFAULT_REGION)
    lease = "60s"                            # how long a silent holder keeps the lock

Without it, AWS bakes lock with the local flock only (locks.py), as local bakes always do.

The lease is one object, `<prefix>/locks/<bake>/<key>.json`, written with S3's conditional
writes (the way Terraform's S3 backend locks, with an expiry it lacks):
- take: PutObject with `If-None-Match: *` (412 when someone holds it);
- renew: every third of the lease, PutObject with `If-Match` on the ETag last written;
- take over an expired lease: PutObject with `If-Match` on the ETag read; expired means S3's
  own clock (the Date of its answer) is past the object's LastModified plus the lease, so no
  runner's clock is trusted;
- release: DeleteObject with `If-Match`.
A holder that dies (kill -9, a lost machine) stops renewing; the next runner takes over after
the lease and says so. A holder has lost its lease when a renewal finds it taken or gone
(another runner took it over and released it), or when no renewal has succeeded for a whole
lease (a paused VM, a long stall: another runner may have taken it over meanwhile). Before its
image counts, a holder confirms the lease with one more conditional write (`Lease.check`):
only the runner whose write succeeds still holds it. A holder that lost it records nothing,
and its bake removes the AMIs it made (bake.py), so one key never has two images.

The lease object is JSON: `holder`, `since`, `lease_seconds`, and, once the bake knows it,
`base`: the image id of the base it builds on. `doit prune` on any runner reads the live
leases (`running_bases`) and keeps those bases, so a base is never deleted under a running
service bake elsewhere (registry.py, used_outside).
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TextIO

from ...durations import parse_duration
from ...errors import DefinitionError
from ...keyref import names
from ...project import Project
from ...projectfile import PROJECT_FILE, project_table
from ...tomlcheck import Getter, reject_unknown
from .client import AwsError, S3
from .settings import SHARED_KEY_DOCS

DEFAULT_LEASE_SECONDS = 60
MAX_LEASE_SECONDS = 3600  # a runner that died holds the lock this long at most
POLL_SECONDS = 2.0


@dataclass(frozen=True)
class SharedConfig:
    bucket: str
    prefix: str
    region: str
    lease_seconds: int

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, *parts: str) -> str:
        return "/".join(part for part in (self.prefix, *parts) if part)


def read_config(project: Project) -> SharedConfig | None:
    """The [shared] table of bakehouse.toml, checked; None when the file or table is absent."""
    table = project_table(project, "shared")
    if table is None:
        return None
    reject_unknown(PROJECT_FILE, "shared.", table, names(SHARED_KEY_DOCS))
    get = Getter(PROJECT_FILE, table, prefix="shared.")
    url = get.string("s3")
    match = re.fullmatch(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(.*))?", url or "")
    if match is None:
        raise DefinitionError(f"{PROJECT_FILE}: shared.s3 must be s3://BUCKET/PREFIX (got {url!r})")
    region = get.string("region") or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    if not region:
        raise DefinitionError(f"{PROJECT_FILE}: shared.region is required (the bucket's region), or set AWS_DEFAULT_REGION")
    lease = table.get("lease", f"{DEFAULT_LEASE_SECONDS}s")
    seconds = int(parse_duration(f"{PROJECT_FILE}: shared.lease", lease).total_seconds())
    if not 3 <= seconds <= MAX_LEASE_SECONDS:
        raise DefinitionError(f"{PROJECT_FILE}: shared.lease must be from 3s to 60m, not {lease!r}")
    return SharedConfig(match[1], (match[2] or "").strip("/"), region, seconds)


def runner_name() -> str:
    """Who holds a lease, as people know the runner: BAKEHOUSE_RUNNER, the CI system's runner
    name, else host and pid."""
    for variable in ("BAKEHOUSE_RUNNER", "RUNNER_NAME", "CI_RUNNER_DESCRIPTION"):
        if os.environ.get(variable):
            return os.environ[variable]
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Lease:
    """A held lease; `lost` is set when a renewal found it taken or gone, or too old."""

    key: str
    etag: str
    waited: bool
    since: str  # when this runner took it (renewals keep it, so waiters see the bake's start)
    lost: threading.Event = field(default_factory=threading.Event)
    renewed: float = field(default_factory=time.monotonic)  # the last write that held
    writing: threading.Lock = field(default_factory=threading.Lock)  # renewal and confirmation
    confirm: Callable[[Lease], bool] | None = None  # one more conditional write: still ours?
    base: str | None = None  # the base image the bake builds on, written into the lease

    def check(self, bake: str) -> None:
        """Still held, confirmed by a conditional write now: else raise (nothing may count)."""
        if not self.lost.is_set() and self.confirm is not None and not self.confirm(self):
            self.lost.set()
        if self.lost.is_set():
            raise AwsError(f"{bake}: lost the shared lock (its lease was taken over while baking); nothing was "
                           "recorded, and what this run made is removed")

    def note_base(self, image_id: str) -> None:
        """Name the base image in the lease at once (a prune on another runner keeps it); a
        failed write is left to the next renewal, which writes the same."""
        self.base = image_id
        if self.confirm is not None:
            try:
                if not self.confirm(self):
                    self.lost.set()
            except AwsError:
                pass


class SharedState:
    """The shared lock (hold) and the files every runner can read (logs, manifests)."""

    def __init__(self, config: SharedConfig, s3: S3 | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.s3 = s3 or S3(config.region)
        self.sleep = sleep
        self._checked = False

    def check(self) -> None:
        """The bucket exists and answers: once per run, one line if not."""
        if self._checked:
            return
        try:
            self.s3.check_bucket(self.config.bucket)
        except AwsError as error:
            if re.search(r": (404|NoSuchBucket)", str(error)):
                raise AwsError(f"{PROJECT_FILE}: shared.s3: the bucket {self.config.bucket} does not exist") from None
            if re.search(r": (403|AccessDenied)", str(error)):
                raise AwsError(f"{PROJECT_FILE}: shared.s3: no permission to use the bucket {self.config.bucket} "
                               "(the runner needs s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket)") from None
            raise
        self._checked = True

    @contextmanager
    def hold(self, bake: str, content_key: str, out: TextIO) -> Iterator[Lease]:
        self.check()
        lease = self._take(bake, self.config.key("locks", bake, f"{content_key}.json"), out)
        lease.confirm = self._write
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(lease, stop), daemon=True, name=f"lease-{bake}")
        renewer.start()
        try:
            yield lease
        finally:
            stop.set()
            renewer.join()
            if not lease.lost.is_set():
                try:
                    self.s3.delete(self.config.bucket, lease.key, if_match=lease.etag)
                except AwsError as error:  # the bake's own outcome is what to report
                    out.write(f"[{bake}] could not release the shared lock ({error}); it expires in "
                              f"{self.config.lease_seconds}s\n")

    def upload(self, key: str, data: bytes) -> str:
        """Store `data` under `<prefix>/<key>`; returns its s3:// URL."""
        self.check()
        self.s3.put(self.config.bucket, self.config.key(key), data)
        return self.url(key)

    def download(self, key: str) -> bytes | None:
        found = self.s3.get(self.config.bucket, self.config.key(key))
        return None if found is None else found[0]

    def delete_image_files(self, bake: str, image_id: str, provenance: list[str]) -> list[str]:
        """An image's log, input summary, manifest and provenance statements (the files named
        in `provenance`), pruned with it; returns their URLs."""
        removed = []
        for key in (log_key(bake, image_id), inputs_key(bake, image_id), contents_key(bake, image_id),
                    *(provenance_key(bake, name) for name in provenance)):
            if self.s3.exists(self.config.bucket, self.config.key(key)):
                self.s3.delete(self.config.bucket, self.config.key(key))
                removed.append(self.url(key))
        return removed

    def url(self, key: str) -> str:
        return f"s3://{self.config.bucket}/{self.config.key(key)}"

    def key_of(self, url: str) -> str | None:
        """The key under the prefix of one of this state's URLs; None for any other URL."""
        start = f"s3://{self.config.bucket}/" + (f"{self.config.prefix}/" if self.config.prefix else "")
        return url[len(start):] if url.startswith(start) else None

    def running_bases(self) -> dict[str, tuple[str, str]]:
        """The base image each bake running on any runner builds on, as its live lease says:
        image id -> (bake, holder). A lease older than its length (a runner that died) is not
        running; a lease that cannot be read now is skipped (released meanwhile)."""
        found: dict[str, tuple[str, str]] = {}
        prefix = self.config.key("locks") + "/"
        for key in self.s3.keys(self.config.bucket, prefix):
            got = self.s3.get(self.config.bucket, key)
            if got is None:
                continue
            body, _, written, server_now = got
            if server_now > written + timedelta(seconds=self.config.lease_seconds):
                continue
            holder, _ = _holder(body)
            base = _field(body, "base")
            if base:
                found[base] = (key[len(prefix):].split("/")[0], holder)
        return found

    def _body(self, since: str, base: str | None = None) -> bytes:
        return json.dumps({"holder": runner_name(), "since": since, "lease_seconds": self.config.lease_seconds,
                           **({"base": base} if base else {})}).encode()

    def _take(self, bake: str, key: str, out: TextIO) -> Lease:
        waited, said = False, None
        while True:
            since = datetime.now(UTC).strftime("%H:%M:%SZ")
            etag = self.s3.put(self.config.bucket, key, self._body(since), if_absent=True)
            if etag is not None:
                return Lease(key, etag, waited, since)
            found = self.s3.get(self.config.bucket, key)
            if found is None:
                continue  # released between our write and our read: try again at once
            body, seen_etag, written, server_now = found
            holder, since = _holder(body)
            if server_now > written + timedelta(seconds=self.config.lease_seconds):
                taken = datetime.now(UTC).strftime("%H:%M:%SZ")
                etag = self.s3.put(self.config.bucket, key, self._body(taken), if_match=seen_etag)
                if etag is not None:
                    out.write(f"[{bake}] lock of {bake} held by {holder} since {since} expired; baking\n")
                    out.flush()
                    return Lease(key, etag, waited, taken)
                continue  # another runner took it over first
            if said != holder:
                out.write(f"[{bake}] waiting: {bake} is being baked by {holder} (since {since}; shared lock "
                          f"{self.config.url}/locks/{bake}/)\n")
                out.flush()
                said = holder
            waited = True
            self.sleep(POLL_SECONDS)

    def _renew(self, lease: Lease, stop: threading.Event) -> None:
        while not stop.wait(self.config.lease_seconds / 3):
            try:
                held = self._write(lease)
            except AwsError:
                # retried at the next beat (the lease has slack), unless a whole lease has
                # passed since the last write that held: another runner may hold it now
                held = time.monotonic() - lease.renewed < self.config.lease_seconds
            if not held:
                lease.lost.set()
                return

    def _write(self, lease: Lease) -> bool:
        """Rewrite the lease if it is still the version this runner wrote: False when another
        runner wrote it since, or it is gone (taken over and released)."""
        with lease.writing:
            if lease.lost.is_set():
                return False
            try:
                etag = self.s3.put(self.config.bucket, lease.key, self._body(lease.since, lease.base), if_match=lease.etag)
            except AwsError as error:
                if re.search(r": (NoSuchKey|404):", str(error)):
                    return False
                raise
            if etag is None:
                return False
            lease.etag, lease.renewed = etag, time.monotonic()
            return True


def _holder(body: bytes) -> tuple[str, str]:
    """Who holds a lease and since when, as its object says; any other object (not JSON, not
    a JSON object: `[]`, `null`, a string) is still a lease, held by someone unknown."""
    return _field(body, "holder") or "another runner", _field(body, "since") or "?"


def _field(body: bytes, name: str) -> str | None:
    """One text field of a lease object; None if absent, or if the object is not JSON's."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    value = data.get(name) if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def contents_key(bake: str, image_id: str) -> str:
    return f"contents/{bake}/{image_id}.packages"


def log_key(bake: str, image_id: str) -> str:
    return f"logs/{bake}/{image_id}.log"


def inputs_key(bake: str, image_id: str) -> str:
    return f"logs/{bake}/{image_id}.inputs.json"


def provenance_key(bake: str, file_name: str) -> str:
    """Where a provenance statement is kept, by its file's name (AwsRegistry.provenance_path)."""
    return f"logs/{bake}/{file_name}"


def failure_key(bake: str) -> str:
    return f"logs/{bake}/last-failed.json"
