// words.metal — MSL twin of words.wgsl: picking a block's words out of
// aligned uint4 loads (matvec, matmul, matmul_q8) and unpacking Q4_0, Q4_1
// and Q8_0 blocks from them (layouts: see words.wgsl), the helpers of the
// Q5_0, Q5_1 and K-quant block files (bytes32, spread16, kq_scale_min),
// and the byte dot product and packing WGSL has built in (dot4I8Packed,
// pack4xI8). Include-only.

// The int8 dots' scale per unit of their integer sum: with INT8X2 the two
// levels are added as integers, 254·n₁ + n₂, and converted once (see
// words.wgsl).
//#if INT8X2
constant float X_LEVEL = 1.0f / 254.0f;
//#else
constant float X_LEVEL = 1.0f;
//#endif

// Words k..k+3 (k = 0..3) of the 8 words a ++ b, without dynamic indexing.
uint4 window4(uint4 a, uint4 b, uint k) {
    return k == 0u ? a : k == 1u ? uint4(a.y, a.z, a.w, b.x) : k == 2u ? uint4(a.z, a.w, b.x, b.y) : uint4(a.w, b.x, b.y, b.z);
}

// Component k (0..3) of v.
uint pick(uint4 v, uint k) {
    return k == 0u ? v.x : k == 1u ? v.y : k == 2u ? v.z : v.w;
}

// 4-way signed byte dot product (WGSL's dot4I8Packed).
int dot4i8(uint a, uint b) {
    int4 x = int4(as_type<char4>(a));
    int4 y = int4(as_type<char4>(b));
    return (x.x * y.x + x.y * y.y) + (x.z * y.z + x.w * y.w);
}

// Four signed bytes packed into a word (WGSL's pack4xI8).
uint pack4i8(int4 q) {
    return as_type<uint>(char4(q));
}

// A Q4_0 or Q4_1 block: 4 words of nibbles, scale d, minimum m (0 for Q4_0).
struct Q4Block {
    uint4 q;
    float d;
    float m;
};

// The Q4_0 block at byte o, within a ++ c.
Q4Block unpack_q4_0(uint4 a, uint4 c, uint o) {
    uint s = o & 15u;
    uint4 r = window4(a, c, s >> 2u);
    uint4 nxt = uint4(r.y, r.z, r.w, pick(c, s >> 2u));
    bool odd = (s & 2u) != 0u;
    // Both arms named values: a conditional between a local and a temporary
    // of class type is refused by the address-space check (msl_interface).
    uint4 joined = (r >> uint4(16u)) | (nxt << uint4(16u));
    Q4Block k;
    k.q = odd ? nxt : joined;
    k.d = float(as_type<half2>(odd ? r.x >> 16u : r.x).x);
    k.m = 0.0f;
    return k;
}

// The Q4_1 block at byte o, within a ++ c.
Q4Block unpack_q4_1(uint4 a, uint4 c, uint o) {
    uint k = (o & 15u) >> 2u;
    uint4 r = window4(a, c, k);
    float2 dm = float2(as_type<half2>(r.x));
    Q4Block blk;
    blk.q = uint4(r.y, r.z, r.w, pick(c, k));
    blk.d = dm.x;
    blk.m = dm.y;
    return blk;
}

// A Q8_0 block: 32 signed bytes as 8 words (q0: elements 0..15) and scale d.
struct Q8Block {
    uint4 q0;
    uint4 q1;
    float d;
};

// The Q8_0 block at byte o, within a ++ c ++ e.
Q8Block unpack_q8_0(uint4 a, uint4 c, uint4 e, uint o) {
    uint s = o & 15u;
    uint k = s >> 2u;
    uint4 r0 = window4(a, c, k);
    uint4 r1 = window4(c, e, k);
    uint4 n0 = uint4(r0.y, r0.z, r0.w, r1.x);
    uint4 n1 = uint4(r1.y, r1.z, r1.w, pick(e, k));
    bool odd = (s & 2u) != 0u;
    uint4 joined0 = (r0 >> uint4(16u)) | (n0 << uint4(16u));
    uint4 joined1 = (r1 >> uint4(16u)) | (n1 << uint4(16u));
    Q8Block blk;
    blk.q0 = odd ? n0 : joined0;
    blk.q1 = odd ? n1 : joined1;
    blk.d = float(as_type<half2>(odd ? r0.x >> 16u : r0.x).x);
    return blk;
}

// 32 bytes as 8 words: v[0] holds bytes 0..15, v[1] bytes 16..31.
struct Bytes32 {
    uint4 v[2];
};

// The 32 bytes starting at byte o (o even) of the 48 bytes a ++ c ++ e, where
// a is the aligned word holding byte o (s = o mod 16 ≤ 14 so s + 32 ≤ 48),
// as 8 words: the unaligned loads of Q5_0 blocks made of aligned ones.
Bytes32 bytes32(uint4 a, uint4 c, uint4 e, uint o) {
    uint s = o & 15u;
    uint k = s >> 2u;
    uint4 r0 = window4(a, c, k);
    uint4 r1 = window4(c, e, k);
    uint4 n0 = uint4(r0.y, r0.z, r0.w, r1.x);
    uint4 n1 = uint4(r1.y, r1.z, r1.w, pick(e, k));
    bool odd = (s & 2u) != 0u;
    uint4 joined0 = (r0 >> uint4(16u)) | (n0 << uint4(16u));
    uint4 joined1 = (r1 >> uint4(16u)) | (n1 << uint4(16u));
    Bytes32 t;
    t.v[0] = odd ? joined0 : r0;
    t.v[1] = odd ? joined1 : r1;
    return t;
}

// Bits 0..3 of x as the fifth bits (value 16) of 4 codes packed one per
// byte (Q5_0, Q5_1: one qh bit per element).
uint spread16(uint x) {
    return ((x & 1u) | ((x & 2u) << 7u) | ((x & 4u) << 14u) | ((x & 8u) << 21u)) << 4u;
}

// Sub-block j's (scale, min) of a Q4_K / Q5_K super-block from its first
// word h: f16 d and dmin in h.x, then 12 bytes of 6-bit scales and mins
// (bytes 0..3 in h.y, 4..7 in h.z, 8..11 in h.w): for j < 4 the low 6 bits
// of bytes j and j + 4; else the nibbles of byte j + 4 with the top 2 bits
// of bytes j − 4 and j. Returns (d·scale, dmin·min).
float2 kq_scale_min(uint4 h, uint j) {
    float2 dm = float2(as_type<half2>(h.x));
    uint sh = 8u * (j & 3u);
    uint sc = 0u;
    uint mn = 0u;
    if (j < 4u) {
        sc = (h.y >> sh) & 63u;
        mn = (h.z >> sh) & 63u;
    } else {
        sc = ((h.w >> sh) & 15u) | (((h.y >> (sh + 6u)) & 3u) << 4u);
        mn = ((h.w >> (sh + 4u)) & 15u) | (((h.z >> (sh + 6u)) & 3u) << 4u);
    }
    return float2(dm.x * float(sc), dm.y * float(mn));
}
