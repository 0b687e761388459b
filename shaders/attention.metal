// attention.metal — MSL twin of attention.wgsl: one decode step of
// grouped-query attention for one layer, all heads in one dispatch (one
// threadgroup per query head), with RoPE and the KV-cache write fused in:
//   1. rotate this head's q and its KV head's k at position `pos` (GGUF llama
//      convention: adjacent pairs (2i, 2i+1), θ_i = pos · base^(−2i/head_dim));
//   2. the first query head of each KV group stores k and v in the cache slot
//      `pos`; every head uses its own copy of the current k, v from qkv, so no
//      threadgroup waits for another;
//   3. scores s_t = q·k_t · scale for t ≤ pos into `scores` (global scratch),
//      softmax, out = Σ_t p_t v_t.
// Requires head_dim ≤ 256, a multiple of 4.
//
// Metal compiles with fast math on by default; RoPE angles grow with the
// position, so sin/cos/pow use the precise:: variants (fast sin/cos lose
// accuracy for large arguments).

float reduce_max(float v, threadgroup float* red, uint tid) {
    threadgroup_barrier(mem_flags::mem_threadgroup);
    red[tid] = v;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint s = 128u; s > 0u; s >>= 1u) {
        if (tid < s) {
            red[tid] = max(red[tid], red[tid + s]);
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    return red[0];
}

float reduce_sum(float v, threadgroup float* red, uint tid) {
    threadgroup_barrier(mem_flags::mem_threadgroup);
    red[tid] = v;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint s = 128u; s > 0u; s >>= 1u) {
        if (tid < s) {
            red[tid] += red[tid + s];
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    return red[0];
}

[[max_total_threads_per_threadgroup(256)]]
kernel void compute_main(
    constant AttnParams& p [[buffer(0)]],
    device const uint* step [[buffer(1)]],
    device const float* qkv [[buffer(2)]],
    device float4* kcache [[buffer(3)]],
    device float4* vcache [[buffer(4)]],
    device float* scores [[buffer(5)]],
    device float* out [[buffer(6)]],
    uint tid [[thread_index_in_threadgroup]],
    uint3 wid [[threadgroup_position_in_grid]]
) {
    threadgroup float4 q[64];
    threadgroup float4 kcur[64];
    threadgroup float red[256];
    threadgroup float acc[256];

    uint h = wid.x;
    uint hd = p.head_dim;
    uint hd4 = hd / 4u;
    uint group = p.n_heads / p.n_kv_heads;
    uint kvh = h / group;
    uint pos = step[0];
    uint qbase = h * hd;
    uint kbase = p.n_heads * hd + kvh * hd;
    uint vbase = kbase + p.n_kv_heads * hd;

    // 1. RoPE on q and the current k (pairs 2i, 2i+1).
    if (tid < hd / 2u) {
        uint i = tid;
        float theta = float(pos) * precise::pow(p.rope_base, -float(2u * i) / float(hd));
        float c = precise::cos(theta);
        float s = precise::sin(theta);
        float q0 = qkv[qbase + 2u * i];
        float q1 = qkv[qbase + 2u * i + 1u];
        float k0 = qkv[kbase + 2u * i];
        float k1 = qkv[kbase + 2u * i + 1u];
        uint j = (2u * i) / 4u;
        uint lane = (2u * i) % 4u;
        // Pairs never straddle a vector (2i is even, 4 | head_dim).
        q[j][lane] = q0 * c - q1 * s;
        q[j][lane + 1u] = q0 * s + q1 * c;
        kcur[j][lane] = k0 * c - k1 * s;
        kcur[j][lane + 1u] = k0 * s + k1 * c;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    // 2. KV-cache write (one writer per KV head).
    uint slot = (p.layer_offset + pos * p.kv_dim + kvh * hd) / 4u;
    if (h % group == 0u && tid < hd4) {
        kcache[slot + tid] = kcur[tid];
        uint v = vbase + tid * 4u;
        vcache[slot + tid] = float4(qkv[v], qkv[v + 1u], qkv[v + 2u], qkv[v + 3u]);
    }

    // 3. Scores and softmax. Position `pos` uses kcur, not the cache.
    uint sbase = h * p.max_ctx;
    float m = -3.4e38f;
    for (uint t = tid; t <= pos; t += 256u) {
        float s = 0.0f;
        if (t == pos) {
            for (uint d = 0u; d < hd4; d++) {
                s += dot(q[d], kcur[d]);
            }
        } else {
            uint kb = (p.layer_offset + t * p.kv_dim + kvh * hd) / 4u;
            for (uint d = 0u; d < hd4; d++) {
                s += dot(q[d], kcache[kb + d]);
            }
        }
        s *= p.scale;
        scores[sbase + t] = s;
        m = max(m, s);
    }
    m = reduce_max(m, red, tid);
    float l = 0.0f;
    for (uint t = tid; t <= pos; t += 256u) {
        float e = exp(scores[sbase + t] - m);
        scores[sbase + t] = e;
        l += e;
    }
    l = reduce_sum(l, red, tid);
    threadgroup_barrier(mem_flags::mem_device);
    threadgroup_barrier(mem_flags::mem_threadgroup);

    // 4. out[d] = Σ_t p_t v_t[d]: thread (d, g) sums t ≡ g mod (256 / hd).
    uint groups = 256u / hd;
    uint d = tid % hd;
    uint g = tid / hd;
    float o = 0.0f;
    if (g < groups) {
        for (uint t = g; t <= pos; t += groups) {
            float v = 0.0f;
            if (t == pos) {
                v = qkv[vbase + d];
            } else {
                uint vb = p.layer_offset + t * p.kv_dim + kvh * hd + d;
                v = vcache[vb / 4u][vb % 4u];
            }
            o += scores[sbase + t] * v;
        }
    }
    acc[tid] = o;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid < hd) {
        float sum = 0.0f;
        for (uint k = 0u; k < groups; k++) {
            sum += acc[tid + k * hd];
        }
        out[qbase + tid] = sum / l;
    }
}
