// embed.wgsl — token embedding lookup: out[e] = dequantized token_embd[tok, e].
// The token id is read from `tok` on the GPU (written by argmax or by the
// host), so a decode step never waits for the CPU. One thread per element;
// the table is read as aligned u32 words of its GGUF layout. Exactly one
// format flag is set (embed_value.wgsl).

@group(0) @binding(0) var<uniform> p: EmbedParams;
@group(0) @binding(1) var<storage, read> table: array<u32>;
@group(0) @binding(2) var<storage, read> tok: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

//#include embed_value

@compute @workgroup_size(256)
fn compute_main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = gid.x;
    let row = tok[0];
    // Only the table part holding the row (rows row0 .. row0 + rows) writes.
    if e >= p.cols || row < p.row0 || row - p.row0 >= p.rows {
        return;
    }
    out[e] = table_value(row - p.row0, e);
}
