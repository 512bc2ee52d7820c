"""Notifications: telling people and systems what happened, as EC2 Image Builder and HCP
Packer do (SNS, webhooks), from `[notify]` in bakehouse.toml:

    [notify]
    webhooks = [{ url = "https://hooks.example.com/bakes", secret_env = "BAKEHOUSE_HOOK_SECRET" }]
    sns = ["arn:aws:sns:us-east-1:123456789012:bakes"]
    events = ["bake.failed", "promote", "revoke"]     # default: every event

Events: bake.succeeded, bake.failed, promote, rollback, revoke, restore, prune. Each is one
JSON object (`body()`: `event`, `at`, `by`, `repository`, `bakehouse`, and the event's own
fields), POSTed to each webhook with `X-Bakehouse-Event`, `X-Bakehouse-Delivery` (an id a
receiver can drop repeats by) and, with a secret, `X-Bakehouse-Signature: sha256=<HMAC-SHA256
of the body>`; published to each SNS topic as the message (its subject: `bakehouse EVENT`).

Delivery is tried 3 times (after 1 s, then 2 s; 5 s at most each attempt), never fails what
triggered it, and a delivery that fails is said in one line and kept in
.bakehouse/logs/notifications.log (`doit log --notifications` shows it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import __version__
from .channels import who
from .errors import DefinitionError
from .keyref import Key, names
from .project import Project
from .projectfile import PROJECT_FILE, project_table
from .providers import definitions
from .tomlcheck import reject_unknown, type_name

EVENTS = ("bake.succeeded", "bake.failed", "promote", "rollback", "revoke", "restore", "prune")
ATTEMPTS = 3
TIMEOUT_SECONDS = 5.0
BACKOFF_SECONDS = (1.0, 2.0)
FAILURES_LOG = "notifications.log"  # under .bakehouse/logs/
NOTIFY_KEY_DOCS = (
    Key(("webhooks",), "list of tables", "`[]`",
        '`{ url = "https://...", secret_env = "NAME" }`: a JSON POST per event; with `secret_env`, signed with the '
        "secret that environment variable holds (`X-Bakehouse-Signature: sha256=...`)"),
    Key(("sns",), "list of strings", "`[]`", "SNS topic ARNs to publish each event to"),
    Key(("events",), "list of strings", "every event", f"which events to send: {', '.join(EVENTS)}"),
)
WEBHOOK_KEYS = ("url", "secret_env")


@dataclass(frozen=True)
class Webhook:
    url: str
    secret_env: str | None = None


@dataclass(frozen=True)
class NotifySettings:
    webhooks: tuple[Webhook, ...] = ()
    sns: tuple[str, ...] = ()
    events: tuple[str, ...] = EVENTS

    @property
    def anything(self) -> bool:
        return bool(self.webhooks or self.sns)


def settings(project: Project) -> NotifySettings:
    """bakehouse.toml's [notify]; none when it is absent. DefinitionError, one line, for a bad one."""
    table = project_table(project, "notify")
    if table is None:
        return NotifySettings()
    where = f"{PROJECT_FILE}: notify"
    reject_unknown(PROJECT_FILE, "notify.", table, names(NOTIFY_KEY_DOCS))
    hooks = table.get("webhooks", [])
    if not isinstance(hooks, list) or not all(isinstance(hook, dict) for hook in hooks):
        raise DefinitionError(f"{where}.webhooks must be a list of tables ({{ url = \"https://...\" }}), not {type_name(hooks)}")
    webhooks = []
    for index, hook in enumerate(hooks):
        reject_unknown(PROJECT_FILE, f"notify.webhooks[{index}].", hook, WEBHOOK_KEYS)
        url, secret = hook.get("url"), hook.get("secret_env")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise DefinitionError(f"{where}.webhooks[{index}].url must be an http(s) URL, not {url!r}")
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise DefinitionError(f"{where}.webhooks[{index}].secret_env must name an environment variable")
        webhooks.append(Webhook(url, secret))
    topics = table.get("sns", [])
    if not isinstance(topics, list) or not all(isinstance(arn, str) and arn.startswith("arn:aws") and arn.count(":") == 5
                                                for arn in topics):
        raise DefinitionError(f"{where}.sns must be a list of SNS topic ARNs (arn:aws:sns:REGION:ACCOUNT:NAME)")
    events = table.get("events", list(EVENTS))
    if not isinstance(events, list) or any(event not in EVENTS for event in events):
        raise DefinitionError(f"{where}.events: each must be one of {', '.join(EVENTS)}, not {events!r}")
    return NotifySettings(tuple(webhooks), tuple(topics), tuple(events))


def body(project: Project, event: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {"event": event, "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "by": who(),
            "repository": project.root.name, "bakehouse": __version__, **fields}


def signature(secret: str, data: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), data, hashlib.sha256).hexdigest()


Publisher = Callable[[str, str, str], None]  # (topic ARN, subject, message): SNS's Publish


def notify(project: Project, event: str, fields: dict[str, Any], say: Callable[[str], None],
           publisher: Publisher | None = None, sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Send `event` wherever [notify] says; what failed, each said as one line and logged.
    Never raises: a notification never fails what it tells of."""
    try:
        wanted = settings(project)
    except DefinitionError as error:
        say(f"WARNING: no notification sent: {error}")
        return [str(error)]
    if event not in wanted.events or not wanted.anything:
        return []
    message = body(project, event, fields)
    data = json.dumps(message, sort_keys=True, separators=(",", ":")).encode("utf-8")
    failed = []
    for hook in wanted.webhooks:
        delivery = str(uuid.uuid4())  # the same on each attempt: a receiver drops repeats by it
        error = _attempts(lambda: _post(hook, event, data, delivery), sleep)
        if error:
            failed.append(_failed(project, message, hook.url, error, say))
    for topic in wanted.sns:
        error = _attempts(lambda: _publish(publisher, topic, f"bakehouse {event}", data.decode("utf-8")), sleep)
        if error:
            failed.append(_failed(project, message, topic, error, say))
    return failed


def _attempts(send: Callable[[], None], sleep: Callable[[float], None]) -> str | None:
    """None once `send` succeeds; else what the last attempt said."""
    error = "not tried"
    for attempt in range(ATTEMPTS):
        if attempt:
            sleep(BACKOFF_SECONDS[min(attempt - 1, len(BACKOFF_SECONDS) - 1)])
        try:
            send()
            return None
        except Exception as caught:  # noqa: BLE001 - whatever a receiver does, the bake goes on
            error = _one_line(caught)
    return error


def _post(hook: Webhook, event: str, data: bytes, delivery: str) -> None:
    headers = {"Content-Type": "application/json", "User-Agent": f"bakehouse/{__version__}",
               "X-Bakehouse-Event": event, "X-Bakehouse-Delivery": delivery}
    if hook.secret_env is not None:
        secret = os.environ.get(hook.secret_env)
        if not secret:
            raise RuntimeError(f"{hook.secret_env} is not set: nothing is sent unsigned")
        headers["X-Bakehouse-Signature"] = signature(secret, data)
    request = urllib.request.Request(hook.url, data=data, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:  # noqa: S310 - the user's own URL
        answer.read(1024)


def _publish(publisher: Publisher | None, topic: str, subject: str, message: str) -> None:
    if publisher is None:  # the provider whose topic it is (AWS: SNS)
        publisher = next(filter(None, (definition.notifier(topic) for definition in definitions().values())), None)
    if publisher is None:
        raise RuntimeError("no provider publishes to it")
    publisher(topic, subject, message)


def _failed(project: Project, message: dict[str, Any], target: str, error: str, say: Callable[[str], None]) -> str:
    line = f"notification {message['event']} to {target} failed after {ATTEMPTS} attempts: {error}"
    say(f"WARNING: {line}")
    record = {"at": message["at"], "event": message["event"], "target": target, "error": error, "attempts": ATTEMPTS,
              "body": message}
    log = failures_log(project)
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record, sort_keys=True) + "\n")
    except OSError as caught:
        say(f"WARNING: cannot keep it in {log}: {caught}")
    return line


def failures_log(project: Project) -> Path:
    return project.state_dir / "logs" / FAILURES_LOG


def _one_line(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return f"cannot reach it ({error.reason})"
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:300]
