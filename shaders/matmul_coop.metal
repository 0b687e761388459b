// matmul_coop.metal — MSL twin of matmul_coop.wgsl on simdgroup matrices
// (Apple7 and later): the same grid, staging, partials and bindings (0
// params, 1 w, 2 x16, 3 part, 4 chunk), with Metal's 8×8 fragments: SIMD
// group sid holds 4 × 8 accumulators for rows 32·(sid mod 4).. and tokens
// 64·(sid / 4).., and writes each 16×16 quarter through its slice of cs,
// straight into the partials for a tile wholly inside the rows and chunk.

//#include matmul_decode

constant uint LDA = 72u;
constant float F16_MAX = 65504.0f;

// Vec4s j and j + 4 of block b of `row` (zero past the rows or the segment)
// into wa at row `r`, block slot `slot` (see matmul_coop.wgsl).
void stage(constant MatmulParams& p, MatmulArgs m, threadgroup half* wa, uint row, uint b, uint b1,
           uint j, uint r, uint slot) {
    float4 v0 = float4(0.0f);
    float4 v1 = float4(0.0f);
    if (row < p.rows && b < b1) {
//#if BLOCK_VEC4
        block_vec4_pair(m, row, b, j, v0, v1);
//#else
        MatmulRaw raw = load_raw(m, row, b, j);
        v0 = decode4(m, row, b, j, raw);
        v1 = decode4(m, row, b, j + 4u, raw);
//#endif
    }
    half4 h0 = half4(clamp(v0, float4(-F16_MAX), float4(F16_MAX)));
    half4 h1 = half4(clamp(v1, float4(-F16_MAX), float4(F16_MAX)));
    uint i = r * LDA + slot * 32u + 4u * j;
    for (uint e = 0u; e < 4u; e++) {
        wa[i + e] = h0[e];
        wa[i + 16u + e] = h1[e];
    }
}

[[max_total_threads_per_threadgroup(256)]]
kernel void compute_main(
    constant MatmulParams& p [[buffer(0)]],
    device const uint4* w [[buffer(1)]],
    device const half* xh [[buffer(2)]],
    device float* part [[buffer(3)]],
    device const uint* chunk [[buffer(4)]],
    uint tid [[thread_index_in_threadgroup]],
    uint3 wid [[threadgroup_position_in_grid]],
    uint sid [[simdgroup_index_in_threadgroup]],
    uint lane [[thread_index_in_simdgroup]]
) {
    threadgroup half wa[9216];
    threadgroup float cs[2048];
    MatmulArgs m;
    m.w = w;
    m.blocks = p.blocks;

    uint n = chunk[1];
    uint row0 = wid.x * 128u;
    uint seg = wid.y;
    uint t0 = wid.z * 128u;
    uint b0 = seg * p.seg_blocks;
    uint b1 = min(b0 + p.seg_blocks, p.blocks);
    uint r = tid & 63u;
    uint j = tid >> 6u;
    uint arow = (sid & 3u) * 32u * LDA;
    uint ld = p.cols;
    uint xt = (t0 + (sid >> 2u) * 64u) * ld;

    // acc[8·rf + tf]: rows 8·rf.., tokens 8·tf.. of the SIMD group's 32 × 64.
    simdgroup_float8x8 acc[32];
    for (uint i = 0u; i < 32u; i++) {
        acc[i] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);
    }
    for (uint b = b0; b < b1; b += 2u) {
        stage(p, m, wa, row0 + r, b, b1, j, r, 0u);
        stage(p, m, wa, row0 + r + 64u, b, b1, j, r + 64u, 0u);
        stage(p, m, wa, row0 + r, b + 1u, b1, j, r, 1u);
        stage(p, m, wa, row0 + r + 64u, b + 1u, b1, j, r + 64u, 1u);
        threadgroup_barrier(mem_flags::mem_threadgroup);
        for (uint kk = 0u; kk < 64u; kk += 8u) {
            simdgroup_half8x8 a[4];
            for (uint rf = 0u; rf < 4u; rf++) {
                simdgroup_load(a[rf], wa + arow + rf * 8u * LDA + kk, LDA);
            }
            for (uint tf = 0u; tf < 8u; tf++) {
                // X16 is token-major: B (k × token) loads transposed.
                simdgroup_half8x8 x;
                simdgroup_load(x, xh + xt + tf * 8u * ld + b * 32u + kk, ld, ulong2(0, 0), true);
                for (uint rf = 0u; rf < 4u; rf++) {
                    simdgroup_multiply_accumulate(acc[8u * rf + tf], a[rf], x, acc[8u * rf + tf]);
                }
            }
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }

    uint pbase = seg * p.part_tokens;
    uint crow = row0 + (sid & 3u) * 32u;
    uint ct = t0 + (sid >> 2u) * 64u;
    bool whole = row0 + 128u <= p.rows && t0 + 128u <= n;
    // The 16×16 quarters (rows 16·qr.., tokens 16·qt..), as in the WGSL twin.
    for (uint qr = 0u; qr < 2u; qr++) {
        for (uint qt = 0u; qt < 4u; qt++) {
            if (whole) {
                // Column-major: (row, t) at (pbase + t)·rows + row.
                device float* o = part + (pbase + ct + 16u * qt) * p.rows + crow + 16u * qr;
                for (uint f = 0u; f < 4u; f++) {
                    uint rf = 2u * qr + (f & 1u);
                    uint tf = 2u * qt + (f >> 1u);
                    simdgroup_store(acc[8u * rf + tf], o + (f >> 1u) * 8u * p.rows + (f & 1u) * 8u,
                                    p.rows, ulong2(0, 0), true);
                }
                continue;
            }
            for (uint f = 0u; f < 4u; f++) {
                uint rf = 2u * qr + (f & 1u);
                uint tf = 2u * qt + (f >> 1u);
                simdgroup_store(acc[8u * rf + tf], cs + sid * 256u + (f >> 1u) * 128u + (f & 1u) * 8u,
                                16u, ulong2(0, 0), true);
            }
            threadgroup_barrier(mem_flags::mem_threadgroup);
            for (uint e = lane; e < 256u; e += 32u) {
                uint row = crow + 16u * qr + (e & 15u);
                uint t = ct + 16u * qt + (e >> 4u);
                if (row < p.rows && t < n) {
                    part[(pbase + t) * p.rows + row] = cs[sid * 256u + e];
                }
            }
            threadgroup_barrier(mem_flags::mem_threadgroup);
        }
    }
}
