// matvec.wgsl — the body shared by every matvec kernel: y[row] = W[row,:] · x.
//
// Included by matvec_<format>.wgsl after that file defines
//   fn block_dot(row: u32, b: u32, xb: u32) -> f32
// which returns the dot product of block `b` of `row` with x[xb*32 .. xb*32+32)
// (x read through `x` with `p.x_offset` applied by the caller).
//
// Workgroup layout: 256 threads = 8 rows × 32 lanes. Lane l of a row takes
// blocks l, l+32, ... so the 32 lanes of a row read consecutive blocks — one
// contiguous run of bytes — and the 8 rows of a workgroup read one contiguous
// 8-row slab. The partial sums of a row are reduced across its 32 lanes.
//
// Variants (preprocessor): NORM fuses RMSNorm: y = W · (rmsnorm(x) ⊙ gain);
// SWIGLU fuses the FFN gate: y = W · (silu(gate) ⊙ up).
// SUBGROUPS reduces with subgroup shuffles (any subgroup size), else with
// workgroup memory.

@group(0) @binding(0) var<uniform> p: MatvecParams;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
//#if NORM
@group(0) @binding(4) var<storage, read> gain: array<vec4<f32>>;
//#endif

//#include reduce

// The input vector, 4 floats starting at vec4 index i: x ⊙ gain with NORM,
// silu(gate) ⊙ up with SWIGLU (x holds gate then up, each `cols` long),
// else x itself.
fn xg(i: u32) -> vec4<f32> {
//#if NORM
    return x[p.x_offset + i] * gain[i];
//#else
//#if SWIGLU
    let g = x[p.x_offset + i];
    let u = x[p.x_offset + p.cols / 4u + i];
    return g / (vec4<f32>(1.0) + exp(-g)) * u;
//#else
    return x[p.x_offset + i];
//#endif
//#endif
}

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
    let row = (wid.x + wid.y * nwg.x) * 8u + (tid >> 5u);
    let lane = tid & 31u;

    var acc = 0.0;
    if row < p.rows {
        for (var b = lane; b < p.blocks; b += 32u) {
            acc += block_dot(row, b);
        }
    }

    var scale = 1.0;
//#if NORM
    // rmsnorm(x) = x / sqrt(mean(x²) + eps): a scalar, applied after the dot.
    var ss = 0.0;
    for (var i = tid; i < p.cols / 4u; i += 256u) {
        let v = x[p.x_offset + i];
        ss += dot(v, v);
    }
    scale = inverseSqrt(reduce_all(ss, tid, sg_size) / f32(p.cols) + p.eps);
//#endif

    let total = reduce_row(acc, tid, sg_size);
    if lane == 0u && row < p.rows {
        var out = total * scale;
        if p.accumulate != 0u {
            out += y[p.y_offset + row];
        }
        y[p.y_offset + row] = out;
    }
}
