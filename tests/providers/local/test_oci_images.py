"""Local images are OCI images: checked with Debian's skopeo and umoci, never through bakehouse.

A service image is its base's layers (hard links, not copies) plus one layer of what its bake
changed, and unpacked it is exactly the tree a full bake (the base's tree, the package
installed into it) gives."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sysconfig
from pathlib import Path

from helpers import image_file, image_layers, records, run_doit, unpack_image, write

LATER = {"BAKEHOUSE_NOW": "2099-01-01T00:00:00+00:00"}


def inspect(layout: Path, ref: str) -> dict:
    result = subprocess.run(["skopeo", "inspect", f"oci:{layout}:{ref}"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def tree(root: Path) -> dict[str, tuple]:
    """Every path under `root`: its type and mode, owner, and content or link target."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(directory, name)
            status = path.lstat()
            if stat.S_ISREG(status.st_mode):
                what: object = path.read_bytes()
            elif stat.S_ISLNK(status.st_mode):
                what = os.readlink(path)
            else:
                what = status.st_rdev
            found[str(path.relative_to(root))] = (status.st_mode, status.st_uid, status.st_gid, what)
    return found


def test_images_are_oci_layouts_and_a_service_holds_only_its_own_layer(repo: Path, tmp_path: Path) -> None:
    run_doit(repo, check=True)
    (base,), (hello,) = records(repo, "base"), records(repo, "hello")
    base_layout, hello_layout = image_file(repo, base), image_file(repo, hello)

    base_seen, hello_seen = inspect(base_layout, "base"), inspect(hello_layout, "hello")
    assert len(base_seen["Layers"]) == 1
    assert hello_seen["Layers"][:1] == base_seen["Layers"] and len(hello_seen["Layers"]) == 2
    # the base's layer is the same file in both layouts; the service's own blobs are small
    shared = image_layers(hello_layout)[0]
    assert shared.stat().st_ino == image_layers(base_layout)[0].stat().st_ino
    own = sum(p.stat().st_size for p in (hello_layout / "blobs" / "sha256").iterdir() if p.stat().st_nlink == 1)
    assert own < 100_000 < shared.stat().st_size

    listing = run_doit(repo, "images", check=True).output
    assert hello_seen["Digest"] in listing and base_seen["Digest"] in listing
    assert re.search(r"2 layers, [\d.]+ KiB own, [\d.]+ MiB shared with other images, [\d.]+ MiB in all", listing), listing

    copy = tmp_path / "copy"
    subprocess.run(["skopeo", "copy", f"oci:{hello_layout}:hello", f"oci:{copy}:hello"], check=True,
                   capture_output=True)
    assert inspect(copy, "hello")["Layers"] == hello_seen["Layers"]


def test_a_service_image_unpacked_is_the_tree_a_full_bake_gives(repo: Path, tmp_path: Path) -> None:
    postinst = repo / "packages" / "hello-svc" / "DEBIAN" / "postinst"
    # what a package's scripts may do to its base: remove a file, replace a directory whole
    postinst.write_text(postinst.read_text() + "rm -f /etc/issue.net\nrm -rf /usr/share/doc/dpkg\n"
                        "mkdir -p /usr/share/doc/dpkg && echo replaced > /usr/share/doc/dpkg/README\n")
    run_doit(repo, check=True)
    (base,), (hello,) = records(repo, "base"), records(repo, "hello")

    layered = unpack_image(image_file(repo, hello), "hello", tmp_path / "layered")
    full = unpack_image(image_file(repo, base), "base", tmp_path / "full")
    assert (full / "etc" / "issue.net").is_file() and (full / "usr/share/doc/dpkg/copyright").exists()
    (deb,) = (repo / "dist").glob("hello-svc_*.deb")
    shutil.copy(deb, full / "tmp" / deb.name)
    subprocess.run(["chroot", str(full), "dpkg", "-i", f"/tmp/{deb.name}"], check=True, capture_output=True,
                   env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    (full / "tmp" / deb.name).unlink()

    volatile = {"var/log/dpkg.log"}  # dpkg writes the time of each step into its log
    mine, theirs = tree(layered), tree(full)
    assert sorted(set(mine) ^ set(theirs)) == ["var/log/dpkg.log"]  # left out of a layer: reproducible
    assert "var/log/dpkg.log" in theirs
    assert [p for p in mine if p not in volatile and mine[p][:3] != theirs[p][:3]] == []
    assert [p for p in mine if p not in volatile and stat.S_ISREG(mine[p][0]) and mine[p][3] != theirs[p][3]] == []
    assert not (layered / "etc" / "issue.net").exists()
    assert os.listdir(layered / "usr/share/doc/dpkg") == ["README"]
    assert (layered / "opt/hello-svc/VERSION").read_text().strip() == "1.0.4"
    assert (layered / "opt/hello-svc/bin/hello-svc").stat().st_mode & 0o111


def test_a_service_image_outlives_its_base_in_the_cache_and_a_cold_cache_bakes(repo: Path) -> None:
    run_doit(repo, check=True)
    base_file = repo / "bakes" / "base.toml"
    base_file.write_text('packages = ["sed"]\n' + base_file.read_text())  # another base: other bytes
    run_doit(repo, check=True)  # hello on the new base
    (new_hello, _), (new_base, old_base) = records(repo, "hello"), records(repo, "base")
    cache = repo / ".bakehouse" / "cache" / "layers"
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 2  # each base's layer, unpacked once

    for bake in ("base", "hello"):
        write(repo / "bakes" / f"{bake}.toml", (repo / "bakes" / f"{bake}.toml").read_text()
              + '\n[prune]\nkeep = 1\nmin_age = "1h"\n')
    pruned = run_doit(repo, "prune", "--apply", env=LATER, check=True).output
    assert not image_file(repo, old_base).exists()  # the old base is gone, with its unpacked layer
    assert re.search(r"removed cache/layers/[0-9a-f]{64}", pruned), pruned
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 1
    assert inspect(image_file(repo, new_hello), "hello")["Layers"][0] == inspect(image_file(repo, new_base), "base")["Layers"][0]

    shutil.rmtree(cache)
    again = run_doit(repo, "bake:hello", "--rebake", check=True)
    assert "[hello] baked " in again.output
    assert records(repo, "hello")[0]["image_id"] != new_hello["image_id"]
    assert [m for m in Path("/proc/mounts").read_text().splitlines() if str(repo) in m] == []


def test_a_half_deleted_cached_layer_is_unpacked_again_not_mounted(repo: Path) -> None:
    """What an interrupted `rm -rf` or clean-up leaves of a cached layer is never taken for the
    base: the service rebakes with the base's whole tree under it, as the first bake did."""
    first = run_doit(repo, "bake:hello", check=True).output
    count = re.search(r"\[hello\] (\d+) packages in ", first)
    assert count, first
    (layer,) = [p for p in (repo / ".bakehouse" / "cache" / "layers").iterdir() if p.is_dir() and not p.name.startswith(".")]
    shutil.rmtree(layer / "var" / "lib" / "dpkg")  # half of an interrupted removal
    shutil.rmtree(layer / "etc")

    again = run_doit(repo, "bake:hello", "--rebake")
    assert again.returncode == 0, again.output
    assert f"[hello] {count.group(1)} packages in " in again.output, again.output
    first_image, second_image = records(repo, "hello")[1], records(repo, "hello")[0]
    assert second_image["image_id"] != first_image["image_id"]
    listed = [run_doit(repo, "images", "--packages", r["image_id"], check=True).output.splitlines()[1:]
              for r in (first_image, second_image)]
    assert listed[0] == listed[1] and len(listed[0]) > 1
    assert (layer / "var" / "lib" / "dpkg" / "status").is_file() and (layer / "etc").is_dir()


def test_an_image_in_the_old_format_is_rebaked_once_and_says_why(repo: Path) -> None:
    run_doit(repo, check=True)
    (hello,) = records(repo, "hello")
    # what a store written before images were OCI layouts holds: one .tar.zst per image
    layout = image_file(repo, hello)
    old = layout.with_name(layout.name + ".tar.zst")
    old.write_bytes(b"(an old-format image: only its record and existence are read)")
    shutil.rmtree(layout)
    record = repo / ".bakehouse" / "records" / "hello" / f"{hello['image_id']}.json"
    record.write_text(json.dumps({**hello, "locations": {"local": f"images/hello/{old.name}"}}))

    plan = run_doit(repo, "plan").output  # exit 1: something to bake
    assert f"{hello['image_id']} is a .tar.zst file: rebaked once as an OCI image" in plan, plan
    assert "base" in plan and re.search(r"base\s.*up to date", plan), plan
    assert "[hello] baked " in run_doit(repo, check=True).output
    assert "up to date" in run_doit(repo, "plan", "hello", check=True).output
    assert hello["image_id"] in run_doit(repo, "images", "hello", check=True).output  # still listed


def test_a_file_capability_a_service_bake_sets_is_in_its_layer(repo: Path, tmp_path: Path) -> None:
    """What a maintainer script's `setcap` leaves (ping's cap_net_raw) stays with the file. Run
    through bakehouse-image, the tool the service template calls, on the session's base: the
    tiny base has no setcap for a script to call, so the host's sets it, as a bake's would,
    through the overlay."""
    (base,) = records(repo, "base")
    layout = image_file(repo, base)
    tool = [str(Path(sysconfig.get_path("scripts")) / "bakehouse-image")]  # where the provider finds it
    work = tmp_path / "work"
    work.mkdir()
    subprocess.run([*tool, "root", str(layout), str(work), "--cache", str(repo / ".bakehouse" / "cache" / "layers")],
                   check=True, capture_output=True)
    out = tmp_path / "service"
    try:
        program = work / "root" / "usr" / "local" / "bin" / "pinger"
        program.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(work / "root" / "bin" / "busybox", program)
        subprocess.run(["setcap", "cap_net_raw+ep", str(program)], check=True)
        subprocess.run([*tool, "commit", str(work), str(layout), str(out), "--ref", "svc", "--created",
                        "1970-01-01T00:00:00Z", "--created-by", "a test", "--source-date-epoch", "0"],
                       check=True, capture_output=True)
    finally:
        if os.path.ismount(work / "root"):  # commit unmounts it; a failure before must not leave it
            subprocess.run(["umount", str(work / "root")], check=False)

    own_layer = image_layers(out)[-1]
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "-xzf", str(own_layer), "--xattrs", "--xattrs-include=*", "-C", str(unpacked)], check=True)
    shown = subprocess.run(["getcap", str(unpacked / "usr" / "local" / "bin" / "pinger")], check=True,
                           capture_output=True, text=True).stdout
    assert "cap_net_raw=ep" in shown


def test_images_files_lists_the_tree_umoci_unpacks(repo: Path, tmp_path: Path) -> None:
    """`doit images --files` applies the layers as the image spec says: hello's postinst
    removes a file of the base (a whiteout in its layer), and the listing agrees with umoci's
    unpacking of the same image, path for path."""
    postinst = repo / "packages" / "hello-svc" / "DEBIAN" / "postinst"
    postinst.write_text(postinst.read_text() + "rm -f /etc/debian_version\n")
    run_doit(repo, "bake:hello", check=True)
    (record,) = records(repo, "hello")
    listed = run_doit(repo, "images", "--files", "hello", check=True).stdout.splitlines()
    paths = {line.split(" /", 1)[1].split(" -> ")[0].split(" link to ")[0] for line in listed}
    root = unpack_image(image_file(repo, record), "hello", tmp_path / "unpacked")
    unpacked = {str(path.relative_to(root)) for path in root.rglob("*")}
    assert paths == unpacked
    assert "etc/debian_version" not in paths and "opt/hello-svc/VERSION" in paths
    (version_line,) = run_doit(repo, "images", "--files", "hello", "/opt/hello-svc/VERSION", check=True).stdout.splitlines()
    assert re.fullmatch(r"-rw-r--r--\s+0\s+0\s+\d+ 1970-01-01 00:00 /opt/hello-svc/VERSION", version_line)
    missing = run_doit(repo, "images", "--files", "hello", "/etc/debian_version")
    assert missing.returncode == 2
    assert missing.output == f"ERROR: {record['image_id']} has no /etc/debian_version\n"
