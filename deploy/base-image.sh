#!/usr/bin/env bash
# A local stand-in for the Dockerfile's base image, for machines that reach Debian's
# package archive and PyPI but no image registry (deploy/compose-check.sh uses it when
# `docker pull` of the Dockerfile's base fails).
#
#   deploy/base-image.sh [TAG]        default TAG: hybridfleet-base:bookworm
#
# It is Debian bookworm made with `debootstrap --variant=minbase`, plus python3,
# python3-venv and ca-certificates, imported with `docker import`. The host's CA bundle
# and a pip.conf pointing at it go in as well, so that pip inside the build trusts what
# the host trusts (a machine whose traffic passes an inspecting proxy needs that).
# The Debian mirror is the one the host's apt uses (its sources), so nothing here names
# a mirror. Needs root, debootstrap and a running Docker engine. An existing TAG is kept.
set -euo pipefail

TAG="${1:-hybridfleet-base:bookworm}"
SUITE="${HF_BASE_SUITE:-bookworm}"
DOCKER="${DOCKER:-docker}"

if "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
    echo "[base-image] $TAG exists"
    exit 0
fi
command -v debootstrap >/dev/null || {
    echo "[base-image] debootstrap is not installed (apt-get install debootstrap)" >&2
    exit 2
}

# The host's Debian mirror: the first URIs/deb line of its apt sources for the main archive.
mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
    [[ -e $f ]] || continue
    mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$f")
    [[ -n $mirror ]] && break
done
if [[ -z $mirror && -f /etc/apt/sources.list ]]; then
    mirror=$(awk '/^deb / && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; exit}}' \
        /etc/apt/sources.list)
fi

rootfs=$(mktemp -d /var/tmp/hybridfleet-base.XXXXXX)
trap 'rm -rf --one-file-system "$rootfs"' EXIT

echo "[base-image] debootstrap $SUITE into $rootfs (mirror: ${mirror:-debootstrap default})"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$rootfs" ${mirror:+"$mirror"} >"$rootfs.log" 2>&1 || {
    tail -20 "$rootfs.log" >&2
    rm -f "$rootfs.log"
    exit 1
}
rm -f "$rootfs.log"

# Trust what the host trusts, in the image's system bundle and for pip.
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
fi
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"
# apt's lists and caches are not needed in an image.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

echo "[base-image] docker import -> $TAG"
tar -C "$rootfs" --numeric-owner -c . | "$DOCKER" import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$TAG" >/dev/null
echo "[base-image] $TAG ready"
