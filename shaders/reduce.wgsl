// reduce.wgsl — sums values across the 32 lanes of a row (the dot product
// and, for fused RMSNorm, the sum of squares: one reduction, two barriers).
// Both variants are correct for any subgroup size (1, 4, 8, 16, 32, 64, 128):
// the subgroup variant shuffles within aligned groups of g = min(32, size)
// lanes, then adds the 32/g partials of a row through workgroup memory.

// Returns, in every thread, the sum of `v` over the 32 threads of its row.
fn reduce_row(v: vec2<f32>, tid: u32, sg_size: u32) -> vec2<f32> {
    let t = reduce_row4(vec4<f32>(v.x, v.y, 0.0, 0.0), tid, sg_size);
    return vec2<f32>(t.x, t.y);
}

var<workgroup> red4: array<vec4<f32>, 256>;

// Returns, in every thread, the sums of the 4 values `v` over the 32 threads
// of its row (the matvec's RPT rows per thread, or one row's dot product and
// sum of squares through reduce_row).
fn reduce_row4(v: vec4<f32>, tid: u32, sg_size: u32) -> vec4<f32> {
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
//#if SUBGROUPS
    let n = 32u / g;
    let base = (tid >> 5u) * n;
    var s = vec4<f32>(0.0);
    for (var i = 0u; i < n; i++) {
        s += red4[base + i];
    }
    return s;
//#else
    for (var s = 16u; s > 0u; s >>= 1u) {
        if (tid & 31u) < s {
            red4[tid] += red4[tid + s];
        }
        workgroupBarrier();
    }
    return red4[tid & ~31u];
//#endif
}

// `wide` matvec family: returns, in thread 0 of each half (128 threads) of the
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
