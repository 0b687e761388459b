// attention.metal — MSL twin of attention.wgsl: pass 1 of one decode step's
// grouped-query attention for one layer, with RoPE and the KV-cache write
// fused in. Threadgroup (h, c) takes query head h and the chunk of 64
// positions c·64 .. c·64+63 (≤ pos): RoPE on q and the current k, the KV write
// (first head of each KV group, chunk 0), scores (4 threads per position),
// the chunk's max m, sum l and o = Σ exp(s − m)·v into `part`.
// attention_combine.metal merges the chunks. head_dim: a power of two, 16..256.
//
// RoPE uses precise:: sin/cos/pow: Metal's default fast math loses accuracy
// at the large angles long positions produce.

[[max_total_threads_per_threadgroup(256)]]
kernel void compute_main(
    constant AttnParams& p [[buffer(0)]],
    device const uint* step [[buffer(1)]],
    device const float* qkv [[buffer(2)]],
    device float4* kcache [[buffer(3)]],
    device float* vcache [[buffer(4)]],
    device float* part [[buffer(5)]],
    uint tid [[thread_index_in_threadgroup]],
    uint3 wid [[threadgroup_position_in_grid]]
) {
    threadgroup float4 q[64];
    threadgroup float4 kcur[64];
    threadgroup float sc[256];
    threadgroup float acc[256];
    uint h = wid.x;
    uint c = wid.y;
    uint hd = p.head_dim;
    uint group = p.n_heads / p.n_kv_heads;
    uint kvh = h / group;
    uint pos = step[0];
    uint qbase = h * hd;
    uint kbase = p.n_heads * hd + kvh * hd;
    uint vbase = kbase + p.n_kv_heads * hd;

    // 1. RoPE on q and the current k.
    if (tid < hd / 2u) {
        uint i = tid;
        float theta = float(pos) * precise::pow(p.rope_base, -float(2u * i) / float(hd));
        float cs = precise::cos(theta);
        float sn = precise::sin(theta);
        float q0 = qkv[qbase + 2u * i];
        float q1 = qkv[qbase + 2u * i + 1u];
        float k0 = qkv[kbase + 2u * i];
        float k1 = qkv[kbase + 2u * i + 1u];
        uint j = i / 2u;
        uint lane = (2u * i) % 4u;
        q[j][lane] = q0 * cs - q1 * sn;
        q[j][lane + 1u] = q0 * sn + q1 * cs;
        kcur[j][lane] = k0 * cs - k1 * sn;
        kcur[j][lane + 1u] = k0 * sn + k1 * cs;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    // 2. KV-cache write, once per KV head.
    uint hd4 = hd / 4u;
    uint slot = p.layer_offset + pos * p.kv_dim + kvh * hd;
    if (h % group == 0u && c == 0u && tid < hd4) {
        kcache[slot / 4u + tid] = kcur[tid];
    }
    if (h % group == 0u && c == 0u && tid < hd) {
        vcache[slot + tid] = qkv[vbase + tid];
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
    uint n = min(64u, pos + 1u - c * 64u);
    float m = -3.4e38f;
    for (uint i = 0u; i < n; i++) {
        float si = (sc[4u * i] + sc[4u * i + 1u] + sc[4u * i + 2u] + sc[4u * i + 3u]) * p.scale;
        m = max(m, si);
    }

    // 3b. o[d] = Σ_i exp(s_i − m) v_i[d]: thread (d, g) takes i ≡ g mod (256/hd).
    uint groups = 256u / hd;
    uint d = tid % hd;
    uint g = tid / hd;
    float o = 0.0f;
    float l = 0.0f;
    for (uint i = g; i < n; i += groups) {
        float e = exp((sc[4u * i] + sc[4u * i + 1u] + sc[4u * i + 2u] + sc[4u * i + 3u]) * p.scale - m);
        uint ti = c * 64u + i;
        float v = 0.0f;
        if (ti == pos) {
            v = qkv[vbase + d];
        } else {
            v = vcache[p.layer_offset + ti * p.kv_dim + kvh * hd + d];
        }
        o += e * v;
        l += e;
    }
    acc[tid] = o;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    uint chunks = (p.max_ctx + 63u) / 64u;
    uint pbase = (h * chunks + c) * (hd + 2u);
    if (tid < hd) {
        float sum = 0.0f;
        for (uint k = 0u; k < groups; k++) {
            sum += acc[tid + k * hd];
        }
        part[pbase + 2u + tid] = sum;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    acc[tid] = l;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid == 0u) {
        float lsum = 0.0f;
        for (uint k = 0u; k < groups; k++) {
            lsum += acc[k * hd];
        }
        part[pbase] = m;
        part[pbase + 1u] = lsum;
    }
}
