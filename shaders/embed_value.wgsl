// embed_value.wgsl — one element of the embedding table, dequantized from
// its layout as GpuMatrix::upload leaves it (GGUF's; Q6_K's GPU layout):
// what embed and embed_batch share. Include only; the
// table is bound as `table: array<u32>` and read as aligned u32 words.
// Exactly one format flag (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K,
// F16, F32) is set.

// Byte at byte offset o of the table.
fn byte_at(o: u32) -> u32 {
    return (table[o >> 2u] >> ((o & 3u) * 8u)) & 0xFFu;
}

// f16 at even byte offset o of the table.
fn half_at(o: u32) -> f32 {
    let v = unpack2x16float(table[o >> 2u]);
    return select(v.x, v.y, (o & 2u) != 0u);
}

// Sub-block j's (scale, min) codes of the Q4_K / Q5_K super-block at byte o:
// 6-bit fields of the 12 bytes after d and dmin (quant::k_common::scale_min).
fn scale_min_k4(o: u32, j: u32) -> vec2<f32> {
    let q = o + 4u;
    if j < 4u {
        return vec2<f32>(f32(byte_at(q + j) & 63u), f32(byte_at(q + j + 4u) & 63u));
    }
    let sc = (byte_at(q + j + 4u) & 15u) | ((byte_at(q + j - 4u) >> 6u) << 4u);
    let mn = (byte_at(q + j + 4u) >> 4u) | ((byte_at(q + j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(mn));
}

// Element e of row `row` of the table (p.cols elements per row).
fn table_value(row: u32, e: u32) -> f32 {
    let b = e / 32u;
    let j = e % 32u;
    let blk = row * (p.cols / 32u) + b;
    var v = 0.0;
//#if F32
    v = bitcast<f32>(table[row * p.cols + e]);
//#endif
//#if F16
    v = half_at((row * p.cols + e) * 2u);
//#endif
//#if Q8_0
    let o = blk * 34u;
    v = half_at(o) * f32((bitcast<i32>(byte_at(o + 2u + j) << 24u)) >> 24u);
//#endif
//#if Q4_0
    let o = blk * 18u;
    let q = (byte_at(o + 2u + (j & 15u)) >> ((j >> 4u) * 4u)) & 15u;
    v = half_at(o) * (f32(q) - 8.0);
//#endif
//#if Q4_1
    let o = blk * 20u;
    let q = (byte_at(o + 4u + (j & 15u)) >> ((j >> 4u) * 4u)) & 15u;
    v = half_at(o) * f32(q) + half_at(o + 2u);
//#endif
//#if Q5_0
    let o = blk * 22u;
    let qh = (byte_at(o + 2u + j / 8u) >> (j % 8u)) & 1u;
    let q = ((byte_at(o + 6u + (j & 15u)) >> ((j >> 4u) * 4u)) & 15u) | (qh << 4u);
    v = half_at(o) * (f32(q) - 16.0);
//#endif
//#if Q5_1
    let o = blk * 24u;
    let qh = (byte_at(o + 4u + j / 8u) >> (j % 8u)) & 1u;
    let q = ((byte_at(o + 8u + (j & 15u)) >> ((j >> 4u) * 4u)) & 15u) | (qh << 4u);
    v = half_at(o) * f32(q) + half_at(o + 2u);
//#endif
    // K-quants: super-block of 256, sub-block (or group) g, element i.
    let sb = row * (p.cols / 256u) + e / 256u;
    let g = (e % 256u) / 32u;
//#if Q4_K
    let o = sb * 144u;
    let sm = scale_min_k4(o, g);
    let q = (byte_at(o + 16u + 32u * (g / 2u) + j) >> (4u * (g & 1u))) & 15u;
    v = half_at(o) * sm.x * f32(q) - half_at(o + 2u) * sm.y;
//#endif
//#if Q5_K
    let o = sb * 176u;
    let sm = scale_min_k4(o, g);
    let lo = (byte_at(o + 48u + 32u * (g / 2u) + j) >> (4u * (g & 1u))) & 15u;
    let q = lo | (((byte_at(o + 16u + j) >> g) & 1u) << 4u);
    v = half_at(o) * sm.x * f32(q) - half_at(o + 2u) * sm.y;
//#endif
//#if Q6_K
    // In the GPU layout (block_q6_k.wgsl): periods of 8 super-blocks, 8
    // bodies of 208 bytes then their d's; top-bit field k of a half's byte at
    // bit 4, 6, 2, 0 (the nibbles of 0x0264).
    let period = (sb / 8u) * 1680u;
    let o = period + (sb % 8u) * 208u;
    let lo = (byte_at(o + 16u * g + (j & 15u)) >> (4u * (j >> 4u))) & 15u;
    let at = (0x0264u >> (4u * ((j & 15u) / 4u))) & 15u;
    let q = lo | (((byte_at(o + 128u + 8u * g + 4u * (j >> 4u) + (j & 3u)) >> at) & 3u) << 4u);
    let sc = f32(bitcast<i32>(byte_at(o + 192u + (e % 256u) / 16u) << 24u) >> 24u);
    v = half_at(period + 1664u + 2u * (sb % 8u)) * sc * (f32(q) - 32.0);
//#endif
    return v;
}
