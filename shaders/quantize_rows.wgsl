// quantize_rows.wgsl — the input side of matmul_q8: each token's input row
// (x; rmsnorm(x) ⊙ gain with NORM; silu(gate) ⊙ up with SWIGLU, X[t] holding
// gate then up) quantized per 32-element block to int8 codes as
// quant::q8_act does: d = max|v|/127, codes round(v·(1/d)), s = d·Σcodes.
// With NORM the token's RMSNorm scale multiplies d and s, so the matmul and
// its reduce pass need no norm of their own.
//
// Output `q` (u32 words): the codes of token t, block b at words
// (t·blocks + b)·8 .. +8 (4 per word, element order); its (d, s) as f32 bits
// at words part_tokens·blocks·8 + (t·blocks + b)·2 .. +2. One workgroup per
// token (z); the token count is chunk[1].
//
// HALF: the inputs of matmul.wgsl's HALF_X variants instead: each value
// (times the RMSNorm scale with NORM) clamped to f16's range and rounded to
// f16, block b of token t in words (t·blocks + b)·16 .. +16, words 4j..4j+3
// holding elements 4j..4j+3 then 16+4j..16+4j+3 (two per word, the lower
// element in the low half).

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> q: array<u32>;
@group(0) @binding(3) var<storage, read> chunk: array<u32>;
//#if NORM
@group(0) @binding(4) var<storage, read> gain: array<vec4<f32>>;
//#endif

var<workgroup> red: array<f32, 256>;

// Input vec4 i of the row starting at vec4 `base`.
fn xin(base: u32, i: u32) -> vec4<f32> {
//#if NORM
    return x[base + i] * gain[i];
//#else
//#if SWIGLU
    let g = x[base + i];
    return g / (vec4<f32>(1.0) + exp(-g)) * x[base + p.cols / 4u + i];
//#else
    return x[base + i];
//#endif
//#endif
}

//#if HALF
// f16's largest finite value.
const F16_MAX: f32 = 65504.0;

// Block b of the row at vec4 `base`, times `scale`, as halves at q[o..o+16]
// (the HALF layout above).
fn half_block(base: u32, b: u32, o: u32, scale: f32) {
    for (var j = 0u; j < 4u; j++) {
        let lo = clamp(xin(base, b * 8u + j) * scale, vec4<f32>(-F16_MAX), vec4<f32>(F16_MAX));
        let hi = clamp(xin(base, b * 8u + j + 4u) * scale, vec4<f32>(-F16_MAX), vec4<f32>(F16_MAX));
        q[o + 4u * j] = pack2x16float(vec2<f32>(lo.x, lo.y));
        q[o + 4u * j + 1u] = pack2x16float(vec2<f32>(lo.z, lo.w));
        q[o + 4u * j + 2u] = pack2x16float(vec2<f32>(hi.x, hi.y));
        q[o + 4u * j + 3u] = pack2x16float(vec2<f32>(hi.z, hi.w));
    }
}
//#endif

@compute @workgroup_size(256)
fn compute_main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = wid.z;
    let live = t < chunk[1];
    let base = t * p.x_stride;
    var scale = 1.0;
//#if NORM
    var ss = 0.0;
    if live {
        for (var i = tid; i < p.cols / 4u; i += 256u) {
            let v = x[base + i];
            ss += dot(v, v);
        }
    }
    red[tid] = ss;
    workgroupBarrier();
    for (var h = 128u; h > 0u; h >>= 1u) {
        if tid < h {
            red[tid] += red[tid + h];
        }
        workgroupBarrier();
    }
    scale = inverseSqrt(red[0] / f32(p.cols) + p.eps);
//#endif
    if !live {
        return;
    }
//#if HALF
    for (var b = tid; b < p.blocks; b += 256u) {
        half_block(base, b, (t * p.blocks + b) * 16u, scale);
    }
//#else
    let ds_base = p.part_tokens * p.blocks * 8u;
    for (var b = tid; b < p.blocks; b += 256u) {
        var v: array<vec4<f32>, 8>;
        var am = vec4<f32>(0.0);
        for (var j = 0u; j < 8u; j++) {
            v[j] = xin(base, b * 8u + j);
            am = max(am, abs(v[j]));
        }
        let d = max(max(am.x, am.y), max(am.z, am.w)) / 127.0;
        let id = select(0.0, 1.0 / d, d != 0.0);
        var qs = vec4<i32>(0);
        let o = (t * p.blocks + b) * 8u;
        for (var j = 0u; j < 8u; j++) {
            let c = vec4<i32>(round(v[j] * id));
            qs += c;
            q[o + j] = pack4xI8(c);
        }
        let dd = d * scale;
        let e = ds_base + (t * p.blocks + b) * 2u;
        q[e] = bitcast<u32>(dd);
        q[e + 1u] = bitcast<u32>(dd * f32((qs.x + qs.y) + (qs.z + qs.w)));
    }
//#endif
}
