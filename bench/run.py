"""bakehouse benchmarks: how fast it decides, and what it adds on top of packer.

    .venv/bin/python bench/run.py [--runs N] [SECTION ...]

Sections (all by default):
  deciding   `doit plan`, a no-op `doit` and `doit list` on generated repositories of
             1 base + 10 / 100 / 500 services, every image up to date; wall time, peak memory
  overhead   `doit bake:hello --rebake` against `packer build` of the same rendered template
  parallel   8 independent service bakes with `doit -n 4` against `doit -n 1`
  local      time to bake a service image on a cached minimal base, and image sizes

Each measurement is the median of N runs (default 5). Every repository is generated under
$BAKEHOUSE_BENCH_DIR (default /tmp/bakehouse-bench) from this checkout's templates/ and
packages/, on a tiny busybox base baked once. Results print as Markdown; copy them, with
the machine, into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT / "lib"))

from bakehouse.decide import Planner  # noqa: E402
from bakehouse.definitions import load_bakes  # noqa: E402
from bakehouse.epoch import now_utc  # noqa: E402
from bakehouse.project import Project  # noqa: E402
from bakehouse.providers import make_providers  # noqa: E402
from bakehouse.registry import ImageRecord  # noqa: E402

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


def base_repo() -> Path:
    """A repository whose tiny base is baked (once; reused by later runs of the benchmarks)."""
    repo = WORK / "base-repo"
    if not (repo / ".bakehouse" / "records" / "base").is_dir():
        shutil.rmtree(repo, ignore_errors=True)
        repo.mkdir(parents=True)
        for part in ("templates", "packages"):
            shutil.copytree(PROJECT / part, repo / part)
        shutil.copy(PROJECT / "dodo.py", repo / "dodo.py")
        (repo / "bakes").mkdir()
        (repo / "bakes" / "base.toml").write_text(BASE)
        run(doit("bake:base"), repo)
    return repo


def repo_with_services(name: str, services: int) -> Path:
    repo = WORK / name
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(base_repo(), repo, ignore=shutil.ignore_patterns(".doit.db*", "build"))
    for n in range(1, services + 1):
        (repo / "bakes" / f"svc{n}.toml").write_text(SERVICE.format(n=n))
    run(doit("package"), repo)
    return repo


def seed_registry(repo: Path) -> None:
    """Record an image of every service's current key without baking it: deciding costs the
    same however the images were made, and baking hundreds would take the benchmark hours."""
    project = Project.at(repo)
    planner = Planner(project, load_bakes(project), make_providers(project), now_utc())
    registry = planner.providers["local"].registry
    for bake in planner.graph.bakes:
        decision = planner.decide(bake.name)
        if decision.up_to_date or decision.key is None:
            continue
        image_id = f"{bake.name}-seeded-{decision.key[:8]}"
        artifact = registry.image_path(bake.name, image_id)
        artifact.parent.mkdir(parents=True, exist_ok=True)
        artifact.write_bytes(b"seeded for the deciding benchmark")
        registry.record(ImageRecord(
            image_id=image_id, bake=bake.name, key=decision.key, created="2026-01-01T00:00:00+00:00",
            provider="local", locations={"local": str(artifact.relative_to(project.state_dir))},
            base_image=None if decision.base_image is None else decision.base_image.image_id,
            packages={p.name: p.version for p in decision.packages}, summary=decision.summary or {},
        ))


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
    repo = repo_with_services("overhead", 1)
    run(doit("bake:svc1"), repo)
    bakehouse = median_of(runs, lambda: run(doit("bake:svc1", "--rebake"), repo))
    rendered = max((repo / "build" / "svc1").glob("*.pkr.hcl"), key=lambda p: p.stat().st_mtime)
    direct = WORK / "overhead-direct"
    shutil.rmtree(direct, ignore_errors=True)
    direct.mkdir()
    text = rendered.read_text()
    text = re.sub(r'"OUTPUT=[^"]+"', f'"OUTPUT={direct}/image.tar.zst"', text)
    text = re.sub(r'(files\s*=\s*\[)"[^"]+"', rf'\1"{direct}/image.tar.zst"', text)
    text = re.sub(r'(output\s*=\s*)"[^"]+"', rf'\1"{direct}/manifest.json"', text)
    (direct / "t.pkr.hcl").write_text(text)
    packer = median_of(runs, lambda: run(["packer", "build", "-color=false", "t.pkr.hcl"], direct))
    return [
        "| what | median |", "| --- | ---: |",
        f"| `packer build` of the rendered template | {packer.seconds:.2f} s |",
        f"| `doit bake:svc1 --rebake` | {bakehouse.seconds:.2f} s |",
        f"| ratio | {bakehouse.seconds / packer.seconds:.2f} |",
    ]


def parallel(runs: int) -> list[str]:
    template = repo_with_services("parallel", 8)

    def bake_all(jobs: int) -> Sample:
        repo = WORK / f"parallel-n{jobs}"
        shutil.rmtree(repo, ignore_errors=True)
        shutil.copytree(template, repo, ignore=shutil.ignore_patterns(".doit.db*"))
        return run(doit("-n", str(jobs), "bake"), repo)

    one = median_of(runs, lambda: bake_all(1))
    four = median_of(runs, lambda: bake_all(4))
    return [
        "| `doit -n 1 bake` (8 bakes) | `doit -n 4 bake` | speed-up |", "| ---: | ---: | ---: |",
        f"| {one.seconds:.2f} s | {four.seconds:.2f} s | {one.seconds / four.seconds:.2f}x |",
    ]


def local(runs: int) -> list[str]:
    repo = repo_with_services("local", 1)
    service = median_of(runs, lambda: run(doit("bake:svc1", "--rebake"), repo))
    records = sorted((repo / ".bakehouse" / "records").glob("*/*.json"))
    sizes = {}
    for record in records:
        data = json.loads(record.read_text())
        sizes[data["bake"]] = (repo / ".bakehouse" / data["locations"]["local"]).stat().st_size / 2**20
    return [
        "| what | value |", "| --- | ---: |",
        f"| bake a service image on the cached base (`doit bake:svc1 --rebake`) | {service.seconds:.2f} s |",
        f"| base image (busybox + dpkg), .tar.zst | {sizes['base']:.1f} MiB |",
        f"| service image, .tar.zst | {sizes['svc1']:.1f} MiB |",
    ]


SECTIONS = {"deciding": deciding, "overhead": overhead, "parallel": parallel, "local": local}


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
    parser.add_argument("sections", nargs="*", choices=[[], *SECTIONS], default=[])
    args = parser.parse_args()
    print(f"Machine: {machine()}; median of {args.runs} runs\n")
    for name in args.sections or list(SECTIONS):
        print(f"## {name}\n")
        print("\n".join(SECTIONS[name](args.runs)) + "\n", flush=True)


if __name__ == "__main__":
    main()
