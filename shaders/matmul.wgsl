// matmul.wgsl — batched matrix products for prompt processing:
//   Y[t, row] (=|+=) W[row,:] · X[t,:]   for t in 0..n_tokens,
// W in its GGUF layout, read with aligned vec4<u32> loads like the matvec
// kernels. The format is chosen by one flag: Q4_0, Q4_1, Q8_0, F16, else F32.
//
// Workgroup layout: 256 threads = 8 rows × 32 lanes, and a tile of 16 tokens
// (workgroup z). Lane l of a row takes blocks l, l+32, ...; each weight block
// is decoded once into registers and multiplied with the 16 tokens' inputs,
// so W is read once per 16 tokens instead of once per token.
//
// Token t's input row starts at vec4 index t·x_stride of X; its output row
// at float t·y_stride + y_offset of Y. The token count is chunk[1] (the chunk
// header the host writes once per chunk).
//
// Variants: NORM fuses RMSNorm per token: X[t] → rmsnorm(X[t]) ⊙ gain (a
// scalar per token, applied after the dot); SWIGLU: X[t] holds gate then up
// (each `cols` long) and the input is silu(gate) ⊙ up. SUBGROUPS pre-reduces
// the lane sums with subgroup shuffles (any subgroup size), else all 32
// partials of a row go through workgroup memory.

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> chunk: array<u32>;
//#if NORM
@group(0) @binding(5) var<storage, read> gain: array<vec4<f32>>;
//#endif

// Lane partials of 8 tokens × 256 threads (one reduction round).
var<workgroup> part: array<f32, 2048>;
// Per-token RMSNorm scale of the tile.
var<workgroup> tscale: array<f32, 16>;

// 4 input floats at vec4 index i of the token row starting at vec4 `base`.
fn xg(base: u32, i: u32) -> vec4<f32> {
//#if NORM
    return x[base + i] * gain[i];
//#else
//#if SWIGLU
    let g = x[base + i];
    let u = x[base + p.cols / 4u + i];
    return g / (vec4<f32>(1.0) + exp(-g)) * u;
//#else
    return x[base + i];
//#endif
//#endif
}

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

// Block b of `row` dequantized: elements 4j..4j+3 in v[j].
fn decode_block(row: u32, b: u32) -> array<vec4<f32>, 8> {
    var v: array<vec4<f32>, 8>;
//#if Q4_0
    // 18-byte blocks at even offsets: within two aligned words (see matvec_q4_0).
    let o = (row * p.blocks + b) * 18u;
    let a = w[o >> 4u];
    let c = w[(o >> 4u) + 1u];
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
    let a = w[o >> 4u];
    let c = w[(o >> 4u) + 1u];
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
    let a = w[o >> 4u];
    let c = w[(o >> 4u) + 1u];
    let e = w[(o >> 4u) + 2u];
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
    let o = (row * p.blocks + b) * 4u;
    for (var j = 0u; j < 4u; j++) {
        let q = w[o + j];
        v[2u * j] = vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
        v[2u * j + 1u] = vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w));
    }
//#else
    let o = (row * p.blocks + b) * 8u;
    for (var j = 0u; j < 8u; j++) {
        v[j] = bitcast<vec4<f32>>(w[o + j]);
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
//#if SUBGROUPS
    @builtin(subgroup_size) sg_size: u32,
//#endif
) {
    let n = chunk[1];
    let row0 = (wid.x + wid.y * nwg.x) * 8u;
    let row = row0 + (tid >> 5u);
    let lane = tid & 31u;
    let t0 = wid.z * 16u;

    var acc: array<f32, 16>;
    if row < p.rows {
        for (var b = lane; b < p.blocks; b += 32u) {
            let wv = decode_block(row, b);
            for (var k = 0u; k < 16u; k++) {
                if t0 + k >= n {
                    break;
                }
                let base = (t0 + k) * p.x_stride;
                var s = 0.0;
                for (var j = 0u; j < 8u; j++) {
                    s += dot(wv[j], xg(base, b * 8u + j));
                }
                acc[k] += s;
            }
        }
    }

//#if NORM
    // sum(x²) of each tile token: 16 threads per token.
    {
        let k = tid >> 4u;
        var ss = 0.0;
        if t0 + k < n {
            let base = (t0 + k) * p.x_stride;
            for (var i = tid & 15u; i < p.cols / 4u; i += 16u) {
                let v = x[base + i];
                ss += dot(v, v);
            }
        }
        part[tid] = ss;
        workgroupBarrier();
        if tid < 16u {
            var s = 0.0;
            for (var i = 0u; i < 16u; i++) {
                s += part[tid * 16u + i];
            }
            tscale[tid] = inverseSqrt(s / f32(p.cols) + p.eps);
        }
    }
//#endif

    // Sum each (row, token) over its 32 lanes, 8 tokens per round.
    var g = 1u;
//#if SUBGROUPS
    g = min(32u, sg_size);
//#endif
    for (var r = 0u; r < 2u; r++) {
        workgroupBarrier();
        for (var k = 0u; k < 8u; k++) {
            var v = acc[r * 8u + k];
//#if SUBGROUPS
            for (var off = g >> 1u; off > 0u; off >>= 1u) {
                v += subgroupShuffleXor(v, off);
            }
//#endif
            part[k * 256u + tid] = v;
        }
        workgroupBarrier();
        if tid < 64u {
            let k = r * 8u + (tid & 7u);
            let rr = row0 + (tid >> 3u);
            let t = t0 + k;
            if rr < p.rows && t < n {
                let base = (tid & 7u) * 256u + (tid >> 3u) * 32u;
                var s = 0.0;
                for (var l = 0u; l < 32u; l += g) {
                    s += part[base + l];
                }
//#if NORM
                s *= tscale[k];
//#endif
                let yi = t * p.y_stride + p.y_offset + rr;
                if p.accumulate != 0u {
                    s += y[yi];
                }
                y[yi] = s;
            }
        }
    }
}
