// matvec_lanes.wgsl — the `lanes` family: y[row] = W[row,:] · x with x read
// from memory by every row (no staging, no workgroup memory beyond the
// reduction). 256 threads = 8 rows × 32 lanes; lane l takes blocks l,
// l + 32, ... so the lanes of a row read one contiguous run of bytes and the
// workgroup one 8-row slab. Any format.

//#include matvec_common

@compute @workgroup_size(256)
fn compute_main(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
//#if SUBGROUPS
    @builtin(subgroup_size) sg_size: u32,
//#endif
) {
//#if !SUBGROUPS
    let sg_size = 1u;
//#endif
    let group = wid.x + wid.y * nwg.x;
    let row = group * 8u + (tid >> 5u);
    let lane = tid & 31u;
    // v.x: this lane's share of the row's dot product; v.y (NORM): its share
    // of sum(x²).
    var v = vec2<f32>(0.0);
    if row < p.rows {
        for (var b = lane; b < p.blocks; b += 32u) {
            var xv: array<vec4<f32>, 8>;
            for (var j = 0u; j < 8u; j++) {
                xv[j] = xg(b * 8u + j);
            }
            v.x += block_dot(row, b, xv);
        }
    }
//#if NORM
    // Every row recomputes sum(x²) from L1-resident x: no extra barrier.
    for (var i = lane; i < p.cols / 4u; i += 32u) {
        let t = x[p.x_offset + i];
        v.y += dot(t, t);
    }
//#endif
    let r = reduce_row(v, tid, sg_size);
    var total = r.x;
//#if NORM
    // rmsnorm(x) = x / sqrt(mean(x²) + eps): a scalar, applied after the dot.
    total *= inverseSqrt(r.y / f32(p.cols) + p.eps);
//#endif
    if lane == 0u && row < p.rows {
        store_row(row, total);
    }
}
