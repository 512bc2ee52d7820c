"""Same inputs, same bytes: local images baked in two fresh repositories, in different
directories and at different times (the clock override), are the same OCI images, and
`doit verify` proves it, or names the file that differs, or the input it cannot get again.
The tiny base keeps this quick; the shipped example's minbase base and hello are verified the
same way in the main job's test (tests/test_main_job.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from apt_repository import AptRepository
from conftest import new_repo
from bakehouse import __version__
from bakehouse.project import BUILT_IN_TEMPLATES
from helpers import build_hello_deb, image_layers, provenance_statements, run_doit, write
from test_apt_repository import repository_bake


def digests(repo: Path) -> dict[str, tuple[str, str]]:
    """bake -> (image id, OCI manifest digest) of its newest image, as `doit images` shows them."""
    found = json.loads(run_doit(repo, "images", "--json", check=True).stdout)
    return {bake: (images[0]["image_id"], images[0]["digest"]) for bake, images in found.items()}


def test_two_fresh_repositories_bake_byte_identical_images(repo: Path, tmp_path: Path) -> None:
    """(`doit verify` of the shipped example is the main job's test: tests/test_main_job.py.)"""
    one, two = repo, new_repo(tmp_path / "second clone" / "two")  # one: the session's base, baked earlier
    run_doit(one, env={"BAKEHOUSE_NOW": "2026-11-30T08:00:00Z"}, check=True)
    run_doit(two, env={"BAKEHOUSE_NOW": "2026-12-09T23:59:00Z"}, check=True)
    first, second = digests(one), digests(two)
    for bake in ("base", "hello"):
        assert first[bake][0] != second[bake][0]  # other image ids: baked at other times
        assert first[bake][1] == second[bake][1], bake  # the same bytes
    layout = next((one / ".bakehouse" / "images" / "hello").iterdir())
    inspected = json.loads(subprocess.run(["skopeo", "inspect", f"oci:{layout}:hello"], check=True,
                                          capture_output=True, text=True).stdout)
    assert inspected["Digest"] == first["hello"][1] and inspected["Created"].startswith("1970-01-01T00:00:00")


def test_verify_names_the_file_an_unreproducible_step_writes(repo: Path) -> None:
    write(repo / "templates" / "scripts" / "stamp.sh", "#!/bin/sh\ndate +%s%N > /etc/baked-at\n")
    bake = repo / "bakes" / "hello.toml"
    bake.write_text(bake.read_text().replace('base = "base"', 'base = "base"\ntests = ["scripts/stamp.sh"]'))
    run_doit(repo, check=True)
    verified = run_doit(repo, "verify", "hello")
    assert verified.returncode == 1, verified.output
    assert "base: reproducible (sha256:" in verified.output
    assert "hello: NOT reproducible: hello-" in verified.output
    assert "  layer 2: etc/baked-at: content differs\n" in verified.output


def test_verify_says_what_it_cannot_get_again_or_compare_with(repo: Path, tmp_path: Path) -> None:
    not_baked = run_doit(repo, "verify", "hello")
    assert not_baked.returncode == 2
    assert "hello: cannot verify: hello: no image of its current inputs to verify" in not_baked.output

    apt = AptRepository(tmp_path / "apt")
    deb = build_hello_deb(repo, "1.0.4", tmp_path)
    apt.publish(deb)
    apt.serve()
    try:
        (repo / "bakes" / "hello.toml").unlink()
        write(repo / "bakes" / "hello.toml", repository_bake(apt.url))
        run_doit(repo, "plan", "--lock")  # pinned: the plan no longer reads the index
        run_doit(repo, check=True)
        (apt.pool / deb.name).unlink()  # gone from the repository...
        shutil.rmtree(repo / ".bakehouse" / "cache" / "debs")  # ...and from the cache
        gone = run_doit(repo, "verify", "hello")
        assert gone.returncode == 2, gone.output
        assert "hello-svc 1.0.4, pinned by bakehouse.lock, can no longer be had" in gone.output
    finally:
        apt.stop()


def test_each_image_carries_its_provenance_as_an_in_toto_slsa_statement(repo: Path, tmp_path: Path) -> None:
    from google.protobuf import json_format
    from in_toto_attestation.predicates.provenance.v1 import provenance_pb2

    git = ["git", "-C", str(repo), "-c", "user.name=bakehouse tests", "-c", "user.email=tests@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "bakes", "packages", "dodo.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "the example"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    run_doit(repo, check=True)
    images = digests(repo)

    (found,) = provenance_statements(repo, "hello")  # checked against the in-toto and SLSA schemas
    provenance = json_format.ParseDict(found["predicate"], provenance_pb2.Provenance())
    assert found["subject"] == [{"name": "hello", "digest": {"sha256": images["hello"][1].removeprefix("sha256:")}}]

    definition = provenance.build_definition
    assert json_format.MessageToDict(definition.internal_parameters)["key"] == json.loads(
        run_doit(repo, "plan", "--json").stdout)["bakes"][1]["key"]
    dependencies = {dep.name: dep for dep in definition.resolved_dependencies}
    (deb,) = (repo / "dist").glob("hello-svc_*.deb")
    import hashlib
    assert dependencies["hello-svc"].digest["sha256"] == hashlib.sha256(deb.read_bytes()).hexdigest()
    assert dependencies["hello-svc"].uri == "pkg:deb/debian/hello-svc@1.0.4?arch=amd64"
    script = BUILT_IN_TEMPLATES / "scripts" / "install-packages.sh"  # built in: named by the package it came with
    assert dependencies["templates/scripts/install-packages.sh"].digest["sha256"] == hashlib.sha256(
        script.read_bytes()).hexdigest()
    assert dependencies["templates/scripts/install-packages.sh"].uri == (
        f"pkg:pypi/bakehouse@{__version__}#templates/scripts/install-packages.sh")
    base = next(dep for name, dep in dependencies.items() if name.startswith("base image "))
    assert "sha256:" + base.digest["sha256"] == images["base"][1]
    assert dependencies["repository"].digest["gitCommit"] == head
    tools = dict(provenance.run_details.builder.version)
    assert tools["packer"].startswith("Packer v") and tools["mmdebstrap"].startswith("mmdebstrap ")
    assert "dpkg" in tools["dpkg"] and provenance.run_details.metadata.invocation_id == images["hello"][0]
    assert provenance_statements(repo, "base")[0]["subject"][0]["digest"]["sha256"] == images["base"][1].removeprefix("sha256:")

    # The statement is a referrer in the layout: the image is as it was, and copies as it was.
    layout = next((repo / ".bakehouse" / "images" / "hello").iterdir())
    copied = tmp_path / "copied"
    subprocess.run(["skopeo", "copy", "-q", f"oci:{layout}:hello", f"oci:{copied}:hello"], check=True)
    inspected = json.loads(subprocess.run(["skopeo", "inspect", f"oci:{copied}:hello"], check=True,
                                          capture_output=True, text=True).stdout)
    assert inspected["Digest"] == images["hello"][1]
    subprocess.run(["umoci", "raw", "unpack", "--rootless", "--image", f"{layout}:hello", str(tmp_path / "root")],
                   check=True, capture_output=True)
    assert (tmp_path / "root" / "opt" / "hello-svc" / "VERSION").read_text().strip() == "1.0.4"

    # The SBOM travels the same way: an in-toto statement about the same digest, the CycloneDX BOM
    # as its predicate, the same document `doit images --sbom` prints.
    index = json.loads((layout / "index.json").read_text())
    referrers = [entry for entry in index["manifests"] if entry.get("artifactType") == "application/vnd.in-toto+json"]
    kinds = {entry["annotations"]["in-toto.io/predicate-type"]: entry for entry in referrers}
    assert sorted(kinds) == ["https://cyclonedx.org/bom", "https://slsa.dev/provenance/v1"]
    manifest = json.loads((layout / "blobs" / "sha256" / kinds["https://cyclonedx.org/bom"]["digest"][7:]).read_text())
    assert manifest["subject"]["digest"] == images["hello"][1]
    sbom = json.loads((layout / "blobs" / "sha256" / manifest["layers"][0]["digest"][7:]).read_text())
    assert sbom["subject"] == found["subject"] and sbom["predicateType"] == "https://cyclonedx.org/bom"
    assert sbom["predicate"] == json.loads(run_doit(repo, "images", "--sbom", "hello").stdout)


def test_verify_hashes_every_blob_and_names_a_tampered_layer(repo: Path) -> None:
    """index.json still names the right manifest digest; the layer on disk was edited. skopeo
    refuses such a layout, and verify must not call it reproducible."""
    run_doit(repo, check=True)
    layout = next((repo / ".bakehouse" / "images" / "hello").iterdir())
    own_layer = image_layers(layout)[-1]  # hello's own layer (the base's is shared by hard link)
    with own_layer.open("ab") as blob:
        blob.write(b"tampered")
    verified = run_doit(repo, "verify", "hello")
    assert verified.returncode == 1, verified.output
    assert "base: reproducible (sha256:" in verified.output
    assert "hello: NOT reproducible: hello-" in verified.output
    assert f"  blob sha256:{own_layer.name} does not match its digest (tampered with or damaged)\n" in verified.output


def test_a_tampered_provenance_statement_is_refused_not_printed(repo: Path) -> None:
    run_doit(repo, check=True)
    (statement,) = provenance_statements(repo, "hello")
    layout = next((repo / ".bakehouse" / "images" / "hello").iterdir())
    blobs = layout / "blobs" / "sha256"
    (kept,) = [path for path in blobs.iterdir() if path.read_bytes().startswith(b'{"_type"')
               and b"slsa.dev/provenance" in path.read_bytes()]
    kept.write_bytes(kept.read_bytes().replace(b"hello-svc", b"hello-SVC"))  # an input rewritten
    shown = run_doit(repo, "images", "--provenance", "hello")
    assert shown.returncode == 2, shown.output
    assert f"blob sha256:{kept.name} does not match its digest (tampered with or damaged)" in shown.output
    assert "hello-SVC" not in shown.output
