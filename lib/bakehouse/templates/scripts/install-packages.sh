#!/bin/sh
# Install packages into the system this runs in (a chroot, or an instance being baked),
# then check with dpkg-query that each one is there at the version bakehouse resolved.
#   install-packages.sh DEB_DIR SPEC...
# DEB_DIR holds local .deb artifacts (may be empty); each SPEC is name=version or name.
# A freshly booted instance is still settling: cloud-init is running and unattended-upgrades
# may hold the dpkg lock. Wait for those conditions (never a fixed pause), for at most
# BAKEHOUSE_SETTLE_SECONDS in all (default 300), then fail with one clear line.
set -eu
deb_dir=$1
shift
export DEBIAN_FRONTEND=noninteractive
settle=${BAKEHOUSE_SETTLE_SECONDS:-300}
deadline=$(( $(date +%s) + settle ))

left() {
    now=$(date +%s)
    [ "$now" -lt "$deadline" ] && echo $(( deadline - now )) || echo 0
}

# BAKEHOUSE_IN_CHROOT: a volume packer's amazon-chroot provisions has not booted: no cloud-init runs.
if [ -z "${BAKEHOUSE_IN_CHROOT:-}" ] && command -v cloud-init >/dev/null 2>&1; then
    echo "install-packages: waiting for cloud-init to finish"
    timeout "$(left)" cloud-init status --wait >/dev/null || {
        echo "install-packages: cloud-init did not finish within ${settle}s (cloud-init status --wait)" >&2
        exit 1
    }
fi

# dpkg -i has no lock timeout of its own (apt has DPkg::Lock::Timeout): retry it while the
# lock is held, until the deadline.
dpkg_waiting() {
    while :; do
        if output=$("$@" 2>&1); then
            printf '%s\n' "$output"
            return 0
        fi
        case "$output" in
            *"lock"*"locked"*) ;;
            *) printf '%s\n' "$output" >&2; return 1 ;;
        esac
        if [ "$(left)" -eq 0 ]; then
            echo "install-packages: the dpkg lock was still held after ${settle}s (unattended-upgrades? another apt?); giving up" >&2
            return 1
        fi
        echo "install-packages: waiting for the dpkg lock ($(left)s left)"
        sleep 1
    done
}

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
    # apt waits for the lock itself. A source it cannot reach is only a warning to apt-get
    # update, and then "Unable to locate package": name the host it could not resolve instead.
    update_log=$(mktemp)
    apt-get -o DPkg::Lock::Timeout="$(left)" update -q > "$update_log" 2>&1 || updated=$?
    cat "$update_log"
    unresolved=$(sed -n "s/.*\(Temporary failure resolving\|Could not resolve\) '\([^']*\)'.*/\2/p" "$update_log" | head -n 1)
    rm -f "$update_log"
    if [ -n "$unresolved" ]; then
        echo "bakehouse: error: apt cannot resolve $unresolved, which the image's apt sources name (is DNS reachable from this machine?)" >&2
        exit 1
    fi
    [ "${updated:-0}" = 0 ] || exit "$updated"
    # apt's own output is shown as it comes, and kept: a package or version the sources do not
    # have is then said in one line instead of "exit status 100"
    install_log=$(mktemp)
    installed_status=$(mktemp)
    # shellcheck disable=SC2086 # names and versions were validated; word splitting is wanted
    { apt-get -o DPkg::Lock::Timeout="$(left)" install -y -q --no-install-recommends $debs $from_repository 2>&1 \
        && echo 0 > "$installed_status" || echo $? > "$installed_status"; } | tee "$install_log"
    read -r installed_code < "$installed_status"
    missing=$(sed -n "s/^E: Unable to locate package \(.*\)$/\1/p" "$install_log" | head -n 1)
    missing_version=$(sed -n "s/^E: Version '\(.*\)' for '\(.*\)' was not found$/\2 \1/p" "$install_log" | head -n 1)
    rm -f "$install_log" "$installed_status"
    if [ -n "$missing" ]; then
        echo "bakehouse: error: no package '$missing' in the image's apt sources (misspelt? in another suite or repository?)" >&2
        exit 1
    fi
    if [ -n "$missing_version" ]; then
        echo "bakehouse: error: the image's apt sources have no version ${missing_version#* } of ${missing_version%% *}" >&2
        exit 1
    fi
    [ "$installed_code" = 0 ] || exit "$installed_code"
elif [ -n "$debs" ]; then
    # shellcheck disable=SC2086
    dpkg_waiting dpkg -i $debs
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
