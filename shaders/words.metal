// words.metal — MSL twin of words.wgsl: picking a block's words out of
// aligned uint4 loads (matvec, matmul, matmul_q8), and the byte dot product
// and packing WGSL has built in (dot4I8Packed, pack4xI8). Include-only.

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
