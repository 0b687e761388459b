// matmul_decode.wgsl — included by matmul.wgsl and matmul_coop.wgsl: the
// weight side of the prefill matmuls, block by block: load_raw fetches the
// aligned words of a block's vec4s j and j + 4, decode4 dequantizes them
// (BLOCK_VEC4 formats decode through their block file's block_vec4_pair).
// Expects the including kernel's `p: MatmulParams` and `w: array<vec4<u32>>`.

//#include words

// Q5_0, Q5_1 and the K-quants dequantize through their block file's
// block_vec4_pair (flag BLOCK_VEC4), loading as they decode.
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
fn nib4(q: u32, sh: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(q, q >> 8u, q >> 16u, q >> 24u) >> vec4<u32>(sh)) & vec4<u32>(15u));
}

// Four signed bytes of q as floats.
fn i8x4(q: u32) -> vec4<f32> {
    return vec4<f32>(vec4<i32>(bitcast<i32>(q << 24u), bitcast<i32>(q << 16u), bitcast<i32>(q << 8u), bitcast<i32>(q)) >> vec4<u32>(24u));
}

// The aligned words decode4 needs for vec4s j and j + 4 (j < 4) of block b of
// `row`: the block's 2 (Q4_0, Q4_1) or 3 (Q8_0) words, or the two words
// holding those 8 values (F16, F32).
fn load_raw(row: u32, b: u32, j: u32) -> array<vec4<u32>, 3> {
    var r: array<vec4<u32>, 3>;
//#if !BLOCK_VEC4
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
    r[0] = w[(row * p.blocks + b) * 4u + (j >> 1u)];
    r[1] = w[(row * p.blocks + b) * 4u + 2u + (j >> 1u)];
//#else
    r[0] = w[(row * p.blocks + b) * 8u + j];
    r[1] = w[(row * p.blocks + b) * 8u + 4u + j];
//#endif
//#endif
//#endif
//#endif
//#endif
    return r;
}

// Elements 4j..4j+3 of block b of `row`, dequantized from its raw words r
// (load_raw's for j mod 4).
//#if !BLOCK_VEC4
fn decode4(row: u32, b: u32, j: u32, r: array<vec4<u32>, 3>) -> vec4<f32> {
//#if Q4_0
    // Element 4j+i is the low nibble of nibble byte 4j+i (j < 4), element
    // 16+4j'+i the high nibble (words.wgsl).
    let k = unpack_q4_0(r[0], r[1], (row * p.blocks + b) * 18u);
    return k.d * (nib4(pick(k.q, j & 3u), select(0u, 4u, j >= 4u)) - vec4<f32>(8.0));
//#else
//#if Q4_1
    let k = unpack_q4_1(r[0], r[1], (row * p.blocks + b) * 20u);
    return k.d * nib4(pick(k.q, j & 3u), select(0u, 4u, j >= 4u)) + vec4<f32>(k.m);
//#else
//#if Q8_0
    let k = unpack_q8_0(r[0], r[1], r[2], (row * p.blocks + b) * 34u);
    return k.d * i8x4(select(pick(k.q1, j & 3u), pick(k.q0, j & 3u), j < 4u));
//#else
//#if F16
    let q = select(r[0], r[1], j >= 4u);
    return select(vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w)),
        vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)), (j & 1u) == 0u);
//#else
    return bitcast<vec4<f32>>(select(r[0], r[1], j >= 4u));
//#endif
//#endif
//#endif
//#endif
}
//#endif
