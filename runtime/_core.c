/* Longer than 300 lines: the whole recurrent step is one translation unit so gcc inlines and
 * vectorises across it.
 *
 * spikeedge's compiled event core for recurrent (HRSNN) bundles.
 *
 * The numpy runtime (runtime/engine.py, accumulate.py, kernels.py) is the reference; this file
 * computes the same integers with no per-call overhead: one C call per `run` (all time steps)
 * and one per `step`. Every array is owned by a numpy array that the Python glue
 * (runtime/compiled.py) made once per session and passed in through the buffer protocol; the
 * Recurrent object keeps the buffers (and so the memory) alive and checks each one's type and
 * length, and every index inside the weight tables, when it is built. Nothing here trusts a
 * size it did not check.
 *
 * The integer maths is a copy of runtime/neuron.py (lif_step_int, trace_step_int) and
 * runtime/fixedpoint.py (rshift_round, saturate32):
 *     syn = sat32(rs(a_syn*syn,16) + rs(acc_in*m_in,16) + rs(acc_rec*m_rec,16) + bias)
 *     v   = sat32(rs(a_mem*mem,16) + syn);  s = v >= 2**14
 *     mem = v - 2**14*s  (subtract)  or  v*(1-s)  (zero)
 *     tr  = sat32(rs(a_tr*tr,16) + (s << bits))
 * rs(x,k) = (x + 2**(k-1)) >> k on int64; >> of a negative int64 is an arithmetic shift on every
 * compiler this builds with (gcc, clang: implementation-defined, documented as arithmetic).
 * Products are int32 x int32 -> int64: no overflow for any int32 inputs.
 *
 * Accumulation per matrix and stream: the index scatter over the active sources' CSC columns,
 * or the dense int8 rows of the active sources summed in int16 blocks of at most `chunk` rows
 * (chunk * max|w| <= 32767, checked here), chosen per step by the active count against
 * `switch_k`, measured by the glue with `bench` (the numpy runtime's rule: a + b*k per path).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>

#define THRESHOLD ((int64_t)1 << 14)
#define MAX_LAYERS 8
#define MAX_BUFS 200
#define I32_MIN ((int64_t)INT32_MIN)
#define I32_MAX ((int64_t)INT32_MAX)

typedef struct { uint64_t hi, lo; } u128; /* a PCG64 state or constant, mod 2**128 */

enum { ENC_DIRECT = 0, ENC_RATE = 1, ENC_DELTA = 2 };

typedef struct {
    int32_t n_src, n_tgt, chunk;
    const int8_t *rows;    /* (n_src, n_tgt) dense rows, or NULL: scatter only */
    const int32_t *indptr; /* (n_src + 1,) */
    const int32_t *idx;    /* (nnz,) targets, checked < n_tgt */
    uint16_t *idx16;       /* the same targets in 2 bytes (n_tgt <= 65536), C's own: 3 bytes per synapse, not 5 */
    const int8_t *val;     /* (nnz,) */
    int64_t switch_k;      /* rows when more than switch_k sources are active */
    int64_t *steps;        /* counters: [rows, scatter] */
} Mat;

typedef struct {
    int32_t n;
    int reset_zero;
    Mat in, rec;
    const int32_t *a_syn, *a_mem, *m_in, *m_rec, *bias;
    int32_t *syn, *mem;                /* (batch, n), Python's */
    uint8_t *spk;                      /* (batch, n), Python's: the truth the lists derive from */
    int32_t *list, *count;             /* (batch, n), (batch,): C's own, from spk (sync) */
    int64_t *spikes;                   /* counter: spikes of this layer */
    int32_t *acc_in, *acc_rec;         /* (n,) scratch */
    int16_t *s16;                      /* (n,) scratch */
    int exact_f64;                     /* the float64 loop is exact for this layer (checked) */
    int32_t *flags;                    /* (n,) scratch: this step's spikes as int32 (float64 loop) */
    double syn_bound, mem_bound;       /* |syn|, |mem| never exceed these from rest (kernels.py) */
    int sat_base, sat;                 /* the int32 clamp can fire: from the bounds; and now */
    double *f_syn, *f_mem, *f_off, *f_in, *f_rec; /* (n,) a_syn/2**16, a_mem/2**16, bias+1/2, m_in/2**16, m_rec/2**16 */
    uint32_t *u_lo[4], *u_hi[4];       /* (n,) low / high 16 bits of a_syn, a_mem, m_in, m_rec (the int32 loop) */
    int small;                         /* every one of them in [0, 2**16): the high halves are 0 */
} Layer;

typedef struct {
    PyObject_HEAD
    int batch, n_layers, enc, n_inputs, n_ch, n_out, trace_bits;
    double gain, scale, threshold;
    int32_t qmax;
    uint64_t *rng;   /* [state_hi, state_lo, inc_hi, inc_lo]: numpy's PCG64 */
    uint64_t *jump;  /* (4, jump_k): A_k.hi, A_k.lo, C_k.hi, C_k.lo for k = 1..jump_k (rows: vector loads), for jump_inc */
    int draws512;    /* this CPU runs the AVX-512 draws */
    int32_t jump_k;
    u128 jump_inc;
    double *ref;     /* (batch, n_inputs) delta reference */
    int32_t *ev_list, *ev_val; /* (n_ch,) scratch: active channels and their values */
    Layer layers[MAX_LAYERS];
    const int8_t *w_out;       /* (n_out, n_in) */
    const int32_t *a_trace;    /* (n_in,) */
    const double *out_scale, *out_bias; /* (n_out,) */
    int32_t *trace;            /* (batch, n_in) */
    int64_t *counters;         /* [steps, synops, ...] */
    double *f_trace;           /* (n_in,) a_trace / 2**16 */
    double tr_bound;           /* |trace| never exceeds it from rest */
    uint32_t *tr_lo, *tr_hi;   /* (n_in,) a_trace's 16-bit halves (the int32 loop) */
    int tr_small;              /* a_trace in [0, 2**16): tr_hi all 0 */
    int32_t dot_block;         /* products of the readout summed in int32 per block of this many */
    int tr_sat_base, tr_sat;
    int f_readout;             /* float64 readout sums are exact (n_in < 32768) */
    void *allocs[6 + 22 * MAX_LAYERS]; /* scratch arrays, each its own allocation (so ASan sees every bound) */
    int nallocs, alloc_failed, ready, busy; /* busy: a `run` without the GIL is under way on this object */
    double *phases;            /* NULL, or seconds per phase [encode, accumulate, neuron, readout] (profile) */
    Py_buffer phase_buf;
    Py_buffer bufs[MAX_BUFS];
    int nbufs;
} Core;

/* ------------------------------------------------------------------ fixed point */

static inline int64_t rs16(int64_t x) { return (x + ((int64_t)1 << 15)) >> 16; }
static inline int64_t sat32(int64_t x) { return x < I32_MIN ? I32_MIN : (x > I32_MAX ? I32_MAX : x); }

/* ------------------------------------------------------------------ numpy's PCG64 (XSL-RR 128/64) */

static inline uint64_t mulhi64(uint64_t a, uint64_t b) {
#if defined(__SIZEOF_INT128__) && !defined(SPIKEEDGE_NO_INT128) /* the portable branch serves 32-bit boards */
    return (uint64_t)(((unsigned __int128)a * b) >> 64);
#else
    uint64_t a_lo = (uint32_t)a, a_hi = a >> 32, b_lo = (uint32_t)b, b_hi = b >> 32;
    uint64_t p0 = a_lo * b_lo, p1 = a_lo * b_hi, p2 = a_hi * b_lo, p3 = a_hi * b_hi;
    uint64_t mid = (p0 >> 32) + (uint32_t)p1 + (uint32_t)p2;
    return p3 + (p1 >> 32) + (p2 >> 32) + (mid >> 32);
#endif
}

/* One draw of Generator.random(): step the 128-bit LCG, then output from the new state. */
static inline double pcg64_double(uint64_t *s) {
    const uint64_t m_hi = 2549297995355413924ULL, m_lo = 4865540595714422341ULL;
    uint64_t hi = s[0], lo = s[1];
    uint64_t new_lo = lo * m_lo;
    uint64_t new_hi = mulhi64(lo, m_lo) + hi * m_lo + lo * m_hi;
    uint64_t sum_lo = new_lo + s[3];
    new_hi += s[2] + (sum_lo < new_lo);
    s[0] = new_hi;
    s[1] = sum_lo;
    uint64_t x = new_hi ^ sum_lo;
    unsigned rot = (unsigned)(new_hi >> 58);
    x = (x >> rot) | (x << ((64 - rot) & 63));
    return (double)(int64_t)(x >> 11) * (1.0 / 9007199254740992.0); /* < 2**53: the signed conversion is exact and one instruction */
}

/* Jump-ahead: the LCG state k steps on is A_k * s + C_k (mod 2**128), A_k = m**k, C_k = (m**(k-1) + ...
 * + 1) * inc. With a table of (A_k, C_k) for k = 1..K, the k-th draw of a frame comes straight
 * from the frame's start state: the draws are independent (no 128-bit multiply chain through
 * them, so the CPU overlaps them), and an input that cannot fire (rate <= 0) or must (rate >= 1)
 * skips its draw, the state still ending where numpy's does. */
static inline u128 mul128(u128 a, u128 b) {
    u128 r = {mulhi64(a.lo, b.lo) + a.lo * b.hi + a.hi * b.lo, a.lo * b.lo};
    return r;
}
static inline u128 muladd128(u128 a, u128 s, u128 c) {
    u128 r = mul128(a, s);
    r.lo += c.lo;
    r.hi += c.hi + (r.lo < c.lo);
    return r;
}
/* Generator.random()'s double from a state: XSL-RR output, top 53 bits. */
static inline double pcg64_out(u128 s) {
    uint64_t x = s.hi ^ s.lo;
    unsigned rot = (unsigned)(s.hi >> 58);
    x = (x >> rot) | (x << ((64 - rot) & 63));
    return (double)(int64_t)(x >> 11) * (1.0 / 9007199254740992.0);
}

/* x86-64 (gcc, glibc): AVX-512 (x86-64-v4, gcc >= 11) and AVX2 clones of the vector loops beside
 * the baseline SSE2 one, picked at load time (ifunc): never -march=native, and the same integers
 * either way (every lane is exact integer arithmetic; the one reduction in float64 is exact in
 * any order). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__) && !defined(SPIKEEDGE_NO_CLONES) && __GNUC__ >= 11
#define SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#elif defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__) && !defined(SPIKEEDGE_NO_CLONES)
#define SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SIMD_CLONES
#endif

/* ------------------------------------------------------------------ accumulation */

/* The active rows lie anywhere in a matrix larger than the caches, and a row's start is where the
 * hardware prefetcher cannot guess: the next rows are requested while the current ones are
 * summed (a hint: no value changes, and nothing is read outside the row). */
static inline void prefetch_bytes(const void *p, size_t bytes) {
#if defined(__GNUC__)
    for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch((const char *)p + off, 0, 3);
#else
    (void)p, (void)bytes;
#endif
}

/* acc = sum over the k active sources (list) of their rows, int16 blocks of <= chunk rows. */
SIMD_CLONES static void acc_rows(const Mat *m, const int32_t *list, int32_t k, int32_t *restrict acc, int16_t *restrict s16) {
    const int32_t n = m->n_tgt;
    for (int32_t start = 0; start < k; start += m->chunk) {
        int32_t end = k - start > m->chunk ? start + m->chunk : k;
        memset(s16, 0, (size_t)n * sizeof(int16_t));
        int32_t j = start;
        for (; j + 4 <= end; j += 4) { /* four rows per pass over s16; a sum of <= chunk rows fits int16 */
            const int8_t *r0 = m->rows + (size_t)list[j] * n, *r1 = m->rows + (size_t)list[j + 1] * n;
            const int8_t *r2 = m->rows + (size_t)list[j + 2] * n, *r3 = m->rows + (size_t)list[j + 3] * n;
            const int32_t pf = j + 8 <= k; /* the next four rows, a segment ahead of the sums (spread out: a burst fills the miss buffers and stalls) */
            const int8_t *p0 = pf ? m->rows + (size_t)list[j + 4] * n : r0, *p1 = pf ? m->rows + (size_t)list[j + 5] * n : r0;
            const int8_t *p2 = pf ? m->rows + (size_t)list[j + 6] * n : r0, *p3 = pf ? m->rows + (size_t)list[j + 7] * n : r0;
            for (int32_t t0 = 0; t0 < n; t0 += 256) {
                const int32_t t1 = n - t0 < 256 ? n : t0 + 256;
                if (pf) {
                    prefetch_bytes(p0 + t0, (size_t)(t1 - t0)), prefetch_bytes(p1 + t0, (size_t)(t1 - t0));
                    prefetch_bytes(p2 + t0, (size_t)(t1 - t0)), prefetch_bytes(p3 + t0, (size_t)(t1 - t0));
                }
                for (int32_t t = t0; t < t1; t++)
                    s16[t] = (int16_t)(s16[t] + (int16_t)r0[t] + (int16_t)r1[t] + (int16_t)r2[t] + (int16_t)r3[t]);
            }
        }
        for (; j < end; j++) {
            const int8_t *r = m->rows + (size_t)list[j] * n;
            for (int32_t t = 0; t < n; t++) s16[t] = (int16_t)(s16[t] + (int16_t)r[t]);
        }
        if (start == 0)
            for (int32_t t = 0; t < n; t++) acc[t] = s16[t];
        else
            for (int32_t t = 0; t < n; t++) acc[t] += s16[t];
    }
}

/* acc = sum of value * row over signed events (a direct-current input); bounded by the check
 * at construction (sum over sources of |w| * qmax < 2**31 per target). */
SIMD_CLONES static void acc_rows_signed(const Mat *m, const int32_t *list, const int32_t *vals, int32_t k, int32_t *restrict acc) {
    const int32_t n = m->n_tgt;
    memset(acc, 0, (size_t)n * sizeof(int32_t));
    for (int32_t j = 0; j < k; j++) {
        const int8_t *r = m->rows + (size_t)list[j] * n;
        const int32_t v = vals[j];
        for (int32_t t = 0; t < n; t++) acc[t] += v * (int32_t)r[t];
    }
}

static void acc_scatter(const Mat *m, const int32_t *list, const int32_t *vals, int32_t k, int32_t *restrict acc) {
    memset(acc, 0, (size_t)m->n_tgt * sizeof(int32_t));
    const int8_t *restrict val = m->val;
    const uint16_t *restrict i16 = m->idx16;
    for (int32_t j = 0; j < k; j++) {
        const int32_t src = list[j], end = m->indptr[src + 1];
        if (j + 2 < k) { /* the source after next: its indices and values */
            const int32_t nx = list[j + 2], p0 = m->indptr[nx], len = m->indptr[nx + 1] - p0;
            if (i16) prefetch_bytes(i16 + p0, (size_t)len * 2);
            else prefetch_bytes(m->idx + p0, (size_t)len * 4);
            prefetch_bytes(val + p0, (size_t)len);
        }
        const int32_t v = vals ? vals[j] : 1;
        int32_t p = m->indptr[src];
        if (i16 && !vals) {
            for (; p + 4 <= end; p += 4) { /* four independent updates in flight */
                const uint16_t t0 = i16[p], t1 = i16[p + 1], t2 = i16[p + 2], t3 = i16[p + 3];
                acc[t0] += val[p], acc[t1] += val[p + 1], acc[t2] += val[p + 2], acc[t3] += val[p + 3];
            }
            for (; p < end; p++) acc[i16[p]] += val[p];
        } else if (i16) {
            for (; p < end; p++) acc[i16[p]] += v * (int32_t)val[p];
        } else {
            for (; p < end; p++) acc[m->idx[p]] += v * (int32_t)val[p];
        }
    }
}

/* Accumulate the k active sources into acc; returns the synaptic operations (fan-outs). */
static int64_t accumulate(const Mat *m, const int32_t *list, const int32_t *vals, int32_t k, int32_t *acc, int16_t *s16) {
    int64_t ops = 0;
    for (int32_t j = 0; j < k; j++) ops += m->indptr[list[j] + 1] - m->indptr[list[j]];
    if (m->rows != NULL && (int64_t)k > m->switch_k) {
        if (vals) acc_rows_signed(m, list, vals, k, acc);
        else acc_rows(m, list, k, acc, s16);
        m->steps[0]++;
    } else {
        acc_scatter(m, list, vals, k, acc);
        m->steps[1]++;
    }
    return ops;
}

/* ------------------------------------------------------------------ neuron, trace, spike list */

/* One stream of one layer; ai / ar are NULL when no event arrived (rs(0) = 0: the term drops).
 * Branch-free selects so that gcc vectorises the int32 x int32 -> int64 products. */
static void lif_update(const Layer *L, int32_t *restrict syn, int32_t *restrict mem, const int32_t *restrict ai,
                       const int32_t *restrict ar, uint8_t *restrict spk) {
    const int32_t n = L->n;
    const int32_t *restrict a_syn = L->a_syn, *restrict a_mem = L->a_mem, *restrict bias = L->bias;
    const int32_t *restrict m_in = L->m_in, *restrict m_rec = L->m_rec;
    const int zero = L->reset_zero;
    for (int32_t i = 0; i < n; i++) {
        int64_t s = rs16((int64_t)a_syn[i] * syn[i]) + bias[i];
        if (ai) s += rs16((int64_t)ai[i] * m_in[i]);
        if (ar) s += rs16((int64_t)ar[i] * m_rec[i]);
        s = sat32(s);
        int64_t v = sat32(rs16((int64_t)a_mem[i] * mem[i]) + s);
        int64_t fire = v >= THRESHOLD;
        v = zero ? (fire ? 0 : v) : v - THRESHOLD * fire;
        syn[i] = (int32_t)s;
        mem[i] = (int32_t)v;
        spk[i] = (uint8_t)fire;
    }
}

static void trace_update(int32_t *restrict tr, const int32_t *restrict a, const uint8_t *restrict spk, int32_t n, int bits) {
    for (int32_t i = 0; i < n; i++)
        tr[i] = (int32_t)sat32(rs16((int64_t)a[i] * tr[i]) + ((int64_t)spk[i] << bits));
}

/* ---- the same integers in int32 lanes (8 per AVX2 vector), wherever the clamp cannot fire ----
 * rs(a*x, 16) for int32 a and x, from 16-bit halves a = ah*2**16 + al, x = xh*2**16 + xl
 * (al, xl in [0, 2**16)): a*x + 2**15 = ah*xh*2**32 + (ah*xl + al*xh)*2**16 + al*xl + 2**15, so
 *     rs(a*x, 16) = ah*xh*2**16 + ah*xl + al*xh + ((al*xl + 2**15) >> 16)
 * exactly, and al*xl + 2**15 < 2**32. Computed in uint32 (wrapping, no signed overflow) it is
 * exact modulo 2**32. Where the bounds (`sat` clear: runtime/kernels.py's argument) keep every
 * value and every partial sum of the update inside int32, "exact modulo 2**32" is exact, and no
 * clamp is needed. `small` layers (every multiplier in [0, 2**16)) drop the ah terms: two 32-bit
 * multiplies per product. */
static inline __attribute__((always_inline)) uint32_t rs16_u32(uint32_t al, uint32_t ah, int32_t x, const int small) {
    const uint32_t xh = (uint32_t)(x >> 16), xl = (uint32_t)x & 0xffffu; /* >> of a negative int32: arithmetic (gcc, clang) */
    uint32_t r = al * xh + ((al * xl + 0x8000u) >> 16);
    if (!small) r += ((ah * xh) << 16) + ah * xl;
    return r;
}

static inline __attribute__((always_inline)) void lif_i32_body(const Layer *L, int32_t *restrict syn, int32_t *restrict mem,
        const int32_t *restrict ai, const int32_t *restrict ar, uint8_t *restrict spk, const int has_in, const int has_rec, const int small) {
    const int32_t n = L->n, zero = L->reset_zero;
    const uint32_t *restrict sl = L->u_lo[0], *restrict sh = L->u_hi[0], *restrict ml = L->u_lo[1], *restrict mh = L->u_hi[1];
    const uint32_t *restrict il = L->u_lo[2], *restrict ih = L->u_hi[2], *restrict rl = L->u_lo[3], *restrict rh = L->u_hi[3];
    const int32_t *restrict bias = L->bias;
    for (int32_t i = 0; i < n; i++) {
        uint32_t s = rs16_u32(sl[i], small ? 0 : sh[i], syn[i], small) + (uint32_t)bias[i];
        if (has_in) s += rs16_u32(il[i], small ? 0 : ih[i], ai[i], small);
        if (has_rec) s += rs16_u32(rl[i], small ? 0 : rh[i], ar[i], small);
        const int32_t v = (int32_t)(rs16_u32(ml[i], small ? 0 : mh[i], mem[i], small) + s);
        const int32_t fire = v >= (int32_t)THRESHOLD;
        syn[i] = (int32_t)s;
        mem[i] = fire ? (zero ? 0 : v - (int32_t)THRESHOLD) : v;
        spk[i] = (uint8_t)fire;
    }
}

SIMD_CLONES static void lif_update_i32(const Layer *L, int32_t *syn, int32_t *mem, const int32_t *ai, const int32_t *ar, uint8_t *spk) {
    if (L->small) {
        if (ai && ar) lif_i32_body(L, syn, mem, ai, ar, spk, 1, 1, 1);
        else if (ai) lif_i32_body(L, syn, mem, ai, NULL, spk, 1, 0, 1);
        else if (ar) lif_i32_body(L, syn, mem, NULL, ar, spk, 0, 1, 1);
        else lif_i32_body(L, syn, mem, NULL, NULL, spk, 0, 0, 1);
    } else {
        if (ai && ar) lif_i32_body(L, syn, mem, ai, ar, spk, 1, 1, 0);
        else if (ai) lif_i32_body(L, syn, mem, ai, NULL, spk, 1, 0, 0);
        else if (ar) lif_i32_body(L, syn, mem, NULL, ar, spk, 0, 1, 0);
        else lif_i32_body(L, syn, mem, NULL, NULL, spk, 0, 0, 0);
    }
}

/* tr = rs(a*tr, 16) + (s << bits), the same way (the trace's bound keeps it inside int32). */
SIMD_CLONES static void trace_update_i32(int32_t *restrict tr, const uint32_t *restrict al, const uint32_t *restrict ah, const uint8_t *restrict spk,
                                         int32_t n, int bits, int small) {
    if (small)
        for (int32_t i = 0; i < n; i++) tr[i] = (int32_t)(rs16_u32(al[i], 0, tr[i], 1) + ((uint32_t)spk[i] << bits));
    else
        for (int32_t i = 0; i < n; i++) tr[i] = (int32_t)(rs16_u32(al[i], ah[i], tr[i], 0) + ((uint32_t)spk[i] << bits));
}

/* sum_i tr[i] * w[i] where |tr| <= the trace's bound B: each product fits int32, and so does a
 * sum of `block` of them (block * B * 128 < 2**31, set at build); int32 lanes per block (16 per
 * AVX-512 vector), the blocks summed in int64. uint32 arithmetic: exact, no signed overflow. */
SIMD_CLONES static int64_t dot_trace_i32(const int32_t *restrict tr, const int8_t *restrict w, int32_t n, int32_t block) {
    int64_t total = 0;
    for (int32_t i0 = 0; i0 < n; i0 += block) {
        const int32_t i1 = n - i0 < block ? n : i0 + block;
        uint32_t s = 0;
        for (int32_t i = i0; i < i1; i++) s += (uint32_t)tr[i] * (uint32_t)(int32_t)w[i];
        total += (int32_t)s;
    }
    return total;
}

/* ---- the same integers in float64, where gcc vectorises with plain SSE2 / NEON ----
 * As runtime/kernels.py argues: every value below is an integer (or an integer over 2**16)
 * below 2**52, so float64 holds it exactly; rs(a*x, 16) = floor(a/2**16 * x + 1/2) exactly.
 * Used per layer only where |acc| * m + 2**16 < 2**52 for every neuron (checked at build,
 * `exact_f64`); the int64 loop above otherwise. floor() is built from round-to-nearest with the
 * 1.5 * 2**52 constant (exact for |y| < 2**51) because SSE2 has no vector floor. */
#define ROUND_MAGIC 6755399441055744.0
static inline double floor_exact(double y) {
    double r = (y + ROUND_MAGIC) - ROUND_MAGIC;
    return r - (r > y ? 1.0 : 0.0);
}
static inline double satd(double x) { return x < -2147483648.0 ? -2147483648.0 : (x > 2147483647.0 ? 2147483647.0 : x); }

static inline __attribute__((always_inline)) void lif_f64_body(const Layer *L, int32_t *restrict syn, int32_t *restrict mem,
        const int32_t *restrict ai, const int32_t *restrict ar, int32_t *restrict fl, const int has_in, const int has_rec, const int sat) {
    const int32_t n = L->n;
    const double *restrict d_syn = L->f_syn, *restrict d_mem = L->f_mem, *restrict off = L->f_off;
    const double *restrict m_in = L->f_in, *restrict m_rec = L->f_rec;
    const double T = (double)THRESHOLD, sub_T = L->reset_zero ? 0.0 : (double)THRESHOLD, zero = L->reset_zero ? 1.0 : 0.0;
    for (int32_t i = 0; i < n; i++) {
        double s = floor_exact(d_syn[i] * syn[i] + off[i]); /* rs(a_syn * syn) + bias */
        if (has_in) s += floor_exact(ai[i] * m_in[i] + 0.5);
        if (has_rec) s += floor_exact(ar[i] * m_rec[i] + 0.5);
        if (sat) s = satd(s);
        double v = floor_exact(d_mem[i] * mem[i] + 0.5) + s;
        if (sat) v = satd(v);
        double f = v >= T ? 1.0 : 0.0;
        syn[i] = (int32_t)s;
        mem[i] = (int32_t)(v * (1.0 - f * zero) - sub_T * f); /* zero: v * (1 - s); subtract: v - T * s */
        fl[i] = (int32_t)f; /* int32 flags keep the loop at 4 lanes (a uint8 store makes it 16, and spills) */
    }
}

SIMD_CLONES static void lif_update_f64(const Layer *L, int32_t *syn, int32_t *mem, const int32_t *ai, const int32_t *ar, uint8_t *restrict spk) {
    int32_t *restrict fl = L->flags;
    const int32_t n = L->n; /* a local: a uint8 store may alias L->n, which blocks vectorisation */
    if (L->sat) {
        if (ai && ar) lif_f64_body(L, syn, mem, ai, ar, fl, 1, 1, 1);
        else if (ai) lif_f64_body(L, syn, mem, ai, NULL, fl, 1, 0, 1);
        else if (ar) lif_f64_body(L, syn, mem, NULL, ar, fl, 0, 1, 1);
        else lif_f64_body(L, syn, mem, NULL, NULL, fl, 0, 0, 1);
    } else {
        if (ai && ar) lif_f64_body(L, syn, mem, ai, ar, fl, 1, 1, 0);
        else if (ai) lif_f64_body(L, syn, mem, ai, NULL, fl, 1, 0, 0);
        else if (ar) lif_f64_body(L, syn, mem, NULL, ar, fl, 0, 1, 0);
        else lif_f64_body(L, syn, mem, NULL, NULL, fl, 0, 0, 0);
    }
    for (int32_t i = 0; i < n; i++) spk[i] = (uint8_t)fl[i];
}

SIMD_CLONES static void trace_update_f64(int32_t *restrict tr, const double *restrict a, const int32_t *restrict fl, int32_t n, double add, int sat) {
    if (sat)
        for (int32_t i = 0; i < n; i++) tr[i] = (int32_t)satd(floor_exact(a[i] * tr[i] + 0.5) + add * fl[i]);
    else
        for (int32_t i = 0; i < n; i++) tr[i] = (int32_t)(floor_exact(a[i] * tr[i] + 0.5) + add * fl[i]);
}

/* sum_i tr[i] * w[i]: exact in float64 while n * 2**31 * 128 < 2**53 (n < 32768, checked);
 * every partial sum is an exact integer, so any order gives the same sum: gcc may reassociate
 * (this function only) to vectorise. */
__attribute__((optimize("associative-math", "no-signed-zeros", "no-trapping-math")))
SIMD_CLONES static int64_t dot_trace(const int32_t *restrict tr, const int8_t *restrict w, int32_t n) {
    double s = 0;
    for (int32_t i = 0; i < n; i++) s += (double)tr[i] * (double)w[i];
    return (int64_t)s;
}

/* The indices of the spiking neurons, eight flags per 64-bit test: sparse spikes cost little. */
static int32_t spike_list(const uint8_t *spk, int32_t n, int32_t *list) {
    int32_t k = 0, i = 0;
    for (; i + 32 <= n; i += 32) { /* 32 quiet neurons per test */
        uint64_t w[4];
        memcpy(w, spk + i, 32);
        if ((w[0] | w[1] | w[2] | w[3]) == 0) continue;
        for (int32_t j = 0; j < 32; j++) {
            list[k] = i + j;
            k += spk[i + j];
        }
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, spk + i, 8);
        if (w == 0) continue;
        for (int32_t j = 0; j < 8; j++) {
            list[k] = i + j;
            k += spk[i + j];
        }
    }
    for (; i < n; i++) {
        list[k] = i;
        k += spk[i];
    }
    return k;
}

/* ------------------------------------------------------------------ encoders */

/* How many of x[0..n) * gain are > 0 (the inputs that may fire): a vector loop, no branch each. */
SIMD_CLONES static int32_t count_positive(const double *restrict x, int32_t n, double gain) {
    int32_t c = 0;
    for (int32_t j = 0; j < n; j++) c += x[j] * gain > 0.0;
    return c;
}

#define JUMP_A(J, K, j) ((u128){(J)[j], (J)[(K) + (j)]})
#define JUMP_C(J, K, j) ((u128){(J)[2 * (K) + (j)], (J)[3 * (K) + (j)]})

#if defined(__x86_64__) && defined(__GNUC__) && !defined(SPIKEEDGE_NO_CLONES) && (defined(__clang__) || __GNUC__ >= 8)
#include <immintrin.h>
#define HAVE_DRAWS512 1
/* Eight draws per pass in 64-bit lanes (AVX-512F/DQ/VL, picked at build of the object when the
 * CPU has them): new = A_k s + C_k mod 2**128 with the 64 x 64 -> 128 product of the low words
 * from four 32 x 32 -> 64 products, the cross terms by vpmullq, then the XSL-RR output and
 * u < p compared in float64 exactly as the scalar loop (and numpy) do. A block of eight inputs
 * none of which can fire is skipped. Sets *done to the inputs it handled (a multiple of 8). */
__attribute__((target("avx512f,avx512dq,avx512vl")))
static int32_t draws_512(const uint64_t *J, int32_t K, u128 s, const double *xb, double gain, int32_t m, int32_t base, int32_t *list,
                         int32_t k, int32_t *done) {
    const __m512i slo = _mm512_set1_epi64((long long)s.lo), shi = _mm512_set1_epi64((long long)s.hi);
    const __m512i b0 = _mm512_set1_epi64((long long)(s.lo & 0xffffffffu)), b1 = _mm512_set1_epi64((long long)(s.lo >> 32));
    const __m512i low32 = _mm512_set1_epi64(0xffffffffLL), one = _mm512_set1_epi64(1);
    const __m512d g = _mm512_set1_pd(gain), zero = _mm512_setzero_pd(), scale = _mm512_set1_pd(1.0 / 9007199254740992.0);
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int32_t j = 0;
    for (; j + 8 <= m; j += 8) {
        const __m512d p = _mm512_mul_pd(_mm512_loadu_pd(xb + j), g);
        if (_mm512_cmp_pd_mask(p, zero, _CMP_GT_OQ) == 0) continue;
        const __m512i ahi = _mm512_loadu_si512(J + j), alo = _mm512_loadu_si512(J + K + j);
        const __m512i chi = _mm512_loadu_si512(J + 2 * K + j), clo = _mm512_loadu_si512(J + 3 * K + j);
        const __m512i a1 = _mm512_srli_epi64(alo, 32); /* mul_epu32 reads the low 32 bits of each lane */
        const __m512i p00 = _mm512_mul_epu32(alo, b0), p01 = _mm512_mul_epu32(alo, b1), p10 = _mm512_mul_epu32(a1, b0), p11 = _mm512_mul_epu32(a1, b1);
        const __m512i mid = _mm512_add_epi64(_mm512_add_epi64(_mm512_srli_epi64(p00, 32), _mm512_and_si512(p01, low32)), _mm512_and_si512(p10, low32));
        __m512i hi = _mm512_add_epi64(_mm512_add_epi64(p11, _mm512_srli_epi64(p01, 32)), _mm512_add_epi64(_mm512_srli_epi64(p10, 32), _mm512_srli_epi64(mid, 32)));
        __m512i lo = _mm512_add_epi64(_mm512_and_si512(p00, low32), _mm512_slli_epi64(mid, 32));
        hi = _mm512_add_epi64(hi, _mm512_add_epi64(_mm512_mullo_epi64(alo, shi), _mm512_mullo_epi64(ahi, slo)));
        hi = _mm512_add_epi64(hi, chi);
        lo = _mm512_add_epi64(lo, clo);
        hi = _mm512_mask_add_epi64(hi, _mm512_cmplt_epu64_mask(lo, clo), hi, one); /* the carry out of the low word */
        const __m512i x = _mm512_rorv_epi64(_mm512_xor_si512(hi, lo), _mm512_srli_epi64(hi, 58));
        const __m512d u = _mm512_mul_pd(_mm512_cvtepi64_pd(_mm512_srli_epi64(x, 11)), scale);
        const __mmask8 fire = _mm512_cmp_pd_mask(u, p, _CMP_LT_OQ); /* u < p: false for a NaN p, true for p >= 1 */
        _mm256_mask_compressstoreu_epi32(list + k, fire, _mm256_add_epi32(lanes, _mm256_set1_epi32(base + j)));
        k += __builtin_popcount((unsigned)fire);
    }
    *done = j;
    return k;
}
#endif

/* (A_k, C_k) for k = 1..jump_k from the generator's increment (numpy's multiplier). */
static void jump_table(Core *c) {
    const u128 m = {2549297995355413924ULL, 4865540595714422341ULL}, inc = {c->rng[2], c->rng[3]};
    u128 a = m, cc = inc;
    const int32_t K = c->jump_k;
    for (int32_t k = 0; k < K; k++) {
        c->jump[k] = a.hi, c->jump[K + k] = a.lo, c->jump[2 * K + k] = cc.hi, c->jump[3 * K + k] = cc.lo;
        cc = muladd128(m, cc, inc); /* C_{k+1} = m C_k + inc */
        a = mul128(m, a);
    }
    c->jump_inc = inc;
}

/* One stream's frame -> active channels (ev_list) and, for a direct input, their values.
 * Returns the number of active channels, or -1 on a NaN direct input (no Python call here: `run`
 * executes without the GIL). */
static int32_t encode(Core *c, const double *x, int b) {
    int32_t k = 0;
    if (c->enc == ENC_RATE) {
        if (c->rng[2] != c->jump_inc.hi || c->rng[3] != c->jump_inc.lo) jump_table(c);
        const uint64_t *restrict J = c->jump;
        int32_t *restrict list = c->ev_list;
        const double gain = c->gain;
        const int32_t n = c->n_inputs, K = c->jump_k;
        u128 s = {c->rng[0], c->rng[1]};
        /* a frame of zeros: no draws, one jump per block (the AVX-512 draws skip such blocks themselves) */
        const int quiet = c->draws512 ? 0 : count_positive(x, n, gain) == 0;
        for (int32_t base = 0; base < n; base += K) {
            const int32_t m = n - base < K ? n - base : K;
            const double *xb = x + base;
            int32_t j = 0;
#ifdef HAVE_DRAWS512
            if (c->draws512 && !quiet) k = draws_512(J, K, s, xb, gain, m, base, list, k, &j);
#endif
            for (; j < m && quiet == 0; j++) {
                const double p = xb[j] * gain; /* numpy: u < gain * x, u in [0, 1) */
                if (!(p > 0.0)) continue;      /* never fires (NaN included): no draw needed */
                list[k] = base + j;
                k += p >= 1.0 ? 1 : pcg64_out(muladd128(JUMP_A(J, K, j), s, JUMP_C(J, K, j))) < p;
            }
            s = muladd128(JUMP_A(J, K, m - 1), s, JUMP_C(J, K, m - 1));
        }
        c->rng[0] = s.hi, c->rng[1] = s.lo;
    } else if (c->enc == ENC_DELTA) {
        double *ref = c->ref + (size_t)b * c->n_inputs;
        const int32_t n = c->n_inputs;
        int32_t *down = c->ev_val; /* scratch: the down channels, appended after the up ones */
        int32_t kd = 0;
        for (int32_t i = 0; i < n; i++) {
            double levels = trunc((x[i] - ref[i]) / c->threshold);
            c->ev_list[k] = i;
            k += levels > 0;
            down[kd] = n + i;
            kd += levels < 0;
            ref[i] = ref[i] + levels * c->threshold;
        }
        memcpy(c->ev_list + k, down, (size_t)kd * sizeof(int32_t));
        k += kd;
    } else {
        for (int32_t i = 0; i < c->n_inputs; i++) {
            double q = nearbyint(x[i] / c->scale); /* round half to even, as np.round */
            if (isnan(q)) return -1; /* the caller raises, holding the GIL */
            q = q < -c->qmax ? -c->qmax : (q > c->qmax ? c->qmax : q);
            c->ev_list[k] = i;
            c->ev_val[k] = (int32_t)q;
            k += q != 0;
        }
    }
    return k;
}

/* ------------------------------------------------------------------ one step of one stream */

static inline double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* `spikeedge profile`'s phases, only while a phase buffer is set: charge phase p since *t. */
static inline void lap(Core *c, int p, double *t) {
    if (c->phases) {
        double u = now_s();
        c->phases[p] += u - *t;
        *t = u;
    }
}

static int step_stream(Core *c, const double *x, double *out, int b, uint8_t **record) {
    double t = c->phases ? now_s() : 0.0;
    int32_t k = encode(c, x, b);
    if (k < 0) return -1;
    lap(c, 0, &t);
    const int32_t *list = c->ev_list, *vals = c->enc == ENC_DIRECT ? c->ev_val : NULL;
    int64_t ops = 0;
    for (int l = 0; l < c->n_layers; l++) {
        Layer *L = &c->layers[l];
        const size_t off = (size_t)b * L->n;
        int32_t *own = L->list + off, k_rec = L->count[b];
        const int32_t *ai = NULL, *ar = NULL;
        if (k > 0) { ops += accumulate(&L->in, list, vals, k, L->acc_in, L->s16); ai = L->acc_in; }
        if (k_rec > 0) { ops += accumulate(&L->rec, own, NULL, k_rec, L->acc_rec, L->s16); ar = L->acc_rec; }
        lap(c, 1, &t);
        if (!L->sat) lif_update_i32(L, L->syn + off, L->mem + off, ai, ar, L->spk + off);
        else if (L->exact_f64) lif_update_f64(L, L->syn + off, L->mem + off, ai, ar, L->spk + off);
        else lif_update(L, L->syn + off, L->mem + off, ai, ar, L->spk + off);
        k = spike_list(L->spk + off, L->n, own);
        L->count[b] = k;
        *L->spikes += k;
        if (record) memcpy(record[l] + off, L->spk + off, (size_t)L->n);
        list = own;
        vals = NULL;
        lap(c, 2, &t);
    }
    Layer *last = &c->layers[c->n_layers - 1];
    const int32_t n = last->n;
    int32_t *tr = c->trace + (size_t)b * n;
    if (!c->tr_sat) trace_update_i32(tr, c->tr_lo, c->tr_hi, last->spk + (size_t)b * n, n, c->trace_bits, c->tr_small);
    else if (c->f_trace && last->exact_f64 && last->sat) trace_update_f64(tr, c->f_trace, last->flags, n, (double)(1 << c->trace_bits), c->tr_sat);
    else trace_update(tr, c->a_trace, last->spk + (size_t)b * n, n, c->trace_bits);
    for (int o = 0; o < c->n_out; o++) {
        const int8_t *w = c->w_out + (size_t)o * n;
        int64_t acc = 0;
        if (!c->tr_sat && c->dot_block >= 16) acc = dot_trace_i32(tr, w, n, c->dot_block);
        else if (c->f_readout) acc = dot_trace(tr, w, n);
        else
            for (int32_t i = 0; i < n; i++) acc += (int64_t)tr[i] * w[i];
        out[o] = (double)acc * c->out_scale[o] + c->out_bias[o];
    }
    c->counters[1] += ops;
    lap(c, 3, &t);
    return 0;
}

/* ------------------------------------------------------------------ buffers from Python */

static void *alloc(Core *c, size_t bytes);

static int fmt_ok(const char *f, char kind, Py_ssize_t itemsize, Py_ssize_t want) {
    if (itemsize != want || f == NULL) return 0;
    while (*f == '@' || *f == '=' || *f == '<' || *f == '|') f++;
    if (f[0] == 0 || f[1] != 0) return 0;
    if (kind == 'i') return strchr("bhilq", f[0]) != NULL;
    if (kind == 'u') return strchr("BHILQ?", f[0]) != NULL;
    return f[0] == 'd';
}

/* The buffer d[key]: C-contiguous, of the given kind/itemsize and exactly `count` items. */
static void *take(Core *c, PyObject *d, const char *key, char kind, Py_ssize_t itemsize, Py_ssize_t count, int writable, int optional) {
    PyObject *o = PyDict_GetItemString(d, key); /* borrowed */
    if (o == NULL || o == Py_None) {
        if (!optional) PyErr_Format(PyExc_KeyError, "core spec lacks %s", key);
        return NULL;
    }
    if (c->nbufs >= MAX_BUFS) {
        PyErr_SetString(PyExc_ValueError, "too many buffers");
        return NULL;
    }
    Py_buffer *v = &c->bufs[c->nbufs];
    if (PyObject_GetBuffer(o, v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0) return NULL;
    c->nbufs++;
    if (!fmt_ok(v->format, kind, v->itemsize, itemsize) || v->len != count * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd items of %c%zd, got %zd bytes of '%s'", key, count, kind, itemsize,
                     v->len, v->format ? v->format : "?");
        return NULL;
    }
    return v->buf;
}

static int get_int(PyObject *d, const char *key, long lo, long hi, long *out) {
    PyObject *o = PyDict_GetItemString(d, key);
    if (o == NULL) { PyErr_Format(PyExc_KeyError, "core spec lacks %s", key); return -1; }
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < lo || v > hi) { PyErr_Format(PyExc_ValueError, "%s = %ld outside [%ld, %ld]", key, v, lo, hi); return -1; }
    *out = v;
    return 0;
}

static int get_double(PyObject *d, const char *key, double *out) {
    PyObject *o = PyDict_GetItemString(d, key);
    if (o == NULL) { PyErr_Format(PyExc_KeyError, "core spec lacks %s", key); return -1; }
    *out = PyFloat_AsDouble(o);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* A weight matrix: CSC arrays checked entry by entry, optional dense rows, the int16 block
 * bound, and that peak * sum|w| per target fits an int32 accumulation. */
static int take_mat(Core *c, PyObject *d, Mat *m, int32_t n_src, int32_t n_tgt, int64_t peak, int64_t *steps, double *bound) {
    long v;
    m->n_src = n_src;
    m->n_tgt = n_tgt;
    m->steps = steps;
    if (!(m->indptr = take(c, d, "indptr", 'i', 4, (Py_ssize_t)n_src + 1, 0, 0))) return -1;
    int32_t nnz = m->indptr[n_src];
    if (m->indptr[0] != 0 || nnz < 0) { PyErr_SetString(PyExc_ValueError, "indptr does not start at 0"); return -1; }
    for (int32_t j = 0; j < n_src; j++)
        if (m->indptr[j + 1] < m->indptr[j]) { PyErr_SetString(PyExc_ValueError, "indptr decreases"); return -1; }
    if (!(m->idx = take(c, d, "indices", 'i', 4, nnz, 0, 0)) || !(m->val = take(c, d, "values", 'i', 1, nnz, 0, 0))) return -1;
    int64_t *abs_sum = PyMem_Calloc((size_t)n_tgt + 1, sizeof(int64_t));
    if (!abs_sum) { PyErr_NoMemory(); return -1; }
    int wmax = 1, bad = 0;
    for (int32_t p = 0; p < nnz; p++) {
        if (m->idx[p] < 0 || m->idx[p] >= n_tgt) { bad = 1; break; }
        int a = m->val[p] < 0 ? -m->val[p] : m->val[p];
        wmax = a > wmax ? a : wmax;
        abs_sum[m->idx[p]] += a;
    }
    for (int32_t t = 0; t < n_tgt && !bad; t++) {
        if (abs_sum[t] * peak > I32_MAX) bad = 2;
        bound[t] = (double)(abs_sum[t] * peak);
    }
    PyMem_Free(abs_sum);
    if (bad) {
        PyErr_SetString(PyExc_ValueError, bad == 1 ? "a weight targets a neuron out of range" : "an accumulation could leave int32");
        return -1;
    }
    if (n_tgt <= 65536) { /* 2-byte targets (checked < n_tgt above) */
        m->idx16 = alloc(c, (size_t)nnz * sizeof(uint16_t));
        if (!m->idx16) { PyErr_NoMemory(); return -1; }
        for (int32_t p = 0; p < nnz; p++) m->idx16[p] = (uint16_t)m->idx[p];
    }
    if (get_int(d, "chunk", 1, 32767, &v) < 0) return -1;
    m->chunk = (int32_t)v;
    if ((int64_t)m->chunk * wmax > 32767) { PyErr_SetString(PyExc_ValueError, "chunk too large for int16 sums"); return -1; }
    m->rows = take(c, d, "rows", 'i', 1, (Py_ssize_t)n_src * n_tgt, 0, 1);
    if (m->rows == NULL && PyErr_Occurred()) return -1;
    if (get_int(d, "switch_k", -1, (long)n_src + 1, &v) < 0) return -1;
    m->switch_k = v;
    return 0;
}

static int take_layer(Core *c, PyObject *d, Layer *L, int32_t n_src, int64_t peak, int64_t *counters) {
    long v;
    PyObject *w_in = PyDict_GetItemString(d, "w_in"), *w_rec = PyDict_GetItemString(d, "w_rec");
    if (get_int(d, "n", 1, 1 << 24, &v) < 0) return -1;
    L->n = (int32_t)v;
    if (get_int(d, "reset_zero", 0, 1, &v) < 0) return -1;
    L->reset_zero = (int)v;
    if (!w_in || !PyDict_Check(w_in) || !w_rec || !PyDict_Check(w_rec)) { PyErr_SetString(PyExc_KeyError, "w_in / w_rec"); return -1; }
    const Py_ssize_t n = L->n, bn = (Py_ssize_t)c->batch * L->n;
    double *bound = PyMem_Malloc((size_t)n * 2 * sizeof(double));
    if (!bound) { PyErr_NoMemory(); return -1; }
    int ok = take_mat(c, w_in, &L->in, n_src, L->n, peak, counters + 1, bound) == 0 &&
             take_mat(c, w_rec, &L->rec, L->n, L->n, 1, counters + 3, bound + n) == 0 &&
             (L->m_in = take(c, d, "m_in", 'i', 4, n, 0, 0)) && (L->m_rec = take(c, d, "m_rec", 'i', 4, n, 0, 0));
    /* The float64 loop's condition (runtime/kernels.py fits_float64): |acc| * m + 2**16 < 2**52. */
    L->exact_f64 = ok;
    for (Py_ssize_t i = 0; ok && i < n; i++)
        if (bound[i] * fabs((double)L->m_in[i]) + 65536.0 >= 4503599627370496.0 ||
            bound[n + i] * fabs((double)L->m_rec[i]) + 65536.0 >= 4503599627370496.0)
            L->exact_f64 = 0;
    if (!ok) { PyMem_Free(bound); return -1; }
    if (!(L->a_syn = take(c, d, "a_syn", 'i', 4, n, 0, 0)) || !(L->a_mem = take(c, d, "a_mem", 'i', 4, n, 0, 0)) ||
        !(L->bias = take(c, d, "bias", 'i', 4, n, 0, 0)) || !(L->syn = take(c, d, "syn", 'i', 4, bn, 1, 0)) ||
        !(L->mem = take(c, d, "mem", 'i', 4, bn, 1, 0)) || !(L->spk = take(c, d, "spk", 'u', 1, bn, 1, 0)))
        { PyMem_Free(bound); return -1; }
    L->spikes = counters;
    for (Py_ssize_t i = 0; i < n; i++) /* decays in [0, 2**16] keep a * state exact in float64 */
        if (L->a_syn[i] < 0 || L->a_syn[i] > 65536 || L->a_mem[i] < 0 || L->a_mem[i] > 65536) L->exact_f64 = 0;
    /* runtime/kernels.py's bounds: x' = rs(a x) + d with |d| <= drive stays within (drive + 1/2) / (1 - a)
     * from rest, and a reset only moves mem towards 0; below 0.99 * 2**31 the clamp never fires. */
    double sb = 0, mb = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        double drive = fabs((double)L->m_in[i]) * bound[i] / 65536 + fabs((double)L->m_rec[i]) * bound[n + i] / 65536 + 1.0 + fabs((double)L->bias[i]);
        double a = L->a_syn[i] / 65536.0;
        double b = a >= 1.0 ? INFINITY : (drive + 0.5) / (1.0 - a);
        sb = b > sb ? b : sb;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        double a = L->a_mem[i] / 65536.0;
        double b = a >= 1.0 ? INFINITY : (sb + 0.5) / (1.0 - a);
        mb = b > mb ? b : mb;
    }
    PyMem_Free(bound);
    L->syn_bound = sb, L->mem_bound = mb;
    L->sat_base = L->sat = !(sb < 0.99 * 2147483647.0 && mb < 0.99 * 2147483647.0);
    return 0;
}

/* ------------------------------------------------------------------ the Recurrent type */

static void sync_lists(Core *c) {
    for (int l = 0; l < c->n_layers; l++) {
        Layer *L = &c->layers[l];
        for (int b = 0; b < c->batch; b++) {
            const size_t off = (size_t)b * L->n;
            for (int32_t i = 0; i < L->n; i++) L->spk[off + i] = L->spk[off + i] != 0; /* 0/1 whatever was stored */
            L->count[b] = spike_list(L->spk + off, L->n, L->list + off);
        }
        L->sat = L->sat_base; /* a loaded state beyond the bounds turns the clamp on (it is exact either way) */
        for (size_t i = 0; i < (size_t)c->batch * L->n && !L->sat; i++)
            if (fabs((double)L->syn[i]) > L->syn_bound || fabs((double)L->mem[i]) > L->mem_bound) L->sat = 1;
    }
    const Layer *last = &c->layers[c->n_layers - 1];
    c->tr_sat = c->tr_sat_base;
    for (size_t i = 0; i < (size_t)c->batch * last->n && !c->tr_sat; i++)
        if (fabs((double)c->trace[i]) > c->tr_bound) c->tr_sat = 1;
}

static void Core_dealloc(Core *c) {
    for (int i = 0; i < c->nbufs; i++) PyBuffer_Release(&c->bufs[i]);
    for (int i = 0; i < c->nallocs; i++) PyMem_Free(c->allocs[i]);
    if (c->phases) PyBuffer_Release(&c->phase_buf);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static void *alloc(Core *c, size_t bytes) {
    void *p = PyMem_Calloc(bytes ? bytes : 1, 1);
    if (p != NULL) c->allocs[c->nallocs++] = p;
    else c->alloc_failed = 1;
    return p;
}

static int Core_init(Core *c, PyObject *args, PyObject *kw) {
    PyObject *d, *layers;
    long v;
    if (c->nbufs || c->nallocs) { PyErr_SetString(PyExc_RuntimeError, "already initialised"); return -1; }
    if (!PyArg_ParseTuple(args, "O!", &PyDict_Type, &d)) return -1;
    if (get_int(d, "batch", 1, 1 << 20, &v) < 0) return -1;
    c->batch = (int)v;
    if (get_int(d, "encoder", ENC_DIRECT, ENC_DELTA, &v) < 0) return -1;
    c->enc = (int)v;
    if (get_int(d, "n_inputs", 1, 1 << 24, &v) < 0) return -1;
    c->n_inputs = (int)v;
    c->n_ch = c->enc == ENC_DELTA ? 2 * c->n_inputs : c->n_inputs;
    int64_t peak = 1;
    if (c->enc == ENC_DIRECT) {
        if (get_double(d, "scale", &c->scale) < 0 || get_int(d, "qmax", 1, 32767, &v) < 0) return -1;
        c->qmax = (int32_t)v;
        peak = v;
    } else if (c->enc == ENC_RATE) {
        if (get_double(d, "gain", &c->gain) < 0 || !(c->rng = take(c, d, "rng", 'u', 8, 4, 1, 0))) return -1;
    } else {
        if (get_double(d, "threshold", &c->threshold) < 0) return -1;
        if (!(c->ref = take(c, d, "ref", 'f', 8, (Py_ssize_t)c->batch * c->n_inputs, 1, 0))) return -1;
    }
    layers = PyDict_GetItemString(d, "layers");
    if (!layers || !PyList_Check(layers) || PyList_GET_SIZE(layers) < 1 || PyList_GET_SIZE(layers) > MAX_LAYERS) {
        PyErr_SetString(PyExc_ValueError, "layers: a list of 1 to 8 layer specs");
        return -1;
    }
    c->n_layers = (int)PyList_GET_SIZE(layers);
    if (!(c->counters = take(c, d, "counters", 'i', 8, 2 + 5 * c->n_layers, 1, 0))) return -1;
    int32_t n_src = c->n_ch;
    for (int l = 0; l < c->n_layers; l++) {
        PyObject *ld = PyList_GET_ITEM(layers, l);
        if (!PyDict_Check(ld)) { PyErr_SetString(PyExc_TypeError, "a layer spec is a dict"); return -1; }
        if (take_layer(c, ld, &c->layers[l], n_src, l == 0 ? peak : 1, c->counters + 2 + 5 * l) < 0) return -1;
        n_src = c->layers[l].n;
    }
    if (get_int(d, "n_out", 1, 1 << 16, &v) < 0 || (c->n_out = (int)v, get_int(d, "trace_bits", 0, 16, &v) < 0)) return -1;
    c->trace_bits = (int)v;
    const Py_ssize_t n = n_src;
    if (!(c->w_out = take(c, d, "w_out", 'i', 1, (Py_ssize_t)c->n_out * n, 0, 0)) || !(c->a_trace = take(c, d, "a_trace", 'i', 4, n, 0, 0)) ||
        !(c->out_scale = take(c, d, "out_scale", 'f', 8, c->n_out, 0, 0)) || !(c->out_bias = take(c, d, "out_bias", 'f', 8, c->n_out, 0, 0)) ||
        !(c->trace = take(c, d, "trace", 'i', 4, (Py_ssize_t)c->batch * n, 1, 0)))
        return -1;
    if (c->enc == ENC_RATE) { /* a table of at most 1024 jumps (32 kB): longer frames go in blocks */
        c->jump_k = c->n_inputs < 1024 ? c->n_inputs : 1024;
        c->jump = alloc(c, (size_t)c->jump_k * 4 * sizeof(uint64_t));
#ifdef HAVE_DRAWS512
        __builtin_cpu_init();
        c->draws512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                      getenv("SPIKEEDGE_NO_AVX512") == NULL; /* the variable: the scalar draws, for the tests */
#endif
        if (!c->jump) { PyErr_NoMemory(); return -1; }
        c->jump_inc.hi = ~c->rng[2], c->jump_inc.lo = c->rng[3]; /* differs from rng's: built on first use */
    }
    c->ev_list = alloc(c, (size_t)c->n_ch * 4);
    c->ev_val = alloc(c, (size_t)c->n_ch * 4);
    c->f_trace = alloc(c, (size_t)n * 8);
    for (int l = 0; l < c->n_layers; l++) {
        Layer *L = &c->layers[l];
        L->list = alloc(c, (size_t)c->batch * L->n * 4);
        L->count = alloc(c, (size_t)c->batch * 4);
        L->acc_in = alloc(c, (size_t)L->n * 4);
        L->acc_rec = alloc(c, (size_t)L->n * 4);
        L->s16 = alloc(c, (size_t)L->n * 2);
        L->flags = alloc(c, (size_t)L->n * 4);
        L->f_syn = alloc(c, (size_t)L->n * 8), L->f_mem = alloc(c, (size_t)L->n * 8), L->f_off = alloc(c, (size_t)L->n * 8);
        L->f_in = alloc(c, (size_t)L->n * 8), L->f_rec = alloc(c, (size_t)L->n * 8);
        for (int q = 0; q < 4; q++) L->u_lo[q] = alloc(c, (size_t)L->n * 4), L->u_hi[q] = alloc(c, (size_t)L->n * 4);
    }
    c->tr_lo = alloc(c, (size_t)n * 4), c->tr_hi = alloc(c, (size_t)n * 4);
    if (c->alloc_failed) { PyErr_NoMemory(); return -1; } /* one allocation failed */
    for (int l = 0; l < c->n_layers; l++) {
        Layer *L = &c->layers[l];
        for (int32_t i = 0; i < L->n; i++) { /* exact: integers below 2**31 scaled by a power of two */
            L->f_syn[i] = L->a_syn[i] * (1.0 / 65536);
            L->f_mem[i] = L->a_mem[i] * (1.0 / 65536);
            L->f_off[i] = L->bias[i] + 0.5; /* rs(a * syn) + bias = floor(a * syn / 2**16 + 1/2 + bias) */
            L->f_in[i] = L->m_in[i] * (1.0 / 65536);
            L->f_rec[i] = L->m_rec[i] * (1.0 / 65536);
        }
        const int32_t *mult[4] = {L->a_syn, L->a_mem, L->m_in, L->m_rec};
        L->small = 1;
        for (int q = 0; q < 4; q++)
            for (int32_t i = 0; i < L->n; i++) {
                L->u_lo[q][i] = (uint32_t)mult[q][i] & 0xffffu;
                L->u_hi[q][i] = (uint32_t)(mult[q][i] >> 16);
                L->small &= L->u_hi[q][i] == 0;
            }
    }
    c->f_readout = n < 32768;
    c->tr_bound = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        double a = c->a_trace[i] / 65536.0;
        double b = a >= 1.0 ? INFINITY : ((double)(1 << c->trace_bits) + 0.5) / (1.0 - a);
        c->tr_bound = b > c->tr_bound ? b : c->tr_bound;
    }
    c->tr_sat_base = c->tr_sat = !(c->tr_bound < 0.99 * 2147483647.0);
    c->tr_small = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        c->tr_lo[i] = (uint32_t)c->a_trace[i] & 0xffffu, c->tr_hi[i] = (uint32_t)(c->a_trace[i] >> 16);
        c->tr_small &= c->tr_hi[i] == 0;
    }
    { /* block * (B + 1) * 128 < 2**31 */
        double blk = c->tr_sat_base ? 0.0 : floor(2147483647.0 / ((floor(c->tr_bound) + 1.0) * 128.0));
        c->dot_block = blk > 65536.0 ? 65536 : (int32_t)blk;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        c->f_trace[i] = c->a_trace[i] * (1.0 / 65536);
        if (c->a_trace[i] < 0 || c->a_trace[i] > 65536) c->f_trace = NULL; /* the int64 loop */
        if (c->f_trace == NULL) break;
    }
    sync_lists(c);
    c->ready = 1;
    return 0;
}

/* A C-contiguous buffer of exactly `count` items of the given kind and size (float64 inputs and
 * outputs, uint8 spike records): the type is checked as well as the length. */
static int get_buf(PyObject *o, Py_buffer *v, char kind, Py_ssize_t itemsize, Py_ssize_t count, int writable, const char *what) {
    if (PyObject_GetBuffer(o, v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0) return -1;
    if (!fmt_ok(v->format, kind, v->itemsize, itemsize) || v->len != count * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd items of %c%zd, got %zd bytes of '%s'", what, count, kind, itemsize, v->len,
                     v->format ? v->format : "?");
        PyBuffer_Release(v);
        return -1;
    }
    return 0;
}

static int check_ready(Core *c) {
    if (!c->ready) { PyErr_SetString(PyExc_RuntimeError, "core not initialised"); return -1; }
    if (c->busy) { PyErr_SetString(PyExc_RuntimeError, "this session is running in another thread"); return -1; }
    return 0;
}

/* step(x, out): x (batch, n_inputs) float64, out (batch, n_out) float64. The cheap call: vector
 * calling convention (no argument tuple), and an x that is not such a buffer raises BufferError,
 * so that the glue can pass whatever it was given and convert only when this refuses. */
static PyObject *Core_step(Core *c, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer x, out;
    PyObject *ret = NULL;
    if (check_ready(c) < 0) return NULL;
    if (nargs != 2) { PyErr_SetString(PyExc_TypeError, "step(x, out)"); return NULL; }
    if (get_buf(args[0], &x, 'f', 8, (Py_ssize_t)c->batch * c->n_inputs, 0, "step: x (batch, n_inputs) float64") < 0) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_Format(PyExc_BufferError, "step: x is not a C-contiguous float64 buffer of %zd values (%S)", (Py_ssize_t)c->batch * c->n_inputs,
                     value ? value : Py_None);
        Py_XDECREF(type), Py_XDECREF(value), Py_XDECREF(tb);
        return NULL;
    }
    if (get_buf(args[1], &out, 'f', 8, (Py_ssize_t)c->batch * c->n_out, 1, "step: out (batch, n_out) float64") < 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    for (int b = 0; b < c->batch; b++)
        if (step_stream(c, (const double *)x.buf + (size_t)b * c->n_inputs, (double *)out.buf + (size_t)b * c->n_out, b, NULL) < 0) {
            PyErr_SetString(PyExc_ValueError, "the input holds a NaN");
            goto done;
        }
    c->counters[0]++;
    ret = Py_None;
    Py_INCREF(ret);
done:
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    return ret;
}

/* run(xs, outs, record): xs (batch, steps, n_inputs), outs (batch, steps, n_out), float64;
 * record: None or a tuple of one uint8 (steps, batch, n) buffer per layer. */
static PyObject *Core_run(Core *c, PyObject *args) {
    Py_buffer xs, outs, rec[MAX_LAYERS];
    PyObject *xo, *oo, *record, *ret = NULL;
    int nrec = 0, have_outs = 0;
    if (check_ready(c) < 0 || !PyArg_ParseTuple(args, "OOO", &xo, &oo, &record)) return NULL;
    if (PyObject_GetBuffer(xo, &xs, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    const Py_ssize_t per = (Py_ssize_t)c->batch * c->n_inputs;
    const Py_ssize_t steps = xs.len / 8 / per;
    uint8_t *ptr[MAX_LAYERS];
    if (!fmt_ok(xs.format, 'f', xs.itemsize, 8) || xs.len != steps * per * 8) {
        PyErr_SetString(PyExc_ValueError, "run: xs must be (batch, steps, n_inputs) float64");
        goto done;
    }
    if (get_buf(oo, &outs, 'f', 8, steps * c->batch * c->n_out, 1, "run: outs (batch, steps, n_out) float64") < 0) goto done;
    have_outs = 1;
    if (record != Py_None) {
        if (!PyTuple_Check(record) || PyTuple_GET_SIZE(record) != c->n_layers) {
            PyErr_SetString(PyExc_ValueError, "record: a tuple of one buffer per layer");
            goto done;
        }
        for (; nrec < c->n_layers; nrec++)
            if (get_buf(PyTuple_GET_ITEM(record, nrec), &rec[nrec], 'u', 1, steps * c->batch * c->layers[nrec].n, 1,
                        "record: (steps, batch, n) uint8 per layer") < 0)
                goto done;
    }
    /* The whole sequence without the GIL: other threads (the power sampler of `bench`) keep
     * running. The buffers are held, so their memory stays; `busy` refuses concurrent use. */
    int failed = 0;
    c->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t t = 0; t < steps && !failed; t++) {
        for (int l = 0; l < nrec; l++) ptr[l] = (uint8_t *)rec[l].buf + (size_t)t * c->batch * c->layers[l].n;
        for (int b = 0; b < c->batch && !failed; b++) {
            const size_t i = (size_t)b * steps + t;
            failed = step_stream(c, (const double *)xs.buf + i * c->n_inputs, (double *)outs.buf + i * c->n_out, b, nrec ? ptr : NULL) < 0;
        }
        c->counters[0] += !failed;
    }
    Py_END_ALLOW_THREADS
    c->busy = 0;
    if (failed) {
        PyErr_SetString(PyExc_ValueError, "the input holds a NaN");
        goto done;
    }
    ret = Py_None;
    Py_INCREF(ret);
done:
    for (int l = 0; l < nrec; l++) PyBuffer_Release(&rec[l]);
    PyBuffer_Release(&xs);
    if (have_outs) PyBuffer_Release(&outs);
    return ret;
}

static PyObject *Core_sync(Core *c, PyObject *unused) {
    if (check_ready(c) < 0) return NULL;
    sync_lists(c);
    Py_RETURN_NONE;
}

/* bench(layer, recurrent, rows, k, reps): seconds for the best of `reps` accumulations of k
 * sources by one path (the switch point's measurement; counters untouched). The k sources are
 * spread over the matrix and differ from one repetition to the next, as a step's do: a step's
 * rows are rarely the ones summed just before, and timing the same k rows again and again
 * measured a cache-hot cost that favoured the dense rows. */
static PyObject *Core_bench(Core *c, PyObject *args) {
    int l, rec, rows, k, reps;
    if (check_ready(c) < 0 || !PyArg_ParseTuple(args, "iiiii", &l, &rec, &rows, &k, &reps)) return NULL;
    if (l < 0 || l >= c->n_layers || reps < 1) { PyErr_SetString(PyExc_ValueError, "bench: bad layer or reps"); return NULL; }
    Layer *L = &c->layers[l];
    Mat m = rec ? L->rec : L->in;
    int64_t steps[2];
    m.steps = steps;
    m.switch_k = rows ? -1 : INT64_MAX;
    if (k < 1 || k > m.n_src || (rows && m.rows == NULL)) { PyErr_SetString(PyExc_ValueError, "bench: bad k or path"); return NULL; }
    int32_t *list = PyMem_Malloc((size_t)k * 4);
    if (!list) return PyErr_NoMemory();
    const int32_t stride = m.n_src / k > 0 ? m.n_src / k : 1;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        const int32_t off = (int32_t)(((int64_t)r * 104729) % m.n_src);
        for (int j = 0; j < k; j++) list[j] = (int32_t)((off + (int64_t)j * stride) % m.n_src); /* distinct: stride * k <= n_src */
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        accumulate(&m, list, NULL, k, L->acc_in, L->s16);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        best = s < best ? s : best;
    }
    PyMem_Free(list);
    return PyFloat_FromDouble(best);
}

/* set_switch(layer, recurrent, k): rows when more than k sources are active (-1: always). */
static PyObject *Core_set_switch(Core *c, PyObject *args) {
    int l, rec;
    long long k;
    if (check_ready(c) < 0 || !PyArg_ParseTuple(args, "iiL", &l, &rec, &k)) return NULL;
    if (l < 0 || l >= c->n_layers || k < -1) { PyErr_SetString(PyExc_ValueError, "set_switch: bad layer or k"); return NULL; }
    Mat *m = rec ? &c->layers[l].rec : &c->layers[l].in;
    m->switch_k = k > m->n_src ? m->n_src + 1 : k;
    Py_RETURN_NONE;
}

/* set_phases(buf or None): time the phases of every step into a float64 buffer of 4 (profile). */
static PyObject *Core_set_phases(Core *c, PyObject *args) {
    PyObject *o;
    if (check_ready(c) < 0 || !PyArg_ParseTuple(args, "O", &o)) return NULL;
    if (c->phases) {
        PyBuffer_Release(&c->phase_buf);
        c->phases = NULL;
    }
    if (o != Py_None) {
        if (get_buf(o, &c->phase_buf, 'f', 8, 4, 1, "phases: 4 float64") < 0) return NULL;
        c->phases = c->phase_buf.buf;
    }
    Py_RETURN_NONE;
}

/* paths(): which loop each part of the next step takes (tests check that each one is exercised). */
static PyObject *Core_paths(Core *c, PyObject *unused) {
    if (check_ready(c) < 0) return NULL;
    PyObject *layers = PyList_New(c->n_layers);
    if (!layers) return NULL;
    for (int l = 0; l < c->n_layers; l++) {
        const Layer *L = &c->layers[l];
        const char *p = !L->sat ? (L->small ? "int32" : "int32-split") : (L->exact_f64 ? "float64" : "int64");
        PyList_SET_ITEM(layers, l, PyUnicode_FromString(p));
    }
    const Layer *last = &c->layers[c->n_layers - 1];
    const char *tr = !c->tr_sat ? (c->tr_small ? "int32" : "int32-split") : (c->f_trace && last->exact_f64 && last->sat ? "float64" : "int64");
    const char *ro = !c->tr_sat && c->dot_block >= 16 ? "int32-blocks" : (c->f_readout ? "float64" : "int64");
    return Py_BuildValue("{sNssss}", "neuron", layers, "trace", tr, "readout", ro);
}

static PyMethodDef Core_methods[] = {
    {"paths", (PyCFunction)Core_paths, METH_NOARGS, "paths() -> the neuron, trace and readout loops the next step takes."},
    {"set_phases", (PyCFunction)Core_set_phases, METH_VARARGS, "set_phases(buf or None): seconds per phase, for profile."},
    {"set_switch", (PyCFunction)Core_set_switch, METH_VARARGS, "set_switch(layer, recurrent, k): the rows/scatter switch point."},
    {"step", (PyCFunction)(void (*)(void))Core_step, METH_FASTCALL, "step(x, out): one time step of every stream."},
    {"run", (PyCFunction)Core_run, METH_VARARGS, "run(xs, outs, record): every time step of a sequence."},
    {"sync", (PyCFunction)Core_sync, METH_NOARGS, "Rebuild the spike lists from the spike arrays (after a state load)."},
    {"bench", (PyCFunction)Core_bench, METH_VARARGS, "bench(layer, recurrent, rows, k, reps) -> best seconds."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "spikeedge.runtime._core.Recurrent",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Recurrent(spec): a recurrent bundle's step over buffers the Python glue owns.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Core_init,
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_methods = Core_methods,
};

/* pcg64_fill(state, out): Generator.random's draws from a [state_hi, state_lo, inc_hi, inc_lo]
 * uint64 state (advanced in place) into a float64 buffer: for the RNG's own test. */
static PyObject *pcg64_fill(PyObject *self, PyObject *args) {
    Py_buffer st, out;
    if (!PyArg_ParseTuple(args, "w*w*", &st, &out)) return NULL;
    PyObject *ret = NULL;
    if (st.len != 32 || out.len % 8 != 0) {
        PyErr_SetString(PyExc_ValueError, "pcg64_fill: a 4 x uint64 state and a float64 buffer");
    } else {
        uint64_t s[4];
        memcpy(s, st.buf, 32);
        for (Py_ssize_t i = 0; i < out.len / 8; i++) ((double *)out.buf)[i] = pcg64_double(s);
        memcpy(st.buf, s, 32);
        ret = Py_None;
        Py_INCREF(ret);
    }
    PyBuffer_Release(&st);
    PyBuffer_Release(&out);
    return ret;
}

static PyMethodDef module_methods[] = {
    {"pcg64_fill", pcg64_fill, METH_VARARGS, "Draws of numpy's PCG64 Generator.random()."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_core", "spikeedge's compiled event core (runtime/compiled.py).", -1, module_methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__core(void) {
    if (PyType_Ready(&CoreType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&CoreType);
    if (PyModule_AddObject(m, "Recurrent", (PyObject *)&CoreType) < 0) {
        Py_DECREF(&CoreType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "ABI", 1);
    return m;
}
