"""Which step of how many a long bake is at, and for how long it has run, as this field's tools
show it: `[base] step 3/7 unpacking (0:41)`, between packer's own lines.

The steps of the shipped templates are known from the lines their tools print (mmdebstrap's
stages, the service script's, amazon-ebs's); a template of one's own shows none. Step lines
(and the failure line) are coloured on a terminal, and plain when piped or when NO_COLOR is
set (no-color.org).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import TextIO

Step = tuple[str, str]  # (a pattern of a line that starts it, what the step does)

LOCAL_BASE: tuple[Step, ...] = (
    (r"I: running apt-get update", "reading the mirror's indexes"),
    (r"I: downloading packages", "downloading packages"),
    (r"I: extracting archives", "unpacking"),
    (r"I: installing essential packages", "installing essential packages"),
    (r"I: installing remaining packages", "installing the other packages"),
    (r"I: creating tarball", "packing the root"),
    (r"local-base: writing the image", "writing the image"),
)
LOCAL_SERVICE: tuple[Step, ...] = (
    (r"local-service: mounting the base image", "mounting the base"),
    (r"local-service: installing", "installing packages"),
    (r"local-service: writing the image", "writing the image"),
)
AMAZON_EBS: tuple[Step, ...] = (
    (r"Launching a source AWS instance", "launching the build instance"),
    (r"Waiting for instance .* to become ready", "waiting for the instance"),
    (r"Waiting for SSH|Provisioning with|Connected to SSH", "provisioning over SSH"),
    (r"Stopping the source instance", "stopping the instance"),
    (r"Creating AMI ", "creating the AMI"),
    (r"Waiting for AMI to become ready", "waiting for the AMI"),
    (r"Copying AMI|Waiting for AMI copy", "copying to other regions"),
    (r"Adding tags to AMI", "tagging"),
)
# Lines within a step worth a line of their own: amazon-ebs names each region it copies to.
DETAILS: tuple[Step, ...] = (
    (r"Copying to: (\S+)", "copying to {0}"),
    (r"Waiting for all copies to complete", "waiting for the copies"),
)
BY_TEMPLATE = {"local-base": LOCAL_BASE, "local-service": LOCAL_SERVICE, "amazon-ebs": AMAZON_EBS}

BOLD_CYAN, RED, RESET = "\x1b[1;36m", "\x1b[31m", "\x1b[0m"


def steps_of(template: str) -> tuple[Step, ...]:
    """The steps of a shipped template (by its name), else none."""
    name = template.rsplit("/", 1)[-1]
    return next((steps for prefix, steps in BY_TEMPLATE.items() if name.startswith(prefix)), ())


def coloured(out: TextIO) -> bool:
    isatty = getattr(out, "isatty", None)
    return not os.environ.get("NO_COLOR") and bool(isatty and isatty())


@dataclass
class Progress:
    """Reads packer's lines as they come and says when a new step starts."""

    label: str
    steps: tuple[Step, ...]
    colour: bool = False
    started: float = field(default_factory=time.monotonic)
    at: int = 0  # steps started so far

    def line(self, text: str) -> str | None:
        """The step line to show before `text`, if `text` starts a later step."""
        for number, (pattern, doing) in enumerate(self.steps, 1):
            if number > self.at and re.search(pattern, text):
                self.at = number
                return self._shown(f"step {number}/{len(self.steps)} {doing}")
        for pattern, doing in DETAILS if self.steps else ():
            if found := re.search(pattern, text):
                return self._shown(f"step {self.at}/{len(self.steps)} {doing.format(*found.groups())}")
        return None

    def _shown(self, what: str) -> str:
        shown = f"[{self.label}] {what} ({self.elapsed()})"
        return f"{BOLD_CYAN}{shown}{RESET}" if self.colour else shown

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
            else f"{seconds // 60}:{seconds % 60:02d}"

    def failed(self, text: str) -> str:
        return f"{RED}{text}{RESET}" if self.colour else text
