// metal_shim.h — just enough of <metal_stdlib> for g++ to syntax- and
// type-check q4gpu's MSL kernels on a machine without Metal (tests/msl_interface.rs).
//
//   g++ -std=c++17 -fsyntax-only -Wno-attributes -x c++ -include metal_shim.h -
//
// with the kernel's `#include <metal_stdlib>` line removed. What it models:
//   * address spaces (device, constant, threadgroup, thread) and `kernel` as
//     empty macros, so declarations reduce to plain C++;
//   * Metal attributes ([[buffer(n)]], [[thread_index_in_threadgroup]], ...)
//     are left to g++, which ignores unknown attributes (-Wno-attributes);
//   * vector types (2/3/4 × float, half, int, uint, short, ushort, char,
//     uchar, bool) with Metal's rules where cheap to state: conversions
//     between vector types are explicit, scalars broadcast in binary
//     operators, bitwise operators only on integer vectors, as_type<T>
//     requires equal sizes (3-vectors are padded to 4 like in Metal);
//   * the functions the kernels and naga's MSL output use.
// Only declarations are needed (-fsyntax-only never links), but small bodies
// are given where they are one line. With -DQ4GPU_SHIM_ADDRESS_SPACES under
// clang's C++ for OpenCL (`clang++ -x clcpp -cl-std=clc++2021 -cl-no-stdinc`)
// the address spaces are kept apart (see the end of this file). What it
// cannot check: Metal-only restrictions (no recursion, no double on most
// GPUs), attribute validity, and anything about the code's behaviour.

#pragma once

#ifdef Q4GPU_SHIM_ADDRESS_SPACES
// Names OpenCL declares itself (`half` is a keyword, the atomics are
// builtin types) become the shim's own. Kernel parameters of class type
// (uint3, pointers to uint4) need clang's extension in C++ for OpenCL.
#define half q4gpu_shim_half
#define atomic_int q4gpu_shim_atomic_int
#define atomic_uint q4gpu_shim_atomic_uint
#define memory_order q4gpu_shim_memory_order
#define memory_order_relaxed q4gpu_shim_memory_order_relaxed
#pragma OPENCL EXTENSION __cl_clang_non_portable_kernel_param_types : enable
// Metal copies a value out of constant memory like any other; clang's
// implicit copy constructor takes only generic references, which constant
// memory does not convert to.
#define Q4GPU_SHIM_FROM_CONSTANT(...)                                                              \
    vec(const __constant vec& o) : __VA_ARGS__ {}                                                  \
    vec(const vec&) = default;
#else
#define Q4GPU_SHIM_FROM_CONSTANT(...)
#endif

// No standard headers: clang's C++ for OpenCL mode has no path to them, so
// the few traits the shim needs are its own.
namespace q4gpu_shim {
struct false_type { static constexpr bool value = false; };
struct true_type { static constexpr bool value = true; };
template <class T> struct is_integral : false_type {};
template <> struct is_integral<bool> : true_type {};
template <> struct is_integral<char> : true_type {};
template <> struct is_integral<signed char> : true_type {};
template <> struct is_integral<unsigned char> : true_type {};
template <> struct is_integral<short> : true_type {};
template <> struct is_integral<unsigned short> : true_type {};
template <> struct is_integral<int> : true_type {};
template <> struct is_integral<unsigned int> : true_type {};
template <> struct is_integral<long> : true_type {};
template <> struct is_integral<unsigned long> : true_type {};
template <bool C, class T = void> struct enable_if {};
template <class T> struct enable_if<true, T> { typedef T type; };
} // namespace q4gpu_shim

namespace metal {

typedef unsigned int uint;
typedef unsigned short ushort;
typedef unsigned char uchar;
typedef unsigned long ulong;
typedef decltype(sizeof(0)) size_t;
typedef decltype((char*)0 - (char*)0) ptrdiff_t;

// 16-bit float: storage only here, arithmetic through float like MSL's
// implicit half -> float promotion in mixed expressions.
struct half {
    ushort bits;
    half() = default;
    half(float f);
    operator float() const;
};

template <class T> struct identity { typedef T type; };

template <class T, int N> struct vec;

template <class T> struct vec<T, 2> {
    T x, y;
    vec() = default;
    Q4GPU_SHIM_FROM_CONSTANT(x(o.x), y(o.y))
    constexpr vec(T a, T b) : x(a), y(b) {}
    constexpr explicit vec(T s) : x(s), y(s) {}
    template <class U> explicit vec(const vec<U, 2>& o) : x(T(o.x)), y(T(o.y)) {}
    T& operator[](uint i) { return (&x)[i]; }
    const T& operator[](uint i) const { return (&x)[i]; }
};

template <class T> struct alignas(4 * sizeof(T)) vec<T, 3> {
    T x, y, z;
    vec() = default;
    Q4GPU_SHIM_FROM_CONSTANT(x(o.x), y(o.y), z(o.z))
    constexpr vec(T a, T b, T c) : x(a), y(b), z(c) {}
    constexpr explicit vec(T s) : x(s), y(s), z(s) {}
    vec(vec<T, 2> a, T c) : x(a.x), y(a.y), z(c) {}
    vec(T a, vec<T, 2> b) : x(a), y(b.x), z(b.y) {}
    template <class U> explicit vec(const vec<U, 3>& o) : x(T(o.x)), y(T(o.y)), z(T(o.z)) {}
    T& operator[](uint i) { return (&x)[i]; }
    const T& operator[](uint i) const { return (&x)[i]; }
};

template <class T> struct alignas(4 * sizeof(T)) vec<T, 4> {
    T x, y, z, w;
    vec() = default;
    Q4GPU_SHIM_FROM_CONSTANT(x(o.x), y(o.y), z(o.z), w(o.w))
    constexpr vec(T a, T b, T c, T d) : x(a), y(b), z(c), w(d) {}
    constexpr explicit vec(T s) : x(s), y(s), z(s), w(s) {}
    vec(vec<T, 2> a, vec<T, 2> b) : x(a.x), y(a.y), z(b.x), w(b.y) {}
    vec(vec<T, 2> a, T c, T d) : x(a.x), y(a.y), z(c), w(d) {}
    vec(T a, T b, vec<T, 2> c) : x(a), y(b), z(c.x), w(c.y) {}
    vec(vec<T, 3> a, T d) : x(a.x), y(a.y), z(a.z), w(d) {}
    vec(T a, vec<T, 3> b) : x(a), y(b.x), z(b.y), w(b.z) {}
    template <class U> explicit vec(const vec<U, 4>& o) : x(T(o.x)), y(T(o.y)), z(T(o.z)), w(T(o.w)) {}
    T& operator[](uint i) { return (&x)[i]; }
    const T& operator[](uint i) const { return (&x)[i]; }
};

#define Q4GPU_SHIM_VEC(T, name)                                                                  \
    typedef vec<T, 2> name##2;                                                                     \
    typedef vec<T, 3> name##3;                                                                     \
    typedef vec<T, 4> name##4;
Q4GPU_SHIM_VEC(float, float)
Q4GPU_SHIM_VEC(half, half)
Q4GPU_SHIM_VEC(int, int)
Q4GPU_SHIM_VEC(uint, uint)
Q4GPU_SHIM_VEC(short, short)
Q4GPU_SHIM_VEC(ulong, ulong)
Q4GPU_SHIM_VEC(ushort, ushort)
Q4GPU_SHIM_VEC(char, char)
Q4GPU_SHIM_VEC(uchar, uchar)
Q4GPU_SHIM_VEC(bool, bool)
#undef Q4GPU_SHIM_VEC
// Packed 4-byte vectors (naga's dot4I8Packed / pack4xI8 output): the same
// 4 bytes as char4 / uchar4 here.
typedef char4 packed_char4;
typedef uchar4 packed_uchar4;

template <class T> struct is_vec : q4gpu_shim::false_type {};
template <class T, int N> struct is_vec<vec<T, N>> : q4gpu_shim::true_type {};

// Arithmetic: vector op vector, vector op scalar, scalar op vector.
#define Q4GPU_SHIM_BINOP(op, cond)                                                                 \
    template <class T, int N> vec<T, N> operator op(vec<T, N> a, vec<T, N> b) {                    \
        static_assert(cond, "operator " #op " is not defined for this vector type");               \
        vec<T, N> r;                                                                               \
        for (int i = 0; i < N; i++) r[i] = a[i] op b[i];                                           \
        return r;                                                                                  \
    }                                                                                              \
    template <class T, int N> vec<T, N> operator op(vec<T, N> a, typename identity<T>::type b) {   \
        return a op vec<T, N>(b);                                                                  \
    }                                                                                              \
    template <class T, int N> vec<T, N> operator op(typename identity<T>::type a, vec<T, N> b) {   \
        return vec<T, N>(a) op b;                                                                  \
    }                                                                                              \
    template <class T, int N> vec<T, N>& operator op##=(vec<T, N>& a, vec<T, N> b) {               \
        return a = a op b;                                                                         \
    }                                                                                              \
    template <class T, int N> vec<T, N>& operator op##=(vec<T, N>& a, typename identity<T>::type b) { \
        return a = a op vec<T, N>(b);                                                              \
    }
Q4GPU_SHIM_BINOP(+, true)
Q4GPU_SHIM_BINOP(-, true)
Q4GPU_SHIM_BINOP(*, true)
Q4GPU_SHIM_BINOP(/, true)
Q4GPU_SHIM_BINOP(%, q4gpu_shim::is_integral<T>::value)
Q4GPU_SHIM_BINOP(&, q4gpu_shim::is_integral<T>::value)
Q4GPU_SHIM_BINOP(|, q4gpu_shim::is_integral<T>::value)
Q4GPU_SHIM_BINOP(^, q4gpu_shim::is_integral<T>::value)
#undef Q4GPU_SHIM_BINOP

// Shifts: integer operands whose types may differ (int4 >> uint4), as in C++.
#define Q4GPU_SHIM_SHIFT(op)                                                                       \
    template <class T, class U, int N> vec<T, N> operator op(vec<T, N> a, vec<U, N> b) {           \
        static_assert(q4gpu_shim::is_integral<T>::value && q4gpu_shim::is_integral<U>::value,                    \
                      "shifts need integer vectors");                                              \
        vec<T, N> r;                                                                               \
        for (int i = 0; i < N; i++) r[i] = a[i] op b[i];                                           \
        return r;                                                                                  \
    }                                                                                              \
    template <class T, class U, int N,                                                             \
              class = typename q4gpu_shim::enable_if<q4gpu_shim::is_integral<U>::value>::type>                   \
    vec<T, N> operator op(vec<T, N> a, U b) {                                                      \
        return a op vec<U, N>(b);                                                                  \
    }                                                                                              \
    template <class T, class U, int N> vec<T, N>& operator op##=(vec<T, N>& a, U b) {              \
        return a = a op b;                                                                         \
    }
Q4GPU_SHIM_SHIFT(<<)
Q4GPU_SHIM_SHIFT(>>)
#undef Q4GPU_SHIM_SHIFT

template <class T, int N> vec<T, N> operator-(vec<T, N> a) { return T(0) - a; }
template <class T, int N> vec<T, N> operator~(vec<T, N> a) {
    static_assert(q4gpu_shim::is_integral<T>::value, "operator ~ needs an integer vector");
    return a ^ T(~T(0));
}

#define Q4GPU_SHIM_CMP(op)                                                                         \
    template <class T, int N> vec<bool, N> operator op(vec<T, N> a, vec<T, N> b) {                 \
        vec<bool, N> r;                                                                            \
        for (int i = 0; i < N; i++) r[i] = a[i] op b[i];                                           \
        return r;                                                                                  \
    }                                                                                              \
    template <class T, int N> vec<bool, N> operator op(vec<T, N> a, typename identity<T>::type b) { \
        return a op vec<T, N>(b);                                                                  \
    }
Q4GPU_SHIM_CMP(==)
Q4GPU_SHIM_CMP(!=)
Q4GPU_SHIM_CMP(<)
Q4GPU_SHIM_CMP(<=)
Q4GPU_SHIM_CMP(>)
Q4GPU_SHIM_CMP(>=)
#undef Q4GPU_SHIM_CMP

bool all(bool2);
bool all(bool3);
bool all(bool4);
bool any(bool2);
bool any(bool3);
bool any(bool4);

// Reinterpretation: sizes must match, as in Metal.
template <class T, class U> T as_type(U u) {
    static_assert(sizeof(T) == sizeof(U), "as_type<T>(u) needs sizeof(T) == sizeof(u)");
    T t;
    __builtin_memcpy(&t, &u, sizeof(T));
    return t;
}

// Scalar and vector math.
template <class T> T min(T a, T b) { return b < a ? b : a; }
template <class T> T max(T a, T b) { return a < b ? b : a; }
template <class T, int N> vec<T, N> min(vec<T, N> a, vec<T, N> b) {
    vec<T, N> r;
    for (int i = 0; i < N; i++) r[i] = min(a[i], b[i]);
    return r;
}
template <class T, int N> vec<T, N> max(vec<T, N> a, vec<T, N> b) {
    vec<T, N> r;
    for (int i = 0; i < N; i++) r[i] = max(a[i], b[i]);
    return r;
}
template <class T> T clamp(T x, T lo, T hi) { return min(max(x, lo), hi); }
// A vector clamped to scalar bounds (naga's float→int conversion helpers
// pass unsuffixed literals, float in Metal).
template <int N> vec<float, N> clamp(vec<float, N> x, float lo, float hi);
template <class T> T select(T a, T b, bool c) { return c ? b : a; }
template <class T, int N> vec<T, N> select(vec<T, N> a, vec<T, N> b, vec<bool, N> c);
template <class T, int N> T dot(vec<T, N> a, vec<T, N> b) {
    T s = T(0);
    for (int i = 0; i < N; i++) s += a[i] * b[i];
    return s;
}
template <class T> T abs(T x);

#define Q4GPU_SHIM_FN1(name)                                                                       \
    float name(float);                                                                             \
    half name(half);                                                                               \
    template <int N> vec<float, N> name(vec<float, N>);
#define Q4GPU_SHIM_FN2(name)                                                                       \
    float name(float, float);                                                                      \
    template <int N> vec<float, N> name(vec<float, N>, vec<float, N>);
#define Q4GPU_SHIM_MATH                                                                            \
    Q4GPU_SHIM_FN1(sqrt) Q4GPU_SHIM_FN1(rsqrt) Q4GPU_SHIM_FN1(exp) Q4GPU_SHIM_FN1(exp2)            \
    Q4GPU_SHIM_FN1(log) Q4GPU_SHIM_FN1(log2) Q4GPU_SHIM_FN1(sin) Q4GPU_SHIM_FN1(cos)              \
    Q4GPU_SHIM_FN1(tan) Q4GPU_SHIM_FN1(tanh) Q4GPU_SHIM_FN1(floor) Q4GPU_SHIM_FN1(ceil)            \
    Q4GPU_SHIM_FN1(round) Q4GPU_SHIM_FN1(rint) Q4GPU_SHIM_FN1(trunc) Q4GPU_SHIM_FN1(fract) Q4GPU_SHIM_FN1(fabs)        \
    Q4GPU_SHIM_FN1(sign) Q4GPU_SHIM_FN1(saturate)                                                  \
    Q4GPU_SHIM_FN2(pow) Q4GPU_SHIM_FN2(powr) Q4GPU_SHIM_FN2(fmin) Q4GPU_SHIM_FN2(fmax)            \
    Q4GPU_SHIM_FN2(atan2) Q4GPU_SHIM_FN2(step) Q4GPU_SHIM_FN2(fmod)                                \
    float fma(float, float, float);                                                                \
    float mix(float, float, float);                                                                \
    bool isnan(float);                                                                             \
    bool isinf(float);
Q4GPU_SHIM_MATH
namespace precise {
Q4GPU_SHIM_MATH
}
namespace fast {
Q4GPU_SHIM_MATH
}
#undef Q4GPU_SHIM_MATH
#undef Q4GPU_SHIM_FN1
#undef Q4GPU_SHIM_FN2

float2 unpack_unorm2x16_to_float(uint);
float2 unpack_snorm2x16_to_float(uint);
float4 unpack_unorm4x8_to_float(uint);
float4 unpack_snorm4x8_to_float(uint);
uint pack_float_to_unorm2x16(float2);
uint pack_float_to_snorm2x16(float2);
uint pack_float_to_unorm4x8(float4);
uint pack_float_to_snorm4x8(float4);

// Integer bit functions.
template <class T> T popcount(T);
template <class T> T clz(T);
template <class T> T ctz(T);
template <class T> T reverse_bits(T);
template <class T> T extract_bits(T, uint offset, uint bits);
template <class T> T insert_bits(T base, T insert, uint offset, uint bits);

// Synchronisation.
enum class mem_flags : uint {
    mem_none = 0,
    mem_device = 1,
    mem_threadgroup = 2,
    mem_texture = 4,
    mem_threadgroup_imageblock = 8,
    mem_object_data = 16,
};
inline mem_flags operator|(mem_flags a, mem_flags b) { return mem_flags(uint(a) | uint(b)); }
void threadgroup_barrier(mem_flags);
void simdgroup_barrier(mem_flags);

// SIMD-group matrices (Metal 2.3, Apple7+): 8×8 tiles a SIMD group holds
// together. Here every lane holds the whole tile (see metal_cpu.h). The
// pointers are not deduced, so a threadgroup or device one converts.
template <class T, int Cols, int Rows> struct simdgroup_matrix {
    T e[Rows][Cols];
};
typedef simdgroup_matrix<half, 8, 8> simdgroup_half8x8;
typedef simdgroup_matrix<float, 8, 8> simdgroup_float8x8;
template <class T, int Cols, int Rows>
simdgroup_matrix<T, Cols, Rows> make_filled_simdgroup_matrix(T value);
template <class T, int Cols, int Rows>
void simdgroup_load(simdgroup_matrix<T, Cols, Rows>& d, const typename identity<T>::type* src, ulong elements_per_row = Cols,
                    ulong2 matrix_origin = ulong2(0, 0), bool transpose_matrix = false);
template <class T, int Cols, int Rows>
void simdgroup_store(simdgroup_matrix<T, Cols, Rows> a, typename identity<T>::type* dst, ulong elements_per_row = Cols,
                     ulong2 matrix_origin = ulong2(0, 0), bool transpose_matrix = false);
template <class TD, class TA, class TB, class TC, int N>
void simdgroup_multiply_accumulate(simdgroup_matrix<TD, N, N>& d, const simdgroup_matrix<TA, N, N>& a,
                                   const simdgroup_matrix<TB, N, N>& b, const simdgroup_matrix<TC, N, N>& c);

// Atomics (Metal has atomic_int and atomic_uint in device and threadgroup
// memory, relaxed order only): a distinct type, usable only through these.
enum memory_order { memory_order_relaxed };
template <class T> struct atomic_of {
    T value_;
};
typedef atomic_of<int> atomic_int;
typedef atomic_of<uint> atomic_uint;
template <class T> T atomic_load_explicit(const volatile atomic_of<T>* a, memory_order);
template <class T>
void atomic_store_explicit(volatile atomic_of<T>* a, typename identity<T>::type v, memory_order);
#define Q4GPU_SHIM_ATOMIC_RMW(op)                                                                  \
    template <class T>                                                                             \
    T atomic_##op##_explicit(volatile atomic_of<T>* a, typename identity<T>::type v, memory_order);
Q4GPU_SHIM_ATOMIC_RMW(fetch_add)
Q4GPU_SHIM_ATOMIC_RMW(fetch_sub)
Q4GPU_SHIM_ATOMIC_RMW(fetch_min)
Q4GPU_SHIM_ATOMIC_RMW(fetch_max)
Q4GPU_SHIM_ATOMIC_RMW(fetch_and)
Q4GPU_SHIM_ATOMIC_RMW(fetch_or)
Q4GPU_SHIM_ATOMIC_RMW(fetch_xor)
Q4GPU_SHIM_ATOMIC_RMW(exchange)
#undef Q4GPU_SHIM_ATOMIC_RMW

// SIMD-group functions (the lane argument is ushort in Metal).
template <class T> T simd_shuffle(T data, ushort lane);
template <class T> T simd_shuffle_xor(T data, ushort mask);
template <class T> T simd_shuffle_up(T data, ushort delta);
template <class T> T simd_shuffle_down(T data, ushort delta);
template <class T> T simd_broadcast(T data, ushort lane);
template <class T> T simd_broadcast_first(T data);
template <class T> T simd_sum(T data);
template <class T> T simd_product(T data);
template <class T> T simd_min(T data);
template <class T> T simd_max(T data);
template <class T> T simd_and(T data);
template <class T> T simd_or(T data);
template <class T> T simd_xor(T data);
template <class T> T simd_prefix_inclusive_sum(T data);
template <class T> T simd_prefix_exclusive_sum(T data);
bool simd_all(bool);
bool simd_any(bool);
bool simd_is_first();

} // namespace metal

// Metal's scalar and vector types and as_type are builtins, usable without
// `metal::` (naga's output relies on that; q4gpu's kernels say `using
// namespace metal;`).
using metal::as_type;
using metal::half;
using metal::uchar;
using metal::uint;
using metal::ushort;
#define Q4GPU_SHIM_USE(name)                                                                       \
    using metal::name##2;                                                                          \
    using metal::name##3;                                                                          \
    using metal::name##4;
Q4GPU_SHIM_USE(float)
Q4GPU_SHIM_USE(half)
Q4GPU_SHIM_USE(int)
Q4GPU_SHIM_USE(uint)
Q4GPU_SHIM_USE(short)
Q4GPU_SHIM_USE(ushort)
Q4GPU_SHIM_USE(char)
Q4GPU_SHIM_USE(uchar)
Q4GPU_SHIM_USE(bool)
#undef Q4GPU_SHIM_USE
using metal::packed_char4;
using metal::packed_uchar4;

// Address spaces and function qualifiers; declared last so the standard
// headers above never see them.
#ifdef Q4GPU_SHIM_ADDRESS_SPACES
// Metal's four address spaces become C++ for OpenCL's four named ones, which
// clang keeps apart the way Metal's compiler does: a threadgroup pointer
// passed where a device one is expected, or a constant one written through,
// is an error. Unqualified pointers are OpenCL's generic space (any named
// space but constant converts to it). `kernel` stays OpenCL's keyword, so
// threadgroup variables are allowed only in kernel functions, as in Metal.
#define device __global
#define constant __constant
#define threadgroup __local
#define thread __private
#else
// Under g++ they vanish and declarations reduce to plain C++.
#define device
#define constant
#define threadgroup
#define thread
#define kernel
#endif
