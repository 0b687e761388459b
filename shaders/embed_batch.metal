// embed_batch.metal — MSL twin of embed_batch.wgsl: embedding lookup for a
// chunk of prompt tokens: out[t·cols + e] = dequantized token_embd[id_t, e]
// for t < n, where the chunk buffer holds [start, n, 0, 0, id_0, id_1, ...].
// Threadgroup z is the token; one thread per element. Decoding is the same as
// embed.metal. Exactly one format flag (Q4_0, Q4_1, Q8_0, F16, F32) is set.

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
    device const uint* chunk [[buffer(2)]],
    device float* out [[buffer(3)]],
    uint3 gid [[thread_position_in_grid]]
) {
    uint e = gid.x;
    uint t = gid.z;
    if (t >= chunk[1]) {
        return;
    }
    uint row = chunk[4u + t];
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
    out[t * p.cols + e] = v;
}
