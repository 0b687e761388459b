// sample.metal — MSL twin of sample.wgsl: sampling on the GPU with the CPU
// sampler's semantics (repeat penalty → top-k → top-p → min-p → temperature
// → the host's draw). The span pass (no flag) keeps each 1024-logit span's
// best k as (key, id) pairs; FINAL radix-selects the k best of those, sorts
// them, applies the cuts and the draw, and updates the token history and
// the penalty window's counts. See sample.wgsl for the whole description.
//
// Metal compiles with fast math by default (the compiler may assume no NaN
// or infinity), so NaN and ±∞ are recognized on the bits.

constant uint SPAN = 1024u;
constant uint MAX_K = 256u;

uint to_key(float v) {
    uint b = as_type<uint>(v);
    return (b & 0x80000000u) != 0u ? ~b : (b | 0x80000000u);
}

float from_key(uint k) {
    return as_type<float>((k & 0x80000000u) != 0u ? (k & 0x7FFFFFFFu) : ~k);
}

// Whether (k, i) sorts before (l, j): larger key, or equal key and lower id.
bool before(uint k, uint i, uint l, uint j) {
    return k > l || (k == l && i < j);
}

// Sorts sk/si[0..n] (n a power of two) by `before`, 256 threads.
void bitonic_sort(uint tid, uint n, threadgroup uint* sk, threadgroup uint* si) {
    for (uint size = 2u; size <= n; size <<= 1u) {
        for (uint stride = size >> 1u; stride > 0u; stride >>= 1u) {
            for (uint t = tid; t < n / 2u; t += 256u) {
                uint lo = 2u * t - (t & (stride - 1u));
                uint hi = lo + stride;
                bool first = (lo & size) == 0u || size == n;
                if (before(sk[hi], si[hi], sk[lo], si[lo]) == first) {
                    uint k = sk[lo];
                    uint i = si[lo];
                    sk[lo] = sk[hi];
                    si[lo] = si[hi];
                    sk[hi] = k;
                    si[hi] = i;
                }
            }
            threadgroup_barrier(mem_flags::mem_threadgroup);
        }
    }
}

//#if FINAL
// The threadgroup memory of the final pass.
struct Shared {
    threadgroup uint* sk;
    threadgroup uint* si;
    threadgroup atomic_uint* hist;
    threadgroup float* scan;
    threadgroup uint* suffix;
    // [0] rank still to find, [1] digit found, [2] counted or gathered so
    // far, [3] ties settled after the key's four digits, [4] first hit.
    threadgroup atomic_uint* state;
    threadgroup uint* bcast;
};

// Thread 0's x as seen by every thread (x must not depend on writes after
// the caller's last barrier).
uint broadcast(uint tid, uint x, Shared w) {
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid == 0u) {
        w.bcast[0] = x;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    return w.bcast[0];
}

uint load(threadgroup atomic_uint* a) {
    return atomic_load_explicit(a, memory_order_relaxed);
}

void store(threadgroup atomic_uint* a, uint v) {
    atomic_store_explicit(a, v, memory_order_relaxed);
}

// Inclusive prefix sum of x over the threadgroup's threads, in thread order.
float prefix_sum(uint tid, float x, Shared w) {
    w.scan[tid] = x;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint d = 1u; d < 256u; d <<= 1u) {
        float y = w.scan[tid];
        if (tid >= d) {
            y += w.scan[tid - d];
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
        w.scan[tid] = y;
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    return w.scan[tid];
}

// One radix pass (see sample.wgsl): counts the digits at `shift` of the
// key's hi (or lo) word over the candidates agreeing with `prefix` under
// `mask`, and picks the digit holding the rank-th best.
uint radix_pass(uint tid, uint m, device const uint* cands, bool lo_pass, uint shift,
                uint2 prefix, uint2 mask, Shared w) {
    store(&w.hist[tid], 0u);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint c = tid; c < m; c += 256u) {
        uint2 key = uint2(cands[2u * c], ~cands[2u * c + 1u]);
        if (key.x != 0u && all((key & mask) == prefix)) {
            uint digit = ((lo_pass ? key.y : key.x) >> shift) & 255u;
            atomic_fetch_add_explicit(&w.hist[digit], 1u, memory_order_relaxed);
        }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    uint h = load(&w.hist[tid]);
    w.suffix[tid] = h;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint d = 1u; d < 256u; d <<= 1u) {
        uint y = w.suffix[tid];
        if (tid + d < 256u) {
            y += w.suffix[tid + d];
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
        w.suffix[tid] = y;
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    uint rank = load(&w.state[0]);
    uint above = tid < 255u ? w.suffix[tid + 1u] : 0u;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (w.suffix[tid] >= rank && above < rank) {
        store(&w.state[1], tid);
        store(&w.state[0], rank - above);
        store(&w.state[3], h == rank - above ? 1u : 0u);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    return load(&w.state[1]);
}

// The k best candidates sorted into sk/si; returns k (0: no finite logit).
uint select_best(uint tid, uint m, uint pk, device const uint* cands, Shared w) {
    if (tid == 0u) {
        store(&w.state[2], 0u);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    uint valid = 0u;
    for (uint c = tid; c < m; c += 256u) {
        valid += cands[2u * c] != 0u ? 1u : 0u;
    }
    atomic_fetch_add_explicit(&w.state[2], valid, memory_order_relaxed);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    uint k = min(pk, broadcast(tid, load(&w.state[2]), w));
    if (tid == 0u) {
        store(&w.state[0], k);
        store(&w.state[2], 0u);
        store(&w.state[3], 0u);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    uint2 prefix = uint2(0u);
    uint2 mask = uint2(0u);
    for (uint d = 0u; d < 8u && k > 0u; d++) {
        bool lo_pass = d >= 4u;
        uint shift = 24u - 8u * (d % 4u);
        uint digit = radix_pass(tid, m, cands, lo_pass, shift, prefix, mask, w);
        if (lo_pass) {
            prefix.y |= digit << shift;
            mask.y |= 255u << shift;
        } else {
            prefix.x |= digit << shift;
            mask.x |= 255u << shift;
        }
        if (d == 3u && broadcast(tid, load(&w.state[3]), w) != 0u) {
            break;
        }
    }
    w.sk[tid] = 0u;
    w.si[tid] = 0xFFFFFFFFu;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint c = tid; c < m && k > 0u; c += 256u) {
        uint2 key = uint2(cands[2u * c], ~cands[2u * c + 1u]);
        bool above = key.x > prefix.x || (key.x == prefix.x && (key.y & mask.y) >= prefix.y);
        if (key.x != 0u && above) {
            uint slot = atomic_fetch_add_explicit(&w.state[2], 1u, memory_order_relaxed);
            if (slot < MAX_K) {
                w.sk[slot] = key.x;
                w.si[slot] = ~key.y;
            }
        }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    bitonic_sort(tid, MAX_K, w.sk, w.si);
    return k;
}

// First index i < n where `hit` holds (hits form a suffix), or n.
uint first_hit(uint tid, uint n, bool hit, Shared w) {
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid == 0u) {
        store(&w.state[4], n);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid < n && hit) {
        atomic_fetch_min_explicit(&w.state[4], tid, memory_order_relaxed);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    return broadcast(tid, load(&w.state[4]), w);
}

// The chosen id (see sample.wgsl).
uint final_choice(uint tid, uint m, constant SampleParams& p, device const uint* cands,
                  float draw, Shared w) {
    uint n = select_best(tid, m, p.k, cands, w);
    if (n == 0u) {
        return 0u;
    }
    float v = from_key(w.sk[tid]);
    // +∞ logits take all the probability, shared equally (logit 0).
    uint inf_key = to_key(as_type<float>(0x7F800000u));
    uint top = broadcast(tid, w.sk[0], w);
    if (top == inf_key) {
        n = first_hit(tid, n, w.sk[tid] != inf_key, w);
        v = 0.0f;
    }
    float v0 = top != inf_key ? from_key(top) : 0.0f;
    if (p.greedy != 0u || n == 1u) {
        return w.si[0];
    }
    if (p.top_p < 1.0f) {
        float s = prefix_sum(tid, tid < n ? exp(v - v0) : 0.0f, w);
        float total = w.scan[255];
        n = min(n, first_hit(tid, n, s >= p.top_p * total, w) + 1u);
    }
    if (p.min_p > 0.0f) {
        n = max(1u, first_hit(tid, n, v < v0 + log(p.min_p), w));
    }
    float t = p.temperature;
    float c = prefix_sum(tid, tid < n ? exp(v / t - v0 / t) : 0.0f, w);
    float goal = draw * w.scan[255];
    uint pick = min(first_hit(tid, n, goal < c, w), n - 1u);
    return w.si[pick];
}
//#endif

[[max_total_threads_per_threadgroup(256)]]
kernel void compute_main(
    constant SampleParams& p [[buffer(0)]],
//#if FINAL
    device const uint* cands [[buffer(1)]],
    device const uint* step [[buffer(2)]],
    device uint* tok [[buffer(3)]],
    device uint* history [[buffer(4)]],
    device uint* marks [[buffer(5)]],
//#else
    device const float* logits [[buffer(1)]],
    device const uint* marks [[buffer(2)]],
    device uint* cands [[buffer(3)]],
//#endif
    uint tid [[thread_index_in_threadgroup]],
    uint3 wid [[threadgroup_position_in_grid]]
) {
//#if FINAL
    threadgroup uint sk[MAX_K];
    threadgroup uint si[MAX_K];
    threadgroup atomic_uint hist[256];
    threadgroup float scan[256];
    threadgroup uint suffix[256];
    threadgroup atomic_uint state[5];
    threadgroup uint bcast[1];
    Shared w = {sk, si, hist, scan, suffix, state, bcast};
    uint chosen = final_choice(tid, p.spans * p.k, p, cands, as_type<float>(step[1]), w);
    if (tid == 0u) {
        uint next = step[0] + 1u;
        tok[0] = chosen;
        if (p.last_n > 0u) {
            marks[chosen] += 1u;
            if (next >= p.last_n) {
                marks[history[next - p.last_n]] -= 1u;
            }
        }
        // The history holds the positions the model has (its buffer's
        // length is not known here: the host never steps past them).
        history[next] = chosen;
    }
//#else
    threadgroup uint sk[SPAN];
    threadgroup uint si[SPAN];
    uint base = wid.x * SPAN;
    for (uint j = tid; j < SPAN; j += 256u) {
        uint i = base + j;
        uint key = 0u;
        if (i < p.n) {
            float v = logits[i];
            uint bits = as_type<uint>(v) & 0x7FFFFFFFu;
            // NaN and −∞ are dropped; ±∞ is never penalized.
            if (bits < 0x7F800000u && p.last_n > 0u && marks[i] > 0u) {
                v = v <= 0.0f ? v * p.penalty : v / p.penalty;
            }
            uint after = as_type<uint>(v);
            bool dropped = (after & 0x7FFFFFFFu) > 0x7F800000u || after == 0xFF800000u;
            key = dropped ? 0u : to_key(v);
        }
        sk[j] = key;
        si[j] = i;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    bitonic_sort(tid, SPAN, sk, si);
    for (uint j = tid; j < p.k; j += 256u) {
        uint c = wid.x * p.k + j;
        cands[2u * c] = sk[j];
        cands[2u * c + 1u] = si[j];
    }
//#endif
}
