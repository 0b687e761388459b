// words.wgsl — picking a block's words out of aligned vec4<u32> loads, for
// the kernels that read GGUF blocks (18, 20 or 34 bytes, packed back to back)
// with 16-byte loads: matvec, matmul, matmul_q8. Include-only.

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
