// reduce.wgsl — sums a pair of values across the 32 lanes of a row (the dot
// product and, for fused RMSNorm, the sum of squares: one reduction, two
// barriers).
// Both variants are correct for any subgroup size (1, 4, 8, 16, 32, 64, 128):
// the subgroup variant shuffles within aligned groups of g = min(32, size)
// lanes, then adds the 32/g partials of a row through workgroup memory.

var<workgroup> red: array<vec2<f32>, 256>;

// Returns, in every thread, the sum of `v` over the 32 threads of its row.
fn reduce_row(v: vec2<f32>, tid: u32, sg_size: u32) -> vec2<f32> {
    var t = v;
    var g = 1u;
//#if SUBGROUPS
    g = min(32u, sg_size);
    for (var off = g >> 1u; off > 0u; off >>= 1u) {
        t += subgroupShuffleXor(t, off);
    }
//#endif
    workgroupBarrier();
    if tid % g == 0u {
        red[tid / g] = t;
    }
    workgroupBarrier();
//#if SUBGROUPS
    let n = 32u / g;
    let base = (tid >> 5u) * n;
    var s = vec2<f32>(0.0);
    for (var i = 0u; i < n; i++) {
        s += red[base + i];
    }
    return s;
//#else
    for (var s = 16u; s > 0u; s >>= 1u) {
        if (tid & 31u) < s {
            red[tid] += red[tid + s];
        }
        workgroupBarrier();
    }
    return red[tid & ~31u];
//#endif
}

var<workgroup> red4: array<vec4<f32>, 256>;

// ROWS4 matvec: returns, in thread 0 of each half (128 threads) of the
// workgroup, the sums of `v` over that half.
fn reduce_half(v: vec4<f32>, tid: u32, sg_size: u32) -> vec4<f32> {
    var t = v;
    var g = 1u;
//#if SUBGROUPS
    g = min(32u, sg_size);
    for (var off = g >> 1u; off > 0u; off >>= 1u) {
        t += subgroupShuffleXor(t, off);
    }
//#endif
    workgroupBarrier();
    if tid % g == 0u {
        red4[tid / g] = t;
    }
    workgroupBarrier();
    // 128/g partials per half; a tree with a fixed number of barrier steps.
    let n = 128u / g;
    let base = (tid >> 7u) * n;
    let i = tid & 127u;
    for (var s = 64u; s > 0u; s >>= 1u) {
        if s < n && i < s {
            red4[base + i] += red4[base + i + s];
        }
        workgroupBarrier();
    }
    return red4[base];
}
