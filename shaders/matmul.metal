// matmul.metal — MSL twin of matmul.wgsl: batched matrix products for prompt
// processing, split over K: P[s, t, row] = W[row, K_s] · input(X[t, K_s]),
// summed by matmul_reduce.metal. W in its GGUF layout, read with aligned
// uint4 loads; the format is chosen by one flag: Q4_0, Q4_1, Q5_0, Q5_1,
// Q8_0, Q4_K, Q5_K, Q6_K, F16, else F32.
//
// Threadgroup (x: 64-row tile, y: K segment, z: 64-token tile), 256 threads
// each computing 4 rows × 4 tokens; K advances one block per step, staged in
// threadgroup memory by all threads (vec4s j and j+4 of a row's block per
// thread; two input vec4s of a token per thread, with the gain or SwiGLU
// product applied once), weights loaded two steps ahead and inputs one (see
// matmul.wgsl for the layouts of the tiles and the partials).
//
// Variants: NORM: rmsnorm(X[t]) ⊙ gain (the per-token scale applied by
// matmul_reduce); SWIGLU: X[t] holds gate then up and the input is
// silu(gate) ⊙ up. Bindings: the same as matmul.wgsl, in the same order:
// 0 params, 1 w, 2 x, 3 part, 4 chunk, 5 gain.
//
// COOP: the products on simdgroup matrices (Apple7 and later), the layout
// of matmul.wgsl's COOP tiles with Metal's 8×8 fragments: SIMD group sid
// holds 2 × 4 accumulators for rows 16·(sid mod 4).. and tokens 32·(sid / 4)..
//
// DIRECT (one K segment, no NORM): the products go straight to Y, bound as
// part, and no reduce pass runs (matmul.wgsl).
//
// HALF_X: X holds f16 inputs from quantize_rows.metal (HALF), stager j's 8
// halves of a block in one uint4 (layout: matmul.wgsl); no NORM or SWIGLU.

// What the helpers need (MSL has no module-scope buffers).
struct MatmulArgs {
    device const uint4* w;
    uint blocks;
};

// What load_x reads: the inputs, (SWIGLU) the offset of up, (NORM) the gain.
struct MatmulXArgs {
//#if HALF_X
    device const uint4* x;
//#else
    device const float4* x;
//#endif
    uint cols;
//#if NORM
    device const float4* gain;
//#endif
};

// The aligned words of one block's vec4 (see matmul.wgsl; WGSL's
// array<vec4<u32>, 3>, named apart from the Raw of the block files).
struct MatmulRaw {
    uint4 r[3];
};

//#include words

// Q5_0, Q5_1 and the K-quants dequantize through their block file's
// block_vec4_pair (flag BLOCK_VEC4), loading as they decode. The block files'
// helpers take the matvec kernels' MatvecArgs and read only its w and
// blocks, which MatmulArgs holds: here they take MatmulArgs.
typedef MatmulArgs MatvecArgs;
//#if Q5_0
//#include block_q5_0
//#endif
//#if Q5_1
//#include block_q5_1
//#endif
//#if Q4_K
//#include block_q4_k
//#endif
//#if Q5_K
//#include block_q5_k
//#endif
//#if Q6_K
//#include block_q6_k
//#endif

// The product of (token t, row) into the partials of the segment at pbase,
// or (DIRECT) into Y.
void put(constant MatmulParams& p, device float* part, uint pbase, uint t, uint row, float v) {
//#if DIRECT
    uint yi = t * p.y_stride + p.y_offset + row;
    part[yi] = p.accumulate != 0u ? v + part[yi] : v;
//#else
    part[(pbase + t) * p.rows + row] = v;
//#endif
}

// Four 4-bit fields of q starting at bit `sh` of each byte, as floats.
float4 nib4(uint q, uint sh) {
    return float4((uint4(q, q >> 8u, q >> 16u, q >> 24u) >> uint4(sh)) & uint4(15u));
}

// Four signed bytes of q as floats.
float4 i8x4(uint q) {
    return float4(int4(as_type<int>(q << 24u), as_type<int>(q << 16u), as_type<int>(q << 8u), as_type<int>(q)) >> int4(24));
}

// The aligned words decode4 needs for vec4s j and j + 4 (j < 4) of block b
// of `row` (see matmul.wgsl); none with BLOCK_VEC4.
MatmulRaw load_raw(MatmulArgs m, uint row, uint b, uint j) {
    MatmulRaw r;
    r.r[0] = uint4(0u);
    r.r[1] = uint4(0u);
    r.r[2] = uint4(0u);
//#if !BLOCK_VEC4
//#if Q4_0
    uint o = ((row * m.blocks + b) * 18u) >> 4u;
    r.r[0] = m.w[o];
    r.r[1] = m.w[o + 1u];
//#else
//#if Q4_1
    uint o = ((row * m.blocks + b) * 20u) >> 4u;
    r.r[0] = m.w[o];
    r.r[1] = m.w[o + 1u];
//#else
//#if Q8_0
    uint o = ((row * m.blocks + b) * 34u) >> 4u;
    r.r[0] = m.w[o];
    r.r[1] = m.w[o + 1u];
    r.r[2] = m.w[o + 2u];
//#else
//#if F16
    r.r[0] = m.w[(row * m.blocks + b) * 4u + (j >> 1u)];
    r.r[1] = m.w[(row * m.blocks + b) * 4u + 2u + (j >> 1u)];
//#else
    r.r[0] = m.w[(row * m.blocks + b) * 8u + j];
    r.r[1] = m.w[(row * m.blocks + b) * 8u + 4u + j];
//#endif
//#endif
//#endif
//#endif
//#endif
    return r;
}

// Elements 4j..4j+3 of block b of `row`, dequantized from its raw words
// (BLOCK_VEC4 formats stage through block_vec4_pair instead).
//#if !BLOCK_VEC4
float4 decode4(MatmulArgs m, uint row, uint b, uint j, MatmulRaw raw) {
//#if Q4_0
    Q4Block k = unpack_q4_0(raw.r[0], raw.r[1], (row * m.blocks + b) * 18u);
    return k.d * (nib4(pick(k.q, j & 3u), j >= 4u ? 4u : 0u) - float4(8.0f));
//#else
//#if Q4_1
    Q4Block k = unpack_q4_1(raw.r[0], raw.r[1], (row * m.blocks + b) * 20u);
    return k.d * nib4(pick(k.q, j & 3u), j >= 4u ? 4u : 0u) + float4(k.m);
//#else
//#if Q8_0
    Q8Block k = unpack_q8_0(raw.r[0], raw.r[1], raw.r[2], (row * m.blocks + b) * 34u);
    return k.d * i8x4(j < 4u ? pick(k.q0, j & 3u) : pick(k.q1, j & 3u));
//#else
//#if F16
    uint4 q = j >= 4u ? raw.r[1] : raw.r[0];
    return (j & 1u) == 0u ? float4(float2(as_type<half2>(q.x)), float2(as_type<half2>(q.y)))
                          : float4(float2(as_type<half2>(q.z)), float2(as_type<half2>(q.w)));
//#else
    return as_type<float4>(j >= 4u ? raw.r[1] : raw.r[0]);
//#endif
//#endif
//#endif
//#endif
}
//#endif

// The staged input from raw loads a (and b: the gain with NORM, up with SWIGLU).
float4 combine(float4 a, float4 b) {
//#if NORM
    return a * b;
//#else
//#if SWIGLU
    return a / (float4(1.0f) + exp(-a)) * b;
//#else
    return a;
//#endif
//#endif
}

//#if COOP
// The COOP tiles' layout (matmul.wgsl): W rows at th[r·TS], X tokens at
// th[X_TILE + t·TS], each SIMD group's 16×16 results at cs[sid·256..].
constant uint TS = 40u;
constant uint X_TILE = 2560u;
constant uint TH_HALVES = 5120u;
constant float F16_MAX = 65504.0f;

// Elements k..k+3 (a) and k+16..k+19 (b) of a staged row, from th[i] on,
// as half clamped to ±F16_MAX.
void stage_h(threadgroup half* th, uint i, float4 a, float4 b) {
    half4 ha = half4(clamp(a, float4(-F16_MAX), float4(F16_MAX)));
    half4 hb = half4(clamp(b, float4(-F16_MAX), float4(F16_MAX)));
    for (uint e = 0u; e < 4u; e++) {
        th[i + e] = ha[e];
        th[i + 16u + e] = hb[e];
    }
}

// A SIMD group's 16×16 result at cs[at..] (column-major: rows crow..,
// tokens ct..) into the partials, 8 values per lane, within the rows and
// the chunk.
void write_fragment(constant MatmulParams& p, device float* part, threadgroup const float* cs,
                    uint at, uint lane, uint crow, uint ct, uint pbase, uint n) {
    for (uint e = lane; e < 256u; e += 32u) {
        uint row = crow + (e & 15u);
        uint t = ct + (e >> 4u);
        if (row < p.rows && t < n) {
            put(p, part, pbase, t, row, cs[at + e]);
        }
    }
}
//#endif

//#if HALF_X
// A stager's 8 halves of a block (HALF_X; matmul.wgsl).
struct MatmulX {
    uint4 h;
};

MatmulX load_x(thread const MatmulXArgs& a, uint xbase, uint j, uint b) {
    MatmulX r;
    r.h = a.x[xbase + b * 4u];
    return r;
}

MatmulX no_x() {
    MatmulX r;
    r.h = uint4(0u);
    return r;
}

//#if COOP
// Stager j's halves as elements 4j.. and 16+4j.. of row r of the X tile.
void stage_x(threadgroup half* th, uint r, uint j, MatmulX xr) {
    uint i = X_TILE + r * TS + 4u * j;
    for (uint e = 0u; e < 2u; e++) {
        half2 lo = as_type<half2>(xr.h[e]);
        half2 hi = as_type<half2>(xr.h[2u + e]);
        th[i + 2u * e] = lo.x;
        th[i + 2u * e + 1u] = lo.y;
        th[i + 16u + 2u * e] = hi.x;
        th[i + 16u + 2u * e + 1u] = hi.y;
    }
}
//#endif
//#else
// The raw input loads of a K step (see load_x in matmul.wgsl): vec4s j and
// j + 4 of the token row, then the gain's (NORM) or up's (SWIGLU).
struct MatmulX {
    float4 v[4];
};

MatmulX load_x(thread const MatmulXArgs& a, uint xbase, uint j, uint b) {
    MatmulX r;
    uint e = xbase + b * 8u;
    r.v[0] = a.x[e];
    r.v[1] = a.x[e + 4u];
    r.v[2] = float4(0.0f);
    r.v[3] = float4(0.0f);
//#if NORM
    r.v[2] = a.gain[b * 8u + j];
    r.v[3] = a.gain[b * 8u + j + 4u];
//#endif
//#if SWIGLU
    r.v[2] = a.x[e + a.cols / 4u];
    r.v[3] = a.x[e + a.cols / 4u + 4u];
//#endif
    return r;
}

MatmulX no_x() {
    MatmulX r;
    for (uint i = 0u; i < 4u; i++) {
        r.v[i] = float4(0.0f);
    }
    return r;
}
//#endif

//#if COOP
// The K step's products of SIMD group sid: rows 16·(sid mod 4).. × tokens
// 32·(sid / 4).. into acc[4·rf + tf] (rows 8·rf.., tokens 8·tf..).
void coop_products(thread simdgroup_float8x8* acc, threadgroup half* th, uint sid) {
    for (uint kk = 0u; kk < 32u; kk += 8u) {
        simdgroup_half8x8 a[2];
        simdgroup_half8x8 bx[4];
        for (uint rf = 0u; rf < 2u; rf++) {
            simdgroup_load(a[rf], th + ((sid & 3u) * 16u + 8u * rf) * TS + kk, TS);
        }
        for (uint tf = 0u; tf < 4u; tf++) {
            // X is stored token-major: B (k × token) loads transposed.
            simdgroup_load(bx[tf], th + X_TILE + ((sid >> 2u) * 32u + 8u * tf) * TS + kk, TS,
                           ulong2(0, 0), true);
        }
        for (uint i = 0u; i < 8u; i++) {
            simdgroup_multiply_accumulate(acc[i], a[i >> 2u], bx[i & 3u], acc[i]);
        }
    }
}

// Subgroup sid's 2 × 4 accumulators through its slice of cs into the
// partials: tokens 0..16 of its results, then 16..32 (every thread calls
// it: it holds barriers).
void write_coop(constant MatmulParams& p, device float* part, threadgroup float* cs,
                thread simdgroup_float8x8* acc, uint sid, uint lane, uint crow, uint ct, uint pbase,
                uint n) {
    for (uint half_t = 0u; half_t < 2u; half_t++) {
        for (uint rf = 0u; rf < 2u; rf++) {
            for (uint tf = 0u; tf < 2u; tf++) {
                simdgroup_store(acc[4u * rf + 2u * half_t + tf], cs + sid * 256u + tf * 128u + rf * 8u,
                                16u, ulong2(0, 0), true);
            }
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
        write_fragment(p, part, cs, sid * 256u, lane, crow, ct + 16u * half_t, pbase, n);
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
}

// The 4 stagers of each token (threads 4t..4t+3) add their squares `ss`
// through cs; only the first row tile (`first`) writes them after the partials.
void write_squares(constant MatmulParams& p, device float* part, threadgroup float* cs, float ss,
                   uint tid, bool first, uint t0, uint pbase, uint n) {
    cs[tid] = ss;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid < 64u && t0 + tid < n && first) {
        float sq = (cs[4u * tid] + cs[4u * tid + 1u]) + (cs[4u * tid + 2u] + cs[4u * tid + 3u]);
        part[p.n_seg * p.part_tokens * p.rows + pbase + t0 + tid] = sq;
    }
}
//#else
// The f32 tiles (matmul.wgsl): W's, then X's from tiles[X_TILE].
constant uint X_TILE = 512u;

// Elements 4j..4j+3 (a) and 16+4j.. (b) of row r of a staged tile (W's or
// X's: t[k·16 + r/4][r mod 4]).
void stage_f32(threadgroup float4* t, uint r, uint j, float4 a, float4 b) {
    uint q = (4u * j) * 16u + (r >> 2u);
    uint h = r & 3u;
    for (uint e = 0u; e < 4u; e++) {
        t[q + 16u * e][h] = a[e];
        t[q + 256u + 16u * e][h] = b[e];
    }
}

// The K step's products of a thread's 4 rows (4·tr..) × 4 tokens (4·tc..).
void fma_products(thread float4* acc, threadgroup const float4* tiles, uint tr, uint tc) {
    for (uint k = 0u; k < 32u; k++) {
        float4 wk = tiles[k * 16u + tr];
        float4 xk = tiles[X_TILE + k * 16u + tc];
        acc[0] += wk.x * xk;
        acc[1] += wk.y * xk;
        acc[2] += wk.z * xk;
        acc[3] += wk.w * xk;
    }
}

// A thread's 4 rows × 4 tokens of products into the partials.
void write_tile(constant MatmulParams& p, device float* part, thread const float4* acc, uint row0,
                uint t0, uint tr, uint tc, uint pbase, uint n) {
    for (uint i = 0u; i < 4u; i++) {
        uint row = row0 + 4u * tr + i;
        for (uint j = 0u; j < 4u; j++) {
            uint t = t0 + 4u * tc + j;
            if (row < p.rows && t < n) {
                put(p, part, pbase, t, row, acc[i][j]);
            }
        }
    }
}

// The 4 stagers of each token (threads 4t..4t+3) add their squares `ss`
// through the tiles; only the first row tile (`first`) writes them after the partials.
void write_squares(constant MatmulParams& p, device float* part, threadgroup float4* tiles, float ss,
                   uint tid, bool first, uint t0, uint pbase, uint n) {
    tiles[tid] = float4(ss, 0.0f, 0.0f, 0.0f);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid < 64u && t0 + tid < n && first) {
        float sq = (tiles[4u * tid].x + tiles[4u * tid + 1u].x) + (tiles[4u * tid + 2u].x + tiles[4u * tid + 3u].x);
        part[p.n_seg * p.part_tokens * p.rows + pbase + t0 + tid] = sq;
    }
}
//#endif

// Stages block b of row `wrow` (from its raw words; BLOCK_VEC4 formats load
// as they decode) at row wr, and the stager's inputs xr at row tt
// (matmul.wgsl's stage_block). Returns xr's sum of squares (NORM; else 0).
float stage_block(thread const MatmulArgs& m,
//#if COOP
                  threadgroup half* th,
//#else
                  threadgroup float4* tiles,
//#endif
                  uint wrow, uint rows, uint b, uint wr, uint wj, thread const MatmulRaw& raw, uint tt, uint xj,
                  thread const MatmulX& xr) {
    float4 wv0 = float4(0.0f);
    float4 wv1 = float4(0.0f);
    if (wrow < rows) {
//#if BLOCK_VEC4
        block_vec4_pair(m, wrow, b, wj, wv0, wv1);
//#else
        wv0 = decode4(m, wrow, b, wj, raw);
        wv1 = decode4(m, wrow, b, wj + 4u, raw);
//#endif
    }
//#if COOP
    stage_h(th, wr * TS + 4u * wj, wv0, wv1);
//#if HALF_X
    stage_x(th, tt, xj, xr);
//#else
    stage_h(th, X_TILE + tt * TS + 4u * xj, combine(xr.v[0], xr.v[2]), combine(xr.v[1], xr.v[3]));
//#endif
//#else
    stage_f32(tiles, wr, wj, wv0, wv1);
//#if HALF_X
    float4 v0 = float4(float2(as_type<half2>(xr.h.x)), float2(as_type<half2>(xr.h.y)));
    float4 v1 = float4(float2(as_type<half2>(xr.h.z)), float2(as_type<half2>(xr.h.w)));
//#else
    float4 v0 = combine(xr.v[0], xr.v[2]);
    float4 v1 = combine(xr.v[1], xr.v[3]);
//#endif
    stage_f32(tiles + X_TILE, tt, xj, v0, v1);
//#endif
//#if NORM
    return dot(xr.v[0], xr.v[0]) + dot(xr.v[1], xr.v[1]);
//#else
    return 0.0f;
//#endif
}

[[max_total_threads_per_threadgroup(256)]]
kernel void compute_main(
    constant MatmulParams& p [[buffer(0)]],
    device const uint4* w [[buffer(1)]],
//#if HALF_X
    device const uint4* x [[buffer(2)]],
//#else
    device const float4* x [[buffer(2)]],
//#endif
    device float* part [[buffer(3)]],
    device const uint* chunk [[buffer(4)]],
//#if NORM
    device const float4* gain [[buffer(5)]],
//#endif
    uint tid [[thread_index_in_threadgroup]],
    uint3 wid [[threadgroup_position_in_grid]]
//#if COOP
    , uint sid [[simdgroup_index_in_threadgroup]],
    uint lane [[thread_index_in_simdgroup]]
//#endif
) {
//#if COOP
    threadgroup half th[TH_HALVES];
    threadgroup float cs[2048];
//#else
    threadgroup float4 tiles[1024];
//#endif
    MatmulArgs m;
    m.w = w;
    m.blocks = p.blocks;

    uint n = chunk[1];
    uint row0 = wid.x * 64u;
    uint seg = wid.y;
    uint t0 = wid.z * 64u;
    uint b0 = seg * p.seg_blocks;
    uint b1 = min(b0 + p.seg_blocks, p.blocks);
    uint tr = tid & 15u;
    uint tc = tid >> 4u;
    // Staging roles: 4 neighbouring threads per row (token); matmul.wgsl.
    uint wr = tid >> 2u;
    uint wrow = row0 + wr;
    uint wj = tid & 3u;
    uint tt = tid >> 2u;
    uint xj = tid & 3u;
    bool xok = t0 + tt < n;
//#if HALF_X
    uint xbase = (t0 + tt) * (p.blocks * 4u) + xj;
//#else
    uint xbase = (t0 + tt) * p.x_stride + xj;
//#endif

    MatmulXArgs xa;
    xa.x = x;
    xa.cols = p.cols;
//#if NORM
    xa.gain = gain;
//#endif
    MatmulRaw wraw;
    MatmulRaw wnext;
    for (uint i = 0u; i < 3u; i++) {
        wraw.r[i] = uint4(0u);
        wnext.r[i] = uint4(0u);
    }
    MatmulX xr = no_x();
    if (wrow < p.rows) {
        wraw = load_raw(m, wrow, b0, wj);
        if (b0 + 1u < b1) {
            wnext = load_raw(m, wrow, b0 + 1u, wj);
        }
    }
    if (xok) {
        xr = load_x(xa, xbase, xj, b0);
    }

    float ss = 0.0f;
//#if COOP
    // acc[4·rf + tf]: rows 8·rf.., tokens 8·tf.. of the SIMD group's 16 × 32.
    simdgroup_float8x8 acc[8];
    for (uint i = 0u; i < 8u; i++) {
        acc[i] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);
    }
//#else
    float4 acc[4];
    for (uint i = 0u; i < 4u; i++) {
        acc[i] = float4(0.0f);
    }
//#endif
    for (uint b = b0; b < b1; b++) {
//#if COOP
        ss += stage_block(m, th, wrow, p.rows, b, wr, wj, wraw, tt, xj, xr);
//#else
        ss += stage_block(m, tiles, wrow, p.rows, b, wr, wj, wraw, tt, xj, xr);
//#endif
        threadgroup_barrier(mem_flags::mem_threadgroup);
        // Loads in flight during the products: weights for block b + 2 and
        // inputs for b + 1.
        wraw = wnext;
        if (wrow < p.rows && b + 2u < b1) {
            wnext = load_raw(m, wrow, b + 2u, wj);
        }
        if (xok && b + 1u < b1) {
            xr = load_x(xa, xbase, xj, b + 1u);
        }
//#if COOP
        coop_products(acc, th, sid);
//#else
        // Threads whose 4 tokens are all past the chunk skip the products.
        if (t0 + 4u * tc < n) {
            fma_products(acc, tiles, tr, tc);
        }
//#endif
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }

    uint pbase = seg * p.part_tokens;
//#if COOP
    write_coop(p, part, cs, acc, sid, lane, row0 + 16u * (sid & 3u), t0 + 32u * (sid >> 2u), pbase, n);
//#if NORM
    write_squares(p, part, cs, ss, tid, wid.x == 0u, t0, pbase, n);
//#endif
//#else
    write_tile(p, part, acc, row0, t0, tr, tc, pbase, n);
//#if NORM
    write_squares(p, part, tiles, ss, tid, wid.x == 0u, t0, pbase, n);
//#endif
//#endif
}
