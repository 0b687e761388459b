// attention_prefill.wgsl — causal grouped-query attention for one layer over
// a chunk of n prompt tokens at positions start..start+n (chunk buffer:
// [start, n, 0, 0, ids...]). qkv holds one row per token: Q (n_heads·hd),
// K (kv_dim), V (kv_dim). Two dispatches, so no workgroup reads a cache slot
// another workgroup of the same dispatch writes:
//
//   ROPE_KV (workgroup z = token): the projections' biases (`bias`, laid out
//     as a qkv row; zeros for llama) added, RoPE on the token's q (in place
//     in qkv) and k (pairs (2i, 2i+1), or (i, i + hd/2) with p.rope_neox;
//     θ_i = pos · rope[i], the same expressions as attention.wgsl), then k
//     and v stored in the cache slot of its position.
//   otherwise (workgroup x = a KV head and up to 4 of the query heads sharing
//     it, z = token): the token at position pos attends to cache positions
//     0..=pos for those heads at once (K and V read once for all of them):
//     scores q·k_t · scale in tiles of 256 positions with an online softmax
//     (running max and sum per head), so no global scratch is needed;
//     out[token, head] = Σ_t p_t v_t.
// Requires head_dim ≤ 256, a multiple of 4.

@group(0) @binding(0) var<uniform> p: AttnParams;
@group(0) @binding(1) var<storage, read> chunk: array<u32>;
@group(0) @binding(2) var<storage, read_write> qkv: array<f32>;
@group(0) @binding(3) var<storage, read_write> kcache: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> vcache: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
// RoPE angle per position of each pair (model::rope_freqs), [head_dim / 2].
@group(0) @binding(6) var<storage, read> rope: array<f32>;
// The Q, K, V biases: [n_heads·hd + 2·kv_dim], then (p.qk_norm) the gains
// of the q heads' and the k heads' RMSNorm: [2·hd].
@group(0) @binding(7) var<storage, read> bias: array<f32>;

//#if ROPE_KV
// 1 / RMS of each q and k head of the token (p.qk_norm).
var<workgroup> hscale: array<f32, 256>;
//#endif

//#if !ROPE_KV
// Up to 4 query heads sharing one KV head (so K and V are read once for all
// of them): their q vectors at q[hh·64 + i], each position's exp(s − m)
// (one component per head), and reduction scratch.
var<workgroup> q: array<vec4<f32>, 256>;
var<workgroup> pw: array<vec4<f32>, 256>;
var<workgroup> red: array<vec4<f32>, 288>;

fn reduce_max4(v: vec4<f32>, tid: u32) -> vec4<f32> {
    workgroupBarrier();
    red[tid] = v;
    workgroupBarrier();
    // 32 partials of 8, then every thread combines the 32.
    if tid < 32u {
        var m = red[8u * tid];
        for (var i = 1u; i < 8u; i++) {
            m = max(m, red[8u * tid + i]);
        }
        red[256u + tid] = m;
    }
    workgroupBarrier();
    var r = red[256u];
    for (var i = 1u; i < 32u; i++) {
        r = max(r, red[256u + i]);
    }
    return r;
}

fn reduce_sum4(v: vec4<f32>, tid: u32) -> vec4<f32> {
    workgroupBarrier();
    red[tid] = v;
    workgroupBarrier();
    if tid < 32u {
        var m = red[8u * tid];
        for (var i = 1u; i < 8u; i++) {
            m += red[8u * tid + i];
        }
        red[256u + tid] = m;
    }
    workgroupBarrier();
    var r = red[256u];
    for (var i = 1u; i < 32u; i++) {
        r += red[256u + i];
    }
    return r;
}
//#endif

//#if ROPE_KV
// The token's RoPE (and the KV-cache write) at position `pos`, its qkv row
// starting at element `row` (see the header). Call in uniform control flow
// (a barrier with qk_norm).
fn rope_kv(tid: u32, pos: u32, row: u32) {
    let hd = p.head_dim;
    let qdim = p.n_heads * hd;
    // Pair j of head hh (q heads, then k heads: contiguous in the row) is
    // row elements a, b.
    let slot = p.layer_offset + pos * p.kv_dim;
    let half_hd = hd / 2u;
    let heads = p.n_heads + p.n_kv_heads;
    if p.qk_norm != 0u {
        if tid < heads {
            var ss = 0.0;
            for (var d = 0u; d < hd; d++) {
                let v = qkv[row + tid * hd + d] + bias[tid * hd + d];
                ss += v * v;
            }
            hscale[tid] = inverseSqrt(ss / f32(hd) + p.eps);
        }
        workgroupBarrier();
    }
    let gains = qdim + 2u * p.kv_dim;
    for (var i = tid; i < heads * half_hd; i += 256u) {
        let hh = i / half_hd;
        let j = i % half_hd;
        let a = hh * hd + select(2u * j, j, p.rope_neox != 0u);
        let b = hh * hd + select(2u * j + 1u, j + half_hd, p.rope_neox != 0u);
        let theta = f32(pos) * rope[j];
        let c = cos(theta);
        let s = sin(theta);
        var x0 = qkv[row + a] + bias[a];
        var x1 = qkv[row + b] + bias[b];
        if p.qk_norm != 0u {
            let g = gains + select(0u, hd, hh >= p.n_heads);
            x0 *= hscale[hh] * bias[g + a - hh * hd];
            x1 *= hscale[hh] * bias[g + b - hh * hd];
        }
        let r0 = x0 * c - x1 * s;
        let r1 = x0 * s + x1 * c;
        if hh < p.n_heads {
            qkv[row + a] = r0;
            qkv[row + b] = r1;
        } else {
            let ka = slot + a - qdim;
            let kb = slot + b - qdim;
            kcache[ka / 4u][ka % 4u] = r0;
            kcache[kb / 4u][kb % 4u] = r1;
        }
    }
    for (var i = tid; i < p.kv_dim / 4u; i += 256u) {
        let v = qdim + p.kv_dim + i * 4u;
        let x = vec4<f32>(qkv[row + v], qkv[row + v + 1u], qkv[row + v + 2u], qkv[row + v + 3u]);
        vcache[slot / 4u + i] = x + vec4<f32>(bias[v], bias[v + 1u], bias[v + 2u], bias[v + 3u]);
    }
}
//#endif

@compute @workgroup_size(256)
fn compute_main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = wid.z;
    if t >= chunk[1] {
        return;
    }
    let pos = chunk[0] + t;
    let hd = p.head_dim;
    let hd4 = hd / 4u;
    let qdim = p.n_heads * hd;
    let row = t * (qdim + 2u * p.kv_dim);
//#if ROPE_KV
    rope_kv(tid, pos, row);
//#else
    // Workgroup x: KV head kvh and its query heads h0 .. h0+nh (≤ 4).
    let group = p.n_heads / p.n_kv_heads;
    let hgroups = (group + 3u) / 4u;
    let kvh = wid.x / hgroups;
    let h0 = kvh * group + (wid.x % hgroups) * 4u;
    let nh = min(4u, kvh * group + group - h0);
    for (var i = tid; i < 4u * hd4; i += 256u) {
        let hh = i / hd4;
        let c = i % hd4;
        var v = vec4<f32>(0.0);
        if hh < nh {
            let e = row + (h0 + hh) * hd + c * 4u;
            v = vec4<f32>(qkv[e], qkv[e + 1u], qkv[e + 2u], qkv[e + 3u]);
        }
        q[hh * 64u + c] = v;
    }
    workgroupBarrier();

    // Thread (d, g) of the output sums positions j ≡ g mod (256 / hd) of a
    // tile, for the nh heads at once (one vec4 component per head).
    let groups = 256u / hd;
    let d = tid % hd;
    let g = tid / hd;
    var m = vec4<f32>(-3.4e38);
    var l = vec4<f32>(0.0);
    var o = vec4<f32>(0.0);
    for (var t0 = 0u; t0 <= pos; t0 += 256u) {
        let tp = t0 + tid;
        var s = vec4<f32>(-3.4e38);
        if tp <= pos {
            let kb = (p.layer_offset + tp * p.kv_dim + kvh * hd) / 4u;
            var a = vec4<f32>(0.0);
            for (var i = 0u; i < hd4; i++) {
                let k = kcache[kb + i];
                a += vec4<f32>(dot(q[i], k), dot(q[64u + i], k), dot(q[128u + i], k), dot(q[192u + i], k));
            }
            s = a * p.scale;
        }
        let m_new = max(m, reduce_max4(s, tid));
        var e = vec4<f32>(0.0);
        if tp <= pos {
            e = exp(s - m_new);
        }
        pw[tid] = e;
        // exp(m - m_new) is 0 on the first tile (m = -3.4e38) and ≤ 1 after.
        let corr = exp(m - m_new);
        l = l * corr + reduce_sum4(e, tid);
        o *= corr;
        m = m_new;
        if g < groups {
            let cnt = min(256u, pos + 1u - t0);
            // Four positions at a time, their loads issued together.
            let vb = p.layer_offset + t0 * p.kv_dim + kvh * hd + d;
            var j = g;
            for (; j + 3u * groups < cnt; j += 4u * groups) {
                let e0 = vb + j * p.kv_dim;
                let e1 = e0 + groups * p.kv_dim;
                let e2 = e1 + groups * p.kv_dim;
                let e3 = e2 + groups * p.kv_dim;
                let v0 = vcache[e0 / 4u][e0 % 4u];
                let v1 = vcache[e1 / 4u][e1 % 4u];
                let v2 = vcache[e2 / 4u][e2 % 4u];
                let v3 = vcache[e3 / 4u][e3 % 4u];
                o += pw[j] * v0 + pw[j + groups] * v1 + pw[j + 2u * groups] * v2 + pw[j + 3u * groups] * v3;
            }
            for (; j < cnt; j += groups) {
                let e = vb + j * p.kv_dim;
                o += pw[j] * vcache[e / 4u][e % 4u];
            }
        }
        workgroupBarrier();
    }
    red[tid] = o;
    workgroupBarrier();
    if tid < hd {
        var sum = vec4<f32>(0.0);
        for (var k = 0u; k < groups; k++) {
            sum += red[tid + k * hd];
        }
        let r = sum / l;
        for (var hh = 0u; hh < nh; hh++) {
            out[t * qdim + (h0 + hh) * hd + tid] = r[hh];
        }
    }
//#endif
}
