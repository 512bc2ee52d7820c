"""The content keys users' images are recorded under, pinned: a change to the code that moves
a key rebakes every image of that bake in every user's account, so it must be deliberate.

`doit plan --json` of the shipped example (an empty store, then a store holding one base
image) and of the shipped AWS example (on moto, no images yet), with the clock held at one
instant, must equal tests/golden/plan.json. When a key is meant to change (a new key schema,
a template edit), regenerate the file and say so in the commit:

    BAKEHOUSE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden_keys.py
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from helpers import PROJECT, run_doit, write

GOLDEN = Path(__file__).parent / "golden" / "plan.json"
CLOCK = {"BAKEHOUSE_NOW": "2026-11-25T12:00:00+00:00"}
BASE_IMAGE = "base-20261125T120000Z-golden"


def shipped_repo(root: Path, example: Path) -> Path:
    """The shipped bakes, templates and packages, as a fresh clone has them."""
    shutil.copytree(PROJECT / "templates", root / "templates")
    shutil.copytree(PROJECT / "packages", root / "packages")
    shutil.copytree(example / "bakes", root / "bakes")
    shutil.copy(example / "dodo.py", root / "dodo.py")
    return root


def plan(repo: Path, env: dict[str, str] | None = None) -> Any:
    result = run_doit(repo, "plan", "--json", env={**CLOCK, **(env or {})})
    assert result.returncode == 1, result.output  # something would bake
    return json.loads(result.stdout)


def plant_base_image(repo: Path, key: str) -> None:
    """One base image in the local store, written in the store's documented format (a record
    and its image file), so the service's key, which names its base image, is fixed too."""
    state = repo / ".bakehouse"
    image = state / "images" / "base" / f"{BASE_IMAGE}.tar.zst"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"not a real image: only its record is read when planning")
    record = {
        "image_id": BASE_IMAGE, "bake": "base", "key": key, "created": "2026-11-25T12:00:00.000000+00:00",
        "provider": "local", "locations": {"local": f"images/base/{BASE_IMAGE}.tar.zst"}, "base_image": None,
        "packages": {"ca-certificates": None}, "summary": {}, "log": None, "name": None, "sequence": 1,
    }
    write(state / "records" / "base" / f"{BASE_IMAGE}.json", json.dumps(record))


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory, moto_url: str) -> dict[str, Any]:
    local = shipped_repo(tmp_path_factory.mktemp("local"), PROJECT)
    found = {"local, no images": plan(local)}
    plant_base_image(local, found["local, no images"]["bakes"][0]["key"])
    found["local, one base image"] = plan(local)
    aws = shipped_repo(tmp_path_factory.mktemp("aws"), PROJECT / "examples" / "aws")
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"), timeout=10)
    found["aws on moto, no images"] = plan(aws, {
        "AWS_ACCESS_KEY_ID": "AKIAMOTOTESTKEY", "AWS_SECRET_ACCESS_KEY": "moto-secret",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_EC2": moto_url,
        "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    })
    if os.environ.get("BAKEHOUSE_UPDATE_GOLDEN"):
        write(GOLDEN, json.dumps(found, indent=2, sort_keys=True) + "\n")
    return found


@pytest.mark.parametrize("case", ["local, no images", "local, one base image", "aws on moto, no images"])
def test_the_plan_and_its_keys_match_the_recorded_ones(plans: dict[str, Any], case: str) -> None:
    golden = json.loads(GOLDEN.read_text())
    assert plans[case] == golden[case]


def test_every_bake_with_a_decidable_key_has_one(plans: dict[str, Any]) -> None:
    """The golden file pins real keys, not a plan that failed to compute them."""
    keys = {
        (case, row["bake"]): row["key"] for case, found in plans.items() for row in found["bakes"]
    }
    assert all(keys[(case, bake)] for case, bake in [
        ("local, no images", "base"), ("local, one base image", "base"), ("local, one base image", "hello"),
        ("aws on moto, no images", "aws-base"),
    ]), keys
