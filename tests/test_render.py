"""Values reach HCL and shells only through quoting filters; real packer reads them back."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from bakehouse.errors import TemplateError
from bakehouse.project import BUILT_IN_TEMPLATES
from bakehouse.render import Templates

HOSTILE = [
    'plain',
    'a "quoted" word',
    "it's",
    "${env.HOME} and %{ if true }x%{ endif }",
    "$(touch /tmp/bakehouse-pwned) `touch /tmp/bakehouse-pwned`",
    "two\nlines\tand a tab \\ backslash",
    "ünïcode ☃",
]

TEMPLATE = """\
source "null" "x" {
  communicator = "none"
}
build {
  sources = ["source.null.x"]
  provisioner "shell-local" {
    environment_vars = [{{ ("VALUE=" ~ value) | hcl }}]
    inline = [
      {{ ("printf '%s' \\"$VALUE\\" > " ~ (out ~ ".env") | shell) | hcl }},
      {{ ("printf '%s' " ~ (value | shell) ~ " > " ~ (out ~ ".arg") | shell) | hcl }},
    ]
  }
}
"""


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_arrive_verbatim_through_real_packer(tmp_path: Path, value: str) -> None:
    (tmp_path / "t.pkr.hcl.j2").write_text(TEMPLATE)
    out = tmp_path / "out"
    rendered = Templates(tmp_path).render("t.pkr.hcl.j2", {"value": value, "out": str(out)})
    (tmp_path / "t.pkr.hcl").write_text(rendered)
    result = subprocess.run(["packer", "build", "-color=false", "t.pkr.hcl"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert Path(f"{out}.arg").read_text() == value
    assert Path(f"{out}.env").read_text() == value
    assert not Path("/tmp/bakehouse-pwned").exists()


def test_an_undefined_variable_is_one_line_naming_the_template(tmp_path: Path) -> None:
    (tmp_path / "t.j2").write_text("x = {{ vars.region | hcl }}\n")
    with pytest.raises(TemplateError, match=r"^templates/t\.j2: undefined template value: 'dict object' has no attribute 'region'"):
        Templates(tmp_path).render("t.j2", {"vars": {}})


def test_input_files_follow_includes_and_file_calls(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "a.sh").write_text("echo a\n")
    (tmp_path / "part.j2").write_text('script = {{ file("scripts/a.sh") | hcl }}\n')
    (tmp_path / "main.j2").write_text('{% include "part.j2" %}\n')
    assert sorted(Templates(tmp_path).input_files("main.j2")) == ["main.j2", "part.j2", "scripts/a.sh"]


def test_a_computed_file_path_is_refused(tmp_path: Path) -> None:
    (tmp_path / "main.j2").write_text('{{ file("scripts/" ~ name) }}\n')
    with pytest.raises(TemplateError, match="file\\(\\) takes one literal path"):
        Templates(tmp_path).input_files("main.j2")


def aws_context(communicator: str, required_plugins: bool = False, deb: str = "/repo/dist/hello-svc_1.0.4_all.deb") -> dict:
    """What the AWS provider hands templates/amazon-ebs.pkr.hcl.j2 (docs/how-to/aws.md)."""
    tags = {"bakehouse:bake": "hello", "bakehouse:summary:0": '{"a":"${x}"}', "base_ami_id": "ami-04681a1dbd79675a5"}
    return {
        "bake": {"name": "hello", "description": "", "provider": "aws"},
        "deb_paths": [deb],
        "package_checks": ["hello-svc=1.0.4", "curl"],
        "manifest": "/repo/build/hello/m.json",
        "contents": "/repo/build/hello/c.tsv",
        # a test script (any file under templates/ stands in for one) runs over SSH only
        "tests": ["scripts/image-contents.sh"] if communicator == "ssh" else [],
        "aws": {
            "builds": [
                {"name": name, "source": f"source.amazon-ebs.{name}", "region": name.replace("_", "-"),
                 "source_ami": "ami-04681a1dbd79675a5", "copy_to": [], "tags": tags,
                 "placement": {"subnet_id": None, "subnet_filters": {}, "vpc_id": None, "security_group_ids": [],
                               "ssh_cidrs": [], "public_ip": None, "instance_profile": None, "ssh_interface": None,
                               "bastion": None, "spot_price": None, "imdsv2": False}}
                for name in ("us_east_1", "eu_west_1")
            ],
            "ami_name": "hello-x86_64-20261122111958-a1b2c3-debian", "instance_type": "t3.micro",
            "communicator": communicator, "ssh_username": "admin", "endpoint": None, "max_retries": 20, "poll_seconds": 15, "poll_attempts": 240,
            "required_plugins": required_plugins,
            "imdsv2_command": None,
            "encrypted": False,
        },
    }


@pytest.mark.parametrize("communicator", ["ssh", "none"])
def test_the_amazon_ebs_template_is_valid_for_packer(tmp_path: Path, communicator: str) -> None:
    deb = tmp_path / "hello-svc_1.0.4_all.deb"
    deb.write_bytes(b"!<arch>\n")
    rendered = Templates(BUILT_IN_TEMPLATES).render("amazon-ebs.pkr.hcl.j2", aws_context(communicator, deb=str(deb)))
    (tmp_path / "t.pkr.hcl").write_text(rendered)
    result = subprocess.run(["packer", "validate", "t.pkr.hcl"], cwd=tmp_path, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CHECKPOINT_DISABLE": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    remote_steps = ('provisioner "file"' in rendered, 'provisioner "shell"' in rendered)
    assert remote_steps == ((True, True) if communicator == "ssh" else (False, False))
    if communicator == "ssh":
        assert "sudo sh /tmp/bakehouse/install-packages.sh /tmp/bakehouse/debs hello-svc=1.0.4 curl" in rendered
        assert str(BUILT_IN_TEMPLATES / "scripts" / "install-packages.sh") in rendered
        assert "sudo sh /tmp/bakehouse/run-tests.sh / /tmp/bakehouse/tests/*/*" in rendered
        assert 'direction   = "download"' in rendered and '"/repo/build/hello/c.tsv"' in rendered
    assert "required_plugins" not in rendered


def test_an_rpm_image_s_template_installs_with_dnf_and_lists_the_rpmdb(tmp_path: Path) -> None:
    """An Amazon Linux bake (package_format = "rpm") over SSH: packer validate only (no RPM
    instance can be reached from here; scripts/install-rpms.sh itself is not run by this test)."""
    rpm = tmp_path / "hello-rpm-1.0.4-1.noarch.rpm"
    rpm.write_bytes(b"\xed\xab\xee\xdb")
    context = {**aws_context("ssh", deb=str(rpm)), "package_format": "rpm", "package_checks": ["hello-rpm=1.0.4-1", "jq"]}
    rendered = Templates(BUILT_IN_TEMPLATES).render("amazon-ebs.pkr.hcl.j2", context)
    packer_validate(tmp_path, rendered)
    assert "sudo sh /tmp/bakehouse/install-packages.sh /tmp/bakehouse/rpms hello-rpm=1.0.4-1 jq" in rendered
    assert str(BUILT_IN_TEMPLATES / "scripts" / "install-rpms.sh") in rendered
    assert str(BUILT_IN_TEMPLATES / "scripts" / "image-contents-rpm.sh") in rendered
    assert "install-packages.sh\"" not in rendered.replace('destination = "/tmp/bakehouse/install-packages.sh"', "")
    _, used = Templates(BUILT_IN_TEMPLATES).render_used("amazon-ebs.pkr.hcl.j2", aws_context("ssh"))
    assert "scripts/install-rpms.sh" not in used  # a .deb bake's key never holds the RPM scripts


def packer_validate(tmp_path: Path, rendered: str) -> None:
    (tmp_path / "t.pkr.hcl").write_text(rendered)
    result = subprocess.run(["packer", "validate", "t.pkr.hcl"], cwd=tmp_path, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CHECKPOINT_DISABLE": "1"})
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("subnet", ["id", "tags"])
def test_an_account_s_placement_and_encryption_keys_are_valid_for_packer(tmp_path: Path, subnet: str) -> None:
    context = aws_context("none")
    placement = {
        "subnet_id": "subnet-0123456789abcdef0" if subnet == "id" else None,
        "subnet_filters": {"tag:Name": "build"} if subnet == "tags" else {},
        "vpc_id": "vpc-0123456789abcdef0", "security_group_ids": [] if subnet == "id" else ["sg-0123456789abcdef0"],
        "ssh_cidrs": ["10.0.0.0/8"] if subnet == "id" else [], "public_ip": False, "instance_profile": "bakery",
        "ssh_interface": None, "bastion": None, "spot_price": "auto", "imdsv2": False,
    }
    context["aws"]["encrypted"] = True
    east, west = context["aws"]["builds"]
    east["placement"] = west["placement"] = placement
    east.update(kms_key_id="alias/images", copy_to=["us-west-2"], region_kms_key_ids={"us-west-2": "alias/images-west"})
    west.update(kms_key_id=None, region_kms_key_ids={})
    rendered = Templates(BUILT_IN_TEMPLATES).render("amazon-ebs.pkr.hcl.j2", context)
    packer_validate(tmp_path, rendered)
    for line in ('iam_instance_profile = "bakery"', "encrypt_boot = true", 'kms_key_id = "alias/images"',
                 'region_kms_key_ids = { "us-west-2" = "alias/images-west" }', "associate_public_ip_address = false"):
        assert line in rendered
    assert ('subnet_id = "subnet-0123456789abcdef0"' in rendered) == (subnet == "id")
    assert ('filters   = { "tag:Name" = "build" }' in rendered) == (subnet == "tags")


@pytest.mark.parametrize("reach", ["bastion", "session_manager"])
def test_ssh_through_a_bastion_or_session_manager_is_valid_for_packer(tmp_path: Path, reach: str) -> None:
    deb = tmp_path / "hello-svc_1.0.4_all.deb"
    deb.write_bytes(b"!<arch>\n")
    key = tmp_path / "bastion-key"  # packer validate reads the key: a real one, made here
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))
    context = aws_context("ssh", deb=str(deb))
    for build in context["aws"]["builds"]:
        build["placement"].update(
            instance_profile="bakery", ssh_interface="session_manager" if reach == "session_manager" else "private_ip",
            bastion={"host": "bastion.example.com", "username": None, "key_file": str(key)} if reach == "bastion" else None,
        )
    rendered = Templates(BUILT_IN_TEMPLATES).render("amazon-ebs.pkr.hcl.j2", context)
    packer_validate(tmp_path, rendered)
    if reach == "bastion":
        assert 'ssh_bastion_host             = "bastion.example.com"' in rendered
        assert 'ssh_bastion_username         = "admin"' in rendered
    else:
        assert 'ssh_interface = "session_manager"' in rendered


def test_imdsv2_is_rendered_for_packer_that_can_set_it() -> None:
    context = aws_context("none", True)
    for build in context["aws"]["builds"]:
        build["placement"]["imdsv2"] = True
    rendered = Templates(BUILT_IN_TEMPLATES).render("amazon-ebs.pkr.hcl.j2", context)
    assert 'http_tokens                 = "required"' in rendered


def test_imdsv2_with_packer_1_6_6_is_a_first_step_that_is_valid_for_packer(tmp_path: Path) -> None:
    context = aws_context("none")
    context["aws"]["imdsv2_command"] = "/venv/bin/python -m bakehouse.providers.aws.client require-imdsv2"
    for build in context["aws"]["builds"]:
        build["placement"]["imdsv2"] = True
    rendered = Templates(BUILT_IN_TEMPLATES).render("amazon-ebs.pkr.hcl.j2", context)
    packer_validate(tmp_path, rendered)
    assert "metadata_options {" not in rendered and "source.name, build.ID" in rendered


def test_required_plugins_only_for_packer_that_needs_them() -> None:
    rendered = Templates(BUILT_IN_TEMPLATES).render("amazon-ebs.pkr.hcl.j2", aws_context("none", True))
    assert 'source  = "github.com/hashicorp/amazon"' in rendered


@pytest.mark.parametrize("package_format", ["rpm", "deb"])
def test_the_amazon_chroot_template_is_valid_for_packer(tmp_path: Path, package_format: str) -> None:
    """Baker's builder. It builds on the EC2 instance packer runs on, which this machine is
    not: what can be checked here is that packer 1.6.6 validates the rendered template (and,
    in tests/providers/aws/test_amazon_chroot.py, that a bake off EC2 is refused in one line)."""
    package = tmp_path / ("hello-rpm-1.0.4-1.noarch.rpm" if package_format == "rpm" else "hello-svc_1.0.4_all.deb")
    package.write_bytes(b"x")
    context = {**aws_context("ssh", deb=str(package)), "package_format": package_format}
    context["aws"]["builds"] = context["aws"]["builds"][:1]
    context["aws"]["builds"][0]["copy_to"] = ["us-west-2"]
    rendered = Templates(BUILT_IN_TEMPLATES).render("amazon-chroot.pkr.hcl.j2", context)
    packer_validate(tmp_path, rendered)
    assert 'source "amazon-chroot" "us_east_1"' in rendered and 'sources = ["source.amazon-chroot.us_east_1"]' in rendered
    assert 'ami_regions             = ["us-west-2"]' in rendered
    assert "instance_type" not in rendered and "ssh_username" not in rendered  # no instance, no SSH
    inbox = "rpms" if package_format == "rpm" else "debs"
    assert f"sudo env BAKEHOUSE_IN_CHROOT=1 sh /tmp/bakehouse/install-packages.sh /tmp/bakehouse/{inbox} " in rendered
