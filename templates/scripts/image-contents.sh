#!/bin/sh
# List the packages installed in an image, one per line, for bakehouse's package manifest:
#   name TAB version TAB architecture TAB source name TAB source version
#   image-contents.sh [ADMINDIR]
# ADMINDIR is the image's dpkg database (default /var/lib/dpkg: run inside the image, as on an
# instance over SSH); locally the host's dpkg-query reads the unpacked image's database.
set -eu
admindir=${1:-/var/lib/dpkg}
dpkg-query --admindir="$admindir" -W \
    -f='${db:Status-Status}\t${Package}\t${Version}\t${Architecture}\t${source:Package}\t${source:Version}\n' |
    awk -F '\t' -v OFS='\t' '$1 == "installed" { print $2, $3, $4, $5, $6 }'
