"""moto's EC2 server on loopback, standing in for AWS in tests (there is no AWS account here).

    python tests/moto_ec2.py PORT

Runs `moto.server` on 127.0.0.1:PORT with one correction: moto gives every image it makes
(CreateImage, CopyImage, RegisterImage) the root device type "standard", where AWS reports
"ebs" for an image of an EBS-backed instance, an EBS snapshot, or a copy of an EBS image.
Packer refuses a "standard" source AMI, so without this a service could not be baked on a
base that moto made. The images moto ships keep the root device type they declare.

S3's conditional writes (If-None-Match, If-Match) are atomic on AWS; moto checks the condition
and then writes, unlocked, so two requests at once could both pass. The launcher serialises
moto's PutObject and DeleteObject handlers, making each check-and-write one step as on AWS:
the shared-lock tests then test bakehouse's protocol, with S3's guarantee. SSM's PutParameter
without Overwrite (create only if absent: how a channel's move is recorded) gets the same.

It also lists, in every region, a Debian 12 image of Debian's cloud team (owner 136693071363,
named `debian-12-amd64-*` as Debian names them), which moto's own images do not include, so
the shipped AWS example's source filter finds what it finds on AWS; and an Amazon Linux 2023
image, for the Amazon Linux example.

Of moto's own images it loads its short generic list only (MOTO_AMIS_PATH), not the 1,200
ECS-optimised images per region it would otherwise build (with a snapshot each) on every
region's first use after each reset: resets and lookups took three times the CPU with them.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

DEBIAN_12 = {
    "ami_id": "ami-0fec2c2e2017f4e7b",
    "name": "debian-12-amd64-20261110-2290",
    "description": "Debian 12 (20261110-2290)",
    "owner_id": "136693071363",
    "architecture": "x86_64",
    "image_location": "136693071363/debian-12-amd64-20261110-2290",
    "image_type": "machine",
    "public": True,
    "platform": "Linux/UNIX",
    "state": "available",
    "hypervisor": "xen",
    "root_device_name": "/dev/xvda",
    "root_device_type": "ebs",
    "sriov": "simple",
    "virtualization_type": "hvm",
}


# Amazon Linux 2023 as Amazon names it (owner alias `amazon`, as moto gives its own images), for
# the Amazon Linux example (examples/aws-al2023/).
AL2023 = {
    **DEBIAN_12,
    "ami_id": "ami-0a3c3a20c09d6f377",
    "name": "al2023-ami-2023.6.20261110.0-kernel-6.1-x86_64",
    "description": "Amazon Linux 2023 AMI 2023.6.20261110.0 x86_64 HVM kernel-6.1",
    "owner_id": "137112412989",
    "image_location": "amazon/al2023-ami-2023.6.20261110.0-kernel-6.1-x86_64",
}


def _ebs_like_aws(original: Any) -> Any:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if "root_device_type" not in kwargs:
            source = kwargs.get("source_ami")
            kwargs["root_device_type"] = source.root_device_type if source is not None else "ebs"
        original(self, *args, **kwargs)

    return __init__


def _atomic(handler: Any, lock: threading.Lock) -> Any:
    def serialised(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return handler(self, *args, **kwargs)

    return serialised


def _generic_images_only() -> Path:
    """MOTO_AMIS_PATH: moto's generic images and Debian's, written plain (moto reads it
    uncompressed, once, when its AMI module is imported); returns the file."""
    spec = importlib.util.find_spec("moto")
    assert spec is not None and spec.submodule_search_locations
    packaged = Path(list(spec.submodule_search_locations)[0]) / "ec2" / "resources" / "amis.json.gz"
    images = json.loads(gzip.decompress(packaged.read_bytes())) + [dict(DEBIAN_12), dict(AL2023)]
    with tempfile.NamedTemporaryFile("w", prefix="moto-amis-", suffix=".json", delete=False) as listing:
        json.dump(images, listing)
    os.environ["MOTO_AMIS_PATH"] = listing.name
    return Path(listing.name)


def main(port: str) -> None:
    listing = _generic_images_only()
    from moto.ec2.models.amis import Ami

    listing.unlink()  # read: moto keeps the list, and only looks for the variable from now on

    Ami.__init__ = _ebs_like_aws(Ami.__init__)  # type: ignore[method-assign]
    from moto.s3.responses import S3Response

    writes = threading.Lock()
    S3Response.put_object = _atomic(S3Response.put_object, writes)  # type: ignore[method-assign]
    S3Response.delete_object = _atomic(S3Response.delete_object, writes)  # type: ignore[method-assign]
    from moto.ssm.responses import SimpleSystemManagerResponse

    # SSM's PutParameter without Overwrite is a conditional write on AWS (a channel's move)
    SimpleSystemManagerResponse.put_parameter = _atomic(  # type: ignore[method-assign]
        SimpleSystemManagerResponse.put_parameter, writes)
    from moto.server import main as moto_main

    moto_main(["-H", "127.0.0.1", "-p", port])


if __name__ == "__main__":
    main(sys.argv[1])
