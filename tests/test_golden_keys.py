"""The content keys users' images are recorded under, pinned: a change to the code that moves
a key rebakes every image of that bake in every user's account, so it must be deliberate.

`doit plan --json` of the shipped example and of the shipped AWS example (on moto), with the
clock held at one instant, first with no images, then with the base image recorded (so the
service's key, which names its base image, is fixed too), must equal tests/golden/plan.json.
When a key is meant to change (a new key schema, a change to what a key holds), regenerate
the file and say so in the commit:

    BAKEHOUSE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden_keys.py

tests/golden/plan-schema1.json holds the keys bakehouse 0.1 (key schema 1) gave the same
inputs: images recorded under them must still be up to date after an upgrade.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from helpers import PROJECT, SECRET, ec2, run_doit, write

GOLDEN = Path(__file__).parent / "golden" / "plan.json"
TEMPLATES = Path(__file__).parent / "golden" / "templates"
SCHEMA1 = json.loads((Path(__file__).parent / "golden" / "plan-schema1.json").read_text())
CLOCK = {"BAKEHOUSE_NOW": "2026-11-25T12:00:00+00:00"}
CREATED = "2026-11-25T12:00:00.000000+00:00"
REGIONS = ("us-east-1", "us-west-2")


def shipped_repo(root: Path, example: Path) -> Path:
    """The shipped bakes and packages, as a fresh clone has them, with the templates as they
    were when the keys were recorded (tests/golden/templates): an edit of a shipped template
    changes keys as any template edit does, and this test pins what the code does with them."""
    shutil.copytree(TEMPLATES, root / "templates")
    shutil.copytree(PROJECT / "packages" / "hello-svc", root / "packages" / "hello-svc")
    shutil.copytree(example / "bakes", root / "bakes")
    shutil.copy(example / "dodo.py", root / "dodo.py")
    return root


def plan(repo: Path, env: dict[str, str] | None = None, status: int = 1) -> Any:
    result = run_doit(repo, "plan", "--json", env={**CLOCK, **(env or {})})
    assert result.returncode == status, result.output
    return json.loads(result.stdout)


def key_of(found: Any, bake: str) -> str:
    return next(row["key"] for row in found["bakes"] if row["bake"] == bake)


def plant_local_image(repo: Path, bake: str, image_id: str, key: str, schema: int, base: str | None = None) -> None:
    """An image in the local store, in the store's documented format (a record and its OCI
    layout; only the record is read when planning, and that the layout has an index)."""
    state = repo / ".bakehouse"
    write(state / "images" / bake / image_id / "index.json", "{}")
    record = {
        "image_id": image_id, "bake": bake, "key": key, "created": CREATED, "provider": "local",
        "locations": {"local": f"images/{bake}/{image_id}"}, "base_image": base,
        "packages": {}, "summary": {"schema": schema}, "log": None, "name": None, "sequence": 1,
    }
    write(state / "records" / bake / f"{image_id}.json", json.dumps(record))


def plant_amis(env: dict[str, str], bake: str, image_id: str, key: str, schema: int) -> None:
    """AMIs of one image in both regions, tagged as bakehouse tags what it bakes."""
    tags = {"bakehouse:bake": bake, "bakehouse:image": image_id, "bakehouse:key": key,
            "bakehouse:created": CREATED, "bakehouse:sequence": "1", "bakehouse:summary:0": json.dumps({"schema": schema})}
    for region in REGIONS:
        client = ec2(env, region)
        ami = client.register_image(Name=f"{image_id}-{region}", RootDeviceName="/dev/xvda")["ImageId"]
        client.create_tags(Resources=[ami], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])


def moto_env(moto_url: str) -> dict[str, str]:
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"), timeout=10)
    return {
        "AWS_ACCESS_KEY_ID": "AKIAMOTOTESTKEY", "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_EC2": moto_url,
        "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory, moto_url: str) -> dict[str, Any]:
    local = shipped_repo(tmp_path_factory.mktemp("local"), PROJECT)
    found = {"local, no images": plan(local)}
    plant_local_image(local, "base", "base-golden", key_of(found["local, no images"], "base"), schema=2)
    found["local, one base image"] = plan(local)

    aws = shipped_repo(tmp_path_factory.mktemp("aws"), PROJECT / "examples" / "aws")
    env = moto_env(moto_url)
    found["aws on moto, no images"] = plan(aws, env)
    plant_amis(env, "aws-base", "aws-base-golden", key_of(found["aws on moto, no images"], "aws-base"), schema=2)
    found["aws on moto, one base image"] = plan(aws, env)
    for case in found.values():  # AMI ids are moto's random ones: the image ids are what count
        for row in case["bakes"]:
            row["locations"] = sorted(row["locations"])
    if os.environ.get("BAKEHOUSE_UPDATE_GOLDEN"):
        write(GOLDEN, json.dumps(found, indent=2, sort_keys=True) + "\n")
    return found


CASES = ["local, no images", "local, one base image", "aws on moto, no images", "aws on moto, one base image"]


@pytest.mark.parametrize("case", CASES)
def test_the_plan_and_its_keys_match_the_recorded_ones(plans: dict[str, Any], case: str) -> None:
    assert plans[case] == json.loads(GOLDEN.read_text())[case]


def test_every_bake_with_a_decidable_key_has_one(plans: dict[str, Any]) -> None:
    """The golden file pins real keys, not a plan that failed to compute them."""
    for case, bakes in [(CASES[0], ["base"]), (CASES[1], ["base", "hello"]), (CASES[2], ["aws-base"]),
                        (CASES[3], ["aws-base", "aws-hello"])]:
        assert all(len(key_of(plans[case], bake) or "") == 64 for bake in bakes), plans[case]


def test_images_recorded_under_key_schema_1_stay_up_to_date_after_an_upgrade(tmp_path: Path, moto_url: str) -> None:
    local = shipped_repo(tmp_path / "local", PROJECT)
    old = SCHEMA1["local, one base image"]
    plant_local_image(local, "base", "base-20261125T120000Z-golden", key_of(old, "base"), schema=1)
    plant_local_image(local, "hello", "hello-old", key_of(old, "hello"), schema=1, base="base-20261125T120000Z-golden")
    rows = plan(local, status=0)["bakes"]
    assert [(row["bake"], row["action"], row["image"]) for row in rows] == [
        ("base", "keep", "base-20261125T120000Z-golden"), ("hello", "keep", "hello-old"),
    ]

    aws = shipped_repo(tmp_path / "aws", PROJECT / "examples" / "aws")
    env = moto_env(moto_url)
    plant_amis(env, "aws-base", "aws-base-old", key_of(SCHEMA1["aws on moto, no images"], "aws-base"), schema=1)
    rows = plan(aws, env)["bakes"]
    assert [(row["bake"], row["action"], row["image"]) for row in rows] == [
        ("aws-base", "keep", "aws-base-old"), ("aws-hello", "bake", None),
    ]
