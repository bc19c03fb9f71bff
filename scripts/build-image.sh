#!/usr/bin/env bash
# Builds the container image modchain:<version> (packaging/Dockerfile): the
# Debian package installed on the local bookworm base image
# (scripts/base-image.sh). No registry is involved.
#
#   scripts/build-image.sh [DEB] [TAG]
#
# DEB: a .deb to install (default: build the release one with
# scripts/build-deb.sh). TAG: the image's name (default modchain:<version>).
# Prints the tag.
set -euo pipefail
cd "$(dirname "$0")/.."

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
deb="${1:-}"
tag="${2:-modchain:$version}"
if [ -z "$deb" ]; then
  deb="$(scripts/build-deb.sh)"
fi
base="$(scripts/base-image.sh)"

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp packaging/Dockerfile "$context/Dockerfile"
cp packaging/container/entrypoint.sh "$context/entrypoint.sh"
# A hard link when it can (the debug .deb is large), a copy across file systems.
ln "$deb" "$context/modchain.deb" 2>/dev/null || cp "$deb" "$context/modchain.deb"
docker build -q --build-arg "BASE=$base" -t "$tag" "$context" >/dev/null
echo "$tag"
