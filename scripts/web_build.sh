#!/usr/bin/env bash
# Builds the web demo (examples/web, issue 22) into target-web/www: the
# wasm32 library (release), its JavaScript bindings (wasm-bindgen-cli, the
# exact version examples/web/Cargo.lock pins) and the page. Serve it with
# `python3 scripts/web.py serve`.
#
# One-time setup: rustup target add wasm32-unknown-unknown
#                 cargo install wasm-bindgen-cli --version <that version>
set -euo pipefail
cd "$(dirname "$0")/.."

want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' examples/web/Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ]; then
    echo "error: wasm-bindgen-cli $want is needed (found: ${have:-none}):" >&2
    echo "  cargo install wasm-bindgen-cli --version $want" >&2
    exit 1
fi

if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    echo "error: the wasm32 target is missing: rustup target add wasm32-unknown-unknown" >&2
    exit 1
fi

export CARGO_TARGET_DIR="$PWD/target-web"
cargo build --release --locked --target wasm32-unknown-unknown --manifest-path examples/web/Cargo.toml

www=target-web/www
rm -rf "$www"
mkdir -p "$www"
wasm-bindgen --target web --no-typescript --out-dir "$www/pkg" \
    target-web/wasm32-unknown-unknown/release/q4gpu_web.wasm
cp examples/web/index.html examples/web/app.js "$www/"
wasm="$www/pkg/q4gpu_web_bg.wasm"
echo "built $www: $(stat -c %s "$wasm") bytes of wasm, $(gzip -9c "$wasm" | wc -c) gzipped"
