#!/usr/bin/env bash
# The browser test (issue 22): the web demo, built for wasm32, runs in
# headless Chromium with WebGPU on SwiftShader (no GPU needed) and decodes
# greedily on a small synthetic model; its token ids (prompt and output)
# must equal the native CPU reference's on the same file. A failure prints
# the page's console.
#
# One-time setup (Debian): apt-get install chromium
#                          rustup target add wasm32-unknown-unknown
#                          cargo install wasm-bindgen-cli --version <examples/web/Cargo.lock's>
# Optional: SHOT=FILE.png also saves a screenshot of the page.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=target-web/test
prompt="Once upon a time, in a land far away,"
n=20
mkdir -p "$dir"
# Three layers with SmolLM2's shapes (its 49152-token vocabulary takes the
# `dense` LM-head kernel), Q4_1 weights like the shipped model's.
cargo run --quiet --release --example synth -- "$dir/model.gguf" \
    --layers 3 --seed 1 --type q4_1 --embd q8_0
cargo run --quiet --release --example greedy_ids -- --model "$dir/model.gguf" \
    --prompt "$prompt" -n "$n" > "$dir/expected.json"
scripts/web_build.sh
# Both reductions: subgroups (Chromium grants them on SwiftShader), then the
# workgroup-memory kernels that browsers without subgroups get.
for mode in subgroups no-subgroups; do
    echo "== browser test, $mode"
    python3 scripts/web.py test --expect "$dir/expected.json" --model "$dir/model.gguf" \
        --prompt "$prompt" -n "$n" ${SHOT:+--shot "$SHOT"} \
        $([ "$mode" = no-subgroups ] && echo --no-subgroups)
done
