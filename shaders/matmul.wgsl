// matmul.wgsl — batched matrix products for prompt processing, split over K:
//   P[s, t, row] = W[row, K_s] · input(X[t, K_s])   for t in 0..n_tokens,
// the partial product of K segment s (blocks s·seg_blocks ..); then
// matmul_reduce.wgsl sums the segments into Y (with the RMSNorm scale and the
// residual add). W is in its GGUF layout, read with aligned vec4<u32> loads
// like the matvec kernels; the format is chosen by one flag: Q4_0, Q4_1,
// Q8_0, F16, else F32. Splitting K gives small matrices enough workgroups to
// fill the GPU and keeps each workgroup's chain of dependent steps short.
//
// Workgroup (x: 64-row tile, y: K segment, z: 64-token tile), 256 threads,
// each computing 4 rows × 4 tokens: per k, one vec4 of weights and one of
// inputs from workgroup memory feed 16 FMAs. K advances one block (32
// inputs) per step, staged in workgroup memory by all threads: thread (row
// r = tid mod 64, j = tid / 64) decodes vec4s j and j + 4 of its row's block;
// thread (token tt = tid mod 64, jx = tid / 64) stages input vec4s jx and
// jx + 4 of its token (with the RMSNorm gain or the SwiGLU product applied
// once). Weights are loaded two steps ahead of their use and inputs one step
// ahead, so the loads are in flight during the products.
//
// Token t's input row starts at vec4 index t·x_stride of X. The partials sit
// in `part`: P[s, t, row] at (s·part_tokens + t)·rows + row, then (NORM) the
// tokens' partial sums of squares at n_seg·part_tokens·rows + s·part_tokens + t.
// The token count is chunk[1] (the chunk header the host writes per chunk).
//
// Variants: NORM: rmsnorm(X[t]) ⊙ gain (the gain applied here, the per-token
// scale by matmul_reduce); SWIGLU: X[t] holds gate then up (each `cols`
// long) and the input is silu(gate) ⊙ up.

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
@group(0) @binding(4) var<storage, read> chunk: array<u32>;
//#if NORM
@group(0) @binding(5) var<storage, read> gain: array<vec4<f32>>;
//#endif

// The K step's tiles (one block, 32 inputs): W as ws[k·16 + r/4][r mod 4]
// for the 64 rows r, X as xs[k·16 + t/4][t mod 4] for the 64 tokens t.
// 8 + 8 KiB: WebGPU's default 16 KiB of workgroup memory.
var<workgroup> ws: array<vec4<f32>, 512>;
var<workgroup> xs: array<vec4<f32>, 512>;

//#include matmul_decode

// The staged input from raw loads a (and b: the gain with NORM, up with SWIGLU).
fn combine(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
//#if NORM
    return a * b;
//#else
//#if SWIGLU
    return a / (vec4<f32>(1.0) + exp(-a)) * b;
//#else
    return a;
//#endif
//#endif
}

@compute @workgroup_size(256)
fn compute_main(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let n = chunk[1];
    let row0 = wid.x * 64u;
    let seg = wid.y;
    let t0 = wid.z * 64u;
    let b0 = seg * p.seg_blocks;
    let b1 = min(b0 + p.seg_blocks, p.blocks);
    // Output tile of this thread: rows row0 + 4·tr + (0..3), tokens t0 + 4·tc + (0..3).
    let tr = tid & 15u;
    let tc = tid >> 4u;
    // Staging roles (see the header).
    let wrow = row0 + (tid & 63u);
    let wj = tid >> 6u;
    let tt = tid & 63u;
    let xj = tid >> 6u;
    let xok = t0 + tt < n;
    let xbase = (t0 + tt) * p.x_stride + xj;

    var wraw: array<vec4<u32>, 3>;
    var wnext: array<vec4<u32>, 3>;
    var xa0 = vec4<f32>(0.0);
    var xa1 = vec4<f32>(0.0);
    var xb0 = vec4<f32>(0.0);
    var xb1 = vec4<f32>(0.0);
    if wrow < p.rows {
        wraw = load_raw(wrow, b0, wj);
        if b0 + 1u < b1 {
            wnext = load_raw(wrow, b0 + 1u, wj);
        }
    }
    if xok {
        xa0 = x[xbase + b0 * 8u];
        xa1 = x[xbase + b0 * 8u + 4u];
//#if NORM
        xb0 = gain[b0 * 8u + xj];
        xb1 = gain[b0 * 8u + xj + 4u];
//#endif
//#if SWIGLU
        xb0 = x[xbase + p.cols / 4u + b0 * 8u];
        xb1 = x[xbase + p.cols / 4u + b0 * 8u + 4u];
//#endif
    }

    var ss = 0.0; // this thread's share of its token's sum of squares (NORM)
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var b = b0; b < b1; b++) {
        // Stage block b.
        var wv0 = vec4<f32>(0.0);
        var wv1 = vec4<f32>(0.0);
        if wrow < p.rows {
//#if BLOCK_VEC4
            let v = block_vec4_pair(wrow, b, wj);
            wv0 = v[0];
            wv1 = v[1];
//#else
            wv0 = decode4(wrow, b, wj, wraw);
            wv1 = decode4(wrow, b, wj + 4u, wraw);
//#endif
        }
        let qw = (4u * wj) * 16u + ((tid & 63u) >> 2u);
        let hw = tid & 3u;
        ws[qw][hw] = wv0.x;
        ws[qw + 16u][hw] = wv0.y;
        ws[qw + 32u][hw] = wv0.z;
        ws[qw + 48u][hw] = wv0.w;
        ws[qw + 256u][hw] = wv1.x;
        ws[qw + 272u][hw] = wv1.y;
        ws[qw + 288u][hw] = wv1.z;
        ws[qw + 304u][hw] = wv1.w;
//#if NORM
        ss += dot(xa0, xa0) + dot(xa1, xa1);
//#endif
        let v0 = combine(xa0, xb0);
        let v1 = combine(xa1, xb1);
        let qx = (4u * xj) * 16u + (tt >> 2u);
        let hx = tt & 3u;
        xs[qx][hx] = v0.x;
        xs[qx + 16u][hx] = v0.y;
        xs[qx + 32u][hx] = v0.z;
        xs[qx + 48u][hx] = v0.w;
        xs[qx + 256u][hx] = v1.x;
        xs[qx + 272u][hx] = v1.y;
        xs[qx + 288u][hx] = v1.z;
        xs[qx + 304u][hx] = v1.w;
        workgroupBarrier();
        // Loads for block b + 2 (weights) and b + 1 (inputs), in flight
        // during the products.
        wraw = wnext;
        if wrow < p.rows && b + 2u < b1 {
            wnext = load_raw(wrow, b + 2u, wj);
        }
        if xok && b + 1u < b1 {
            let e = xbase + (b + 1u) * 8u;
            xa0 = x[e];
            xa1 = x[e + 4u];
//#if NORM
            xb0 = gain[(b + 1u) * 8u + xj];
            xb1 = gain[(b + 1u) * 8u + xj + 4u];
//#endif
//#if SWIGLU
            xb0 = x[e + p.cols / 4u];
            xb1 = x[e + p.cols / 4u + 4u];
//#endif
        }
        // Threads whose 4 tokens are all past the chunk skip the products
        // (a short prompt costs what its tokens need, not a full tile).
        if t0 + 4u * tc < n {
            for (var k = 0u; k < 32u; k++) {
                let wk = ws[k * 16u + tr];
                let xk = xs[k * 16u + tc];
                acc0 += wk.x * xk;
                acc1 += wk.y * xk;
                acc2 += wk.z * xk;
                acc3 += wk.w * xk;
            }
        }
        workgroupBarrier();
    }

    let pbase = seg * p.part_tokens;
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + 4u * tr + i;
        let a = select(select(acc0, acc1, i == 1u), select(acc2, acc3, i == 3u), i >= 2u);
        for (var j = 0u; j < 4u; j++) {
            let t = t0 + 4u * tc + j;
            if row < p.rows && t < n {
                part[(pbase + t) * p.rows + row] = a[j];
            }
        }
    }
//#if NORM
    // The 4 stagers of each token add their squares (xs is free after the
    // loop's last barrier); only the first row tile writes them.
    xs[tid] = vec4<f32>(ss, 0.0, 0.0, 0.0);
    workgroupBarrier();
    if tid < 64u && t0 + tid < n && wid.x == 0u {
        let sq = (xs[tid].x + xs[tid + 64u].x) + (xs[tid + 128u].x + xs[tid + 192u].x);
        part[p.n_seg * p.part_tokens * p.rows + pbase + t0 + tid] = sq;
    }
//#endif
}
