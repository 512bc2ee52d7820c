"""The rooms of the engine stay as docs/explanation/architecture.md draws them: the core
names no provider, imports run one way (no cycle), boto3 is imported in one module only, and
a repository of local bakes never loads it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from helpers import PROJECT

PACKAGE = PROJECT / "lib" / "bakehouse"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Every module of the package and the modules it imports when it is imported (imports
    inside functions, made when a provider is opened, and TYPE_CHECKING ones included)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")
                base = base[: len(base) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        graph[name] = found
    return graph


def test_the_core_imports_no_provider_module_and_only_the_aws_client_imports_boto3() -> None:
    graph = imports()
    for module, imported in graph.items():
        if module.startswith("bakehouse.providers."):
            continue
        named = sorted(i for i in imported if i.startswith("bakehouse.providers.") and i in graph)
        assert not named, f"{module} (core) imports {named}"
    boto = sorted(m for m, imported in graph.items() if any(i.split(".")[0] in ("boto3", "botocore") for i in imported))
    assert boto == ["bakehouse.providers.aws.client"]


def test_imports_form_no_cycle() -> None:
    graph = imports()
    edges = {m: {i for i in imported if i in graph and i != m} for m, imported in graph.items()}
    seen: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        if seen.get(module) == "done":
            return
        assert seen.get(module) != "open", "import cycle: " + " -> ".join(path[path.index(module):] + [module])
        seen[module] = "open"
        for imported in sorted(edges[module]):
            visit(imported, path + [module])
        seen[module] = "done"

    for module in sorted(edges):
        visit(module, [])


def test_reading_local_bakes_never_loads_boto3(tmp_path: Path) -> None:
    """`doit plan` on the shipped (local) example: what it imported, as Python reports it."""
    for folder in ("bakes", "packages"):
        subprocess.run(["cp", "-r", str(PROJECT / folder), str(tmp_path / folder)], check=True)
    (tmp_path / "dodo.py").write_text((PROJECT / "dodo.py").read_text())
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "doit", "plan", "--json"], cwd=tmp_path,
        capture_output=True, text=True,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert [row["provider"] for row in json.loads(result.stdout)["bakes"]] == ["local", "local"]
    loaded = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "bakehouse.providers.local.provider" in loaded
    assert not {"boto3", "botocore", "bakehouse.providers.aws.provider"} & loaded


def test_an_unknown_provider_is_one_line_listing_the_installed_ones(empty_repo: Path) -> None:
    (empty_repo / "bakes" / "base.toml").write_text('provider = "gcp"\ntemplate = "local-base.pkr.hcl.j2"\n')
    result = subprocess.run([sys.executable, "-m", "doit", "plan"], cwd=empty_repo, capture_output=True, text=True)
    assert result.returncode == 3
    assert result.stderr.strip().splitlines()[-1] == (
        "ERROR: bakes/base.toml: provider: 'gcp' is not one of local, aws"
    ), result.stderr
