// attention_prefill.metal — MSL twin of attention_prefill.wgsl: causal
// grouped-query attention for one layer over a chunk of n prompt tokens at
// positions start..start+n (chunk buffer: [start, n, 0, 0, ids...]). qkv
// holds one row per token: Q (n_heads·hd), K (kv_dim), V (kv_dim). Two
// dispatches, so no threadgroup reads a cache slot another threadgroup of
// the same dispatch writes:
//
//   ROPE_KV (threadgroup z = token): RoPE on the token's q (in place in qkv)
//     and k (GGUF llama convention: adjacent pairs (2i, 2i+1),
//     θ_i = pos · base^(−2i/head_dim), as in attention.metal), then k and v
//     stored in the cache slot of its position.
//   otherwise (threadgroup x = a KV head and up to 4 of the query heads
//     sharing it, z = token): the token at position pos attends to cache
//     positions 0..=pos for those heads at once (K and V read once for all
//     of them) with an online softmax over tiles of 256 positions;
//     out[token, head] = Σ_t p_t v_t.
// Requires head_dim ≤ 256, a multiple of 4. sin/cos use the precise::
// variants (Metal compiles with fast math by default).

//#if !ROPE_KV
float4 reduce_max4(float4 v, threadgroup float4* red, uint tid) {
    threadgroup_barrier(mem_flags::mem_threadgroup);
    red[tid] = v;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    // 32 partials of 8, then every thread combines the 32.
    if (tid < 32u) {
        float4 m = red[8u * tid];
        for (uint i = 1u; i < 8u; i++) {
            m = max(m, red[8u * tid + i]);
        }
        red[256u + tid] = m;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    float4 r = red[256u];
    for (uint i = 1u; i < 32u; i++) {
        r = max(r, red[256u + i]);
    }
    return r;
}

float4 reduce_sum4(float4 v, threadgroup float4* red, uint tid) {
    threadgroup_barrier(mem_flags::mem_threadgroup);
    red[tid] = v;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid < 32u) {
        float4 m = red[8u * tid];
        for (uint i = 1u; i < 8u; i++) {
            m += red[8u * tid + i];
        }
        red[256u + tid] = m;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    float4 r = red[256u];
    for (uint i = 1u; i < 32u; i++) {
        r += red[256u + i];
    }
    return r;
}
//#endif

//#if ROPE_KV
// The token's biases, per-head norms, RoPE and KV-cache write at position
// `pos`, its qkv row starting at element `row` (see attention_prefill.wgsl).
// Call in uniform control flow.
void rope_kv(constant AttnParams& p, device float* qkv, device float4* kcache,
             device float4* vcache, device const float* rope, device const float* bias,
             threadgroup float* hscale, uint tid, uint pos, uint row) {
    uint hd = p.head_dim;
    uint qdim = p.n_heads * hd;
    // Biases, then pair j of head hh (q heads, then k heads) is row
    // elements a, b (see attention_prefill.wgsl).
    uint slot = p.layer_offset + pos * p.kv_dim;
    uint half_hd = hd / 2u;
    uint heads = p.n_heads + p.n_kv_heads;
    if (p.qk_norm != 0u) {
        if (tid < heads) {
            float ss = 0.0f;
            for (uint d = 0u; d < hd; d++) {
                float v = qkv[row + tid * hd + d] + bias[tid * hd + d];
                ss += v * v;
            }
            hscale[tid] = precise::rsqrt(ss / float(hd) + p.eps);
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    uint gains = qdim + 2u * p.kv_dim;
    for (uint i = tid; i < heads * half_hd; i += 256u) {
        uint hh = i / half_hd;
        uint j = i % half_hd;
        uint a = hh * hd + (p.rope_neox != 0u ? j : 2u * j);
        uint b = hh * hd + (p.rope_neox != 0u ? j + half_hd : 2u * j + 1u);
        float theta = float(pos) * rope[j];
        float c = precise::cos(theta);
        float s = precise::sin(theta);
        float x0 = qkv[row + a] + bias[a];
        float x1 = qkv[row + b] + bias[b];
        if (p.qk_norm != 0u) {
            uint g = gains + (hh >= p.n_heads ? hd : 0u);
            x0 *= hscale[hh] * bias[g + a - hh * hd];
            x1 *= hscale[hh] * bias[g + b - hh * hd];
        }
        float r0 = x0 * c - x1 * s;
        float r1 = x0 * s + x1 * c;
        if (hh < p.n_heads) {
            qkv[row + a] = r0;
            qkv[row + b] = r1;
        } else {
            uint ka = slot + a - qdim;
            uint kb = slot + b - qdim;
            kcache[ka / 4u][ka % 4u] = r0;
            kcache[kb / 4u][kb % 4u] = r1;
        }
    }
    for (uint i = tid; i < p.kv_dim / 4u; i += 256u) {
        uint v = qdim + p.kv_dim + i * 4u;
        float4 x = float4(qkv[row + v], qkv[row + v + 1u], qkv[row + v + 2u], qkv[row + v + 3u]);
        vcache[slot / 4u + i] = x + float4(bias[v], bias[v + 1u], bias[v + 2u], bias[v + 3u]);
    }
}
//#endif

[[max_total_threads_per_threadgroup(256)]]
kernel void compute_main(
    constant AttnParams& p [[buffer(0)]],
    device const uint* chunk [[buffer(1)]],
    device float* qkv [[buffer(2)]],
    device float4* kcache [[buffer(3)]],
    device float4* vcache [[buffer(4)]],
    device float* out [[buffer(5)]],
    device const float* rope [[buffer(6)]],
    device const float* bias [[buffer(7)]],
    uint tid [[thread_index_in_threadgroup]],
    uint3 wid [[threadgroup_position_in_grid]]
) {
//#if !ROPE_KV
    threadgroup float4 q[256];
    threadgroup float4 pw[256];
    threadgroup float4 red[288];
//#endif
    uint t = wid.z;
    if (t >= chunk[1]) {
        return;
    }
    uint pos = chunk[0] + t;
    uint hd = p.head_dim;
    uint hd4 = hd / 4u;
    uint qdim = p.n_heads * hd;
    uint row = t * (qdim + 2u * p.kv_dim);
//#if ROPE_KV
    // 1 / RMS of each q and k head (p.qk_norm; gains after the biases).
    threadgroup float hscale[256];
    rope_kv(p, qkv, kcache, vcache, rope, bias, hscale, tid, pos, row);
//#else
    // Threadgroup x: KV head kvh and its query heads h0 .. h0+nh (≤ 4), so
    // K and V are read once for all of them (see attention_prefill.wgsl).
    uint group = p.n_heads / p.n_kv_heads;
    uint hgroups = (group + 3u) / 4u;
    uint kvh = wid.x / hgroups;
    uint h0 = kvh * group + (wid.x % hgroups) * 4u;
    uint nh = min(4u, kvh * group + group - h0);
    for (uint i = tid; i < 4u * hd4; i += 256u) {
        uint hh = i / hd4;
        uint c = i % hd4;
        float4 v = float4(0.0f);
        if (hh < nh) {
            uint e = row + (h0 + hh) * hd + c * 4u;
            v = float4(qkv[e], qkv[e + 1u], qkv[e + 2u], qkv[e + 3u]);
        }
        q[hh * 64u + c] = v;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    // Thread (d, g) of the output sums positions j ≡ g mod (256 / hd) of a
    // tile, for the nh heads at once (one float4 component per head).
    uint groups = 256u / hd;
    uint d = tid % hd;
    uint g = tid / hd;
    float4 m = float4(-3.4e38f);
    float4 l = float4(0.0f);
    float4 o = float4(0.0f);
    for (uint t0 = 0u; t0 <= pos; t0 += 256u) {
        uint tp = t0 + tid;
        float4 s = float4(-3.4e38f);
        if (tp <= pos) {
            uint kb = (p.layer_offset + tp * p.kv_dim + kvh * hd) / 4u;
            float4 a = float4(0.0f);
            for (uint i = 0u; i < hd4; i++) {
                float4 k = kcache[kb + i];
                a += float4(dot(q[i], k), dot(q[64u + i], k), dot(q[128u + i], k), dot(q[192u + i], k));
            }
            s = a * p.scale;
        }
        float4 m_new = max(m, reduce_max4(s, red, tid));
        float4 e = float4(0.0f);
        if (tp <= pos) {
            e = exp(s - m_new);
        }
        pw[tid] = e;
        // exp(m - m_new) is 0 on the first tile (m = -3.4e38) and ≤ 1 after.
        float4 corr = exp(m - m_new);
        l = l * corr + reduce_sum4(e, red, tid);
        o *= corr;
        m = m_new;
        if (g < groups) {
            uint cnt = min(256u, pos + 1u - t0);
            // Four positions at a time, their loads issued together.
            uint vb = p.layer_offset + t0 * p.kv_dim + kvh * hd + d;
            uint j = g;
            for (; j + 3u * groups < cnt; j += 4u * groups) {
                uint e0 = vb + j * p.kv_dim;
                uint e1 = e0 + groups * p.kv_dim;
                uint e2 = e1 + groups * p.kv_dim;
                uint e3 = e2 + groups * p.kv_dim;
                float v0 = vcache[e0 / 4u][e0 % 4u];
                float v1 = vcache[e1 / 4u][e1 % 4u];
                float v2 = vcache[e2 / 4u][e2 % 4u];
                float v3 = vcache[e3 / 4u][e3 % 4u];
                o += pw[j] * v0 + pw[j + groups] * v1 + pw[j + 2u * groups] * v2 + pw[j + 3u * groups] * v3;
            }
            for (; j < cnt; j += groups) {
                uint e = vb + j * p.kv_dim;
                o += pw[j] * vcache[e / 4u][e % 4u];
            }
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    red[tid] = o;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid < hd) {
        float4 sum = float4(0.0f);
        for (uint k = 0u; k < groups; k++) {
            sum += red[tid + k * hd];
        }
        float4 r = sum / l;
        for (uint hh = 0u; hh < nh; hh++) {
            out[t * qdim + (h0 + hh) * hd + tid] = r[hh];
        }
    }
//#endif
}
