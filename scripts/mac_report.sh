#!/usr/bin/env bash
# The Mac runbook (issue 19): on an Apple-silicon Mac, from the crate root,
#
#   scripts/mac_report.sh            # tests, benches, decode checks (~20 min)
#   scripts/mac_report.sh --quick    # skips the full test suite (~5 min)
#
# runs what only a Mac can tell us — the MSL kernels compiled by Apple's
# compiler and run on the GPU — and writes mac-report/report.md (printed at
# the end; paste it into the issue). Logs of every step are kept beside it.
#
# Needs: a Rust toolchain (1.87+), Xcode's command-line tools (clang++, used
# as g++ by the MSL syntax tests), python3 (the model fetch and this report).
# Optional: llama.cpp's `llama-bench` on PATH for a Metal side-by-side
# (e.g. Homebrew's llama.cpp package).
#
# Env (for a quick look, not a report): BENCH_ARGS, extra bench_decode options
# (e.g. "--ctx 1 --repeats 1"); Q4GPU_BENCH_QUICK=1 shortens the matvec bench.
#
# Targets from the seed note, M-series: matvec > 50 GB/s, decode > 500 tok/s
# (SmolLM2-135M Q4_0).
set -uo pipefail
cd "$(dirname "$0")/.."
QUICK=0
[[ ${1:-} == --quick ]] && QUICK=1
OUT=mac-report
mkdir -p "$OUT"
R=$OUT/report.md
: >"$R"
say() { echo "$*" | tee -a "$R"; }
step() { echo "== $*" >&2; }

say "# q4gpu Mac report"
say ""
say "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo ' (dirty)')"
say "- macOS $(sw_vers -productVersion 2>/dev/null || uname -r), $(sysctl -n machdep.cpu.brand_string 2>/dev/null || uname -m), $(( $(sysctl -n hw.memsize 2>/dev/null || echo 0) >> 30 )) GiB"
say "- GPU: $(system_profiler SPDisplaysDataType 2>/dev/null | awk -F': ' '/Chipset Model|Total Number of Cores|Metal Support/ { printf "%s %s; ", $1, $2 }' | sed 's/  */ /g')"
say "- $(rustc --version 2>&1), $( (clang++ --version 2>/dev/null || echo 'no clang++') | head -1)"
if [[ $(uname -s) != Darwin ]]; then
    say ""
    say "**Not a Mac**: the numbers below are not Metal's."
fi

# 1. Tests: the MSL kernels on the GPU (the default path on Metal), then the
#    GPU tests again on the WGSL path for comparison.
run_tests() { # label log [env...] -- cargo args
    local label=$1 log=$OUT/$2
    shift 2
    step "tests ($label)"
    env "$@" cargo test --release 2>&1 | tee "$log" >/dev/null
    local ok fail
    ok=$(grep -c '^test result: ok' "$log")
    fail=$(grep -E '^test .* FAILED$' "$log" | sed 's/^test //; s/ \.\.\. FAILED$//' | tr '\n' ' ')
    say "- $label: $ok test binaries passed${fail:+; **failed: $fail**} (log: $log)"
}
say ""
say "## Tests"
if [[ $QUICK == 0 ]]; then
    run_tests "MSL path (default on Metal)" tests-msl.log Q4GPU_BACKEND=metal
    run_tests "WGSL path on Metal" tests-wgsl.log Q4GPU_BACKEND=metal Q4GPU_FORCE_WGSL=1
else
    say "- skipped (--quick)"
fi

# 2. Decode on the real model: the same greedy text on MSL, WGSL and CPU,
#    and which kernels fell back from MSL.
say ""
say "## Greedy decode, SmolLM2-135M-Instruct Q4_1 (MSL vs WGSL vs CPU)"
step "decode"
decode() { cargo run --release --quiet --example decode -- --temp 0 -n 24 -p "The capital of France is" "$@"; }
decode >"$OUT/decode-msl.txt" 2>"$OUT/decode-msl.err"
Q4GPU_FORCE_WGSL=1 decode >"$OUT/decode-wgsl.txt" 2>"$OUT/decode-wgsl.err"
decode --cpu >"$OUT/decode-cpu.txt" 2>"$OUT/decode-cpu.err"
for p in msl wgsl cpu; do
    say "- $p: \`$(tr '\n' ' ' <"$OUT/decode-$p.txt")\`"
done
if cmp -s "$OUT/decode-msl.txt" "$OUT/decode-cpu.txt" && cmp -s "$OUT/decode-wgsl.txt" "$OUT/decode-cpu.txt"; then
    say "- all three equal"
else
    say "- **texts differ** (stderr in $OUT/decode-*.err)"
fi
say "- MSL kernels: $(grep -i 'msl' "$OUT/decode-msl.err" | tr '\n' ' ')"

# 3. Benchmarks (nothing else should run meanwhile).
say ""
say "## Matvec (cargo bench --bench matvec; target > 50 GB/s)"
step "matvec bench"
cargo bench --bench matvec 2>&1 | tee "$OUT/matvec.log" >/dev/null
grep -E '^adapter|^timing|^read bandwidth' "$OUT/matvec.log" | sed 's/^/- /' | tee -a "$R"
python3 - "$OUT/matvec.log" <<'EOF' | tee -a "$R"
import sys
rows = [l.split('|')[1:-1] for l in open(sys.argv[1]) if l.startswith('| q4_0 ')]
print('\n| default Q4_0 kernel (f32 inputs) | shape | throughput GB/s | % of read BW |\n|---|---|---|---|')
for r in rows:
    r = [c.strip() for c in r]
    if r[0] == 'q4_0 f32':
        print(f'| {r[1]} | {r[2]} | {r[6]} | {r[7]} |')
EOF

say ""
say "## Decode (bench_decode; target > 500 tok/s on SmolLM2-135M Q4_0)"
step "decode bench"
synth=$OUT/smollm2-synth-q4_0.gguf
[[ -f $synth ]] || cargo run --release --quiet --example synth -- "$synth" >"$OUT/synth.log" 2>&1
bench() { # label name [env...]
    local label=$1 json=$OUT/$2.json log=$OUT/$2.log
    shift 2
    rm -f "$json"
    env "$@" cargo run --release --quiet --example bench_decode -- --model "$synth" --json "$json" ${BENCH_ARGS:-} \
        >"$log" 2>&1
    python3 - "$json" "$label" <<'EOF' | tee -a "$R"
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    d = d[-1] if isinstance(d, list) else d
    dec, pre = d.get('decode_tok_s', {}), d.get('prefill_tok_s', {})
    print(f"- {sys.argv[2]}: decode {dec.get('q4gpu')} tok/s, prefill {pre.get('q4gpu')} tok/s, "
          f"sampled {d.get('decode_sampled_tok_s')}")
except Exception as e:
    print(f'- {sys.argv[2]}: no result ({e})')
EOF
}
bench "MSL" bench-msl
bench "WGSL" bench-wgsl Q4GPU_FORCE_WGSL=1
if command -v llama-bench >/dev/null; then
    step "llama-bench"
    llama-bench -m "$synth" -p 512 -n 16 -r 1 >/dev/null 2>&1 # warm-up
    llama-bench -m "$synth" -p 512 -n 128 -o md 2>/dev/null | tee "$OUT/llama-bench.md" | sed 's/^/    /' >>"$R"
    say "- llama.cpp Metal (llama-bench, same file) above"
else
    say "- llama.cpp: no llama-bench on PATH (optional)"
fi

echo
cat "$R"
