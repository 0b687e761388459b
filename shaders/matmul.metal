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

//#include matmul_decode

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

[[max_total_threads_per_threadgroup(256)]]
kernel void compute_main(
    constant MatmulParams& p [[buffer(0)]],
    device const uint4* w [[buffer(1)]],
    device const float4* x [[buffer(2)]],
    device float* part [[buffer(3)]],
    device const uint* chunk [[buffer(4)]],
//#if NORM
    device const float4* gain [[buffer(5)]],
//#endif
    uint tid [[thread_index_in_threadgroup]],
    uint3 wid [[threadgroup_position_in_grid]]
) {
    threadgroup float4 ws[512];
    threadgroup float4 xs[512];
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
    uint wrow = row0 + (tid & 63u);
    uint wj = tid >> 6u;
    uint tt = tid & 63u;
    uint xj = tid >> 6u;
    bool xok = t0 + tt < n;
    uint xbase = (t0 + tt) * p.x_stride + xj;

    MatmulRaw wraw;
    MatmulRaw wnext;
    for (uint i = 0u; i < 3u; i++) {
        wraw.r[i] = uint4(0u);
        wnext.r[i] = uint4(0u);
    }
    float4 xa0 = float4(0.0f);
    float4 xa1 = float4(0.0f);
    float4 xb0 = float4(0.0f);
    float4 xb1 = float4(0.0f);
    if (wrow < p.rows) {
        wraw = load_raw(m, wrow, b0, wj);
        if (b0 + 1u < b1) {
            wnext = load_raw(m, wrow, b0 + 1u, wj);
        }
    }
    if (xok) {
        xa0 = x[xbase + b0 * 8u];
        xa1 = x[xbase + b0 * 8u + 4u];
//#if NORM
        xb0 = gain[b0 * 8u + xj];
        xb1 = gain[b0 * 8u + xj + 4u];
//#endif
//#if SWIGLU
        xb0 = x[xbase + p.cols / 4u + b0 * 8u];
        xb1 = x[xbase + p.cols / 4u + b0 * 8u + 4u];
//#endif
    }

    float ss = 0.0f;
    float4 acc0 = float4(0.0f);
    float4 acc1 = float4(0.0f);
    float4 acc2 = float4(0.0f);
    float4 acc3 = float4(0.0f);
    for (uint b = b0; b < b1; b++) {
        float4 wv0 = float4(0.0f);
        float4 wv1 = float4(0.0f);
        if (wrow < p.rows) {
//#if BLOCK_VEC4
            block_vec4_pair(m, wrow, b, wj, wv0, wv1);
//#else
            wv0 = decode4(m, wrow, b, wj, wraw);
            wv1 = decode4(m, wrow, b, wj + 4u, wraw);
//#endif
        }
        uint qw = (4u * wj) * 16u + ((tid & 63u) >> 2u);
        uint hw = tid & 3u;
        ws[qw][hw] = wv0.x;
        ws[qw + 16u][hw] = wv0.y;
        ws[qw + 32u][hw] = wv0.z;
        ws[qw + 48u][hw] = wv0.w;
        ws[qw + 256u][hw] = wv1.x;
        ws[qw + 272u][hw] = wv1.y;
        ws[qw + 288u][hw] = wv1.z;
        ws[qw + 304u][hw] = wv1.w;
//#if NORM
        ss += dot(xa0, xa0) + dot(xa1, xa1);
//#endif
        float4 v0 = combine(xa0, xb0);
        float4 v1 = combine(xa1, xb1);
        uint qx = (4u * xj) * 16u + (tt >> 2u);
        uint hx = tt & 3u;
        xs[qx][hx] = v0.x;
        xs[qx + 16u][hx] = v0.y;
        xs[qx + 32u][hx] = v0.z;
        xs[qx + 48u][hx] = v0.w;
        xs[qx + 256u][hx] = v1.x;
        xs[qx + 272u][hx] = v1.y;
        xs[qx + 288u][hx] = v1.z;
        xs[qx + 304u][hx] = v1.w;
        threadgroup_barrier(mem_flags::mem_threadgroup);
        // Loads for block b + 2 (weights) and b + 1 (inputs).
        wraw = wnext;
        if (wrow < p.rows && b + 2u < b1) {
            wnext = load_raw(m, wrow, b + 2u, wj);
        }
        if (xok && b + 1u < b1) {
            uint e = xbase + (b + 1u) * 8u;
            xa0 = x[e];
            xa1 = x[e + 4u];
//#if NORM
            xb0 = gain[(b + 1u) * 8u + xj];
            xb1 = gain[(b + 1u) * 8u + xj + 4u];
//#endif
//#if SWIGLU
            xb0 = x[e + p.cols / 4u];
            xb1 = x[e + p.cols / 4u + 4u];
//#endif
        }
        // Threads whose 4 tokens are all past the chunk skip the products.
        if (t0 + 4u * tc < n) {
            for (uint k = 0u; k < 32u; k++) {
                float4 wk = ws[k * 16u + tr];
                float4 xk = xs[k * 16u + tc];
                acc0 += wk.x * xk;
                acc1 += wk.y * xk;
                acc2 += wk.z * xk;
                acc3 += wk.w * xk;
            }
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }

    uint pbase = seg * p.part_tokens;
    for (uint i = 0u; i < 4u; i++) {
        uint row = row0 + 4u * tr + i;
        float4 a = i == 0u ? acc0 : i == 1u ? acc1 : i == 2u ? acc2 : acc3;
        for (uint j = 0u; j < 4u; j++) {
            uint t = t0 + 4u * tc + j;
            if (row < p.rows && t < n) {
                part[(pbase + t) * p.rows + row] = a[j];
            }
        }
    }
//#if NORM
    xs[tid] = float4(ss, 0.0f, 0.0f, 0.0f);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid < 64u && t0 + tid < n && wid.x == 0u) {
        float sq = (xs[tid].x + xs[tid + 64u].x) + (xs[tid + 128u].x + xs[tid + 192u].x);
        part[p.n_seg * p.part_tokens * p.rows + pbase + t0 + tid] = sq;
    }
//#endif
}
