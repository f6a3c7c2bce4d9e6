/* Fused CPU kernels for float32 inputs: one pass over each row, evaluated in double precision.
 *
 * Why this is exact: a float32 input converted to double is exact, and so is the difference of two
 * float32 numbers of the same binade range that losses meet (the logits' d = x - max has at most 24 + 30
 * significant bits within the range where exp(d) does not underflow), and 1 - p for a float32 p. Every
 * formula below is the one the generic float64 kernels use for widened float32 input (see the Python
 * kernels named in each comment); exp and log1p here are accurate to a few double ulps (2^-50 relative,
 * tested against mpmath in tests/test_backend_cpu.py), so each float32 result, rounded once at the
 * end, is within 0.5 ulp + 2^-26 ulp of its exact value: far inside the 8-ulp contract.
 *
 * Why it is fast: NumPy has no SIMD float64 exp/log1p on AVX2 machines (scalar libm, 10-16 ns per
 * element); the polynomial exp and log1p below are branch-free so GCC vectorises the row loops
 * (target_clones builds an AVX2+FMA version beside the portable one and picks at load time), and each
 * kernel reads its inputs once and writes the gradient once, already scaled by the reduction's weight.
 *
 * Conventions: row-major (rows, k) arrays, the reduced axis last. value[r] is the per-sample value in
 * double. grad (may be NULL) receives scale[r] * d value[r] / d pred[r, j] rounded to float32, and 0
 * for a row whose scale is 0 (a sample of weight 0 contributes nothing, even where its gradient is
 * infinite). scale may be NULL (1 for every row).
 * The functions release the GIL; the Python side splits the rows over threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLONES
#endif

typedef Py_ssize_t idx;

/* Sums over a row may be vectorised (summed in a few interleaved partial sums): every such sum is of
 * double terms for a float32 result, so its order changes nothing at float32 precision that matters
 * here (n * 2^-53 relative for n terms). */
#define PRAGMA(x) _Pragma(#x)
#define SIMD_SUM(a) PRAGMA(omp simd reduction(+ : a))
#define SIMD_SUM2(a, b) PRAGMA(omp simd reduction(+ : a, b))

/* ------------------------------------------------------------------------------ double math */

static inline uint64_t bits_of(double x) { uint64_t u; memcpy(&u, &x, 8); return u; }
static inline double from_bits(uint64_t u) { double x; memcpy(&x, &u, 8); return x; }

/* 2^k for a whole-valued double k in [-1022, 1023]: (k + 1023) placed in the exponent field. */
static inline double pow2(double k) {
    return from_bits(bits_of(k + (1023.0 + 4503599627370496.0)) << 52);
}

/* exp(x), relative error below 2^-51 for x in [-745, 709.7]; 0 below, inf above, NaN kept.
 * x = k ln2 + r with |r| <= ln2/2 (Cody-Waite, ln2 in two parts so k*LN2_HI is exact for |k| < 2^11),
 * exp(r) by its Taylor series to r^13 (truncation below 2^-58 at |r| = 0.347), 2^k in two factors
 * so that subnormal results are formed correctly. */
static inline double kexp(double x) {
    const double LOG2E = 1.4426950408889634, LN2_HI = 0.6931471803691238,
                 LN2_LO = 1.9082149292705877e-10;
    double xc = x < -746.0 ? -746.0 : (x > 710.0 ? 710.0 : x);
    double k = nearbyint(xc * LOG2E);
    double r = (xc - k * LN2_HI) - k * LN2_LO;
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r * r + r;  /* exp(r) - 1 */
    double k1 = floor(k * 0.5), k2 = k - k1;
    double y = (1.0 + p) * pow2(k1) * pow2(k2);
    y = x < -746.0 ? 0.0 : y;
    y = x > 710.0 ? INFINITY : y;
    return x != x ? x : y;
}

/* log(u) + extra for u in [2^-1022, 2^1024) written as 2^e m with m in [sqrt(1/2), sqrt(2));
 * log(m) by the atanh series in s = (m - 1)/(m + 1), |s| <= 0.1716, to s^23 (truncation below
 * 2^-60); e*ln2 in two parts, the small ones added first. extra is a correction far below log(u)'s
 * ulp scale (log1p's c/u) or 0. */
static inline double klog_plus(double u, double extra) {
    const double LN2_HI = 0.6931471803691238, LN2_LO = 1.9082149292705877e-10;
    uint64_t b = bits_of(u);
    /* the exponent field as a double without an int64 conversion (none on AVX2): 2^52 + field */
    double e = from_bits(((b >> 52) & 0x7ff) | 0x4330000000000000ULL) - (4503599627370496.0 + 1023.0);
    double m = from_bits((b & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL);
    int big = m > 1.4142135623730951;
    m = big ? m * 0.5 : m;
    e = big ? e + 1.0 : e;
    double f = m - 1.0;               /* exact (Sterbenz) */
    double s = f / (2.0 + f);
    double z = s * s;
    double q = 1.0 / 23.0;
    q = q * z + 1.0 / 21.0;
    q = q * z + 1.0 / 19.0;
    q = q * z + 1.0 / 17.0;
    q = q * z + 1.0 / 15.0;
    q = q * z + 1.0 / 13.0;
    q = q * z + 1.0 / 11.0;
    q = q * z + 1.0 / 9.0;
    q = q * z + 1.0 / 7.0;
    q = q * z + 1.0 / 5.0;
    q = q * z + 1.0 / 3.0;
    /* log(m) = 2s + 2s z q = f - f^2/2 + ... ; 2s = f - s f computed as f - s*f to keep f exact */
    double logm = (f - s * f) + 2.0 * s * z * q;
    return e * LN2_HI + ((e * LN2_LO + extra) + logm);
}

/* log(x) for x > 0 (normal or subnormal double: the kernels pass converted float32, always normal);
 * -inf at 0, NaN below 0 or for NaN, inf at inf. */
static inline double klog(double x) {
    double y = klog_plus(x, 0.0);
    y = x == 0.0 ? -INFINITY : y;
    y = x < 0.0 ? NAN : y;
    y = x == INFINITY ? INFINITY : y;
    return x != x ? x : y;
}

/* log1p(x) for x >= -1: u = 1 + x rounded, c its exact rounding error (TwoSum), log(u) + c/u. */
static inline double klog1p(double x) {
    double u = 1.0 + x;
    double bv = u - 1.0, av = u - bv;
    double c = (1.0 - av) + (x - bv);
    double y = klog_plus(u, c / u);
    y = x == -1.0 ? -INFINITY : y;
    y = x < -1.0 ? NAN : y;
    y = x == INFINITY ? INFINITY : y;
    y = fabs(x) < 0x1p-54 ? x : y;  /* also keeps -0.0 */
    return x != x ? x : y;
}

static inline float write_grad(double g, double scale) {
    return scale == 0.0 ? 0.0f : (float)(g * scale);
}

/* ------------------------------------------------------------------------------ the kernels */

typedef void (*kernel_fn)(const void *t, const float *x, idx rows, idx k, double *value, float *grad,
                          const double *scale, double *work, const double *prm);

/* index of the first maximum (of the first NaN if any) of a row */
static inline idx row_top(const float *xr, idx k) {
    idx top = 0;
    float m = xr[0];
    for (idx j = 1; j < k && m == m; j++) {
        if (!(xr[j] <= m)) { m = xr[j]; top = j; }
    }
    return top;
}

/* e_j = exp(x_j - m) for every j but the top (0 there), into work; returns S = their sum. */
CLONES static double softmax_others(const float *xr, idx k, idx top, double *e) {
    double md = (double)xr[top], s = 0.0;
    SIMD_SUM(s)
    for (idx j = 0; j < k; j++) {
        double v = kexp((double)xr[j] - md);
        v = j == top ? 0.0 : v;
        e[j] = v;
        s += v;
    }
    return s;
}

/* Sparse categorical cross-entropy from logits (crossentropy._scce_hard, from_logits):
 * value = (m - x_y) + log1p(S), S = sum of exp(x_j - m) over j other than the first maximum (the
 * value is log1p(S) alone when the label is the top, which is also the limit for an infinite top);
 * gradient = softmax - onehot, softmax_j = e_j/(1+S), softmax_top = 1/(1+S), and -S/(1+S) when the
 * label is the top. Labels were checked; a row with a label outside [0, k) (ignored) gets any class. */
static void scce_logits(const void *t, const float *x, idx rows, idx k, double *value, float *grad,
                        const double *scale, double *e, const double *prm) {
    const int64_t *label = t;
    for (idx r = 0; r < rows; r++) {
        const float *xr = x + r * k;
        idx top = row_top(xr, k);
        int64_t y = label[r];
        y = (y < 0 || y >= k) ? top : y;
        double s = softmax_others(xr, k, top, e);
        double tail = klog1p(s);
        value[r] = y == top ? tail : ((double)xr[top] - (double)xr[y]) + tail;
        if (grad) {
            double sc = scale ? scale[r] : 1.0, inv = 1.0 / (1.0 + s);
            float *gr = grad + r * k;
            for (idx j = 0; j < k; j++) gr[j] = write_grad(e[j] * inv, sc);
            if (y != top) gr[y] = write_grad(e[y] * inv - 1.0, sc);
            gr[top] = write_grad(y == top ? -s * inv : inv, sc);
        }
    }
}

/* Categorical cross-entropy from logits with soft targets (crossentropy._from_logits):
 * value = sum_j t_j (m - x_j) + T log1p(S), T = sum t, every term non-negative;
 * gradient = T e_j/(1+S) - t_j, and (sum_{j != top} t_j - t_top S)/(1+S) at the top. */
static void cce_logits(const void *tv, const float *x, idx rows, idx k, double *value, float *grad,
                       const double *scale, double *e, const double *prm) {
    const float *t = tv;
    for (idx r = 0; r < rows; r++) {
        const float *xr = x + r * k, *tr = t + r * k;
        idx top = row_top(xr, k);
        double s = softmax_others(xr, k, top, e);
        double md = (double)xr[top], lin = 0.0, total = 0.0;
        SIMD_SUM2(lin, total)
        for (idx j = 0; j < k; j++) {
            double tj = (double)tr[j], d = md - (double)xr[j];
            lin += tj == 0.0 ? 0.0 : tj * d;
            total += tj;
        }
        double tail = klog1p(s);
        value[r] = lin + (total == 0.0 ? 0.0 : total * tail);
        if (grad) {
            double sc = scale ? scale[r] : 1.0, inv = 1.0 / (1.0 + s), ttop = (double)tr[top];
            float *gr = grad + r * k;
            for (idx j = 0; j < k; j++) gr[j] = write_grad(total * (e[j] * inv) - (double)tr[j], sc);
            gr[top] = write_grad(((total - ttop) - ttop * s) * inv, sc);
        }
    }
}

/* Binary cross-entropy from logits (crossentropy._bce, from_logits; prm[0] = label smoothing ls):
 * value = mean_j t_j softplus(-x_j) + q_j softplus(x_j), t = y(1-ls) + ls/2, q = (1-y)(1-ls) + ls/2,
 * softplus(+-x) = max(+-x, 0) + log1p(exp(-|x|));
 * gradient = ((1-y) sigmoid(x) - y sigmoid(-x) + ls (y - 1/2)) / k. */
CLONES static void bce_logits(const void *tv, const float *x, idx rows, idx k, double *value,
                              float *grad, const double *scale, double *work, const double *prm) {
    const float *y = tv;
    double ls = prm[0], inv_k = 1.0 / (double)k;
    for (idx r = 0; r < rows; r++) {
        const float *xr = x + r * k, *yr = y + r * k;
        double sum = 0.0, sc = scale ? scale[r] : 1.0;
        float *gr = grad ? grad + r * k : NULL;
        SIMD_SUM(sum)
        for (idx j = 0; j < k; j++) {
            double xv = (double)xr[j], yv = (double)yr[j];
            double tp = ls != 0.0 ? yv * (1.0 - ls) + 0.5 * ls : yv;
            double tq = ls != 0.0 ? (1.0 - yv) * (1.0 - ls) + 0.5 * ls : 1.0 - yv;
            double e = kexp(-fabs(xv)), tail = klog1p(e);
            double sp_pos = (xv > 0.0 ? xv : 0.0) + tail, sp_neg = (xv < 0.0 ? -xv : 0.0) + tail;
            sum += (tp == 0.0 ? 0.0 : tp * sp_neg) + (tq == 0.0 ? 0.0 : tq * sp_pos);
        }
        value[r] = sum * inv_k;
        if (gr) {
            for (idx j = 0; j < k; j++) {
                double xv = (double)xr[j], yv = (double)yr[j];
                double e = kexp(-fabs(xv)), big = 1.0 / (1.0 + e), small = e * big;
                double sig_pos = xv >= 0.0 ? big : small, sig_neg = xv >= 0.0 ? small : big;
                double g = ((1.0 - yv) == 0.0 ? 0.0 : (1.0 - yv) * sig_pos) - (yv == 0.0 ? 0.0 : yv * sig_neg);
                g = ls != 0.0 ? g + ls * (yv - 0.5) : g;
                g = xv != xv ? xv : g;
                gr[j] = write_grad(g * inv_k, sc);
            }
        }
    }
}

/* Binary cross-entropy from probabilities (crossentropy._bce; prm[0] = ls):
 * value = mean_j -t_j log p_j - q_j log(1 - p_j), 1 - p exact in double for a float32 p;
 * gradient = (p - t) / (p (1-p)) / k with p - t = (p - y) + ls (y - 1/2), and the limits 1/(1-p)
 * (y = 0) and -1/p (y = 1) without smoothing. */
CLONES static void bce_probs(const void *tv, const float *x, idx rows, idx k, double *value,
                             float *grad, const double *scale, double *work, const double *prm) {
    const float *y = tv;
    double ls = prm[0], inv_k = 1.0 / (double)k;
    for (idx r = 0; r < rows; r++) {
        const float *pr = x + r * k, *yr = y + r * k;
        double sum = 0.0, sc = scale ? scale[r] : 1.0;
        SIMD_SUM(sum)
        for (idx j = 0; j < k; j++) {
            double p = (double)pr[j], yv = (double)yr[j];
            double tp = ls != 0.0 ? yv * (1.0 - ls) + 0.5 * ls : yv;
            double tq = ls != 0.0 ? (1.0 - yv) * (1.0 - ls) + 0.5 * ls : 1.0 - yv;
            double lp = klog(p), lq = klog(1.0 - p);
            sum += (tp == 0.0 ? 0.0 : -tp * lp) + (tq == 0.0 ? 0.0 : -tq * lq);
        }
        value[r] = sum * inv_k;
        if (grad) {
            float *gr = grad + r * k;
            for (idx j = 0; j < k; j++) {
                double p = (double)pr[j], yv = (double)yr[j];
                double diff = ls != 0.0 ? (p - yv) + ls * (yv - 0.5) : p - yv;
                double g = diff / (p * (1.0 - p));
                if (ls == 0.0) g = yv == 0.0 ? 1.0 / (1.0 - p) : (yv == 1.0 ? -1.0 / p : g);
                gr[j] = write_grad(g * inv_k, sc);
            }
        }
    }
}

/* Mean squared error: value = mean (p - t)^2, gradient 2 (p - t)/k; p - t exact in double. */
CLONES static void mse(const void *tv, const float *x, idx rows, idx k, double *value, float *grad,
                       const double *scale, double *work, const double *prm) {
    const float *t = tv;
    double inv_k = 1.0 / (double)k;
    for (idx r = 0; r < rows; r++) {
        const float *pr = x + r * k, *tr = t + r * k;
        double sum = 0.0, sc = scale ? scale[r] : 1.0;
        SIMD_SUM(sum)
        for (idx j = 0; j < k; j++) {
            double d = (double)pr[j] - (double)tr[j];
            sum += d * d;
        }
        value[r] = sum * inv_k;
        if (grad) {
            float *gr = grad + r * k;
            double c = 2.0 * inv_k;
            for (idx j = 0; j < k; j++) gr[j] = write_grad(c * ((double)pr[j] - (double)tr[j]), sc);
        }
    }
}

/* Mean absolute error: value = mean |p - t|, gradient sign(p - t)/k (0 at zero error, NaN kept). */
CLONES static void mae(const void *tv, const float *x, idx rows, idx k, double *value, float *grad,
                       const double *scale, double *work, const double *prm) {
    const float *t = tv;
    double inv_k = 1.0 / (double)k;
    for (idx r = 0; r < rows; r++) {
        const float *pr = x + r * k, *tr = t + r * k;
        double sum = 0.0, sc = scale ? scale[r] : 1.0;
        SIMD_SUM(sum)
        for (idx j = 0; j < k; j++) sum += fabs((double)pr[j] - (double)tr[j]);
        value[r] = sum * inv_k;
        if (grad) {
            float *gr = grad + r * k;
            for (idx j = 0; j < k; j++) {
                double d = (double)pr[j] - (double)tr[j];
                double sg = d > 0.0 ? 1.0 : (d < 0.0 ? -1.0 : (d == 0.0 ? 0.0 : d));
                gr[j] = write_grad(sg * inv_k, sc);
            }
        }
    }
}

/* KL divergence of probabilities (divergence._kl_terms_widened): t log(t/p) per element, with
 * log1p((t - p)/p) where t/p is within [1/2, 3/2] (t - p exact in double) and log(t/p) elsewhere;
 * 0 where t = 0, inf where p = 0 < t. Gradient -t/p (0 where t = 0). */
CLONES static void kl(const void *tv, const float *x, idx rows, idx k, double *value, float *grad,
                      const double *scale, double *work, const double *prm) {
    const float *t = tv;
    for (idx r = 0; r < rows; r++) {
        const float *pr = x + r * k, *tr = t + r * k;
        double sum = 0.0, sc = scale ? scale[r] : 1.0;
        SIMD_SUM(sum)
        for (idx j = 0; j < k; j++) {
            double p = (double)pr[j], tj = (double)tr[j];
            double sp = p > 0.0 ? p : 1.0;
            double ratio = tj / sp;
            int near = fabs(ratio - 1.0) <= 0.5;
            double lr = near ? klog1p((tj - p) / sp) : klog(near ? 1.0 : ratio);
            double term = tj == 0.0 ? 0.0 : tj * lr;
            term = (p == 0.0 && tj > 0.0) ? INFINITY : term;
            sum += term;
        }
        value[r] = sum;
        if (grad) {
            float *gr = grad + r * k;
            for (idx j = 0; j < k; j++) {
                double tj = (double)tr[j];
                gr[j] = write_grad(tj != 0.0 ? -tj / (double)pr[j] : 0.0, sc);
            }
        }
    }
}

/* Hinge (margin._hinge) with labels already -1/+1: value = mean max(0, 1 - t f); gradient -t/k
 * inside the margin, -t/(2k) on it, 0 outside, NaN where the margin is NaN. */
CLONES static void hinge(const void *tv, const float *x, idx rows, idx k, double *value, float *grad,
                         const double *scale, double *work, const double *prm) {
    const float *t = tv;
    double inv_k = 1.0 / (double)k;
    for (idx r = 0; r < rows; r++) {
        const float *fr = x + r * k, *tr = t + r * k;
        double sum = 0.0, sc = scale ? scale[r] : 1.0;
        SIMD_SUM(sum)
        for (idx j = 0; j < k; j++) {
            double mg = 1.0 - (double)tr[j] * (double)fr[j];
            sum += mg > 0.0 ? mg : (mg != mg ? mg : 0.0);
        }
        value[r] = sum * inv_k;
        if (grad) {
            float *gr = grad + r * k;
            for (idx j = 0; j < k; j++) {
                double tj = (double)tr[j], mg = 1.0 - tj * (double)fr[j];
                double g = mg > 0.0 ? -tj : (mg == 0.0 ? -0.5 * tj : (mg != mg ? mg : 0.0));
                gr[j] = write_grad(g * inv_k, sc);
            }
        }
    }
}

/* Sums of a float32 row in double: the total and the sum of all but the top element (summed directly,
 * so that total - x_top never cancels). */
CLONES static void row_sums(const float *v, idx k, idx top, double *total, double *others) {
    double a = 0.0, b = 0.0;
    SIMD_SUM2(a, b)
    for (idx j = 0; j < k; j++) {
        double x = (double)v[j];
        a += x;
        b += j == top ? 0.0 : x;
    }
    *total = a;
    *others = b;
}

/* Categorical cross-entropy of renormalised probabilities (crossentropy._from_probabilities):
 * value = sum_j t_j log1p(R_j / p_j), R_j = P - p_j (the others summed directly at the top), 0 where
 * t_j = 0; gradient ((T - t_i) p_i - t_i R_i) / (p_i P) with T - t_i likewise, T/P where t_i = 0. */
static void cce_probs(const void *tv, const float *x, idx rows, idx k, double *value, float *grad,
                      const double *scale, double *work, const double *prm) {
    const float *t = tv;
    for (idx r = 0; r < rows; r++) {
        const float *pr = x + r * k, *tr = t + r * k;
        idx top = row_top(pr, k), ttop = row_top(tr, k);
        double big, others_top, tt, t_others_top;
        row_sums(pr, k, top, &big, &others_top);
        row_sums(tr, k, ttop, &tt, &t_others_top);
        double sum = 0.0;
        for (idx j = 0; j < k; j++) {
            double p = (double)pr[j], tj = (double)tr[j];
            double rj = j == top ? others_top : big - p;
            double nll = klog1p(rj / p);
            sum += tj == 0.0 ? 0.0 : tj * nll;
        }
        value[r] = sum;
        if (grad) {
            double sc = scale ? scale[r] : 1.0;
            float *gr = grad + r * k;
            for (idx j = 0; j < k; j++) {
                double p = (double)pr[j], tj = (double)tr[j];
                double rj = j == top ? others_top : big - p;
                double tr_j = j == ttop ? t_others_top : tt - tj;
                double g = tj == 0.0 ? tt / big : ((tr_j * p - tj * rj) / p) / big;
                gr[j] = write_grad(g, sc);
            }
        }
    }
}

/* Sparse categorical cross-entropy of renormalised probabilities (crossentropy._scce_hard): value
 * log1p(R_y / p_y), R_y = P - p_y (the others summed directly when y is the top); gradient 1/P, and
 * -(R_y / p_y) / P at the label. */
static void scce_probs(const void *tv, const float *x, idx rows, idx k, double *value, float *grad,
                       const double *scale, double *work, const double *prm) {
    const int64_t *label = tv;
    for (idx r = 0; r < rows; r++) {
        const float *pr = x + r * k;
        idx top = row_top(pr, k);
        int64_t y = label[r];
        y = (y < 0 || y >= k) ? top : y;
        double big, others_top;
        row_sums(pr, k, top, &big, &others_top);
        double py = (double)pr[y], ry = y == top ? others_top : big - py;
        value[r] = klog1p(ry / py);
        if (grad) {
            double sc = scale ? scale[r] : 1.0, inv = 1.0 / big;
            float *gr = grad + r * k;
            for (idx j = 0; j < k; j++) gr[j] = write_grad(inv, sc);
            gr[y] = write_grad(-(ry / py) / big, sc);
        }
    }
}

static const kernel_fn KERNELS[] = {scce_logits, cce_logits, bce_logits, bce_probs, mse, mae, kl, hinge,
                                    cce_probs, scce_probs};
#define N_KERNELS ((int)(sizeof(KERNELS) / sizeof(KERNELS[0])))

/* run(kernel id, y_true buffer, y_pred float32 buffer, rows, k, value float64 out, grad float32 out or
 * None, scale float64 or None, params float64 buffer) */
static PyObject *py_run(PyObject *self, PyObject *args) {
    int id;
    Py_buffer t, x, val, prm, gr = {0}, sc = {0};
    PyObject *grobj, *scobj;
    idx rows, k;
    if (!PyArg_ParseTuple(args, "iy*y*nnw*OOy*", &id, &t, &x, &rows, &k, &val, &grobj, &scobj, &prm))
        return NULL;
    float *g = NULL;
    const double *s = NULL;
    double *work = NULL;
    PyObject *result = NULL;
    if (id < 0 || id >= N_KERNELS) { PyErr_SetString(PyExc_ValueError, "unknown kernel"); goto done; }
    if (grobj != Py_None) {
        if (PyObject_GetBuffer(grobj, &gr, PyBUF_WRITABLE) < 0) goto done;
        g = gr.buf;
    }
    if (scobj != Py_None) {
        if (PyObject_GetBuffer(scobj, &sc, PyBUF_SIMPLE) < 0) goto done;
        s = sc.buf;
    }
    work = PyMem_RawMalloc((size_t)(k > 0 ? k : 1) * sizeof(double));
    if (!work) { PyErr_NoMemory(); goto done; }
    Py_BEGIN_ALLOW_THREADS
    KERNELS[id](t.buf, x.buf, rows, k, val.buf, g, s, work, prm.buf);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyMem_RawFree(work);
    PyBuffer_Release(&t); PyBuffer_Release(&x); PyBuffer_Release(&val); PyBuffer_Release(&prm);
    if (gr.obj) PyBuffer_Release(&gr);
    if (sc.obj) PyBuffer_Release(&sc);
    return result;
}

/* Vectorised math for the tests: out[i] = f(in[i]) in double. */
CLONES static void map_exp(const double *a, double *o, idx n) { for (idx i = 0; i < n; i++) o[i] = kexp(a[i]); }
CLONES static void map_log(const double *a, double *o, idx n) { for (idx i = 0; i < n; i++) o[i] = klog(a[i]); }
CLONES static void map_log1p(const double *a, double *o, idx n) { for (idx i = 0; i < n; i++) o[i] = klog1p(a[i]); }

static PyObject *py_map(PyObject *self, PyObject *args) {
    Py_buffer a, o;
    int which;
    if (!PyArg_ParseTuple(args, "iy*w*", &which, &a, &o)) return NULL;
    idx n = a.len / 8;
    Py_BEGIN_ALLOW_THREADS
    if (which == 0) map_exp(a.buf, o.buf, n);
    else if (which == 1) map_log(a.buf, o.buf, n);
    else map_log1p(a.buf, o.buf, n);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&a); PyBuffer_Release(&o);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"run", py_run, METH_VARARGS, "run a loss kernel on float32 rows (see the module comment)"},
    {"map", py_map, METH_VARARGS, "exp (0), log (1), log1p (2) of a float64 buffer"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cpu", NULL, -1, methods};

PyMODINIT_FUNC PyInit__cpu(void) { return PyModule_Create(&module); }
