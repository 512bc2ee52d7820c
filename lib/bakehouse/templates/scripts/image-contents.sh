#!/bin/sh
# List the packages installed in an image, one per line, for bakehouse's package manifest:
#   name TAB version TAB architecture TAB source name TAB source version
#   image-contents.sh [ADMINDIR]
# ADMINDIR is the image's dpkg database (default /var/lib/dpkg: run inside the image, as on an
# instance over SSH); locally the host's dpkg-query reads the unpacked image's database.
# Inside the image it also lists the image's apt sources ("#apt" lines).
set -eu
admindir=${1:-/var/lib/dpkg}
dpkg-query --admindir="$admindir" -W \
    -f='${db:Status-Status}\t${Package}\t${Version}\t${Architecture}\t${source:Package}\t${source:Version}\n' |
    awk -F '\t' -v OFS='\t' '$1 == "installed" { print $2, $3, $4, $5, $6 }'
# Inside the image, its apt sources too (where its updates would come from): each line of its
# sources files, as "#apt TAB file TAB line".
if [ -z "${1:-}" ]; then
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$file" ] || continue
        while IFS= read -r line || [ -n "$line" ]; do
            printf '#apt\t%s\t%s\n' "$file" "$line"
        done < "$file"
    done
fi
