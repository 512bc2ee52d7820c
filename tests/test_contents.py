"""What is inside an image, baked for real: the package manifest every bake records, its
CycloneDX export, `doit diff`, and test scripts that run inside the image before anything is
recorded."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from helpers import bump_hello, dpkg_admindir, image_file, records, run_doit, write


def dpkg_in(image: Path) -> dict[str, str]:
    """name -> version of every installed package, as dpkg-query reads the unpacked image."""
    with tempfile.TemporaryDirectory(dir="/dev/shm") as root:
        listing = subprocess.run(
            ["dpkg-query", f"--admindir={dpkg_admindir(image, root)}", "-W", "-f=${db:Status-Status} ${Package} ${Version}\n"],
            capture_output=True, text=True, check=True,
        ).stdout
    return {name: version for status, name, version in (line.split(" ") for line in listing.splitlines()) if status == "installed"}


def test_every_image_records_the_packages_dpkg_says_it_has(repo: Path) -> None:
    run_doit(repo, check=True)
    for bake in ("base", "hello"):
        shown = json.loads(run_doit(repo, "images", "--packages", bake, "--json", check=True).stdout)
        assert shown["complete"] is True and shown["image_id"] == records(repo, bake)[0]["image_id"]
        listed = {package["name"]: package["version"] for package in shown["packages"]}
        assert listed == dpkg_in(image_file(repo, records(repo, bake)[0]))
    text = run_doit(repo, "images", "--packages", records(repo, "hello")[0]["image_id"], check=True).stdout
    assert text.startswith(f"{records(repo, 'hello')[0]['image_id']} (hello): ")
    assert any(line.split()[:2] == ["hello-svc", "1.0.4"] for line in text.splitlines())


def test_the_sbom_is_valid_cyclonedx_naming_each_package_by_its_purl(repo: Path) -> None:
    run_doit(repo, check=True)
    sbom = run_doit(repo, "images", "--sbom", "hello", check=True).stdout
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(sbom) is None
    document = json.loads(sbom)
    assert document["metadata"]["component"]["name"] == records(repo, "hello")[0]["image_id"]
    purls = {component["purl"] for component in document["components"]}
    assert "pkg:deb/debian/hello-svc@1.0.4?arch=all" in purls
    assert len(purls) == len(dpkg_in(image_file(repo, records(repo, "hello")[0])))
    assert run_doit(repo, "images", "--sbom", "hello").stdout == sbom  # the same image, the same document


def test_diff_after_a_version_bump_names_exactly_that_package(repo: Path) -> None:
    run_doit(repo, check=True)
    bump_hello(repo, "1.0.5")
    run_doit(repo, check=True)
    before, after = records(repo, "hello")[1]["image_id"], records(repo, "hello")[0]["image_id"]
    result = run_doit(repo, "diff", "hello")
    assert result.returncode == 1, result.stdout
    assert result.stdout.splitlines() == [
        f"{before} -> {after}", "packages:", "  ~ hello-svc 1.0.4 -> 1.0.5", "inputs:", "  hello-svc 1.0.4 -> 1.0.5",
    ]
    as_json = json.loads(run_doit(repo, "diff", before, after, "--json").stdout)
    assert as_json["packages"] == {"added": [], "removed": [], "changed": [{"name": "hello-svc", "before": "1.0.4", "after": "1.0.5"}]}
    same = run_doit(repo, "diff", after, after)
    assert same.returncode == 0 and "packages: the same" in same.stdout and "inputs: the same" in same.stdout
    unknown = run_doit(repo, "diff", "helo")
    assert unknown.returncode == 2 and "no bake or image 'helo' (did you mean 'hello'?)" in unknown.stdout


def test_a_failing_test_script_records_nothing_and_shows_its_output(repo: Path) -> None:
    write(repo / "templates" / "scripts" / "check-hello.sh", """\
        #!/bin/sh
        /opt/hello-svc/bin/hello-svc
        echo "hello-svc: no config in /etc/hello-svc" >&2
        exit 5
    """)
    hello = repo / "bakes" / "hello.toml"
    hello.write_text('tests = ["scripts/check-hello.sh"]\n' + hello.read_text())
    result = run_doit(repo)
    assert result.returncode != 0
    assert "hello from hello-svc 1.0.4" in result.output and "hello-svc: no config in /etc/hello-svc" in result.output
    assert "hello: test check-hello.sh failed (exit 5) inside the image; nothing was recorded" in result.output
    assert records(repo, "hello") == [] and not list((repo / ".bakehouse" / "images" / "hello").glob("*"))
    assert not list((repo / ".bakehouse" / "records").glob("hello/*.packages"))


def test_a_passing_test_script_is_an_input_of_the_key(repo: Path) -> None:
    check = write(repo / "templates" / "scripts" / "check-hello.sh", "#!/bin/sh\nset -eu\n/opt/hello-svc/bin/hello-svc\n")
    hello = repo / "bakes" / "hello.toml"
    hello.write_text('tests = ["scripts/check-hello.sh"]\n' + hello.read_text())
    result = run_doit(repo, check=True)
    assert "test check-hello.sh: passed" in result.output
    assert len(records(repo, "hello")) == 1
    check.write_text(check.read_text() + "test -f /opt/hello-svc/VERSION\n")
    plan = run_doit(repo, "plan", "hello")
    assert plan.returncode == 1 and "template file scripts/check-hello.sh changed" in plan.stdout
    assert "base   keep" in plan.stdout


def test_a_test_script_that_does_not_exist_is_one_line(repo: Path) -> None:
    hello = repo / "bakes" / "hello.toml"
    hello.write_text('tests = ["scripts/nope.sh"]\n' + hello.read_text())
    result = run_doit(repo, "plan")
    assert result.returncode == 3
    assert result.output.strip() == "ERROR: bakes/hello.toml: tests: no file templates/scripts/nope.sh (test scripts live under templates/)"
