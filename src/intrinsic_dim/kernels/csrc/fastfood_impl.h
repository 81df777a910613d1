/* Type-generic part of fastfood.c, included once per element type.
 *
 * Defined by the includer: T (element), V (vector of W lanes, W = 2**LOGW), UV (unsigned integer
 * vector of the same shape), SFX (name suffix), CHUNK_LOG (log2 elements of a block transformed in
 * L1), TILE_LOG (log2 elements of a tile of the later stages, kept in L2, with the prefetched next
 * one), ROW_MIN_LOG (log2 of the narrowest tile row: 256 bytes keep strided reads efficient) and
 * TILE_MAX_LOG (log2 of the largest tile, GROUP_MAX stages of the narrowest rows).
 */

#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define FN(name) CAT(name, SFX)
#define GROUP_MAX (TILE_MAX_LOG - ROW_MIN_LOG)

static inline V FN(ld)(const T *p) {
    V v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void FN(st)(T *p, V v) { memcpy(p, &v, sizeof v); }

#define BF(a, b)          \
    do {                  \
        V t_ = (a);       \
        (a) = t_ + (b);   \
        (b) = t_ - (b);   \
    } while (0)

/* ---------------------------------------------------------------- FWHT */

/* Stages of stride h, 2h, 4h (h = 2**lh vectors) on the groups t in [t0, t1) of 8 vectors. */
static void FN(radix8)(T *a, int lh, int64_t t0, int64_t t1) {
    const int64_t h = (int64_t)1 << lh, s = h * W;
    for (int64_t t = t0; t < t1; t++) {
        T *p = a + (((t >> lh) << (lh + 3)) + (t & (h - 1))) * W;
        V x0 = FN(ld)(p), x1 = FN(ld)(p + s), x2 = FN(ld)(p + 2 * s), x3 = FN(ld)(p + 3 * s);
        V x4 = FN(ld)(p + 4 * s), x5 = FN(ld)(p + 5 * s), x6 = FN(ld)(p + 6 * s), x7 = FN(ld)(p + 7 * s);
        BF(x0, x1); BF(x2, x3); BF(x4, x5); BF(x6, x7);
        BF(x0, x2); BF(x1, x3); BF(x4, x6); BF(x5, x7);
        BF(x0, x4); BF(x1, x5); BF(x2, x6); BF(x3, x7);
        FN(st)(p, x0); FN(st)(p + s, x1); FN(st)(p + 2 * s, x2); FN(st)(p + 3 * s, x3);
        FN(st)(p + 4 * s, x4); FN(st)(p + 5 * s, x5); FN(st)(p + 6 * s, x6); FN(st)(p + 7 * s, x7);
    }
}

static void FN(radix4)(T *a, int lh, int64_t t0, int64_t t1) {
    const int64_t h = (int64_t)1 << lh, s = h * W;
    for (int64_t t = t0; t < t1; t++) {
        T *p = a + (((t >> lh) << (lh + 2)) + (t & (h - 1))) * W;
        V x0 = FN(ld)(p), x1 = FN(ld)(p + s), x2 = FN(ld)(p + 2 * s), x3 = FN(ld)(p + 3 * s);
        BF(x0, x1); BF(x2, x3);
        BF(x0, x2); BF(x1, x3);
        FN(st)(p, x0); FN(st)(p + s, x1); FN(st)(p + 2 * s, x2); FN(st)(p + 3 * s, x3);
    }
}

static void FN(radix2)(T *a, int lh, int64_t t0, int64_t t1) {
    const int64_t h = (int64_t)1 << lh, s = h * W;
    for (int64_t t = t0; t < t1; t++) {
        T *p = a + (((t >> lh) << (lh + 1)) + (t & (h - 1))) * W;
        V x0 = FN(ld)(p), x1 = FN(ld)(p + s);
        BF(x0, x1);
        FN(st)(p, x0); FN(st)(p + s, x1);
    }
}

/* nst stages across the nvec vectors of a, the first of stride 2**lh vectors, in radix-8/4/2 passes. */
static void FN(cross_stages)(T *a, int64_t nvec, int lh, int nst, int par) {
    while (nst > 0) {
        int r = (nst >= 3 && nst != 4) ? 3 : (nst >= 2 ? 2 : 1);
        int64_t lo, hi;
        span(nvec >> r, par, &lo, &hi);
        if (r == 3) FN(radix8)(a, lh, lo, hi);
        else if (r == 2) FN(radix4)(a, lh, lo, hi);
        else FN(radix2)(a, lh, lo, hi);
        BARRIER(par);
        lh += r;
        nst -= r;
    }
}

/* dst = H src for one row of 2**L elements that fits in L1 (dst may be src). */
static void FN(fwht_small)(T *dst, const T *src, int L) {
    const int64_t n = (int64_t)1 << L;
    if (L < LOGW) {
        if (dst != src) memcpy(dst, src, (size_t)n * sizeof(T));
        for (int64_t h = 1; h < n; h *= 2)
            for (int64_t i = 0; i < n; i += 2 * h)
                for (int64_t j = i; j < i + h; j++) {
                    T a = dst[j], b = dst[j + h];
                    dst[j] = a + b;
                    dst[j + h] = a - b;
                }
        return;
    }
    const int64_t nvec = n >> LOGW;
    if (nvec < 8) {
        for (int64_t j = 0; j < nvec; j++) FN(st)(dst + j * W, FN(invec)(FN(ld)(src + j * W)));
        FN(cross_stages)(dst, nvec, 0, L - LOGW, 0);
        return;
    }
    for (int64_t j = 0; j < nvec; j += 8) {
        const T *p = src + j * W;
        T *q = dst + j * W;
        V x0 = FN(invec)(FN(ld)(p)), x1 = FN(invec)(FN(ld)(p + W));
        V x2 = FN(invec)(FN(ld)(p + 2 * W)), x3 = FN(invec)(FN(ld)(p + 3 * W));
        V x4 = FN(invec)(FN(ld)(p + 4 * W)), x5 = FN(invec)(FN(ld)(p + 5 * W));
        V x6 = FN(invec)(FN(ld)(p + 6 * W)), x7 = FN(invec)(FN(ld)(p + 7 * W));
        BF(x0, x1); BF(x2, x3); BF(x4, x5); BF(x6, x7);
        BF(x0, x2); BF(x1, x3); BF(x4, x6); BF(x5, x7);
        BF(x0, x4); BF(x1, x5); BF(x2, x6); BF(x3, x7);
        FN(st)(q, x0); FN(st)(q + W, x1); FN(st)(q + 2 * W, x2); FN(st)(q + 3 * W, x3);
        FN(st)(q + 4 * W, x4); FN(st)(q + 5 * W, x5); FN(st)(q + 6 * W, x6); FN(st)(q + 7 * W, x7);
    }
    FN(cross_stages)(dst, nvec, 3, L - LOGW - 3, 0);
}

/* The radix of the next pass over nst remaining stages: 8, else 4 (also for 4 stages), else 2. */
static inline int FN(radix_log)(int nst) { return (nst >= 3 && nst != 4) ? 3 : (nst >= 2 ? 2 : 1); }

/* One radix-2**r pass of FWHT stages across R rows of wc elements, rows 2**lh apart in the first
 * stage: src rows (stride ss) in, dst rows (stride ds) out, so a tile is filled or emptied in the
 * same pass as its first or last stages are done. */
#define RADIX_ROWS_BODY(R_LOG)                                                              \
    for (int64_t grp = 0; grp < R >> R_LOG; grp++) {                                        \
        const int64_t row = ((grp >> lh) << (lh + R_LOG)) + (grp & (h - 1));              \
        const T *sp = src + row * ss;                                                        \
        T *dp = dst + row * ds;                                                              \
        for (int64_t j = 0; j < wc; j += W) {                                                \
            V x[1 << R_LOG];                                                                 \
            for (int k = 0; k < 1 << R_LOG; k++) x[k] = FN(ld)(sp + k * h * ss + j);         \
            for (int st = 0; st < R_LOG; st++)                                               \
                for (int k = 0; k < 1 << R_LOG; k++)                                         \
                    if (!(k & (1 << st))) BF(x[k], x[k | (1 << st)]);                        \
            for (int k = 0; k < 1 << R_LOG; k++) FN(st)(dp + k * h * ds + j, x[k]);          \
        }                                                                                    \
    }

static void FN(radix_rows)(T *dst, int64_t ds, const T *src, int64_t ss, int64_t R, int64_t wc, int lh, int r) {
    const int64_t h = (int64_t)1 << lh;
    if (r == 3) {
        RADIX_ROWS_BODY(3)
    } else if (r == 2) {
        RADIX_ROWS_BODY(2)
    } else {
        RADIX_ROWS_BODY(1)
    }
}

/* All g stages across the 2**g rows (stride S) of wc columns at base, through an L2 tile. */
static void FN(tile_stages)(T *base, int64_t S, int g, int64_t wc, T *tile) {
    const int64_t R = (int64_t)1 << g;
    int r = FN(radix_log)(g);
    if (r == g) {
        FN(radix_rows)(base, S, base, S, R, wc, 0, r);
        return;
    }
    FN(radix_rows)(tile, wc, base, S, R, wc, 0, r);
    int lh = r, left = g - r;
    const int lwv = __builtin_ctzll((uint64_t)(wc / W));
    while (left > FN(radix_log)(left)) {
        const int rr = FN(radix_log)(left);
        if (rr == 3) FN(radix8)(tile, lh + lwv, 0, (R * wc / W) >> 3);
        else FN(radix4)(tile, lh + lwv, 0, (R * wc / W) >> 2);
        lh += rr;
        left -= rr;
    }
    FN(radix_rows)(base, S, tile, wc, R, wc, lh, left);
}

/* Into L2, the rows of the next tile: they load while this tile is transformed. */
static void FN(prefetch_rows)(const T *src, int64_t ss, int64_t R, int64_t wc) {
    for (int64_t r = 0; r < R; r++)
        for (int64_t j = 0; j < wc; j += 64 / (int64_t)sizeof(T)) __builtin_prefetch(src + r * ss + j, 0, 2);
}

/* The first element of tile t: column block t mod (S / wc) of the rows of group t / (S / wc). */
static inline T *FN(tile_base)(T *a, int64_t t, int s0, int g, int lw) {
    return a + ((t >> (s0 - lw)) << (s0 + g)) + ((t & ((((int64_t)1) << (s0 - lw)) - 1)) << lw);
}

/* dst = H src for one row longer than a chunk: every chunk in L1, then the remaining stages in
 * L2-sized tiles (columns of the row viewed as a matrix). With par, the team shares the work. */
static void FN(fwht_large)(T *dst, const T *src, int L, int par, T *tile) {
    const int64_t n = (int64_t)1 << L, C = (int64_t)1 << CHUNK_LOG;
    int64_t lo, hi;
    span(n >> CHUNK_LOG, par, &lo, &hi);
    for (int64_t c = lo; c < hi; c++) FN(fwht_small)(dst + c * C, src + c * C, CHUNK_LOG);
    BARRIER(par);
    if (L <= TILE_LOG) {
        FN(cross_stages)(dst, n >> LOGW, CHUNK_LOG - LOGW, L - CHUNK_LOG, par);
        return;
    }
    for (int s0 = CHUNK_LOG; s0 < L;) {
        const int g = L - s0 < GROUP_MAX ? L - s0 : GROUP_MAX;
        const int64_t R = (int64_t)1 << g, S = (int64_t)1 << s0;
        int lw = TILE_LOG - g > ROW_MIN_LOG ? TILE_LOG - g : ROW_MIN_LOG;
        if (lw > s0) lw = s0;
#ifdef _OPENMP
        if (par)
            while (lw > LOGW + 1 && (n >> (g + lw)) < 4 * omp_get_num_threads()) lw--;
#endif
        const int64_t wc = (int64_t)1 << lw, ntiles = n >> (g + lw);
        span(ntiles, par, &lo, &hi);
        for (int64_t t = lo; t < hi; t++) {
            if (t + 1 < hi) FN(prefetch_rows)(FN(tile_base)(dst, t + 1, s0, g, lw), S, R, wc);
            FN(tile_stages)(FN(tile_base)(dst, t, s0, g, lw), S, g, wc, tile);
        }
        BARRIER(par);
        s0 += g;
    }
}

/* In place on a block's scratch row: the L1 kernel, or the tiled one (shared by the team if par). */
static void FN(fwht_row)(T *a, int L, int par, T *tile) {
    if (L > CHUNK_LOG) {
        FN(fwht_large)(a, a, L, par, tile);
        return;
    }
    if (!par || thread_id() == 0) FN(fwht_small)(a, a, L);
    BARRIER(par);
}

/* dst = H src over rows of 2**L elements (dst may be src); -1 if scratch memory is lacking. */
int FN(ff_fwht)(T *dst, const T *src, int64_t rows, int L, int nt) {
    const int64_t n = (int64_t)1 << L, tile_elems = (int64_t)1 << TILE_MAX_LOG;
    const int big = L > CHUNK_LOG;
    const int team = (rows * n >= PAR_ELEMS && nt > 1) ? nt : 1;
    T *tiles = NULL;
    if (big && !(tiles = alloc_aligned((size_t)(team * tile_elems) * sizeof(T)))) return -1;
    if (dst != src) advise_huge(dst, (size_t)(rows * n) * sizeof(T));
    if (big && team > 1 && rows < 2 * team) {
#pragma omp parallel num_threads(team)
        for (int64_t r = 0; r < rows; r++) FN(fwht_large)(dst + r * n, src + r * n, L, 1, tiles + thread_id() * tile_elems);
    } else {
#pragma omp parallel for num_threads(team) schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (big) FN(fwht_large)(dst + r * n, src + r * n, L, 0, tiles + thread_id() * tile_elems);
            else FN(fwht_small)(dst + r * n, src + r * n, L);
        }
    }
    free(tiles);
    return 0;
}

/* ---------------------------------------------------------------- Fastfood segment phases */

/* buf[j] = B_j z_j for j < d and 0 beyond, over [e0, e1) (multiples of 8). */
static void FN(sign_fill)(T *buf, const T *z, int64_t d, uint64_t kb, int64_t e0, int64_t e1) {
    vu64 c = ctr_at(kb, e0);
    for (int64_t j = e0; j < e1; j += W) {
        V v;
        if (j >= d) {
            memset(buf + j, 0, (size_t)(e1 - j) * sizeof(T));
            return;
        }
        if (j + W <= d) {
            v = FN(ld)(z + j);
        } else {
            T tmp[W] = {0};
            memcpy(tmp, z + j, (size_t)(d - j) * sizeof(T));
            v = FN(ld)(tmp);
        }
        FN(st)(buf + j, (V)((UV)v ^ FN(sign_next)(&c)));
    }
}

/* dst[i] = src[pi(i)] * G_i over [e0, e1). */
static void FN(gather_gauss)(T *dst, const T *src, const perm_t *p, uint64_t kg, int64_t e0, int64_t e1) {
    vu64 c = ctr_at(kg, e0);
    int64_t i = e0;
    for (; i + 16 <= e1; i += 16) {
        vu32 a, b;
        perm16(p, i, 0, &a, &b);
        for (int k = 0; k < 8 / W; k++) FN(st)(dst + i + k * W, FN(gatherv)(src, a, k) * FN(gauss_next)(&c));
        for (int k = 0; k < 8 / W; k++) FN(st)(dst + i + 8 + k * W, FN(gatherv)(src, b, k) * FN(gauss_next)(&c));
    }
    if (i < e1) {
        vu32 idx = perm8(p, lanes8(i));
        for (int k = 0; k < 8 / W; k++) FN(st)(dst + i + k * W, FN(gatherv)(src, idx, k) * FN(gauss_next)(&c));
    }
}

/* a[i] *= G_i over [e0, e1). */
static void FN(mul_gauss)(T *a, uint64_t kg, int64_t e0, int64_t e1) {
    vu64 c = ctr_at(kg, e0);
    for (int64_t i = e0; i < e1; i += W) FN(st)(a + i, FN(ld)(a + i) * FN(gauss_next)(&c));
}

/* dst[j] = src[pi^-1(j)] over [e0, e1): the transpose of the gather. */
static void FN(gather_inverse)(T *dst, const T *src, const perm_t *p, int64_t e0, int64_t e1) {
    int64_t j = e0;
    for (; j + 16 <= e1; j += 16) {
        vu32 a, b;
        perm16(p, j, 1, &a, &b);
        for (int k = 0; k < 8 / W; k++) FN(st)(dst + j + k * W, FN(gatherv)(src, a, k));
        for (int k = 0; k < 8 / W; k++) FN(st)(dst + j + 8 + k * W, FN(gatherv)(src, b, k));
    }
    if (j < e1) {
        vu32 idx = iperm8(p, lanes8(j));
        for (int k = 0; k < 8 / W; k++) FN(st)(dst + j + k * W, FN(gatherv)(src, idx, k));
    }
}

/* acc[j] += B_j a[j] over [e0, e1). */
static void FN(sign_accumulate)(double *acc, const T *a, uint64_t kb, int64_t e0, int64_t e1) {
    vu64 c = ctr_at(kb, e0);
    for (int64_t j = e0; j < e1; j += W) FN(acc_add)(acc + j, (V)((UV)FN(ld)(a + j) ^ FN(sign_next)(&c)));
}

/* dst[i] = src[i] * s over [e0, e1). */
static void FN(scale_copy)(T *dst, const T *src, T s, int64_t e0, int64_t e1) {
    int64_t i = e0;
    for (; i + W <= e1; i += W) FN(st)(dst + i, FN(ld)(src + i) * s);
    for (; i < e1; i++) dst[i] = src[i] * s;
}

static inline T FN(sign1)(uint64_t kb, int64_t j, T x) { return (bits64(kb, (uint64_t)j) >> 63) ? -x : x; }

static inline T FN(gauss1)(uint64_t kg, int64_t i) { return (T)gauss_int(bits64(kg, (uint64_t)i)) * (T)GAUSS_SCALE; }

typedef struct {
    uint64_t kb, kg;
    perm_t p;
} FN(block_t);

static void FN(block_init)(FN(block_t) *k, const streams_t *s, int64_t block, int L) {
    k->kb = ff_block_key(s->sign, (uint64_t)block);
    k->kg = ff_block_key(s->gauss, (uint64_t)block);
    perm_init(&k->p, ff_block_key(s->perm, (uint64_t)block), L);
}

/* The hashes at position 0 of four consecutive blocks from block: sign (into *hb) and Gaussian (*hg).
 * A block of one element has no permutation to make (Pi of [0, 1) is the identity). */
static inline void FN(unit_hashes)(const streams_t *s, uint64_t block, vu64 *hb, vu64 *hg) {
    const vu64 blocks = (vu64){block, block + 1, block + 2, block + 3} * MIX1;
    *hb = vmix64(vmix64(s->sign ^ blocks) + GOLDEN);
    *hg = vmix64(vmix64(s->gauss ^ blocks) + GOLDEN);
}

/* The sign masks and Gaussians of W consecutive blocks of one element from block. */
static inline void FN(unit_factors)(const streams_t *s, uint64_t block, UV *sign, V *gauss) {
    vu64 hb[W / 4], hg[W / 4];
    for (int q = 0; q < W / 4; q++) FN(unit_hashes)(s, block + 4 * (uint64_t)q, hb + q, hg + q);
    *sign = FN(sign_of)(hb);
    *gauss = FN(gauss_of)(hg);
}

/* out[0:keep] = scale * H G Pi H B pad(z) for one block of fewer than 8 elements. */
static void FN(fwd_tiny)(T *out, int64_t keep, const T *z, int64_t d, const FN(block_t) *k, int L, T scale) {
    const int64_t n = (int64_t)1 << L;
    T u[8] = {0}, v[8] = {0};
    for (int64_t j = 0; j < n; j++) u[j] = j < d ? FN(sign1)(k->kb, j, z[j]) : 0;
    FN(fwht_small)(u, u, L);
    for (int64_t i = 0; i < n; i++) v[i] = u[perm1(&k->p, (uint32_t)i, 0)] * FN(gauss1)(k->kg, i);
    FN(fwht_small)(v, v, L);
    for (int64_t i = 0; i < keep; i++) out[i] = v[i] * scale;
}

/* acc[0:d] += (scale * H G Pi H B)^T y[0:keep] for one block of fewer than 8 elements. */
static void FN(tr_tiny)(double *acc, const T *y, int64_t keep, int64_t d, const FN(block_t) *k, int L, T scale) {
    const int64_t n = (int64_t)1 << L;
    T u[8] = {0}, v[8] = {0};
    for (int64_t i = 0; i < n; i++) u[i] = i < keep ? y[i] * scale : 0;
    FN(fwht_small)(u, u, L);
    for (int64_t i = 0; i < n; i++) u[i] *= FN(gauss1)(k->kg, i);
    for (int64_t j = 0; j < n; j++) v[j] = u[perm1(&k->p, (uint32_t)j, 1)];
    FN(fwht_small)(v, v, L);
    for (int64_t j = 0; j < d; j++) acc[j] += FN(sign1)(k->kb, j, v[j]);
}

/* out[b] = scale * G_b B_b z_0 for blocks [b0, b1) of one element (L = 0): the arithmetic of fwd_tiny (the same
 * products in the same order), W blocks per vector without its per-block key and permutation set-up; the last
 * blocks short of a vector go through fwd_tiny itself. */
static void FN(fwd_unit)(T *out, const T *z, int64_t d, const streams_t *s, int64_t block0, int64_t b0, int64_t b1, T scale) {
    const V zv = (V){0} + (d > 0 ? z[0] : 0);
    int64_t b = b0;
    for (; b + W <= b1; b += W) {
        UV sign;
        V g;
        FN(unit_factors)(s, (uint64_t)(block0 + b), &sign, &g);
        const V u = (V)((UV)zv ^ (d > 0 ? sign : (UV){0}));
        FN(st)(out + b, (u * g) * scale);
    }
    for (; b < b1; b++) {
        FN(block_t) k;
        FN(block_init)(&k, s, block0 + b, 0);
        FN(fwd_tiny)(out + b, 1, z, d, &k, 0, scale);
    }
}

/* *acc += the sum over blocks [b0, b1) of one element, in order, of B_b G_b scale y_b: tr_tiny's terms made W at a
 * time and added one by one in double precision as tr_tiny adds them; the last blocks through tr_tiny itself. */
static void FN(tr_unit)(double *acc, const T *y, int64_t d, const streams_t *s, int64_t block0, int64_t b0, int64_t b1, T scale) {
    int64_t b = b0;
    for (; b + W <= b1; b += W) {
        UV sign;
        V g;
        FN(unit_factors)(s, (uint64_t)(block0 + b), &sign, &g);
        T t[W];
        FN(st)(t, (V)((UV)((FN(ld)(y + b) * scale) * g) ^ sign));
        for (int l = 0; l < W; l++) *acc += t[l];
    }
    for (; b < b1; b++) {
        FN(block_t) k;
        FN(block_init)(&k, s, block0 + b, 0);
        FN(tr_tiny)(acc, y + b, 1, d, &k, 0, scale);
    }
}

/* One forward block b; scratch holds two rows and a tile; with par the team shares it. */
static void FN(fwd_block)(T *out, const T *z, int64_t d, const streams_t *s, int64_t block0, int64_t b, int L,
                          int64_t out_len, T scale, T *scratch, int par) {
    const int64_t n = (int64_t)1 << L, keep = out_len - b * n < n ? out_len - b * n : n;
    T *u = scratch, *v = scratch + n, *tile = scratch + 2 * n + (par ? thread_id() : 0) * ((int64_t)1 << TILE_MAX_LOG);
    FN(block_t) k;
    FN(block_init)(&k, s, block0 + b, L);
    if (L < 3) {
        FN(fwd_tiny)(out + b * n, keep, z, d, &k, L, scale);
        return;
    }
    int64_t lo, hi;
    span(n >> 3, par, &lo, &hi);
    lo <<= 3;
    hi <<= 3;
    FN(sign_fill)(u, z, d, k.kb, lo, hi);
    BARRIER(par);
    FN(fwht_row)(u, L, par, tile);
    FN(gather_gauss)(v, u, &k.p, k.kg, lo, hi);
    BARRIER(par);
    FN(fwht_row)(v, L, par, tile);
    FN(scale_copy)(out + b * n, v, scale, lo, hi < keep ? hi : keep);
}

/* One transpose block b, accumulated into acc (a row of dpad doubles). */
static void FN(tr_block)(double *acc, const T *y, int64_t d, const streams_t *s, int64_t block0, int64_t b, int L,
                         int64_t out_len, T scale, T *scratch, int par) {
    const int64_t n = (int64_t)1 << L, keep = out_len - b * n < n ? out_len - b * n : n;
    const int64_t dpad = (d + 7) & ~(int64_t)7;
    T *u = scratch, *v = scratch + n, *tile = scratch + 2 * n + (par ? thread_id() : 0) * ((int64_t)1 << TILE_MAX_LOG);
    FN(block_t) k;
    FN(block_init)(&k, s, block0 + b, L);
    if (L < 3) {
        FN(tr_tiny)(acc, y + b * n, keep, d, &k, L, scale);
        return;
    }
    int64_t lo, hi;
    span(n >> 3, par, &lo, &hi);
    lo <<= 3;
    hi <<= 3;
    FN(scale_copy)(u, y + b * n, scale, lo, hi < keep ? hi : keep);
    if (hi > keep) memset(u + (lo > keep ? lo : keep), 0, (size_t)(hi - (lo > keep ? lo : keep)) * sizeof(T));
    BARRIER(par);
    FN(fwht_row)(u, L, par, tile);
    FN(mul_gauss)(u, k.kg, lo, hi);
    BARRIER(par);
    FN(gather_inverse)(v, u, &k.p, lo, hi);
    BARRIER(par);
    FN(fwht_row)(v, L, par, tile);
    FN(sign_accumulate)(acc, v, k.kb, lo < dpad ? lo : dpad, hi < dpad ? hi : dpad);
}

/* Scratch of one block's work: two rows, and one tile per thread sharing it. */
static int64_t FN(scratch_elems)(int L, int threads) {
    return ((int64_t)2 << L) + (L > CHUNK_LOG ? (int64_t)threads << TILE_MAX_LOG : 0) + 16;
}

/* out[0:out_len] = scale * [H G_b Pi_b H B_b pad(z)]_b for blocks block0 .. block0 + nblocks - 1. */
int FN(ff_forward)(T *out, const T *z, int64_t d, uint64_t seed, int64_t block0, int64_t nblocks, int L,
                   int64_t out_len, double scale, int nt) {
    const int team = (nblocks << L >= PAR_ELEMS && nt > 1) ? nt : 1;
    const streams_t s = streams_of(seed);
    advise_huge(out, (size_t)out_len * sizeof(T));
    if (L == 0) {
        const int64_t nb = nblocks < out_len ? nblocks : out_len;
#pragma omp parallel num_threads(team)
        {
            int64_t lo, hi;
            span(nb, 1, &lo, &hi);
            FN(fwd_unit)(out, z, d, &s, block0, lo, hi, (T)scale);
        }
        return 0;
    }
    const int coop = team > 1 && L >= COOP_MIN_LOG && nblocks < 2 * team;
    const int64_t per = FN(scratch_elems)(L, coop ? team : 1);
    T *scratch = alloc_aligned((size_t)((coop ? 1 : team) * per) * sizeof(T));
    if (!scratch) return -1;
    if (coop) {
#pragma omp parallel num_threads(team)
        for (int64_t b = 0; b < nblocks; b++) FN(fwd_block)(out, z, d, &s, block0, b, L, out_len, (T)scale, scratch, 1);
    } else {
#pragma omp parallel for num_threads(team) schedule(static)
        for (int64_t b = 0; b < nblocks; b++)
            FN(fwd_block)(out, z, d, &s, block0, b, L, out_len, (T)scale, scratch + thread_id() * per, 0);
    }
    free(scratch);
    return 0;
}

/* out[0:d] = the transpose of ff_forward applied to y[0:out_len]; blocks are summed in fixed chunks
 * (then the chunks in order), so the result does not depend on the number of threads. */
int FN(ff_transpose)(T *out, const T *y, int64_t d, uint64_t seed, int64_t block0, int64_t nblocks, int L,
                     int64_t out_len, double scale, int nt) {
    const int64_t dpad = (d + 7) & ~(int64_t)7, nchunks = transpose_chunks(nblocks, dpad);
    const int team = (nblocks << L >= PAR_ELEMS && nt > 1) ? nt : 1;
    const int coop = team > 1 && L >= COOP_MIN_LOG && nblocks < 2 * team;
    const int64_t per = FN(scratch_elems)(L, coop ? team : 1);
    T *scratch = alloc_aligned((size_t)((coop ? 1 : team) * per) * sizeof(T));
    double *part = calloc((size_t)(nchunks * dpad), sizeof(double));
    if (!scratch || !part) {
        free(scratch);
        free(part);
        return -1;
    }
    const streams_t s = streams_of(seed);
    if (L == 0) {
        const int64_t nb = nblocks < out_len ? nblocks : out_len;
#pragma omp parallel for num_threads(team) schedule(dynamic, 1)
        for (int64_t c = 0; c < nchunks; c++) {
            const int64_t b0 = nblocks * c / nchunks, b1 = nblocks * (c + 1) / nchunks;
            if (d > 0) FN(tr_unit)(part + c * dpad, y, d, &s, block0, b0 < nb ? b0 : nb, b1 < nb ? b1 : nb, (T)scale);
        }
    } else if (coop) {
#pragma omp parallel num_threads(team)
        for (int64_t c = 0; c < nchunks; c++)
            for (int64_t b = nblocks * c / nchunks; b < nblocks * (c + 1) / nchunks; b++)
                FN(tr_block)(part + c * dpad, y, d, &s, block0, b, L, out_len, (T)scale, scratch, 1);
    } else {
#pragma omp parallel for num_threads(team) schedule(dynamic, 1)
        for (int64_t c = 0; c < nchunks; c++)
            for (int64_t b = nblocks * c / nchunks; b < nblocks * (c + 1) / nchunks; b++)
                FN(tr_block)(part + c * dpad, y, d, &s, block0, b, L, out_len, (T)scale,
                             scratch + thread_id() * per, 0);
    }
#pragma omp parallel for num_threads(d >= PAR_ELEMS ? team : 1) schedule(static)
    for (int64_t j = 0; j < d; j++) {
        double s = part[j];
        for (int64_t c = 1; c < nchunks; c++) s += part[c * dpad + j];
        out[j] = (T)s;
    }
    free(scratch);
    free(part);
    return 0;
}

/* The factors of nblocks blocks, each row of 2**L: B (+-1), Pi, Pi^-1 and G, as the kernels make them. */
void FN(ff_factors)(T *bsign, int32_t *perm, int32_t *iperm, T *gauss, uint64_t seed, int64_t block0,
                    int64_t nblocks, int L) {
    const int64_t n = (int64_t)1 << L;
    const streams_t s = streams_of(seed);
    T *ones = malloc((size_t)n * sizeof(T));
    for (int64_t i = 0; i < n; i++) ones[i] = 1;
    for (int64_t b = 0; b < nblocks; b++) {
        FN(block_t) k;
        FN(block_init)(&k, &s, block0 + b, L);
        T *br = bsign + b * n, *gr = gauss + b * n;
        int32_t *pr = perm + b * n, *ir = iperm + b * n;
        if (L < 3) {
            for (int64_t i = 0; i < n; i++) {
                br[i] = FN(sign1)(k.kb, i, 1);
                gr[i] = FN(gauss1)(k.kg, i);
                pr[i] = (int32_t)perm1(&k.p, (uint32_t)i, 0);
                ir[i] = (int32_t)perm1(&k.p, (uint32_t)i, 1);
            }
            continue;
        }
        FN(sign_fill)(br, ones, n, k.kb, 0, n);
        for (int64_t i = 0; i < n; i += W) FN(st)(gr + i, (V){0} + 1);
        FN(mul_gauss)(gr, k.kg, 0, n);
        for (int64_t i = 0; i < n; i += 16) {
            vu32 p[2], q[2];
            if (i + 16 <= n) {
                perm16(&k.p, i, 0, p, p + 1);
                perm16(&k.p, i, 1, q, q + 1);
            } else {
                p[0] = perm8(&k.p, lanes8(i));
                q[0] = iperm8(&k.p, lanes8(i));
            }
            memcpy(pr + i, p, (size_t)(n - i < 16 ? n - i : 16) * sizeof(int32_t));
            memcpy(ir + i, q, (size_t)(n - i < 16 ? n - i : 16) * sizeof(int32_t));
        }
    }
    free(ones);
}

#undef CAT2
#undef CAT
#undef FN
#undef GROUP_MAX
#undef BF
#undef RADIX_ROWS_BODY
