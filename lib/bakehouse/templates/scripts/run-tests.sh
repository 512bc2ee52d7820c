#!/bin/sh
# Run a bake's test scripts inside its finished image, before anything is recorded:
#   run-tests.sh ROOT TEST...
# Each TEST is copied into ROOT and run there as root with /bin/sh, in a clean environment
# (chroot ROOT, or ROOT=/ on an instance over SSH). The first test that fails fails the bake;
# its output is the bake's output.
set -eu
root=$1
shift
inbox=/tmp/bakehouse-tests
mkdir -p "$root$inbox"
trap 'rm -rf "$root$inbox"' EXIT
failed=0
for test in "$@"; do
    name=$(basename "$test")
    cp "$test" "$root$inbox/$name"
    echo "test $name: running"
    if [ "$root" = / ]; then
        run() { env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 /bin/sh "$inbox/$name"; }
    else
        run() { env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 chroot "$root" /bin/sh "$inbox/$name"; }
    fi
    if run; then
        echo "test $name: passed"
    else
        status=$?
        echo "test $name: FAILED (exit $status); nothing is recorded" >&2
        failed=1
        break
    fi
done
exit "$failed"
