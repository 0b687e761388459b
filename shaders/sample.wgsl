// sample.wgsl — sampling on the GPU with the CPU sampler's semantics
// (src/sampling.rs): repeat penalty → top-k → top-p → min-p → temperature →
// draw, the draw u ∈ [0, 1) coming from the host's seeded generator through
// the step buffer. The chosen id goes where the next step's embedding reads
// it (tok[0]) and into the token history; only 4 bytes leave the GPU.
//
// Two dispatches (gpu::GpuSampler):
//   (no flag) one workgroup per SPAN logits: applies the penalty to the
//       tokens the window holds (marks[id] > 0), drops NaN and −∞, sorts the
//       span by (logit desc, id asc) and writes its best k as (key, id)
//       pairs to cands[span·k ..]. Only these can be in the global top k.
//   FINAL, one workgroup: finds the k-th best of the spans' candidates by a
//       radix select on the 64-bit key (logit key, ~id), gathers and sorts
//       the k, then applies top-p, min-p, temperature and the draw, and
//       updates the history and the window's counts for the next step.
//
// Keys: a float's bits mapped so unsigned order is total float order
// (−0 < +0, as Rust's total_cmp); key 0 marks a dropped entry (no float
// maps to 0: −∞ gives 0x007FFFFF and is dropped anyway).

@group(0) @binding(0) var<uniform> p: SampleParams;
//#if FINAL
@group(0) @binding(1) var<storage, read> cands: array<u32>;
@group(0) @binding(2) var<storage, read> step: array<u32>;
@group(0) @binding(3) var<storage, read_write> tok: array<u32>;
@group(0) @binding(4) var<storage, read_write> history: array<u32>;
@group(0) @binding(5) var<storage, read_write> marks: array<u32>;
//#else
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> marks: array<u32>;
@group(0) @binding(3) var<storage, read_write> cands: array<u32>;
//#endif

const SPAN: u32 = 1024u;
// Candidates FINAL sorts: the most a k may be.
const MAX_K: u32 = 256u;

fn to_key(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn from_key(k: u32) -> f32 {
    return bitcast<f32>(select(~k, k & 0x7FFFFFFFu, (k & 0x80000000u) != 0u));
}

// Whether (k, i) sorts before (l, j): larger key, or equal key and lower id.
fn before(k: u32, i: u32, l: u32, j: u32) -> bool {
    return k > l || (k == l && i < j);
}

//#if FINAL
var<workgroup> sk: array<u32, MAX_K>;
var<workgroup> si: array<u32, MAX_K>;
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> scan: array<f32, 256>;
var<workgroup> suffix: array<u32, 256>;
// [0] rank still to find, [1] digit found, [2] counted or gathered so far,
// [3] ties settled after the key's four digits, [4] first index meeting a cut.
var<workgroup> state: array<atomic<u32>, 5>;
var<workgroup> bcast: u32;

// Thread 0's x, as a value uniform over the workgroup (x must not depend on
// writes after the caller's last barrier).
fn broadcast(tid: u32, x: u32) -> u32 {
    workgroupBarrier();
    if tid == 0u {
        bcast = x;
    }
    return workgroupUniformLoad(&bcast);
}

// Inclusive prefix sum of x over the workgroup's threads, in thread order.
fn prefix_sum(tid: u32, x: f32) -> f32 {
    scan[tid] = x;
    workgroupBarrier();
    for (var d = 1u; d < 256u; d <<= 1u) {
        var y = scan[tid];
        if tid >= d {
            y += scan[tid - d];
        }
        workgroupBarrier();
        scan[tid] = y;
        workgroupBarrier();
    }
    return scan[tid];
}

// One radix pass over the candidates whose key agrees with `prefix` under
// `mask` (the 64-bit key as hi = logit key, lo = ~id): counts their digits
// at `shift` of hi (lo_pass false) or lo, and picks the digit holding the
// rank-th best; state[0] becomes the rank within that digit.
fn radix_pass(tid: u32, m: u32, lo_pass: bool, shift: u32, prefix: vec2<u32>, mask: vec2<u32>) -> u32 {
    atomicStore(&hist[tid], 0u);
    workgroupBarrier();
    for (var c = tid; c < m; c += 256u) {
        let key = vec2<u32>(cands[2u * c], ~cands[2u * c + 1u]);
        if key.x != 0u && all((key & mask) == prefix) {
            let digit = (select(key.x, key.y, lo_pass) >> shift) & 255u;
            atomicAdd(&hist[digit], 1u);
        }
    }
    workgroupBarrier();
    // suffix[t] = candidates with digit ≥ t.
    let h = atomicLoad(&hist[tid]);
    suffix[tid] = h;
    workgroupBarrier();
    for (var d = 1u; d < 256u; d <<= 1u) {
        var y = suffix[tid];
        if tid + d < 256u {
            y += suffix[tid + d];
        }
        workgroupBarrier();
        suffix[tid] = y;
        workgroupBarrier();
    }
    let rank = atomicLoad(&state[0]);
    let above = select(0u, suffix[tid + 1u], tid < 255u);
    workgroupBarrier();
    if suffix[tid] >= rank && above < rank {
        atomicStore(&state[1], tid);
        atomicStore(&state[0], rank - above);
        // The whole digit is needed: no later digit can split it.
        atomicStore(&state[3], u32(h == rank - above));
    }
    workgroupBarrier();
    return atomicLoad(&state[1]);
}
//#else
var<workgroup> sk: array<u32, SPAN>;
var<workgroup> si: array<u32, SPAN>;
//#endif

// Sorts sk/si[0..n] (n a power of two ≤ SPAN) by `before`, 256 threads.
fn bitonic_sort(tid: u32, n: u32) {
    for (var size = 2u; size <= n; size <<= 1u) {
        for (var stride = size >> 1u; stride > 0u; stride >>= 1u) {
            for (var t = tid; t < n / 2u; t += 256u) {
                let lo = 2u * t - (t & (stride - 1u));
                let hi = lo + stride;
                let first = (lo & size) == 0u || size == n;
                if before(sk[hi], si[hi], sk[lo], si[lo]) == first {
                    let k = sk[lo];
                    let i = si[lo];
                    sk[lo] = sk[hi];
                    si[lo] = si[hi];
                    sk[hi] = k;
                    si[hi] = i;
                }
            }
            workgroupBarrier();
        }
    }
}

@compute @workgroup_size(256)
fn compute_main(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
//#if FINAL
    let m = p.spans * p.k;
    let chosen = final_choice(tid, m);
    if tid == 0u {
        let next = step[0] + 1u;
        tok[0] = chosen;
        if p.last_n > 0u {
            marks[chosen] += 1u;
            if next >= p.last_n {
                let leaving = history[next - p.last_n];
                marks[leaving] -= 1u;
            }
        }
        if next < arrayLength(&history) {
            history[next] = chosen;
        }
    }
//#else
    let base = wid.x * SPAN;
    for (var j = tid; j < SPAN; j += 256u) {
        let i = base + j;
        var key = 0u;
        if i < p.n {
            var v = logits[i];
            // Finite: not ±∞ or NaN (bit tests: WGSL has no ∞ constant).
            let finite = (bitcast<u32>(v) & 0x7FFFFFFFu) < 0x7F800000u;
            if finite && p.last_n > 0u && marks[i] > 0u {
                v = select(v / p.penalty, v * p.penalty, v <= 0.0);
            }
            // NaN and −∞ (also after the penalty) are dropped.
            let bits = bitcast<u32>(v);
            if bits != 0xFF800000u && (bits & 0x7FFFFFFFu) <= 0x7F800000u {
                key = to_key(v);
            }
        }
        sk[j] = key;
        si[j] = i;
    }
    workgroupBarrier();
    bitonic_sort(tid, SPAN);
    for (var j = tid; j < p.k; j += 256u) {
        let c = wid.x * p.k + j;
        cands[2u * c] = sk[j];
        cands[2u * c + 1u] = si[j];
    }
//#endif
}

//#if FINAL
// The k best candidates by radix select on (key, ~id), sorted into sk/si;
// returns how many there are (0: no finite logit).
fn select_best(tid: u32, m: u32) -> u32 {
    // Valid candidates, to cap k.
    if tid == 0u {
        atomicStore(&state[2], 0u);
    }
    workgroupBarrier();
    var valid = 0u;
    for (var c = tid; c < m; c += 256u) {
        valid += u32(cands[2u * c] != 0u);
    }
    atomicAdd(&state[2], valid);
    workgroupBarrier();
    let k = min(p.k, broadcast(tid, atomicLoad(&state[2])));
    if tid == 0u {
        atomicStore(&state[0], k);
        atomicStore(&state[2], 0u);
        atomicStore(&state[3], 0u);
    }
    workgroupBarrier();
    var prefix = vec2<u32>(0u, 0u);
    var mask = vec2<u32>(0u, 0u);
    if k > 0u {
        for (var d = 0u; d < 8u; d++) {
            let lo_pass = d >= 4u;
            let shift = 24u - 8u * (d % 4u);
            let digit = radix_pass(tid, m, lo_pass, shift, prefix, mask);
            if lo_pass {
                prefix.y |= digit << shift;
                mask.y |= 255u << shift;
            } else {
                prefix.x |= digit << shift;
                mask.x |= 255u << shift;
            }
            // After the key's last digit: if every candidate with the k-th
            // key is needed, the ids need no selection.
            if d == 3u && broadcast(tid, atomicLoad(&state[3])) != 0u {
                break;
            }
        }
    }
    // Gather the k: key above the prefix, or equal under the mask.
    sk[tid] = 0u;
    si[tid] = 0xFFFFFFFFu;
    workgroupBarrier();
    for (var c = tid; c < m && k > 0u; c += 256u) {
        let key = vec2<u32>(cands[2u * c], ~cands[2u * c + 1u]);
        // Lexicographically ≥ (prefix.x, prefix.y) with ~id under mask.y
        // (all four key digits are always chosen).
        let above = key.x > prefix.x || (key.x == prefix.x && (key.y & mask.y) >= prefix.y);
        if key.x != 0u && above {
            let slot = atomicAdd(&state[2], 1u);
            if slot < MAX_K {
                sk[slot] = key.x;
                si[slot] = ~key.y;
            }
        }
    }
    workgroupBarrier();
    bitonic_sort(tid, MAX_K);
    return k;
}

// First index i < n where `hit` holds (hits form a suffix), or n.
fn first_hit(tid: u32, n: u32, hit: bool) -> u32 {
    workgroupBarrier();
    if tid == 0u {
        atomicStore(&state[4], n);
    }
    workgroupBarrier();
    if tid < n && hit {
        atomicMin(&state[4], tid);
    }
    workgroupBarrier();
    return broadcast(tid, atomicLoad(&state[4]));
}

// The chosen id among m candidates (see the file comment).
fn final_choice(tid: u32, m: u32) -> u32 {
    var n = select_best(tid, m);
    if n == 0u {
        return 0u;
    }
    let live = tid < n;
    var v = from_key(sk[tid]);
    // +∞ logits take all the probability, shared equally (logit 0).
    let inf_key = 0xFF800000u; // to_key(+∞)
    let top = broadcast(tid, sk[0]);
    if top == inf_key {
        n = first_hit(tid, n, sk[tid] != inf_key);
        v = 0.0;
    }
    let v0 = select(0.0, from_key(top), top != inf_key);
    if p.greedy != 0u || n == 1u {
        return si[0];
    }
    if p.top_p < 1.0 {
        let s = prefix_sum(tid, select(0.0, exp(v - v0), tid < n));
        let total = scan[255];
        // Shortest prefix whose mass reaches top_p.
        n = min(n, first_hit(tid, n, s >= p.top_p * total) + 1u);
    }
    if p.min_p > 0.0 {
        n = max(1u, first_hit(tid, n, v < v0 + log(p.min_p)));
    }
    let t = p.temperature;
    let w = prefix_sum(tid, select(0.0, exp(v / t - v0 / t), tid < n));
    let goal = bitcast<f32>(step[1]) * scan[255];
    let pick = min(first_hit(tid, n, goal < w), n - 1u);
    return si[pick];
}
//#endif
