#!/bin/bash
# Build a Debian root filesystem with mmdebstrap, as an OCI image (one layer) at $OUTPUT.
# Environment (set by the template): OUTPUT (the image's OCI layout, a directory), REF (its
# name in the layout), CREATED (its time in the image), SOURCE_DATE_EPOCH (every time in it, so the
# same inputs give the same bytes), ARCHITECTURE (dpkg's), IMAGE_TOOL (bakehouse-image),
# LAYER_CACHE (where service bakes find base layers unpacked: this one is left there too),
# SUITE, VARIANT, MIRROR (a sources line or file),
# INCLUDE (newline-separated package specs and .deb paths), EXPECT (name[=version] per line),
# CONTENTS_SCRIPT and CONTENTS (list the image's packages into that file), RUN_TESTS and TESTS
# (newline-separated test scripts, run inside the finished root before it is packed).
set -euo pipefail

# packer's shell-local leaves descriptors open that break mmdebstrap ("Bad fd number").
for fd in $(ls /proc/$$/fd); do
    if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
done

if [ "$(id -u)" = 0 ]; then
    mode=root
elif unshare --user --map-root-user true 2>/dev/null; then
    mode=unshare
else
    echo "local-base: not root, and this kernel does not allow user namespaces (unshare mode); run as root" >&2
    exit 1
fi

args=(--mode="$mode")
if [ "$VARIANT" = busybox ]; then
    args+=(--variant=custom --hook-dir=/usr/share/mmdebstrap/hooks/busybox
           --include=dpkg,busybox,libc-bin,base-files,base-passwd,debianutils)
else
    args+=(--variant="$VARIANT")
fi
while IFS= read -r item; do
    [ -n "$item" ] && args+=(--include="$item")
done <<< "$INCLUDE"

partial="$OUTPUT.rootfs.tar"  # uncompressed: the layer is compressed once, by bakehouse-image
# Scratch goes in the bake's run folder (BAKEHOUSE_RUN_DIR), which bakehouse unmounts and
# removes if this script is stopped before its own clean-up is done.
scratch=${BAKEHOUSE_RUN_DIR:-${TMPDIR:-/tmp}}
check=$(mktemp -d "$scratch/check.XXXXXX")
trap 'trap "" INT TERM; rm -f "$partial"; rm -rf "$check" "$OUTPUT.partial"' EXIT
trap 'exit 130' INT TERM  # cancelled: the EXIT trap still removes what we made
# bakehouse-image finishes what it started (a mount, an image written whole) before a Ctrl-C
# is acted on: it runs with SIGINT ignored, and this script's trap acts as soon as it is done.
uninterrupted() { (trap '' INT; exec "$@"); }
mkdir -p "$(dirname "$OUTPUT")"
mapfile -t tests <<< "$TESTS"
[ -n "${tests[0]:-}" ] || tests=()
if [ "${#tests[@]}" -gt 0 ]; then
    # mmdebstrap runs an executable hook with the finished root as its argument (inside its
    # namespace in unshare mode, where chroot works); the paths stay out of any shell parser.
    printf '#!/bin/bash\nexec /bin/sh %q "$1"' "$RUN_TESTS" > "$check/run-tests"
    printf ' %q' "${tests[@]}" >> "$check/run-tests"
    chmod +x "$check/run-tests"
    args+=(--customize-hook="$check/run-tests")
fi
# The host's resolver and name, which mmdebstrap copies in, differ from host to host: a
# reproducible image holds neither (a container runtime provides both).
args+=(--customize-hook='rm -f "$1/etc/resolv.conf" "$1/etc/hostname"')
echo "local-base: mmdebstrap ${args[*]} $SUITE (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)"
# Cancelled, packer may exit before mmdebstrap has unmounted /proc, /sys, /dev/pts and the
# host's /dev/shm from its scratch root and removed it; its output then goes nowhere. With
# SIGPIPE ignored (inherited), a write to that pipe fails instead of killing mmdebstrap
# half-way through its cleanup; bakehouse waits for it to finish.
trap '' PIPE
TMPDIR=$scratch mmdebstrap "${args[@]}" "$SUITE" "$partial" "$MIRROR"
trap - PIPE

# A wrong suite layout can "succeed" with an empty image: check what is really inside.
mkdir -p "$check/info" "$check/updates"
tar -xOf "$partial" ./var/lib/dpkg/status > "$check/status"
count=$(grep -c '^Package: ' "$check/status" || true)
if [ "$count" -lt 1 ]; then
    echo "local-base: the image has no packages installed; check SUITE=$SUITE and the mirror" >&2
    exit 1
fi
while IFS= read -r spec; do
    [ -n "$spec" ] || continue
    name=${spec%%=*}
    installed=$(dpkg-query --admindir="$check" -W -f='${Version}' "$name" 2>/dev/null || true)
    if [ -z "$installed" ] || { [ "$spec" != "$name" ] && [ "$installed" != "${spec#*=}" ]; }; then
        echo "local-base: $spec is not in the image (found '${installed}')" >&2
        exit 1
    fi
done <<< "$EXPECT"
sh "$CONTENTS_SCRIPT" "$check" > "$CONTENTS"
# Held shared while the layer is unpacked into the cache: a clean-up of the cache waits for it.
mkdir -p "$LAYER_CACHE"
exec 9>>"$LAYER_CACHE/.in-use"
flock -s 9
echo "local-base: writing the image"
uninterrupted "$IMAGE_TOOL" base "$partial" "$OUTPUT" --ref "$REF" --created "$CREATED" --architecture "$ARCHITECTURE" \
    --created-by "bakehouse: mmdebstrap --variant=$VARIANT $SUITE" --cache "$LAYER_CACHE"
echo "local-base: $count packages in $OUTPUT"
