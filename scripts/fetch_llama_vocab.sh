#!/usr/bin/env bash
# Fetches llama.cpp's tokenizer test data: the vocabulary-only GGUFs of its
# models/ folder with their test texts (.inp) and the token ids llama.cpp and
# Hugging Face give them (.out), plus the chat templates the tests render.
# Safe to run again (skips what exists).
#
#   scripts/fetch_llama_vocab.sh          # into <crate root>/models/llama-vocab/
#   MODELS_DIR=/tmp/m scripts/fetch_llama_vocab.sh
#
# Source: the llama-cpp-python 0.3.36 sdist (llama.cpp 0c1e57098 in vendor/llama.cpp),
# downloaded with `python3 -m pip download --no-deps --no-binary llama-cpp-python`
# (about 77 MB) into a temporary directory; the members are read with Python's
# tarfile. Needs python3 with pip.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${MODELS_DIR:-$ROOT/models}/llama-vocab"
VERSION=0.3.36
VOCABS="llama-bpe qwen2 gpt-2 starcoder refact llama-spm"
TEMPLATES="meta-llama-Llama-3.1-8B-Instruct meta-llama-Llama-3.2-3B-Instruct Qwen-Qwen2.5-7B-Instruct Qwen-Qwen3-0.6B"

say() { echo "fetch_llama_vocab: $*" >&2; }
die() { say "error: $*"; exit 1; }

# Tests call this script from parallel threads and processes: one runs at a
# time (the others wait, then find everything in place and skip).
mkdir -p "$DEST"
exec 9>"$DEST/.fetch.lock"
command -v flock >/dev/null && flock 9

want=()
for v in $VOCABS; do
    for ext in gguf gguf.inp gguf.out; do want+=("models/ggml-vocab-$v.$ext"); done
done
for t in $TEMPLATES; do want+=("models/templates/$t.jinja"); done
missing=0
for m in "${want[@]}"; do [[ -f "$DEST/$(basename "$m")" ]] || missing=1; done
if [[ $missing == 0 ]]; then
    say "skip: everything is in $DEST"
    exit 0
fi

command -v python3 >/dev/null || die "python3 not found (apt-get install python3 python3-pip)"
python3 -m pip --version >/dev/null 2>&1 || die "pip for python3 not found (apt-get install python3-pip)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
say "downloading the llama-cpp-python==$VERSION sdist (about 77 MB) ..."
python3 -m pip download --quiet --no-deps --no-cache-dir --no-binary llama-cpp-python \
    "llama-cpp-python==$VERSION" -d "$TMP" || die "pip download failed"
shopt -s nullglob
sdists=("$TMP"/llama_cpp_python-*.tar.gz)
shopt -u nullglob
[[ ${#sdists[@]} -eq 1 ]] || die "expected one llama_cpp_python sdist in $TMP, found ${#sdists[@]}"
mkdir -p "$DEST"
python3 - "${sdists[0]}" "$DEST" "llama_cpp_python-$VERSION/vendor/llama.cpp" "${want[@]}" <<'PY' || die "cannot extract the vocabularies"
import os, shutil, sys, tarfile
sdist, dest, prefix, *members = sys.argv[1:]
with tarfile.open(sdist) as t:
    for m in members:
        out = os.path.join(dest, os.path.basename(m))
        part = f"{out}.{os.getpid()}.partial"
        with t.extractfile(f"{prefix}/{m}") as src, open(part, "wb") as f:
            shutil.copyfileobj(src, f, 1 << 20)
        os.replace(part, out)
PY
say "wrote ${#want[@]} files to $DEST"
