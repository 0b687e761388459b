// matvec_common.metal — MSL twin of matvec_common.wgsl: what every matvec
// family shares (the reductions, the input vector with its fused op, the
// output store, the block format). Include only; the vocabulary is in
// src/gpu/matvec.rs. MSL has no module-scope buffers: the kernels fill a
// MatvecArgs with their bindings and parameters and pass it down.

//#include reduce

// Helpers for the block formats' block_dot (twins of matvec_common.wgsl's).

//#include words

// Nibbles to floats without int→float conversions: EXP | n, read as float,
// is exactly 2^23 + n for n < 2^23; a nibble masked in place stays scaled by
// its bit position (see matvec_common.wgsl), undone once per block.
constant uint EXP = 0x4B000000u;
constant float4 Q4_LO_SCALE = float4(1.0f, 1.0f / 256.0f, 1.0f / 65536.0f, 1.0f);
constant float4 Q4_HI_SCALE = float4(1.0f / 16.0f, 1.0f / 4096.0f, 1.0f / 16.0f, 1.0f);
float4 q4_lo(uint q) {
    return as_type<float4>(uint4(q & 0xFu, q & 0xF00u, q & 0xF0000u, (q >> 24u) & 0xFu) | uint4(EXP));
}
float4 q4_hi(uint q) {
    return as_type<float4>(uint4(q & 0xF0u, q & 0xF000u, (q >> 16u) & 0xF0u, q >> 28u) | uint4(EXP));
}

// Σ of a Q4 block's 32 nibbles times the input codes (see matvec_common.wgsl).
int nib_dot(uint4 q, uint4 xa, uint4 xb) {
    uint4 lo = q & uint4(0x0F0F0F0Fu);
    uint4 hi = (q >> uint4(4u)) & uint4(0x0F0F0F0Fu);
    return (dot4i8(lo.x, xa.x) + dot4i8(lo.y, xa.y)) + (dot4i8(lo.z, xa.z) + dot4i8(lo.w, xa.w))
        + (dot4i8(hi.x, xb.x) + dot4i8(hi.y, xb.y)) + (dot4i8(hi.z, xb.z) + dot4i8(hi.w, xb.w));
}

// What the per-format helpers need (MSL has no module-scope buffers).
struct MatvecArgs {
    device const uint4* w;
    device const float4* x;
    device float* y;
//#if NORM
    device const float4* gain;
//#endif
//#if ATTN
    device const uint* step;
    uint head_dim;   // MatvecParams::head_dim
    uint max_chunks; // MatvecParams::max_chunks
//#endif
    uint rows;       // MatvecParams::rows
    uint cols;       // MatvecParams::cols
    uint blocks;     // MatvecParams::blocks
    uint x_offset;   // MatvecParams::x_offset
    uint y_offset;   // MatvecParams::y_offset
    uint accumulate; // MatvecParams::accumulate
    float eps;       // MatvecParams::eps
};

//#if ATTN
// The attention output's float4 i, and into o1 with `pair` float4 i + 1 (the
// caller keeps both in one head), merged from the chunks' records (chunk c,
// head h at (c·heads + h)·(hd/4 + 1) float4s: (m, l, −, −), then o) as in
// matvec_common.wgsl.
float4 attn_merge(MatvecArgs m, uint i, bool pair, thread float4& o1) {
    uint hd4 = m.head_dim / 4u;
    uint heads = m.cols / m.head_dim;
    uint h = i / hd4;
    uint n = min(m.step[0] / 64u + 1u, m.max_chunks);
    float mx = -3.4e38f;
    for (uint c = 0u; c < n; c++) {
        mx = max(mx, m.x[(c * heads + h) * (hd4 + 1u)].x);
    }
    float4 o0 = float4(0.0f);
    float4 p1 = float4(0.0f);
    float l = 0.0f;
    for (uint c = 0u; c < n; c++) {
        uint b = (c * heads + h) * (hd4 + 1u);
        float4 ml = m.x[b];
        float e = exp(ml.x - mx);
        l += e * ml.y;
        uint k = b + 1u + i % hd4;
        o0 += e * m.x[k];
        if (pair) {
            p1 += e * m.x[k + 1u];
        }
    }
    o1 = p1 / l;
    return o0 / l;
}
//#endif

// The input vector, 4 floats starting at vec4 index i: x ⊙ gain with NORM,
// silu(gate) ⊙ up with SWIGLU (x holds gate then up, each `cols` long), the
// merged attention output with ATTN, else x itself.
float4 xg(MatvecArgs m, uint i) {
//#if NORM
    return m.x[m.x_offset + i] * m.gain[i];
//#else
//#if SWIGLU
    float4 g = m.x[m.x_offset + i];
    float4 u = m.x[m.x_offset + m.cols / 4u + i];
    return g / (float4(1.0f) + exp(-g)) * u;
//#else
//#if ATTN
    float4 unused;
    return attn_merge(m, i, false, unused);
//#else
    return m.x[m.x_offset + i];
//#endif
//#endif
//#endif
}

// xg(i) and xg(i + 1) for even i; ATTN merges both from one pass over the
// chunks when they lie in one head (an even number of float4s per head;
// see matvec_common.wgsl).
void xg2(MatvecArgs m, uint i, thread float4& x0, thread float4& x1) {
//#if ATTN
    if ((m.head_dim / 4u) % 2u == 0u) {
        x0 = attn_merge(m, i, true, x1);
        return;
    }
//#endif
    x0 = xg(m, i);
    x1 = xg(m, i + 1u);
}


// Fills the MatvecArgs of a kernel (gain: the NORM gain, step: the ATTN
// position; either may be null where the variant has none).
MatvecArgs matvec_args(constant MatvecParams& mp, device const uint4* w, device const float4* x,
    device float* y, device const float4* gain, device const uint* step) {
    MatvecArgs m;
    m.w = w;
    m.x = x;
    m.y = y;
//#if NORM
    m.gain = gain;
//#endif
//#if ATTN
    m.step = step;
    m.head_dim = mp.head_dim;
    m.max_chunks = mp.max_chunks;
//#endif
    m.rows = mp.rows;
    m.cols = mp.cols;
    m.blocks = mp.blocks;
    m.x_offset = mp.x_offset;
    m.y_offset = mp.y_offset;
    m.accumulate = mp.accumulate;
    m.eps = mp.eps;
    return m;
}

// The MatvecArgs of a kernel from its parameters as every family names
// them (p, w, x, y, and gain or step where the variant binds one).
//#if NORM
#define MATVEC_ARGS matvec_args(p, w, x, y, gain, nullptr)
//#else
//#if ATTN
#define MATVEC_ARGS matvec_args(p, w, x, y, nullptr, step)
//#else
#define MATVEC_ARGS matvec_args(p, w, x, y, nullptr, nullptr)
//#endif
//#endif

// y[row] = v, or y[row] += v when the op accumulates (fused residual).
void store_row(MatvecArgs m, uint row, float v) {
    float out = v;
    if (m.accumulate != 0u) {
        out += m.y[m.y_offset + row];
    }
    m.y[m.y_offset + row] = out;
}

// The block format (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, F16,
// F32): block_<format> defines block_dot(m, row, b, xv), and with RAW the
// Raw words, raw_load, dot_raw and dot_raw_q8 (see matvec_common.wgsl).
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
