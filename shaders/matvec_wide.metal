// matvec_wide.metal — MSL twin of matvec_wide.wgsl: the `wide` family, 2
// halves × 128 lanes, each block of x read from memory once for 4 rows. Not
// with NORM. Bindings as matvec_wide.wgsl, in the same order.

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
    uint row0 = group * 8u + (tid >> 7u) * 4u;
    float4 v4 = float4(0.0f);
    for (uint b = tid & 127u; b < p.blocks; b += 128u) {
        float4 xv[8];
        for (uint j = 0u; j < 8u; j++) {
            xv[j] = xg(m, b * 8u + j);
        }
        for (uint k = 0u; k < 4u; k++) {
            if (row0 + k < p.rows) {
                v4[k] += block_dot(m, row0 + k, b, xv);
            }
        }
    }
    float4 r4 = reduce_half(v4, red4, tid, sg_size);
    if ((tid & 127u) == 0u) {
        for (uint k = 0u; k < 4u; k++) {
            if (row0 + k < p.rows) {
                store_row(m, row0 + k, r4[k]);
            }
        }
    }
}
