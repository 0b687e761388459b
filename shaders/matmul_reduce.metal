// matmul_reduce.metal — MSL twin of matmul_reduce.wgsl: sums the K segments'
// partial products of matmul.metal into Y (with the RMSNorm scale under
// NORM, and the residual add). Bindings: 0 params, 1 part, 2 y, 3 chunk.

[[max_total_threads_per_threadgroup(256)]]
kernel void compute_main(
    constant MatmulParams& p [[buffer(0)]],
    device const float* part [[buffer(1)]],
    device float* y [[buffer(2)]],
    device const uint* chunk [[buffer(3)]],
    uint tid [[thread_index_in_threadgroup]],
    uint3 wid [[threadgroup_position_in_grid]]
) {
    uint t = wid.z;
    uint row = wid.x * 256u + tid;
    if (t >= chunk[1] || row >= p.rows) {
        return;
    }
    float s = 0.0f;
    for (uint g = 0u; g < p.n_seg; g++) {
        s += part[(g * p.part_tokens + t) * p.rows + row];
    }
//#if NORM
    float sq = 0.0f;
    uint qbase = p.n_seg * p.part_tokens * p.rows;
    for (uint g = 0u; g < p.n_seg; g++) {
        sq += part[qbase + g * p.part_tokens + t];
    }
    s *= rsqrt(sq / float(p.cols) + p.eps);
//#endif
    uint yi = t * p.y_stride + p.y_offset + row;
    if (p.accumulate != 0u) {
        s += y[yi];
    }
    y[yi] = s;
}
