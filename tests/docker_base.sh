#!/bin/sh
# A stand-in for python:3.11-slim made from Debian's packages, for the image tests: no container
# registry is reachable here, Debian's is. Built once and kept by its tag; prints the tag.
#
#   sh tests/docker_base.sh            # -> retouch-test-base:bookworm
#
# bookworm's python3 is 3.11, as in the official image. Two differences are removed: Debian marks
# its Python EXTERNALLY-MANAGED (the Dockerfile's system-wide `pip install` would be refused), and
# package downloads here pass a TLS-inspecting proxy whose CA only the host's bundle has.
set -eu
TAG="${RETOUCH_TEST_BASE_IMAGE:-retouch-test-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "$TAG"
    exit 0
fi

ROOTFS="$(mktemp -d /tmp/retouch-base-XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT
timeout 900 debootstrap --variant=minbase --include=python3,python3-pip,python-is-python3,ca-certificates \
    bookworm "$ROOTFS" "$MIRROR" >&2
rm -f "$ROOTFS"/usr/lib/python3.*/EXTERNALLY-MANAGED
cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
# What debootstrap leaves behind that an image has no use for.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
tar -C "$ROOTFS" -c . | timeout 300 docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    --change 'CMD ["python3"]' - "$TAG" >&2
echo "$TAG"
