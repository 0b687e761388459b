// matvec_q4_0_naive.metal — MSL twin of matvec_q4_0_naive.wgsl: the seed's
// baseline, one row per threadgroup of 32 threads, each thread reading whole
// 18-byte Q4_0 blocks as nine 16-bit fields. For side-by-side benchmarks only.

// The 16-bit field at even byte offset o.
uint u16_at(device const uint* w, uint o) {
    return (w[o >> 2u] >> ((o & 2u) * 8u)) & 0xFFFFu;
}

[[max_total_threads_per_threadgroup(32)]]
kernel void compute_main(
    constant MatvecParams& p [[buffer(0)]],
    device const uint* w [[buffer(1)]],
    device const float* x [[buffer(2)]],
    device float* y [[buffer(3)]],
    uint lane [[thread_index_in_threadgroup]],
    uint3 wid [[threadgroup_position_in_grid]],
    uint3 nwg [[threadgroups_per_grid]]
) {
    threadgroup float red[32];
    uint row = wid.x + wid.y * nwg.x;
    float acc = 0.0f;
    if (row < p.rows) {
        for (uint b = lane; b < p.blocks; b += 32u) {
            uint o = (row * p.blocks + b) * 18u;
            float d = float(as_type<half2>(u16_at(w, o)).x);
            uint xb = p.x_offset * 4u + b * 32u;
            float s = 0.0f;
            for (uint k = 0u; k < 8u; k++) {
                uint q = u16_at(w, o + 2u + 2u * k);
                uint j = 2u * k;
                s += (float(q & 15u) - 8.0f) * x[xb + j];
                s += (float((q >> 8u) & 15u) - 8.0f) * x[xb + j + 1u];
                s += (float((q >> 4u) & 15u) - 8.0f) * x[xb + j + 16u];
                s += (float((q >> 12u) & 15u) - 8.0f) * x[xb + j + 17u];
            }
            acc += d * s;
        }
    }
    red[lane] = acc;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint s = 16u; s > 0u; s >>= 1u) {
        if (lane < s) {
            red[lane] += red[lane + s];
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    if (lane == 0u && row < p.rows) {
        y[p.y_offset + row] = red[0];
    }
}
