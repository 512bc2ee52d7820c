"""`bakehouse-image`: what the local templates' scripts call to read and write OCI images.

    bakehouse-image base TAR LAYOUT --ref NAME --created TIME --architecture ARCH --created-by TEXT [--cache DIR]
        a base image: the root filesystem in TAR (mmdebstrap's) as its one layer (and, with
        --cache, that layer unpacked in the cache, for the service bakes to come)
    bakehouse-image root BASE_LAYOUT WORK --cache DIR
        WORK/root becomes the base image's tree, an overlay mount of its layers unpacked in
        the cache; WORK/upper receives what the bake changes
    bakehouse-image commit WORK BASE_LAYOUT LAYOUT --ref NAME --created TIME --created-by TEXT [--source-date-epoch N]
        unmounts WORK/root; LAYOUT becomes the base's layers plus one layer of WORK/upper

LAYOUT is written beside itself (LAYOUT.partial) and renamed into place when complete, so it
is a whole image or absent. Errors are one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import BakehouseError
from .cache import LayerCache
from .layers import layer_from_tar, layer_from_upper
from .layout import BASE_DIGEST, BASE_NAME, CREATED, TITLE, OciImage, image_config, link_layers, read_image, write_image

# Mount options: no redirects or metadata-only copies, so the upper directory holds every
# changed file whole and a renamed directory is a copy plus a whiteout, as a layer needs.
OVERLAY_OPTIONS = "redirect_dir=off,metacopy=off,index=off"


def base(args: argparse.Namespace) -> None:
    def build(partial: Path) -> OciImage:
        layer = layer_from_tar(partial, args.tar)
        history = [{"created": args.created, "created_by": args.created_by}]
        config = image_config(args.architecture, args.created, (layer,), history, None)
        return write_image(partial, args.ref, config, (layer,), {CREATED: args.created, TITLE: args.ref})

    image = _write(args.layout, build)
    if args.cache is not None:
        LayerCache(args.cache).keep_base_tree(image.layers[0], args.tar)


def root(args: argparse.Namespace) -> None:
    image = read_image(args.base)
    cache = LayerCache(args.cache)
    lowers = cache.lower_dirs(image)
    work: Path = args.work.absolute()
    if any(c in str(work) for c in ",:\\"):
        raise BakehouseError(f"{work}: an overlay cannot be mounted from a path with ',', ':' or '\\' in it; "
                             "set BAKEHOUSE_SCRATCH to another directory")
    for part in ("upper", "work", "root"):
        (work / part).mkdir(mode=0o755, exist_ok=True)
    (work / "upper").chmod(0o755)  # the merged root's own mode is the upper directory's
    options = f"lowerdir={':'.join(lowers)},upperdir={work / 'upper'},workdir={work / 'work'},{OVERLAY_OPTIONS}"
    # The lower directories are named relative to the cache (cwd): a repository path with
    # spaces, commas or colons in it never reaches the mount options.
    result = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(work / "root")],
                            cwd=args.cache, capture_output=True, text=True)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["mount failed"])[-1]
        raise BakehouseError(f"cannot mount the base image's tree as an overlay ({reason}); service bakes need "
                             "root with the right to mount (in a container: --privileged or CAP_SYS_ADMIN), "
                             f"and scratch space ({work.parent}; BAKEHOUSE_SCRATCH chooses it) on a file system "
                             "an overlay can write to: tmpfs, ext4 or xfs, not another overlay")
    print(f"mounted {image.ref} ({len(lowers)} layer{'s' if len(lowers) != 1 else ''}) at {work / 'root'}")


def commit(args: argparse.Namespace) -> None:
    work: Path = args.work
    if os.path.ismount(work / "root"):
        subprocess.run(["umount", str(work / "root")], check=True)
    base_image = read_image(args.base)

    def build(partial: Path) -> OciImage:
        layer = layer_from_upper(partial, work / "upper", args.source_date_epoch)
        link_layers(base_image, partial)
        layers = (*base_image.layers, layer)
        history = [{"created": args.created, "created_by": args.created_by}]
        config = image_config("", args.created, layers, history, base_image)
        # The base by its name and digest, not by its image id (which holds when it was baked):
        # the same base content gives the same service image, wherever and whenever it is baked.
        annotations = {CREATED: args.created, TITLE: args.ref, BASE_DIGEST: base_image.manifest.digest,
                       BASE_NAME: base_image.ref}
        return write_image(partial, args.ref, config, layers, annotations)

    _write(args.layout, build)


def _write(layout: Path, build: Callable[[Path], OciImage]) -> OciImage:
    partial = layout.with_name(layout.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        image = build(partial)
        os.rename(partial, layout)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    size = sum(layer.blob.size for layer in image.layers[-1:])
    print(f"wrote {layout.name}: {image.manifest.digest} ({len(image.layers)} layers, top {size / 1e6:.1f} MB)")
    return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bakehouse-image", description="Read and write bakehouse's OCI images.")
    commands = parser.add_subparsers(dest="command", required=True)
    make_base = commands.add_parser("base", help="a base image from a root filesystem tar")
    make_base.add_argument("tar", type=Path)
    make_base.add_argument("layout", type=Path)
    make_root = commands.add_parser("root", help="mount a base image's tree for a service bake")
    make_root.add_argument("base", type=Path)
    make_root.add_argument("work", type=Path)
    make_root.add_argument("--cache", type=Path, required=True)
    make_commit = commands.add_parser("commit", help="a service image: the base's layers plus what changed")
    make_commit.add_argument("work", type=Path)
    make_commit.add_argument("base", type=Path)
    make_commit.add_argument("layout", type=Path)
    for writer in (make_base, make_commit):
        writer.add_argument("--ref", required=True)
        writer.add_argument("--created", required=True)
        writer.add_argument("--created-by", default="bakehouse")
    make_commit.add_argument("--source-date-epoch", type=int, default=None,
                             help="clamp the layer's times to this (seconds since 1970), for reproducible layers")
    make_base.add_argument("--architecture", required=True)
    make_base.add_argument("--cache", type=Path, help="also keep the root unpacked in this layer cache")
    args = parser.parse_args(argv)
    try:
        {"base": base, "root": root, "commit": commit}[args.command](args)
    except (BakehouseError, OSError, subprocess.CalledProcessError) as error:
        print(f"bakehouse-image {args.command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # what it wrote is left partial, and removed by its caller
        print(f"bakehouse-image {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
