// attention_tiled.wgsl — the causal attention of a prefill chunk (the
// second phase of attention_prefill.wgsl, after its ROPE_KV dispatch has
// written the chunk's K and V into the cache), 32 query tokens at a time:
// K and V are read once per tile of 32 queries instead of once per query.
// Same bindings and layouts as attention_prefill.wgsl; head_dim ≤ 64, and
// ≤ 128 with HD128 (below the COOP variant).
//
// Workgroup (x: query head h, z: 32 tokens t0..), 256 threads: thread
// (query i = tid / 8, lane j = tid mod 8) keeps the whole q of token t0 + i
// and its own online softmax (running max m, sum l, output o: 64 floats)
// over the keys j, j + 8, j + 16, j + 24 of each 32-key tile staged in
// workgroup memory; at the end the 8 lanes of a query merge their (m, l, o)
// through workgroup memory. Tiles run from position 0 to the last query's.
// Staged rows hold 16 vec4 (zero past head_dim), key k's vec4 c at
// k·16 + (c ^ (k mod 8)): the 8 lanes, reading 8 consecutive keys at the
// same c, hit 8 distinct vec4 slots (no bank conflicts).
//
// COOP (matrix units, native only; the host requires subgroups of 32): the
// same grid and results, the products on 16×16×16 cooperative matrices (f16
// tiles, f32 accumulators), 64 keys per step. Each of the 8 subgroups holds
// one 16×16 block of S = Q·Kᵀ (queries 16·(sid / 4).., keys 16·(sid mod 4)..)
// and one of the output O (queries 16·(sid / 4).., dimensions 16·(sid mod
// 4)..), with its 4 fragments of Q kept from the start. S goes through
// workgroup memory to the softmax threads (8 lanes per query, keys lane +
// 8i), which write P = exp(S − m) as f16 for O += P·V. The output stays in
// the accumulators: the running max m of a query is raised only when a
// tile's max exceeds it by more than RESCALE_AT (so P ≤ e⁸ fits f16 with
// room), and only then are the accumulators stored, scaled by exp(m_old −
// m_new) per query and reloaded (every workgroup's first tile sets m with
// nothing to scale). The sum l adds the f16-rounded P that the products
// use. The self-check replays it against the f32 variant when a model
// loads.
//#if COOP
enable f16;
enable wgpu_cooperative_matrix;
//#endif

@group(0) @binding(0) var<uniform> p: AttnParams;
@group(0) @binding(1) var<storage, read> chunk: array<u32>;
@group(0) @binding(2) var<storage, read_write> qkv: array<f32>;
@group(0) @binding(3) var<storage, read_write> kcache: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> vcache: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read> rope: array<f32>;
@group(0) @binding(7) var<storage, read> bias: array<f32>;

//#if COOP
// Halves per staged row of K, V, Q and P (64 + 8: conflict-free fragment
// loads), and floats per key column of S (32 + 4: the softmax lanes of one
// subgroup, 4 queries × 8 keys, hit 32 distinct banks).
const HS: u32 = 72u;
const SS: u32 = 36u;
// A query's running max is raised only past this margin (see the header).
const RESCALE_AT: f32 = 8.0;
// K and V of 64 keys, f16: key k's element d at k·HS + d (zero past
// head_dim and past the last key).
var<workgroup> kh: array<f16, 4608>;
var<workgroup> vh: array<f16, 4608>;
// Q of the 32 queries (scaled) before the loop, then P: query q at q·HS.
var<workgroup> qp: array<f16, 2304>;
// S, column-major (query q, key k at k·SS + q); also each subgroup's
// 16×16 slice at sid·256 (column-major) to rescale and write the output.
var<workgroup> sf: array<f32, 2304>;
// Per query: the step's factor exp(m_old − m_new), then 1 / l at the end.
var<workgroup> rowf: array<f32, 32>;
// Set by any query whose max rose this step.
var<workgroup> flag: array<u32, 1>;

struct KvTile {
    k: array<vec4<f32>, 4>,
    v: array<vec4<f32>, 4>,
}

// Thread tid's 4 vec4s of K and of V for keys k0..k0+63 (vec4 e = tid +
// 256·r: key e / 16, vec4 e mod 16), zero past `last` and past head_dim.
fn load_tile(kv0: u32, k0: u32, last: u32, tid: u32) -> KvTile {
    var r: KvTile;
    for (var i = 0u; i < 4u; i++) {
        let e = tid + 256u * i;
        let k = e >> 4u;
        let c = e & 15u;
        r.k[i] = vec4<f32>(0.0);
        r.v[i] = vec4<f32>(0.0);
        if k0 + k <= last && c < p.head_dim / 4u {
            let g = kv0 + (k0 + k) * (p.kv_dim / 4u) + c;
            r.k[i] = kcache[g];
            r.v[i] = vcache[g];
        }
    }
    return r;
}

// Four values as f16 at a[i..i+4], clamped to f16's range.
fn put4(i: u32, v: vec4<f32>, into_k: bool) {
    let h = vec4<f16>(clamp(v, vec4<f32>(-65504.0), vec4<f32>(65504.0)));
    if into_k {
        kh[i] = h.x;
        kh[i + 1u] = h.y;
        kh[i + 2u] = h.z;
        kh[i + 3u] = h.w;
    } else {
        vh[i] = h.x;
        vh[i + 1u] = h.y;
        vh[i + 2u] = h.z;
        vh[i + 3u] = h.w;
    }
}

fn stage_tile(t: KvTile, tid: u32) {
    for (var i = 0u; i < 4u; i++) {
        let e = tid + 256u * i;
        let at = (e >> 4u) * HS + 4u * (e & 15u);
        put4(at, t.k[i], true);
        put4(at, t.v[i], false);
    }
}

// The 32 queries of the tile (rows t0.., times p.scale, zero past the
// chunk and head_dim) as f16 into qp.
fn stage_q(t0: u32, n: u32, h: u32, tid: u32) {
    let hd = p.head_dim;
    let row = p.n_heads * hd + 2u * p.kv_dim;
    for (var i = 0u; i < 2u; i++) {
        let e = tid + 256u * i;
        let q = e >> 4u;
        let c = e & 15u;
        var v = vec4<f32>(0.0);
        if t0 + q < n && c < hd / 4u {
            let x = (t0 + q) * row + h * hd + 4u * c;
            v = vec4<f32>(qkv[x], qkv[x + 1u], qkv[x + 2u], qkv[x + 3u]) * p.scale;
        }
        let hv = vec4<f16>(clamp(v, vec4<f32>(-65504.0), vec4<f32>(65504.0)));
        let at = q * HS + 4u * c;
        qp[at] = hv.x;
        qp[at + 1u] = hv.y;
        qp[at + 2u] = hv.z;
        qp[at + 3u] = hv.w;
    }
}

// Subgroup sid's output block through its slice of sf, each query's row
// multiplied by rowf[query] (every thread calls it: it holds barriers).
fn rescale(o: coop_mat16x16<f32, C>, sid: u32, lane: u32) -> coop_mat16x16<f32, C> {
    coopStore(o, &sf[sid * 256u], 16u);
    workgroupBarrier();
    for (var e = lane; e < 256u; e += 32u) {
        sf[sid * 256u + e] *= rowf[(sid >> 2u) * 16u + (e & 15u)];
    }
    workgroupBarrier();
    return coopLoad<coop_mat16x16<f32, C>>(&sf[sid * 256u], 16u);
}

// The running softmax state of one query lane: max m, partial sum l.
struct Lane {
    m: f32,
    l: f32,
}

// Softmax lane j of query q over keys k0 + j + 8i of the staged S: raises
// the max past RESCALE_AT (setting rowf[q] and flag), writes P into qp, adds
// its f16 values to l. `pos`: the query's position (keys past it masked);
// `live`: the query is in the chunk.
fn softmax_step(st: Lane, q: u32, j: u32, k0: u32, pos: u32, live: bool) -> Lane {
    var r = st;
    var s: array<f32, 8>;
    var mt = -3.4e38;
    for (var i = 0u; i < 8u; i++) {
        let k = j + 8u * i;
        s[i] = -3.4e38;
        if live && k0 + k <= pos {
            s[i] = sf[k * SS + q];
        }
        mt = max(mt, s[i]);
    }
    // The 8 lanes of a query are neighbours in one subgroup.
    mt = max(mt, subgroupShuffleXor(mt, 1u));
    mt = max(mt, subgroupShuffleXor(mt, 2u));
    mt = max(mt, subgroupShuffleXor(mt, 4u));
    var f = 1.0;
    if mt > r.m + RESCALE_AT {
        f = exp(r.m - mt);
        r.m = mt;
        r.l *= f;
        flag[0] = 1u;
    }
    if j == 0u {
        rowf[q] = f;
    }
    var sum = 0.0;
    for (var i = 0u; i < 8u; i++) {
        var e = 0.0;
        if s[i] > -3.0e38 {
            e = exp(s[i] - r.m);
        }
        let eh = f16(e);
        qp[q * HS + j + 8u * i] = eh;
        sum += f32(eh);
    }
    r.l += sum;
    return r;
}

// Subgroup sid's block of the output, divided by its queries' sums (rowf),
// into out for the queries in the chunk and dimensions within head_dim.
fn write_out(o: coop_mat16x16<f32, C>, sid: u32, lane: u32, t0: u32, n: u32, h: u32) {
    coopStore(o, &sf[sid * 256u], 16u);
    workgroupBarrier();
    let hd = p.head_dim;
    for (var e = lane; e < 256u; e += 32u) {
        // Lanes run along the dimensions: coalesced stores.
        let c = e & 15u;
        let r = e >> 4u;
        let q = (sid >> 2u) * 16u + r;
        let d = (sid & 3u) * 16u + c;
        if t0 + q < n && d < hd {
            out[(t0 + q) * p.n_heads * hd + h * hd + d] = sf[sid * 256u + c * 16u + r] * rowf[q];
        }
    }
}

@compute @workgroup_size(256)
fn compute_main(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_id) sid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let n = chunk[1];
    let start = chunk[0];
    let h = wid.x;
    let t0 = wid.z * 32u;
    let kvh = h / (p.n_heads / p.n_kv_heads);
    let kv0 = (p.layer_offset + kvh * p.head_dim) / 4u;
    // Softmax role: query q, lane j of its 8, taken from the subgroup (not
    // from tid, whose mapping to subgroups Vulkan leaves open): the 8 lanes
    // a shuffle combines are one query's.
    let q = sid * 4u + (lane >> 3u);
    let j = lane & 7u;
    let live = t0 + q < n;
    let pos = start + t0 + q;
    // The last position any query of the tile attends to.
    let last = start + min(t0 + 32u, n) - 1u;

    stage_q(t0, n, h, tid);
    if tid == 0u {
        flag[0] = 0u;
    }
    var kv = load_tile(kv0, 0u, last, tid);
    workgroupBarrier();
    // Subgroup sid: queries 16·(sid / 4).. of S and O; keys 16·(sid mod 4)..
    // of S, dimensions 16·(sid mod 4).. of O.
    let qa = (sid >> 2u) * 16u * HS;
    let q0 = coopLoadT<coop_mat16x16<f16, A>>(&qp[qa], HS);
    let q1 = coopLoadT<coop_mat16x16<f16, A>>(&qp[qa + 16u], HS);
    let q2 = coopLoadT<coop_mat16x16<f16, A>>(&qp[qa + 32u], HS);
    let q3 = coopLoadT<coop_mat16x16<f16, A>>(&qp[qa + 48u], HS);
    var o = coop_mat16x16<f32, C>();
    var st = Lane(-3.4e38, 0.0);
    for (var k0 = 0u; k0 <= last; k0 += 64u) {
        stage_tile(kv, tid);
        workgroupBarrier();
        if k0 + 64u <= last {
            kv = load_tile(kv0, k0 + 64u, last, tid);
        }
        // S block: Kᵀ (dimension × key) is K's rows read column-major.
        let kb = (sid & 3u) * 16u * HS;
        var s = coop_mat16x16<f32, C>();
        s = coopMultiplyAdd(q0, coopLoad<coop_mat16x16<f16, B>>(&kh[kb], HS), s);
        s = coopMultiplyAdd(q1, coopLoad<coop_mat16x16<f16, B>>(&kh[kb + 16u], HS), s);
        s = coopMultiplyAdd(q2, coopLoad<coop_mat16x16<f16, B>>(&kh[kb + 32u], HS), s);
        s = coopMultiplyAdd(q3, coopLoad<coop_mat16x16<f16, B>>(&kh[kb + 48u], HS), s);
        coopStore(s, &sf[(sid & 3u) * 16u * SS + (sid >> 2u) * 16u], SS);
        workgroupBarrier();
        st = softmax_step(st, q, j, k0, pos, live);
        if workgroupUniformLoad(&flag[0]) != 0u && k0 > 0u {
            o = rescale(o, sid, lane);
        }
        // O block += P (query × key) · V (key × dimension), 16 keys a step.
        let pa = (sid >> 2u) * 16u * HS;
        let vb = (sid & 3u) * 16u;
        for (var kk = 0u; kk < 64u; kk += 16u) {
            let a = coopLoadT<coop_mat16x16<f16, A>>(&qp[pa + kk], HS);
            o = coopMultiplyAdd(a, coopLoadT<coop_mat16x16<f16, B>>(&vh[kk * HS + vb], HS), o);
        }
        workgroupBarrier();
        if tid == 0u {
            flag[0] = 0u;
        }
    }
    // A query's sum over its 8 lanes; 1 / l to rowf.
    var l = st.l;
    l += subgroupShuffleXor(l, 1u);
    l += subgroupShuffleXor(l, 2u);
    l += subgroupShuffleXor(l, 4u);
    if j == 0u {
        rowf[q] = select(0.0, 1.0 / l, l > 0.0);
    }
    write_out(o, sid, lane, t0, n, h);
}
//#else
// The K and V tiles (32 keys × 16 vec4, swizzled); reused by the merge.
// HD128: 16 keys × 32 vec4; ks holds S once the scores are taken.
var<workgroup> ks: array<vec4<f32>, 512>;
var<workgroup> vs: array<vec4<f32>, 512>;
//#if HD128
const SHIFT: u32 = 5u;
//#else
const SHIFT: u32 = 4u;
//#endif
// Keys per staged tile.
const KEYS: u32 = 512u >> SHIFT;

// Slot of vec4 c of staged key k (rows of 2^SHIFT vec4s): the 8 lanes,
// reading 8 consecutive keys at the same c, hit 8 distinct vec4 slots.
fn slot(k: u32, c: u32) -> u32 {
    return (k << SHIFT) + (c ^ (k & 7u));
}

// Thread (query i = tid / 8, lane j = tid mod 8) of the workgroup for head
// h and tokens t0..t0+31: its token t and position pos, whether t is in
// the chunk, the last position any query of the tile attends to, and the
// first vec4 of its KV head in the caches.
struct Tile {
    h: u32,
    i: u32,
    j: u32,
    t: u32,
    pos: u32,
    live: bool,
    last: u32,
    kv0: u32,
}

fn tile_of(tid: u32, wid: vec3<u32>) -> Tile {
    let n = chunk[1];
    let start = chunk[0];
    let t0 = wid.z * 32u;
    let t = t0 + (tid >> 3u);
    let kvh = wid.x / (p.n_heads / p.n_kv_heads);
    let kv0 = (p.layer_offset + kvh * p.head_dim) / 4u;
    return Tile(wid.x, tid >> 3u, tid & 7u, t, start + t, t < n, start + min(t0 + 32u, n) - 1u, kv0);
}

// Stage keys k0..k0+KEYS-1 of K and V (zero past `last` and head_dim):
// thread tid loads vec4s tid and tid + 256.
fn stage_kv(g: Tile, k0: u32, tid: u32) {
    for (var e = tid; e < 512u; e += 256u) {
        let k = e >> SHIFT;
        let c = e & ((1u << SHIFT) - 1u);
        var kv = vec4<f32>(0.0);
        var vv = vec4<f32>(0.0);
        if k0 + k <= g.last && c < p.head_dim / 4u {
            let at = g.kv0 + (k0 + k) * (p.kv_dim / 4u) + c;
            kv = kcache[at];
            vv = vcache[at];
        }
        ks[slot(k, c)] = kv;
        vs[slot(k, c)] = vv;
    }
}

// Output vec4 c of token t (head h).
fn store4(t: u32, h: u32, c: u32, v: vec4<f32>) {
    let e = t * p.n_heads * p.head_dim + h * p.head_dim + 4u * c;
    out[e] = v.x;
    out[e + 1u] = v.y;
    out[e + 2u] = v.z;
    out[e + 3u] = v.w;
}
//#if HD128
// Head sizes 68..128 (HD128): the same grid, 16 keys per tile, no q or
// whole output row in registers. Thread (query i, lane j) takes the scores
// of keys j and j + 8 (q read from qkv), writes them into ks as S (query
// i's 16 at vec4s 4i..), then every lane of query i runs the same online
// softmax over that row and keeps the output vec4s j, j + 8, j + 16, j +
// 24: no merge at the end.

// Query i's scores against keys j and j + 8 of the staged tile (keys past
// its position masked).
fn scores16(g: Tile, k0: u32) -> vec2<f32> {
    let hd = p.head_dim;
    let e0 = g.t * (p.n_heads * hd + 2u * p.kv_dim) + g.h * hd;
    var a = vec2<f32>(0.0);
    if g.live {
        for (var c = 0u; c < hd / 4u; c++) {
            let e = e0 + 4u * c;
            let q = vec4<f32>(qkv[e], qkv[e + 1u], qkv[e + 2u], qkv[e + 3u]);
            a.x += dot(q, ks[slot(g.j, c)]);
            a.y += dot(q, ks[slot(g.j + 8u, c)]);
        }
    }
    let m = vec2<bool>(g.live && k0 + g.j <= g.pos, g.live && k0 + g.j + 8u <= g.pos);
    return select(vec2<f32>(-3.4e38), a * p.scale, m);
}

@compute @workgroup_size(256)
fn compute_main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let g = tile_of(tid, wid);
    let i = g.i;
    let j = g.j;
    var o: array<vec4<f32>, 4>;
    var m = -3.4e38;
    var l = 0.0;
    for (var k0 = 0u; k0 <= g.last; k0 += KEYS) {
        stage_kv(g, k0, tid);
        workgroupBarrier();
        let s = scores16(g, k0);
        workgroupBarrier();
        ks[i * 4u + (j >> 2u)][j & 3u] = s.x;
        ks[i * 4u + 2u + (j >> 2u)][j & 3u] = s.y;
        workgroupBarrier();
        // Query i's row of S, the same in its 8 lanes.
        var r = array<vec4<f32>, 4>(ks[i * 4u], ks[i * 4u + 1u], ks[i * 4u + 2u], ks[i * 4u + 3u]);
        let mt = max(max(r[0], r[1]), max(r[2], r[3]));
        let m_new = max(m, max(max(mt.x, mt.y), max(mt.z, mt.w)));
        // exp(m - m_new) is 0 while m is the initial -3.4e38.
        let corr = exp(m - m_new);
        l *= corr;
        for (var u = 0u; u < 4u; u++) {
            o[u] *= corr;
        }
        for (var k = 0u; k < 16u; k++) {
            let sk = r[k >> 2u][k & 3u];
            let e = select(0.0, exp(sk - m_new), sk > -3.0e38);
            l += e;
            for (var u = 0u; u < 4u; u++) {
                o[u] += e * vs[slot(k, j + 8u * u)];
            }
        }
        m = m_new;
        workgroupBarrier();
    }
    for (var u = 0u; u < 4u; u++) {
        if g.live && j + 8u * u < p.head_dim / 4u {
            store4(g.t, g.h, j + 8u * u, o[u] / l);
        }
    }
}
//#else
@compute @workgroup_size(256)
fn compute_main(@builtin(local_invocation_index) tid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let g = tile_of(tid, wid);
    let h = g.h;
    let j = g.j;
    let t = g.t;
    let live = g.live;
    let pos = g.pos;
    let hd = p.head_dim;
    let hd4 = hd / 4u;
    let qdim = p.n_heads * hd;

    var q: array<vec4<f32>, 16>;
    var o: array<vec4<f32>, 16>;
    for (var c = 0u; c < 16u; c++) {
        var v = vec4<f32>(0.0);
        if live && c < hd4 {
            let e = t * (qdim + 2u * p.kv_dim) + h * hd + 4u * c;
            v = vec4<f32>(qkv[e], qkv[e + 1u], qkv[e + 2u], qkv[e + 3u]) * p.scale;
        }
        q[c] = v;
        o[c] = vec4<f32>(0.0);
    }
    var m = -3.4e38;
    var l = 0.0;
    for (var k0 = 0u; k0 <= g.last; k0 += KEYS) {
        stage_kv(g, k0, tid);
        workgroupBarrier();
        if live {
            // This lane's keys of the tile: j, j + 8, j + 16, j + 24.
            var s = vec4<f32>(-3.4e38);
            for (var r = 0u; r < 4u; r++) {
                let k = j + 8u * r;
                if k0 + k <= pos {
                    var a = 0.0;
                    for (var c = 0u; c < 16u; c++) {
                        a += dot(q[c], ks[slot(k, c)]);
                    }
                    s[r] = a;
                }
            }
            let m_new = max(m, max(max(s.x, s.y), max(s.z, s.w)));
            // exp(m - m_new) is 0 while m is the initial -3.4e38.
            let corr = exp(m - m_new);
            let e = select(vec4<f32>(0.0), exp(s - vec4<f32>(m_new)), s > vec4<f32>(-3.0e38));
            l = l * corr + (e.x + e.y) + (e.z + e.w);
            m = m_new;
            for (var c = 0u; c < 16u; c++) {
                o[c] = o[c] * corr + e.x * vs[slot(j, c)] + e.y * vs[slot(j + 8u, c)]
                    + e.z * vs[slot(j + 16u, c)] + e.w * vs[slot(j + 24u, c)];
            }
        }
        workgroupBarrier();
    }

    // Merge the 8 lanes of each query: the common max, then l and o scaled
    // to it and summed, 8 dimensions per round through ks.
    ks[tid] = vec4<f32>(m, 0.0, 0.0, 0.0);
    workgroupBarrier();
    let q0 = tid & ~7u;
    var mq = ks[q0].x;
    for (var r = 1u; r < 8u; r++) {
        mq = max(mq, ks[q0 + r].x);
    }
    let f = exp(m - mq);
    workgroupBarrier();
    ks[tid] = vec4<f32>(l * f, 0.0, 0.0, 0.0);
    workgroupBarrier();
    var lq = 0.0;
    for (var r = 0u; r < 8u; r++) {
        lq += ks[q0 + r].x;
    }
    for (var round = 0u; round < 8u; round++) {
        workgroupBarrier();
        ks[tid * 2u] = o[2u * round] * f;
        ks[tid * 2u + 1u] = o[2u * round + 1u] * f;
        workgroupBarrier();
        // Lanes 0 and 1 sum their vec4 of the round over the query's 8 lanes.
        let c = 2u * round + j;
        if live && j < 2u && c < hd4 {
            var sum = vec4<f32>(0.0);
            for (var r = 0u; r < 8u; r++) {
                sum += ks[(q0 + r) * 2u + j];
            }
            store4(t, h, c, sum / lq);
        }
    }
}
//#endif
//#endif
