"""Bad bake definitions: one clear line naming the file and key, a non-zero exit, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import run_doit, write

BASE = """\
template = "local-base.pkr.hcl.j2"
[source]
suite = "bookworm"
"""


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"base.toml": "template = \"local-base.pkr.hcl.j2\"\n[source\n"},
         "bakes/base.toml: invalid TOML: "),
        ({"base.toml": BASE + "pakages = []\n"},
         "bakes/base.toml: unknown key 'source.pakages' (did you mean 'packages'? It belongs above [source]"),
        ({"base.toml": "pakages = []\n" + BASE},
         "bakes/base.toml: unknown key 'pakages' (did you mean 'packages'?)"),
        ({"base.toml": "packages = \"curl\"\n" + BASE},
         "bakes/base.toml: packages must be a list of strings, not a string 'curl'"),
        ({"base.toml": "rebuild_every = \"weekly\"\n" + BASE},
         "bakes/base.toml: rebuild_every: 'weekly' is not one of day, week, month (did you mean 'week'?)"),
        ({"base.toml": BASE.replace("local-base", "local-bsae")},
         "bakes/base.toml: template: no template local-bsae.pkr.hcl.j2, built in or under templates/ (did you mean 'local-base.pkr.hcl.j2'?)"),
        ({"base.toml": BASE, "hello.toml": "template = \"local-service.pkr.hcl.j2\"\nbase = \"bsae\"\n"},
         "bakes/hello.toml: base: 'bsae' is not a bake in bakes/ (did you mean 'base'?)"),
        ({"a.toml": "template = \"local-service.pkr.hcl.j2\"\nbase = \"b\"\n",
          "b.toml": "template = \"local-service.pkr.hcl.j2\"\nbase = \"a\"\n"},
         "base cycle a -> b -> a"),
        ({"base.toml": "template = \"local-base.pkr.hcl.j2\"\n"},
         "bakes/base.toml: a bake needs either 'base' (another bake) or a [source] table"),
        ({"base.toml": "timeout = \"soon\"\n" + BASE},
         "bakes/base.toml: timeout: 'soon' is not a duration"),
        ({"base.toml": BASE + "variant = \"tiny\"\n"},
         "bakes/base.toml: source.variant: 'tiny' is not one of"),
        ({"Base.toml": BASE}, "bake name 'Base' must be lower-case"),
    ],
)
def test_a_bad_definition_is_one_clear_line(empty_repo: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        write(empty_repo / "bakes" / name, text)
    result = run_doit(empty_repo, "list")
    assert result.returncode == 3
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("packages", "message"),
    [
        ('["Hello_Svc"]', "'Hello_Svc' is not a Debian package name"),
        ('["hello-svc=1.0;reboot"]', "hello-svc='1.0;reboot': not a Debian version"),
        ('["hello-svc=$(id)"]', "not a Debian version"),
        ('["dist/nothing-*.deb"]', "'dist/nothing-*.deb' matches no .deb file"),
        ('["curl", "curl=7.88.1-10"]', "'curl' is named more than once"),
    ],
)
def test_a_bad_package_spec_fails_the_bake_with_one_line(empty_repo: Path, packages: str, message: str) -> None:
    write(empty_repo / "bakes" / "base.toml", f"packages = {packages}\n" + BASE)
    info = run_doit(empty_repo, "info", "bake:base")
    assert info.returncode == 1 and message in info.output
    run = run_doit(empty_repo, "bake:base")
    assert run.returncode == 1
    assert "bakes/base.toml: packages: " in run.output and message in run.output
    assert "Traceback" not in run.output
    assert not (empty_repo / ".bakehouse" / "records").exists()


def test_a_corrupt_deb_is_named(empty_repo: Path) -> None:
    write(empty_repo / "dist" / "broken_1.0_all.deb", "not an archive")
    write(empty_repo / "bakes" / "base.toml", 'packages = ["dist/*.deb"]\n' + BASE)
    run = run_doit(empty_repo, "bake:base")
    assert run.returncode == 1
    assert "dist/broken_1.0_all.deb: not a readable .deb" in run.output
    assert "Traceback" not in run.output


def test_the_shipped_bakes_load(tmp_path: Path) -> None:
    project = Path(__file__).resolve().parent.parent
    result = run_doit(project, "list", "--all")
    assert result.returncode == 0, result.output
    assert "bake:base" in result.output and "bake:hello" in result.output
    assert "package:hello-svc" in result.output


AWS_BASE = """\
provider = "aws"
template = "amazon-ebs.pkr.hcl.j2"
regions = ["us-east-1"]
[source]
ami = "ami-04681a1dbd79675a5"
"""
AWS_SERVICE = 'provider = "aws"\ntemplate = "amazon-ebs.pkr.hcl.j2"\nbase = "base"\n'


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"base.toml": AWS_BASE.replace('regions = ["us-east-1"]\n', "")},
         "bakes/base.toml: regions is required for provider = \"aws\""),
        ({"base.toml": AWS_BASE.replace("us-east-1", "us-east")},
         "bakes/base.toml: regions: 'us-east' is not an AWS region name such as 'us-east-1'"),
        ({"base.toml": AWS_BASE.replace("regions", "regoins")},
         "bakes/base.toml: unknown key 'regoins' (did you mean 'regions'?)"),
        ({"base.toml": "regions = [\"us-east-1\"]\n" + BASE},
         "bakes/base.toml: regions is only for provider = \"aws\" (this bake is local)"),
        ({"base.toml": "multi_region = \"copies\"\n" + AWS_BASE},
         "bakes/base.toml: multi_region: 'copies' is not one of bake, copy (did you mean 'copy'?)"),
        ({"base.toml": "communicator = \"winrm\"\n" + AWS_BASE},
         "bakes/base.toml: communicator: 'winrm' is not one of ssh, none"),
        ({"base.toml": "instance_type = \"big\"\n" + AWS_BASE},
         "bakes/base.toml: instance_type: 'big' is not valid: an EC2 instance type such as 't3.micro'"),
        ({"base.toml": AWS_BASE.replace("ami-04681a1dbd79675a5", "ubuntu")},
         "bakes/base.toml: source.ami: 'ubuntu' is not an AMI id"),
        ({"base.toml": AWS_BASE + 'name = "debian-12-*"\n'},
         "bakes/base.toml: [source] of an AWS bake needs either ami"),
        ({"base.toml": AWS_BASE.replace('ami = "ami-04681a1dbd79675a5"', 'name = "debian-12-*"')},
         "bakes/base.toml: source.owners is required with source.name"),
        ({"base.toml": AWS_BASE.replace('ami = "ami-04681a1dbd79675a5"', 'name = "debian-*"\nowner = ["self"]')},
         "bakes/base.toml: unknown key 'source.owner' (did you mean 'owners'?)"),
        ({"base.toml": AWS_BASE + "regions = [\"us-west-2\"]\n"},
         "bakes/base.toml: unknown key 'source.regions' (did you mean 'regions'? It belongs above [source]"),
        ({"base.toml": AWS_BASE.replace('ami = "ami-04681a1dbd79675a5"', 'ami = { us-west-2 = "ami-04681a1dbd79675a5" }')},
         "bakes/base.toml: source.ami names no AMI for us-east-1"),
        ({"base.toml": AWS_BASE, "hello.toml": AWS_SERVICE + 'regions = ["us-east-1", "eu-west-1"]\n'},
         "bakes/hello.toml: regions: eu-west-1 not in the regions of its base 'base' (us-east-1)"),
        ({"base.toml": BASE, "hello.toml": AWS_SERVICE + 'regions = ["us-east-1"]\n'},
         "bakes/hello.toml: base: 'base' is a local bake, but this one is aws"),
    ],
)
def test_a_bad_aws_definition_is_one_clear_line(empty_repo: Path, files: dict[str, str], message: str) -> None:
    test_a_bad_definition_is_one_clear_line(empty_repo, files, message)


def test_the_aws_example_loads_without_asking_aws(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "aws"
    result = run_doit(example, "list", "--all", env={"AWS_ENDPOINT_URL_EC2": "http://127.0.0.1:9"})
    assert result.returncode == 0, result.output
    assert "bake:aws-base" in result.output and "bake:aws-hello" in result.output
