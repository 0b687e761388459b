// matmul_decode.metal — MSL twin of matmul_decode.wgsl, included by
// matmul.metal and matmul_coop.metal: load_raw and decode4 over MatmulArgs.

// What the helpers need (MSL has no module-scope buffers).
struct MatmulArgs {
    device const uint4* w;
    uint blocks;
};

// The aligned words of one block's vec4 (see matmul_decode.wgsl; WGSL's
// array<vec4<u32>, 3>, named apart from the Raw of the block files).
struct MatmulRaw {
    uint4 r[3];
};

//#include words

// Q5_0, Q5_1 and the K-quants dequantize through their block file's
// block_vec4_pair (flag BLOCK_VEC4), loading as they decode. The block files'
// helpers take the matvec kernels' MatvecArgs and read only its w and
// blocks, which MatmulArgs holds: here they take MatmulArgs.
typedef MatmulArgs MatvecArgs;
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

// Four 4-bit fields of q starting at bit `sh` of each byte, as floats.
float4 nib4(uint q, uint sh) {
    return float4((uint4(q, q >> 8u, q >> 16u, q >> 24u) >> uint4(sh)) & uint4(15u));
}

// Four signed bytes of q as floats.
float4 i8x4(uint q) {
    return float4(int4(as_type<int>(q << 24u), as_type<int>(q << 16u), as_type<int>(q << 8u), as_type<int>(q)) >> int4(24));
}

// The aligned words decode4 needs for vec4s j and j + 4 (j < 4) of block b
// of `row` (see matmul.wgsl); none with BLOCK_VEC4.
MatmulRaw load_raw(MatmulArgs m, uint row, uint b, uint j) {
    MatmulRaw r;
    r.r[0] = uint4(0u);
    r.r[1] = uint4(0u);
    r.r[2] = uint4(0u);
//#if !BLOCK_VEC4
//#if Q4_0
    uint o = ((row * m.blocks + b) * 18u) >> 4u;
    r.r[0] = m.w[o];
    r.r[1] = m.w[o + 1u];
//#else
//#if Q4_1
    uint o = ((row * m.blocks + b) * 20u) >> 4u;
    r.r[0] = m.w[o];
    r.r[1] = m.w[o + 1u];
//#else
//#if Q8_0
    uint o = ((row * m.blocks + b) * 34u) >> 4u;
    r.r[0] = m.w[o];
    r.r[1] = m.w[o + 1u];
    r.r[2] = m.w[o + 2u];
//#else
//#if F16
    r.r[0] = m.w[(row * m.blocks + b) * 4u + (j >> 1u)];
    r.r[1] = m.w[(row * m.blocks + b) * 4u + 2u + (j >> 1u)];
//#else
    r.r[0] = m.w[(row * m.blocks + b) * 8u + j];
    r.r[1] = m.w[(row * m.blocks + b) * 8u + 4u + j];
//#endif
//#endif
//#endif
//#endif
//#endif
    return r;
}

// Elements 4j..4j+3 of block b of `row`, dequantized from its raw words
// (BLOCK_VEC4 formats stage through block_vec4_pair instead).
//#if !BLOCK_VEC4
float4 decode4(MatmulArgs m, uint row, uint b, uint j, MatmulRaw raw) {
//#if Q4_0
    Q4Block k = unpack_q4_0(raw.r[0], raw.r[1], (row * m.blocks + b) * 18u);
    return k.d * (nib4(pick(k.q, j & 3u), j >= 4u ? 4u : 0u) - float4(8.0f));
//#else
//#if Q4_1
    Q4Block k = unpack_q4_1(raw.r[0], raw.r[1], (row * m.blocks + b) * 20u);
    return k.d * nib4(pick(k.q, j & 3u), j >= 4u ? 4u : 0u) + float4(k.m);
//#else
//#if Q8_0
    Q8Block k = unpack_q8_0(raw.r[0], raw.r[1], raw.r[2], (row * m.blocks + b) * 34u);
    return k.d * i8x4(j < 4u ? pick(k.q0, j & 3u) : pick(k.q1, j & 3u));
//#else
//#if F16
    uint4 q = j >= 4u ? raw.r[1] : raw.r[0];
    return (j & 1u) == 0u ? float4(float2(as_type<half2>(q.x)), float2(as_type<half2>(q.y)))
                          : float4(float2(as_type<half2>(q.z)), float2(as_type<half2>(q.w)));
//#else
    return as_type<float4>(j >= 4u ? raw.r[1] : raw.r[0]);
//#endif
//#endif
//#endif
//#endif
}
//#endif
