"""bakehouse benchmarks: how fast it decides, and what it adds on top of packer.

    .venv/bin/python bench/run.py [--runs N] [SECTION ...]

Sections (all by default):
  deciding       local images: `doit plan`, a no-op `doit` and `doit list` on generated
                 repositories of 1 base + 10 / 100 / 500 services, all up to date
  aws-deciding   the same against moto's EC2 server, 3 regions, counting EC2 API calls
  overhead       `doit bake:svc1 --rebake` against `packer build` of the same rendered
                 template, local and against moto
  parallel       8 independent service bakes with `doit -n 4` against `doit -n 1`,
                 local and against moto; and 8 local bakes whose provisioner waits 3 s
                 (as an AMI bake waits on AWS), to show whether waiting bakes overlap
  local          the shipped bakes on the real minbase base: a service bake with the layer
                 cache warm and cold, and what each image costs on disk
  runners        shared state on moto's S3: N runners (fresh clones, real `doit` processes)
                 started at once over 1 base + M services, every runner running every bake
                 (the worst overlap) and as a plan-driven fan-out (one runner per service);
                 bakes per minute, and duplicate bakes (must be 0)
  interrupts     (only when named) Ctrl-C at BAKEHOUSE_INTERRUPTS (default 20) moments spread
                 over a bake of the shipped base and of hello (the real minbase base), with
                 two busy loops beside them; each must leave no mount, scratch or process
                 and say what it recorded (tests/interrupting.py)
  soak           (only when named) the shipped bakes as they are, on the real minbase base:
                 `doit bake:hello --rebake` BAKEHOUSE_SOAK_RUNS times (default 100); every
                 one must pass (a bake that fails by chance is a bug)

moto's server (tests/moto_ec2.py, which needs the test extra) stands in for AWS: there is no
AWS account here, so AWS's own latency is not measured, only what bakehouse and packer add.

Each measurement is the median of N runs (default 5). Every repository is generated under
$BAKEHOUSE_BENCH_DIR (default /tmp/bakehouse-bench) from this checkout's built-in templates and
packages/, on a tiny busybox base baked once. Results print as Markdown; copy them, with
the machine, into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT / "lib"))

from bakehouse.decide import Planner  # noqa: E402
from bakehouse.definitions import load_bakes  # noqa: E402
from bakehouse.project import BUILT_IN_TEMPLATES  # noqa: E402
from bakehouse.epoch import now_utc  # noqa: E402
from bakehouse.project import Project  # noqa: E402
from bakehouse.providers import open_providers  # noqa: E402
from bakehouse.fingerprint import compact  # noqa: E402
from bakehouse.registry import ImageRecord  # noqa: E402
from bakehouse.providers.aws.registry import BAKE_TAG, BASE_TAG, CREATED_TAG, IMAGE_TAG, KEY_TAG, summary_tags  # noqa: E402

WORK = Path(os.environ.get("BAKEHOUSE_BENCH_DIR", "/tmp/bakehouse-bench"))
BASE = """\
description = "tiny base for benchmarks"
template = "local-base.pkr.hcl.j2"

[source]
suite = "bookworm"
variant = "busybox"
"""
SERVICE = """\
description = "service {n}"
template = "local-service.pkr.hcl.j2"
base = "base"
packages = ["dist/hello-svc_*.deb"]

[vars]
service = "svc{n}"
"""


AWS_REGIONS = ["us-east-1", "us-west-2", "eu-west-1"]
AWS_BASE = """\
description = "AWS base for benchmarks"
provider = "aws"
template = "amazon-ebs.pkr.hcl.j2"
regions = {regions}
communicator = "none"
os = "amzn2"

[source]
name = "amzn2-ami-hvm-*-x86_64-gp2"
owners = ["137112412989"]
"""
AWS_SERVICE = """\
description = "AWS service {n}"
provider = "aws"
template = "amazon-ebs.pkr.hcl.j2"
base = "base"
regions = {regions}
packages = ["dist/hello-svc_*.deb"]
communicator = "none"
os = "amzn2"

[vars]
service = "svc{n}"
"""


@dataclass(frozen=True)
class Sample:
    seconds: float
    max_rss_mib: float


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Sample:
    """Run a command to completion; its wall time and peak resident memory."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {})},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.stdout.read() if process.stdout else b""
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0, 1):  # 1: doit plan, "something would bake"
        raise SystemExit(f"{' '.join(argv)} failed in {cwd}:\n{output.decode(errors='replace')[-3000:]}")
    return Sample(seconds, usage.ru_maxrss / 1024)


def median_of(runs: int, measure: Callable[[], Sample]) -> Sample:
    samples = [measure() for _ in range(runs)]
    return Sample(statistics.median(s.seconds for s in samples), statistics.median(s.max_rss_mib for s in samples))


def doit(*args: str) -> list[str]:
    return [sys.executable, "-m", "doit", *args]


def new_repo(name: str, base: str) -> Path:
    """A repository with this checkout's templates and packages, and `base` as bakes/base.toml."""
    repo = WORK / name
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    shutil.copytree(PROJECT / "packages", repo / "packages")
    shutil.copy(PROJECT / "dodo.py", repo / "dodo.py")
    (repo / "bakes").mkdir()
    (repo / "bakes" / "base.toml").write_text(base)
    return repo


def base_repo() -> Path:
    """A repository whose tiny base is baked (once; reused by later runs of the benchmarks
    while this checkout's built-in templates are the ones it was baked with)."""
    repo = WORK / "base-repo"
    if not _baked_with_these_templates(repo):
        run(doit("bake:base"), new_repo("base-repo", BASE))
        _note_templates(repo)
    return repo


def _templates_now() -> str:
    folder = BUILT_IN_TEMPLATES
    return json.dumps({str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
                       for path in sorted(folder.rglob("*")) if path.is_file()}, sort_keys=True)


def _baked_with_these_templates(repo: Path) -> bool:
    stamp = repo / ".bench-templates.json"
    return (repo / ".bakehouse" / "records" / "base").is_dir() and stamp.is_file() and stamp.read_text() == _templates_now()


def _note_templates(repo: Path) -> None:
    (repo / ".bench-templates.json").write_text(_templates_now())


def repo_with_services(name: str, services: int) -> Path:
    repo = WORK / name
    shutil.rmtree(repo, ignore_errors=True)
    # without the layer cache: it holds device nodes (dev/zero...), which a copy would read forever
    shutil.copytree(base_repo(), repo, symlinks=True, ignore=shutil.ignore_patterns(".doit.db*", "build", "layers"))
    for n in range(1, services + 1):
        (repo / "bakes" / f"svc{n}.toml").write_text(SERVICE.format(n=n))
    run(doit("package"), repo)
    return repo


def seed_registry(repo: Path) -> None:
    """Record an image of every service's current key without baking it: deciding costs the
    same however the images were made, and baking hundreds would take the benchmark hours."""
    project = Project.at(repo)
    graph = load_bakes(project)
    planner = Planner(project, graph, open_providers(project, graph), now_utc())
    registry = planner.provider_of(planner.graph.names[0]).registry
    for bake in planner.graph.bakes:
        decision = planner.decide(bake.name)
        if decision.up_to_date or decision.key is None:
            continue
        image_id = f"{bake.name}-seeded-{decision.key[:8]}"
        artifact = registry.image_path(bake.name, image_id)
        artifact.mkdir(parents=True, exist_ok=True)
        (artifact / "index.json").write_text("{}")  # seeded for the deciding benchmark
        registry.record(ImageRecord(
            image_id=image_id, bake=bake.name, key=decision.key, created="2026-01-01T00:00:00+00:00",
            provider="local", locations={"local": str(artifact.relative_to(project.state_dir))},
            base_image=None if decision.base_image is None else decision.base_image.image_id,
            packages={p.name: p.version for p in decision.packages}, summary=decision.summary or {},
        ), io.StringIO())


def deciding(runs: int) -> list[str]:
    lines = ["| services | `doit list` | no-op `doit` | `doit plan` | no-op / list | plan per bake | peak RSS (plan) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for services in (10, 100, 500):
        repo = repo_with_services(f"deciding-{services}", services)
        seed_registry(repo)
        assert run(doit("plan"), repo).seconds >= 0  # warm the page cache
        listing = median_of(runs, lambda: run(doit("list"), repo))
        noop = median_of(runs, lambda: run(doit(), repo))
        planned = median_of(runs, lambda: run(doit("plan"), repo))
        per_bake_ms = planned.seconds / (services + 1) * 1000
        lines.append(
            f"| {services} | {listing.seconds:.2f} s | {noop.seconds:.2f} s | {planned.seconds:.2f} s | "
            f"{noop.seconds / listing.seconds:.2f}x | {per_bake_ms:.1f} ms | {planned.max_rss_mib:.0f} MiB |"
        )
    return lines


def overhead(runs: int) -> list[str]:
    lines = ["| where | `packer build` of the rendered template | `doit bake:svc1 --rebake` | ratio | added |",
             "| --- | ---: | ---: | ---: | ---: |"]
    local_repo = repo_with_services("overhead", 1)
    env = Moto.shared().fresh()
    aws = aws_repo("aws-overhead", 1, AWS_REGIONS[:1])
    for where, repo, env in (("local", local_repo, {}), ("moto", aws, env)):
        run(doit("bake"), repo, env)
        bakehouse = median_of(runs, lambda: run(doit("bake:svc1", "--rebake"), repo, env))
        direct = _direct_packer_copy(repo, where)
        count = iter(range(10**6))
        packer = median_of(runs, lambda: run(["packer", "build", "-color=false", _unique(direct, next(count))], direct, env))
        lines.append(f"| {where} | {packer.seconds:.2f} s | {bakehouse.seconds:.2f} s | "
                     f"{bakehouse.seconds / packer.seconds:.2f} | {bakehouse.seconds - packer.seconds:.2f} s |")
    return lines


def _direct_packer_copy(repo: Path, where: str) -> Path:
    """The template bakehouse rendered for its last bake of svc1, with its outputs moved aside."""
    rendered = max((repo / "build" / "svc1").glob("*.pkr.hcl"), key=lambda p: p.stat().st_mtime)
    direct = WORK / f"overhead-direct-{where}"
    shutil.rmtree(direct, ignore_errors=True)
    direct.mkdir()
    text = rendered.read_text()
    text = re.sub(r'"OUTPUT=[^"]+"', f'"OUTPUT={direct}/image"', text)
    text = re.sub(r'(files\s*=\s*\[)"[^"]+"', rf'\1"{direct}/image"', text)
    text = re.sub(r'(output\s*=\s*)"[^"]+"', rf'\1"{direct}/manifest.json"', text)
    (direct / "template.pkr.hcl").write_text(text)
    return direct


def _unique(direct: Path, n: int) -> str:
    """A copy of the template whose AMI name and image path are new (AWS refuses a second AMI
    of one name; an OCI layout is written once)."""
    text = (direct / "template.pkr.hcl").read_text()
    text = re.sub(r'(ami_name\s*=\s*)"([^"]+)"', rf'\1"\2-direct{n}"', text)
    text = text.replace(f"{direct}/image", f"{direct}/image{n}")
    path = direct / f"t{n}.pkr.hcl"
    path.write_text(text)
    return path.name


WAIT_SECONDS = 3
WAITING_TEST = f"#!/bin/sh\n# stands in for what an AMI bake waits on (an instance, a snapshot)\nsleep {WAIT_SECONDS}\n"


def waiting_repo() -> Path:
    """8 services whose bake waits WAIT_SECONDS inside the provisioner (a test script that sleeps)."""
    repo = repo_with_services("parallel-waiting", 8)
    (repo / "templates" / "scripts").mkdir(parents=True, exist_ok=True)
    (repo / "templates" / "scripts" / "wait.sh").write_text(WAITING_TEST)
    for n in range(1, 9):
        bake = repo / "bakes" / f"svc{n}.toml"
        bake.write_text('tests = ["scripts/wait.sh"]\n' + bake.read_text())
    return repo


def parallel(runs: int) -> list[str]:
    lines = ["| where | `doit -n 1` (8 bakes) | `doit -n 4` | speed-up |", "| --- | ---: | ---: | ---: |"]
    repos = (("local", repo_with_services("parallel", 8), {}), *_aws_parallel_repo(),
             (f"local, each bake waits {WAIT_SECONDS} s", waiting_repo(), {}))
    for where, repo, env in repos:
        run(doit("bake"), repo, env)
        every = [arg for n in range(1, 9) for arg in (f"bake:svc{n}", "--rebake")]
        one = median_of(runs, lambda: run(doit("-n", "1", *every), repo, env))
        four = median_of(runs, lambda: run(doit("-n", "4", *every), repo, env))
        lines.append(f"| {where} | {one.seconds:.2f} s | {four.seconds:.2f} s | {one.seconds / four.seconds:.2f}x |")
    return lines


def runners(runs: int) -> list[str]:
    """N runners over 1 base + M services on moto, with shared state on its S3."""
    import boto3

    lines = ["| scenario | runners | bakes | wall time | bakes per minute | duplicate bakes |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for scenario, count, services in (("every runner runs `doit`", 3, 4), ("fan-out: `doit bake:svcN` per runner", 4, 4)):
        walls, duplicates = [], 0
        for attempt in range(runs):
            env = {**Moto.shared().fresh(), "AWS_ENDPOINT_URL_S3": Moto.shared().url}
            os.environ.update(env)
            boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="bench-state")
            repo = aws_repo(f"runners-{attempt}", services, AWS_REGIONS[:1])
            (repo / "bakehouse.toml").write_text('[shared]\ns3 = "s3://bench-state/x"\nregion = "us-east-1"\nlease = "10s"\n')
            clones = []
            for n in range(count):
                clone = repo.parent / f"{repo.name}-runner{n}"
                shutil.rmtree(clone, ignore_errors=True)
                shutil.copytree(repo, clone, symlinks=True)
                clones.append(clone)
            targets = [[] for _ in clones] if scenario.startswith("every") else [[f"bake:svc{n + 1}"] for n in range(count)]
            start = time.perf_counter()
            processes = [subprocess.Popen(doit(*target), cwd=clone, env={**os.environ, **env, "BAKEHOUSE_RUNNER": f"r{n}"},
                                          stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
                         for n, (clone, target) in enumerate(zip(clones, targets))]
            failed = [process.wait() for process in processes]
            walls.append(time.perf_counter() - start)
            if any(failed):
                raise SystemExit(f"a runner failed in {repo}")
            ec2 = boto3.client("ec2", region_name=AWS_REGIONS[0])
            tagged = ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag-key", "Values": [BAKE_TAG]}])["Images"]
            per_bake: dict[str, int] = {}
            for image in tagged:
                bake = next(t["Value"] for t in image["Tags"] if t["Key"] == BAKE_TAG)
                per_bake[bake] = per_bake.get(bake, 0) + 1
            duplicates += sum(n - 1 for n in per_bake.values())
        bakes = 1 + services
        wall = statistics.median(walls)
        lines.append(f"| {scenario} | {count} | {bakes} | {wall:.1f} s | {bakes / wall * 60:.1f} | {duplicates} |")
    return lines


def _aws_parallel_repo() -> list[tuple[str, Path, dict[str, str]]]:
    env = Moto.shared().fresh()
    return [("moto", aws_repo("aws-parallel", 8, AWS_REGIONS[:1]), env)]


def shipped_repo(name: str) -> Path:
    """The shipped bakes as they are (the real minbase base from the host's mirror), baked once."""
    repo = WORK / name
    if not _baked_with_these_templates(repo):
        shutil.rmtree(repo, ignore_errors=True)
        repo.mkdir(parents=True)
        for part in ("packages", "bakes"):
            shutil.copytree(PROJECT / part, repo / part)
        shutil.copy(PROJECT / "dodo.py", repo / "dodo.py")
        run(doit(), repo)
        _note_templates(repo)
    return repo


def local(runs: int) -> list[str]:
    repo = shipped_repo("local-minbase")
    run(doit(), repo)
    warm = median_of(runs, lambda: run(doit("bake:hello", "--rebake"), repo))
    cache = repo / ".bakehouse" / "cache" / "layers"

    def cold() -> Sample:
        shutil.rmtree(cache, ignore_errors=True)
        return run(doit("bake:hello", "--rebake"), repo)

    cold_bake = median_of(runs, cold)
    sizes = {}
    for bake in ("base", "hello"):
        record = max((repo / ".bakehouse" / "records" / bake).glob("*.json"), key=lambda p: p.stat().st_mtime)
        layout = repo / ".bakehouse" / json.loads(record.read_text())["locations"]["local"]
        blobs = [path.stat() for path in (layout / "blobs" / "sha256").iterdir()]
        sizes[bake] = (sum(b.st_size for b in blobs if b.st_nlink == 1) / 2**20, sum(b.st_size for b in blobs) / 2**20)
    unpacked = sum(p.lstat().st_size for p in cache.rglob("*")) / 2**20
    return [
        "| what | value |", "| --- | ---: |",
        f"| service bake on the shipped minbase base, layer cache warm (`doit bake:hello --rebake`) | {warm.seconds:.2f} s |",
        f"| the same, layer cache cold (the first service bake after a base bake) | {cold_bake.seconds:.2f} s |",
        f"| base image (minbase + ca-certificates): one gzip layer | {sizes['base'][1]:.1f} MiB |",
        f"| service image: its own blobs (layer, config, manifest) / with the base's layer | "
        f"{sizes['hello'][0] * 1024:.0f} KiB / {sizes['hello'][1]:.1f} MiB |",
        f"| the base's layer unpacked in the cache | {unpacked:.0f} MiB |",
    ]


def soak(runs: int) -> list[str]:
    """The README's main job's service bake, over and over, on the shipped base."""
    rounds = int(os.environ.get("BAKEHOUSE_SOAK_RUNS", "100"))
    repo = shipped_repo("soak")
    seconds, failures = [], []
    for n in range(1, rounds + 1):
        start = time.perf_counter()
        result = subprocess.run(doit("bake:hello", "--rebake"), cwd=repo, capture_output=True, text=True)
        seconds.append(time.perf_counter() - start)
        if result.returncode != 0:
            failures.append(f"run {n}: exit {result.returncode}: {result.stdout[-400:]}")
        print(f"soak: {n}/{rounds}, {len(failures)} failed", file=sys.stderr, flush=True)
        if n % 10 == 0:  # keep the disk: images of earlier rounds are not needed
            for image in sorted((repo / ".bakehouse" / "images" / "hello").iterdir())[:-1]:
                shutil.rmtree(image)
    lines = [
        "| what | value |", "| --- | ---: |",
        f"| `doit bake:hello --rebake` on the shipped minbase base, passed | {rounds - len(failures)}/{rounds} |",
        f"| median time per bake | {statistics.median(seconds):.2f} s |",
        f"| slowest bake | {max(seconds):.2f} s |",
    ]
    return lines + [f"\n    {failure}" for failure in failures]


class Moto:
    """moto's EC2 server (tests/moto_ec2.py) on 127.0.0.1, started once, stopped by its pid."""

    _shared: Moto | None = None

    def __init__(self) -> None:
        import socket
        import urllib.request

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        log = (WORK / "moto.log").open("ab")
        self.process = subprocess.Popen([sys.executable, str(PROJECT / "tests" / "moto_ec2.py"), str(self.port)],
                                        stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("moto's server did not start; see moto.log")
                time.sleep(0.1)

    @classmethod
    def shared(cls) -> Moto:
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def fresh(self) -> dict[str, str]:
        """Forget every AMI; the environment that points bakehouse, boto3 and packer here."""
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"), timeout=30)
        env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_ENDPOINT_URL_EC2": self.url, "AWS_EC2_METADATA_DISABLED": "true"}
        os.environ.update(env)
        return env

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def aws_repo(name: str, services: int, regions: list[str]) -> Path:
    repo = new_repo(name, AWS_BASE.format(regions=json.dumps(regions)))
    for n in range(1, services + 1):
        (repo / "bakes" / f"svc{n}.toml").write_text(AWS_SERVICE.format(n=n, regions=json.dumps(regions)))
    run(doit("package"), repo)
    return repo


def seed_amis(repo: Path) -> None:
    """Register, with bakehouse's tags, an AMI of every service's current key in each region,
    without baking it (as seed_registry does for local images)."""
    import boto3

    project = Project.at(repo)
    graph = load_bakes(project)
    planner = Planner(project, graph, open_providers(project, graph), now_utc())
    clients = {region: boto3.client("ec2", region_name=region) for region in AWS_REGIONS}
    for bake in planner.graph.bakes:
        decision = planner.decide(bake.name)
        if decision.up_to_date or decision.key is None or decision.summary is None:
            continue
        image_id = f"{bake.name}-seeded-{decision.key[:8]}"
        tags = {BAKE_TAG: bake.name, IMAGE_TAG: image_id, KEY_TAG: decision.key,
                CREATED_TAG: "2026-01-01T00:00:00+00:00", **summary_tags(compact(decision.summary))}
        if decision.base_image is not None:
            tags[BASE_TAG] = decision.base_image.image_id
        for region in planner.provider_of(bake.name).places(bake):
            ami = clients[region].register_image(Name=image_id, RootDeviceName="/dev/xvda")["ImageId"]
            clients[region].create_tags(Resources=[ami], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])


def _moto_listing_seconds() -> float:
    """How long moto itself takes to answer a run's registry listings (one warm client per
    region, the same request bakehouse makes): the part of a run that is the emulator's."""
    import boto3

    clients = [boto3.client("ec2", region_name=region) for region in AWS_REGIONS]
    for client in clients:
        client.describe_regions()  # connect first: only the listing is timed
    start = time.perf_counter()
    for client in clients:
        client.describe_images(Owners=["self"], Filters=[{"Name": "tag-key", "Values": [BAKE_TAG]}])
    return time.perf_counter() - start


def aws_deciding(runs: int) -> list[str]:
    moto = Moto.shared()
    lines = ["| services | `doit list` | no-op `doit` | `doit plan` | no-op / list | of which moto answering "
             "| plan per bake | peak RSS (plan) | DescribeImages per region (no-op `doit`) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for services in (10, 100, 500):
        env = moto.fresh()
        repo = aws_repo(f"aws-deciding-{services}", services, AWS_REGIONS)
        run(doit("bake:base"), repo, env)
        seed_amis(repo)
        calls = WORK / "aws-calls.log"
        calls.unlink(missing_ok=True)
        run(doit(), repo, {**env, "BAKEHOUSE_AWS_CALL_LOG": str(calls)})
        per_region: dict[str, int] = {}
        for line in calls.read_text().splitlines():
            _, operation, region, *_ = line.split(" ", 3)
            if operation == "DescribeImages":
                per_region[region] = per_region.get(region, 0) + 1
        listing = median_of(runs, lambda: run(doit("list"), repo, env))
        noop = median_of(runs, lambda: run(doit(), repo, env))
        planned = median_of(runs, lambda: run(doit("plan"), repo, env))
        moto_answering = statistics.median(_moto_listing_seconds() for _ in range(runs))
        per_bake_ms = planned.seconds / (services + 1) * 1000
        lines.append(
            f"| {services} | {listing.seconds:.2f} s | {noop.seconds:.2f} s | {planned.seconds:.2f} s | "
            f"{noop.seconds / listing.seconds:.2f}x | {moto_answering:.2f} s | {per_bake_ms:.1f} ms | "
            f"{planned.max_rss_mib:.0f} MiB | {', '.join(f'{r}: {n}' for r, n in sorted(per_region.items()))} |"
        )
    return lines


def _serve(repo: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`doit serve` on a free loopback port, up and answering; stopped by its pid by the caller."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = subprocess.Popen(doit("serve", "--port", str(port)), cwd=repo, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).read()
            return server, port
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("doit serve did not start")


def _requests_per_second(url: str, clients: int, seconds: float = 5.0) -> float:
    done = [0] * clients
    stop_at = time.monotonic() + seconds

    def client(slot: int) -> None:
        while time.monotonic() < stop_at:
            urllib.request.urlopen(url, timeout=60).read()
            done[slot] += 1

    threads = [threading.Thread(target=client, args=(slot,)) for slot in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / seconds


def serve(runs: int) -> list[str]:
    """doit serve on 100 services (registry seeded, as for deciding): GET /amis requests per
    second, and what a POST of an up-to-date bake costs next to `doit plan` of that bake."""
    repo = repo_with_services("serve-100", 100)
    seed_registry(repo)
    server, port = _serve(repo)
    try:
        url = f"http://127.0.0.1:{port}"
        one, four = _requests_per_second(f"{url}/amis", 1), _requests_per_second(f"{url}/amis", 4)

        def post() -> Sample:
            start = time.perf_counter()
            request = urllib.request.Request(f"{url}/bake/svc1", method="POST")
            answer = json.loads(urllib.request.urlopen(request, timeout=60).read())
            assert answer["state"] == "up to date", answer
            return Sample(time.perf_counter() - start, 0)

        posted = median_of(runs, post)
        planned = median_of(runs, lambda: run(doit("plan", "svc1"), repo))
    finally:
        server.terminate()
        server.wait(timeout=20)
    return ["| bakes | `GET /amis`, 1 client | 4 clients | `POST /bake/svc1` (up to date) | `doit plan svc1` | added |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| 101 | {one:.1f} req/s | {four:.1f} req/s | {posted.seconds * 1000:.0f} ms | "
            f"{planned.seconds * 1000:.0f} ms | {(posted.seconds - planned.seconds) * 1000:+.0f} ms |"]


def interrupts(runs: int) -> list[str]:
    """Ctrl-C anywhere in the shipped bakes, on a loaded machine (tests/interrupting.py)."""
    sys.path.insert(0, str(PROJECT / "tests"))
    from interrupting import interrupt_at_random, loaded, timed_run

    count = int(os.environ.get("BAKEHOUSE_INTERRUPTS", "20"))
    repo = shipped_repo("interrupts")
    lines = ["| bake | Ctrl-C's | landed mid-bake | left something or said it wrong | bake alone |",
             "| --- | ---: | ---: | ---: | ---: |"]
    failures = []
    with loaded(2):
        for target in ("bake:base", "bake:hello"):
            longest = timed_run(repo, target)
            outcomes = interrupt_at_random(repo, target, WORK / "interrupts-scratch", count, longest, seed=1)
            bad = [outcome for outcome in outcomes if outcome.problems]
            failures += [f"{target} after {o.after:.2f}s: {o.problems[0]}" for o in bad]
            lines.append(f"| `doit {target} --rebake` | {count} | {sum(o.code != 0 for o in outcomes)} | "
                         f"{len(bad)} | {longest:.1f} s |")
    return lines + [f"\n    {failure}" for failure in failures]


SECTIONS = {"deciding": deciding, "aws-deciding": aws_deciding, "overhead": overhead, "parallel": parallel,
            "local": local, "runners": runners, "serve": serve}
NAMED_ONLY = {"soak": soak, "interrupts": interrupts}  # minutes long, and downloads the real base: run when asked for


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 2**20
    packer = subprocess.run(["packer", "version"], capture_output=True, text=True).stdout.strip()
    return (f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, {platform.platform()}, "
            f"Python {platform.python_version()}, {packer}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("sections", nargs="*", choices=[[], *SECTIONS, *NAMED_ONLY], default=[], metavar="SECTION",
                        help=f"any of: {', '.join([*SECTIONS, *NAMED_ONLY])} (default: {', '.join(SECTIONS)})")
    args = parser.parse_args()
    print(f"Machine: {machine()}; median of {args.runs} runs\n")
    try:
        for name in args.sections or list(SECTIONS):
            print(f"## {name}\n")
            print("\n".join({**SECTIONS, **NAMED_ONLY}[name](args.runs)) + "\n", flush=True)
    finally:
        if Moto._shared is not None:
            Moto._shared.stop()


if __name__ == "__main__":
    main()
