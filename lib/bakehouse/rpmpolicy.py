"""RPM's rules for package names and versions, checked wherever one is read for an RPM image:
a bake file's packages, an RPM repository's, and the pins of bakehouse.lock. As with Debian's
(debpolicy.py), nothing that passes can be read by a shell or by HCL as syntax."""

from __future__ import annotations

import re

from .errors import PackageError
from .rpmversion import Evr

# Fedora's and Amazon Linux's names: letters of either case, digits, and - . _ + (perl-Data-Dumper, python3-PyYAML).
PACKAGE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
PACKAGE_VERSION = re.compile(r"^([0-9]+:)?[A-Za-z0-9._+~^]+(-[A-Za-z0-9._+~^]+)?$")


def check_name(where: str, name: str) -> None:
    if not PACKAGE_NAME.match(name):
        raise PackageError(f"{where}: packages: {name!r} is not an RPM package name "
                           "(letters, digits, '-', '.', '_', '+')")


def check_version(where: str, name: str, version: str) -> None:
    try:
        Evr.parse(version)
        valid = bool(PACKAGE_VERSION.match(version))
    except ValueError:
        valid = False
    if not valid:
        raise PackageError(f"{where}: packages: {name}={version!r}: not an RPM version such as 1.0.4-1 "
                           "([EPOCH:]VERSION[-RELEASE])")
