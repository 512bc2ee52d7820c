#!/bin/bash
# Make a service image: unpack the base image, install packages in a chroot, pack as .tar.zst.
# Environment (set by the template): BASE_IMAGE, OUTPUT, INSTALL_SCRIPT,
# DEBS (newline-separated .deb paths), PACKAGES (name=version per line, every package),
# CONTENTS_SCRIPT and CONTENTS (list the image's packages into that file), RUN_TESTS and TESTS
# (newline-separated test scripts, run inside the finished root before it is packed).
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "local-service: installing packages in a chroot needs root; run the bake as root" >&2
    exit 1
fi

# Unpacking is several times faster in memory than on disk, when /dev/shm has room for the
# unpacked base (a container's default /dev/shm is 64 MB): about 6x the compressed image,
# plus room for the packages. BAKEHOUSE_SCRATCH chooses the place outright.
need_kib=$(( $(stat -c %s "$BASE_IMAGE") * 6 / 1024 + 65536 ))
roomy() {
    [ -d "$1" ] && [ -w "$1" ] && [ "$(df -Pk "$1" | awk 'NR == 2 { print $4 }')" -ge "$need_kib" ]
}
if [ -n "${BAKEHOUSE_SCRATCH:-}" ]; then
    scratch=$BAKEHOUSE_SCRATCH
elif roomy /dev/shm; then
    scratch=/dev/shm
else
    scratch=${TMPDIR:-/tmp}
    echo "local-service: /dev/shm has less than $(( need_kib / 1024 )) MiB free; unpacking in $scratch"
fi
work=$(mktemp -d "$scratch/bakehouse-service.XXXXXX")
partial="$OUTPUT.partial.tar.zst"
trap 'rm -rf "$work"; rm -f "$partial"' EXIT
trap 'exit 130' INT TERM  # cancelled: the EXIT trap still removes what we made
root="$work/root"
mkdir -p "$root"

echo "local-service: unpacking $(basename "$BASE_IMAGE")"
# tar reads the file itself: in a `zstd -dc | tar -x` pipeline tar stops at the end-of-archive
# marker, zstd can die of SIGPIPE on the padding after it, and pipefail fails the bake by chance.
tar --zstd -xf "$BASE_IMAGE" --numeric-owner -C "$root"

inbox="$root/tmp/bakehouse"
mkdir -p "$inbox/debs"
while IFS= read -r deb; do
    [ -n "$deb" ] && cp "$deb" "$inbox/debs/"
done <<< "$DEBS"
cp "$INSTALL_SCRIPT" "$inbox/install-packages.sh"
mapfile -t specs <<< "$PACKAGES"
[ -n "${specs[0]:-}" ] || specs=()

echo "local-service: installing ${specs[*]:-nothing}"
# A clean environment: nothing of this host's (TMPDIR, HOME, locale, ...) reaches the image.
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
    chroot "$root" /bin/sh /tmp/bakehouse/install-packages.sh /tmp/bakehouse/debs "${specs[@]}"
rm -rf "$inbox"

mapfile -t tests <<< "$TESTS"
[ -n "${tests[0]:-}" ] || tests=()
if [ "${#tests[@]}" -gt 0 ]; then
    sh "$RUN_TESTS" "$root" "${tests[@]}"
fi
sh "$CONTENTS_SCRIPT" "$root/var/lib/dpkg" > "$CONTENTS"

mkdir -p "$(dirname "$OUTPUT")"
tar --numeric-owner --sort=name -C "$root" -c . | zstd -q -f -T0 -3 -o "$partial"
mv "$partial" "$OUTPUT"
echo "local-service: packed $OUTPUT"
