#!/bin/sh
# Install packages into the system this runs in (a chroot, or an instance being baked),
# then check with dpkg-query that each one is there at the version bakehouse resolved.
#   install-packages.sh DEB_DIR SPEC...
# DEB_DIR holds local .deb artifacts (may be empty); each SPEC is name=version or name.
set -eu
deb_dir=$1
shift
export DEBIAN_FRONTEND=noninteractive

debs=$(find "$deb_dir" -maxdepth 1 -name '*.deb' | sort)
in_debs=""
for deb in $debs; do
    in_debs="$in_debs $(dpkg-deb -f "$deb" Package) "
done
from_repository=""
for spec in "$@"; do
    case "$in_debs" in
        *" ${spec%%=*} "*) ;;
        *) from_repository="$from_repository $spec" ;;
    esac
done

if [ -n "$from_repository" ]; then
    apt-get update -q
    # shellcheck disable=SC2086 # names and versions were validated; word splitting is wanted
    apt-get install -y -q --no-install-recommends $debs $from_repository
elif [ -n "$debs" ]; then
    # shellcheck disable=SC2086
    dpkg -i $debs
fi

status=0
for spec in "$@"; do
    name=${spec%%=*}
    installed=$(dpkg-query -W -f='${Version}' "$name" 2>/dev/null || true)
    if [ -z "$installed" ]; then
        echo "install-packages: $name is not installed" >&2
        status=1
    elif [ "$spec" != "$name" ] && [ "$installed" != "${spec#*=}" ]; then
        echo "install-packages: $name is at $installed, not ${spec#*=}" >&2
        status=1
    else
        echo "install-packages: $name=$installed installed"
    fi
done
exit $status
