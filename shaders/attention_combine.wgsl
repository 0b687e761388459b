// attention_combine.wgsl — pass 2 of decode attention: merges the per-chunk
// (m, l, o) partials of attention.wgsl into out = Σ_c e^(m_c−M)·o_c / Σ_c e^(m_c−M)·l_c
// with M = max_c m_c (record of chunk c, head h at (c·n_heads + h)·(head_dim + 4):
// m, l, 2 unused, o). One workgroup per query head, one thread per dimension.
// For models whose output projection is too large to merge the chunks itself
// (matvec_common.wgsl, ATTN: every workgroup of it repeats the merge).

@group(0) @binding(0) var<uniform> p: AttnParams;
@group(0) @binding(1) var<storage, read> step: array<u32>;
@group(0) @binding(2) var<storage, read> part: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn compute_main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let h = wid.x;
    let hd = p.head_dim;
    if tid >= hd {
        return;
    }
    let n = step[0] / 64u + 1u;
    var mx = -3.4e38;
    for (var c = 0u; c < n; c++) {
        mx = max(mx, part[(c * p.n_heads + h) * (hd + 4u)]);
    }
    var o = 0.0;
    var l = 0.0;
    for (var c = 0u; c < n; c++) {
        let b = (c * p.n_heads + h) * (hd + 4u);
        let w = exp(part[b] - mx);
        l += w * part[b + 1u];
        o += w * part[b + 4u + tid];
    }
    out[h * hd + tid] = o / l;
}
