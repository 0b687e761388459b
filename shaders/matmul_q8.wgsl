// matmul_q8.wgsl — matmul.wgsl with int8 inputs (ModelOptions::q8_activations):
//   P[s, t, row] = Σ_b A_row,b · d_t,b · Σ_k q_row,b,k · c_t,b,k + B_row,b · s_t,b
// over the blocks b of K segment s, summed into Y by matmul_reduce.wgsl.
// Weight block codes q and (A, B): Q4_0 nibbles 0..15 and (d, −8d); Q4_1
// nibbles and (d, m); Q8_0 signed bytes and (d, 0). Input codes c and
// (d_t,b, s_t,b = d_t,b·Σc) come from quantize_rows.wgsl (layout there),
// which also applied the gain or SwiGLU product and the RMSNorm scale.
// Block sums are exact integer sums of 4-way byte dot products.
//
// Workgroup (x: 64-row tile, y: K segment, z: 64-token tile), 256 threads,
// each computing 4 rows × 4 tokens. K advances one block per step, staged
// in workgroup memory: code word k (elements 4k..4k+3) of row r at
// wq[k·16 + r/4][r mod 4] and its (A, B) at wab[r]; code word k of token t
// at xqs[k·16 + t/4][t mod 4] and its (d, s) at xds[t]. Thread (r = tid / 4,
// j = tid mod 4) decodes its row's code words j and j + 4; thread
// (t = tid / 4, j = tid mod 4) loads token t's words 4j..4j+3 (j < 2) or
// its (d, s) (j = 2). Weights are loaded two steps ahead, inputs one.

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> xq: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
@group(0) @binding(4) var<storage, read> chunk: array<u32>;

var<workgroup> wq: array<vec4<u32>, 128>;
var<workgroup> wab: array<vec2<f32>, 64>;
var<workgroup> xqs: array<vec4<u32>, 128>;
var<workgroup> xds: array<vec2<f32>, 64>;

//#include words

// The aligned words holding block b of `row`: 2 (Q4_0, Q4_1) or 3 (Q8_0,
// the format without a flag).
fn load_raw(row: u32, b: u32) -> array<vec4<u32>, 3> {
    var r: array<vec4<u32>, 3>;
//#if Q4_0
    let o = ((row * p.blocks + b) * 18u) >> 4u;
    r[0] = w[o];
    r[1] = w[o + 1u];
//#else
//#if Q4_1
    let o = ((row * p.blocks + b) * 20u) >> 4u;
    r[0] = w[o];
    r[1] = w[o + 1u];
//#else
    let o = ((row * p.blocks + b) * 34u) >> 4u;
    r[0] = w[o];
    r[1] = w[o + 1u];
    r[2] = w[o + 2u];
//#endif
//#endif
    return r;
}

// Code words j and j + 4 (j < 4) of block b of `row` and the bits of its
// (A, B), from its raw words r (block layouts: see words.wgsl).
fn codes(row: u32, b: u32, j: u32, r: array<vec4<u32>, 3>) -> vec4<u32> {
//#if Q4_0
    let k = unpack_q4_0(r[0], r[1], (row * p.blocks + b) * 18u);
    let qw = pick(k.q, j);
    let ab = vec2<f32>(k.d, -8.0 * k.d);
    return vec4<u32>(qw & 0x0F0F0F0Fu, (qw >> 4u) & 0x0F0F0F0Fu, bitcast<vec2<u32>>(ab));
//#else
//#if Q4_1
    let k = unpack_q4_1(r[0], r[1], (row * p.blocks + b) * 20u);
    let qw = pick(k.q, j);
    return vec4<u32>(qw & 0x0F0F0F0Fu, (qw >> 4u) & 0x0F0F0F0Fu, bitcast<u32>(k.d), bitcast<u32>(k.m));
//#else
    let k = unpack_q8_0(r[0], r[1], r[2], (row * p.blocks + b) * 34u);
    return vec4<u32>(pick(k.q0, j), pick(k.q1, j), bitcast<u32>(k.d), 0u);
//#endif
//#endif
}

// The input words a thread stages for block b: token row `trow`'s code
// words 4j..4j+3 (j < 2), or the vec4 holding its (d, s) (j = 2).
fn load_x(trow: u32, b: u32, j: u32) -> vec4<u32> {
    let tb = trow * p.blocks + b;
    if j < 2u {
        return xq[tb * 2u + j];
    }
    return xq[p.part_tokens * p.blocks * 2u + (tb >> 1u)];
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
    let wr = tid >> 2u;
    let wrow = row0 + wr;
    let wj = tid & 3u;
    let tt = tid >> 2u;
    let xj = tid & 3u;
    let xok = t0 + tt < n && xj < 3u;

    var wraw: array<vec4<u32>, 3>;
    var wnext: array<vec4<u32>, 3>;
    var xa = vec4<u32>(0u);
    if wrow < p.rows {
        wraw = load_raw(wrow, b0);
        if b0 + 1u < b1 {
            wnext = load_raw(wrow, b0 + 1u);
        }
    }
    if xok {
        xa = load_x(t0 + tt, b0, xj);
    }

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var b = b0; b < b1; b++) {
        // Stage block b.
        var c = vec4<u32>(0u);
        if wrow < p.rows {
            c = codes(wrow, b, wj, wraw);
        }
        let qw = wj * 16u + (wr >> 2u);
        let hw = wr & 3u;
        wq[qw][hw] = c.x;
        wq[qw + 64u][hw] = c.y;
        if wj == 0u {
            wab[wr] = bitcast<vec2<f32>>(vec2<u32>(c.z, c.w));
        }
        if xj < 2u {
            let qx = 4u * xj * 16u + (tt >> 2u);
            let hx = tt & 3u;
            xqs[qx][hx] = xa.x;
            xqs[qx + 16u][hx] = xa.y;
            xqs[qx + 32u][hx] = xa.z;
            xqs[qx + 48u][hx] = xa.w;
        } else if xj == 2u {
            // The (d, s) pair of token tt's block b is the low or high half.
            let odd = (((t0 + tt) * p.blocks + b) & 1u) != 0u;
            xds[tt] = bitcast<vec2<f32>>(select(vec2<u32>(xa.x, xa.y), vec2<u32>(xa.z, xa.w), odd));
        }
        workgroupBarrier();
        // Loads for block b + 2 (weights) and b + 1 (inputs), in flight
        // during the products.
        wraw = wnext;
        if wrow < p.rows && b + 2u < b1 {
            wnext = load_raw(wrow, b + 2u);
        }
        if xok && b + 1u < b1 {
            xa = load_x(t0 + tt, b + 1u, xj);
        }
        // Threads whose 4 tokens are all past the chunk skip the products.
        if t0 + 4u * tc < n {
            var i0 = vec4<i32>(0);
            var i1 = vec4<i32>(0);
            var i2 = vec4<i32>(0);
            var i3 = vec4<i32>(0);
            for (var k = 0u; k < 8u; k++) {
                let wv = wq[k * 16u + tr];
                let xv = xqs[k * 16u + tc];
                i0 += vec4<i32>(dot4I8Packed(wv.x, xv.x), dot4I8Packed(wv.x, xv.y), dot4I8Packed(wv.x, xv.z), dot4I8Packed(wv.x, xv.w));
                i1 += vec4<i32>(dot4I8Packed(wv.y, xv.x), dot4I8Packed(wv.y, xv.y), dot4I8Packed(wv.y, xv.z), dot4I8Packed(wv.y, xv.w));
                i2 += vec4<i32>(dot4I8Packed(wv.z, xv.x), dot4I8Packed(wv.z, xv.y), dot4I8Packed(wv.z, xv.z), dot4I8Packed(wv.z, xv.w));
                i3 += vec4<i32>(dot4I8Packed(wv.w, xv.x), dot4I8Packed(wv.w, xv.y), dot4I8Packed(wv.w, xv.z), dot4I8Packed(wv.w, xv.w));
            }
            let e0 = xds[4u * tc];
            let e1 = xds[4u * tc + 1u];
            let e2 = xds[4u * tc + 2u];
            let e3 = xds[4u * tc + 3u];
            let xd = vec4<f32>(e0.x, e1.x, e2.x, e3.x);
            let xs = vec4<f32>(e0.y, e1.y, e2.y, e3.y);
            let a0 = wab[4u * tr];
            let a1 = wab[4u * tr + 1u];
            let a2 = wab[4u * tr + 2u];
            let a3 = wab[4u * tr + 3u];
            acc0 += a0.x * xd * vec4<f32>(i0) + a0.y * xs;
            acc1 += a1.x * xd * vec4<f32>(i1) + a1.y * xs;
            acc2 += a2.x * xd * vec4<f32>(i2) + a2.y * xs;
            acc3 += a3.x * xd * vec4<f32>(i3) + a3.y * xs;
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
}
