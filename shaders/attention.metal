// attention.metal — MSL twin of attention.wgsl: pass 1 of one decode step's
// grouped-query attention for one layer, with RoPE and the KV-cache write
// fused in. Threadgroup (h, c) takes query head h and the chunk of 64
// positions c·64 .. c·64+63 (≤ pos): RoPE on q and the current k, the KV write
// (first head of each KV group, chunk 0), scores (4 threads per position),
// the chunk's max m, sum l and o = Σ exp(s − m)·v into `part`.
// The output projection merges the chunks (matvec_common.metal, ATTN), or
// attention_combine.metal for larger models; while pos < 64 (one chunk) the
// threadgroup writes o / l to `out` itself. head_dim: a power
// of two, 16..256.
//
// RoPE angles pos · rope[i] (the host's per-pair frequencies) use precise::
// sin/cos: Metal's default fast math loses accuracy at the large angles long
// positions produce.

// 1 / RMS of the head of hd elements at `base` of qkv, biases added.
float head_rms_scale(device const float* qkv, device const float* bias, uint base, uint hd, float eps) {
    float ss = 0.0f;
    for (uint d = 0u; d < hd; d++) {
        float v = qkv[base + d] + bias[base + d];
        ss += v * v;
    }
    return precise::rsqrt(ss / float(hd) + eps);
}

// Step 1: biases, the heads' RMSNorm (p.qk_norm; gains after the biases)
// and RoPE on q (head at qbase of qkv) and the current k (at kbase), into q
// and kcur: pair i is elements a, b (adjacent, or i and i + hd/2 with
// p.rope_neox). Call in uniform control flow; the caller's barrier
// publishes q and kcur.
void position_q_k(constant AttnParams& p, device const float* qkv, device const float* rope,
                  device const float* bias, threadgroup float4* q, threadgroup float4* kcur,
                  threadgroup float* qk_scale, uint tid, uint pos, uint qbase, uint kbase) {
    uint hd = p.head_dim;
    float qs = 1.0f;
    float ks = 1.0f;
    if (p.qk_norm != 0u) {
        if (tid < 2u) {
            qk_scale[tid] = head_rms_scale(qkv, bias, tid == 1u ? kbase : qbase, hd, p.eps);
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
        qs = qk_scale[0];
        ks = qk_scale[1];
    }
    uint gq = p.n_heads * hd + 2u * p.kv_dim;
    if (tid < hd / 2u) {
        uint i = tid;
        uint a = p.rope_neox != 0u ? i : 2u * i;
        uint b = p.rope_neox != 0u ? i + hd / 2u : 2u * i + 1u;
        float theta = float(pos) * rope[i];
        float cs = precise::cos(theta);
        float sn = precise::sin(theta);
        float q0 = (qkv[qbase + a] + bias[qbase + a]) * qs * bias[gq + a];
        float q1 = (qkv[qbase + b] + bias[qbase + b]) * qs * bias[gq + b];
        float k0 = (qkv[kbase + a] + bias[kbase + a]) * ks * bias[gq + hd + a];
        float k1 = (qkv[kbase + b] + bias[kbase + b]) * ks * bias[gq + hd + b];
        q[a / 4u][a % 4u] = q0 * cs - q1 * sn;
        q[b / 4u][b % 4u] = q0 * sn + q1 * cs;
        kcur[a / 4u][a % 4u] = k0 * cs - k1 * sn;
        kcur[b / 4u][b % 4u] = k0 * sn + k1 * cs;
    }
}

[[max_total_threads_per_threadgroup(256)]]
kernel void compute_main(
    constant AttnParams& p [[buffer(0)]],
    device const uint* step [[buffer(1)]],
    device const float* qkv [[buffer(2)]],
    device float4* kcache [[buffer(3)]],
    device float* vcache [[buffer(4)]],
    device float* part [[buffer(5)]],
    device float* out [[buffer(6)]],
    device const float* rope [[buffer(7)]],
    device const float* bias [[buffer(8)]],
    uint tid [[thread_index_in_threadgroup]],
    uint3 wid [[threadgroup_position_in_grid]]
) {
    threadgroup float4 q[64];
    threadgroup float4 kcur[64];
    threadgroup float sc[256];
    threadgroup float acc[256];
    threadgroup float ex[64];
    threadgroup float red8[8];
    threadgroup float qk_scale[2];
    uint h = wid.x;
    uint c = wid.y;
    uint hd = p.head_dim;
    uint group = p.n_heads / p.n_kv_heads;
    uint kvh = h / group;
    uint pos = step[0];
    uint qbase = h * hd;
    uint kbase = p.n_heads * hd + kvh * hd;
    uint vbase = kbase + p.n_kv_heads * hd;

    // 1. Biases, per-head norms and RoPE on q and the current k.
    position_q_k(p, qkv, rope, bias, q, kcur, qk_scale, tid, pos, qbase, kbase);
    threadgroup_barrier(mem_flags::mem_threadgroup);

    // 2. KV-cache write, once per KV head.
    uint hd4 = hd / 4u;
    uint slot = p.layer_offset + pos * p.kv_dim + kvh * hd;
    if (h % group == 0u && c == 0u && tid < hd4) {
        kcache[slot / 4u + tid] = kcur[tid];
    }
    if (h % group == 0u && c == 0u && tid < hd) {
        vcache[slot + tid] = qkv[vbase + tid] + bias[vbase + tid];
    }

    // 3a. Scores: thread (position tid/4, quarter tid%4 of the head dims).
    uint t = c * 64u + tid / 4u;
    uint quarter = hd4 / 4u;
    uint d0 = (tid % 4u) * quarter;
    float s = 0.0f;
    if (t < pos) {
        uint kb = (p.layer_offset + t * p.kv_dim + kvh * hd) / 4u + d0;
        for (uint d = 0u; d < quarter; d++) {
            s += dot(q[d0 + d], kcache[kb + d]);
        }
    } else if (t == pos) {
        for (uint d = 0u; d < quarter; d++) {
            s += dot(q[d0 + d], kcur[d0 + d]);
        }
    }
    sc[tid] = s;
    threadgroup_barrier(mem_flags::mem_threadgroup);

    // 3b. Position i's score into ex (−inf past pos); the chunk max m in two
    // barrier steps.
    uint n = min(64u, pos + 1u - c * 64u);
    if (tid < 64u) {
        float si = -3.4e38f;
        if (tid < n) {
            si = (sc[4u * tid] + sc[4u * tid + 1u] + sc[4u * tid + 2u] + sc[4u * tid + 3u]) * p.scale;
        }
        ex[tid] = si;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid < 8u) {
        float mm = ex[8u * tid];
        for (uint i = 1u; i < 8u; i++) {
            mm = max(mm, ex[8u * tid + i]);
        }
        red8[tid] = mm;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    float m = red8[0];
    for (uint i = 1u; i < 8u; i++) {
        m = max(m, red8[i]);
    }
    // e_i = exp(s_i − m), once per position (0 past pos).
    if (tid < 64u) {
        ex[tid] = tid < n ? exp(ex[tid] - m) : 0.0f;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    // 3c. o[d] = Σ_i e_i v_i[d]: thread (d, g) takes i ≡ g mod (256/hd); the
    // chunk's l = Σ_i e_i from 8 partial sums.
    uint groups = 256u / hd;
    uint d = tid % hd;
    uint g = tid / hd;
    // Cached positions (< pos) four at a time, their loads issued together;
    // the current position's v comes from qkv (its cache slot is being
    // written by this dispatch).
    uint nc = min(n, pos - c * 64u);
    uint vb = p.layer_offset + c * 64u * p.kv_dim + kvh * hd + d;
    float o = 0.0f;
    uint i = g;
    for (; i + 3u * groups < nc; i += 4u * groups) {
        float v0 = vcache[vb + i * p.kv_dim];
        float v1 = vcache[vb + (i + groups) * p.kv_dim];
        float v2 = vcache[vb + (i + 2u * groups) * p.kv_dim];
        float v3 = vcache[vb + (i + 3u * groups) * p.kv_dim];
        o += ex[i] * v0 + ex[i + groups] * v1 + ex[i + 2u * groups] * v2 + ex[i + 3u * groups] * v3;
    }
    for (; i < nc; i += groups) {
        o += ex[i] * vcache[vb + i * p.kv_dim];
    }
    if (nc < n && g == nc % groups) {
        o += ex[nc] * (qkv[vbase + d] + bias[vbase + d]);
    }
    acc[tid] = o;
    if (tid < 8u) {
        float ls = 0.0f;
        for (uint i = 0u; i < 8u; i++) {
            ls += ex[8u * tid + i];
        }
        red8[tid] = ls;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid < hd) {
        float sum = 0.0f;
        for (uint k = 0u; k < groups; k++) {
            sum += acc[tid + k * hd];
        }
        float l = 0.0f;
        for (uint i = 0u; i < 8u; i++) {
            l += red8[i];
        }
        if (pos < 64u) {
            // One chunk: the final output, no combine pass.
            out[h * hd + tid] = sum / l;
        } else {
            // Record (chunk c, head h): m, l, two unused words, then o.
            uint pbase = (c * p.n_heads + h) * (hd + 4u);
            part[pbase + 4u + tid] = sum;
            if (tid == 0u) {
                part[pbase] = m;
                part[pbase + 1u] = l;
            }
        }
    }
}
