/* Writes tests/data/ggml_ref_kquant.bin: f32 inputs plus what ggml's own reference
 * code makes of them for Q5_0, Q5_1, Q4_K, Q5_K and Q6_K (quantized bytes, and an
 * FNV-1a-64 hash of the dequantized floats). Layout and input kinds: tests/data/README.md.
 *
 * ggml source: vendor/llama.cpp/ggml of the llama-cpp-python 0.3.36 sdist, i.e.
 * ggml-org/llama.cpp commit 0c1e57098bba43ac29e6e3b677cdceebdd22334f. Rebuild with
 * (gcc 12.2, x86-64 baseline: no -march, so no FMA):
 *
 *   G=.../vendor/llama.cpp/ggml
 *   gcc -O2 -std=gnu11 -I$G/src -I$G/include -I$G/src/ggml-cpu \
 *       tests/data/gen_ggml_kquant_fixture.c -lm -o /tmp/gen_kq
 *   /tmp/gen_kq tests/data/ggml_ref_kquant.bin
 *
 * `/tmp/gen_kq --requant OLD NEW` keeps OLD's inputs and recomputes ggml's part (used
 * to compare builds with other flags on identical inputs).
 *
 * ggml-quants.c is #included into this file so that its assert() calls come here:
 * a failed assert (e.g. nearest_int's |x| <= 4194303) longjmps back and the
 * super-block is redrawn. Must not be built with NDEBUG. Redraw rule: see valid().
 */
#define __assert_fail q4g_assert_fail /* glibc's assert() expands to __assert_fail() */
#include "ggml-quants.c"
#include <setjmp.h>
#include <stdint.h>

#ifdef NDEBUG
#error "build without NDEBUG: ggml's asserts are part of the redraw rule"
#endif

/* ggml.c functions referenced by parts of ggml-quants.c this program never calls. */
void ggml_abort(const char *file, int line, const char *fmt, ...) { fprintf(stderr, "ggml_abort %s:%d %s\n", file, line, fmt); abort(); }
size_t ggml_row_size(enum ggml_type t, int64_t ne) { (void)t; (void)ne; abort(); }
size_t ggml_type_size(enum ggml_type t) { (void)t; abort(); }
const char *ggml_type_name(enum ggml_type t) { (void)t; abort(); }

static jmp_buf g_jb;
static volatile int g_armed;
void q4g_assert_fail(const char *a, const char *file, unsigned line, const char *fn) {
    if (g_armed) longjmp(g_jb, 1);
    fprintf(stderr, "assert failed: %s (%s:%u %s)\n", a, file, line, fn);
    abort();
}

enum { N_SB = 352, N_KINDS = 16, N_TYPES = 5 };
static const char *const TNAME[N_TYPES] = {"Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"};
static const size_t TBYTES[N_TYPES] = {8 * sizeof(block_q5_0), 8 * sizeof(block_q5_1),
    sizeof(block_q4_K), sizeof(block_q5_K), sizeof(block_q6_K)}; /* per 256 values */

static void quant(int t, const float *x, uint8_t *y, int64_t n) {
    switch (t) {
    case 0: quantize_row_q5_0_ref(x, (block_q5_0 *)y, n); break;
    case 1: quantize_row_q5_1_ref(x, (block_q5_1 *)y, n); break;
    case 2: quantize_row_q4_K_ref(x, (block_q4_K *)y, n); break;
    case 3: quantize_row_q5_K_ref(x, (block_q5_K *)y, n); break;
    default: quantize_row_q6_K_ref(x, (block_q6_K *)y, n); break;
    }
}
static void dequant(int t, const uint8_t *y, float *x, int64_t n) {
    switch (t) {
    case 0: dequantize_row_q5_0((const block_q5_0 *)y, x, n); break;
    case 1: dequantize_row_q5_1((const block_q5_1 *)y, x, n); break;
    case 2: dequantize_row_q4_K((const block_q4_K *)y, x, n); break;
    case 3: dequantize_row_q5_K((const block_q5_K *)y, x, n); break;
    default: dequantize_row_q6_K((const block_q6_K *)y, x, n); break;
    }
}

/* ---- inputs: splitmix64 ---- */
static uint64_t g_rs = 0x4b51554e54303031ull; /* "KQUNT001" */
static uint64_t rnd(void) {
    uint64_t z = (g_rs += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double unif(void) { return (double)(rnd() >> 11) * 0x1p-53; } /* [0,1) */
static double uab(double a, double b) { return a + (b - a) * unif(); }
static double gauss(void) { return sqrt(-2.0 * log(1.0 - unif())) * cos(6.283185307179586 * unif()); }
static double p10(double a, double b) { return pow(10.0, uab(a, b)); } /* 10^U(a,b) */
static double sgn(void) { return (rnd() & 1) ? -1.0 : 1.0; }
static float bits(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }

static void gen(int kind, float *x) {
    double m = p10(-6, 4), a, c;
    switch (kind) {
    case 0: for (int i = 0; i < 256; i++) { x[i] = (float)(m * gauss()); } break; /* gaussian */
    case 1: c = m * uab(-1, 1); /* uniform on [c-m, c+m] */
        for (int i = 0; i < 256; i++) { x[i] = (float)(c + m * uab(-1, 1)); } break;
    case 2: a = (double)(rnd() % 3); /* all zero: +0, -0, or mixed signs */
        for (int i = 0; i < 256; i++) { x[i] = (a == 0 || (a == 2 && (rnd() & 1))) ? 0.0f : -0.0f; } break;
    case 3: for (int g = 0; g < 256; g += 16) { /* zero 16-groups among gaussian ones */
            int z = rnd() & 1;
            for (int i = g; i < g + 16; i++) x[i] = z ? 0.0f : (float)(m * gauss());
        } break;
    case 4: for (int b = 0; b < 256; b += 32) { /* constant sub-blocks */
            int v = rnd() % 5; a = p10(-4, 3);
            for (int i = b; i < b + 32; i++)
                x[i] = (float)(v == 0 ? a : v == 1 ? -a : v == 2 ? (i < b + 16 ? a : -a) : v == 3 ? 0.0 : m * gauss());
        } break;
    case 5: m = p10(-5, 0); /* one huge outlier */
        for (int i = 0; i < 256; i++) x[i] = (float)(m * gauss());
        x[rnd() % 256] = (float)(sgn() * m * p10(2, 6)); break;
    case 6: m = p10(-2, 3); /* 16-groups whose scales differ by 1e3..1e6 */
        for (int g = 0; g < 256; g += 16) {
            a = (rnd() % 4 == 0) ? m : m * p10(-6, -3);
            for (int i = g; i < g + 16; i++) x[i] = (float)(a * gauss());
        } break;
    case 7: case 8: m = p10(-3, 4.5); /* all positive / all negative: per sub-block an */
        for (int b = 0; b < 256; b += 32) { /* offset in [0,m) and a spread of 1e-9..1 of m */
            c = (rnd() % 4 == 0) ? 0.0 : m * unif(); a = m * p10(-9, 0);
            for (int i = b; i < b + 32; i++) x[i] = (float)((kind == 7 ? 1 : -1) * (c + a * fabs(gauss())));
        } break;
    case 9: a = ldexp(1.0, (int)(rnd() % 40) - 30); /* exact ties p*(k+1/2), p = 2^e */
        for (int b = 0; b < 256; b += 32) {
            for (int i = b; i < b + 32; i++) x[i] = (float)(a * ((int)(rnd() % 31) - 16 + 0.5 * (rnd() & 1)));
            x[b + rnd() % 16] = (float)(-16 * a);      /* Q5_0: d = p exactly */
            x[b + 16 + rnd() % 16] = (float)(15 * a);  /* Q5_1: d = (15p+16p)/31 = p */
        } break;
    case 10: for (int b = 0; b < 256; b += 32) { /* f32 subnormals and +-0, some normals */
            a = p10(-37, 0);
            for (int i = b; i < b + 32; i++) {
                int r = rnd() % 5;
                x[i] = r < 2 ? (r ? -0.0f : 0.0f) : r < 4 ? bits((uint32_t)rnd() & 0x807fffffu) : (float)(a * gauss());
            }
            x[b + rnd() % 32] = (float)(sgn() * a);
        } break;
    case 11: m = p10(-36, -20); /* tiny (around 1e-30) */
        for (int i = 0; i < 256; i++) { x[i] = (float)(m * gauss()); } break;
    case 12: if (rnd() & 1) { m = p10(3, 4.5); for (int i = 0; i < 256; i++) x[i] = (float)(m * gauss()); }
        else { m = p10(4, 5.3); for (int i = 0; i < 256; i++) x[i] = (float)(m * fabs(gauss())); }
        break; /* large: as large as f16 scales allow */
    case 13: for (int i = 0; i < 256; i++) { /* random f32 bit patterns, |x| < 2^16 */
            uint32_t e = (uint32_t)(rnd() % 143);
            x[i] = bits(((uint32_t)rnd() & 0x807fffffu) | (e << 23));
        } break;
    case 14: c = sgn() * p10(-2, 4); a = fabs(c) * p10(-7, -1); /* narrow range far from 0 */
        for (int i = 0; i < 256; i++) { x[i] = (float)(c + a * uab(-1, 1)); } break;
    default: a = p10(-3, 3); /* only +-a, and some small multiples of a/8 */
        for (int i = 0; i < 256; i++) { x[i] = (float)(sgn() * a * (rnd() % 4 ? 1.0 : (double)(rnd() % 9) / 8)); } break;
    }
}

/* Redraw rule. 0 = ok; 1 = an input is not finite; 2 = a float->int conversion in
 * quantize_row_q5_0_ref / q5_1_ref would be out of range (undefined behaviour; the
 * expressions are recomputed here exactly as ggml writes them); 3 = an assert fired in
 * a ggml quantizer; 4 = some type's dequantized output is not finite (f16 scale
 * overflow; also keeps NaN bit patterns, which differ between CPUs, out of the hashes). */
static int valid(const float *x, uint8_t *q[N_TYPES], float *deq) {
    for (int i = 0; i < 256; i++) if (!isfinite(x[i])) return 1;
    for (int b = 0; b < 256; b += 32) {
        const float *v = x + b;
        float amax = 0.0f, max = 0.0f, mn = FLT_MAX, mx = -FLT_MAX;
        for (int j = 0; j < 32; j++) {
            if (amax < fabsf(v[j])) { amax = fabsf(v[j]); max = v[j]; }
            if (v[j] < mn) mn = v[j];
            if (v[j] > mx) mx = v[j];
        }
        const float d0 = max / -16, id0 = d0 ? 1.0f / d0 : 0.0f;
        const float d1 = (mx - mn) / 31, id1 = d1 ? 1.0f / d1 : 0.0f;
        for (int j = 0; j < 32; j++) {
            const float t0 = v[j] * id0 + 16.5f, t1 = (v[j] - mn) * id1 + 0.5f;
            if (!(t0 > -129.0f && t0 < 128.0f && t1 > -1.0f && t1 < 256.0f)) return 2;
        }
    }
    if (setjmp(g_jb)) { g_armed = 0; return 3; }
    g_armed = 1;
    for (int t = 0; t < N_TYPES; t++) quant(t, x, q[t], 256);
    g_armed = 0;
    for (int t = 0; t < N_TYPES; t++) {
        dequant(t, q[t], deq, 256);
        for (int i = 0; i < 256; i++) if (!isfinite(deq[i])) return 4;
    }
    return 0;
}

static uint64_t fnv(const void *p, size_t n, uint64_t h) {
    for (size_t i = 0; i < n; i++) { h ^= ((const uint8_t *)p)[i]; h *= 0x100000001b3ull; }
    return h;
}
static void put32(FILE *f, uint32_t v) { uint8_t b[4] = {v, v >> 8, v >> 16, v >> 24}; fwrite(b, 1, 4, f); }
static void put64(FILE *f, uint64_t v) { put32(f, (uint32_t)v); put32(f, (uint32_t)(v >> 32)); }

int main(int argc, char **argv) {
    const int requant = argc == 4 && !strcmp(argv[1], "--requant");
    if (argc != 2 && !requant) { fprintf(stderr, "usage: %s OUT | --requant OLD OUT\n", argv[0]); return 2; }
    static float x[N_SB * 256], deq[N_SB * 256];
    static uint8_t kinds[N_SB], qsb[N_TYPES][256 * 4], qall[N_TYPES][N_SB * 256];
    uint8_t *qp[N_TYPES];
    for (int t = 0; t < N_TYPES; t++) qp[t] = qsb[t];
    if (requant) { /* inputs from an existing fixture (x86-64 is little-endian) */
        FILE *f = fopen(argv[2], "rb");
        char hdr[60];
        if (!f || fread(hdr, 1, 60, f) != 60 || memcmp(hdr, "Q4GKQ001", 8) ||
            fread(kinds, 1, N_SB, f) != N_SB || fread(x, 4, N_SB * 256, f) != N_SB * 256) {
            fprintf(stderr, "cannot read %s\n", argv[2]); return 1;
        }
        fclose(f);
        int bad = 0; /* nothing is redrawn here: report super-blocks the rule would reject */
        for (int s = 0; s < N_SB; s++) { int r = valid(x + 256 * s, qp, deq); if (r) { bad++; fprintf(stderr, "sb %d: reason %d\n", s, r); } }
        if (bad) fprintf(stderr, "%d super-blocks not valid under this build\n", bad);
    } else {
        long redraws[N_KINDS][5] = {{0}};
        for (int s = 0; s < N_SB; s++) {
            kinds[s] = (uint8_t)(s % N_KINDS);
            for (int tries = 0;; tries++) {
                if (tries == 100000) { fprintf(stderr, "kind %d: no valid draw\n", kinds[s]); return 1; }
                gen(kinds[s], x + 256 * s);
                int r = valid(x + 256 * s, qp, deq);
                redraws[kinds[s]][r]++;
                if (!r) break;
            }
        }
        for (int k = 0; k < N_KINDS; k++)
            fprintf(stderr, "kind %2d: kept %ld, redrawn: non-finite input %ld, q5 cast %ld, assert %ld, non-finite dequant %ld\n",
                    k, redraws[k][0], redraws[k][1], redraws[k][2], redraws[k][3], redraws[k][4]);
    }
    /* The fixture's bytes: one call per type over the whole input; cross-checked
     * against the per-super-block calls above. */
    uint64_t hash[N_TYPES];
    for (int t = 0; t < N_TYPES; t++) {
        quant(t, x, qall[t], (int64_t)N_SB * 256);
        for (int s = 0; s < N_SB; s++) {
            quant(t, x + 256 * s, qsb[t], 256);
            if (memcmp(qsb[t], qall[t] + s * TBYTES[t], TBYTES[t])) { fprintf(stderr, "%s: row/block mismatch\n", TNAME[t]); return 1; }
        }
        dequant(t, qall[t], deq, (int64_t)N_SB * 256);
        hash[t] = 0xcbf29ce484222325ull;
        for (int i = 0; i < N_SB * 256; i++) {
            uint32_t b; memcpy(&b, &deq[i], 4);
            uint8_t le[4] = {b, b >> 8, b >> 16, b >> 24};
            hash[t] = fnv(le, 4, hash[t]);
        }
    }
    FILE *f = fopen(argv[requant ? 3 : 1], "wb");
    if (!f) { perror("fopen"); return 1; }
    fwrite("Q4GKQ001", 1, 8, f);
    put32(f, N_SB); put32(f, N_TYPES); put32(f, N_KINDS);
    for (int t = 0; t < N_TYPES; t++) put64(f, hash[t]);
    fwrite(kinds, 1, N_SB, f);
    for (int i = 0; i < N_SB * 256; i++) { uint32_t b; memcpy(&b, &x[i], 4); put32(f, b); }
    for (int t = 0; t < N_TYPES; t++) fwrite(qall[t], 1, N_SB * TBYTES[t], f);
    if (fclose(f)) { perror("fclose"); return 1; }
    return 0;
}
