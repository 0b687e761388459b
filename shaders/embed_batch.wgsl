// embed_batch.wgsl — embedding lookup for a chunk of prompt tokens:
// out[t·cols + e] = dequantized token_embd[id_t, e] for t < n, where the chunk
// buffer holds [start, n, 0, 0, id_0, id_1, ...] (written by the host once per
// chunk). Workgroup z is the token; one thread per element. Decoding is the
// same as embed.wgsl. Exactly one format flag (Q4_0, Q4_1, Q8_0, F16, F32) is set.

@group(0) @binding(0) var<uniform> p: EmbedParams;
@group(0) @binding(1) var<storage, read> table: array<u32>;
@group(0) @binding(2) var<storage, read> chunk: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// Byte at byte offset o of the table.
fn byte_at(o: u32) -> u32 {
    return (table[o >> 2u] >> ((o & 3u) * 8u)) & 0xFFu;
}

// f16 at even byte offset o of the table.
fn half_at(o: u32) -> f32 {
    let v = unpack2x16float(table[o >> 2u]);
    return select(v.x, v.y, (o & 2u) != 0u);
}

@compute @workgroup_size(256)
fn compute_main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = gid.x;
    let t = gid.z;
    if t >= chunk[1] {
        return;
    }
    let row = chunk[4u + t];
    if e >= p.cols || row >= p.rows {
        return;
    }
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
    out[t * p.cols + e] = v;
}
