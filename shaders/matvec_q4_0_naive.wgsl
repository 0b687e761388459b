// matvec_q4_0_naive.wgsl — the baseline the seed note measured: one row per
// workgroup of 32 threads, each thread reading whole 18-byte Q4_0 blocks as a
// "struct" (nine 16-bit fields pulled out of unaligned u32 words). Kept only
// so benchmarks can show the coalesced kernel's speedup side by side.

@group(0) @binding(0) var<uniform> p: MatvecParams;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> red: array<f32, 32>;

// The 16-bit field at even byte offset o.
fn u16_at(o: u32) -> u32 {
    return (w[o >> 2u] >> ((o & 2u) * 8u)) & 0xFFFFu;
}

@compute @workgroup_size(32)
fn compute_main(
    @builtin(local_invocation_index) lane: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row = wid.x + wid.y * nwg.x;
    var acc = 0.0;
    if row < p.rows {
        for (var b = lane; b < p.blocks; b += 32u) {
            let o = (row * p.blocks + b) * 18u;
            let d = unpack2x16float(u16_at(o)).x;
            let xb = p.x_offset * 4u + b * 32u;
            var s = 0.0;
            for (var k = 0u; k < 8u; k++) {
                let q = u16_at(o + 2u + 2u * k);
                let j = 2u * k;
                s += (f32(q & 15u) - 8.0) * x[xb + j];
                s += (f32((q >> 8u) & 15u) - 8.0) * x[xb + j + 1u];
                s += (f32((q >> 4u) & 15u) - 8.0) * x[xb + j + 16u];
                s += (f32((q >> 12u) & 15u) - 8.0) * x[xb + j + 17u];
            }
            acc += d * s;
        }
    }
    red[lane] = acc;
    workgroupBarrier();
    for (var s = 16u; s > 0u; s >>= 1u) {
        if lane < s {
            red[lane] += red[lane + s];
        }
        workgroupBarrier();
    }
    if lane == 0u && row < p.rows {
        y[p.y_offset + row] = red[0];
    }
}
