// matmul.wgsl — batched matrix products for prompt processing:
//   Y[t, row] (=|+=) W[row,:] · X[t,:]   for t in 0..n_tokens,
// W in its GGUF layout, read with aligned vec4<u32> loads like the matvec
// kernels. The format is chosen by one flag: Q4_0, Q4_1, Q8_0, F16, else F32.
//
// Workgroup layout: a tile of 32 rows × 64 tokens (workgroup z: the token
// tile), 256 threads each computing 2 rows × 4 tokens. K advances one block
// (32 inputs) per step: threads 0..31 decode their row's block into
// workgroup memory, the other 224 stage the tile's inputs there (with the
// RMSNorm gain or the SwiGLU product applied once), then every thread
// multiplies from workgroup memory. Each weight block is read and decoded
// once per 64 tokens; the next block's loads are issued before the products
// of the current one, so memory latency hides behind them.
//
// Token t's input row starts at vec4 index t·x_stride of X; its output row
// at float t·y_stride + y_offset of Y. The token count is chunk[1] (the chunk
// header the host writes once per chunk).
//
// Variants: NORM fuses RMSNorm per token: X[t] → rmsnorm(X[t]) ⊙ gain (a
// scalar per token, applied after the dot); SWIGLU: X[t] holds gate then up
// (each `cols` long) and the input is silu(gate) ⊙ up.

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> chunk: array<u32>;
//#if NORM
@group(0) @binding(5) var<storage, read> gain: array<vec4<f32>>;
//#endif

// The K step's tiles (one block, 32 inputs): W as ws[k·16 + r/2][r mod 2]
// for the 32 rows r, X as xs[k·16 + t/4][t mod 4] for the 64 tokens t.
// 4 + 8 KiB: within WebGPU's default 16 KiB of workgroup memory.
var<workgroup> ws: array<vec2<f32>, 512>;
var<workgroup> xs: array<vec4<f32>, 512>;

// u32 number i (0..8) of the 32 bytes a ++ b.
fn word8(a: vec4<u32>, b: vec4<u32>, i: u32) -> u32 {
    return select(b[i & 3u], a[i & 3u], i < 4u);
}

// u32 number i (0..12) of the 48 bytes a ++ b ++ c.
fn word12(a: vec4<u32>, b: vec4<u32>, c: vec4<u32>, i: u32) -> u32 {
    return select(select(c[i & 3u], b[i & 3u], i < 8u), a[i & 3u], i < 4u);
}

// Nibbles 0,2,4,6 (lo) or 1,3,5,7 (hi) of q as floats.
fn lo4(q: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>(q, q >> 8u, q >> 16u, q >> 24u) & vec4<u32>(15u));
}
fn hi4(q: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>(q >> 4u, q >> 12u, q >> 20u, q >> 28u) & vec4<u32>(15u));
}

// Four signed bytes of q as floats.
fn i8x4(q: u32) -> vec4<f32> {
    return vec4<f32>(vec4<i32>(bitcast<i32>(q << 24u), bitcast<i32>(q << 16u), bitcast<i32>(q << 8u), bitcast<i32>(q)) >> vec4<u32>(24u));
}

// The aligned words holding block b of `row`: 2 (Q4_0, Q4_1), 3 (Q8_0),
// 4 (F16) or 8 (F32) of them. Loaded a block ahead of decode_raw, so the
// loads are in flight while the previous block is multiplied.
fn load_raw(row: u32, b: u32) -> array<vec4<u32>, 8> {
    var r: array<vec4<u32>, 8>;
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
//#if Q8_0
    let o = ((row * p.blocks + b) * 34u) >> 4u;
    r[0] = w[o];
    r[1] = w[o + 1u];
    r[2] = w[o + 2u];
//#else
//#if F16
    let o = (row * p.blocks + b) * 4u;
    for (var j = 0u; j < 4u; j++) {
        r[j] = w[o + j];
    }
//#else
    let o = (row * p.blocks + b) * 8u;
    for (var j = 0u; j < 8u; j++) {
        r[j] = w[o + j];
    }
//#endif
//#endif
//#endif
//#endif
    return r;
}

// Block b of `row` dequantized from its raw words r (load_raw): elements
// 4j..4j+3 in v[j].
fn decode_raw(row: u32, b: u32, r: array<vec4<u32>, 8>) -> array<vec4<f32>, 8> {
    var v: array<vec4<f32>, 8>;
//#if Q4_0
    // 18-byte blocks at even offsets: within two aligned words (see matvec_q4_0).
    let o = (row * p.blocks + b) * 18u;
    let a = r[0];
    let c = r[1];
    let s = o & 15u;
    let dw = word8(a, c, s >> 2u);
    let d = unpack2x16float(select(dw, dw >> 16u, (s & 2u) != 0u)).x;
    let k = (s + 2u) >> 2u;
    let h = (s & 2u) == 0u; // nibbles start 2 bytes into a word
    for (var j = 0u; j < 4u; j++) {
        var q = word8(a, c, k + j);
        if h {
            q = (q >> 16u) | (word8(a, c, k + j + 1u) << 16u);
        }
        v[j] = d * (lo4(q) - vec4<f32>(8.0));
        v[j + 4u] = d * (hi4(q) - vec4<f32>(8.0));
    }
//#else
//#if Q4_1
    // 20-byte blocks at offsets ≡ 0 mod 4: within two aligned words.
    let o = (row * p.blocks + b) * 20u;
    let a = r[0];
    let c = r[1];
    let k = (o & 15u) >> 2u;
    let dm = unpack2x16float(word8(a, c, k));
    for (var j = 0u; j < 4u; j++) {
        let q = word8(a, c, k + 1u + j);
        v[j] = dm.x * lo4(q) + vec4<f32>(dm.y);
        v[j + 4u] = dm.x * hi4(q) + vec4<f32>(dm.y);
    }
//#else
//#if Q8_0
    // 34-byte blocks at even offsets: within three aligned words.
    let o = (row * p.blocks + b) * 34u;
    let a = r[0];
    let c = r[1];
    let e = r[2];
    let s = o & 15u;
    let dw = word12(a, c, e, s >> 2u);
    let d = unpack2x16float(select(dw, dw >> 16u, (s & 2u) != 0u)).x;
    let k = (s + 2u) >> 2u;
    let h = (s & 2u) == 0u;
    for (var j = 0u; j < 8u; j++) {
        var q = word12(a, c, e, k + j);
        if h {
            q = (q >> 16u) | (word12(a, c, e, k + j + 1u) << 16u);
        }
        v[j] = d * i8x4(q);
    }
//#else
//#if F16
    for (var j = 0u; j < 4u; j++) {
        let q = r[j];
        v[2u * j] = vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
        v[2u * j + 1u] = vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w));
    }
//#else
    for (var j = 0u; j < 8u; j++) {
        v[j] = bitcast<vec4<f32>>(r[j]);
    }
//#endif
//#endif
//#endif
//#endif
    return v;
}

@compute @workgroup_size(256)
fn compute_main(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = chunk[1];
    let row0 = (wid.x + wid.y * nwg.x) * 32u;
    let t0 = wid.z * 64u;
    // Output tile of this thread: rows row0 + 2·tr + (0, 1), tokens t0 + 4·tc + (0..3).
    let tr = tid & 15u;
    let tc = tid >> 4u;

    var tsc = vec4<f32>(1.0);
//#if NORM
    // RMSNorm scale of each tile token (4 threads per token), through xs
    // before the K loop needs it.
    {
        let k = tid >> 2u;
        var ss = 0.0;
        if t0 + k < n {
            let base = (t0 + k) * p.x_stride;
            for (var i = tid & 3u; i < p.cols / 4u; i += 4u) {
                let v = x[base + i];
                ss += dot(v, v);
            }
        }
        xs[tid] = vec4<f32>(ss, 0.0, 0.0, 0.0);
        workgroupBarrier();
        for (var j = 0u; j < 4u; j++) {
            let q = 16u * tc + 4u * j;
            let s2 = (xs[q].x + xs[q + 1u].x) + (xs[q + 2u].x + xs[q + 3u].x);
            tsc[j] = inverseSqrt(s2 / f32(p.cols) + p.eps);
        }
        workgroupBarrier();
    }
//#endif

    // Stagers: threads 0..31 decode row row0 + tid's block; threads 32..255
    // load the tile's 64 tokens × 8 vec4 of input (element (token tt, vec4 j)
    // at i = j·64 + tt, i ≡ tid − 32 mod 224), one block ahead.
    let wrow = row0 + tid;
    // Raw words of blocks b and b + 1: weights come from memory two steps
    // ahead of their use.
    var wraw: array<vec4<u32>, 8>;
    var wnext: array<vec4<u32>, 8>;
    var xa: array<vec4<f32>, 3>;
    var xb: array<vec4<f32>, 3>;
    if tid < 32u {
        if wrow < p.rows {
            wraw = load_raw(wrow, 0u);
            if p.blocks > 1u {
                wnext = load_raw(wrow, 1u);
            }
        }
    } else {
        for (var s = 0u; s < 3u; s++) {
            let i = tid - 32u + 224u * s;
            let tt = i & 63u;
            if i < 512u && t0 + tt < n {
                let base = (t0 + tt) * p.x_stride + (i >> 6u);
                xa[s] = x[base];
//#if NORM
                xb[s] = gain[i >> 6u];
//#endif
//#if SWIGLU
                xb[s] = x[base + p.cols / 4u];
//#endif
            }
        }
    }

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    for (var b = 0u; b < p.blocks; b++) {
        // Stage block b: W as ws[k][row pair], X as xs[k][token quad].
        if tid < 32u {
            var wv: array<vec4<f32>, 8>;
            if wrow < p.rows {
                wv = decode_raw(wrow, b, wraw);
            }
            for (var j = 0u; j < 8u; j++) {
                let q = (4u * j) * 16u + (tid >> 1u);
                let h = tid & 1u;
                ws[q][h] = wv[j].x;
                ws[q + 16u][h] = wv[j].y;
                ws[q + 32u][h] = wv[j].z;
                ws[q + 48u][h] = wv[j].w;
            }
        } else {
            for (var s = 0u; s < 3u; s++) {
                let i = tid - 32u + 224u * s;
                if i < 512u {
                    let tt = i & 63u;
                    var v = xa[s];
//#if NORM
                    v *= xb[s];
//#endif
//#if SWIGLU
                    v = v / (vec4<f32>(1.0) + exp(-v)) * xb[s];
//#endif
                    let q = (4u * (i >> 6u)) * 16u + (tt >> 2u);
                    let h = tt & 3u;
                    xs[q][h] = v.x;
                    xs[q + 16u][h] = v.y;
                    xs[q + 32u][h] = v.z;
                    xs[q + 48u][h] = v.w;
                }
            }
        }
        workgroupBarrier();
        // Loads for block b + 2 (weights) and b + 1 (inputs), in flight
        // during the products.
        if b + 1u < p.blocks {
            if tid < 32u {
                wraw = wnext;
                if wrow < p.rows && b + 2u < p.blocks {
                    wnext = load_raw(wrow, b + 2u);
                }
            } else {
                for (var s = 0u; s < 3u; s++) {
                    let i = tid - 32u + 224u * s;
                    let tt = i & 63u;
                    if i < 512u && t0 + tt < n {
                        let base = (t0 + tt) * p.x_stride + (b + 1u) * 8u + (i >> 6u);
                        xa[s] = x[base];
//#if NORM
                        xb[s] = gain[(b + 1u) * 8u + (i >> 6u)];
//#endif
//#if SWIGLU
                        xb[s] = x[base + p.cols / 4u];
//#endif
                    }
                }
            }
        }
        for (var k = 0u; k < 32u; k++) {
            let wk = ws[k * 16u + tr];
            let xk = xs[k * 16u + tc];
            acc0 += wk.x * xk;
            acc1 += wk.y * xk;
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 2u; i++) {
        let row = row0 + 2u * tr + i;
        let a = select(acc0, acc1, i == 1u) * tsc;
        for (var j = 0u; j < 4u; j++) {
            let t = t0 + 4u * tc + j;
            if row < p.rows && t < n {
                var s = a[j];
                let yi = t * p.y_stride + p.y_offset + row;
                if p.accumulate != 0u {
                    s += y[yi];
                }
                y[yi] = s;
            }
        }
    }
}
