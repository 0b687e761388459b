// matmul_reduce.wgsl — second pass of matmul.wgsl: sums the K segments'
// partial products of each (token, row),
//   Y[t·y_stride + y_offset + row] (=|+=) scale_t · Σ_s P[s, t, row],
// where scale_t = 1, or with NORM the RMSNorm scale 1/sqrt(mean(X[t]²) + eps)
// from the segments' partial sums of squares. Workgroup (x: 256 rows, z:
// token); the token count is chunk[1]. Partials layout: see matmul.wgsl.

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> chunk: array<u32>;

@compute @workgroup_size(256)
fn compute_main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = wid.z;
    let row = wid.x * 256u + tid;
    if t >= chunk[1] || row >= p.rows {
        return;
    }
    var s = 0.0;
    for (var g = 0u; g < p.n_seg; g++) {
        s += part[(g * p.part_tokens + t) * p.rows + row];
    }
//#if NORM
    var sq = 0.0;
    let qbase = p.n_seg * p.part_tokens * p.rows;
    for (var g = 0u; g < p.n_seg; g++) {
        sq += part[qbase + g * p.part_tokens + t];
    }
    s *= inverseSqrt(sq / f32(p.cols) + p.eps);
//#endif
    let yi = t * p.y_stride + p.y_offset + row;
    if p.accumulate != 0u {
        s += y[yi];
    }
    y[yi] = s;
}
