#!/bin/sh
# List the RPM packages installed in an image (inside it, as on an instance over SSH), one per
# line, for bakehouse's package manifest, as image-contents.sh does for dpkg:
#   name TAB version TAB architecture TAB source name TAB source version
# The version is [EPOCH:]VERSION-RELEASE; the source is the source RPM it was built from.
#   image-contents-rpm.sh [ROOT]    (ROOT: another root's rpmdb, default the running system's)
set -eu
rpm --root "${1:-/}" -qa --qf '%{NAME}\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\t%{ARCH}\t%{SOURCERPM}\n' |
    sed 's/\t0:/\t/' |
    awk -F '\t' -v OFS='\t' '$1 != "gpg-pubkey" {
        source = $4; sub(/\.src\.rpm$/, "", source)
        release = source; sub(/-[^-]*$/, "", release)    # name-version
        name = release; sub(/-[^-]*$/, "", name)
        version = substr(source, length(name) + 2)
        print $1, $2, $3, name, version
    }'
