// matvec_staged.metal — MSL twin of matvec_staged.wgsl: the `staged` family,
// x staged in threadgroup memory 64 blocks at a time, RPT rows per thread,
// weights fetched EARLY, EARLY2 or late (see matvec_staged.wgsl).
// Bindings as matvec_staged.wgsl, in the same order (wgpu gives buffer slots
// in binding order): 0 params, 1 w, 2 x, 3 y, 4 gain or step.

//#include matvec_common
//#include matvec_stage

// Reduces the lanes' shares of the thread's RPT rows (and of sum(x²)),
// applies the RMSNorm scale, and stores. Call in uniform control flow.
void finish_rows(MatvecArgs m, STAGED_PARAMS, threadgroup float4* red4, float4 acc, float sq,
    uint row, uint tid, uint sg_size) {
    float4 total = float4(0.0f);
    float sqs = 0.0f;
    if (RPT > 1u) {
        total = reduce_row4(acc, red4, tid, sg_size);
//#if NORM
        sqs = reduce_row(float2(0.0f, sq), red4, tid, sg_size).y;
//#endif
    } else {
        float2 r = reduce_row(float2(acc.x, sq), red4, tid, sg_size);
        total.x = r.x;
        sqs = r.y;
    }
//#if NORM
    total *= staged_norm_scale(m, STAGED, sqs, tid);
//#endif
    if ((tid & 31u) == 0u) {
        for (uint k = 0u; k < RPT; k++) {
            if (row + 8u * k < m.rows) {
                store_row(m, row + 8u * k, total[k]);
            }
        }
    }
}

[[max_total_threads_per_threadgroup(256)]]
kernel void compute_main(
    constant MatvecParams& p [[buffer(0)]],
    device const uint4* w [[buffer(1)]],
    device const float4* x [[buffer(2)]],
    device float* y [[buffer(3)]],
//#if NORM
    device const float4* gain [[buffer(4)]],
//#endif
//#if ATTN
    device const uint* step [[buffer(4)]],
//#endif
    uint tid [[thread_index_in_threadgroup]],
    uint3 wid [[threadgroup_position_in_grid]],
    uint3 nwg [[threadgroups_per_grid]]
//#if SUBGROUPS
    , uint sg_size [[threads_per_simdgroup]]
//#endif
) {
    threadgroup float4 red4[256];
//#if !SUBGROUPS
    uint sg_size = 1u;
//#endif
    MatvecArgs m = MATVEC_ARGS;
    uint group = wid.x + wid.y * nwg.x;
//#if INT8
    threadgroup uint4 xq[128];
//#if INT8X2
    threadgroup uint4 xq2[128];
//#else
    threadgroup uint4* xq2 = xq;
//#endif
    threadgroup float4 xam[64];
    threadgroup float4 xsum[64];
    threadgroup float xd[64];
//#else
    threadgroup float4 xs[512];
//#endif
    threadgroup float xsq[8];
    uint row = group * 8u * RPT + (tid >> 5u);
    uint lane = tid & 31u;
    // acc[k]: this lane's share of row row + 8k; sq: of sum(x²) (NORM).
    float4 acc = float4(0.0f);
    float sq = 0.0f;
//#if EARLY
    Raw raw[4]; // RPT ≤ 4 used (a literal bound: no variable-length arrays)
    for (uint k = 0u; k < RPT; k++) {
        if (row + 8u * k < p.rows && lane < p.blocks) {
            raw[k] = raw_load(m, row + 8u * k, lane);
        }
    }
//#endif
    for (uint c0 = 0u; c0 < p.blocks; c0 += 64u) {
        uint cn = min(64u, p.blocks - c0);
//#if EARLY2
        Raw r0;
        Raw r1;
        if (row < p.rows) {
            if (lane < cn) {
                r0 = raw_load(m, row, c0 + lane);
            }
            if (lane + 32u < cn) {
                r1 = raw_load(m, row, c0 + lane + 32u);
            }
        }
//#endif
        sq += stage_chunk(m, STAGED, c0, cn, tid);
//#if EARLY
        if (lane < cn) {
            XBlock xb = staged_block(STAGED, lane);
            for (uint k = 0u; k < RPT; k++) {
                if (row + 8u * k < p.rows) {
                    acc[k] += xblock_dot(m, raw[k], row + 8u * k, lane, xb);
                }
            }
        }
//#else
//#if EARLY2
        if (row < p.rows) {
            if (lane < cn) {
                acc.x += xblock_dot(m, r0, row, c0 + lane, staged_block(STAGED, lane));
            }
            if (lane + 32u < cn) {
                acc.x += xblock_dot(m, r1, row, c0 + lane + 32u, staged_block(STAGED, lane + 32u));
            }
        }
//#else
        // `late` (see matvec_staged.wgsl): with RPT 1 and int8 inputs two
        // blocks per step; with RPT > 1 every row's words of a block loaded
        // before any is used, the staged block read once for all.
        if (RPT == 1u) {
            if (row < p.rows) {
//#if INT8
                uint b = lane;
                for (; b + 32u < cn; b += 64u) {
                    Raw r0 = raw_load(m, row, c0 + b);
                    Raw r1 = raw_load(m, row, c0 + b + 32u);
                    acc.x += xblock_dot(m, r0, row, c0 + b, staged_block(STAGED, b))
                        + xblock_dot(m, r1, row, c0 + b + 32u, staged_block(STAGED, b + 32u));
                }
                if (b < cn) {
                    acc.x += xblock_dot(m, raw_load(m, row, c0 + b), row, c0 + b, staged_block(STAGED, b));
                }
//#else
                for (uint b = lane; b < cn; b += 32u) {
                    XBlock xb = staged_block(STAGED, b);
                    acc.x += block_dot(m, row, c0 + b, xb.v);
                }
//#endif
            }
        } else {
//#if RAW
            for (uint b = lane; b < cn; b += 32u) {
                Raw rr[4]; // RPT ≤ 4 used
                for (uint k = 0u; k < RPT; k++) {
                    if (row + 8u * k < p.rows) {
                        rr[k] = raw_load(m, row + 8u * k, c0 + b);
                    }
                }
                XBlock xb = staged_block(STAGED, b);
                for (uint k = 0u; k < RPT; k++) {
                    if (row + 8u * k < p.rows) {
                        acc[k] += xblock_dot(m, rr[k], row + 8u * k, c0 + b, xb);
                    }
                }
            }
//#endif
        }
//#endif
//#endif
    }
    finish_rows(m, STAGED, red4, acc, sq, row, tid, sg_size);
}
