// argmax.wgsl — greedy sampling on the GPU: tok[0] = argmax(logits), ties to
// the lowest index, NaN never wins; only the 4-byte id needs to leave the GPU.
//
// One workgroup reading all n logits takes ~15 µs for a 49152-word vocabulary
// on an H100 (one SM's worth of loads), so large vocabularies go in two
// dispatches (gpu::Argmax): PART, one workgroup per `span` logits, writes
// each range's best (value bits, index) pair to tok[2g], tok[2g + 1]; FINAL
// reads those n pairs and writes the winner. Without either flag, one
// workgroup scans all n logits.

@group(0) @binding(0) var<uniform> p: ArgmaxParams;
//#if FINAL
@group(0) @binding(1) var<storage, read> parts: array<u32>;
//#else
@group(0) @binding(1) var<storage, read> logits: array<f32>;
//#endif
@group(0) @binding(2) var<storage, read_write> tok: array<u32>;

var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;

// Whether (v, i) beats (w, j): larger value, or equal value and lower index.
fn better(v: f32, i: u32, w: f32, j: u32) -> bool {
    return v > w || (v == w && i < j);
}

@compute @workgroup_size(256)
fn compute_main(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    var bv = -3.4e38;
    var bi = 0xFFFFFFFFu;
//#if FINAL
    for (var k = tid; k < p.n; k += 256u) {
        let v = bitcast<f32>(parts[2u * k]);
        let i = parts[2u * k + 1u];
        if better(v, i, bv, bi) {
            bv = v;
            bi = i;
        }
    }
//#else
    // Logits lo .. hi: this workgroup's span with PART, else all of them.
//#if PART
    let lo = wid.x * p.span;
    let hi = min(p.n, lo + p.span);
//#else
    let lo = 0u;
    let hi = p.n;
//#endif
    // 8 loads in flight per thread (a workgroup is latency-bound), compared
    // in index order so ties still go to the lowest index.
    var i = lo + tid;
    for (; i + 7u * 256u < hi; i += 8u * 256u) {
        var v: array<f32, 8>;
        for (var k = 0u; k < 8u; k++) {
            v[k] = logits[i + k * 256u];
        }
        for (var k = 0u; k < 8u; k++) {
            if better(v[k], i + k * 256u, bv, bi) {
                bv = v[k];
                bi = i + k * 256u;
            }
        }
    }
    for (; i < hi; i += 256u) {
        let v = logits[i];
        if better(v, i, bv, bi) {
            bv = v;
            bi = i;
        }
    }
//#endif
    best_v[tid] = bv;
    best_i[tid] = bi;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if tid < s && better(best_v[tid + s], best_i[tid + s], best_v[tid], best_i[tid]) {
            best_v[tid] = best_v[tid + s];
            best_i[tid] = best_i[tid + s];
        }
        workgroupBarrier();
    }
    if tid == 0u {
//#if PART
        tok[2u * wid.x] = bitcast<u32>(best_v[0]);
        tok[2u * wid.x + 1u] = best_i[0];
//#else
        // All NaN: the last index rather than an out-of-range id.
//#if FINAL
        tok[0] = min(best_i[0], p.total - 1u);
//#else
        tok[0] = min(best_i[0], p.n - 1u);
//#endif
//#endif
    }
}
