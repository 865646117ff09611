/* Longer than 300 lines: the whole conv step is one translation unit so gcc inlines across it.
 *
 * spikeedge's compiled core for convolutional bundles (VGG- and ResNet-style ConvBundles).
 *
 * The numpy session (runtime/conv_session.py, conv_ops.py, conv_layer_major.py) is the
 * reference; this file computes the same integers with one C call per `run` (every time step of
 * every stream) and one per `step`. Every array the state lives in is a numpy array the glue
 * (runtime/conv_compiled.py) made once and passed through the buffer protocol; the Conv object
 * holds those buffers and checks each one's type and length when it is built, and derives every
 * shape itself from the layer geometry. Nothing here trusts a size it did not check.
 *
 * Layout: every activation map is channel-last (H, W, C) for one stream, as int32 values plus
 * the list of its non-zero entries (spike lists: the next layer's event path reads the list, the
 * dense path the values). A flatten is then (H, W, C) order; the glue permutes the next linear
 * layer's weight rows to match, so the arithmetic is unchanged.
 *
 * The integer maths is a copy of runtime/conv_ops.py (lif_hard_step_int) and
 * runtime/fixedpoint.py:
 *     acc = conv2d(x, w) or w @ x                      (int32: |acc| <= peak * sum|w| <= 2**31 - 1, checked)
 *     v   = sat32(rs(decay * mem, 16) + rs(acc * m, shift) + bias);  s = v >= 2**14;  mem = s ? 0 : v
 *     stream = sat32(rs(acc * m, shift))  ("set")  or  sat32(stream + rs(acc * m, shift))  ("add")
 *     stream_lif: the step above with the stream as acc (m may be negative)
 *     readout: total += acc (int64);  out = (double)total * acc_scale / steps + bias
 * rs(x, k) = (x + 2**(k-1)) >> k on int64 (an arithmetic shift on gcc and clang). |acc * m| <
 * 2**62 and the offset is <= 2**61: no int64 overflow for any checked input.
 *
 * Accumulation per weighted layer and step, both exact, chosen by the input's non-zero count
 * against `switch_k` (set by the glue): the event path walks the spike list, and for each
 * non-zero input adds its kernel slice to the outputs each kernel offset reaches (a table per
 * input position); the dense path is output-stationary over every input value (im2col without
 * the copy: four input channels per pass over the output row).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define THRESHOLD ((int64_t)1 << 14)
#define MAX_LAYERS 128
#define MAX_BUFS (8 + 6 * MAX_LAYERS)
#define MAX_SIZE ((int64_t)1 << 26) /* values of one map, and any table; keeps every index an int32 */
#define I32_MIN ((int64_t)INT32_MIN)
#define I32_MAX ((int64_t)INT32_MAX)

enum { K_CONV = 0, K_SCONV = 1, K_LINEAR = 2, K_SLIF = 3, K_POOL = 4, K_FLAT = 5, K_GSUM = 6 };
enum { P_ENCODE = 0, P_ACC = 1, P_NEURON = 2, P_READOUT = 3 };

typedef struct { /* one stream's activation map: values and the list of non-zeros */
    int32_t *val, *nz;
    int32_t n, k;
} Act;

typedef struct {
    int kind;
    int32_t c, h, w;        /* input (H, W, C); a 1-D input: c = n, h = w = 1 */
    int32_t o, oh, ow;      /* output; 1-D: o = n, oh = ow = 1 */
    int32_t kh, kw, stride, pad, size;
    int32_t n_in, n_out;    /* values per stream */
    int add, shift, spiking, binary; /* binary: every input value is 0 or 1 (spikes) */
    int64_t decay;
    const int8_t *wt;       /* conv: (kh, kw, c, o); linear: (n_in, n_out) */
    const int64_t *m;       /* (o,) */
    const int32_t *bias;    /* (o,) */
    int32_t *mem;           /* (batch, n_out), Python's */
    int64_t *ctr;           /* Python's: [synops, spikes, event steps, dense steps] */
    int64_t switch_k;       /* dense when more than switch_k inputs are non-zero */
    int32_t *reach;         /* (n_in,) synapses a non-zero input reaches (C's) */
    int32_t *tab_ptr;       /* conv: (h*w + 1,) per input position, its entries in tab */
    int32_t *tab;           /* conv: triples (offset in wev, offset in the output, length) */
    int8_t *wev;            /* conv: the weights as (kh, c, row) with row = (kw reversed, o) padded with
                               zeros to a multiple of 8 (C's): one kernel row of one input channel
                               feeds a contiguous run of outputs at stride 1 */
    int32_t row;            /* conv: the padded row length of wev */
    double inv_c;           /* 1 / c: idx / c as a product (see pos_of) */
    int32_t *pool_to;       /* maxpool: (n_in,) the output each input feeds, or -1 (C's) */
    int16_t *wd, *patch;    /* conv: the weights as int16 (o, kh, kw, c), and one im2col patch (C's) */
    int fexact;             /* the float64 neuron loop is exact for this layer (checked) */
    double fd, *fm, *fb;    /* decay / 2**16; per value (n_out,) m / 2**shift and bias */
    double *cur;            /* (n_out,) scratch: the input current rs(acc * m, shift) + bias, clamped */
    double *ccache;         /* (batch, n_out): the first layer's current, computed once per run */
    int32_t *acc;           /* (n_out,) scratch */
    int32_t *cache;         /* (batch, n_out): the first weighted layer's acc, computed once per run */
    Act *in, *out;          /* in: the previous layer's output; out: own, or the input (flatten) */
    Act own;
} Layer;

typedef struct {
    PyObject_HEAD
    int batch, n_layers, first;   /* first: index of the first weighted layer (reads the image) */
    int32_t in_c, in_h, in_w, n_inputs, qmax, n_out, ro_in;
    double scale;
    Layer *layers;
    Act image, stream;
    const int8_t *ro_w;            /* (ro_in, n_out) */
    const double *ro_scale, *ro_bias;
    int32_t *ro_reach, *ro_acc;
    int64_t *first_ops;            /* (batch,): synaptic operations of the cached first accumulation */
    uint8_t *first_dense;          /* (batch,): its path */
    int64_t *total, *counters, ro_switch; /* counters: [steps, synops, 4 per layer..., readout 4] */
    int64_t *ro_ctr;
    void **allocs;
    int nallocs, max_allocs, ready, busy;
    double *phases;
    Py_buffer phase_buf;
    Py_buffer bufs[MAX_BUFS];
    int nbufs;
} Conv;

/* ------------------------------------------------------------------ fixed point */

static inline int64_t rs(int64_t x, int k) { return (x + ((int64_t)1 << (k - 1))) >> k; }
static inline int64_t sat32(int64_t x) { return x < I32_MIN ? I32_MIN : (x > I32_MAX ? I32_MAX : x); }

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__) && !defined(SPIKEEDGE_NO_CLONES)
#define SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SIMD_CLONES
#endif

/* ------------------------------------------------------------------ accumulation */

/* idx / c for idx < 2**26 without a division: (idx + 1/2) / c is at least 1/(2c) >= 2**-17 from
 * any integer, and the product's error is below 2**-26. */
static inline int32_t pos_of(int32_t idx, double inv_c) { return (int32_t)((idx + 0.5) * inv_c); }

/* Event path of a conv: per non-zero input, its kernel slice added at every output it reaches:
 * per kernel row one contiguous run (stride 1: kw outputs side by side, (H, W, C) order), else
 * one run of o values per kernel offset. A run that reaches its row's end adds the row's zero
 * padding too (a multiple of 8 values: no scalar remainder; zeros into the slack or the next
 * outputs change nothing). */
/* a[0:n] += w[0:n] (n a multiple of 8), and a[0:n] += v * w[0:n]: restrict parameters, so gcc
 * vectorises (an int8 pointer may alias anything; restrict on a local is not honoured). */
/* size_t indices: Python's build flags include -fwrapv, under which an int index may wrap and
 * gcc will not vectorise. */
static inline __attribute__((always_inline)) void add_run8(int32_t *restrict a, const int8_t *restrict w, int32_t n) {
    for (size_t b = (size_t)n >> 3; b; b--, a += 8, w += 8)
        for (size_t q = 0; q < 8; q++) a[q] += w[q];
}
static inline __attribute__((always_inline)) void add_run(int32_t *restrict a, const int8_t *restrict w, int32_t n) {
    for (size_t e = 0; e < (size_t)n; e++) a[e] += w[e];
}
static inline __attribute__((always_inline)) void axpy_run(int32_t *restrict a, const int8_t *restrict w, int32_t v, int32_t n) {
    for (size_t e = 0; e < (size_t)n; e++) a[e] += v * (int32_t)w[e];
}

static inline __attribute__((always_inline)) int64_t conv_event_body(const Layer *L, const Act *in, int32_t *restrict acc, const int binary) {
    const int32_t C = L->c, *tab = L->tab, *tab_ptr = L->tab_ptr, *reach = L->reach;
    int64_t ops = 0;
    memset(acc, 0, (size_t)L->n_out * 4);
    for (int32_t j = 0; j < in->k; j++) {
        const int32_t idx = in->nz[j], pos = pos_of(idx, L->inv_c), ch = idx - pos * C, v = binary ? 1 : in->val[idx];
        const int8_t *wc = L->wev + (size_t)ch * L->row;
        ops += reach[idx];
        for (int32_t p = tab_ptr[pos]; p < tab_ptr[pos + 1]; p++) {
            const int8_t *wr = wc + tab[3 * p];
            int32_t *a = acc + tab[3 * p + 1];
            const int32_t n = tab[3 * p + 2];
            if (!binary) axpy_run(a, wr, v, n);
            else if ((n & 7) == 0) add_run8(a, wr, n);
            else add_run(a, wr, n);
        }
    }
    return ops;
}

/* binary: the input is spikes (every value 1), known from the chain; returns the synaptic
 * operations (counted in the same pass). */
SIMD_CLONES static int64_t conv_event(const Layer *L, const Act *in, int32_t *restrict acc, int binary) {
    return binary ? conv_event_body(L, in, acc, 1) : conv_event_body(L, in, acc, 0);
}

/* acc[0:n] += sum over `cnt` rows (cnt <= 4) of v[r] * rows[r][0:n]. */
static inline void axpy4(int32_t *restrict a, const int8_t *const *r, const int32_t *v, int cnt, int32_t n) {
    if (cnt == 4) {
        const int8_t *restrict r0 = r[0], *restrict r1 = r[1], *restrict r2 = r[2], *restrict r3 = r[3];
        const int32_t v0 = v[0], v1 = v[1], v2 = v[2], v3 = v[3];
        for (size_t o = 0; o < (size_t)n; o++) a[o] += v0 * r0[o] + v1 * r1[o] + v2 * r2[o] + v3 * r3[o];
    } else {
        for (int q = 0; q < cnt; q++) axpy_run(a, r[q], v[q], n);
    }
}

/* sum a[i] * b[i] over int16 values in int32 (gcc makes it pmaddwd). */
static inline __attribute__((always_inline)) int32_t dot16(const int16_t *restrict a, const int16_t *restrict b, size_t n) {
    int32_t s = 0;
    for (size_t i = 0; i < n; i++) s += (int32_t)a[i] * (int32_t)b[i];
    return s;
}

/* Dense path of a conv: im2col one output position at a time (the patch, kh*kw*c int16 values,
 * zeros outside the map; every conv input is below 2**15: spikes or the direct image), then one
 * int16 dot product per output channel with its weight row (wd: (o, kh, kw, c)). No test for
 * zeros: the cost is the layer's size, whatever its activity. */
SIMD_CLONES static void conv_dense(const Layer *L, const Act *in, int32_t *restrict acc) {
    const int32_t C = L->c, O = L->o, s = L->stride, p = L->pad, KW = L->kw;
    const size_t K = (size_t)L->kh * KW * C;
    int16_t *restrict patch = L->patch;
    for (int32_t oy = 0; oy < L->oh; oy++)
        for (int32_t ox = 0; ox < L->ow; ox++) {
            for (int32_t ky = 0; ky < L->kh; ky++) {
                const int32_t iy = oy * s - p + ky;
                for (int32_t kx = 0; kx < KW; kx++) {
                    const int32_t ix = ox * s - p + kx;
                    int16_t *pc = patch + ((size_t)ky * KW + kx) * C;
                    if (iy < 0 || iy >= L->h || ix < 0 || ix >= L->w) {
                        memset(pc, 0, (size_t)C * 2);
                    } else {
                        const int32_t *xv = in->val + ((size_t)iy * L->w + ix) * C;
                        for (size_t ch = 0; ch < (size_t)C; ch++) pc[ch] = (int16_t)xv[ch];
                    }
                }
            }
            int32_t *a = acc + ((size_t)oy * L->ow + ox) * O;
            for (int32_t o = 0; o < O; o++) a[o] = dot16(patch, L->wd + (size_t)o * K, K);
        }
}

/* A linear layer's accumulation: rows of the non-zero inputs (event) or of every input (dense). */
SIMD_CLONES static void linear_acc(const int8_t *w, int32_t n_in, int32_t n_out, const Act *in, int dense, int32_t *restrict acc) {
    memset(acc, 0, (size_t)n_out * 4);
    const int32_t k = dense ? n_in : in->k;
    int32_t j = 0;
    while (j < k) {
        const int8_t *r[4];
        int32_t v[4];
        int cnt = 0;
        for (; cnt < 4 && j < k; j++) {
            const int32_t i = dense ? j : in->nz[j];
            r[cnt] = w + (size_t)i * n_out;
            v[cnt++] = in->val[i];
        }
        axpy4(acc, r, v, cnt, n_out);
    }
}

static int64_t synops_of(const int32_t *reach, const Act *in) {
    int64_t s = 0;
    for (int32_t j = 0; j < in->k; j++) s += reach[in->nz[j]];
    return s;
}

/* The layer's accumulation of `in` into acc; counts synaptic operations and the path taken;
 * returns the synaptic operations. */
static int64_t accumulate(Layer *L, const Act *in, int32_t *acc, uint8_t *dense_out) {
    const int dense = (int64_t)in->k > L->switch_k;
    int64_t ops;
    if (L->kind != K_LINEAR && !dense) {
        ops = conv_event(L, in, acc, L->binary);
    } else {
        ops = synops_of(L->reach, in);
        if (L->kind == K_LINEAR) linear_acc(L->wt, L->n_in, L->n_out, in, dense, acc);
        else conv_dense(L, in, acc);
    }
    L->ctr[0] += ops;
    L->ctr[2 + dense]++;
    if (dense_out) *dense_out = (uint8_t)dense;
    return ops;
}

/* ------------------------------------------------------------------ neurons, streams, routing */

/* floor(y) for |y| < 2**51 with plain adds (SSE2 has no vector floor): round to nearest with
 * the 1.5 * 2**52 constant, then step down where that rounded up (runtime/_core.c's helper). */
#define ROUND_MAGIC 6755399441055744.0
static inline double floor_exact(double y) {
    double r = (y + ROUND_MAGIC) - ROUND_MAGIC;
    return r - (r > y ? 1.0 : 0.0);
}
static inline double satd(double x) { /* two selects gcc maps to maxpd / minpd (exact, NaN aside) */
    x = -2147483648.0 > x ? -2147483648.0 : x;
    return 2147483647.0 < x ? 2147483647.0 : x;
}

/* The LIF step in float64 where it is exact (fexact: |acc * m| < 2**51, so every product, +1/2
 * and floor are exact; the rest are integers below 2**53): rs(d*mem,16) = floor(d/2**16 * mem +
 * 1/2), rs(acc*m,shift) = floor(acc * m/2**shift + 1/2). Spike flags into flag (0/1). */
SIMD_CLONES static void lif_f64(const double *restrict fm, const double *restrict fb, double fd, const int32_t *restrict acc,
                                int32_t *restrict mem, int32_t *restrict flag, int32_t n) {
    const int32_t T = (int32_t)THRESHOLD;
    for (size_t i = 0; i < (size_t)n; i++) {
        const int32_t v = (int32_t)satd(floor_exact(fd * mem[i] + 0.5) + floor_exact(acc[i] * fm[i] + 0.5) + fb[i]);
        const int32_t s = v >= T; /* the rest in int32 lanes: no double blends */
        mem[i] = s ? 0 : v;
        flag[i] = s;
    }
}

/* The same step from a given current c = rs(acc * m, shift) + bias clamped to +-2**40: every
 * |rs(d * mem, 16)| <= 2**31, so a clamped current saturates exactly as the true one does. */
SIMD_CLONES static void lif_cur(const double *restrict cur, double fd, int32_t *restrict mem, int32_t *restrict flag, int32_t n) {
    const int32_t T = (int32_t)THRESHOLD;
    for (size_t i = 0; i < (size_t)n; i++) {
        const int32_t v = (int32_t)satd(floor_exact(fd * mem[i] + 0.5) + cur[i]);
        const int32_t s = v >= T;
        mem[i] = s ? 0 : v;
        flag[i] = s;
    }
}

/* The current in int64 (exact for any checked input), clamped, as float64. */
static void current(const Layer *L, const int32_t *acc, double *restrict cur) {
    const int32_t O = L->o, np = L->n_out / O;
    const int64_t lim = (int64_t)1 << 40;
    for (int32_t p = 0; p < np; p++)
        for (int32_t o = 0; o < O; o++) {
            const int32_t i = p * O + o;
            int64_t c = rs((int64_t)acc[i] * L->m[o], L->shift) + L->bias[o];
            cur[i] = (double)(c < -lim ? -lim : (c > lim ? lim : c));
        }
}

/* The indices of the 1s of a 0/1 array; most groups of 8 are silent and skipped whole. */
static int32_t spike_list(const int32_t *restrict val, int32_t *restrict nz, size_t n) {
    size_t k = 0, i = 0;
    for (; i + 8 <= n; i += 8) {
        const int32_t *v = val + i;
        if (!(v[0] | v[1] | v[2] | v[3] | v[4] | v[5] | v[6] | v[7])) continue;
        for (size_t q = 0; q < 8; q++) {
            nz[k] = (int32_t)(i + q);
            k += (size_t)v[q];
        }
    }
    for (; i < n; i++) {
        nz[k] = (int32_t)i;
        k += (size_t)val[i];
    }
    return (int32_t)k;
}

/* Hard-reset LIF with per-channel m, bias; spikes into out (values, list). The input is acc, or
 * (cur_in) a current computed before; cur_out: where to keep this step's current (a run's first
 * layer: its input is the same every step). */
static void lif(const Layer *L, const int32_t *acc, const double *cur_in, double *cur_out, int32_t *restrict mem, Act *out) {
    const int32_t n = L->n_out;
    int32_t *restrict val = out->val, *restrict nz = out->nz;
    if (cur_in) {
        lif_cur(cur_in, L->fd, mem, val, n);
    } else if (L->fexact && !cur_out) {
        lif_f64(L->fm, L->fb, L->fd, acc, mem, val, n);
    } else {
        double *cur = cur_out ? cur_out : L->cur;
        current(L, acc, cur);
        lif_cur(cur, L->fd, mem, val, n);
    }
    const int32_t k = spike_list(val, nz, (size_t)n);
    out->k = k;
    L->ctr[1] += k;
}

static void stream_conv(const Layer *L, const int32_t *acc, Act *st) {
    const int32_t O = L->o, np = L->n_out / O;
    for (int32_t p = 0; p < np; p++)
        for (int32_t o = 0; o < O; o++) {
            const int32_t i = p * O + o;
            const int64_t y = rs((int64_t)acc[i] * L->m[o], L->shift);
            st->val[i] = (int32_t)sat32(L->add ? st->val[i] + y : y);
        }
}

/* Max pooling of spikes (an OR per window, floor mode); the output's previous entries are
 * cleared through its own list, so the cost follows the events. */
static void maxpool(const Layer *L, const Act *in, Act *out) {
    for (int32_t j = 0; j < out->k; j++) out->val[out->nz[j]] = 0;
    int32_t k = 0;
    for (int32_t j = 0; j < in->k; j++) {
        const int32_t t = L->pool_to[in->nz[j]];
        if (t >= 0 && !out->val[t]) {
            out->val[t] = 1;
            out->nz[k++] = t;
        }
    }
    out->k = k;
}

static void gsum(const Layer *L, const Act *in, Act *out) {
    const int32_t C = L->c;
    memset(out->val, 0, (size_t)C * 4);
    for (int32_t j = 0; j < in->k; j++) {
        const int32_t idx = in->nz[j];
        out->val[idx - pos_of(idx, L->inv_c) * C] += in->val[idx];
    }
    int32_t k = 0;
    for (int32_t ch = 0; ch < C; ch++) {
        out->nz[k] = ch;
        k += out->val[ch] != 0;
    }
    out->k = k;
}

/* ------------------------------------------------------------------ one step of one stream */

static inline double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static inline void lap(Conv *c, int p, double *t) {
    if (!c->phases) return;
    const double n = now_s();
    c->phases[p] += n - *t;
    *t = n;
}

/* The direct encoder (runtime.encoders.encode_direct): round half to even, clip, (C,H,W) -> (H,W,C). */
static int encode(Conv *c, const double *x) {
    const int32_t C = c->in_c, HW = c->in_h * c->in_w;
    const double q = (double)c->qmax, q1 = q + 1.0;
    int32_t k = 0;
    for (int32_t p = 0; p < HW; p++)
        for (int32_t ch = 0; ch < C; ch++) {
            double r = x[(size_t)ch * HW + p] / c->scale;
            if (r != r) return -1;
            /* np.round is round half to even, as (y + 1.5 * 2**52) - 1.5 * 2**52 for |y| < 2**51;
             * clamping to +-(qmax + 1) first changes no clipped result */
            r = r < -q1 ? -q1 : (r > q1 ? q1 : r);
            r = (r + ROUND_MAGIC) - ROUND_MAGIC;
            r = r < -q ? -q : (r > q ? q : r);
            const int32_t i = p * C + ch;
            c->image.val[i] = (int32_t)r;
            c->image.nz[k] = i;
            k += r != 0;
        }
    c->image.k = k;
    return 0;
}

/* One time step of stream b: x its image, out its readout (n_out,), `steps` the count after this
 * step; mode 0: a plain step, 1: a run's first step (the first weighted layer's accumulation of
 * the image is kept per stream), 2: a run's later step (the same image: that accumulation and
 * its operation count are reused); `record`: per layer a uint8 buffer for this stream's spikes,
 * or NULL. */
static int step_stream(Conv *c, const double *x, double *out, int b, int64_t steps, int mode, uint8_t **record) {
    double t = c->phases ? now_s() : 0.0;
    if ((mode != 2 || c->first < 0) && encode(c, x) < 0) return -1;
    lap(c, P_ENCODE, &t);
    for (int l = 0; l < c->n_layers; l++) {
        Layer *L = &c->layers[l];
        const int32_t *acc = L->acc;
        switch (L->kind) {
        case K_CONV:
        case K_SCONV:
        case K_LINEAR:
            if (l == c->first && mode) {
                int32_t *cache = L->cache + (size_t)b * L->n_out;
                if (mode == 1) {
                    c->first_ops[b] = accumulate(L, L->in, cache, &c->first_dense[b]);
                } else {
                    L->ctr[0] += c->first_ops[b];
                    L->ctr[2 + c->first_dense[b]]++;
                }
                acc = cache;
            } else {
                accumulate(L, L->in, L->acc, NULL);
            }
            lap(c, P_ACC, &t);
            if (L->kind == K_SCONV) {
                stream_conv(L, acc, &c->stream);
                lap(c, P_ACC, &t);
                break;
            }
            if (l == c->first && mode) {
                double *cc = L->ccache + (size_t)b * L->n_out;
                lif(L, acc, mode == 2 ? cc : NULL, mode == 1 ? cc : NULL, L->mem + (size_t)b * L->n_out, L->out);
            } else {
                lif(L, acc, NULL, NULL, L->mem + (size_t)b * L->n_out, L->out);
            }
            lap(c, P_NEURON, &t);
            break;
        case K_SLIF:
            lif(L, c->stream.val, NULL, NULL, L->mem + (size_t)b * L->n_out, L->out);
            lap(c, P_NEURON, &t);
            break;
        case K_POOL:
            maxpool(L, L->in, L->out);
            lap(c, P_ACC, &t);
            break;
        case K_GSUM:
            gsum(L, L->in, L->out);
            lap(c, P_ACC, &t);
            break;
        default: /* flatten: the same values, (H, W, C) order */
            break;
        }
        if (record && record[l] && L->spiking)
            for (int32_t i = 0; i < L->n_out; i++) record[l][i] = (uint8_t)L->own.val[i];
    }
    const Act *last = c->n_layers ? c->layers[c->n_layers - 1].out : &c->image;
    const int dense = (int64_t)last->k > c->ro_switch;
    c->ro_ctr[0] += synops_of(c->ro_reach, last);
    c->ro_ctr[2 + dense]++;
    linear_acc(c->ro_w, c->ro_in, c->n_out, last, dense, c->ro_acc);
    int64_t *total = c->total + (size_t)b * c->n_out;
    const double n = (double)steps;
    for (int32_t o = 0; o < c->n_out; o++) {
        total[o] += c->ro_acc[o];
        out[o] = (double)total[o] * c->ro_scale[o] / n + c->ro_bias[o];
    }
    lap(c, P_READOUT, &t);
    return 0;
}

/* ------------------------------------------------------------------ buffers from Python */

static int fmt_ok(const char *f, char kind, Py_ssize_t itemsize, Py_ssize_t want) {
    if (itemsize != want || f == NULL) return 0;
    while (*f == '@' || *f == '=' || *f == '<' || *f == '|') f++;
    if (f[0] == 0 || f[1] != 0) return 0;
    if (kind == 'i') return strchr("bhilq", f[0]) != NULL;
    if (kind == 'u') return strchr("BHILQ?", f[0]) != NULL;
    return f[0] == 'd';
}

/* The buffer d[key]: C-contiguous, of the given kind/itemsize and exactly `count` items. */
static void *take(Conv *c, PyObject *d, const char *key, char kind, Py_ssize_t itemsize, Py_ssize_t count, int writable) {
    PyObject *o = PyDict_GetItemString(d, key); /* borrowed */
    if (o == NULL) {
        PyErr_Format(PyExc_KeyError, "conv core spec lacks %s", key);
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
    if (o == NULL) { PyErr_Format(PyExc_KeyError, "conv core spec lacks %s", key); return -1; }
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < lo || v > hi) { PyErr_Format(PyExc_ValueError, "%s = %ld outside [%ld, %ld]", key, v, lo, hi); return -1; }
    *out = v;
    return 0;
}

static void *alloc(Conv *c, int64_t count, size_t item) {
    if (count < 0 || count > MAX_SIZE * 4 || c->nallocs >= c->max_allocs) return NULL;
    void *p = PyMem_Calloc(count ? (size_t)count : 1, item);
    if (p != NULL) c->allocs[c->nallocs++] = p;
    return p;
}

static int fail(const char *msg, int l) {
    PyErr_Format(PyExc_ValueError, "layer %d: %s", l, msg);
    return -1;
}

/* An Act of n values (and its list), C's own. */
static int make_act(Conv *c, Act *a, int64_t n) {
    a->n = (int32_t)n;
    a->k = 0;
    a->val = alloc(c, n, 4);
    a->nz = alloc(c, n, 4);
    if (!a->val || !a->nz) { PyErr_NoMemory(); return -1; }
    return 0;
}

/* The synapses each input reaches, and (conv) the (weight offset, output offset) pairs per input
 * position, from the checked geometry. */
static int conv_tables(Conv *c, Layer *L) {
    const int32_t C = L->c, O = L->o, KW = L->kw, K = L->kh * KW, HW = L->h * L->w;
    int32_t *nnz = alloc(c, (int64_t)K * C, 4); /* non-zero weights per (offset, input channel) */
    L->tab_ptr = alloc(c, (int64_t)HW + 1, 4);
    L->tab = alloc(c, (int64_t)HW * K * 3, 4);
    L->reach = alloc(c, (int64_t)HW * C, 4);
    L->row = (KW * O + 7) / 8 * 8;
    L->wd = alloc(c, (int64_t)K * C * O, 2);
    L->patch = alloc(c, (int64_t)K * C, 2);
    L->wev = alloc(c, (int64_t)L->kh * C * L->row, 1);
    if (!nnz || !L->tab_ptr || !L->tab || !L->reach || !L->wev || !L->wd || !L->patch) { PyErr_NoMemory(); return -1; }
    for (int32_t q = 0; q < K * C; q++) /* wd[o][q] = wt[q][o], q = (ky * kw + kx) * c + ch */
        for (int32_t o = 0; o < O; o++) L->wd[(size_t)o * K * C + q] = L->wt[(size_t)q * O + o];
    for (int32_t q = 0; q < K * C; q++)
        for (int32_t o = 0; o < O; o++) nnz[q] += L->wt[(size_t)q * O + o] != 0;
    for (int32_t ky = 0; ky < L->kh; ky++) /* wev[ky][ch][kw - 1 - kx][o] = wt[ky][kx][ch][o] */
        for (int32_t ch = 0; ch < C; ch++)
            for (int32_t kx = 0; kx < KW; kx++)
                memcpy(L->wev + ((size_t)ky * C + ch) * L->row + (size_t)(KW - 1 - kx) * O, L->wt + (((size_t)ky * KW + kx) * C + ch) * O, (size_t)O);
    int32_t n = 0;
    for (int32_t pos = 0; pos < HW; pos++) {
        const int32_t y = pos / L->w, x = pos - y * L->w;
        L->tab_ptr[pos] = n;
        for (int32_t ky = 0; ky < L->kh; ky++) {
            const int32_t ny = y + L->pad - ky;
            if (ny < 0 || ny % L->stride || ny / L->stride >= L->oh) continue;
            int32_t run = 0; /* entries of this kernel row; at stride 1 merged into one run */
            for (int32_t kx = KW - 1; kx >= 0; kx--) { /* output columns left to right */
                const int32_t nx = x + L->pad - kx;
                if (nx < 0 || nx % L->stride || nx / L->stride >= L->ow) continue;
                for (int32_t ch = 0; ch < C; ch++) L->reach[(size_t)pos * C + ch] += nnz[(ky * KW + kx) * C + ch];
                if (run && L->stride == 1) {
                    L->tab[3 * (n - 1) + 2] += O;
                    continue;
                }
                L->tab[3 * n] = ky * C * L->row + (KW - 1 - kx) * O;
                L->tab[3 * n + 1] = ((ny / L->stride) * L->ow + nx / L->stride) * O;
                L->tab[3 * n + 2] = O;
                n++, run++;
            }
        }
    }
    L->tab_ptr[HW] = n;
    for (int32_t p = 0; p < n; p++) /* runs reaching their row's end take the padding too */
        if (L->stride == 1 && (L->tab[3 * p] % L->row) + L->tab[3 * p + 2] == KW * O) L->tab[3 * p + 2] = L->row - L->tab[3 * p] % L->row;
    return 0;
}

/* peak * max over outputs of sum |w| must fit the int32 accumulation. */
static int check_bound(const int8_t *w, int64_t rows, int32_t cols, int64_t peak, int l, int64_t *bound) {
    int64_t worst = 0;
    int64_t *sum = PyMem_Calloc((size_t)cols, 8);
    if (!sum) { PyErr_NoMemory(); return -1; }
    for (int64_t r = 0; r < rows; r++)
        for (int32_t o = 0; o < cols; o++) sum[o] += w[r * cols + o] < 0 ? -(int64_t)w[r * cols + o] : w[r * cols + o];
    for (int32_t o = 0; o < cols; o++) worst = sum[o] > worst ? sum[o] : worst;
    PyMem_Free(sum);
    if (peak > 0 && worst > I32_MAX / peak) return fail("peak input x sum|w| can leave int32", l);
    if (bound) *bound = worst * peak;
    return 0;
}

static int take_neuron(Conv *c, PyObject *d, Layer *L, int l, int signed_m) {
    long v;
    if (get_int(d, "shift", 1, 62, &v) < 0) return -1;
    L->shift = (int)v;
    if (!(L->m = take(c, d, "m", 'i', 8, L->o, 0))) return -1;
    for (int32_t o = 0; o < L->o; o++)
        if (L->m[o] >= ((int64_t)1 << 31) || L->m[o] <= -((int64_t)1 << 31) || (!signed_m && L->m[o] < 0)) return fail("m out of range", l);
    if (L->kind == K_SCONV) return 0;
    if (get_int(d, "decay", 0, 65536, &v) < 0) return -1;
    L->decay = v;
    if (!(L->bias = take(c, d, "bias", 'i', 4, L->o, 0))) return -1;
    if (!(L->mem = take(c, d, "mem", 'i', 4, (Py_ssize_t)c->batch * L->n_out, 1))) return -1;
    L->spiking = 1;
    return 0;
}

static void Conv_dealloc(Conv *c) {
    for (int i = 0; i < c->nbufs; i++) PyBuffer_Release(&c->bufs[i]);
    for (int i = 0; i < c->nallocs; i++) PyMem_Free(c->allocs[i]);
    PyMem_Free(c->allocs);
    PyMem_Free(c->layers);
    if (c->phases) PyBuffer_Release(&c->phase_buf);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static int take_layer(Conv *c, PyObject *d, Layer *L, int l, int32_t *shape, int64_t *peak, int32_t *st_shape, int *on_stream, int *on_image) {
    long v;
    int64_t acc_bound = I32_MAX; /* |acc| never exceeds it (the stream: any int32) */
    if (get_int(d, "kind", K_CONV, K_GSUM, &v) < 0) return -1;
    L->kind = (int)v;
    L->c = shape[0], L->h = shape[1], L->w = shape[2];
    L->n_in = (int32_t)((int64_t)shape[0] * shape[1] * shape[2]);
    L->ctr = c->counters + 2 + 4 * l;
    L->switch_k = L->n_in; /* event path until the glue sets the switch */
    const int is_1d = shape[1] == 0;
    if (is_1d) L->n_in = shape[0], L->h = L->w = 1;
    if (*on_stream && L->kind != K_SLIF) return fail("only stream_lif reads the residual stream", l);
    L->inv_c = 1.0 / (double)(L->c > 0 ? L->c : 1);
    if (L->kind == K_CONV || L->kind == K_SCONV) {
        if (is_1d) return fail("a conv needs an (H, W, C) input", l);
        if (get_int(d, "in_channels", 1, 1 << 16, &v) < 0 || v != L->c) return fail("in_channels differs from the input's", l);
        if (get_int(d, "out_channels", 1, 1 << 16, &v) < 0) return -1;
        L->o = (int32_t)v;
        if (get_int(d, "kernel_h", 1, 64, &v) < 0) return -1;
        L->kh = (int32_t)v;
        if (get_int(d, "kernel_w", 1, 64, &v) < 0) return -1;
        L->kw = (int32_t)v;
        if (get_int(d, "stride", 1, 64, &v) < 0) return -1;
        L->stride = (int32_t)v;
        if (get_int(d, "padding", 0, 63, &v) < 0) return -1;
        L->pad = (int32_t)v;
        if (L->pad >= L->kh || L->pad >= L->kw) return fail("padding must be smaller than the kernel", l);
        const int64_t oh = ((int64_t)L->h + 2 * L->pad - L->kh) / L->stride + 1, ow = ((int64_t)L->w + 2 * L->pad - L->kw) / L->stride + 1;
        if (L->h + 2 * L->pad < L->kh || L->w + 2 * L->pad < L->kw) return fail("the kernel does not fit the input", l);
        L->oh = (int32_t)oh, L->ow = (int32_t)ow;
        const int64_t n_out = oh * ow * L->o, wsize = (int64_t)L->kh * L->kw * L->c * L->o;
        if (n_out > MAX_SIZE || wsize > MAX_SIZE || (int64_t)L->h * L->w * L->kh * L->kw * 2 > MAX_SIZE) return fail("too large", l);
        L->n_out = (int32_t)n_out;
        if (!(L->wt = take(c, d, "weight", 'i', 1, wsize, 0))) return -1;
        if (*peak > 32767) return fail("a conv input beyond int16", l); /* the dense path's patches */
        L->binary = *peak == 1 && !*on_image; /* spikes: the image may hold -1 even where qmax is 1 */
        if (check_bound(L->wt, (int64_t)L->kh * L->kw * L->c, L->o, *peak, l, &acc_bound) < 0) return -1;
        if (conv_tables(c, L) < 0) return -1;
        if (L->kind == K_SCONV) {
            if (get_int(d, "add", 0, 1, &v) < 0) return -1;
            L->add = (int)v;
            if (L->add && (st_shape[0] != L->o || st_shape[1] != L->oh || st_shape[2] != L->ow)) return fail("adds to a stream of another shape", l);
            st_shape[0] = L->o, st_shape[1] = L->oh, st_shape[2] = L->ow;
            *on_stream = 1;
        } else {
            *on_stream = 0;
        }
        if (take_neuron(c, d, L, l, 0) < 0) return -1;
        shape[0] = L->o, shape[1] = L->oh, shape[2] = L->ow;
    } else if (L->kind == K_LINEAR) {
        if (!is_1d) return fail("a linear layer needs a flat input (flatten first)", l);
        if (get_int(d, "n_in", 1, MAX_SIZE, &v) < 0 || v != L->n_in) return fail("n_in differs from the input's size", l);
        if (get_int(d, "n_out", 1, 1 << 20, &v) < 0) return -1;
        L->o = L->n_out = (int32_t)v;
        L->oh = L->ow = 1;
        if ((int64_t)L->n_in * L->n_out > MAX_SIZE) return fail("too large", l);
        if (!(L->wt = take(c, d, "weight", 'i', 1, (int64_t)L->n_in * L->n_out, 0))) return -1;
        if (check_bound(L->wt, L->n_in, L->n_out, *peak, l, &acc_bound) < 0) return -1;
        if (!(L->reach = alloc(c, L->n_in, 4))) { PyErr_NoMemory(); return -1; }
        for (int32_t i = 0; i < L->n_in; i++)
            for (int32_t o = 0; o < L->n_out; o++) L->reach[i] += L->wt[(size_t)i * L->n_out + o] != 0;
        if (take_neuron(c, d, L, l, 0) < 0) return -1;
        shape[0] = L->n_out, shape[1] = shape[2] = 0;
    } else if (L->kind == K_SLIF) {
        if (!*on_stream) return fail("stream_lif needs the residual stream", l);
        if (get_int(d, "channels", 1, 1 << 16, &v) < 0 || v != st_shape[0]) return fail("channels differ from the stream's", l);
        L->c = L->o = st_shape[0], L->h = L->oh = st_shape[1], L->w = L->ow = st_shape[2];
        L->n_in = L->n_out = L->o * L->oh * L->ow;
        if (take_neuron(c, d, L, l, 1) < 0) return -1;
        *on_stream = 0;
    } else if (L->kind == K_POOL) {
        if (is_1d || *peak != 1) return fail("max pooling takes spike maps", l);
        if (get_int(d, "size", 1, 1 << 16, &v) < 0) return -1;
        L->size = (int32_t)v;
        L->o = L->c, L->oh = L->h / L->size, L->ow = L->w / L->size;
        if (L->oh < 1 || L->ow < 1) return fail("the window is larger than its input", l);
        L->n_out = L->o * L->oh * L->ow;
        if (!(L->pool_to = alloc(c, L->n_in, 4))) { PyErr_NoMemory(); return -1; }
        for (int32_t idx = 0; idx < L->n_in; idx++) {
            const int32_t pos = idx / L->c, ch = idx - pos * L->c, y = pos / L->w, x = pos - y * L->w;
            const int32_t oy = y / L->size, ox = x / L->size;
            L->pool_to[idx] = oy < L->oh && ox < L->ow ? (oy * L->ow + ox) * L->c + ch : -1;
        }
        shape[1] = L->oh, shape[2] = L->ow;
    } else if (L->kind == K_FLAT) {
        if (is_1d) return fail("flatten needs an (H, W, C) input", l);
        L->n_out = L->n_in, L->o = L->n_in, L->oh = L->ow = 1;
        shape[0] = L->n_in, shape[1] = shape[2] = 0;
    } else { /* K_GSUM */
        if (is_1d || *peak != 1) return fail("the global sum pools spike maps", l);
        L->o = L->n_out = L->c, L->oh = L->ow = 1;
        *peak = (int64_t)L->h * L->w;
        shape[1] = shape[2] = 0;
    }
    if (L->kind != K_FLAT) *on_image = 0; /* only a flatten passes the image on */
    if (L->spiking) {
        *peak = 1;
        int64_t mmax = 0;
        for (int32_t o = 0; o < L->o; o++) mmax = llabs(L->m[o]) > mmax ? llabs(L->m[o]) : mmax;
        L->fexact = (double)acc_bound * (double)mmax < 2251799813685248.0; /* 2**51 */
        L->fd = (double)L->decay * (1.0 / 65536);
        if (!(L->cur = alloc(c, L->n_out, 8))) { PyErr_NoMemory(); return -1; }
        if (L->fexact) {
            L->fm = alloc(c, L->n_out, 8);
            L->fb = alloc(c, L->n_out, 8);
            if (!L->fm || !L->fb) { PyErr_NoMemory(); return -1; }
            const double scale = ldexp(1.0, -L->shift);
            for (int32_t i = 0; i < L->n_out; i++) { /* exact: an integer below 2**31 times a power of two */
                L->fm[i] = (double)L->m[i % L->o] * scale;
                L->fb[i] = (double)L->bias[i % L->o];
            }
        }
    }
    return 0;
}

static int Conv_init(Conv *c, PyObject *args, PyObject *kw) {
    PyObject *d, *layers, *ro;
    long v;
    if (c->nbufs || c->nallocs) { PyErr_SetString(PyExc_RuntimeError, "already initialised"); return -1; }
    if (!PyArg_ParseTuple(args, "O!", &PyDict_Type, &d)) return -1;
    if (get_int(d, "batch", 1, 1 << 20, &v) < 0) return -1;
    c->batch = (int)v;
    if (get_int(d, "in_c", 1, 1 << 16, &v) < 0) return -1;
    c->in_c = (int32_t)v;
    if (get_int(d, "in_h", 1, 1 << 16, &v) < 0) return -1;
    c->in_h = (int32_t)v;
    if (get_int(d, "in_w", 1, 1 << 16, &v) < 0) return -1;
    c->in_w = (int32_t)v;
    if ((int64_t)c->in_c * c->in_h * c->in_w > MAX_SIZE) { PyErr_SetString(PyExc_ValueError, "input too large"); return -1; }
    c->n_inputs = c->in_c * c->in_h * c->in_w;
    if (get_int(d, "qmax", 1, 32767, &v) < 0) return -1;
    c->qmax = (int32_t)v;
    PyObject *so = PyDict_GetItemString(d, "scale");
    c->scale = so ? PyFloat_AsDouble(so) : -1.0;
    if (PyErr_Occurred()) return -1;
    if (!(c->scale > 0.0) || !isfinite(c->scale)) { PyErr_SetString(PyExc_ValueError, "scale must be a positive finite number"); return -1; }
    layers = PyDict_GetItemString(d, "layers");
    if (!layers || !PyList_Check(layers) || PyList_GET_SIZE(layers) > MAX_LAYERS) {
        PyErr_SetString(PyExc_ValueError, "layers: a list of at most 128 layer specs");
        return -1;
    }
    c->n_layers = (int)PyList_GET_SIZE(layers);
    c->max_allocs = 16 + 16 * c->n_layers;
    c->allocs = PyMem_Calloc((size_t)c->max_allocs, sizeof(void *));
    c->layers = PyMem_Calloc((size_t)c->n_layers + 1, sizeof(Layer));
    if (!c->allocs || !c->layers) { PyErr_NoMemory(); return -1; }
    if (!(c->counters = take(c, d, "counters", 'i', 8, 2 + 4 * (c->n_layers + 1), 1))) return -1;
    if (make_act(c, &c->image, c->n_inputs) < 0) return -1;
    int32_t shape[3] = {c->in_c, c->in_h, c->in_w}, st_shape[3] = {0, 0, 0};
    int64_t peak = c->qmax, stream_max = 0;
    int on_stream = 0, on_image = 1;
    Act *prev = &c->image;
    c->first = -1;
    for (int l = 0; l < c->n_layers; l++) {
        PyObject *ld = PyList_GET_ITEM(layers, l);
        Layer *L = &c->layers[l];
        if (!PyDict_Check(ld)) { PyErr_SetString(PyExc_TypeError, "a layer spec is a dict"); return -1; }
        if (take_layer(c, ld, L, l, shape, &peak, st_shape, &on_stream, &on_image) < 0) return -1;
        L->in = prev;
        if (L->kind == K_CONV || L->kind == K_SCONV || L->kind == K_LINEAR) {
            /* 8 values of slack: a padded run may add zeros just past the last output */
            if (!(L->acc = alloc(c, (int64_t)L->n_out + 8, 4))) { PyErr_NoMemory(); return -1; }
            if (c->first < 0) {
                c->first = l;
                if (!(L->cache = alloc(c, (int64_t)c->batch * L->n_out + 8, 4))) { PyErr_NoMemory(); return -1; }
                if (L->spiking && !(L->ccache = alloc(c, (int64_t)c->batch * L->n_out, 8))) { PyErr_NoMemory(); return -1; }
            }
        }
        if (L->kind == K_SCONV) {
            stream_max = L->n_out > stream_max ? L->n_out : stream_max;
            L->out = &c->stream;
        } else if (L->kind == K_FLAT) {
            L->out = prev;
        } else {
            if (make_act(c, &L->own, L->n_out) < 0) return -1;
            L->out = &L->own;
        }
        prev = L->out;
    }
    if (on_stream) { PyErr_SetString(PyExc_ValueError, "the readout cannot read the residual stream"); return -1; }
    if (make_act(c, &c->stream, stream_max) < 0) return -1;
    if (shape[1] != 0) { PyErr_SetString(PyExc_ValueError, "the readout needs a flat input (flatten first)"); return -1; }
    if (!(c->first_ops = alloc(c, c->batch, 8)) || !(c->first_dense = alloc(c, c->batch, 1))) { PyErr_NoMemory(); return -1; }
    ro = PyDict_GetItemString(d, "readout");
    if (!ro || !PyDict_Check(ro)) { PyErr_SetString(PyExc_ValueError, "readout: a dict"); return -1; }
    c->ro_in = prev->n;
    if (get_int(ro, "n_in", 1, MAX_SIZE, &v) < 0 || v != c->ro_in) { PyErr_SetString(PyExc_ValueError, "readout: n_in differs from the input's size"); return -1; }
    if (get_int(ro, "n_out", 1, 1 << 16, &v) < 0) return -1;
    c->n_out = (int32_t)v;
    if ((int64_t)c->ro_in * c->n_out > MAX_SIZE) { PyErr_SetString(PyExc_ValueError, "readout too large"); return -1; }
    if (!(c->ro_w = take(c, ro, "weight", 'i', 1, (int64_t)c->ro_in * c->n_out, 0)) || !(c->ro_scale = take(c, ro, "acc_scale", 'f', 8, c->n_out, 0)) ||
        !(c->ro_bias = take(c, ro, "bias", 'f', 8, c->n_out, 0)) || !(c->total = take(c, ro, "total", 'i', 8, (Py_ssize_t)c->batch * c->n_out, 1)))
        return -1;
    if (check_bound(c->ro_w, c->ro_in, c->n_out, peak, c->n_layers, NULL) < 0) return -1;
    c->ro_ctr = c->counters + 2 + 4 * c->n_layers;
    c->ro_switch = c->ro_in;
    if (!(c->ro_reach = alloc(c, c->ro_in, 4)) || !(c->ro_acc = alloc(c, c->n_out, 4))) { PyErr_NoMemory(); return -1; }
    for (int32_t i = 0; i < c->ro_in; i++)
        for (int32_t o = 0; o < c->n_out; o++) c->ro_reach[i] += c->ro_w[(size_t)i * c->n_out + o] != 0;
    c->ready = 1;
    return 0;
}

/* A C-contiguous buffer of exactly `count` items of the given kind and size. */
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

static int check_ready(Conv *c) {
    if (!c->ready) { PyErr_SetString(PyExc_RuntimeError, "conv core not initialised"); return -1; }
    if (c->busy) { PyErr_SetString(PyExc_RuntimeError, "this session is running in another thread"); return -1; }
    return 0;
}

/* record: None, or a tuple with per layer None or a uint8 (steps, batch, n_out) buffer (spiking
 * layers only); the buffers taken go to rec[l] (rec[l].buf NULL where none). Returns the number of
 * entries of rec to release, or -1 (with every buffer taken so far released). */
static int take_record(Conv *c, PyObject *record, Py_ssize_t steps, Py_buffer *rec) {
    if (record == Py_None) return 0;
    if (!PyTuple_Check(record) || PyTuple_GET_SIZE(record) != c->n_layers) {
        PyErr_SetString(PyExc_ValueError, "record: a tuple of one entry per layer");
        return -1;
    }
    for (int l = 0; l < c->n_layers; l++) {
        PyObject *r = PyTuple_GET_ITEM(record, l);
        int bad = 0;
        if (r != Py_None && !c->layers[l].spiking) {
            PyErr_SetString(PyExc_ValueError, "record: a buffer for a layer without neurons");
            bad = 1;
        } else if (r != Py_None) {
            bad = get_buf(r, &rec[l], 'u', 1, steps * c->batch * c->layers[l].n_out, 1, "record: (steps, batch, n) uint8 per spiking layer") < 0;
        }
        if (bad) {
            for (int j = 0; j < l; j++)
                if (rec[j].buf) PyBuffer_Release(&rec[j]);
            return -1;
        }
    }
    return c->n_layers;
}

/* step(x, out, record): x (batch, C*H*W) float64 images, out (batch, n_out) float64, record as
 * for run with one step. */
static PyObject *Conv_step(Conv *c, PyObject *args) {
    Py_buffer x, out, *rec = NULL;
    PyObject *xo, *oo, *record = Py_None, *ret = NULL;
    uint8_t **ptr = NULL;
    int nrec = 0;
    if (check_ready(c) < 0 || !PyArg_ParseTuple(args, "OO|O", &xo, &oo, &record)) return NULL;
    if (get_buf(xo, &x, 'f', 8, (Py_ssize_t)c->batch * c->n_inputs, 0, "step: x (batch, C*H*W) float64") < 0) return NULL;
    if (get_buf(oo, &out, 'f', 8, (Py_ssize_t)c->batch * c->n_out, 1, "step: out (batch, n_out) float64") < 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    if (record != Py_None) {
        rec = PyMem_Calloc((size_t)c->n_layers + 1, sizeof(Py_buffer));
        ptr = PyMem_Calloc((size_t)c->n_layers + 1, sizeof(uint8_t *));
        if (!rec || !ptr) { PyErr_NoMemory(); goto done; }
        if ((nrec = take_record(c, record, 1, rec)) < 0) { nrec = 0; goto done; }
    }
    const int64_t steps = c->counters[0] + 1;
    for (int b = 0; b < c->batch; b++) {
        for (int l = 0; l < nrec; l++) ptr[l] = rec[l].buf ? (uint8_t *)rec[l].buf + (size_t)b * c->layers[l].n_out : NULL;
        if (step_stream(c, (const double *)x.buf + (size_t)b * c->n_inputs, (double *)out.buf + (size_t)b * c->n_out, b, steps, 0, nrec ? ptr : NULL) < 0) {
            PyErr_SetString(PyExc_ValueError, "the input holds a NaN");
            goto done;
        }
    }
    c->counters[0] = steps;
    ret = Py_None;
    Py_INCREF(ret);
done:
    for (int l = 0; l < nrec; l++)
        if (rec[l].buf) PyBuffer_Release(&rec[l]);
    PyMem_Free(rec);
    PyMem_Free(ptr);
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    return ret;
}

/* run(x, outs, record): x (batch, C*H*W) float64, the same images every step; outs (batch, steps,
 * n_out) float64; record: None or a tuple with, per layer, None or a uint8 (steps, batch, n_out)
 * buffer (spiking layers). */
static PyObject *Conv_run(Conv *c, PyObject *args) {
    Py_buffer x, outs, *rec = NULL;
    PyObject *xo, *oo, *record, *ret = NULL;
    uint8_t **ptr = NULL;
    int nrec = 0, have_x = 0, have_outs = 0;
    if (check_ready(c) < 0 || !PyArg_ParseTuple(args, "OOO", &xo, &oo, &record)) return NULL;
    if (get_buf(xo, &x, 'f', 8, (Py_ssize_t)c->batch * c->n_inputs, 0, "run: x (batch, C*H*W) float64") < 0) return NULL;
    have_x = 1;
    if (PyObject_GetBuffer(oo, &outs, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) goto done;
    have_outs = 1;
    const Py_ssize_t per = (Py_ssize_t)c->batch * c->n_out, steps = outs.len / 8 / per;
    if (!fmt_ok(outs.format, 'f', outs.itemsize, 8) || outs.len != steps * per * 8) {
        PyErr_SetString(PyExc_ValueError, "run: outs must be (batch, steps, n_out) float64");
        goto done;
    }
    rec = PyMem_Calloc((size_t)c->n_layers + 1, sizeof(Py_buffer));
    ptr = PyMem_Calloc((size_t)c->n_layers + 1, sizeof(uint8_t *));
    if (!rec || !ptr) { PyErr_NoMemory(); goto done; }
    if ((nrec = take_record(c, record, steps, rec)) < 0) {
        nrec = 0;
        goto done;
    }
    int failed = 0;
    const int64_t base = c->counters[0];
    c->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    /* stream by stream, every step of one image before the next: the streams are independent,
     * and one stream's state stays in cache */
    for (int b = 0; b < c->batch && !failed; b++) {
        const double *xb = (const double *)x.buf + (size_t)b * c->n_inputs;
        for (Py_ssize_t t = 0; t < steps && !failed; t++) {
            for (int l = 0; l < nrec; l++)
                ptr[l] = rec[l].buf ? (uint8_t *)rec[l].buf + ((size_t)t * c->batch + b) * c->layers[l].n_out : NULL;
            failed = step_stream(c, xb, (double *)outs.buf + ((size_t)b * steps + t) * c->n_out, b, base + t + 1, t == 0 ? 1 : 2, nrec ? ptr : NULL) < 0;
        }
    }
    if (!failed) c->counters[0] += steps;
    Py_END_ALLOW_THREADS
    c->busy = 0;
    if (failed) {
        PyErr_SetString(PyExc_ValueError, "the input holds a NaN");
        goto done;
    }
    ret = Py_None;
    Py_INCREF(ret);
done:
    for (int l = 0; l < nrec; l++)
        if (rec[l].buf) PyBuffer_Release(&rec[l]);
    PyMem_Free(rec);
    PyMem_Free(ptr);
    if (have_x) PyBuffer_Release(&x);
    if (have_outs) PyBuffer_Release(&outs);
    return ret;
}

/* set_switch(layer, k): the layer's dense path when more than k inputs are non-zero (-1: always
 * dense; layer = number of layers: the readout). */
static PyObject *Conv_set_switch(Conv *c, PyObject *args) {
    int l;
    long long k;
    if (check_ready(c) < 0 || !PyArg_ParseTuple(args, "iL", &l, &k)) return NULL;
    if (l < 0 || l > c->n_layers || k < -1) { PyErr_SetString(PyExc_ValueError, "set_switch: bad layer or k"); return NULL; }
    if (l == c->n_layers) c->ro_switch = k;
    else c->layers[l].switch_k = k;
    Py_RETURN_NONE;
}

static PyObject *Conv_set_phases(Conv *c, PyObject *args) {
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

static PyMethodDef Conv_methods[] = {
    {"set_phases", (PyCFunction)Conv_set_phases, METH_VARARGS, "set_phases(buf or None): seconds per phase, for profile."},
    {"set_switch", (PyCFunction)Conv_set_switch, METH_VARARGS, "set_switch(layer, k): dense when more than k inputs are non-zero."},
    {"step", (PyCFunction)Conv_step, METH_VARARGS, "step(x, out[, record]): one time step of every stream."},
    {"run", (PyCFunction)Conv_run, METH_VARARGS, "run(x, outs, record): every time step on the same images."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ConvType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "spikeedge.runtime._conv_core.Conv",
    .tp_basicsize = sizeof(Conv),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Conv(spec): a conv bundle's step over buffers the Python glue owns.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Conv_init,
    .tp_dealloc = (destructor)Conv_dealloc,
    .tp_methods = Conv_methods,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_conv_core", "spikeedge's compiled conv core (runtime/conv_compiled.py).", -1, NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__conv_core(void) {
    if (PyType_Ready(&ConvType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&ConvType);
    if (PyModule_AddObject(m, "Conv", (PyObject *)&ConvType) < 0) {
        Py_DECREF(&ConvType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "ABI", 1);
    return m;
}
