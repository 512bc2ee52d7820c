"""Baker's own path, first steps: the Amazon Linux 2023 example (examples/aws-al2023/) plans
and bakes against moto's EC2 server (moto stands in for AWS: no AWS account here; with
communicator = "none" nothing runs on its instances), its service installing an RPM built
here, and packages of the other kind are refused in one line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from conftest import MOTO_VARIANT
from helpers import PROJECT, amis, provenance_statements, run_doit, write

EXAMPLE = PROJECT / "examples" / "aws-al2023"
REGIONS = ("us-east-1", "us-west-2")


def al2023_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns(".doit.db*", ".bakehouse", "dist", "build"))
    for bake in (repo / "bakes").glob("*.toml"):
        bake.write_text(MOTO_VARIANT + bake.read_text())
    return repo


def test_the_amazon_linux_example_bakes_an_rpm_service_and_plans_a_version_bump(tmp_path: Path, aws_env: dict[str, str]) -> None:
    repo = al2023_repo(tmp_path)
    plan = json.loads(run_doit(repo, "plan", "--json", env=aws_env).stdout)
    rows = {row["bake"]: row for row in plan["bakes"]}
    assert rows["al2023-base"]["reasons"] == ["no image yet"]

    run = run_doit(repo, env=aws_env, check=True)
    assert re.findall(r"^\[([\w-]+)\] baked ", run.output, re.M) == ["al2023-base", "al2023-hello"]
    assert (repo / "dist" / "hello-rpm-1.0.4-1.noarch.rpm").is_file()
    for region in REGIONS:
        (base,), (hello,) = amis(aws_env, region, "al2023-base"), amis(aws_env, region, "al2023-hello")
        assert base["tags"]["base_ami_name"].startswith("al2023-ami-2023.")  # Amazon's image, found by name
        assert hello["tags"]["base_ami_id"] == base["ImageId"]
    assert run_doit(repo, "plan", env=aws_env).output.splitlines()[-1] == "0 to bake, 2 up to date"
    sbom = json.loads(run_doit(repo, "images", "--sbom", "al2023-hello", env=aws_env, check=True).stdout)
    purls = [component["purl"] for component in sbom["components"]]  # partial: nothing ran on moto's instance
    assert "pkg:rpm/amzn/hello-rpm@1.0.4-1" in [purl.split("?")[0] for purl in purls], purls
    (statement,) = provenance_statements(repo, "al2023-hello", env=aws_env)
    uris = [dep["uri"] for dep in statement["predicate"]["buildDefinition"]["resolvedDependencies"]]
    assert "pkg:rpm/amzn/hello-rpm@1.0.4-1?arch=x86_64" in uris, uris

    spec = repo / "packages" / "hello-rpm" / "hello-rpm.spec"
    spec.write_text(spec.read_text().replace("Version: 1.0.4", "Version: 1.0.5"))
    plan = run_doit(repo, "plan", env=aws_env)
    assert plan.returncode == 1
    assert re.search(r"^al2023-hello +bake +\S+ +hello-rpm 1\.0\.4-1 -> 1\.0\.5-1$", plan.output, re.M), plan.output
    assert re.search(r"^al2023-base +keep ", plan.output, re.M), plan.output


def test_a_debian_package_on_an_rpm_image_is_one_line(tmp_path: Path, aws_env: dict[str, str]) -> None:
    repo = al2023_repo(tmp_path)
    shutil.copytree(PROJECT / "packages" / "hello-svc", repo / "packages" / "hello-svc")
    write(repo / "bakes" / "al2023-deb.toml", MOTO_VARIANT + 'provider = "aws"\ntemplate = "amazon-ebs.pkr.hcl.j2"\n'
          'base = "al2023-base"\nregions = ["us-east-1"]\npackages = ["dist/hello-svc_*.deb"]\n')
    plan = run_doit(repo, "plan", "al2023-deb", env=aws_env)
    assert plan.returncode == 2
    assert ("bakes/al2023-deb.toml: packages: hello-svc is a Debian package, and al2023-deb's aws images install "
            "RPM packages (.rpm)") in plan.output, plan.output


def test_a_service_cannot_say_another_package_format_than_its_base(tmp_path: Path) -> None:
    repo = al2023_repo(tmp_path)
    hello = repo / "bakes" / "al2023-hello.toml"
    hello.write_text('package_format = "deb"\n' + hello.read_text())
    run = run_doit(repo, "plan")
    assert run.returncode == 3
    assert run.output == ("ERROR: bakes/al2023-hello.toml: package_format: 'deb', but its base 'al2023-base' "
                          "installs 'rpm' packages; a service's images install what its base's do (leave it out)\n")


def test_spinnakers_bake_options_name_rpm_for_an_amazon_linux_base(tmp_path: Path, aws_env: dict[str, str]) -> None:
    from test_serve import start_server, stop

    repo = al2023_repo(tmp_path)
    server = start_server(repo, env=aws_env)
    try:
        options = server.get("/bakeOptions/aws")
    finally:
        stop(server)
    assert [(image["id"], image["packageType"]) for image in options["baseImages"]] == [("al2023", "RPM")]
