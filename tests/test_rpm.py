"""RPM as a package kind (the start of Baker's RPM path): RPM's version order, checked against
the `rpm` binary's own answers, and the RPM repository reader, against repositories made with
createrepo_c from packages rpmbuild built here (Debian's rpm and createrepo-c packages; no RPM
distribution's mirror is reachable from here), served on 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bakehouse.errors import PackageError
from bakehouse.rpmrepo import read_repository
from bakehouse.rpmversion import Evr, vercmp
from helpers import serve_directory
from rpm_repository import build_rpm

TRICKY = [
    ("1.0", "1.0"), ("1.0", "2.0"), ("2.0.1", "2.0"), ("1.0.10", "1.0.9"), ("1.010", "1.9"), ("1.05", "1.5"),
    ("1.0a", "1.0"), ("1.0a", "1.0b"), ("1.0", "1.0.0"), ("1a", "1.0"), ("a", "1"), ("abc", "abd"),
    ("1.0~rc1", "1.0"), ("1.0~rc1", "1.0~rc2"), ("1.0~rc1~git1", "1.0~rc1"), ("1.0~~", "1.0~"),
    ("1.0^", "1.0"), ("1.0^git1", "1.0"), ("1.0^git1", "1.0.1"), ("1.0^git1", "1.0^git2"),
    ("1.0^git1~pre", "1.0^git1"), ("1.0~rc1^git1", "1.0~rc1"), ("1.0^", "1.0~"),
    ("1_0", "1.0"), ("1.0.", "1.0"), ("fc4", "fc.4"), ("2.0.1a", "2.0.1"), ("5.5p1", "5.5p10"),
    ("10xyz", "10.1xyz"), ("xyz10", "xyz10.1"), ("1.2.3.el9", "1.2.3.amzn2023"), ("20231106", "2023.11.06"),
]


def rpm_says(a: str, b: str) -> int:
    out = subprocess.run(["rpm", "--eval", f'%{{lua: print(rpm.vercmp("{a}", "{b}"))}}'],
                         capture_output=True, text=True, check=True).stdout.strip()
    return int(out)


@pytest.mark.parametrize(("a", "b"), TRICKY)
def test_the_version_order_is_rpms(a: str, b: str) -> None:
    assert (vercmp(a, b), vercmp(b, a)) == (rpm_says(a, b), rpm_says(b, a))


def test_epoch_version_release() -> None:
    assert Evr.parse("1:1.0-1") > Evr.parse("9.9-9")  # the epoch first
    assert Evr.parse("1.0-2.amzn2023") > Evr.parse("1.0-1.amzn2023")
    assert Evr.parse("1.0") == Evr.parse("1.0-7")  # no release: any release of that version
    assert str(Evr.parse("2:1.4.1-3")) == "2:1.4.1-3" and str(Evr.parse("0:1.0-1")) == "1.0-1"
    with pytest.raises(ValueError, match="is not an RPM version"):
        Evr.parse("1.0-1-1")


@pytest.fixture(scope="module")
def rpms(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("rpms")
    return [build_rpm(out, "hello-svc", "1.0.4"), build_rpm(out, "hello-svc", "1.0.10"),
            build_rpm(out, "hello-svc", "1.0.10", "2"), build_rpm(out, "old-epoch", "9.0", epoch=0),
            build_rpm(out, "old-epoch", "1.0", epoch=1)]


def make_repository(folder: Path, rpms: list[Path], compression: str) -> Path:
    folder.mkdir(parents=True)
    for rpm in rpms:
        shutil.copy(rpm, folder)
    made_as = "gz" if compression == "zstd" else compression
    subprocess.run(["createrepo_c", "--compress-type", made_as, str(folder)], check=True, capture_output=True)
    if compression == "zstd":
        as_zstd(folder / "repodata")
    return folder


def as_zstd(repodata: Path) -> None:
    """The primary data recompressed with zstd, as newer createrepo_c writes it (Debian's 0.17
    was built without zstd), and repomd.xml naming it by its new location and checksum."""
    import zstandard

    (primary,) = repodata.glob("*-primary.xml.gz")
    compressed = zstandard.ZstdCompressor().compress(gzip.decompress(primary.read_bytes()))
    digest = hashlib.sha256(compressed).hexdigest()
    (repodata / f"{digest}-primary.xml.zst").write_bytes(compressed)
    old_digest = primary.name.split("-")[0]
    repomd = repodata / "repomd.xml"
    repomd.write_text(repomd.read_text().replace(primary.name, f"{digest}-primary.xml.zst").replace(
        f">{old_digest}<", f">{digest}<"))
    primary.unlink()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    server, url = serve_directory(tmp_path, tmp_path / "http.log")
    try:
        yield tmp_path, url
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.parametrize("compression", ["gz", "xz", "zstd"])
def test_the_repository_reader_gives_every_version_newest_first(rpms: list[Path], served: tuple[Path, str], compression: str) -> None:
    root, url = served
    make_repository(root / "repo", rpms, compression)
    found = read_repository(f"{url}/repo/")
    assert [package.version for package in found["hello-svc"]] == ["1.0.10-2", "1.0.10-1", "1.0.4-1"]
    assert [package.version for package in found["old-epoch"]] == ["1:1.0-1", "9.0-1"]  # the epoch wins
    newest = found["hello-svc"][0]
    assert (newest.arch, newest.location, newest.checksum[0]) == ("noarch", "hello-svc-1.0.10-2.noarch.rpm", "sha256")


def test_a_primary_file_that_does_not_match_its_checksum_is_one_line(rpms: list[Path], served: tuple[Path, str]) -> None:
    root, url = served
    repo = make_repository(root / "repo", rpms, "gz")
    (primary,) = (repo / "repodata").glob("*primary.xml.gz")
    primary.write_bytes(gzip.compress(gzip.decompress(primary.read_bytes()).replace(b"1.0.10", b"1.0.11")))
    with pytest.raises(PackageError, match=r"primary\.xml\.gz does not match its sha256 checksum in repomd\.xml"):
        read_repository(f"{url}/repo")


@pytest.mark.parametrize(("repomd", "message"), [
    ("<repomd", r"repodata/repomd\.xml is not XML"),
    ('<repomd xmlns="http://linux.duke.edu/metadata/repo"><data type="other"/></repomd>',
     r"repodata/repomd\.xml names no primary data file with a checksum"),
])
def test_a_malformed_repomd_is_one_line(served: tuple[Path, str], repomd: str, message: str) -> None:
    root, url = served
    (root / "repo" / "repodata").mkdir(parents=True)
    (root / "repo" / "repodata" / "repomd.xml").write_text(repomd)
    with pytest.raises(PackageError, match=message):
        read_repository(f"{url}/repo")


def test_a_url_that_is_no_repository_is_one_line(served: tuple[Path, str]) -> None:
    root, url = served
    with pytest.raises(PackageError, match=r"repodata/repomd\.xml is not there \(HTTP 404\): is this an RPM repository's base URL"):
        read_repository(f"{url}/nothing")
