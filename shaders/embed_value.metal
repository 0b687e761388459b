// embed_value.metal — MSL twin of embed_value.wgsl: one element of the
// embedding table, dequantized from its upload layout (GGUF's; Q6_K's GPU
// layout): what embed and embed_batch share. Include only; MSL has no
// module-scope buffers, so the helpers take the kernel's `table` (read as
// aligned u32 words) and its EmbedParams p. Exactly one format flag (Q4_0,
// Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, F16, F32) is set.

// Byte at byte offset o of the table.
uint byte_at(device const uint* table, uint o) {
    return (table[o >> 2u] >> ((o & 3u) * 8u)) & 0xFFu;
}

// f16 at even byte offset o of the table.
float half_at(device const uint* table, uint o) {
    float2 v = float2(as_type<half2>(table[o >> 2u]));
    return select(v.x, v.y, (o & 2u) != 0u);
}

// Sub-block j's (scale, min) codes of the Q4_K / Q5_K super-block at byte o:
// 6-bit fields of the 12 bytes after d and dmin (quant::k_common::scale_min).
float2 scale_min_k4(device const uint* table, uint o, uint j) {
    uint q = o + 4u;
    if (j < 4u) {
        return float2(float(byte_at(table, q + j) & 63u), float(byte_at(table, q + j + 4u) & 63u));
    }
    uint sc = (byte_at(table, q + j + 4u) & 15u) | ((byte_at(table, q + j - 4u) >> 6u) << 4u);
    uint mn = (byte_at(table, q + j + 4u) >> 4u) | ((byte_at(table, q + j) >> 6u) << 4u);
    return float2(float(sc), float(mn));
}

// Element e of row `row` of the table (p.cols elements per row).
float table_value(constant EmbedParams& p, device const uint* table, uint row, uint e) {
    uint b = e / 32u;
    uint j = e % 32u;
    uint blk = row * (p.cols / 32u) + b;
    float v = 0.0f;
//#if F32
    v = as_type<float>(table[row * p.cols + e]);
//#endif
//#if F16
    v = half_at(table, (row * p.cols + e) * 2u);
//#endif
//#if Q8_0
    uint o = blk * 34u;
    v = half_at(table, o) * float(as_type<int>(byte_at(table, o + 2u + j) << 24u) >> 24);
//#endif
//#if Q4_0
    uint o = blk * 18u;
    uint q = (byte_at(table, o + 2u + (j & 15u)) >> ((j >> 4u) * 4u)) & 15u;
    v = half_at(table, o) * (float(q) - 8.0f);
//#endif
//#if Q4_1
    uint o = blk * 20u;
    uint q = (byte_at(table, o + 4u + (j & 15u)) >> ((j >> 4u) * 4u)) & 15u;
    v = half_at(table, o) * float(q) + half_at(table, o + 2u);
//#endif
//#if Q5_0
    uint o = blk * 22u;
    uint qh = (byte_at(table, o + 2u + j / 8u) >> (j % 8u)) & 1u;
    uint q = ((byte_at(table, o + 6u + (j & 15u)) >> ((j >> 4u) * 4u)) & 15u) | (qh << 4u);
    v = half_at(table, o) * (float(q) - 16.0f);
//#endif
//#if Q5_1
    uint o = blk * 24u;
    uint qh = (byte_at(table, o + 4u + j / 8u) >> (j % 8u)) & 1u;
    uint q = ((byte_at(table, o + 8u + (j & 15u)) >> ((j >> 4u) * 4u)) & 15u) | (qh << 4u);
    v = half_at(table, o) * float(q) + half_at(table, o + 2u);
//#endif
    // K-quants: super-block of 256, sub-block (or group) g, element i.
    uint sb = row * (p.cols / 256u) + e / 256u;
    uint g = (e % 256u) / 32u;
//#if Q4_K
    uint o = sb * 144u;
    float2 sm = scale_min_k4(table, o, g);
    uint q = (byte_at(table, o + 16u + 32u * (g / 2u) + j) >> (4u * (g & 1u))) & 15u;
    v = half_at(table, o) * sm.x * float(q) - half_at(table, o + 2u) * sm.y;
//#endif
//#if Q5_K
    uint o = sb * 176u;
    float2 sm = scale_min_k4(table, o, g);
    uint lo = (byte_at(table, o + 48u + 32u * (g / 2u) + j) >> (4u * (g & 1u))) & 15u;
    uint q = lo | (((byte_at(table, o + 16u + j) >> g) & 1u) << 4u);
    v = half_at(table, o) * sm.x * float(q) - half_at(table, o + 2u) * sm.y;
//#endif
//#if Q6_K
    // In the GPU layout (see embed_value.wgsl).
    uint period = (sb / 8u) * 1680u;
    uint o = period + (sb % 8u) * 208u;
    uint lo = (byte_at(table, o + 16u * g + (j & 15u)) >> (4u * (j >> 4u))) & 15u;
    uint at = (0x0264u >> (4u * ((j & 15u) / 4u))) & 15u;
    uint q = lo | (((byte_at(table, o + 128u + 8u * g + 4u * (j >> 4u) + (j & 3u)) >> at) & 3u) << 4u);
    float sc = float(as_type<int>(byte_at(table, o + 192u + (e % 256u) / 16u) << 24u) >> 24);
    v = half_at(table, period + 1664u + 2u * (sb % 8u)) * sc * (float(q) - 32.0f);
//#endif
    return v;
}
