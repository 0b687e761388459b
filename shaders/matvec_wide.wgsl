// matvec_wide.wgsl — the `wide` family for long rows: 256 threads = 2 halves
// × 128 lanes; a half takes 4 consecutive rows and lane l blocks l,
// l + 128, ..., so every block of x loaded from memory is used for 4 rows.
// Not with NORM. Any format.

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
    let row0 = group * 8u + (tid >> 7u) * 4u;
    var v4 = vec4<f32>(0.0);
    for (var b = tid & 127u; b < p.blocks; b += 128u) {
        var xv: array<vec4<f32>, 8>;
        for (var j = 0u; j < 8u; j++) {
            xv[j] = xg(b * 8u + j);
        }
        for (var k = 0u; k < 4u; k++) {
            if row0 + k < p.rows {
                v4[k] += block_dot(row0 + k, b, xv);
            }
        }
    }
    let r4 = reduce_half(v4, tid, sg_size);
    if (tid & 127u) == 0u {
        for (var k = 0u; k < 4u; k++) {
            if row0 + k < p.rows {
                store_row(row0 + k, r4[k]);
            }
        }
    }
}
