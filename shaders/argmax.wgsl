// argmax.wgsl — greedy sampling on the GPU: tok[0] = argmax(logits), ties to
// the lowest index, NaN never wins. One workgroup; only the 4-byte id needs
// to leave the GPU.

@group(0) @binding(0) var<uniform> p: ArgmaxParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> tok: array<u32>;

var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;

// Whether (v, i) beats (w, j): larger value, or equal value and lower index.
fn better(v: f32, i: u32, w: f32, j: u32) -> bool {
    return v > w || (v == w && i < j);
}

@compute @workgroup_size(256)
fn compute_main(@builtin(local_invocation_index) tid: u32) {
    var bv = -3.4e38;
    var bi = 0xFFFFFFFFu;
    // 8 loads in flight per thread (a single workgroup is latency-bound),
    // compared in index order so ties still go to the lowest index.
    var i = tid;
    for (; i + 7u * 256u < p.n; i += 8u * 256u) {
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
    for (; i < p.n; i += 256u) {
        let v = logits[i];
        if better(v, i, bv, bi) {
            bv = v;
            bi = i;
        }
    }
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
        tok[0] = min(best_i[0], p.n - 1u);
    }
}
