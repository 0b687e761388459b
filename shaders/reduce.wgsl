// reduce.wgsl — sums across the 32 lanes of a row, and across the workgroup.
// Both variants are correct for any subgroup size (1, 4, 8, 16, 32, 64, 128):
// the subgroup variant shuffles within aligned groups of g = min(32, size)
// lanes, then adds the 32/g partials of a row through workgroup memory.

var<workgroup> red: array<f32, 256>;

// Returns, in every thread, the sum of `v` over the 32 threads of its row.
fn reduce_row(v: f32, tid: u32, sg_size: u32) -> f32 {
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
    var s = 0.0;
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

// Returns, in every thread, the sum of `v` over the whole workgroup.
fn reduce_all(v: f32, tid: u32, sg_size: u32) -> f32 {
    let r = reduce_row(v, tid, sg_size);
    workgroupBarrier();
    if (tid & 31u) == 0u {
        red[tid >> 5u] = r;
    }
    workgroupBarrier();
    var s = 0.0;
    for (var i = 0u; i < 8u; i++) {
        s += red[i];
    }
    workgroupBarrier();
    return s;
}
