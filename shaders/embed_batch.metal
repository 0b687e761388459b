// embed_batch.metal — MSL twin of embed_batch.wgsl: embedding lookup for a
// chunk of prompt tokens: out[t·cols + e] = dequantized token_embd[id_t, e]
// for t < n, where the chunk buffer holds [start, n, 0, 0, id_0, id_1, ...].
// Threadgroup z is the token; one thread per element. Decoding is the same as
// embed.metal. Exactly one format flag is set (embed_value.metal).

//#include embed_value

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
    // Only the table part holding the row (rows row0 .. row0 + rows) writes.
    if (e >= p.cols || row < p.row0 || row - p.row0 >= p.rows) {
        return;
    }
    out[t * p.cols + e] = table_value(p, table, row - p.row0, e);
}
