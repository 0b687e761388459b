// metal_cpu.h — runs q4gpu's MSL kernels on the CPU with Metal's execution
// semantics (tests/msl_exec.rs). Included after metal_shim.h, whose types
// and declarations it completes with definitions, and before the kernel.
//
//   * Every thread of a threadgroup is a fiber (ucontext). A fiber runs until
//     it reaches threadgroup_barrier, a SIMD-group function, or its end; the
//     scheduler then runs the next. Rounds alternate direction (0..n-1, then
//     n-1..0), so a read of threadgroup memory that misses a barrier sees
//     what the writer has not written yet, whichever thread writes: a wrong
//     answer, not a lucky one. Threadgroups run one after another.
//   * SIMD groups are 32 threads as on Apple GPUs: a SIMD-group function
//     completes when every lane of the group still running has reached it
//     (lanes parked at a threadgroup barrier or finished do not take part,
//     as inactive lanes do not).
//   * Kernel-local threadgroup arrays (rewritten to `static` by the test)
//     are filled with 0xFF bytes (NaN for floats) when each threadgroup
//     starts: nothing carries over between groups.
//   * Buffers live in their own mappings, their last byte at the end of a
//     page followed by an inaccessible page (and one before): any access past
//     either end faults, and the fault is reported with the buffer's slot.
//   * A barrier some threads of a group never reach, or a SIMD-group function
//     not all lanes can complete, is reported (Metal leaves it undefined).

#pragma once

// Program-scope `constant` values are compile-time constants in Metal
// (array sizes); the shim's empty macro would make them variables.
#undef constant
#define constant const

#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>
#include <string>
#include <vector>

namespace metal {

// Half precision: IEEE binary16 with round-to-nearest-even.
inline half::half(float f) {
    uint x;
    std::memcpy(&x, &f, 4);
    uint sign = (x >> 16) & 0x8000u;
    int exp = int((x >> 23) & 0xFF) - 127 + 15;
    uint mant = x & 0x7FFFFFu;
    if (((x >> 23) & 0xFF) == 0xFF) {
        bits = ushort(sign | 0x7C00u | (mant ? 0x200u : 0u));
    } else if (exp >= 31) {
        bits = ushort(sign | 0x7C00u);
    } else if (exp <= 0) {
        if (exp < -10) {
            bits = ushort(sign);
        } else {
            mant |= 0x800000u;
            uint shift = uint(14 - exp);
            uint h = mant >> shift;
            uint rem = mant & ((1u << shift) - 1u);
            uint halfway = 1u << (shift - 1u);
            if (rem > halfway || (rem == halfway && (h & 1u))) h++;
            bits = ushort(sign | h);
        }
    } else {
        uint h = sign | (uint(exp) << 10) | (mant >> 13);
        uint rem = mant & 0x1FFFu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
        bits = ushort(h);
    }
}

inline half::operator float() const {
    uint sign = uint(bits & 0x8000u) << 16;
    uint exp = (bits >> 10) & 0x1Fu;
    uint mant = bits & 0x3FFu;
    uint x;
    if (exp == 0) {
        if (mant == 0) {
            x = sign;
        } else {
            int e = -1;
            do {
                mant <<= 1;
                e++;
            } while (!(mant & 0x400u));
            x = sign | (uint(127 - 15 - e) << 23) | ((mant & 0x3FFu) << 13);
        }
    } else if (exp == 31) {
        x = sign | 0x7F800000u | (mant << 13);
    } else {
        x = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}

inline bool all(bool2 v) { return v.x && v.y; }
inline bool all(bool3 v) { return v.x && v.y && v.z; }
inline bool all(bool4 v) { return v.x && v.y && v.z && v.w; }
inline bool any(bool2 v) { return v.x || v.y; }
inline bool any(bool3 v) { return v.x || v.y || v.z; }
inline bool any(bool4 v) { return v.x || v.y || v.z || v.w; }

template <class T, int N> vec<T, N> select(vec<T, N> a, vec<T, N> b, vec<bool, N> c) {
    vec<T, N> r;
    for (int i = 0; i < N; i++) r[i] = c[i] ? b[i] : a[i];
    return r;
}
template <class T> T abs(T x) { return x < T(0) ? T(0) - x : x; }
template <class T, int N> vec<T, N> abs(vec<T, N> v) {
    vec<T, N> r;
    for (int i = 0; i < N; i++) r[i] = abs(v[i]);
    return r;
}
template <int N> vec<float, N> clamp(vec<float, N> x, float lo, float hi) {
    vec<float, N> r;
    for (int i = 0; i < N; i++) r[i] = clamp(x[i], lo, hi);
    return r;
}

// Math: the C library's, elementwise on vectors.
#define Q4GPU_CPU_FN1(name, expr)                                                                  \
    inline float name(float x) { return expr; }                                                    \
    inline half name(half h) {                                                                     \
        float x = float(h);                                                                        \
        return half(expr);                                                                         \
    }                                                                                              \
    template <int N> vec<float, N> name(vec<float, N> v) {                                         \
        vec<float, N> r;                                                                           \
        for (int i = 0; i < N; i++) r[i] = name(v[i]);                                             \
        return r;                                                                                  \
    }
#define Q4GPU_CPU_FN2(name, expr)                                                                  \
    inline float name(float x, float y) { return expr; }                                           \
    template <int N> vec<float, N> name(vec<float, N> a, vec<float, N> b) {                        \
        vec<float, N> r;                                                                           \
        for (int i = 0; i < N; i++) r[i] = name(a[i], b[i]);                                       \
        return r;                                                                                  \
    }
#define Q4GPU_CPU_MATH                                                                             \
    Q4GPU_CPU_FN1(sqrt, std::sqrt(x)) Q4GPU_CPU_FN1(rsqrt, 1.0f / std::sqrt(x))                    \
    Q4GPU_CPU_FN1(exp, std::exp(x)) Q4GPU_CPU_FN1(exp2, std::exp2(x))                              \
    Q4GPU_CPU_FN1(log, std::log(x)) Q4GPU_CPU_FN1(log2, std::log2(x))                              \
    Q4GPU_CPU_FN1(sin, std::sin(x)) Q4GPU_CPU_FN1(cos, std::cos(x))                                \
    Q4GPU_CPU_FN1(tan, std::tan(x)) Q4GPU_CPU_FN1(tanh, std::tanh(x))                              \
    Q4GPU_CPU_FN1(floor, std::floor(x)) Q4GPU_CPU_FN1(ceil, std::ceil(x))                          \
    Q4GPU_CPU_FN1(round, std::round(x)) Q4GPU_CPU_FN1(rint, std::nearbyint(x))                     \
    Q4GPU_CPU_FN1(trunc, std::trunc(x)) Q4GPU_CPU_FN1(fract, x - std::floor(x))                    \
    Q4GPU_CPU_FN1(fabs, std::fabs(x))                                                              \
    Q4GPU_CPU_FN1(sign, x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f))                               \
    Q4GPU_CPU_FN1(saturate, std::fmin(std::fmax(x, 0.0f), 1.0f))                                   \
    Q4GPU_CPU_FN2(pow, std::pow(x, y)) Q4GPU_CPU_FN2(powr, std::pow(x, y))                         \
    Q4GPU_CPU_FN2(fmin, std::fmin(x, y)) Q4GPU_CPU_FN2(fmax, std::fmax(x, y))                      \
    Q4GPU_CPU_FN2(atan2, std::atan2(x, y)) Q4GPU_CPU_FN2(step, y < x ? 0.0f : 1.0f)                \
    Q4GPU_CPU_FN2(fmod, std::fmod(x, y))                                                           \
    inline float fma(float a, float b, float c) { return std::fma(a, b, c); }                      \
    inline float mix(float a, float b, float t) { return a + (b - a) * t; }                        \
    inline bool isnan(float x) { return std::isnan(x); }                                           \
    inline bool isinf(float x) { return std::isinf(x); }
Q4GPU_CPU_MATH
namespace precise {
Q4GPU_CPU_MATH
}
namespace fast {
Q4GPU_CPU_MATH
}
#undef Q4GPU_CPU_MATH
#undef Q4GPU_CPU_FN1
#undef Q4GPU_CPU_FN2

template <class T> T popcount(T x) { return T(__builtin_popcountll((unsigned long long)x)); }
template <class T> T extract_bits(T x, uint offset, uint bits) {
    using U = typename std::make_unsigned<T>::type;
    if (bits == 0) return T(0);
    U mask = bits >= sizeof(T) * 8 ? U(~U(0)) : U((U(1) << bits) - 1);
    return T((U(x) >> offset) & mask);
}

} // namespace metal

namespace q4cpu {

using metal::uint;
using metal::uint3;

// ---------------------------------------------------------------------------
// Fibers and the scheduler.

enum State { READY, AT_BARRIER, AT_SIMD, DONE };

struct Fiber {
    ucontext_t ctx;
    State state = READY;
    uint tid = 0;
    uint simd_seq = 0;
};

// What one SIMD-group function exchanges: each lane's value (up to 16
// bytes), double-buffered by call sequence, and which lanes took part.
struct SimdGroup {
    unsigned char slot[2][32][16];
    unsigned lanes[2];
};

struct Group {
    std::vector<Fiber> fibers;
    std::vector<SimdGroup> simd;
    ucontext_t scheduler;
    Fiber* current = nullptr;
    uint3 wid;
    uint threads = 0;
    void (*entry)(uint tid, uint3 wid) = nullptr;
    // Threadgroup arrays already poisoned in this group.
    std::vector<void*> poisoned;
};

inline Group& group() {
    static Group g;
    return g;
}

inline void fail(const char* what) {
    std::fprintf(stderr, "msl_exec: %s\n", what);
    std::exit(3);
}

inline void yield(State s) {
    Group& g = group();
    g.current->state = s;
    swapcontext(&g.current->ctx, &g.scheduler);
}

inline void fiber_main(unsigned lo, unsigned hi) {
    Fiber* f = reinterpret_cast<Fiber*>((uintptr_t(hi) << 32) | uintptr_t(lo));
    Group& g = group();
    g.entry(f->tid, g.wid);
    f->state = DONE;
    swapcontext(&f->ctx, &g.scheduler);
}

// Releases the SIMD groups whose waiting lanes can complete: no lane of
// the group is still running toward it. True if any was released.
inline bool release_simd(Group& g) {
    bool any = false;
    for (size_t s = 0; s < g.simd.size(); s++) {
        unsigned waiting = 0;
        bool running = false;
        for (uint lane = 0; lane < 32 && s * 32 + lane < g.threads; lane++) {
            State st = g.fibers[s * 32 + lane].state;
            running |= st == READY;
            if (st == AT_SIMD) waiting |= 1u << lane;
        }
        if (waiting == 0 || running) continue;
        for (uint lane = 0; lane < 32; lane++) {
            if (waiting & (1u << lane)) {
                Fiber& f = g.fibers[s * 32 + lane];
                g.simd[s].lanes[f.simd_seq % 2] = waiting;
                f.state = READY;
            }
        }
        any = true;
    }
    return any;
}

// Runs one threadgroup to completion.
inline void run_group(uint3 wid, uint threads, void (*entry)(uint, uint3)) {
    static const size_t STACK = 1 << 18;
    static std::vector<char*> stacks;
    Group& g = group();
    g.fibers.assign(threads, Fiber{});
    g.simd.assign((threads + 31) / 32, SimdGroup{});
    g.wid = wid;
    g.threads = threads;
    g.entry = entry;
    g.poisoned.clear();
    while (stacks.size() < threads) stacks.push_back(static_cast<char*>(std::malloc(STACK)));
    for (uint t = 0; t < threads; t++) {
        Fiber& f = g.fibers[t];
        f.tid = t;
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = stacks[t];
        f.ctx.uc_stack.ss_size = STACK;
        f.ctx.uc_link = nullptr;
        uintptr_t p = reinterpret_cast<uintptr_t>(&f);
        makecontext(&f.ctx, reinterpret_cast<void (*)()>(fiber_main), 2, unsigned(p & 0xFFFFFFFFu),
                    unsigned(p >> 32));
    }
    for (uint round = 0;; round++) {
        for (uint k = 0; k < threads; k++) {
            uint t = round % 2 == 0 ? k : threads - 1 - k;
            Fiber& f = g.fibers[t];
            if (f.state != READY) continue;
            g.current = &f;
            swapcontext(&g.scheduler, &f.ctx);
        }
        if (release_simd(g)) continue;
        uint done = 0, barrier = 0;
        for (Fiber& f : g.fibers) {
            done += f.state == DONE;
            barrier += f.state == AT_BARRIER;
        }
        if (done == threads) return;
        if (barrier + done < threads) fail("a SIMD-group function some lanes never reach");
        if (done > 0) fail("a threadgroup barrier some threads of the group never reach");
        for (Fiber& f : g.fibers) f.state = READY;
    }
}

// ---------------------------------------------------------------------------
// Buffers with guard pages.

struct Buffer {
    char* base = nullptr;  // the mapping
    size_t mapped = 0;
    char* data = nullptr;  // the buffer's first byte
    size_t size = 0;
};

inline std::vector<Buffer>& buffers() {
    static std::vector<Buffer> b;
    return b;
}

inline void on_fault(int, siginfo_t* info, void*) {
    char* at = static_cast<char*>(info->si_addr);
    char msg[160];
    int slot = -1;
    for (size_t i = 0; i < buffers().size(); i++) {
        const Buffer& b = buffers()[i];
        if (at >= b.base && at < b.base + b.mapped) slot = int(i);
    }
    int n = std::snprintf(msg, sizeof msg, "msl_exec: out-of-bounds access near buffer(%d)\n", slot);
    if (write(2, msg, size_t(n)) < 0) {}
    _exit(4);
}

// A buffer of `size` bytes whose end touches an inaccessible page.
inline Buffer map_buffer(size_t size) {
    size_t page = size_t(sysconf(_SC_PAGESIZE));
    size_t body = (size + page - 1) / page * page;
    Buffer b;
    b.mapped = body + 2 * page;
    void* m = mmap(nullptr, b.mapped, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) fail("mmap failed");
    b.base = static_cast<char*>(m);
    if (body > 0 && mprotect(b.base + page, body, PROT_READ | PROT_WRITE) != 0) fail("mprotect failed");
    b.data = b.base + page + body - size;
    b.size = size;
    return b;
}

// `buffer(n)` arguments: a pointer or reference of whatever type the kernel
// declares.
struct Arg {
    char* p;
    template <class T> operator T*() const { return reinterpret_cast<T*>(p); }
    template <class T> operator T&() const { return *reinterpret_cast<T*>(p); }
};

inline Arg buf(int slot) {
    if (slot < 0 || size_t(slot) >= buffers().size()) fail("the kernel uses a buffer slot the run did not bind");
    return Arg{buffers()[size_t(slot)].data};
}

// Builtin arguments, convertible to the types kernels declare them with.
struct Builtin {
    uint3 v;
    operator uint() const { return v.x; }
    operator metal::ushort() const { return metal::ushort(v.x); }
    operator uint3() const { return v; }
    operator metal::ushort3() const { return metal::ushort3(v); }
};

inline Builtin scalar(uint x) { return Builtin{uint3(x, 0u, 0u)}; }

// Fills a kernel-local threadgroup array with 0xFF bytes the first time a
// group reaches its declaration.
inline void poison(void* p, size_t size) {
    Group& g = group();
    for (void* q : g.poisoned)
        if (q == p) return;
    g.poisoned.push_back(p);
    std::memset(p, 0xFF, size);
}

// The dispatch being run.
inline uint3& grid() {
    static uint3 g;
    return g;
}
inline uint& threads() {
    static uint t;
    return t;
}

inline bool read_file(const char* path, std::vector<char>& out) {
    FILE* f = std::fopen(path, "rb");
    if (!f) return false;
    char chunk[65536];
    size_t n;
    while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) out.insert(out.end(), chunk, chunk + n);
    std::fclose(f);
    return true;
}

// `prog DIR GX GY GZ THREADS NBUF`: loads DIR/buf0.. (slot order), runs
// every threadgroup of the grid, writes the buffers back.
inline int run_main(int argc, char** argv, void (*entry)(uint, uint3)) {
    if (argc != 7) fail("usage: DIR GX GY GZ THREADS NBUF");
    grid() = uint3(uint(std::atoi(argv[2])), uint(std::atoi(argv[3])), uint(std::atoi(argv[4])));
    threads() = uint(std::atoi(argv[5]));
    int n = std::atoi(argv[6]);
    std::vector<std::string> paths;
    for (int i = 0; i < n; i++) {
        paths.push_back(std::string(argv[1]) + "/buf" + std::to_string(i));
        std::vector<char> bytes;
        if (!read_file(paths.back().c_str(), bytes)) fail("cannot read a buffer file");
        Buffer b = map_buffer(bytes.size());
        if (!bytes.empty()) std::memcpy(b.data, bytes.data(), bytes.size());
        buffers().push_back(b);
    }
    static char alt[1 << 16];
    stack_t ss{};
    ss.ss_sp = alt;
    ss.ss_size = sizeof alt;
    sigaltstack(&ss, nullptr);
    struct sigaction sa{};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, nullptr);
    sigaction(SIGBUS, &sa, nullptr);
    for (uint z = 0; z < grid().z; z++)
        for (uint y = 0; y < grid().y; y++)
            for (uint x = 0; x < grid().x; x++) run_group(uint3(x, y, z), threads(), entry);
    for (int i = 0; i < n; i++) {
        FILE* f = std::fopen(paths[size_t(i)].c_str(), "wb");
        const Buffer& b = buffers()[size_t(i)];
        if (!f || std::fwrite(b.data, 1, b.size, f) != b.size) fail("cannot write a buffer file");
        std::fclose(f);
    }
    return 0;
}

} // namespace q4cpu

namespace metal {

// naga writes WGSL's 16×16 cooperative matrices as these, which Metal
// lacks (metal_shim.h leaves them out so the hand-written twins cannot use
// them); the executor runs naga's translation of the WGSL COOP variants.
typedef simdgroup_matrix<half, 16, 16> simdgroup_half16x16;
typedef simdgroup_matrix<float, 16, 16> simdgroup_float16x16;

inline void threadgroup_barrier(mem_flags) { q4cpu::yield(q4cpu::AT_BARRIER); }
inline void simdgroup_barrier(mem_flags) {}

// SIMD-group matrices: every lane holds, loads and multiplies the whole
// tile, and stores it whole (the same values from each lane). Each
// operation first waits for the lanes of its group, so one that not every
// lane reaches is reported, as for the other SIMD-group functions.
inline void simd_matrix_sync();

template <class T, int Cols, int Rows>
simdgroup_matrix<T, Cols, Rows> make_filled_simdgroup_matrix(T value) {
    simdgroup_matrix<T, Cols, Rows> m;
    for (int r = 0; r < Rows; r++)
        for (int c = 0; c < Cols; c++) m.e[r][c] = value;
    return m;
}

// Where element (r, c) of a tile lives: (origin.y + r)·stride + origin.x + c;
// with transpose_matrix (origin.y + c)·stride + origin.x + r (the tile
// stored column by column).
inline ulong tile_index(int r, int c, ulong stride, ulong2 origin, bool transpose_matrix) {
    ulong row = transpose_matrix ? ulong(c) : ulong(r);
    ulong col = transpose_matrix ? ulong(r) : ulong(c);
    return (origin.y + row) * stride + origin.x + col;
}

template <class T, int Cols, int Rows>
void simdgroup_load(simdgroup_matrix<T, Cols, Rows>& d, const typename identity<T>::type* src, ulong elements_per_row,
                    ulong2 matrix_origin, bool transpose_matrix) {
    simd_matrix_sync();
    for (int r = 0; r < Rows; r++)
        for (int c = 0; c < Cols; c++) d.e[r][c] = src[tile_index(r, c, elements_per_row, matrix_origin, transpose_matrix)];
}

template <class T, int Cols, int Rows>
void simdgroup_store(simdgroup_matrix<T, Cols, Rows> a, typename identity<T>::type* dst, ulong elements_per_row,
                     ulong2 matrix_origin, bool transpose_matrix) {
    simd_matrix_sync();
    for (int r = 0; r < Rows; r++)
        for (int c = 0; c < Cols; c++) dst[tile_index(r, c, elements_per_row, matrix_origin, transpose_matrix)] = a.e[r][c];
}

// naga passes the origin as a scalar 0 (Metal widens it to ulong2).
template <class T, int Cols, int Rows>
void simdgroup_load(simdgroup_matrix<T, Cols, Rows>& d, const typename identity<T>::type* src, ulong elements_per_row,
                    int origin, bool transpose_matrix) {
    simdgroup_load(d, src, elements_per_row, ulong2(ulong(origin), ulong(origin)), transpose_matrix);
}

template <class T, int Cols, int Rows>
void simdgroup_store(simdgroup_matrix<T, Cols, Rows> a, typename identity<T>::type* dst, ulong elements_per_row,
                     int origin, bool transpose_matrix) {
    simdgroup_store(a, dst, elements_per_row, ulong2(ulong(origin), ulong(origin)), transpose_matrix);
}

// d = a·b + c, products and sums in float.
template <class TD, class TA, class TB, class TC, int N>
void simdgroup_multiply_accumulate(simdgroup_matrix<TD, N, N>& d, const simdgroup_matrix<TA, N, N>& a,
                                   const simdgroup_matrix<TB, N, N>& b, const simdgroup_matrix<TC, N, N>& c) {
    simd_matrix_sync();
    simdgroup_matrix<TD, N, N> out;
    for (int r = 0; r < N; r++)
        for (int col = 0; col < N; col++) {
            float s = float(c.e[r][col]);
            for (int k = 0; k < N; k++) s += float(a.e[r][k]) * float(b.e[k][col]);
            out.e[r][col] = TD(s);
        }
    d = out;
}

// One SIMD-group exchange: stores x, waits for the group, returns the
// values of every lane (undefined ones stay zero) and the lanes' mask.
template <class T> unsigned simd_exchange(T x, T (&all)[32]) {
    static_assert(sizeof(T) <= 16, "SIMD values up to 16 bytes");
    q4cpu::Group& g = q4cpu::group();
    q4cpu::Fiber* f = g.current;
    uint lane = f->tid % 32;
    q4cpu::SimdGroup& s = g.simd[f->tid / 32];
    uint buf = f->simd_seq % 2;
    std::memcpy(s.slot[buf][lane], &x, sizeof(T));
    q4cpu::yield(q4cpu::AT_SIMD);
    unsigned lanes = s.lanes[buf];
    for (uint i = 0; i < 32; i++) std::memcpy(&all[i], s.slot[buf][i], sizeof(T));
    f->simd_seq++;
    return lanes;
}

inline void simd_matrix_sync() {
    int all[32];
    simd_exchange(0, all);
}

template <class T> T simd_shuffle(T data, ushort lane) {
    T all[32];
    simd_exchange(data, all);
    return all[lane % 32];
}
template <class T> T simd_shuffle_xor(T data, ushort mask) {
    T all[32];
    uint lane = q4cpu::group().current->tid % 32;
    simd_exchange(data, all);
    return all[(lane ^ mask) % 32];
}
template <class T> T simd_shuffle_down(T data, ushort delta) {
    T all[32];
    uint lane = q4cpu::group().current->tid % 32;
    simd_exchange(data, all);
    return lane + delta < 32 ? all[lane + delta] : data;
}
template <class T> T simd_shuffle_up(T data, ushort delta) {
    T all[32];
    uint lane = q4cpu::group().current->tid % 32;
    simd_exchange(data, all);
    return lane >= delta ? all[lane - delta] : data;
}
template <class T> T simd_broadcast(T data, ushort lane) { return simd_shuffle(data, lane); }
// The SIMD-group reductions: `op` folded over the active lanes' values,
// starting from `init`.
template <class T, class Op> T simd_fold(T data, T init, Op op) {
    T all[32];
    unsigned lanes = simd_exchange(data, all);
    T acc = init;
    for (uint i = 0; i < 32; i++)
        if (lanes & (1u << i)) acc = op(acc, all[i]);
    return acc;
}
template <class T> T simd_sum(T data) {
    return simd_fold(data, T(0), [](T a, T b) { return a + b; });
}
template <class T> T simd_max(T data) {
    return simd_fold(data, data, [](T a, T b) { return max(a, b); });
}
template <class T> T simd_min(T data) {
    return simd_fold(data, data, [](T a, T b) { return min(a, b); });
}

// Atomics: fibers switch only at barriers, so plain reads and writes are atomic.
template <class T> T atomic_load_explicit(const volatile atomic_of<T>* a, memory_order) {
    return a->value_;
}
template <class T>
void atomic_store_explicit(volatile atomic_of<T>* a, typename identity<T>::type v, memory_order) {
    a->value_ = v;
}
template <class T>
T atomic_fetch_add_explicit(volatile atomic_of<T>* a, typename identity<T>::type v, memory_order) {
    T old = a->value_;
    a->value_ = T(old + v);
    return old;
}
template <class T>
T atomic_fetch_sub_explicit(volatile atomic_of<T>* a, typename identity<T>::type v, memory_order) {
    T old = a->value_;
    a->value_ = T(old - v);
    return old;
}
template <class T>
T atomic_fetch_min_explicit(volatile atomic_of<T>* a, typename identity<T>::type v, memory_order) {
    T old = a->value_;
    a->value_ = v < old ? v : old;
    return old;
}
template <class T>
T atomic_fetch_max_explicit(volatile atomic_of<T>* a, typename identity<T>::type v, memory_order) {
    T old = a->value_;
    a->value_ = v > old ? v : old;
    return old;
}

} // namespace metal
