// embed.metal — MSL twin of embed.wgsl: token embedding lookup:
// out[e] = dequantized token_embd[tok, e]. The token id is read from `tok` on
// the GPU (written by argmax or by the host), so a decode step never waits
// for the CPU. One thread per element; the table is read as aligned u32
// words of its GGUF layout. Exactly one format flag (Q4_0, Q4_1, Q8_0, F16,
// F32) is set.

// Byte at byte offset o of the table.
uint byte_at(device const uint* table, uint o) {
    return (table[o >> 2u] >> ((o & 3u) * 8u)) & 0xFFu;
}

// f16 at even byte offset o of the table.
float half_at(device const uint* table, uint o) {
    float2 v = float2(as_type<half2>(table[o >> 2u]));
    return select(v.x, v.y, (o & 2u) != 0u);
}

[[max_total_threads_per_threadgroup(256)]]
kernel void compute_main(
    constant EmbedParams& p [[buffer(0)]],
    device const uint* table [[buffer(1)]],
    device const uint* tok [[buffer(2)]],
    device float* out [[buffer(3)]],
    uint3 gid [[thread_position_in_grid]]
) {
    uint e = gid.x;
    uint row = tok[0];
    if (e >= p.cols || row >= p.rows) {
        return;
    }
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
    out[e] = v;
}
