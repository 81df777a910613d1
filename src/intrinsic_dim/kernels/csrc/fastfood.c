/* Native CPU kernels of intrinsic_dim: the FWHT and the fused Fastfood segment.
 *
 * Built by intrinsic_dim.hadamard.build as a plain shared library (gcc -O3 [-mavx2 -mfma] -fopenmp)
 * and called through ctypes on tensors' data pointers. Vector code uses GCC vector extensions, so
 * the same source compiles to AVX2/AVX-512 or to portable SSE2 code.
 *
 * The random factors B, Pi and G are regenerated here from the counter-based recipe of
 * intrinsic_dim/rng.py (SplitMix64 keys and streams, Irwin-Hall(4) Gaussians, the 4-round
 * xorshift/multiply/add permutation), bit-exactly; no factor of the size of the output is stored.
 * All float results are independent of the number of threads.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __AVX2__
#include <immintrin.h>
#endif
#ifdef __linux__
#include <sys/mman.h>
#endif

/* The generator's constants come from intrinsic_dim/rng.py, passed as -DFF_* by the build
 * (intrinsic_dim.kernels.toolchain), so that the recipe has one source. */
#if !defined(FF_GOLDEN) || !defined(FF_MIX1) || !defined(FF_MIX2) || !defined(FF_STREAM_SIGN) || \
    !defined(FF_STREAM_GAUSS) || !defined(FF_STREAM_PERM) || !defined(FF_PERM_ROUNDS) ||        \
    !defined(FF_GAUSS_CENTER) || !defined(FF_GAUSS_SCALE)
#error "build with python -m intrinsic_dim.kernels.build: it passes the constants of intrinsic_dim/rng.py"
#endif
#define GOLDEN ((uint64_t)FF_GOLDEN)
#define MIX1 ((uint64_t)FF_MIX1)
#define MIX2 ((uint64_t)FF_MIX2)
#define STREAM_SIGN ((uint64_t)FF_STREAM_SIGN)
#define STREAM_GAUSS ((uint64_t)FF_STREAM_GAUSS)
#define STREAM_PERM ((uint64_t)FF_STREAM_PERM)
#define PERM_ROUNDS FF_PERM_ROUNDS
#define GAUSS_CENTER FF_GAUSS_CENTER
#define GAUSS_SCALE FF_GAUSS_SCALE

/* Elements below which work stays on one thread. */
#define PAR_ELEMS (1 << 17)
/* Blocks at least this long (log2) are shared by all threads when there are few of them. */
#define COOP_MIN_LOG 16
/* Most chunks of blocks whose transposes are summed separately (then reduced in order). */
#define MAX_CHUNKS 32
#define PARTIALS_BYTES (64LL << 20)
/* Outputs at least this large are advised onto transparent huge pages. */
#define HUGE_MIN_BYTES (8LL << 20)

typedef float vf8 __attribute__((vector_size(32)));
typedef float vf4 __attribute__((vector_size(16)));
typedef double vd4 __attribute__((vector_size(32)));
typedef uint64_t vu64 __attribute__((vector_size(32)));
typedef int64_t vi64 __attribute__((vector_size(32)));
typedef uint32_t vu32 __attribute__((vector_size(32)));
typedef int32_t vi32 __attribute__((vector_size(32)));
typedef int32_t vi32x4 __attribute__((vector_size(16)));
typedef uint16_t vu16 __attribute__((vector_size(32)));

/* ---------------------------------------------------------------- counter-based generator */

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * MIX1;
    z = (z ^ (z >> 27)) * MIX2;
    return z ^ (z >> 31);
}

static inline vu64 vmix64(vu64 z) {
    z = (z ^ (z >> 30)) * MIX1;
    z = (z ^ (z >> 27)) * MIX2;
    return z ^ (z >> 31);
}

/* A block's key is mix64(stream key ^ block * MIX1); the stream key depends on the seed and the
 * stream only, so a segment derives it once and each block pays one mix. */
static uint64_t ff_stream_key(uint64_t seed, uint64_t stream) { return mix64(mix64(seed + GOLDEN) ^ (stream * GOLDEN)); }

static inline uint64_t ff_block_key(uint64_t stream_key, uint64_t block) { return mix64(stream_key ^ (block * MIX1)); }

static uint64_t ff_key_of(uint64_t seed, uint64_t stream, uint64_t block) {
    return ff_block_key(ff_stream_key(seed, stream), block);
}

/* The stream keys of one seed: sign (B), Gaussian (G) and permutation (Pi). */
typedef struct {
    uint64_t sign, gauss, perm;
} streams_t;

static streams_t streams_of(uint64_t seed) {
    return (streams_t){ff_stream_key(seed, STREAM_SIGN), ff_stream_key(seed, STREAM_GAUSS), ff_stream_key(seed, STREAM_PERM)};
}

static inline uint64_t bits64(uint64_t key, uint64_t i) { return mix64(key + (i + 1) * GOLDEN); }

/* The counter key + (j + 1 + lane) * GOLDEN of positions j .. j + 3. */
static inline vu64 ctr_at(uint64_t key, int64_t j) {
    uint64_t c = key + (uint64_t)(j + 1) * GOLDEN;
    return (vu64){c, c + GOLDEN, c + 2 * GOLDEN, c + 3 * GOLDEN};
}

static inline int32_t gauss_int(uint64_t h) {
    return (int32_t)((h & 0xFFFF) + ((h >> 16) & 0xFFFF) + ((h >> 32) & 0xFFFF) + (h >> 48)) - GAUSS_CENTER;
}

/* Per 32-bit word w of the hashes: (w & 0xFFFF) + (w >> 16); adjacent words then sum to a lane. */
static inline vu32 half_sums(vu64 h) {
    vu32 w = (vu32)h;
    return (w & 0xFFFF) + (w >> 16);
}

/* Signs of 8 positions as float sign-bit masks, Gaussians of 8 positions (float32). */
static inline vu32 sign8_f32(vu64 h0, vu64 h1) {
    return __builtin_shuffle((vu32)h0, (vu32)h1, (vu32){1, 3, 5, 7, 9, 11, 13, 15}) & 0x80000000u;
}

static inline vf8 gauss8_f32(vu64 h0, vu64 h1) {
    vu32 a = half_sums(h0), b = half_sums(h1);
    vu32 s = __builtin_shuffle(a, b, (vu32){0, 2, 4, 6, 8, 10, 12, 14}) +
             __builtin_shuffle(a, b, (vu32){1, 3, 5, 7, 9, 11, 13, 15});
    vf8 g = __builtin_convertvector((vi32)s - GAUSS_CENTER, vf8);
    return g * (float)GAUSS_SCALE;
}

/* Signs of 4 positions as double sign-bit masks, Gaussians of 4 positions (float64). */
static inline vu64 sign4_f64(vu64 h) { return h & 0x8000000000000000ULL; }

static inline vd4 gauss4_f64(vu64 h) {
    vu32 a = half_sums(h);
    vi32x4 s = (vi32x4)__builtin_shufflevector(a, a, 0, 2, 4, 6) + (vi32x4)__builtin_shufflevector(a, a, 1, 3, 5, 7);
    vd4 g = __builtin_convertvector(s - GAUSS_CENTER, vd4);
    return g * GAUSS_SCALE;
}

/* The Pi bijection of [0, 2**L): rng.permutation, with its inverse (rounds undone in reverse). */
typedef struct {
    uint32_t mult[PERM_ROUNDS], add[PERM_ROUNDS], inv[PERM_ROUNDS], mask;
    int shift;
} perm_t;

static void perm_init(perm_t *p, uint64_t key, int L) {
    p->mask = L >= 32 ? 0xFFFFFFFFu : (1u << L) - 1u;
    p->shift = (L + 1) / 2 > 1 ? (L + 1) / 2 : 1;
    for (int r = 0; r < PERM_ROUNDS; r++) {
        uint32_t m = (uint32_t)((bits64(key, 2 * r) | 1u) & p->mask);
        uint32_t inv = m; /* Newton: inverse of an odd number modulo 2**32 */
        for (int i = 0; i < 5; i++) inv *= 2u - m * inv;
        p->mult[r] = m;
        p->inv[r] = inv & p->mask;
        p->add[r] = (uint32_t)(bits64(key, 2 * r + 1) & p->mask);
    }
}

/* Masking once per round after the add is the same as masking after the multiply and the add. */
static inline vu32 perm8(const perm_t *p, vu32 x) {
    for (int r = 0; r < PERM_ROUNDS; r++) {
        x ^= x >> p->shift;
        x = (x * p->mult[r] + p->add[r]) & p->mask;
    }
    return x;
}

/* x ^ (x >> s) is its own inverse because 2 * shift >= L. */
static inline vu32 iperm8(const perm_t *p, vu32 x) {
    for (int r = PERM_ROUNDS - 1; r >= 0; r--) {
        x = ((x - p->add[r]) * p->inv[r]) & p->mask;
        x ^= x >> p->shift;
    }
    return x;
}

static inline uint32_t perm1(const perm_t *p, uint32_t x, int inverse) {
    vu32 v = {x};
    return (inverse ? iperm8(p, v) : perm8(p, v))[0];
}

static inline vu32 lanes8(int64_t j) {
    uint32_t b = (uint32_t)j;
    return (vu32){b, b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7};
}

/* pi (or pi^-1) of positions i .. i + 15 as two index vectors; blocks of at most 2**16 elements
 * compute in 16-bit lanes, twice as many per instruction (the low 16 bits are all that matter). */
static inline void perm16(const perm_t *p, int64_t i, int inverse, vu32 *a, vu32 *b) {
    if (p->mask > 0xFFFFu) {
        *a = inverse ? iperm8(p, lanes8(i)) : perm8(p, lanes8(i));
        *b = inverse ? iperm8(p, lanes8(i + 8)) : perm8(p, lanes8(i + 8));
        return;
    }
    const uint16_t m = (uint16_t)p->mask, j = (uint16_t)i;
    vu16 x = (vu16){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15} + j;
    if (inverse) {
        for (int r = PERM_ROUNDS - 1; r >= 0; r--) {
            x = ((x - (uint16_t)p->add[r]) * (uint16_t)p->inv[r]) & m;
            x ^= x >> p->shift;
        }
    } else {
        for (int r = 0; r < PERM_ROUNDS; r++) {
            x ^= x >> p->shift;
            x = (x * (uint16_t)p->mult[r] + (uint16_t)p->add[r]) & m;
        }
    }
    *a = __builtin_convertvector(__builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7), vu32);
    *b = __builtin_convertvector(__builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15), vu32);
}

/* ---------------------------------------------------------------- threading helpers */

static inline int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* This thread's share [lo, hi) of n work items when par (all threads of the team cooperate). */
static inline void span(int64_t n, int par, int64_t *lo, int64_t *hi) {
#ifdef _OPENMP
    if (par) {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        *lo = n * t / nt;
        *hi = n * (t + 1) / nt;
        return;
    }
#endif
    *lo = 0;
    *hi = n;
}

#ifdef _OPENMP
#define BARRIER(par)                   \
    do {                               \
        if (par) {                     \
            _Pragma("omp barrier")     \
        }                              \
    } while (0)
#else
#define BARRIER(par) ((void)(par))
#endif

/* Ask for transparent huge pages on the untouched pages of a large output: in a VM, faulting in
 * 4 KiB pages of a fresh tensor costs more than the kernel itself. */
static void advise_huge(void *p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)1 << 21;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1), e = ((uintptr_t)p + bytes) & ~(huge - 1);
    if (bytes >= HUGE_MIN_BYTES && e > a) madvise((void *)a, e - a, MADV_HUGEPAGE);
#else
    (void)p;
    (void)bytes;
#endif
}

static void *alloc_aligned(size_t bytes) {
    size_t rounded = (bytes + 63) / 64 * 64;
    return aligned_alloc(64, rounded ? rounded : 64);
}

/* Number of chunks of blocks whose transposes are summed separately: a function of the problem only,
 * never of the thread count, so the reduction order (and the result) is the same on any machine. */
static int64_t transpose_chunks(int64_t nblocks, int64_t dpad) {
    int64_t k = nblocks < MAX_CHUNKS ? nblocks : MAX_CHUNKS;
    int64_t cap = PARTIALS_BYTES / (dpad * (int64_t)sizeof(double));
    if (k > cap) k = cap;
    return k < 1 ? 1 : k;
}

/* ---------------------------------------------------------------- per-type vector helpers */

static const vf8 SIGN1_F32 = {1, -1, 1, -1, 1, -1, 1, -1};
static const vf8 SIGN2_F32 = {1, 1, -1, -1, 1, 1, -1, -1};
static const vf8 SIGN4_F32 = {1, 1, 1, 1, -1, -1, -1, -1};
static const vd4 SIGN1_F64 = {1, -1, 1, -1};
static const vd4 SIGN2_F64 = {1, 1, -1, -1};

/* The FWHT stages inside one vector: lane i becomes x[i] + x[i^h] (lower lane) or x[i^h] - x[i]. */
static inline vf8 invec_f32(vf8 v) {
    v = __builtin_shuffle(v, (vi32){1, 0, 3, 2, 5, 4, 7, 6}) + v * SIGN1_F32;
    v = __builtin_shuffle(v, (vi32){2, 3, 0, 1, 6, 7, 4, 5}) + v * SIGN2_F32;
    return __builtin_shuffle(v, (vi32){4, 5, 6, 7, 0, 1, 2, 3}) + v * SIGN4_F32;
}

static inline vd4 invec_f64(vd4 v) {
    v = __builtin_shuffle(v, (vi64){1, 0, 3, 2}) + v * SIGN1_F64;
    return __builtin_shuffle(v, (vi64){2, 3, 0, 1}) + v * SIGN2_F64;
}

/* Factors of the next W positions of a stream whose counter is *c (then advanced). */
static inline vu32 sign_next_f32(vu64 *c) {
    vu64 h0 = vmix64(*c), h1 = vmix64(*c + 4 * GOLDEN);
    *c += 8 * GOLDEN;
    return sign8_f32(h0, h1);
}

static inline vf8 gauss_next_f32(vu64 *c) {
    vu64 h0 = vmix64(*c), h1 = vmix64(*c + 4 * GOLDEN);
    *c += 8 * GOLDEN;
    return gauss8_f32(h0, h1);
}

static inline vu64 sign_next_f64(vu64 *c) {
    vu64 h = vmix64(*c);
    *c += 4 * GOLDEN;
    return sign4_f64(h);
}

static inline vd4 gauss_next_f64(vu64 *c) {
    vu64 h = vmix64(*c);
    *c += 4 * GOLDEN;
    return gauss4_f64(h);
}

/* Signs (sign-bit masks) and Gaussians of W positions from W / 4 vectors of their hashes. */
static inline vu32 sign_of_f32(const vu64 *h) { return sign8_f32(h[0], h[1]); }

static inline vf8 gauss_of_f32(const vu64 *h) { return gauss8_f32(h[0], h[1]); }

static inline vu64 sign_of_f64(const vu64 *h) { return sign4_f64(h[0]); }

static inline vd4 gauss_of_f64(const vu64 *h) { return gauss4_f64(h[0]); }

/* Vector k (of 8 / W) of src gathered at the 8 indices idx. */
static inline vf8 gatherv_f32(const float *src, vu32 idx, int k) {
    (void)k;
#ifdef __AVX2__
    return (vf8)_mm256_i32gather_ps(src, (__m256i)idx, 4);
#else
    return (vf8){src[idx[0]], src[idx[1]], src[idx[2]], src[idx[3]],
                 src[idx[4]], src[idx[5]], src[idx[6]], src[idx[7]]};
#endif
}

static inline vd4 gatherv_f64(const double *src, vu32 idx, int k) {
#ifdef __AVX2__
    __m128i half = k ? _mm256_extracti128_si256((__m256i)idx, 1) : _mm256_castsi256_si128((__m256i)idx);
    return (vd4)_mm256_i32gather_pd(src, half, 8);
#else
    return (vd4){src[idx[4 * k]], src[idx[4 * k + 1]], src[idx[4 * k + 2]], src[idx[4 * k + 3]]};
#endif
}

/* acc[0:W] += v, in double precision. */
static inline void acc_add_f32(double *acc, vf8 v) {
    vd4 a0, a1;
    memcpy(&a0, acc, sizeof a0);
    memcpy(&a1, acc + 4, sizeof a1);
    a0 += __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3), vd4);
    a1 += __builtin_convertvector(__builtin_shufflevector(v, v, 4, 5, 6, 7), vd4);
    memcpy(acc, &a0, sizeof a0);
    memcpy(acc + 4, &a1, sizeof a1);
}

static inline void acc_add_f64(double *acc, vd4 v) {
    vd4 a;
    memcpy(&a, acc, sizeof a);
    a += v;
    memcpy(acc, &a, sizeof a);
}

/* ---------------------------------------------------------------- float32 and float64 kernels */

#define T float
#define V vf8
#define UV vu32
#define W 8
#define LOGW 3
#define SFX f32
#define CHUNK_LOG 13
#define TILE_LOG 16
#define ROW_MIN_LOG 6
#define TILE_MAX_LOG 17
#include "fastfood_impl.h"
#undef T
#undef V
#undef UV
#undef W
#undef LOGW
#undef SFX
#undef CHUNK_LOG
#undef TILE_LOG
#undef ROW_MIN_LOG
#undef TILE_MAX_LOG

#define T double
#define V vd4
#define UV vu64
#define W 4
#define LOGW 2
#define SFX f64
#define CHUNK_LOG 12
#define TILE_LOG 15
#define ROW_MIN_LOG 5
#define TILE_MAX_LOG 16
#include "fastfood_impl.h"

/* ---------------------------------------------------------------- normaliser */

/* out[b * 2**L + i] = G_i**2 of block block0 + b, float64 (each square one IEEE multiply, as torch's
 * pow(2)): what make_segment sums into its normaliser, regenerated at the cost of one hash per entry. */
void ff_gauss_sq_f64(double *out, uint64_t seed, int64_t block0, int64_t nblocks, int L, int nt) {
    const int64_t n = (int64_t)1 << L;
    const int team = (nblocks << L >= PAR_ELEMS && nt > 1) ? nt : 1;
    const uint64_t stream = ff_stream_key(seed, STREAM_GAUSS);
#pragma omp parallel for num_threads(team) schedule(static)
    for (int64_t b = 0; b < nblocks; b++) {
        const uint64_t kg = ff_block_key(stream, (uint64_t)(block0 + b));
        double *row = out + b * n;
        if (n < 4) {
            for (int64_t i = 0; i < n; i++) {
                const double g = (double)gauss_int(bits64(kg, (uint64_t)i)) * GAUSS_SCALE;
                row[i] = g * g;
            }
            continue;
        }
        vu64 c = ctr_at(kg, 0);
        for (int64_t i = 0; i < n; i += 4) {
            const vd4 g = gauss_next_f64(&c);
            const vd4 sq = g * g;
            memcpy(row + i, &sq, sizeof sq);
        }
    }
}

/* ---------------------------------------------------------------- introspection */

uint64_t ff_key(uint64_t seed, uint64_t stream, uint64_t block) { return ff_key_of(seed, stream, block); }

/* The generator constants this library was built with: GOLDEN, MIX1, MIX2, the three stream ids,
 * PERM_ROUNDS and GAUSS_CENTER into u[0..7], GAUSS_SCALE into *scale. */
void ff_constants(uint64_t *u, double *scale) {
    const uint64_t v[8] = {GOLDEN, MIX1, MIX2, STREAM_SIGN, STREAM_GAUSS, STREAM_PERM, PERM_ROUNDS, GAUSS_CENTER};
    memcpy(u, v, sizeof v);
    *scale = GAUSS_SCALE;
}

int ff_isa(void) {
#if defined(__AVX512DQ__) && defined(__AVX512VL__)
    return 512;
#elif defined(__AVX2__)
    return 256;
#else
    return 0;
#endif
}

/* Benchmark probe: iters rounds of 8 independent 4-lane hashes (the kernels' vmix64, the hash behind every
 * regenerated sign, Gaussian and permutation key) on each of nt threads: 32 * iters * nt hashes; the result
 * depends on every hash. */
uint64_t ff_hash_probe(int64_t iters, int nt) {
    uint64_t total = 0;
#pragma omp parallel num_threads(nt) reduction(^ : total)
    {
        vu64 h[8];
        for (int k = 0; k < 8; k++) h[k] = (vu64){4 * k, 4 * k + 1, 4 * k + 2, 4 * k + 3} + (uint64_t)thread_id() * MIX1;
        for (int64_t i = 0; i < iters; i++)
            for (int k = 0; k < 8; k++) h[k] = vmix64(h[k] + GOLDEN);
        for (int k = 0; k < 8; k++)
            for (int l = 0; l < 4; l++) total ^= h[k][l];
    }
    return total;
}

/* Benchmark probe: iters rounds of 12 independent register-resident float32 vector adds on each of
 * nt threads, to measure the add rate (12 * 8 * iters * nt adds); the result depends on every add. */
double ff_add_probe(int64_t iters, int nt) {
    double total = 0;
#pragma omp parallel num_threads(nt) reduction(+ : total)
    {
        const vf8 inc = (vf8){0} + (float)iters * 1e-30f;
        vf8 a[12];
        for (int k = 0; k < 12; k++) a[k] = (vf8){0} + (float)(k + nt);
        for (int64_t i = 0; i < iters; i++)
            for (int k = 0; k < 12; k++) a[k] += inc;
        for (int k = 0; k < 12; k++)
            for (int l = 0; l < 8; l++) total += a[k][l];
    }
    return total;
}
