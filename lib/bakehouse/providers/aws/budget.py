"""How often bakehouse and packer retry AWS, and how long they wait for it: every knob in one place.

AWS throttles (RequestLimitExceeded), answers 5xx now and then, shows new AMIs and their
tags after a delay, and takes minutes to make or copy an AMI. Each of these has a budget:

    BAKEHOUSE_AWS_MAX_ATTEMPTS      attempts per boto3 call, the first included (15)
    BAKEHOUSE_AWS_CONNECT_TIMEOUT   seconds to connect, per attempt (10)
    BAKEHOUSE_AWS_READ_TIMEOUT      seconds to answer, per attempt (30)
    BAKEHOUSE_AWS_PACKER_RETRIES    retries per call of packer's AWS SDK (`max_retries`, 20)
    BAKEHOUSE_AWS_POLL_SECONDS      how often packer's waiters ask (`aws_polling`, 15)
    BAKEHOUSE_AWS_WAIT_SECONDS      how long they wait for an instance, AMI or copy (3600)
    BAKEHOUSE_AWS_SETTLE_SECONDS    how long bakehouse waits, after packer, for each AMI to show
                                    available with its tags (300)
    BAKEHOUSE_AWS_REGION_RETRIES    rebakes of a region whose build failed on a transient AWS
                                    error, after the first (2)

AWS_MAX_ATTEMPTS is not read for any of them: packer would also take it as the poll limit
of its waiters (10 polls of 15 s fail a 3-minute AMI), so the template names packer's limits
itself and boto3's come from its Config.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ...errors import ProviderError

PREFIX = "BAKEHOUSE_AWS_"


@dataclass(frozen=True)
class Budget:
    max_attempts: int = 15  # at 50% throttling, one call in 32768 fails
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    packer_retries: int = 20
    poll_seconds: int = 15
    wait_seconds: int = 3600
    settle_seconds: int = 300
    region_retries: int = 2

    @property
    def poll_attempts(self) -> int:
        """Polls of packer's waiters: the wait, in polls."""
        return max(1, math.ceil(self.wait_seconds / self.poll_seconds))


def budget() -> Budget:
    """The budget, with what the environment sets; a malformed value is one line."""
    default = Budget()
    return Budget(
        max_attempts=_number("MAX_ATTEMPTS", default.max_attempts, 1, 100),
        connect_timeout=_seconds("CONNECT_TIMEOUT", default.connect_timeout),
        read_timeout=_seconds("READ_TIMEOUT", default.read_timeout),
        packer_retries=_number("PACKER_RETRIES", default.packer_retries, 1, 100),
        poll_seconds=_number("POLL_SECONDS", default.poll_seconds, 1, 600),
        wait_seconds=_number("WAIT_SECONDS", default.wait_seconds, 1, 86400),
        settle_seconds=_number("SETTLE_SECONDS", default.settle_seconds, 0, 86400),
        region_retries=_number("REGION_RETRIES", default.region_retries, 0, 10),
    )


def _number(name: str, default: int, low: int, high: int) -> int:
    value = os.environ.get(PREFIX + name)
    if not value:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise ProviderError(f"{PREFIX}{name}={value!r} is not a whole number from {low} to {high}")
    return int(value)


def _seconds(name: str, default: float) -> float:
    value = os.environ.get(PREFIX + name)
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1
    if not 0 < seconds <= 3600:
        raise ProviderError(f"{PREFIX}{name}={value!r} is not a number of seconds between 0 and 3600")
    return seconds
