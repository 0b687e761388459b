// attention_tiled.metal — MSL twin of attention_tiled.wgsl: the causal
// attention of a prefill chunk 32 query tokens at a time (after
// attention_prefill's ROPE_KV dispatch), K and V staged once per 32-key tile
// for all of them. Threadgroup (x: query head, z: 32 tokens); thread (query
// tid / 8, lane tid mod 8) holds its query's q and its own online softmax
// over keys lane, lane + 8, lane + 16, lane + 24 of each tile; the 8 lanes
// merge at the end. head_dim ≤ 64 (≤ 128 with HD128, which splits the
// output over the lanes instead). Bindings as attention_prefill.metal.
//
// COOP: the products on simdgroup matrices (Apple7 and later), the design
// and layouts of attention_tiled.wgsl's COOP variant with Metal's 8×8
// fragments: SIMD group sid holds 2 × 8 fragments of Q, and 2 × 2
// accumulators each of its S block and of its output block.

//#if COOP
constant uint HS = 72u;
constant uint SS = 36u;
constant float RESCALE_AT = 8.0f;
constant float F16_MAX = 65504.0f;

struct KvTile {
    float4 k[4];
    float4 v[4];
};

// Thread tid's 4 float4s of K and of V for keys k0..k0+63, zero past `last`
// and past head_dim (attention_tiled.wgsl's load_tile).
KvTile load_tile(constant AttnParams& p, device const float4* kcache, device const float4* vcache,
                 uint kv0, uint k0, uint last, uint tid) {
    KvTile r;
    for (uint i = 0u; i < 4u; i++) {
        uint e = tid + 256u * i;
        uint k = e >> 4u;
        uint c = e & 15u;
        r.k[i] = float4(0.0f);
        r.v[i] = float4(0.0f);
        if (k0 + k <= last && c < p.head_dim / 4u) {
            uint g = kv0 + (k0 + k) * (p.kv_dim / 4u) + c;
            r.k[i] = kcache[g];
            r.v[i] = vcache[g];
        }
    }
    return r;
}

// Four values as half at a[i..i+4], clamped to half's range.
void put4(threadgroup half* a, uint i, float4 v) {
    half4 h = half4(clamp(v, float4(-F16_MAX), float4(F16_MAX)));
    for (uint e = 0u; e < 4u; e++) {
        a[i + e] = h[e];
    }
}

void stage_tile(threadgroup half* kh, threadgroup half* vh, thread const KvTile& t, uint tid) {
    for (uint i = 0u; i < 4u; i++) {
        uint e = tid + 256u * i;
        uint at = (e >> 4u) * HS + 4u * (e & 15u);
        put4(kh, at, t.k[i]);
        put4(vh, at, t.v[i]);
    }
}

// The 32 queries of the tile (times p.scale, zero past the chunk and
// head_dim) as half into qp.
void stage_q(constant AttnParams& p, device const float* qkv, threadgroup half* qp, uint t0, uint n,
             uint h, uint tid) {
    uint hd = p.head_dim;
    uint row = p.n_heads * hd + 2u * p.kv_dim;
    for (uint i = 0u; i < 2u; i++) {
        uint e = tid + 256u * i;
        uint q = e >> 4u;
        uint c = e & 15u;
        float4 v = float4(0.0f);
        if (t0 + q < n && c < hd / 4u) {
            uint x = (t0 + q) * row + h * hd + 4u * c;
            v = float4(qkv[x], qkv[x + 1u], qkv[x + 2u], qkv[x + 3u]) * p.scale;
        }
        put4(qp, q * HS + 4u * c, v);
    }
}

// SIMD group sid's 16×16 output block o[rf·2 + cf] (queries 8·rf..,
// dimensions 8·cf..) to its column-major slice sf[sid·256..].
void store_block(threadgroup float* sf, thread simdgroup_float8x8* o, uint sid) {
    for (uint f = 0u; f < 4u; f++) {
        simdgroup_store(o[f], sf + sid * 256u + (f & 1u) * 128u + (f >> 1u) * 8u, 16u, ulong2(0, 0), true);
    }
}

// The output block through its slice, each query's row times rowf[query]
// (every thread calls it: it holds barriers).
void rescale(threadgroup float* sf, threadgroup const float* rowf, thread simdgroup_float8x8* o, uint sid,
             uint lane) {
    store_block(sf, o, sid);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint e = lane; e < 256u; e += 32u) {
        sf[sid * 256u + e] *= rowf[(sid >> 2u) * 16u + (e & 15u)];
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint f = 0u; f < 4u; f++) {
        simdgroup_load(o[f], sf + sid * 256u + (f & 1u) * 128u + (f >> 1u) * 8u, 16u, ulong2(0, 0), true);
    }
}

// The running softmax state of one query lane: max m, partial sum l.
struct Lane {
    float m;
    float l;
};

// Softmax lane j of query q over keys k0 + j + 8i of the staged S
// (attention_tiled.wgsl's softmax_step).
Lane softmax_step(Lane st, threadgroup const float* sf, threadgroup half* qp, threadgroup float* rowf,
                  threadgroup uint* flag, uint q, uint j, uint k0, uint pos, bool live) {
    Lane r = st;
    float s[8];
    float mt = -3.4e38f;
    for (uint i = 0u; i < 8u; i++) {
        uint k = j + 8u * i;
        s[i] = -3.4e38f;
        if (live && k0 + k <= pos) {
            s[i] = sf[k * SS + q];
        }
        mt = max(mt, s[i]);
    }
    mt = max(mt, simd_shuffle_xor(mt, 1));
    mt = max(mt, simd_shuffle_xor(mt, 2));
    mt = max(mt, simd_shuffle_xor(mt, 4));
    float f = 1.0f;
    if (mt > r.m + RESCALE_AT) {
        f = exp(r.m - mt);
        r.m = mt;
        r.l *= f;
        flag[0] = 1u;
    }
    if (j == 0u) {
        rowf[q] = f;
    }
    float sum = 0.0f;
    for (uint i = 0u; i < 8u; i++) {
        half eh = half(s[i] > -3.0e38f ? exp(s[i] - r.m) : 0.0f);
        qp[q * HS + j + 8u * i] = eh;
        sum += float(eh);
    }
    r.l += sum;
    return r;
}

// SIMD group sid's S block: its 2 × 8 Q fragments times Kᵀ (K's rows read
// transposed), to sf column-major.
void s_block(threadgroup float* sf, threadgroup const half* kh, thread const simdgroup_half8x8* qa, uint sid) {
    simdgroup_float8x8 s[4];
    for (uint f = 0u; f < 4u; f++) {
        s[f] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);
    }
    for (uint kk = 0u; kk < 8u; kk++) {
        simdgroup_half8x8 b[2];
        for (uint cf = 0u; cf < 2u; cf++) {
            simdgroup_load(b[cf], kh + ((sid & 3u) * 16u + 8u * cf) * HS + 8u * kk, HS, ulong2(0, 0), true);
        }
        for (uint f = 0u; f < 4u; f++) {
            simdgroup_multiply_accumulate(s[f], qa[(f >> 1u) * 8u + kk], b[f & 1u], s[f]);
        }
    }
    for (uint f = 0u; f < 4u; f++) {
        uint at = ((sid & 3u) * 16u + 8u * (f & 1u)) * SS + (sid >> 2u) * 16u + 8u * (f >> 1u);
        simdgroup_store(s[f], sf + at, SS, ulong2(0, 0), true);
    }
}

// O block += P (query × key) · V (key × dimension), 8 keys a step.
void pv_block(thread simdgroup_float8x8* o, threadgroup const half* qp, threadgroup const half* vh, uint sid) {
    for (uint kk = 0u; kk < 64u; kk += 8u) {
        simdgroup_half8x8 a[2];
        simdgroup_half8x8 b[2];
        for (uint i = 0u; i < 2u; i++) {
            simdgroup_load(a[i], qp + ((sid >> 2u) * 16u + 8u * i) * HS + kk, HS);
            simdgroup_load(b[i], vh + kk * HS + (sid & 3u) * 16u + 8u * i, HS);
        }
        for (uint f = 0u; f < 4u; f++) {
            simdgroup_multiply_accumulate(o[f], a[f >> 1u], b[f & 1u], o[f]);
        }
    }
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
    uint3 wid [[threadgroup_position_in_grid]],
    uint sid [[simdgroup_index_in_threadgroup]],
    uint lane [[thread_index_in_simdgroup]]
) {
    threadgroup half kh[4608];
    threadgroup half vh[4608];
    threadgroup half qp[2304];
    threadgroup float sf[2304];
    threadgroup float rowf[32];
    threadgroup uint flag[1];
    uint n = chunk[1];
    uint start = chunk[0];
    uint h = wid.x;
    uint t0 = wid.z * 32u;
    uint hd = p.head_dim;
    uint kvh = h / (p.n_heads / p.n_kv_heads);
    uint kv0 = (p.layer_offset + kvh * hd) / 4u;
    // Softmax role from the SIMD group (attention_tiled.wgsl).
    uint q = sid * 4u + (lane >> 3u);
    uint j = lane & 7u;
    bool live = t0 + q < n;
    uint pos = start + t0 + q;
    uint last = start + min(t0 + 32u, n) - 1u;

    stage_q(p, qkv, qp, t0, n, h, tid);
    if (tid == 0u) {
        flag[0] = 0u;
    }
    KvTile kv = load_tile(p, kcache, vcache, kv0, 0u, last, tid);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    simdgroup_half8x8 qa[16];
    for (uint f = 0u; f < 16u; f++) {
        simdgroup_load(qa[f], qp + ((sid >> 2u) * 16u + 8u * (f >> 3u)) * HS + 8u * (f & 7u), HS);
    }
    simdgroup_float8x8 o[4];
    for (uint f = 0u; f < 4u; f++) {
        o[f] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);
    }
    Lane st = {-3.4e38f, 0.0f};
    for (uint k0 = 0u; k0 <= last; k0 += 64u) {
        stage_tile(kh, vh, kv, tid);
        threadgroup_barrier(mem_flags::mem_threadgroup);
        if (k0 + 64u <= last) {
            kv = load_tile(p, kcache, vcache, kv0, k0 + 64u, last, tid);
        }
        s_block(sf, kh, qa, sid);
        threadgroup_barrier(mem_flags::mem_threadgroup);
        st = softmax_step(st, sf, qp, rowf, flag, q, j, k0, pos, live);
        threadgroup_barrier(mem_flags::mem_threadgroup);
        if (flag[0] != 0u && k0 > 0u) {
            rescale(sf, rowf, o, sid, lane);
        }
        pv_block(o, qp, vh, sid);
        threadgroup_barrier(mem_flags::mem_threadgroup);
        if (tid == 0u) {
            flag[0] = 0u;
        }
    }
    float l = st.l;
    l += simd_shuffle_xor(l, 1);
    l += simd_shuffle_xor(l, 2);
    l += simd_shuffle_xor(l, 4);
    if (j == 0u) {
        rowf[q] = l > 0.0f ? 1.0f / l : 0.0f;
    }
    store_block(sf, o, sid);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint e = lane; e < 256u; e += 32u) {
        uint c = e & 15u;
        uint r = e >> 4u;
        uint qq = (sid >> 2u) * 16u + r;
        uint d = (sid & 3u) * 16u + c;
        if (t0 + qq < n && d < hd) {
            out[(t0 + qq) * p.n_heads * hd + h * hd + d] = sf[sid * 256u + c * 16u + r] * rowf[qq];
        }
    }
}
//#else
//#if HD128
constant uint SHIFT = 5u;
//#else
constant uint SHIFT = 4u;
//#endif
constant uint KEYS = 512u >> SHIFT;

// Slot of vec4 c of staged key k (swizzled: see the WGSL twin).
uint slot(uint k, uint c) {
    return (k << SHIFT) + (c ^ (k & 7u));
}

// This thread's query and the tile's keys (see the WGSL twin).
struct Tile {
    uint h;
    uint i;
    uint j;
    uint t;
    uint pos;
    bool live;
    uint last;
    uint kv0;
};

Tile tile_of(constant AttnParams& p, device const uint* chunk, uint tid, uint3 wid) {
    uint n = chunk[1];
    uint start = chunk[0];
    uint t0 = wid.z * 32u;
    uint t = t0 + (tid >> 3u);
    uint kvh = wid.x / (p.n_heads / p.n_kv_heads);
    uint kv0 = (p.layer_offset + kvh * p.head_dim) / 4u;
    return Tile{wid.x, tid >> 3u, tid & 7u, t, start + t, t < n, start + min(t0 + 32u, n) - 1u, kv0};
}

void stage_kv(constant AttnParams& p, device const float4* kcache, device const float4* vcache,
              threadgroup float4* ks, threadgroup float4* vs, Tile g, uint k0, uint tid) {
    for (uint e = tid; e < 512u; e += 256u) {
        uint k = e >> SHIFT;
        uint c = e & ((1u << SHIFT) - 1u);
        float4 kv = float4(0.0f);
        float4 vv = float4(0.0f);
        if (k0 + k <= g.last && c < p.head_dim / 4u) {
            uint at = g.kv0 + (k0 + k) * (p.kv_dim / 4u) + c;
            kv = kcache[at];
            vv = vcache[at];
        }
        ks[slot(k, c)] = kv;
        vs[slot(k, c)] = vv;
    }
}

void store4(constant AttnParams& p, device float* out, uint t, uint h, uint c, float4 v) {
    uint e = t * p.n_heads * p.head_dim + h * p.head_dim + 4u * c;
    out[e] = v.x;
    out[e + 1u] = v.y;
    out[e + 2u] = v.z;
    out[e + 3u] = v.w;
}
//#if HD128
// Head sizes 68..128: 16 keys per tile, S through ks, every lane of a
// query runs its softmax and keeps output vec4s j + 8u (see the WGSL twin).
float2 scores16(constant AttnParams& p, device const float* qkv, threadgroup const float4* ks, Tile g, uint k0) {
    uint hd = p.head_dim;
    uint e0 = g.t * (p.n_heads * hd + 2u * p.kv_dim) + g.h * hd;
    float2 a = float2(0.0f);
    if (g.live) {
        for (uint c = 0u; c < hd / 4u; c++) {
            uint e = e0 + 4u * c;
            float4 q = float4(qkv[e], qkv[e + 1u], qkv[e + 2u], qkv[e + 3u]);
            a.x += dot(q, ks[slot(g.j, c)]);
            a.y += dot(q, ks[slot(g.j + 8u, c)]);
        }
    }
    bool2 m = bool2(g.live && k0 + g.j <= g.pos, g.live && k0 + g.j + 8u <= g.pos);
    return select(float2(-3.4e38f), a * p.scale, m);
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
    Tile g = tile_of(p, chunk, tid, wid);
    uint i = g.i;
    uint j = g.j;
    float4 o[4] = {float4(0.0f), float4(0.0f), float4(0.0f), float4(0.0f)};
    float m = -3.4e38f;
    float l = 0.0f;
    for (uint k0 = 0u; k0 <= g.last; k0 += KEYS) {
        stage_kv(p, kcache, vcache, ks, vs, g, k0, tid);
        threadgroup_barrier(mem_flags::mem_threadgroup);
        float2 s = scores16(p, qkv, ks, g, k0);
        threadgroup_barrier(mem_flags::mem_threadgroup);
        ks[i * 4u + (j >> 2u)][j & 3u] = s.x;
        ks[i * 4u + 2u + (j >> 2u)][j & 3u] = s.y;
        threadgroup_barrier(mem_flags::mem_threadgroup);
        float4 r[4] = {ks[i * 4u], ks[i * 4u + 1u], ks[i * 4u + 2u], ks[i * 4u + 3u]};
        float4 mt = max(max(r[0], r[1]), max(r[2], r[3]));
        float m_new = max(m, max(max(mt.x, mt.y), max(mt.z, mt.w)));
        float corr = exp(m - m_new);
        l *= corr;
        for (uint u = 0u; u < 4u; u++) {
            o[u] *= corr;
        }
        for (uint k = 0u; k < 16u; k++) {
            float sk = r[k >> 2u][k & 3u];
            float e = sk > -3.0e38f ? exp(sk - m_new) : 0.0f;
            l += e;
            for (uint u = 0u; u < 4u; u++) {
                o[u] += e * vs[slot(k, j + 8u * u)];
            }
        }
        m = m_new;
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    for (uint u = 0u; u < 4u; u++) {
        if (g.live && j + 8u * u < p.head_dim / 4u) {
            store4(p, out, g.t, g.h, j + 8u * u, o[u] / l);
        }
    }
}
//#else
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
    Tile g = tile_of(p, chunk, tid, wid);
    uint h = g.h;
    uint j = g.j;
    uint t = g.t;
    bool live = g.live;
    uint pos = g.pos;
    uint hd = p.head_dim;
    uint hd4 = hd / 4u;
    uint qdim = p.n_heads * hd;

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
    for (uint k0 = 0u; k0 <= g.last; k0 += KEYS) {
        stage_kv(p, kcache, vcache, ks, vs, g, k0, tid);
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
            store4(p, out, t, h, c, sum / lq);
        }
    }
}
//#endif
//#endif
