// embed_batch.wgsl — embedding lookup for a chunk of prompt tokens:
// out[t·cols + e] = dequantized token_embd[id_t, e] for t < n, where the chunk
// buffer holds [start, n, 0, 0, id_0, id_1, ...] (written by the host once per
// chunk). Workgroup z is the token; one thread per element. Decoding is the
// same as embed.wgsl. Exactly one format flag
// is set (embed_value.wgsl).

@group(0) @binding(0) var<uniform> p: EmbedParams;
@group(0) @binding(1) var<storage, read> table: array<u32>;
@group(0) @binding(2) var<storage, read> chunk: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

//#include embed_value

@compute @workgroup_size(256)
fn compute_main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = gid.x;
    let t = gid.z;
    if t >= chunk[1] {
        return;
    }
    let row = chunk[4u + t];
    // Only the table part holding the row (rows row0 .. row0 + rows) writes.
    if e >= p.cols || row < p.row0 || row - p.row0 >= p.rows {
        return;
    }
    out[t * p.cols + e] = table_value(row - p.row0, e);
}
