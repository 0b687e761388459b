#!/usr/bin/env bash
# The benchmark run for a GPU machine (no Rust toolchain needed): prebuilt
# binaries from benches/build_for_device.sh, a synthetic SmolLM2-135M Q4_0
# model, then, one after the other (never while anything else runs):
#   1. the matvec bench (read bandwidth + matvec table),
#   2. llama.cpp's llama-bench on the same GGUF, Vulkan and/or CUDA builds,
#   3. q4gpu's bench_decode, which prints the side-by-side table and writes
#      results.json.
#
#   bash benches/device.sh [BIN]        # BIN: folder with *.gz binaries (default .dev/bin)
#
# Env:
#   BIN               same as the argument
#   OUT               where logs, the model and results.json go (default .dev/out)
#   LLAMA_VULKAN_BIN  folder with a Vulkan build of llama-bench (optional)
#   LLAMA_CUDA_BIN    folder with a CUDA build of llama-bench (optional)
#   LLAMA_BIN         folder with a llama-bench of either kind (backend read from its output)
#   SYNTH_ARGS        extra synth options (e.g. "--type q4_1")
#   BENCH_ARGS        extra bench_decode options (e.g. "--ctx 1,256,1024 --repeats 5")
#   ARCH_1B=1         also bench a synthetic Llama-3.2-1B-shaped model (q4gpu and llama.cpp),
#                     before SmolLM2; ARCH_1B=only benches that model alone
#   TYPES             weight types or mixes of the synthetic models, one run each
#                     (default "q4_0"; e.g. "q4_0 q4_k_m"; mixes choose the embedding's type)
#   MATVEC=0          skip the matvec bench
#   Q8=1              also run bench_decode with int8 matvec inputs (Q4GPU_Q8_ACT=1)
#   F32=1             also run bench_decode with f32 matvec inputs everywhere (Q4GPU_Q8_ACT=0)
#   ATTN_COOP=1       also run bench_decode with tiled prefill attention on matrix units for
#                     every model (Q4GPU_ATTENTION_COOP=1 Q4GPU_ATTENTION_TILED_MIN_HEADS=1)
#   VARIANTS          more bench_decode runs, "name:VAR=value,VAR=value name2:..." (e.g.
#                     "nodirect:Q4GPU_MATMUL_DIRECT=0 tw32:Q4GPU_MATMUL_TARGET_WGS=32")
set -uo pipefail
BIN=${1:-${BIN:-.dev/bin}}
OUT=${OUT:-.dev/out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/q4gpu-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

log() { echo "== $*" >&2; }

for name in synth bench_decode matvec; do
    if [[ -f $BIN/$name.gz ]]; then
        gzip -dc "$BIN/$name.gz" >"$WORK/$name"
    elif [[ -f $BIN/$name ]]; then
        cp "$BIN/$name" "$WORK/$name"
    else
        echo "missing $BIN/$name(.gz): run benches/build_for_device.sh first" >&2
        exit 1
    fi
    chmod +x "$WORK/$name"
done
if [[ -z ${Q4GPU_COMMIT:-} && -f $BIN/COMMIT ]]; then
    export Q4GPU_COMMIT=$(cat "$BIN/COMMIT")
fi

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: ${Q4GPU_COMMIT:-unknown}"
    echo "host: $(uname -srm), $(nproc) cores"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
    fi
} | tee "$OUT/system.txt"

# llama-bench markdown row value ("| ... | pp512 | 40812.34 ± 12.3 |") -> 40812.34
llama_value() { # file test
    awk -F'|' -v t="$2" '{ f=$(NF-1); c=$(NF-2); gsub(/ /,"",c) }
        c == t { sub(/±.*/, "", f); gsub(/ /, "", f); print f; exit }' "$1"
}

# Runs llama-bench from folder $1 on model $2; prints "<backend> <pp512> <tg128>".
run_llama() { # dir model kind(vulkan|cuda|auto) name
    local dir=$1 model=$2 kind=$3 log="$OUT/llama-bench-$3-$4.md"
    [[ -x $dir/llama-bench ]] || { log "no llama-bench in $dir"; return 1; }
    # An untimed run first: a cold llama.cpp (Vulkan pipelines, CUDA
    # context) measured 11.9k pp512 against 43.5k warm (issue 21).
    LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        "$dir/llama-bench" -m "$model" -ngl 99 -p 512 -n 16 -r 1 >/dev/null 2>&1 || true
    log "llama-bench ($kind): $dir/llama-bench -m $(basename "$model") -ngl 99 -p 512 -n 128"
    if ! LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        "$dir/llama-bench" -m "$model" -ngl 99 -p 512 -n 128 -o md >"$log" 2>"${log%.md}.err"; then
        log "llama-bench ($kind) failed: see ${log%.md}.err"
        return 1
    fi
    cat "$log" >&2
    if [[ $kind == auto ]]; then
        if grep -q CUDA "$log"; then kind=cuda; elif grep -q Vulkan "$log"; then kind=vulkan; else
            log "cannot tell llama-bench's backend from $log"
            return 1
        fi
    fi
    echo "$kind $(llama_value "$log" pp512) $(llama_value "$log" tg128)"
}

bench_model() { # name synth-args...
    local name=$1
    shift
    local model="$WORK/synth-$name.gguf" # not under OUT: no need to ship it back
    log "synth: $name $*"
    "$WORK/synth" "$model" "$@" ${SYNTH_ARGS:-} || return 1
    local args=() r backend pp tg
    for spec in "vulkan:${LLAMA_VULKAN_BIN:-}" "cuda:${LLAMA_CUDA_BIN:-}" "auto:${LLAMA_BIN:-}"; do
        local kind=${spec%%:*} dir=${spec#*:}
        [[ -n $dir ]] || continue
        r=$(run_llama "$dir" "$model" "$kind" "$name") || continue
        read -r backend pp tg <<<"$r"
        [[ -n $pp ]] && args+=(--llama-"$backend"-prefill "$pp")
        [[ -n $tg ]] && args+=(--llama-"$backend"-decode "$tg")
    done
    [[ -n ${READ_BW:-} ]] && args+=(--read-bw-gb-s "$READ_BW")
    [[ -n ${MATVEC_LARGE:-} ]] && args+=(--matvec-large-gb-s "$MATVEC_LARGE")
    # q4gpu warmed the same way: one short untimed run.
    "$WORK/bench_decode" --model "$model" --ctx 1 --gen 8 --prefill 64 --repeats 1 --samples 1 >/dev/null 2>&1 || true
    log "bench_decode: $name ${args[*]} ${BENCH_ARGS:-}"
    "$WORK/bench_decode" --model "$model" --json "$OUT/results-$name.json" "${args[@]}" ${BENCH_ARGS:-} |
        tee "$OUT/bench_decode-$name.md"
    # The same run under other settings: suffix, then VAR=value pairs.
    variant() {
        local suffix=$1
        shift
        log "bench_decode: $name with $*"
        env "$@" "$WORK/bench_decode" --model "$model" --json "$OUT/results-$name-$suffix.json" "${args[@]}" \
            ${BENCH_ARGS:-} | tee "$OUT/bench_decode-$name-$suffix.md"
    }
    [[ ${Q8:-0} == 1 ]] && variant q8 Q4GPU_Q8_ACT=1
    [[ ${F32:-0} == 1 ]] && variant f32 Q4GPU_Q8_ACT=0
    local coop=(Q4GPU_ATTENTION_COOP=1 Q4GPU_ATTENTION_TILED_MIN_HEADS=1)
    [[ ${ATTN_COOP:-0} == 1 ]] && variant attn-coop "${coop[@]}"
    local v
    for v in ${VARIANTS:-}; do
        local settings
        IFS=, read -r -a settings <<<"${v#*:}"
        variant "${v%%:*}" "${settings[@]}"
    done
    return 0
}

READ_BW=
MATVEC_LARGE=
if [[ ${MATVEC:-1} != 0 ]]; then
    log "matvec bench"
    "$WORK/matvec" --bench | tee "$OUT/matvec.md"
    READ_BW=$(sed -n 's/^read bandwidth.*: \([0-9.]*\) GB\/s.*/\1/p' "$OUT/matvec.md" | head -1)
    # Throughput GB/s of the default Q4_0 kernel on the largest shape: two-level
    # int8 inputs there, f32 inputs on Metal.
    if grep -q '^adapter: .*(Metal' "$OUT/matvec.md"; then
        row='q4_0 f32'
    else
        row='q4_0 int8x2'
    fi
    MATVEC_LARGE=$(awk -F'|' -v r="^ $row \$" '$2 ~ r && $4 ~ /14336x4096/ { gsub(/ /,"",$8); print $8; exit }' "$OUT/matvec.md")
fi

# The Llama-1B shape first: a run cut short by a device's time limit still
# has its numbers.
for ty in ${TYPES:-q4_0}; do
    if [[ ${ARCH_1B:-0} != 0 ]]; then
        bench_model llama-3.2-1b-$ty --arch llama-3.2-1b --type $ty --embd q8_0
    fi
    [[ ${ARCH_1B:-0} == only ]] || bench_model smollm2-135m-$ty --arch smollm2-135m --type $ty --embd q8_0
done
# The headline file: the SmolLM2 run.
cp "$OUT/results-smollm2-135m-q4_0.json" "$OUT/results.json" 2>/dev/null || true
log "done: results in $OUT"
ls -la "$OUT" >&2
