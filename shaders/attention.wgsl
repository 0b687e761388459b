// attention.wgsl — one decode step of grouped-query attention for one layer,
// all heads in one dispatch (one workgroup per query head), with RoPE and the
// KV-cache write fused in:
//   1. rotate this head's q and its KV head's k at position `pos` (GGUF llama
//      convention: adjacent pairs (2i, 2i+1), θ_i = pos · base^(−2i/head_dim));
//   2. the first query head of each KV group stores k and v in the cache slot
//      `pos`; every head uses its own copy of the current k, v from qkv, so no
//      workgroup waits for another;
//   3. scores s_t = q·k_t · scale for t ≤ pos into `scores` (global scratch),
//      softmax, out = Σ_t p_t v_t.
// Requires head_dim ≤ 256, a multiple of 4.

@group(0) @binding(0) var<uniform> p: AttnParams;
@group(0) @binding(1) var<storage, read> step: array<u32>;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;
@group(0) @binding(3) var<storage, read_write> kcache: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> vcache: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> scores: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

var<workgroup> q: array<vec4<f32>, 64>;
var<workgroup> kcur: array<vec4<f32>, 64>;
var<workgroup> red: array<f32, 256>;
var<workgroup> acc: array<f32, 256>;

fn reduce_max(v: f32, tid: u32) -> f32 {
    workgroupBarrier();
    red[tid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if tid < s {
            red[tid] = max(red[tid], red[tid + s]);
        }
        workgroupBarrier();
    }
    return red[0];
}

fn reduce_sum(v: f32, tid: u32) -> f32 {
    workgroupBarrier();
    red[tid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if tid < s {
            red[tid] += red[tid + s];
        }
        workgroupBarrier();
    }
    return red[0];
}

@compute @workgroup_size(256)
fn compute_main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let h = wid.x;
    let hd = p.head_dim;
    let hd4 = hd / 4u;
    let group = p.n_heads / p.n_kv_heads;
    let kvh = h / group;
    let pos = step[0];
    let qbase = h * hd;
    let kbase = p.n_heads * hd + kvh * hd;
    let vbase = kbase + p.n_kv_heads * hd;

    // 1. RoPE on q and the current k (pairs 2i, 2i+1).
    if tid < hd / 2u {
        let i = tid;
        let theta = f32(pos) * pow(p.rope_base, -f32(2u * i) / f32(hd));
        let c = cos(theta);
        let s = sin(theta);
        let q0 = qkv[qbase + 2u * i];
        let q1 = qkv[qbase + 2u * i + 1u];
        let k0 = qkv[kbase + 2u * i];
        let k1 = qkv[kbase + 2u * i + 1u];
        let j = (2u * i) / 4u;
        let lane = (2u * i) % 4u;
        // Pairs never straddle a vec4 (2i is even, 4 | head_dim).
        q[j][lane] = q0 * c - q1 * s;
        q[j][lane + 1u] = q0 * s + q1 * c;
        kcur[j][lane] = k0 * c - k1 * s;
        kcur[j][lane + 1u] = k0 * s + k1 * c;
    }
    workgroupBarrier();

    // 2. KV-cache write (one writer per KV head).
    let slot = (p.layer_offset + pos * p.kv_dim + kvh * hd) / 4u;
    if h % group == 0u && tid < hd4 {
        kcache[slot + tid] = kcur[tid];
        let v = vbase + tid * 4u;
        vcache[slot + tid] = vec4<f32>(qkv[v], qkv[v + 1u], qkv[v + 2u], qkv[v + 3u]);
    }

    // 3. Scores and softmax. Position `pos` uses kcur, not the cache.
    let sbase = h * p.max_ctx;
    var m = -3.4e38;
    for (var t = tid; t <= pos; t += 256u) {
        var s = 0.0;
        if t == pos {
            for (var d = 0u; d < hd4; d++) {
                s += dot(q[d], kcur[d]);
            }
        } else {
            let kb = (p.layer_offset + t * p.kv_dim + kvh * hd) / 4u;
            for (var d = 0u; d < hd4; d++) {
                s += dot(q[d], kcache[kb + d]);
            }
        }
        s *= p.scale;
        scores[sbase + t] = s;
        m = max(m, s);
    }
    m = reduce_max(m, tid);
    var l = 0.0;
    for (var t = tid; t <= pos; t += 256u) {
        let e = exp(scores[sbase + t] - m);
        scores[sbase + t] = e;
        l += e;
    }
    l = reduce_sum(l, tid);
    storageBarrier();
    workgroupBarrier();

    // 4. out[d] = Σ_t p_t v_t[d]: thread (d, g) sums t ≡ g mod (256 / hd).
    let groups = 256u / hd;
    let d = tid % hd;
    let g = tid / hd;
    var o = 0.0;
    if g < groups {
        for (var t = g; t <= pos; t += groups) {
            var v = 0.0;
            if t == pos {
                v = qkv[vbase + d];
            } else {
                let vb = (p.layer_offset + t * p.kv_dim + kvh * hd + d);
                v = vcache[vb / 4u][vb % 4u];
            }
            o += scores[sbase + t] * v;
        }
    }
    acc[tid] = o;
    workgroupBarrier();
    if tid < hd {
        var sum = 0.0;
        for (var k = 0u; k < groups; k++) {
            sum += acc[tid + k * hd];
        }
        out[qbase + tid] = sum / l;
    }
}
