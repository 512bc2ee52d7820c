"""Helpers for tests: run doit as a user does, look inside local images with dpkg, and at
AMIs on moto's EC2 server with boto3."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from datetime import datetime
from collections.abc import Callable
from pathlib import Path

from bakehouse.aptrepo import fetch_url, host_architecture, parse_sources, release_checksums

PROJECT = Path(__file__).resolve().parent.parent


def run_doit(repo: Path, *args: str, env: dict[str, str] | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
    """`doit ARGS` in `repo`, as a user runs it; stdout and stderr together in .output."""
    result = subprocess.run(
        [sys.executable, "-m", "doit", *args], cwd=repo, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
    )
    result.output = result.stdout  # type: ignore[attr-defined]
    if check and result.returncode != 0:
        raise AssertionError(f"doit {' '.join(args)} exited {result.returncode}:\n{result.stdout}")
    return result


def own_template(repo: Path, name: str) -> Path:
    """The repository's own copy of the built-in template or script `name` (as a user makes one
    to change it: templates/NAME overrides the built-in file), made if it is not there yet."""
    from bakehouse.project import BUILT_IN_TEMPLATES

    path = repo / "templates" / name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(BUILT_IN_TEMPLATES / name, path)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def records(repo: Path, bake: str) -> list[dict]:
    """The registry's records of `bake`, newest first: by creation time, then by the sequence
    the registry gives each image of a bake (the README's rule)."""
    found = [json.loads(p.read_text()) for p in (repo / ".bakehouse" / "records" / bake).glob("*.json")]
    return sorted(found, key=lambda r: (datetime.fromisoformat(r["created"]), r.get("sequence", 0)), reverse=True)


def image_file(repo: Path, record: dict) -> Path:
    """The image's OCI layout (a directory), as its record names it."""
    return repo / ".bakehouse" / record["locations"]["local"]


def image_layers(layout: Path) -> list[Path]:
    """The layer blobs of the one image in an OCI layout, bottom first, read as the image
    spec says (index.json, then the manifest), not through bakehouse: the image is the entry
    with a ref name (its bake's, and a channel's on it; the others are referrers)."""
    index = json.loads((layout / "index.json").read_text())
    (digest,) = {m["digest"] for m in index["manifests"] if "org.opencontainers.image.ref.name" in m.get("annotations", {})}
    manifest = json.loads(_blob(layout, digest).read_text())
    return [_blob(layout, layer["digest"]) for layer in manifest["layers"]]


def _blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


def dpkg_admindir(image: Path, root: str) -> Path:
    """The image's dpkg database in `root`, enough for dpkg-query: the topmost layer's status."""
    admin = Path(root, "var/lib/dpkg")
    for layer in image_layers(image):  # bottom first: a later layer's status replaces it
        subprocess.run(["tar", "-xzf", str(layer), "-C", root, "--wildcards", "*var/lib/dpkg/status"],
                       capture_output=True)
    (admin / "info").mkdir(parents=True, exist_ok=True)
    (admin / "updates").mkdir(exist_ok=True)
    return admin


def unpack_image(image: Path, ref: str, into: Path) -> Path:
    """The image's whole tree, its layers applied in order by umoci (not by bakehouse)."""
    subprocess.run(["umoci", "raw", "unpack", "--image", f"{image}:{ref}", str(into)], check=True, capture_output=True)
    return into


def installed_version(image: Path, package: str) -> str:
    """dpkg-query on the image's dpkg database."""
    with tempfile.TemporaryDirectory(dir="/dev/shm") as root:
        result = subprocess.run(
            ["dpkg-query", f"--admindir={dpkg_admindir(image, root)}", "-W", "-f=${Version}", package],
            capture_output=True, text=True,
        )
        return result.stdout if result.returncode == 0 else ""


def bump_hello(repo: Path, version: str) -> None:
    set_package_version(repo / "packages" / "hello-svc", version)


def set_package_version(tree: Path, version: str) -> None:
    """Set the version of the hello-svc package source in `tree`."""
    control = tree / "DEBIAN" / "control"
    lines = [f"Version: {version}" if line.startswith("Version:") else line for line in control.read_text().splitlines()]
    control.write_text("\n".join(lines) + "\n")
    (tree / "opt" / "hello-svc" / "VERSION").write_text(version + "\n")


def build_hello_deb(repo: Path, version: str, out_dir: Path) -> Path:
    """hello-svc at `version`, built from the repository's packages/hello-svc/ with dpkg-deb."""
    tree = out_dir / f"hello-svc-{version}"
    shutil.copytree(repo / "packages" / "hello-svc", tree)
    set_package_version(tree, version)
    output = out_dir / f"hello-svc_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(output)], check=True, capture_output=True)
    return output


def _as_a_terminal_starts_it() -> None:
    """A foreground job's signals: the suite itself may run with SIGINT and SIGHUP ignored
    (started by nohup, or in the background of a script, as CI runners may), and a child
    inherits that, so Ctrl-C would never reach doit."""
    for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


class Running:
    """A `doit` started in the background, in its own process group and with the signals of
    a foreground job, as a terminal starts it; its output is collected as it comes, so a test
    can act at a given moment."""

    def __init__(self, repo: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "doit", *args], cwd=repo, text=True, start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
            preexec_fn=_as_a_terminal_starts_it,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while text not in self.output:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"never saw {text!r}; output:\n{self.output}")
            time.sleep(0.05)

    def finish(self, seconds: float = 60) -> int:
        try:
            code = self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self._reader.join(timeout=5)
            raise AssertionError(f"still running after {seconds}s; output:\n{self.output}") from None
        self._reader.join(timeout=5)
        return code


class HeldDpkgLock:
    """dpkg's own locks (fcntl, as dpkg takes them) held in the system at `root`, as
    unattended-upgrades holds them on a fresh instance. Released on a signal the test
    observes (never after a fixed time: on a loaded machine the install may start late)."""

    def __init__(self, root: Path) -> None:
        self._handles = [(root / "var" / "lib" / "dpkg" / name).open("a") for name in ("lock-frontend", "lock")]
        for handle in self._handles:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        for handle in self._handles:
            handle.close()

    def release_when(self, condition: Callable[[], bool], seconds: float = 120) -> threading.Thread:
        """Let go once `condition` holds, or after `seconds` at the latest (so a bake that
        never waits still ends, and the test fails on what it printed)."""
        def watch() -> None:
            deadline = time.monotonic() + seconds
            while not condition() and time.monotonic() < deadline:
                time.sleep(0.05)
            self.release()

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        return thread


def wait_until(condition: Callable[[], bool], seconds: float = 60) -> None:
    """Wait for `condition` to hold (polling), failing after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {seconds}s: {condition}")
        time.sleep(0.05)


def processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that mention `text` (leftovers of a bake)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in command:
            found.append(command)
    return found


def slow_postinst(repo: Path, seconds: int) -> None:
    """Make installing hello-svc take `seconds`, to catch a bake in the middle."""
    postinst = repo / "packages" / "hello-svc" / "DEBIAN" / "postinst"
    postinst.write_text(f"#!/bin/sh\nset -e\nsleep {seconds}\n")


HELD_POSTINST = """#!/bin/sh
# A test holds this install until it lets it go (or two minutes pass).
touch /tmp/bakehouse-test-held
i=0
while [ ! -e /tmp/bakehouse-test-release ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
"""


class HeldInstalls:
    """hello-svc's postinst waits, inside each image being baked, until the test releases it,
    so a test acts while bakes are installing whatever the machine's speed: it waits for a
    condition (an install has begun), never for a length of time. The test sees into the
    images being baked through their scratch directory (BAKEHOUSE_SCRATCH)."""

    def __init__(self, repo: Path, scratch: Path) -> None:
        (repo / "packages" / "hello-svc" / "DEBIAN" / "postinst").write_text(HELD_POSTINST)
        scratch.mkdir(parents=True, exist_ok=True)
        self.scratch = scratch
        self.env = {"BAKEHOUSE_SCRATCH": str(scratch)}

    def held(self) -> list[Path]:
        """The roots of the images whose install is waiting now."""
        return [
            flag.parent.parent for flag in self.scratch.glob("*/root/tmp/bakehouse-test-held")
            if not (flag.parent / "bakehouse-test-release").exists()
        ]

    def wait_until_held(self, count: int, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while len(self.held()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} installs never held at once (held: {self.held()})")
            time.sleep(0.05)

    def release(self) -> None:
        for root in self.held():
            (root / "tmp" / "bakehouse-test-release").touch()


def serve_directory(root: Path, log: Path) -> tuple[subprocess.Popen[str], str]:
    """Python's http.server for `root` on 127.0.0.1 and a port the kernel picks when it binds
    (port 0), read from the server's first line: no port can be taken in between. Requests
    are logged to `log`. Stop it by its pid."""
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "0"],
            cwd=root, stdout=subprocess.PIPE, stderr=output, text=True,
        )
    assert server.stdout is not None
    banner = server.stdout.readline()  # "Serving HTTP on 127.0.0.1 port 43121 (http://...) ..."
    match = re.search(r" port (\d+) ", banner)
    if match is None:
        server.kill()
        raise RuntimeError(f"http.server did not start: {banner!r}; see {log}")
    return server, f"http://127.0.0.1:{match.group(1)}"


# --- AWS (moto stands in for AWS: there is no AWS account here) ---

SECRET = "moto-test-secret-never-written-anywhere"
MOTO_LAUNCHER = Path(__file__).resolve().parent / "moto_ec2.py"


def start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """tests/moto_ec2.py on 127.0.0.1 and a free port; returns the process and its URL."""
    for _ in range(5):
        port = free_port()
        with log.open("ab") as output:
            server = subprocess.Popen([sys.executable, str(MOTO_LAUNCHER), str(port)], stdout=output, stderr=output)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and server.poll() is None:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
                return server, url
            except OSError:
                time.sleep(0.1)
        server.kill()
        server.wait()
    raise RuntimeError(f"moto's server did not start; see {log}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_fault_proxy(upstream: str, config: dict, events: Path) -> tuple[subprocess.Popen[bytes], str]:
    """tests/fault_proxy.py in front of `upstream` on 127.0.0.1; returns the process and its URL."""
    config_path = events.with_suffix(".config.json")
    config_path.write_text(json.dumps(config))
    for _ in range(5):
        port = free_port()
        with events.with_suffix(".out").open("ab") as output:
            proxy = subprocess.Popen(
                [sys.executable, str(PROJECT / "tests" / "fault_proxy.py"), upstream, str(port), str(config_path), str(events)],
                stdout=output, stderr=output,
            )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proxy.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return proxy, url
            except OSError:
                time.sleep(0.05)
        proxy.kill()
        proxy.wait()
    raise RuntimeError(f"the fault proxy did not start; see {events.with_suffix('.out')}")


def ec2(env: dict[str, str], region: str):  # type: ignore[no-untyped-def]
    """A boto3 EC2 client on moto, as a user would look at their AMIs."""
    import boto3

    return boto3.client(
        "ec2", region_name=region, endpoint_url=env["AWS_ENDPOINT_URL_EC2"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def amis(env: dict[str, str], region: str, bake: str) -> list[dict]:
    """The bake's AMIs in `region`, newest first, each with a `tags` dict."""
    found = ec2(env, region).describe_images(
        Owners=["self"], Filters=[{"Name": "tag:bakehouse:bake", "Values": [bake]}]
    )["Images"]
    for image in found:
        image["tags"] = {tag["Key"]: tag["Value"] for tag in image.get("Tags", [])}
    return sorted(
        found, key=lambda image: (datetime.fromisoformat(image["tags"]["bakehouse:created"]),
                                  int(image["tags"].get("bakehouse:sequence", 0))), reverse=True,
    )


def aws_calls(env: dict[str, str]) -> list[str]:
    """The AWS calls bakehouse made (BAKEHOUSE_AWS_CALL_LOG), then forgets them."""
    log = Path(env["BAKEHOUSE_AWS_CALL_LOG"])
    calls = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return calls


def provenance_statements(repo: Path, image: str, env: dict[str, str] | None = None) -> list[dict]:
    """What `doit images --provenance IMAGE` prints (a stream of JSON statements), each checked
    against the in-toto Statement v1 and SLSA provenance v1 schemas (the in-toto-attestation
    protobufs, which refuse a misnamed field)."""
    from google.protobuf import json_format
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement

    shown = run_doit(repo, "images", "--provenance", image, env=env)
    assert shown.returncode == 0, shown.output
    decoder, text, found, position = json.JSONDecoder(), shown.stdout.strip(), [], 0
    while position < len(text):
        statement, position = decoder.raw_decode(text, position)
        position = len(text) - len(text[position:].lstrip())
        Statement.copy_from_pb(json_format.ParseDict(statement, statement_pb2.Statement())).validate()
        assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
        json_format.ParseDict(statement["predicate"], provenance_pb2.Provenance())
        found.append(statement)
    return found


HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")


def mirror_packages() -> dict[str, str]:
    """The SHA256 of each package index the shipped base is made from (the host's sources), by
    suite: a mirror that publishes (a security update) changes one, and then a rebake differs."""
    found = {}
    for source in parse_sources(HOST_SOURCES.read_text(), "bookworm", str(HOST_SOURCES)):
        checksums = release_checksums(fetch_url(f"{source.dists}/InRelease").decode(), source.dists)
        found[source.label] = checksums.get(f"main/binary-{host_architecture()}/Packages", {}).get("sha256", "")
    return found
