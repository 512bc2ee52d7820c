"""Where bakehouse runs, as EC2's instance metadata service (IMDSv2) says: the instance and its
region, or nothing off EC2. Asked only for a bake whose template uses packer's amazon-chroot,
which builds on the instance packer runs on.

The endpoint is boto's: AWS_EC2_METADATA_SERVICE_ENDPOINT (default http://169.254.169.254),
and AWS_EC2_METADATA_DISABLED=true says there is none. Off EC2 the address answers nothing:
each request gives up after a second."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass

DEFAULT_ENDPOINT = "http://169.254.169.254"
TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class Instance:
    instance_id: str
    region: str


def endpoint() -> str:
    return os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


def this_instance() -> Instance | None:
    """The EC2 instance this process runs on, or None where no metadata service answers."""
    if os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
        return None
    base = endpoint()
    try:
        token = _read(urllib.request.Request(f"{base}/latest/api/token", method="PUT",
                                             headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}))
        asked = {"X-aws-ec2-metadata-token": token}
        instance_id = _read(urllib.request.Request(f"{base}/latest/meta-data/instance-id", headers=asked))
        region = _read(urllib.request.Request(f"{base}/latest/meta-data/placement/region", headers=asked))
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return Instance(instance_id, region) if instance_id.startswith("i-") and region else None


def _read(request: urllib.request.Request) -> str:
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
        return response.read(256).decode("ascii").strip()
