"""Debian policy for package names and versions (5.6.1, 5.6.12), checked wherever one is read:
a bake file's packages, and the pins of bakehouse.lock. Nothing that passes can be read by a
shell or by HCL as syntax.
"""

from __future__ import annotations

import re

from debian.debian_support import Version

from .errors import PackageError

PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
PACKAGE_VERSION = re.compile(r"^([0-9]+:)?[0-9][A-Za-z0-9.+~]*(-[A-Za-z0-9.+~]+)?$")


def check_name(where: str, name: str) -> None:
    if not PACKAGE_NAME.match(name):
        raise PackageError(
            f"{where}: packages: {name!r} is not a Debian package name "
            "(lower-case letters, digits, '+', '-', '.'; at least two characters)"
        )


def check_version(where: str, name: str, version: str) -> None:
    try:
        Version(version)
        valid = bool(PACKAGE_VERSION.match(version))
    except ValueError:
        valid = False
    if not valid:
        raise PackageError(f"{where}: packages: {name}={version!r}: not a Debian version such as 1.0.4-1")
