// attention.wgsl — pass 1 of one decode step's grouped-query attention for one
// layer, with RoPE and the KV-cache write fused in. Workgroup (h, c) takes
// query head h and the chunk of 64 positions c·64 .. c·64+63 (≤ pos), so long
// contexts spread over many workgroups (split-K / flash-decoding):
//   1. add the projections' biases (`bias`, laid out as qkv; zeros for
//      llama), with p.qk_norm RMS-normalize the q and k heads (gains after
//      the biases in `bias`: q's hd, then k's hd; Qwen3), and rotate q (and
//      the current k) at position `pos`: pairs
//      (2i, 2i+1) (GGUF llama convention) or, with p.rope_neox, (i, i + hd/2)
//      (Qwen2), by θ_i = pos · rope[i], rope[i] the host's
//      scale · base^(−2i/head_dim) / factor_i (model::rope_freqs);
//   2. workgroup (first head of its KV group, chunk 0) stores k and v in cache
//      slot `pos`; position `pos` itself is always read from qkv, never from
//      the cache, so no workgroup waits for another;
//   3. scores for the chunk (4 threads per position), the chunk's max m and
//      sum l of exp(s − m), and o = Σ exp(s − m)·v, written to `part`
//      (record (c, h) at (c·n_heads + h)·(head_dim + 4): m, l, 2 unused, o);
// the output projection merges the chunks as it stages its input (matvec_common.wgsl,
// ATTN), or attention_combine.wgsl does for larger models. While pos < 64
// there is a single chunk: its workgroup writes o / l to `out` itself. head_dim: a power of two,
// 16..256.

@group(0) @binding(0) var<uniform> p: AttnParams;
@group(0) @binding(1) var<storage, read> step: array<u32>;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;
@group(0) @binding(3) var<storage, read_write> kcache: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> vcache: array<f32>;
@group(0) @binding(5) var<storage, read_write> part: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read> rope: array<f32>;
@group(0) @binding(8) var<storage, read> bias: array<f32>;

var<workgroup> q: array<vec4<f32>, 64>;
var<workgroup> kcur: array<vec4<f32>, 64>;
var<workgroup> sc: array<f32, 256>;
var<workgroup> acc: array<f32, 256>;
var<workgroup> ex: array<f32, 64>;
var<workgroup> red8: array<f32, 8>;
var<workgroup> qk_scale: array<f32, 2>;

// 1 / RMS of the head of hd elements at `base` of qkv, biases added.
fn head_rms_scale(base: u32, hd: u32) -> f32 {
    var ss = 0.0;
    for (var d = 0u; d < hd; d++) {
        let v = qkv[base + d] + bias[base + d];
        ss += v * v;
    }
    return inverseSqrt(ss / f32(hd) + p.eps);
}

// Step 1: biases, the heads' RMSNorm and RoPE on q (head at qbase of qkv)
// and the current k (at kbase), into q and kcur: pair i is elements a, b.
// Without qk_norm the scales and gains are 1. Call in uniform control flow
// (a barrier with qk_norm); the caller's barrier publishes q and kcur.
fn position_q_k(tid: u32, pos: u32, qbase: u32, kbase: u32) {
    let hd = p.head_dim;
    var qs = 1.0;
    var ks = 1.0;
    if p.qk_norm != 0u {
        if tid < 2u {
            qk_scale[tid] = head_rms_scale(select(qbase, kbase, tid == 1u), hd);
        }
        workgroupBarrier();
        qs = qk_scale[0];
        ks = qk_scale[1];
    }
    let gq = p.n_heads * hd + 2u * p.kv_dim; // q's gains, then k's
    if tid < hd / 2u {
        let i = tid;
        let a = select(2u * i, i, p.rope_neox != 0u);
        let b = select(2u * i + 1u, i + hd / 2u, p.rope_neox != 0u);
        let theta = f32(pos) * rope[i];
        let cs = cos(theta);
        let sn = sin(theta);
        let q0 = (qkv[qbase + a] + bias[qbase + a]) * qs * bias[gq + a];
        let q1 = (qkv[qbase + b] + bias[qbase + b]) * qs * bias[gq + b];
        let k0 = (qkv[kbase + a] + bias[kbase + a]) * ks * bias[gq + hd + a];
        let k1 = (qkv[kbase + b] + bias[kbase + b]) * ks * bias[gq + hd + b];
        q[a / 4u][a % 4u] = q0 * cs - q1 * sn;
        q[b / 4u][b % 4u] = q0 * sn + q1 * cs;
        kcur[a / 4u][a % 4u] = k0 * cs - k1 * sn;
        kcur[b / 4u][b % 4u] = k0 * sn + k1 * cs;
    }
}

@compute @workgroup_size(256)
fn compute_main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let h = wid.x;
    let c = wid.y;
    let hd = p.head_dim;
    let group = p.n_heads / p.n_kv_heads;
    let kvh = h / group;
    let pos = step[0];
    let qbase = h * hd;
    let kbase = p.n_heads * hd + kvh * hd;
    let vbase = kbase + p.n_kv_heads * hd;

    // 1. Biases, per-head norms and RoPE on q and the current k.
    position_q_k(tid, pos, qbase, kbase);
    workgroupBarrier();

    // 2. KV-cache write, once per KV head.
    let hd4 = hd / 4u;
    let slot = p.layer_offset + pos * p.kv_dim + kvh * hd;
    if h % group == 0u && c == 0u && tid < hd4 {
        kcache[slot / 4u + tid] = kcur[tid];
    }
    if h % group == 0u && c == 0u && tid < hd {
        vcache[slot + tid] = qkv[vbase + tid] + bias[vbase + tid];
    }

    // 3a. Scores: thread (position tid/4, quarter tid%4 of the head dims).
    let t = c * 64u + tid / 4u;
    let quarter = hd4 / 4u; // vec4s per quarter
    let d0 = (tid % 4u) * quarter;
    var s = 0.0;
    if t < pos {
        let kb = (p.layer_offset + t * p.kv_dim + kvh * hd) / 4u + d0;
        for (var d = 0u; d < quarter; d++) {
            s += dot(q[d0 + d], kcache[kb + d]);
        }
    } else if t == pos {
        for (var d = 0u; d < quarter; d++) {
            s += dot(q[d0 + d], kcur[d0 + d]);
        }
    }
    sc[tid] = s;
    workgroupBarrier();

    // 3b. Position i's score s_i (threads i < 64, −inf past pos) into ex; the
    // chunk max m in two barrier steps (8 partial maxima, then all 8 read).
    let n = min(64u, pos + 1u - c * 64u);
    if tid < 64u {
        var si = -3.4e38;
        if tid < n {
            si = (sc[4u * tid] + sc[4u * tid + 1u] + sc[4u * tid + 2u] + sc[4u * tid + 3u]) * p.scale;
        }
        ex[tid] = si;
    }
    workgroupBarrier();
    if tid < 8u {
        var mm = ex[8u * tid];
        for (var i = 1u; i < 8u; i++) {
            mm = max(mm, ex[8u * tid + i]);
        }
        red8[tid] = mm;
    }
    workgroupBarrier();
    var m = red8[0];
    for (var i = 1u; i < 8u; i++) {
        m = max(m, red8[i]);
    }
    // e_i = exp(s_i − m), once per position (0 past pos).
    if tid < 64u {
        ex[tid] = select(0.0, exp(ex[tid] - m), tid < n);
    }
    workgroupBarrier();

    // 3c. o[d] = Σ_i e_i v_i[d]: thread (d, g) takes i ≡ g mod (256/hd); the
    // chunk's l = Σ_i e_i from 8 partial sums.
    let groups = 256u / hd;
    let d = tid % hd;
    let g = tid / hd;
    // Cached positions (< pos) four at a time, their loads issued together;
    // the current position's v comes from qkv (its cache slot is being
    // written by this dispatch).
    let nc = min(n, pos - c * 64u);
    let vb = p.layer_offset + c * 64u * p.kv_dim + kvh * hd + d;
    var o = 0.0;
    var i = g;
    for (; i + 3u * groups < nc; i += 4u * groups) {
        let v0 = vcache[vb + i * p.kv_dim];
        let v1 = vcache[vb + (i + groups) * p.kv_dim];
        let v2 = vcache[vb + (i + 2u * groups) * p.kv_dim];
        let v3 = vcache[vb + (i + 3u * groups) * p.kv_dim];
        o += ex[i] * v0 + ex[i + groups] * v1 + ex[i + 2u * groups] * v2 + ex[i + 3u * groups] * v3;
    }
    for (; i < nc; i += groups) {
        o += ex[i] * vcache[vb + i * p.kv_dim];
    }
    if nc < n && g == nc % groups {
        o += ex[nc] * (qkv[vbase + d] + bias[vbase + d]);
    }
    acc[tid] = o;
    if tid < 8u {
        var ls = 0.0;
        for (var i = 0u; i < 8u; i++) {
            ls += ex[8u * tid + i];
        }
        red8[tid] = ls;
    }
    workgroupBarrier();
    if tid < hd {
        var sum = 0.0;
        for (var k = 0u; k < groups; k++) {
            sum += acc[tid + k * hd];
        }
        var l = 0.0;
        for (var i = 0u; i < 8u; i++) {
            l += red8[i];
        }
        if pos < 64u {
            // One chunk: the final output, no combine pass.
            out[h * hd + tid] = sum / l;
        } else {
            // Record (chunk c, head h): m, l, two unused words, then o, so
            // the output projection reads o as aligned vec4s.
            let pbase = (c * p.n_heads + h) * (hd + 4u);
            part[pbase + 4u + tid] = sum;
            if tid == 0u {
                part[pbase] = m;
                part[pbase + 1u] = l;
            }
        }
    }
}
