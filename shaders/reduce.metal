// reduce.metal — MSL twin of reduce.wgsl: sums across the 32 lanes of a row,
// and across the threadgroup. Both variants are correct for any SIMD-group
// width (1, 4, 8, 16, 32, 64, 128): the SUBGROUPS variant shuffles within
// aligned groups of g = min(32, width) lanes, then adds the 32/g partials of
// a row through threadgroup memory.
//
// MSL has no module-scope threadgroup variables and passthrough pipelines get
// no dynamic threadgroup memory (wgpu #8330), so the kernel declares
// `threadgroup float red[256]` itself and passes it down.

// Returns, in every thread, the sum of `v` over the 32 threads of its row.
float reduce_row(float v, threadgroup float* red, uint tid, uint sg_size) {
    float t = v;
    uint g = 1u;
//#if SUBGROUPS
    g = min(32u, sg_size);
    for (uint off = g >> 1u; off > 0u; off >>= 1u) {
        t += simd_shuffle_xor(t, ushort(off));
    }
//#endif
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid % g == 0u) {
        red[tid / g] = t;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
//#if SUBGROUPS
    uint n = 32u / g;
    uint base = (tid >> 5u) * n;
    float s = 0.0f;
    for (uint i = 0u; i < n; i++) {
        s += red[base + i];
    }
    return s;
//#else
    for (uint s = 16u; s > 0u; s >>= 1u) {
        if ((tid & 31u) < s) {
            red[tid] += red[tid + s];
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    return red[tid & ~31u];
//#endif
}

// Returns, in every thread, the sum of `v` over the whole threadgroup.
float reduce_all(float v, threadgroup float* red, uint tid, uint sg_size) {
    float r = reduce_row(v, red, tid, sg_size);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if ((tid & 31u) == 0u) {
        red[tid >> 5u] = r;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    float s = 0.0f;
    for (uint i = 0u; i < 8u; i++) {
        s += red[i];
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    return s;
}
