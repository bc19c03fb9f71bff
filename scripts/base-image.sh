#!/usr/bin/env bash
# Builds the Debian bookworm base image that the .deb test and the
# modchain:<version> container image start from, without any container
# registry: debootstrap fetches Debian's own packages, the root filesystem
# is packed into a tarball cached under ~/.cache/modchain-images, and
# `docker import` turns it into a local image. Prints the image's name.
#
# Idempotent and cheap when warm: an image already in the daemon is reused;
# a cached tarball is imported (seconds) instead of bootstrapped again
# (a minute or two, network bound).
set -euo pipefail

# Bump when the package list changes, so a stale cache is never reused.
revision=2
# systemd: `systemd-analyze verify` checks the unit inside the image.
# adduser: the package's postinst creates the modchain system user with it.
# man-db: `systemd-analyze verify` checks that the unit's Documentation=
# man pages exist, which proves the package installed them.
packages=systemd,adduser,man-db
mirror="${MODCHAIN_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
image="modchain-base:bookworm-$revision"
cache="${MODCHAIN_IMAGE_CACHE:-$HOME/.cache/modchain-images}"
tarball="$cache/bookworm-base-$revision.tar"

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image"
  exit 0
fi

if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
  mkdir -p "$cache"
  rootfs="$(mktemp -d "$cache/rootfs.XXXXXX")"
  # The half-built root filesystem goes whatever happens; only a complete
  # tarball is ever renamed into place.
  trap 'rm -rf "$rootfs" "$tarball.partial"' EXIT
  debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$mirror" >&2
  # Nothing inside the image needs the package index or the downloaded .debs.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" --numeric-owner -cf "$tarball.partial" .
  mv "$tarball.partial" "$tarball"
fi

docker import --change 'CMD ["/bin/bash"]' "$tarball" "$image" >/dev/null
echo "$image"
