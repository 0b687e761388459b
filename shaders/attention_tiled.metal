// attention_tiled.metal — MSL twin of attention_tiled.wgsl: the causal
// attention of a prefill chunk 32 query tokens at a time (after
// attention_prefill's ROPE_KV dispatch), K and V staged once per 32-key tile
// for all of them. Threadgroup (x: query head, z: 32 tokens); thread (query
// tid / 8, lane tid mod 8) holds its query's q and its own online softmax
// over keys lane, lane + 8, lane + 16, lane + 24 of each tile; the 8 lanes
// merge at the end. head_dim ≤ 64. Bindings as attention_prefill.metal.

// Slot of vec4 c of staged key k (swizzled: see the WGSL twin).
uint slot(uint k, uint c) {
    return k * 16u + (c ^ (k & 7u));
}

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
    threadgroup float4 ks[512];
    threadgroup float4 vs[512];
    uint n = chunk[1];
    uint start = chunk[0];
    uint h = wid.x;
    uint t0 = wid.z * 32u;
    uint hd = p.head_dim;
    uint hd4 = hd / 4u;
    uint qdim = p.n_heads * hd;
    uint kvh = h / (p.n_heads / p.n_kv_heads);
    uint i = tid >> 3u;
    uint j = tid & 7u;
    uint t = t0 + i;
    bool live = t < n;
    uint pos = start + t;
    uint last = start + min(t0 + 32u, n) - 1u;

    float4 q[16];
    float4 o[16];
    for (uint c = 0u; c < 16u; c++) {
        float4 v = float4(0.0f);
        if (live && c < hd4) {
            uint e = t * (qdim + 2u * p.kv_dim) + h * hd + 4u * c;
            v = float4(qkv[e], qkv[e + 1u], qkv[e + 2u], qkv[e + 3u]) * p.scale;
        }
        q[c] = v;
        o[c] = float4(0.0f);
    }
    float m = -3.4e38f;
    float l = 0.0f;
    uint kv0 = (p.layer_offset + kvh * hd) / 4u;
    for (uint k0 = 0u; k0 <= last; k0 += 32u) {
        for (uint e = tid; e < 512u; e += 256u) {
            uint k = e >> 4u;
            uint c = e & 15u;
            float4 kv = float4(0.0f);
            float4 vv = float4(0.0f);
            if (k0 + k <= last && c < hd4) {
                uint g = kv0 + (k0 + k) * (p.kv_dim / 4u) + c;
                kv = kcache[g];
                vv = vcache[g];
            }
            ks[slot(k, c)] = kv;
            vs[slot(k, c)] = vv;
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
        if (live) {
            float4 s = float4(-3.4e38f);
            for (uint r = 0u; r < 4u; r++) {
                uint k = j + 8u * r;
                if (k0 + k <= pos) {
                    float a = 0.0f;
                    for (uint c = 0u; c < 16u; c++) {
                        a += dot(q[c], ks[slot(k, c)]);
                    }
                    s[r] = a;
                }
            }
            float m_new = max(m, max(max(s.x, s.y), max(s.z, s.w)));
            float corr = exp(m - m_new);
            float4 e = float4(0.0f);
            for (uint r = 0u; r < 4u; r++) {
                e[r] = s[r] > -3.0e38f ? exp(s[r] - m_new) : 0.0f;
            }
            l = l * corr + (e.x + e.y) + (e.z + e.w);
            m = m_new;
            for (uint c = 0u; c < 16u; c++) {
                o[c] = o[c] * corr + e.x * vs[slot(j, c)] + e.y * vs[slot(j + 8u, c)]
                    + e.z * vs[slot(j + 16u, c)] + e.w * vs[slot(j + 24u, c)];
            }
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }

    uint q0 = tid & ~7u;
    ks[tid] = float4(m, 0.0f, 0.0f, 0.0f);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    float mq = ks[q0].x;
    for (uint r = 1u; r < 8u; r++) {
        mq = max(mq, ks[q0 + r].x);
    }
    float f = exp(m - mq);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    ks[tid] = float4(l * f, 0.0f, 0.0f, 0.0f);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    float lq = 0.0f;
    for (uint r = 0u; r < 8u; r++) {
        lq += ks[q0 + r].x;
    }
    for (uint round = 0u; round < 8u; round++) {
        threadgroup_barrier(mem_flags::mem_threadgroup);
        ks[tid * 2u] = o[2u * round] * f;
        ks[tid * 2u + 1u] = o[2u * round + 1u] * f;
        threadgroup_barrier(mem_flags::mem_threadgroup);
        uint c = 2u * round + j;
        if (live && j < 2u && c < hd4) {
            float4 sum = float4(0.0f);
            for (uint r = 0u; r < 8u; r++) {
                sum += ks[(q0 + r) * 2u + j];
            }
            float4 r4 = sum / lq;
            uint e = t * qdim + h * hd + 4u * c;
            out[e] = r4.x;
            out[e + 1u] = r4.y;
            out[e + 2u] = r4.z;
            out[e + 3u] = r4.w;
        }
    }
}
