// words.wgsl — picking a block's words out of aligned vec4<u32> loads, for
// the kernels that read GGUF blocks (18, 20 or 34 bytes, packed back to back)
// with 16-byte loads: matvec, matmul, matmul_q8. Include-only.
//
// The unpack_* functions take the aligned words holding a block and its byte
// offset o (only o mod 16 matters): a Q4_0 (18 bytes) or Q8_0 (34 bytes)
// block starts on any even byte, a Q4_1 block (20 bytes) on a multiple of 4.

// The int8 dots' scale per unit of their integer sum: with INT8X2 the two
// levels' sums n₁ (codes at d) and n₂ (at d/254) are added as integers,
// 254·n₁ + n₂, and converted once (int→float conversions run at a quarter
// of the FMA rate on NVIDIA GPUs); below 2²⁴ (Q4_0, Q4_K: 32·15·127·254 +
// 32·15·127) that sum converts exactly, above it (5-, 6- and 8-bit weights)
// with a relative rounding of at most 2⁻²⁴.
//#if INT8X2
const X_LEVEL: f32 = 1.0 / 254.0;
//#else
const X_LEVEL: f32 = 1.0;
//#endif

// Words k..k+3 (k = 0..3) of the 8 words a ++ b, with selects: a dynamic
// vector index would cost more.
fn window4(a: vec4<u32>, b: vec4<u32>, k: u32) -> vec4<u32> {
    return select(select(select(vec4<u32>(a.w, b.x, b.y, b.z), vec4<u32>(a.z, a.w, b.x, b.y), k == 2u),
        vec4<u32>(a.y, a.z, a.w, b.x), k == 1u), a, k == 0u);
}

// Component k (0..3) of v.
fn pick(v: vec4<u32>, k: u32) -> u32 {
    return select(select(select(v.w, v.z, k == 2u), v.y, k == 1u), v.x, k == 0u);
}

// A Q4_0 or Q4_1 block: its 16 bytes of nibbles as 4 words (element j the low
// nibble of byte j, element j+16 its high nibble), scale d, minimum m (0 for
// Q4_0, whose value is d·(q − 8)).
struct Q4Block {
    q: vec4<u32>,
    d: f32,
    m: f32,
}

// The Q4_0 block at byte o, within a ++ c (s = o mod 16 ≤ 14, s + 18 ≤ 32):
// s ≡ 2 (mod 4): d is the high half of word s/4 and the nibbles are the next
// 4 words; s ≡ 0: d is the low half and the nibbles start 2 bytes later.
fn unpack_q4_0(a: vec4<u32>, c: vec4<u32>, o: u32) -> Q4Block {
    let s = o & 15u;
    let r = window4(a, c, s >> 2u);
    let nxt = vec4<u32>(r.y, r.z, r.w, pick(c, s >> 2u));
    let odd = (s & 2u) != 0u;
    let q = select((r >> vec4<u32>(16u)) | (nxt << vec4<u32>(16u)), nxt, odd);
    return Q4Block(q, unpack2x16float(select(r.x, r.x >> 16u, odd)).x, 0.0);
}

// The Q4_1 block at byte o, within a ++ c: d and m in word k = (o mod 16)/4,
// the nibbles in words k+1 .. k+4.
fn unpack_q4_1(a: vec4<u32>, c: vec4<u32>, o: u32) -> Q4Block {
    let k = (o & 15u) >> 2u;
    let r = window4(a, c, k);
    let dm = unpack2x16float(r.x);
    return Q4Block(vec4<u32>(r.y, r.z, r.w, pick(c, k)), dm.x, dm.y);
}

// A Q8_0 block: its 32 signed bytes as 8 words (elements 0..15 in q0,
// 16..31 in q1) and scale d.
struct Q8Block {
    q0: vec4<u32>,
    q1: vec4<u32>,
    d: f32,
}

// The Q8_0 block at byte o, within a ++ c ++ e (s = o mod 16, s + 34 ≤ 48):
// d in word s/4 (high half if s ≡ 2 mod 4), the 32 bytes in the 8 words
// after d (2 bytes into word s/4 when s ≡ 0 mod 4).
fn unpack_q8_0(a: vec4<u32>, c: vec4<u32>, e: vec4<u32>, o: u32) -> Q8Block {
    let s = o & 15u;
    let k = s >> 2u;
    let r0 = window4(a, c, k);
    let r1 = window4(c, e, k);
    let n0 = vec4<u32>(r0.y, r0.z, r0.w, r1.x);
    let n1 = vec4<u32>(r1.y, r1.z, r1.w, pick(e, k));
    let odd = (s & 2u) != 0u;
    return Q8Block(
        select((r0 >> vec4<u32>(16u)) | (n0 << vec4<u32>(16u)), n0, odd),
        select((r1 >> vec4<u32>(16u)) | (n1 << vec4<u32>(16u)), n1, odd),
        unpack2x16float(select(r0.x, r0.x >> 16u, odd)).x,
    );
}

// The 32 bytes starting at byte o (o even) of the 48 bytes a ++ c ++ e, where
// a is the aligned word holding byte o (s = o mod 16 ≤ 14 so s + 32 ≤ 48),
// as 8 words: the unaligned loads of Q5_0 blocks made of aligned ones.
fn bytes32(a: vec4<u32>, c: vec4<u32>, e: vec4<u32>, o: u32) -> array<vec4<u32>, 2> {
    let s = o & 15u;
    let k = s >> 2u;
    let r0 = window4(a, c, k);
    let r1 = window4(c, e, k);
    let n0 = vec4<u32>(r0.y, r0.z, r0.w, r1.x);
    let n1 = vec4<u32>(r1.y, r1.z, r1.w, pick(e, k));
    let odd = (s & 2u) != 0u;
    return array<vec4<u32>, 2>(
        select(r0, (r0 >> vec4<u32>(16u)) | (n0 << vec4<u32>(16u)), odd),
        select(r1, (r1 >> vec4<u32>(16u)) | (n1 << vec4<u32>(16u)), odd),
    );
}

// Bits 0..3 of x as the fifth bits (value 16) of 4 codes packed one per
// byte (Q5_0, Q5_1: one qh bit per element).
fn spread16(x: u32) -> u32 {
    return ((x & 1u) | ((x & 2u) << 7u) | ((x & 4u) << 14u) | ((x & 8u) << 21u)) << 4u;
}

// Sub-block j's (scale, min) of a Q4_K / Q5_K super-block from its first
// word h: f16 d and dmin in h.x, then 12 bytes of 6-bit scales and mins
// (bytes 0..3 in h.y, 4..7 in h.z, 8..11 in h.w): for j < 4 the low 6 bits
// of bytes j and j + 4; else the nibbles of byte j + 4 with the top 2 bits
// of bytes j − 4 and j. Returns (d·scale, dmin·min).
fn kq_scale_min(h: vec4<u32>, j: u32) -> vec2<f32> {
    let dm = unpack2x16float(h.x);
    let sh = 8u * (j & 3u);
    var sc: u32;
    var mn: u32;
    if j < 4u {
        sc = (h.y >> sh) & 63u;
        mn = (h.z >> sh) & 63u;
    } else {
        sc = ((h.w >> sh) & 15u) | (((h.y >> (sh + 6u)) & 3u) << 4u);
        mn = ((h.w >> (sh + 4u)) & 15u) | (((h.z >> (sh + 6u)) & 3u) << 4u);
    }
    return vec2<f32>(dm.x * f32(sc), dm.y * f32(mn));
}
