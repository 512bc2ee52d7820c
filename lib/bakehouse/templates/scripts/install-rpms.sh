#!/bin/sh
# Install RPMs into the system this runs in (an Amazon Linux instance being baked), then check
# with rpm -q that each one is there at the version bakehouse resolved.
#   install-rpms.sh RPM_DIR SPEC...
# RPM_DIR holds the .rpm files bakehouse uploaded (built here, or taken from a [[repository]]);
# each SPEC is name=version (VERSION, VERSION-RELEASE or EPOCH:VERSION-RELEASE) or name. A
# freshly booted instance is still settling: wait for cloud-init, and let dnf wait for another
# dnf's lock (dnf-makecache on a fresh instance), for at most BAKEHOUSE_SETTLE_SECONDS in all
# (default 300), then fail with one clear line. A scriptlet that fails (%pre, %post, ...) fails
# the install: dnf itself only warns and exits 0, leaving a half-configured package.
set -eu
rpm_dir=$1
shift
settle=${BAKEHOUSE_SETTLE_SECONDS:-300}
deadline=$(( $(date +%s) + settle ))

left() {
    now=$(date +%s)
    [ "$now" -lt "$deadline" ] && echo $(( deadline - now )) || echo 0
}

# BAKEHOUSE_IN_CHROOT: a volume packer's amazon-chroot provisions has not booted: no cloud-init runs.
if [ -z "${BAKEHOUSE_IN_CHROOT:-}" ] && command -v cloud-init >/dev/null 2>&1; then
    echo "install-rpms: waiting for cloud-init to finish"
    timeout "$(left)" cloud-init status --wait >/dev/null || {
        echo "bakehouse: error: cloud-init did not finish within ${settle}s (cloud-init status --wait)" >&2
        exit 1
    }
fi

files=$(find "$rpm_dir" -maxdepth 1 -name '*.rpm' | sort)
in_files=" "
for file in $files; do
    in_files="$in_files$(rpm -qp --qf '%{NAME}' "$file") "
done
wanted=""
for spec in "$@"; do
    name=${spec%%=*}
    case "$in_files" in
        *" $name "*) continue ;;  # a file built here
    esac
    if [ "$spec" = "$name" ]; then wanted="$wanted $name"; else wanted="$wanted $name-${spec#*=}"; fi
done

install_log=$(mktemp)
installed_status=$(mktemp)
# shellcheck disable=SC2086 # names and versions were validated; word splitting is wanted
{ timeout "$(left)" dnf -y install $files $wanted 2>&1 && echo 0 > "$installed_status" || echo $? > "$installed_status"; } \
    | tee "$install_log"
read -r installed_code < "$installed_status"
missing=$(sed -n 's/^No match for argument: \(.*\)$/\1/p' "$install_log" | head -n 1)
scriptlet=$(grep -m 1 '^Error in .* scriptlet in rpm package ' "$install_log" || true)
rm -f "$install_log" "$installed_status"
if [ -n "$missing" ]; then
    echo "bakehouse: error: no package '$missing' in the image's dnf repositories (misspelt? another version?)" >&2
    exit 1
fi
if [ "$installed_code" = 124 ]; then
    echo "bakehouse: error: dnf did not finish within ${settle}s (another dnf holding its lock?)" >&2
    exit 1
fi
[ "$installed_code" = 0 ] || exit "$installed_code"
if [ -n "$scriptlet" ]; then
    echo "bakehouse: error: dnf: $scriptlet (its output is above)" >&2
    exit 1
fi

status=0
for spec in "$@"; do
    name=${spec%%=*}
    installed=$(rpm -q --qf '%{EPOCHNUM}:%{VERSION}-%{RELEASE}' "$name" 2>/dev/null || true)
    if [ -z "$installed" ] || [ "${installed#*package }" != "$installed" ]; then
        echo "install-rpms: $name is not installed" >&2
        status=1
        continue
    fi
    [ "$spec" != "$name" ] || { echo "install-rpms: $name $installed installed"; continue; }
    asked=${spec#*=}
    plain=${installed#0:}
    case "$asked" in
        "$installed" | "$plain" | "${plain%-*}") echo "install-rpms: $name $plain installed" ;;
        *) echo "install-rpms: $name is $plain, not $asked" >&2; status=1 ;;
    esac
done
exit $status
