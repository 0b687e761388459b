// matvec_lanes.metal — MSL twin of matvec_lanes.wgsl: the `lanes` family,
// 8 rows × 32 lanes, x read from memory by every row. Bindings as
// matvec_lanes.wgsl, in the same order.

//#include matvec_common

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
    uint row = group * 8u + (tid >> 5u);
    uint lane = tid & 31u;
    // v.x: this lane's share of the row's dot product; v.y (NORM): its share
    // of sum(x²).
    float2 v = float2(0.0f);
    if (row < p.rows) {
        for (uint b = lane; b < p.blocks; b += 32u) {
            float4 xv[8];
            for (uint j = 0u; j < 8u; j++) {
                xv[j] = xg(m, b * 8u + j);
            }
            v.x += block_dot(m, row, b, xv);
        }
    }
//#if NORM
    // Every row recomputes sum(x²) from L1-resident x: no extra barrier.
    for (uint i = lane; i < p.cols / 4u; i += 32u) {
        float4 t = x[p.x_offset + i];
        v.y += dot(t, t);
    }
//#endif
    float2 r = reduce_row(v, red4, tid, sg_size);
    float total = r.x;
//#if NORM
    // rmsnorm(x) = x / sqrt(mean(x²) + eps): a scalar, applied after the dot.
    total *= rsqrt(r.y / float(p.cols) + p.eps);
//#endif
    if (lane == 0u && row < p.rows) {
        store_row(m, row, total);
    }
}
