// embed.metal — MSL twin of embed.wgsl: token embedding lookup:
// out[e] = dequantized token_embd[tok, e]. The token id is read from `tok` on
// the GPU (written by argmax or by the host), so a decode step never waits
// for the CPU. One thread per element; the table is read as aligned u32
// words of its GGUF layout. Exactly one format flag is set
// (embed_value.metal).

//#include embed_value

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
    // Only the table part holding the row (rows row0 .. row0 + rows) writes.
    if (e >= p.cols || row < p.row0 || row - p.row0 >= p.rows) {
        return;
    }
    out[e] = table_value(p, table, row - p.row0, e);
}
