#!/bin/bash
# Make a service image: the base image's layers plus one layer of what installing its
# packages changed, as an OCI image at $OUTPUT.
# Environment (set by the template): BASE_IMAGE (the base's OCI layout), OUTPUT (this image's),
# REF (its name in the layout), CREATED (its time in the image), SOURCE_DATE_EPOCH (no time in its
# layer is later), IMAGE_TOOL (bakehouse-image), LAYER_CACHE
# (the base's layers unpacked, shared by bakes), INSTALL_SCRIPT, DEBS (newline-separated .deb
# paths), PACKAGES (name=version per line, every package), CONTENTS_SCRIPT and CONTENTS (list
# the image's packages into that file), RUN_TESTS and TESTS (newline-separated test scripts,
# run inside the finished root before it is packed).
#
# The base's tree is never copied: its layers, unpacked once in LAYER_CACHE, are the lower
# directories of an overlay mount, and the mount's upper directory, which receives every
# change, becomes the new layer.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "local-service: installing packages in a chroot needs root; run the bake as root" >&2
    exit 1
fi

# What the bake changes is kept in memory (/dev/shm) when it has room: about 4x the packages'
# size, plus 16 MiB for what their scripts write (a container's /dev/shm is 64 MiB).
# BAKEHOUSE_SCRATCH chooses the place outright.
debs_kib=0
while IFS= read -r deb; do
    [ -n "$deb" ] && debs_kib=$(( debs_kib + $(stat -c %s "$deb") / 1024 ))
done <<< "$DEBS"
need_kib=$(( debs_kib * 4 + 16384 ))
roomy() {
    [ -d "$1" ] && [ -w "$1" ] && [ "$(df -Pk "$1" | awk 'NR == 2 { print $4 }')" -ge "$need_kib" ]
}
if [ -n "${BAKEHOUSE_SCRATCH:-}" ]; then
    scratch=$BAKEHOUSE_SCRATCH
elif roomy /dev/shm; then
    scratch=/dev/shm
else
    scratch=${BAKEHOUSE_RUN_DIR:-${TMPDIR:-/tmp}}
    echo "local-service: /dev/shm has less than $(( need_kib / 1024 )) MiB free; working in $scratch"
fi
# Named after the bake's run (BAKEHOUSE_RUN), so bakehouse removes it, mounts and all, if this
# script is stopped before its own clean-up is done.
if [ -n "${BAKEHOUSE_RUN:-}" ]; then
    work="$scratch/$BAKEHOUSE_RUN"
    mkdir -m 700 "$work"
else
    work=$(mktemp -d "$scratch/bakehouse-service.XXXXXX")
fi
root="$work/root"
resolver="$root/etc/resolv.conf"
unmount() {  # a busy mount (a process still leaving) is detached at once and goes when it is free
    mountpoint -q "$1" 2>/dev/null || return 0
    umount "$1" 2>/dev/null || umount -l "$1"
}
cleanup() {
    trap '' INT TERM  # a second signal must not cut the clean-up short
    unmount "$resolver"  # the innermost first
    unmount "$root"
    rm -rf "$work" "$OUTPUT.partial"
}
trap cleanup EXIT
# bakehouse-image finishes what it started (a mount, an image written whole) before a Ctrl-C
# is acted on: it runs with SIGINT ignored, and this script's trap acts as soon as it is done.
uninterrupted() { (trap '' INT; exec "$@"); }
trap 'exit 130' INT TERM  # cancelled: the EXIT trap still unmounts and removes what we made

# Held shared while the base's layers are mounted: a clean-up of the cache waits for it.
mkdir -p "$LAYER_CACHE"
exec 9>>"$LAYER_CACHE/.in-use"
flock -s 9
echo "local-service: mounting the base image"
uninterrupted "$IMAGE_TOOL" root "$BASE_IMAGE" "$work" --cache "$LAYER_CACHE"

inbox="$root/tmp/bakehouse"
mkdir -p "$inbox/debs"
while IFS= read -r deb; do
    [ -n "$deb" ] && cp "$deb" "$inbox/debs/"
done <<< "$DEBS"
cp "$INSTALL_SCRIPT" "$inbox/install-packages.sh"
mapfile -t specs <<< "$PACKAGES"
[ -n "${specs[0]:-}" ] || specs=()

# apt in the chroot resolves its sources' hosts with this machine's resolver (or
# BAKEHOUSE_RESOLV_CONF), lent for the install only: bind-mounted over the image's own file, or
# over an empty stand-in removed afterwards, so nothing of it lands in the layer. An image
# whose resolv.conf is a link is left as it is (the link may point out of the chroot).
placeholder=""
if [ ! -L "$resolver" ]; then
    if [ ! -e "$resolver" ]; then
        : > "$resolver"
        placeholder=yes
    fi
    mount --bind -o ro "${BAKEHOUSE_RESOLV_CONF:-/etc/resolv.conf}" "$resolver"
fi

echo "local-service: installing ${specs[*]:-nothing}"
# A clean environment: nothing of this host's (TMPDIR, HOME, locale, ...) reaches the image.
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" \
    chroot "$root" /bin/sh /tmp/bakehouse/install-packages.sh /tmp/bakehouse/debs "${specs[@]}"
unmount "$resolver"
[ -z "$placeholder" ] || rm -f "$resolver"
rm -rf "$inbox"

mapfile -t tests <<< "$TESTS"
[ -n "${tests[0]:-}" ] || tests=()
if [ "${#tests[@]}" -gt 0 ]; then
    sh "$RUN_TESTS" "$root" "${tests[@]}"
fi
sh "$CONTENTS_SCRIPT" "$root/var/lib/dpkg" > "$CONTENTS"
# What differs from bake to bake of the same inputs (logs with times in them, ldconfig's cache
# of file times, Python's byte-code) stays out of the layer, as mmdebstrap leaves it out of a
# base: the same inputs give the same image, byte for byte.
for file in var/log/dpkg.log var/log/alternatives.log var/log/apt/history.log var/log/apt/term.log \
        var/log/apt/eipp.log.xz var/cache/ldconfig/aux-cache; do
    rm -f "$root/$file"
done
(cd "$work/upper" && find . -name '*.pyc' -type f) | while IFS= read -r compiled; do
    rm -f "$root/$compiled"
done

# What apt fetched to install by name (the lists of its sources, the .debs it downloaded, its
# caches) is not part of the image, as mmdebstrap leaves it out of a base: with the overlay
# unmounted, those folders' changes are dropped from its upper directory, so the layer leaves
# the base's as they were (no whiteout hides anything of the base).
unmount "$root"
rm -rf "$work/upper/var/lib/apt/lists" "$work/upper/var/cache/apt"

echo "local-service: writing the image"
uninterrupted "$IMAGE_TOOL" commit "$work" "$BASE_IMAGE" "$OUTPUT" --ref "$REF" --created "$CREATED" \
    --created-by "bakehouse: installed ${specs[*]:-nothing}" --source-date-epoch "$SOURCE_DATE_EPOCH"
echo "local-service: wrote $OUTPUT"
