// matvec_common.wgsl — what every matvec family (matvec_lanes, matvec_wide,
// matvec_staged, matvec_dense) shares: bindings, the reductions, the input
// vector with its fused op, the output store, and the block format. Include
// only. The vocabulary (families, fetch, rows per thread, inputs, fused ops)
// is explained once, in src/gpu/matvec.rs.
//
// Flags: a format (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, F16,
// F32) includes block_<format>,
// which defines
//   fn block_dot(row: u32, b: u32, xv: array<vec4<f32>, 8>) -> f32
// (block b of `row` dotted with xv, the input's elements b*32 .. b*32+32),
// and for every format but F16 and F32 (which define RAW) the words holding
// a block, Raw, raw_load(row, b) fetching them, and the dot from loaded
// words with f32 input (dot_raw) or with the input block as int8 codes
// (dot_raw_q8: codes of elements 0..15 in xa and 16..31 in xb, 4 signed
// bytes per word, scale d; with INT8X2 the second level's codes in xa2, xb2;
// s = d·Σcodes of both levels).
// NORM: y = W · (rmsnorm(x) ⊙ gain); SWIGLU: y = W · (silu(gate) ⊙ up);
// ATTN: y = W · (decode attention's per-chunk partials merged; binding 4 the
// step's position). SUBGROUPS: reduce with subgroup shuffles, else through
// workgroup memory.

@group(0) @binding(0) var<uniform> p: MatvecParams;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
//#if NORM
@group(0) @binding(4) var<storage, read> gain: array<vec4<f32>>;
//#endif
//#if ATTN
@group(0) @binding(4) var<storage, read> step: array<u32>;
//#endif

//#include reduce

//#include words

// Nibbles to floats without int→float conversions (a slow instruction on
// most GPUs): EXP | n, read as f32, is exactly 2²³ + n for n < 2²³. Masking a
// nibble in place keeps it scaled by its bit position, so
//   q4_lo(q) = 2²³ + (n0, 256·n1, 65536·n2, n3)       low nibbles of q's bytes,
//   q4_hi(q) = 2²³ + (16·n0, 4096·n1, 16·n2, n3)      high nibbles,
// and the caller subtracts 2²³ (+ any offset), accumulates, and undoes the
// power-of-two scales once per block (Q4_LO_SCALE, Q4_HI_SCALE): all exact.
const EXP: u32 = 0x4B000000u;
const Q4_LO_SCALE = vec4<f32>(1.0, 1.0 / 256.0, 1.0 / 65536.0, 1.0);
const Q4_HI_SCALE = vec4<f32>(1.0 / 16.0, 1.0 / 4096.0, 1.0 / 16.0, 1.0);
fn q4_lo(q: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(vec4<u32>(q & 0xFu, q & 0xF00u, q & 0xF0000u, (q >> 24u) & 0xFu) | vec4<u32>(EXP));
}
fn q4_hi(q: u32) -> vec4<f32> {
    return bitcast<vec4<f32>>(vec4<u32>(q & 0xF0u, q & 0xF000u, (q >> 16u) & 0xF0u, q >> 28u) | vec4<u32>(EXP));
}

// Σ of a Q4 block's 32 nibbles (q: its 4 words of nibble bytes, values
// 0..15, valid signed bytes) times the input codes: low nibbles (elements
// 0..15) with xa, high nibbles (16..31) with xb, four at a time.
fn nib_dot(q: vec4<u32>, xa: vec4<u32>, xb: vec4<u32>) -> i32 {
    let lo = q & vec4<u32>(0x0F0F0F0Fu);
    let hi = (q >> vec4<u32>(4u)) & vec4<u32>(0x0F0F0F0Fu);
    return (dot4I8Packed(lo.x, xa.x) + dot4I8Packed(lo.y, xa.y)) + (dot4I8Packed(lo.z, xa.z) + dot4I8Packed(lo.w, xa.w))
        + (dot4I8Packed(hi.x, xb.x) + dot4I8Packed(hi.y, xb.y)) + (dot4I8Packed(hi.z, xb.z) + dot4I8Packed(hi.w, xb.w));
}

//#if ATTN
// The attention output's vec4 i and, with `pair`, vec4 i + 1 (the caller
// keeps both in one head; else the second is 0). x holds attention.wgsl's
// records as vec4s: chunk c, head h at (c·heads + h)·(hd/4 + 1): (m, l, −,
// −), then o. Chunks up to the current position merge as
// Σ_c e^(m_c − M)·o_c / Σ_c e^(m_c − M)·l_c, M = max_c m_c.
fn attn_merge(i: u32, pair: bool) -> array<vec4<f32>, 2> {
    let hd4 = p.head_dim / 4u;
    let heads = p.cols / p.head_dim;
    let h = i / hd4;
    let n = min(step[0] / 64u + 1u, p.max_chunks);
    var mx = -3.4e38;
    for (var c = 0u; c < n; c++) {
        mx = max(mx, x[(c * heads + h) * (hd4 + 1u)].x);
    }
    var o0 = vec4<f32>(0.0);
    var o1 = vec4<f32>(0.0);
    var l = 0.0;
    for (var c = 0u; c < n; c++) {
        let b = (c * heads + h) * (hd4 + 1u);
        let ml = x[b];
        let e = exp(ml.x - mx);
        l += e * ml.y;
        let k = b + 1u + i % hd4;
        o0 += e * x[k];
        if pair {
            o1 += e * x[k + 1u];
        }
    }
    return array<vec4<f32>, 2>(o0 / l, o1 / l);
}
//#endif

// The input vector, 4 floats starting at vec4 index i: x ⊙ gain with NORM,
// silu(gate) ⊙ up with SWIGLU (x holds gate then up, each `cols` long), the
// merged attention output with ATTN, else x itself.
fn xg(i: u32) -> vec4<f32> {
//#if NORM
    return x[p.x_offset + i] * gain[i];
//#else
//#if SWIGLU
    let g = x[p.x_offset + i];
    let u = x[p.x_offset + p.cols / 4u + i];
    return g / (vec4<f32>(1.0) + exp(-g)) * u;
//#else
//#if ATTN
    return attn_merge(i, false)[0];
//#else
    return x[p.x_offset + i];
//#endif
//#endif
//#endif
}

// xg(i) and xg(i + 1) for even i (the int8 staging's two vec4s per thread).
// ATTN merges both from one pass over the chunks when they lie in one head
// (an even number of vec4s per head): half the record reads and
// exponentials of two xg calls.
fn xg2(i: u32) -> array<vec4<f32>, 2> {
//#if ATTN
    if (p.head_dim / 4u) % 2u == 0u {
        return attn_merge(i, true);
    }
//#endif
    return array<vec4<f32>, 2>(xg(i), xg(i + 1u));
}

// y[row] = v, or y[row] += v when the op accumulates (fused residual).
fn store_row(row: u32, v: f32) {
    var out = v;
    if p.accumulate != 0u {
        out += y[p.y_offset + row];
    }
    y[p.y_offset + row] = out;
}

// The block format.
//#if Q4_0
//#include block_q4_0
//#endif
//#if Q4_1
//#include block_q4_1
//#endif
//#if Q8_0
//#include block_q8_0
//#endif
//#if Q5_0
//#include block_q5_0
//#endif
//#if Q5_1
//#include block_q5_1
//#endif
//#if Q4_K
//#include block_q4_k
//#endif
//#if Q5_K
//#include block_q5_k
//#endif
//#if Q6_K
//#include block_q6_k
//#endif
//#if F16
//#include block_f16
//#endif
//#if F32
//#include block_f32
//#endif
