"""Packer's amazon-chroot builder (Baker's way) on the Amazon Linux example. It builds on the EC2
instance packer runs on, which this machine is not, so a bake here can only be refused: in one
line, before packer runs, naming why. The rendered template is checked with `packer validate`
(tests/test_render.py); nothing here runs the builder itself. EC2's instance metadata service
is a stand-in on 127.0.0.1 (AWS_EC2_METADATA_SERVICE_ENDPOINT, as boto reads it), and moto is
EC2 (no AWS account here)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from helpers import amis, run_doit
from providers.aws.test_amazon_linux import al2023_repo
from test_serve import start_server, stop


class MetadataService(BaseHTTPRequestHandler):
    """IMDSv2 as an EC2 instance in `region` answers it: a token for a PUT, then metadata."""

    region = "eu-west-1"

    def do_PUT(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer("a-token" if self.path == "/latest/api/token" else None)

    def do_GET(self) -> None:  # noqa: N802
        known = {"/latest/meta-data/instance-id": "i-0123456789abcdef0",
                 "/latest/meta-data/placement/region": self.region}
        token_given = self.headers.get("X-aws-ec2-metadata-token") == "a-token"
        self._answer(known.get(self.path) if token_given else None)

    def _answer(self, body: str | None) -> None:
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write((body or "").encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metadata_service() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), MetadataService)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def chroot_repo(tmp_path: Path, multi_region: str = "copy") -> Path:
    repo = al2023_repo(tmp_path)
    for bake in (repo / "bakes").glob("*.toml"):
        text = bake.read_text().replace('template = "amazon-ebs.pkr.hcl.j2"', 'template = "amazon-chroot.pkr.hcl.j2"')
        bake.write_text(f'multi_region = "{multi_region}"\n' + text if multi_region else text)
    return repo


def test_off_ec2_a_chroot_bake_is_refused_in_one_line_before_packer_runs(tmp_path: Path, aws_env: dict[str, str]) -> None:
    repo = chroot_repo(tmp_path)
    # the metadata service is asked (aws_env disables it for boto3), and nothing listens there
    nothing = {**aws_env, "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9", "AWS_EC2_METADATA_DISABLED": "false"}
    plan = run_doit(repo, "plan", env=nothing)  # planning is fine anywhere: CI plans, an EC2 runner bakes
    assert plan.returncode == 1 and "al2023-base   bake" in plan.output, plan.output
    run = run_doit(repo, env=nothing)
    assert run.returncode != 0
    assert re.search(r"^bakes/al2023-base\.toml: amazon-chroot\.pkr\.hcl\.j2 builds with packer's amazon-chroot, which "
                     r"attaches the image's volume to the EC2 instance it runs on; this machine is not one \(no instance "
                     r"metadata at http://127\.0\.0\.1:9\): run this bake on an EC2 instance in us-east-1, or use "
                     r"amazon-ebs\.pkr\.hcl\.j2$", run.output, re.M), run.output
    assert "==> " not in run.output  # packer never ran
    assert amis(aws_env, "us-east-1", "al2023-base") == []


def test_on_an_instance_in_another_region_a_chroot_bake_is_refused(
        tmp_path: Path, aws_env: dict[str, str], metadata_service: str) -> None:
    repo = chroot_repo(tmp_path)
    on_ec2 = {**aws_env, "AWS_EC2_METADATA_SERVICE_ENDPOINT": metadata_service, "AWS_EC2_METADATA_DISABLED": "false"}
    run = run_doit(repo, env=on_ec2)
    assert re.search(r"^bakes/al2023-base\.toml: amazon-chroot\.pkr\.hcl\.j2 builds with packer's amazon-chroot on this "
                     r"instance \(i-0123456789abcdef0\), which is in eu-west-1; the bake builds in us-east-1: run it on an "
                     r"instance there, or put eu-west-1 first in regions$", run.output, re.M), run.output


def test_a_chroot_bake_in_several_regions_must_copy(tmp_path: Path, aws_env: dict[str, str]) -> None:
    repo = chroot_repo(tmp_path, multi_region="")
    plan = run_doit(repo, "plan", env=aws_env)
    assert ("bakes/al2023-base.toml: amazon-chroot.pkr.hcl.j2 builds with packer's amazon-chroot, on the EC2 instance "
            "bakehouse runs on, in its region only: set multi_region = \"copy\" (bake in us-east-1, copy to the others)"
            ) in plan.output, plan.output


def test_bakers_chroot_route_names_the_chroot_template_and_amis_lists_the_upstream_images(
        tmp_path: Path, aws_env: dict[str, str]) -> None:
    repo = chroot_repo(tmp_path)
    server = start_server(repo, env={**aws_env, "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9"})
    try:
        rows = {row["bake"]: row for row in server.get("/amis")["bakes"]}
        upstream = rows["al2023-base"]["upstream"]
        assert sorted(upstream) == ["us-east-1", "us-west-2"]
        for region in ("us-east-1", "us-west-2"):
            assert upstream[region]["name"].startswith("al2023-ami-2023.") and upstream[region]["id"].startswith("ami-")
        assert "upstream" not in rows["al2023-hello"]  # a service starts from its base
        status, answer, _ = server.request("POST", "/bake/amazon-ebs/hello-rpm/1.0.4-1/hvm")
        assert (status, answer) == (404, {"error": "template 'amazon-ebs': the bakes that install hello-rpm use amazon-chroot"})
        status, answer, _ = server.request("POST", "/bake/amazon-chroot/hello-rpm/1.0.4-1/hvm")
        assert status == 200
        assert "this machine is not one (no instance metadata at http://127.0.0.1:9)" in str(answer), answer
    finally:
        stop(server)
