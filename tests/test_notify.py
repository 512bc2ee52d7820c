"""Notifications to webhooks: a receiver on 127.0.0.1 (a thread of this test) that checks each
body and its HMAC signature, fails a first delivery, and answers another too slowly; a
delivery that never gets through is one warning, never a failed command, and is listed by
`doit log --notifications`."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from helpers import free_port, records, run_doit

SECRET = "s3cret-for-tests"


class Receiver:
    """Answers each POST with the next status of `script` (then 204), after `delays` seconds."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.script: list[int] = []
        self.delays: list[float] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the standard library's name
                data = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({key.lower(): value for key, value in self.headers.items()}, data))
                time.sleep(receiver.delays.pop(0) if receiver.delays else 0)
                self.send_response(receiver.script.pop(0) if receiver.script else 204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def bodies(self) -> list[dict]:
        return [json.loads(data) for _, data in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        found.server.shutdown()
        found.server.server_close()


def test_a_webhook_hears_of_moves_revocations_and_bakes_signed_and_retried(repo: Path, receiver: Receiver) -> None:
    (repo / "bakehouse.toml").write_text(f'[notify]\nwebhooks = [{{ url = "{receiver.url}", secret_env = "HOOK_SECRET" }}]\n')
    env = {"HOOK_SECRET": SECRET, "BAKEHOUSE_USER": "ci"}
    first = records(repo, "base")[0]["image_id"]
    receiver.script = [500]  # the first delivery fails: it is tried again
    promoted = run_doit(repo, "promote", "base", "stable", "--note", "tested", env=env, check=True)
    assert promoted.output == f"base@stable: nothing -> {first}\n"  # nothing said of a delivery that got through
    (failed_headers, failed), (headers, data) = receiver.received
    assert data == failed and failed_headers["x-bakehouse-delivery"] == headers["x-bakehouse-delivery"]
    assert headers["x-bakehouse-event"] == "promote" and headers["content-type"] == "application/json"
    assert headers["x-bakehouse-signature"] == "sha256=" + hmac.new(SECRET.encode(), data, hashlib.sha256).hexdigest()
    body = json.loads(data)
    assert {key: body[key] for key in ("event", "bake", "channel", "image", "before", "note", "by", "repository")} == {
        "event": "promote", "bake": "base", "channel": "stable", "image": first, "before": None, "note": "tested",
        "by": "ci", "repository": "repo"}

    receiver.delays = [6.0]  # longer than a delivery waits (5 s): that attempt fails, the next gets through
    run_doit(repo, "revoke", first, "--reason", "CVE-2026-0003", env=env, check=True)
    revoke = receiver.bodies()[-1]
    assert revoke["event"] == "revoke" and [image["image"] for image in revoke["images"]] == [first]
    assert revoke["images"][0]["reason"] == "CVE-2026-0003"
    assert revoke["channels"] == [{"bake": "base", "channel": "stable", "before": first, "after": None}]

    run_doit(repo, "bake:base", env=env, check=True)  # the revoked image is not current: base bakes again
    baked = receiver.bodies()[-1]
    assert baked["event"] == "bake.succeeded" and baked["bake"] == "base"
    assert baked["images"][0]["image"] == records(repo, "base")[0]["image_id"] != first


def test_a_delivery_that_never_gets_through_is_a_warning_and_is_listed(repo: Path, receiver: Receiver) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    (repo / "bakehouse.toml").write_text(f'[notify]\nevents = ["promote"]\nwebhooks = [{{ url = "{nowhere}" }}, '
                                         f'{{ url = "{receiver.url}", secret_env = "HOOK_SECRET" }}]\n')
    promoted = run_doit(repo, "promote", "base", "stable", env={"HOOK_SECRET": ""})
    assert promoted.returncode == 0, promoted.output  # the move stands
    warnings = [line for line in promoted.output.splitlines() if line.startswith("WARNING:")]
    assert warnings == [
        f"WARNING: notification promote to {nowhere} failed after 3 attempts: cannot reach it ([Errno 111] Connection refused)",
        f"WARNING: notification promote to {receiver.url} failed after 3 attempts: HOOK_SECRET is not set: "
        "nothing is sent unsigned"], promoted.output
    assert receiver.received == []  # nothing unsigned went out
    listed = run_doit(repo, "log", "--notifications", check=True).output.splitlines()
    assert len(listed) == 2 and listed[0].endswith(f"  promote  {nowhere}: cannot reach it ([Errno 111] Connection refused)")
    run_doit(repo, "rollback", "base", "stable")  # not among the events asked for: nothing is sent
    assert len(run_doit(repo, "log", "--notifications", check=True).output.splitlines()) == 2


def test_a_bad_notify_table_is_one_line(repo: Path) -> None:
    (repo / "bakehouse.toml").write_text('[notify]\nwebhooks = [{ url = "ftp://x" }]\n')
    said = run_doit(repo, "plan")
    assert said.returncode != 0 and "bakehouse.toml: notify.webhooks[0].url must be an http(s) URL, not 'ftp://x'" in said.output
