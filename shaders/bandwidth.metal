// bandwidth.metal — MSL twin of bandwidth.wgsl: plain read-bandwidth probe.
// Every thread XORs uint4 words with a grid stride and writes one value per
// threadgroup, so the loads cannot be optimised away.

[[max_total_threads_per_threadgroup(256)]]
kernel void compute_main(
    constant BandwidthParams& p [[buffer(0)]],
    device const uint4* src [[buffer(1)]],
    device uint* dst [[buffer(2)]],
    uint tid [[thread_index_in_threadgroup]],
    uint3 wid [[threadgroup_position_in_grid]]
) {
    threadgroup uint acc[256];
    uint4 s = uint4(0u);
    for (uint i = wid.x * 256u + tid; i < p.words; i += p.stride) {
        s ^= src[i];
    }
    acc[tid] = s.x ^ s.y ^ s.z ^ s.w;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid == 0u) {
        uint r = 0u;
        for (uint i = 0u; i < 256u; i++) {
            r ^= acc[i];
        }
        dst[wid.x] = r;
    }
}
