#!/usr/bin/env bash
# Builds the Debian package modchain_<version>_amd64.deb: both binaries, the
# systemd unit, /etc/modchain/config.toml, man pages and shell completions
# (bash, zsh, fish). Package metadata: [package.metadata.deb] in
# node/Cargo.toml; the files it ships: packaging/.
#
#   scripts/build-deb.sh [--debug] [OUT_DIR]
#
# Default: a release build, the .deb in OUT_DIR (default target/debian under
# the cargo target directory). --debug packages the debug binaries that
# `cargo build -p modchain-node -p modchain-bootstrap` already made, with
# fast compression: what the tests install (a release build takes ~19
# minutes on two cores).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
dir=release
extra=()
if [ "${1:-}" = --debug ]; then
  profile=dev
  dir=debug
  # Debug binaries are large; xz at its default level would take minutes.
  extra=(--fast)
  shift
fi
target="${CARGO_TARGET_DIR:-$PWD/target}"
out="${1:-$target/debian}"
command -v cargo-deb >/dev/null || { echo "cargo-deb is missing: cargo install cargo-deb --locked" >&2; exit 1; }

if [ "$profile" = release ]; then
  cargo build --release -p modchain-node -p modchain-bootstrap
fi
bin="$target/$dir"
for b in modchain modchain-bootstrap; do
  [ -x "$bin/$b" ] || { echo "$bin/$b is missing: cargo build -p modchain-node -p modchain-bootstrap${profile/dev/}" >&2; exit 1; }
done

# Man pages and completions come from the binary being packaged (see
# node/src/cli/manual.rs). They go under the profile's directory, which
# [package.metadata.deb] names as target/release/package-assets (cargo-deb
# maps that prefix to the profile it packages).
assets="$bin/package-assets"
rm -rf "$assets"
mkdir -p "$assets/man" "$assets/bash" "$assets/zsh" "$assets/fish"
"$bin/modchain" man "$assets/man" >/dev/null
# cargo-deb compresses man pages only for files it did not build; these
# count as built, so they are compressed here (-n: reproducible).
gzip -9n "$assets"/man/*.1
for program in modchain modchain-bootstrap; do
  "$bin/modchain" completions bash --program "$program" >"$assets/bash/$program"
  "$bin/modchain" completions zsh --program "$program" >"$assets/zsh/_$program"
  "$bin/modchain" completions fish --program "$program" >"$assets/fish/$program.fish"
done

mkdir -p "$out"
cargo deb -p modchain-node --no-build --profile "$profile" --strip -o "$out" "${extra[@]}" >&2
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
deb="$out/modchain_${version}_amd64.deb"
[ -s "$deb" ] || { echo "cargo deb did not write $deb" >&2; exit 1; }
echo "$deb"
