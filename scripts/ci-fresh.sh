#!/usr/bin/env bash
# Runs `.ci/run` as CI runs it on a machine that has never run it, without
# touching this machine's own caches: a fresh clone of a commit, `HOME` and
# `CARGO_TARGET_DIR` pointed at empty temporary directories (so no
# ~/.cache/modchain-target, no ~/.cache/modchain-venv, no cached model, no pip
# cache), `CI=true`, no standard input. Prints how long each step took and
# the whole run, and exits with `.ci/run`'s status.
#
# Usage: scripts/ci-fresh.sh [COMMIT]    (default: HEAD of this checkout)
#
# Kept on purpose:
#   - the Rust toolchain and cargo's download cache (CARGO_HOME, RUSTUP_HOME):
#     the toolchain is what a CI machine comes with, and the crate cache only
#     saves downloads; every crate is still compiled from an empty target;
#   - Debian packages already installed: removing them would change this
#     machine for everything else. `.ci/run` still checks each one;
#   - a Docker daemon that is already running: it is not ours to stop, so in
#     that case `.ci/run`'s "start dockerd" path is not exercised, and images
#     already in the daemon stay (the script says which case it ran).
#     When no daemon runs, `.ci/run` starts one as on a new machine, and
#     this script stops it afterwards, leaving the machine as it found it.
#
# Set MODCHAIN_CI_FRESH_KEEP=1 to keep the temporary directory (its path is
# printed) for a look at the logs or the target directory afterwards.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
commit="$(git -C "$repo" rev-parse --verify "${1:-HEAD}^{commit}")"

root="$(mktemp -d "${TMPDIR:-/tmp}/modchain-ci-fresh.XXXXXX")"
daemon_was_running=false
pgrep -x dockerd >/dev/null && daemon_was_running=true

finish() {
  local rc=$?
  if ! $daemon_was_running && pgrep -x dockerd >/dev/null; then
    echo "ci-fresh: stopping the dockerd that .ci/run started"
    pkill -x dockerd || true
    for _ in $(seq 30); do pgrep -x dockerd >/dev/null || break; sleep 1; done
  fi
  if [ "${MODCHAIN_CI_FRESH_KEEP:-0}" = 1 ]; then
    echo "ci-fresh: kept $root"
  else
    rm -rf "$root"
  fi
  exit "$rc"
}
trap finish EXIT

# The toolchain stays where it is installed, whatever HOME becomes.
export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
export RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
# pyenv's shims, where python3 comes from pyenv, find it through PYENV_ROOT.
if [ -z "${PYENV_ROOT:-}" ] && [ -d "$HOME/.pyenv" ]; then export PYENV_ROOT="$HOME/.pyenv"; fi

git clone --quiet --no-local "$repo" "$root/clone"
git -C "$root/clone" checkout --quiet --detach "$commit"
mkdir -p "$root/home"

# Anything that would point the tests at a cache or a tool of this machine.
while IFS='=' read -r name _; do
  case "$name" in MODCHAIN_*) unset "$name" ;; esac
done < <(env)
unset CARGO_TARGET_DIR PIP_CACHE_DIR XDG_CACHE_HOME

echo "ci-fresh: commit $commit in $root/clone"
echo "ci-fresh: HOME=$root/home, empty target directory, dockerd already running: $daemon_was_running"
start=$(date +%s)
set +e
(
  cd "$root/clone"
  HOME="$root/home" CI=true bash .ci/run </dev/null
) 2>&1 | tee "$root/ci.log"
rc=${PIPESTATUS[0]}
set -e
elapsed=$(($(date +%s) - start))

echo
echo "ci-fresh: steps (UTC start times):"
grep -E '^== ' "$root/ci.log" || true
printf 'ci-fresh: .ci/run exited %s after %dm%02ds\n' "$rc" $((elapsed / 60)) $((elapsed % 60))
exit "$rc"
