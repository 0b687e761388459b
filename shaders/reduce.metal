// reduce.metal — MSL twin of reduce.wgsl: sums values across the 32 lanes of
// a row (the dot product and, for fused RMSNorm, the sum of squares). Both variants are correct for any SIMD-group
// width (1, 4, 8, 16, 32, 64, 128): the SUBGROUPS variant shuffles within
// aligned groups of g = min(32, width) lanes, then adds the 32/g partials of
// a row through threadgroup memory.
//
// MSL has no module-scope threadgroup variables and passthrough pipelines get
// no dynamic threadgroup memory (wgpu #8330), so the kernel declares
// `threadgroup float4 red4[256]` itself and passes it down.

// Returns, in every thread, the sums of the 4 values `v` over the 32 threads
// of its row (the matvec's RPT rows per thread, or one row's dot product and
// sum of squares through reduce_row).
float4 reduce_row4(float4 v, threadgroup float4* red4, uint tid, uint sg_size) {
    float4 t = v;
    uint g = 1u;
//#if SUBGROUPS
    g = min(32u, sg_size);
    for (uint off = g >> 1u; off > 0u; off >>= 1u) {
        t += simd_shuffle_xor(t, ushort(off));
    }
//#endif
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid % g == 0u) {
        red4[tid / g] = t;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
//#if SUBGROUPS
    uint n = 32u / g;
    uint base = (tid >> 5u) * n;
    float4 s = float4(0.0f);
    for (uint i = 0u; i < n; i++) {
        s += red4[base + i];
    }
    return s;
//#else
    for (uint s = 16u; s > 0u; s >>= 1u) {
        if ((tid & 31u) < s) {
            red4[tid] += red4[tid + s];
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    return red4[tid & ~31u];
//#endif
}

// Returns, in every thread, the sum of `v` over the 32 threads of its row.
float2 reduce_row(float2 v, threadgroup float4* red4, uint tid, uint sg_size) {
    float4 t = reduce_row4(float4(v.x, v.y, 0.0f, 0.0f), red4, tid, sg_size);
    return float2(t.x, t.y);
}

// `wide` matvec family: returns, in thread 0 of each half (128 threads) of the
// threadgroup, the sums of `v` over that half.
float4 reduce_half(float4 v, threadgroup float4* red4, uint tid, uint sg_size) {
    float4 t = v;
    uint g = 1u;
//#if SUBGROUPS
    g = min(32u, sg_size);
    for (uint off = g >> 1u; off > 0u; off >>= 1u) {
        t += simd_shuffle_xor(t, ushort(off));
    }
//#endif
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid % g == 0u) {
        red4[tid / g] = t;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    // 128/g partials per half; a tree with a fixed number of barrier steps.
    uint n = 128u / g;
    uint base = (tid >> 7u) * n;
    uint i = tid & 127u;
    for (uint s = 64u; s > 0u; s >>= 1u) {
        if (s < n && i < s) {
            red4[base + i] += red4[base + i + s];
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    return red4[base];
}
