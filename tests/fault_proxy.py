"""A fault-injecting proxy in front of moto's EC2 server: AWS as it really behaves, for tests.

    python tests/fault_proxy.py UPSTREAM_URL PORT CONFIG.json EVENTS.jsonl

moto answers every call at once, correctly and consistently. AWS throttles, answers 5xx now
and then, and shows new AMIs, their state and their tags after a delay. This proxy (stdlib
only, 127.0.0.1) forwards EC2 query-API calls to moto and, as CONFIG says, seeded:

    {"seed": 7,
     "faults": [{"action": "DescribeImages", "region": "*", "rate": 0.5, "burst": 3, "code": "RequestLimitExceeded"},
                {"action": "RunInstances", "region": "us-west-2", "first": 3, "code": "InternalError"}],
     "tags_late_seconds": 10,     # CreateTags on an image shows in DescribeImages this late
     "pending_seconds": 0,        # a new image (CreateImage, CopyImage) is `pending` this long
     "hidden_seconds": 0,         # ... and absent from DescribeImages this long
     "log_params": false,         # each call's parameters in EVENTS too (they hold no secret:
                                  # the signature is in a header, which is never logged)
     "lifecycle": false}          # answer the AMI lifecycle calls moto lacks (below)

With "lifecycle", the proxy stands in for the EC2 calls moto 5.2 does not implement and keeps
their effect per image, shown in DescribeImages as AWS shows it: EnableImageDeprecation and
DisableImageDeprecation (`deprecationTime`), Enable/DisableImageDeregistrationProtection
(`deregistrationProtection`: "enabled" or "disabled"), and ModifyImageAttribute with
ImdsSupport.Value (`imdsSupport`, which cannot be undone, as on AWS). A real AWS answers the
same calls; only moto here needs the stand-in.

S3 calls (path-style, as bakehouse makes them with an endpoint set) pass through too, and a
rule with "s3" faults them: {"s3": "PutObject", "path": "provenance", "rate": 1, "code":
"InternalError"} fails every PutObject whose path holds "provenance", in S3's error format;
with "hold_seconds" instead of "code", the call is logged as it arrives ("held"), held that
long, then passed on (a test can stop the caller at a known point of its work).

A rule faults a share of the calls it matches (`rate`), at most `burst` in a row per call
and region when given (throttling comes in bursts; a cap keeps a test's retry delays, and so
its time, bounded), or the `first` N. A fault answers in EC2's XML error format with AWS's status (503 for RequestLimitExceeded
and ServiceUnavailable, 500 for InternalError, 400 for any other code: a client error). Each call is one JSON line in EVENTS
(time, action, region, what was done), so a test can wait for a step or count faults.
"""

from __future__ import annotations

import http.client
import http.server
import json
import random
import re
import sys
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from typing import Any

STATUS = {"RequestLimitExceeded": 503, "ServiceUnavailable": 503, "Unavailable": 503, "InternalError": 500}
REGION = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/")


class Faults:
    def __init__(self, config: dict[str, Any], events: str) -> None:
        self.config = config
        self.random = random.Random(config.get("seed", 0))
        self.lock = threading.Lock()
        self.counts: dict[int, int] = {}
        self.streaks: dict[tuple[int, str, str], int] = {}  # faults in a row, per rule, call and region
        self.tagged: dict[str, float] = {}  # image id -> when its tags last changed
        self.made: dict[str, float] = {}  # image id -> when it was created
        self.lifecycle: dict[str, dict[str, str]] = {}  # image id -> deprecationTime, imdsSupport, ...
        self.events = open(events, "a", encoding="utf-8")

    def fault(self, action: str, region: str) -> str | None:
        with self.lock:
            for index, rule in enumerate(self.config.get("faults", [])):
                if rule.get("action", "*") not in ("*", action) or rule.get("region", "*") not in ("*", region):
                    continue
                if "first" in rule:
                    seen = self.counts.get(index, 0)
                    self.counts[index] = seen + 1
                    if seen < rule["first"]:
                        return str(rule["code"])
                    continue
                streak = (index, action, region)
                burst = int(rule.get("burst", 0))
                if self.random.random() < float(rule.get("rate", 0)) and not (burst and self.streaks.get(streak, 0) >= burst):
                    self.streaks[streak] = self.streaks.get(streak, 0) + 1
                    return str(rule["code"])
                self.streaks[streak] = 0
        return None

    def s3_rule(self, action: str, path: str) -> dict[str, Any] | None:
        with self.lock:
            for rule in self.config.get("faults", []):
                if rule.get("s3") == action and rule.get("path", "") in path and self.random.random() < float(rule.get("rate", 1)):
                    return dict(rule)
        return None

    def log(self, **event: Any) -> None:
        with self.lock:
            self.events.write(json.dumps({"time": time.time(), **event}) + "\n")
            self.events.flush()


def error_body(code: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{code}</Code><Message>{code} (injected by the test proxy)</Message>"
        f"</Error></Errors><RequestID>{uuid.uuid4()}</RequestID></Response>"
    ).encode()


def s3_error_body(code: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{code} (injected by the test proxy)</Message><RequestId>{uuid.uuid4()}</RequestId></Error>").encode()


def make_handler(upstream: urllib.parse.SplitResult, faults: Faults) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        _upstream_headers: dict[str, str] = {}

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._forward(b"")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._forward(self.rfile.read(length))

        do_PUT = do_POST

        def do_DELETE(self) -> None:
            self._forward(b"")

        def do_HEAD(self) -> None:
            self._forward(b"")

        def _forward(self, body: bytes) -> None:
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
            action = (form.get("Action") or [""])[0]
            match = REGION.search(self.headers.get("Authorization", ""))
            region = match.group(1) if match else ""
            if not action and self.command != "POST":  # S3, path-style
                action = {"PUT": "PutObject", "GET": "GetObject", "DELETE": "DeleteObject", "HEAD": "HeadObject"}[self.command]
                rule = faults.s3_rule(action, self.path)
                code = None if rule is None else rule.get("code")
                if rule is not None and "hold_seconds" in rule:
                    faults.log(action=action, path=self.path, held=rule["hold_seconds"])
                    time.sleep(float(rule["hold_seconds"]))
                if code is not None:
                    faults.log(action=action, path=self.path, fault=code)
                    self._answer(STATUS.get(code, 400), s3_error_body(code), "application/xml")
                    return
                status, content_type, answer = self._ask_upstream(body)
                faults.log(action=action, path=self.path, status=status)
                self._answer(status, answer, content_type)
                return
            code = faults.fault(action, region) if action else None
            if code is not None:
                faults.log(action=action, region=region, fault=code)
                self._answer(STATUS.get(code, 400), error_body(code), "text/xml")  # other codes: the caller's error
                return
            if faults.config.get("lifecycle") and self._lifecycle(action, form, region):
                return
            status, content_type, answer = self._ask_upstream(body)
            answer = self._delay_consistency(action, form, answer) if status == 200 else answer
            params = {key: values[0] for key, values in form.items()} if faults.config.get("log_params") else None
            faults.log(action=action, region=region, status=status, **({"params": params} if params else {}))
            self._answer(status, answer, content_type)

        def _lifecycle(self, action: str, form: dict[str, list[str]], region: str) -> bool:
            """Answer a lifecycle call moto lacks, keeping its effect; False for any other call."""
            image = (form.get("ImageId") or [""])[0]
            changes = {
                "EnableImageDeprecation": {"deprecationTime": (form.get("DeprecateAt") or [""])[0]},
                "DisableImageDeprecation": {"deprecationTime": None},
                "EnableImageDeregistrationProtection": {"deregistrationProtection": "enabled"},
                "DisableImageDeregistrationProtection": {"deregistrationProtection": "disabled"},
            }.get(action)
            if action == "ModifyImageAttribute" and "ImdsSupport.Value" in form:
                changes = {"imdsSupport": form["ImdsSupport.Value"][0]}
            if changes is None:
                return False
            with faults.lock:
                kept = faults.lifecycle.setdefault(image, {})
                for name, value in changes.items():
                    if value is None:
                        kept.pop(name, None)
                    else:
                        kept[name] = value
            faults.log(action=action, region=region, status=200, image=image, stood_in=True)
            body = (f'<{action}Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
                    f"<requestId>{uuid.uuid4()}</requestId><return>true</return></{action}Response>").encode()
            self._answer(200, body, "text/xml")
            return True

        def _ask_upstream(self, body: bytes) -> tuple[int, str, bytes]:
            connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            self._upstream_headers = {name: value for name, value in response.getheaders()}
            answer = response.read()
            connection.close()
            return response.status, response.getheader("Content-Type", "text/xml"), answer

        def _delay_consistency(self, action: str, form: dict[str, list[str]], answer: bytes) -> bytes:
            now = time.time()
            if action in ("CreateImage", "CopyImage", "RegisterImage"):
                found = re.search(rb"<imageId>(ami-[0-9a-f]+)</imageId>", answer)
                if found:
                    with faults.lock:
                        faults.made[found.group(1).decode()] = now
            elif action == "CreateTags":
                with faults.lock:
                    for key, values in form.items():
                        if key.startswith("ResourceId.") and values[0].startswith("ami-"):
                            faults.tagged[values[0]] = now
            elif action == "DescribeImages":
                return self._with_lifecycle(self._rewrite_images(answer, now))
            return answer

        def _with_lifecycle(self, answer: bytes) -> bytes:
            """DescribeImages as AWS answers it once lifecycle calls were made."""
            with faults.lock:
                kept = {image: dict(values) for image, values in faults.lifecycle.items()}
            if not kept:
                return answer
            root = ET.fromstring(answer)
            namespace = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
            ET.register_namespace("", namespace.strip("{}"))
            for item in root.iter(f"{namespace}item"):
                image_id = item.findtext(f"{namespace}imageId")
                if image_id is None or item.find(f"{namespace}imageState") is None:
                    continue
                for name, value in kept.get(image_id, {}).items():
                    element = item.find(f"{namespace}{name}")
                    if element is None:
                        element = ET.SubElement(item, f"{namespace}{name}")
                    element.text = value
            return ET.tostring(root, encoding="utf-8", xml_declaration=True)

        def _rewrite_images(self, answer: bytes, now: float) -> bytes:
            config = faults.config
            late, pending, hidden = (float(config.get(name, 0)) for name in
                                     ("tags_late_seconds", "pending_seconds", "hidden_seconds"))
            if not (late or pending or hidden):
                return answer
            root = ET.fromstring(answer)
            namespace = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
            ET.register_namespace("", namespace.strip("{}"))
            images = root.find(f"{namespace}imagesSet")
            if images is None:
                return answer
            with faults.lock:
                made, tagged = dict(faults.made), dict(faults.tagged)
            for item in list(images):
                image_id = item.findtext(f"{namespace}imageId") or ""
                age = now - made.get(image_id, 0.0)
                if age < hidden:
                    images.remove(item)
                    continue
                state = item.find(f"{namespace}imageState")
                if age < pending and state is not None:
                    state.text = "pending"
                tags = item.find(f"{namespace}tagSet")
                if tags is not None and now - tagged.get(image_id, 0.0) < late:
                    for tag in list(tags):
                        tags.remove(tag)
            return ET.tostring(root, encoding="utf-8", xml_declaration=True)

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for header in ("ETag", "Last-Modified"):  # S3's answers carry these
                if header in self._upstream_headers:
                    self.send_header(header, self._upstream_headers[header])
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    return Handler


def main(upstream: str, port: str, config_path: str, events: str) -> None:
    with open(config_path, encoding="utf-8") as file:
        faults = Faults(json.load(file), events)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), make_handler(urllib.parse.urlsplit(upstream), faults))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:5])
