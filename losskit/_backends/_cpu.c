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
 * The catalog kernels (huber ... multi_margin, below the core ones) port the generic kernels' float64
 * formulas line by line, branch for branch: where those use exact pairs (TwoSum margins, compensated
 * row sums) so do these; expm1 and tanh come from the same polynomial (2^-48 relative, tested), and
 * u ** g = exp(g log u) is within |g log u| 2^-52 relative, below 2^-42 wherever it is neither 0 nor
 * inf. tests/test_backend_cpu.py compares each with its generic kernel (weights, reductions, NaN, inf).
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

/* The math below must be inlined into each (cloned) row loop for the loops to vectorise; with many
 * callers GCC's inliner would otherwise stop at some point and call them one element at a time. */
#if defined(__GNUC__)
#define KINLINE static inline __attribute__((always_inline))
#else
#define KINLINE static inline
#endif

/* Sums over a row may be vectorised (summed in a few interleaved partial sums): every such sum is of
 * double terms for a float32 result, so its order changes nothing at float32 precision that matters
 * here (n * 2^-53 relative for n terms). */
#define PRAGMA(x) _Pragma(#x)
#define SIMD_SUM(a) PRAGMA(omp simd reduction(+ : a))
#define SIMD_SUM2(a, b) PRAGMA(omp simd reduction(+ : a, b))

/* ------------------------------------------------------------------------------ double math */

/* bit casts through a union (C99 type punning): unlike memcpy they take no address, which in an
 * `omp simd` loop would make the variable a per-lane array in memory and stop the vectoriser */
typedef union { double d; uint64_t u; } bits64;
KINLINE uint64_t bits_of(double x) { bits64 v; v.d = x; return v.u; }
KINLINE double from_bits(uint64_t u) { bits64 v; v.u = u; return v.d; }

/* 2^k for a whole-valued double k in [-1022, 1023]: (k + 1023) placed in the exponent field. */
KINLINE double pow2(double k) {
    return from_bits(bits_of(k + (1023.0 + 4503599627370496.0)) << 52);
}

/* exp(r) - 1 for |r| <= 0.35 by its Taylor series to r^13 (truncation below 2^-58 at |r| = 0.347). */
KINLINE double expm1_poly(double r) {
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
    return p * r * r + r;
}

/* exp(x), relative error below 2^-51 for x in [-745, 709.7]; 0 below, inf above, NaN kept.
 * x = k ln2 + r with |r| <= ln2/2 (Cody-Waite, ln2 in two parts so k*LN2_HI is exact for |k| < 2^11),
 * exp(r) by its Taylor series to r^13 (truncation below 2^-58 at |r| = 0.347), 2^k in two factors
 * so that subnormal results are formed correctly. */
KINLINE double kexp(double x) {
    const double LOG2E = 1.4426950408889634, LN2_HI = 0.6931471803691238,
                 LN2_LO = 1.9082149292705877e-10;
    double xc = x < -746.0 ? -746.0 : (x > 710.0 ? 710.0 : x);
    double k = nearbyint(xc * LOG2E);
    double r = (xc - k * LN2_HI) - k * LN2_LO;
    double p = expm1_poly(r);
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
KINLINE double klog_plus(double u, double extra) {
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
KINLINE double klog(double x) {
    double y = klog_plus(x, 0.0);
    y = x == 0.0 ? -INFINITY : y;
    y = x < 0.0 ? NAN : y;
    y = x == INFINITY ? INFINITY : y;
    return x != x ? x : y;
}

/* log1p(x) for x >= -1: u = 1 + x rounded, c its exact rounding error (TwoSum), log(u) + c/u. */
KINLINE double klog1p(double x) {
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

KINLINE float write_grad(double g, double scale) {
    return scale == 0.0 ? 0.0f : (float)(g * scale);
}

/* ------------------------------------------------------------------ more double math (catalog) */


/* expm1(x): the polynomial for |x| <= 0.34, exp(x) - 1 beyond (which cancels by at most a factor
 * 2.5 there: relative error below 2^-49). -1 at -inf, inf at inf, NaN kept. */
KINLINE double kexpm1(double x) {
    int small = fabs(x) <= 0.34;
    double near = expm1_poly(small ? x : 0.0);
    return small ? near : kexp(x) - 1.0;
}

/* tanh(x) = -expm1(-2|x|) / (2 + expm1(-2|x|)) with the sign of x; +-1 at +-inf, NaN kept. */
KINLINE double ktanh(double x) {
    double em = kexpm1(-2.0 * fabs(x));
    double th = -em / (2.0 + em);
    return x < 0.0 ? -th : th;
}

/* log(x) also for subnormal doubles (scaled by 2^60 first); otherwise as klog. */
KINLINE double klog_sub(double x) {
    int sub = x > 0.0 && x < 0x1p-1022;
    double y = klog(sub ? x * 0x1p60 : x);
    return sub ? y - 60.0 * 0.6931471803691238 - 60.0 * 1.9082149292705877e-10 : y;
}

/* u ** g for u >= 0 (NumPy's pow): 1 for g = 0 (also for NaN u), u and u*u for g = 1 and 2, else
 * exp(g log u): its relative error is about |g log u| 2^-53, below 2^-43 wherever the result is
 * neither 0 nor inf; 0 ** g = 0 (g > 0) or inf (g < 0). */
KINLINE double kpow(double u, double g) {
    /* branches on the loop-invariant g: GCC unswitches the row loops, so gamma = 2 costs a product */
    if (g == 0.0) return 1.0;
    if (g == 1.0) return u;
    if (g == 2.0) return u * u;
    double y = kexp(g * klog_sub(u));
    return u == 0.0 ? (g > 0.0 ? 0.0 : INFINITY) : y;
}

/* Knuth's TwoSum: s + e = a + b exactly (s the rounded sum). */
KINLINE double two_sum(double a, double b, double *e) {
    double s = a + b, bb = s - a;
    *e = (a - (s - bb)) + (b - bb);
    return s;
}

/* sign(d), 0 for zero (of zero's sign) and NaN kept; written so that GCC if-converts it */
KINLINE double sign_of(double d) { return d > 0.0 ? 1.0 : (d < 0.0 ? -1.0 : d); }
KINLINE double max0(double m) { return m > 0.0 ? m : (m != m ? m : 0.0); }  /* NaN kept */
/* derivative of max(0, m): 1, 0, and 1/2 exactly at m = 0 (0 for NaN, as the generic where chain) */
KINLINE double kink(double m) { return m > 0.0 ? 1.0 : (m == 0.0 ? 0.5 : 0.0); }
KINLINE double xmul(double c, double v) { return c == 0.0 ? 0.0 : c * v; }

/* _numerics.accurate_sum: v[0..k) plus a and b, summed with TwoSum in 8 interleaved lanes (the
 * error terms summed apart and added once), the plain sum where that is not finite. */
CLONES static double acc_sum(const double *v, idx k, double a, double b) {
    double hi[8] = {0}, lo[8] = {0};
    idx j = 0;
    for (; j + 8 <= k; j += 8) {
        for (int l = 0; l < 8; l++) {
            double e, s = two_sum(hi[l], v[j + l], &e);
            hi[l] = s;
            lo[l] += e;
        }
    }
    double e, s = two_sum(a, b, &e), c = e;
    for (int l = 0; l < 8; l++) {
        s = two_sum(s, hi[l], &e);
        c += e + lo[l];
    }
    for (; j < k; j++) {
        s = two_sum(s, v[j], &e);
        c += e;
    }
    return s - s == 0.0 ? s + c : s;
}

/* index of the first maximum (of the first NaN if any) of a double row */
static inline idx row_top_d(const double *v, idx k) {
    idx top = 0;
    double m = v[0];
    for (idx j = 1; j < k && m == m; j++) {
        if (!(v[j] <= m)) { m = v[j]; top = j; }
    }
    return top;
}

/* _numerics.sum_others on a double row: total, the top index and the sum of the others at the top */
CLONES static double sums_d(const double *v, idx k, idx *top, double *others_top) {
    idx tp = row_top_d(v, k);
    double a = 0.0, b = 0.0;
    SIMD_SUM2(a, b)
    for (idx j = 0; j < k; j++) {
        a += v[j];
        b += j == tp ? 0.0 : v[j];
    }
    *top = tp;
    *others_top = b;
    return a;
}

/* any NaN in a float32 row */
CLONES static int row_has_nan(const float *v, idx k) {
    int n = 0;
    SIMD_SUM(n)
    for (idx j = 0; j < k; j++) n += v[j] != v[j];
    return n != 0;
}

/* (log p, log(1 - p)) as _numerics.log_both: the log of the smaller of p, 1 - p and log1p(-it). */
KINLINE double log_both(double p, double *log_q) {
    int upper = p > 0.5;
    double q = upper ? 1.0 - p : p;
    double of_small = klog_sub(q), of_large = klog1p(-q);  /* q is subnormal only in float64 */
    *log_q = upper ? of_small : of_large;
    return upper ? of_large : of_small;
}


/* ------------------------------------------------------------------------ elementwise losses */

/* A loss whose per-sample value is the mean over its row of one term per element is written as
 * AT(pred, true, prm, grad_out) -> the term (its derivative into *grad_out unless that is NULL) and
 * driven by ELEMENTWISE_KERNEL. Rows are taken in blocks of whole rows of about BLOCK elements; the
 * terms of a block come from one flat vectorised loop whatever the row length, so (N, 1) and (N, 10)
 * inputs run at the per-element speed of long rows; then each row is summed.
 *
 * The float64 instances (name_d) read float64 input and write a float64 gradient; they exist for the
 * terms that stay within a few float64 ulps when their inputs' difference is rounded once (said at
 * each term). Their row sums are compensated (acc_sum: as accurate as a double-length sum); a row
 * whose value overflows or is NaN is recomputed by the generic kernel (losses/_core.py), which also
 * owns the scaled means that keep e.g. mean(|d|) finite where one |d| overflows. */
#define BLOCK 512

KINLINE void row_means(const double *term, idx nr, idx k, double inv_k, double *value, int wide) {
    if (k == 1) {
        for (idx r = 0; r < nr; r++) value[r] = term[r];
        return;
    }
    for (idx r = 0; r < nr; r++) {
        const double *tr = term + r * k;
        double s = 0.0;
        if (wide) {
            s = acc_sum(tr, k, 0.0, 0.0);
        } else {
            SIMD_SUM(s)
            for (idx j = 0; j < k; j++) s += tr[j];
        }
        value[r] = s * inv_k;
    }
}

/* gradient rows out[r, j] = scale[r] * g[r, j] / k (scale NULL: 1; a row of scale 0 gets 0) */
#define WRITE_GRADS(NAME, G)                                                                        \
    KINLINE void NAME(G *out, const double *g, idx nr, idx k, double inv_k, const double *scale) {  \
        idx n = nr * k;                                                                             \
        if (!scale) {                                                                               \
            PRAGMA(omp simd)                                                                        \
            for (idx i = 0; i < n; i++) out[i] = (G)(g[i] * inv_k);                                 \
        } else if (k == 1) {                                                                        \
            PRAGMA(omp simd)                                                                        \
            for (idx i = 0; i < n; i++) out[i] = scale[i] == 0.0 ? (G)0 : (G)((g[i] * inv_k) * scale[i]); \
        } else {                                                                                    \
            for (idx r = 0; r < nr; r++) {                                                          \
                double sc = scale[r];                                                               \
                PRAGMA(omp simd)                                                                    \
                for (idx j = 0; j < k; j++)                                                         \
                    out[r * k + j] = sc == 0.0 ? (G)0 : (G)((g[r * k + j] * inv_k) * sc);           \
            }                                                                                       \
        }                                                                                           \
    }
WRITE_GRADS(write_grads_f, float)
WRITE_GRADS(write_grads_d, double)

/* NAME over T rows (float or double) with the gradient written as G through WRITE; WIDE: float64. The
 * work buffer holds 2 max(k, BLOCK) doubles. */
#define ELEMENTWISE_KERNEL_T(NAME, AT, T, WRITE, WIDE)                                              \
    CLONES static void NAME(const void *tv, const T *x, idx rows, idx k, double *value, T *grad,    \
                            const double *scale, double *work, const double *prm) {                \
        const T *yt = tv;                                                                           \
        double inv_k = 1.0 / (double)k, *term = work, *g = work + (k > BLOCK ? k : BLOCK);          \
        idx rb = k >= BLOCK ? 1 : BLOCK / k;                                                        \
        for (idx r0 = 0; r0 < rows; r0 += rb) {                                                     \
            idx nr = rows - r0 < rb ? rows - r0 : rb, n = nr * k;                                   \
            const T *xb = x + r0 * k, *yb = yt + r0 * k;                                            \
            if (grad) {                                                                             \
                PRAGMA(omp simd)                                                                    \
                for (idx i = 0; i < n; i++) term[i] = AT((double)xb[i], (double)yb[i], prm, g + i); \
                WRITE(grad + r0 * k, g, nr, k, inv_k, scale ? scale + r0 : NULL);                   \
            } else {                                                                                \
                PRAGMA(omp simd)                                                                    \
                for (idx i = 0; i < n; i++) term[i] = AT((double)xb[i], (double)yb[i], prm, NULL);  \
            }                                                                                       \
            row_means(term, nr, k, inv_k, value + r0, WIDE);                                        \
        }                                                                                           \
    }
#define ELEMENTWISE_KERNEL(NAME, AT) ELEMENTWISE_KERNEL_T(NAME, AT, float, write_grads_f, 0)
#define ELEMENTWISE_KERNEL_D(NAME, AT) ELEMENTWISE_KERNEL_T(NAME, AT, double, write_grads_d, 1)

/* Binary cross-entropy from logits (crossentropy._bce, from_logits; prm[0] = label smoothing ls):
 * term t softplus(-x) + q softplus(x), t = y(1-ls) + ls/2, q = (1-y)(1-ls) + ls/2,
 * softplus(+-x) = max(+-x, 0) + log1p(exp(-|x|)): two non-negative terms, also for float64 input;
 * derivative (1-y) sigmoid(x) - y sigmoid(-x) + ls (y - 1/2) (one exact term for a hard label). */
/* the term and its derivative from e = exp(-|x|) and tail = log1p(e), however those were evaluated
 * (bce_logits_at: double; bce_logits_fast: float32 for the value) */
KINLINE double bce_logits_from(double xv, double yv, const double *prm, double e, double tail,
                               double *grad_out) {
    double ls = prm[0];
    double tp = ls != 0.0 ? yv * (1.0 - ls) + 0.5 * ls : yv;
    double tq = ls != 0.0 ? (1.0 - yv) * (1.0 - ls) + 0.5 * ls : 1.0 - yv;
    double sp_pos = (xv > 0.0 ? xv : 0.0) + tail, sp_neg = (xv < 0.0 ? -xv : 0.0) + tail;
    if (grad_out) {
        double big = 1.0 / (1.0 + e), small = e * big;
        double sig_pos = xv >= 0.0 ? big : small, sig_neg = xv >= 0.0 ? small : big;
        double g = xmul(1.0 - yv, sig_pos) - xmul(yv, sig_neg);
        g = ls != 0.0 ? g + ls * (yv - 0.5) : g;
        *grad_out = xv != xv ? xv : g;
    }
    return xmul(tp, sp_neg) + xmul(tq, sp_pos);
}

KINLINE double bce_logits_at(double xv, double yv, const double *prm, double *grad_out) {
    double e = kexp(-fabs(xv));
    return bce_logits_from(xv, yv, prm, e, klog1p(e), grad_out);
}

/* Binary cross-entropy from probabilities (crossentropy._bce; prm[0] = ls): term -t log p - q log(1-p)
 * with both logarithms from log_both (log1p of the smaller of p, 1 - p: exact for float64 p too);
 * derivative (p - t)/(p (1-p)) with p - t = (p - y) + ls (y - 1/2), and the limits 1/(1-p) (y = 0)
 * and -1/p (y = 1) without smoothing. */
KINLINE double bce_probs_at(double p, double yv, const double *prm, double *grad_out) {
    double ls = prm[0];
    double tp = ls != 0.0 ? yv * (1.0 - ls) + 0.5 * ls : yv;
    double tq = ls != 0.0 ? (1.0 - yv) * (1.0 - ls) + 0.5 * ls : 1.0 - yv;
    double lq, lp = log_both(p, &lq);
    if (grad_out) {
        double diff = ls != 0.0 ? (p - yv) + ls * (yv - 0.5) : p - yv;
        double g = diff / (p * (1.0 - p));
        double limit = yv == 0.0 ? 1.0 / (1.0 - p) : (yv == 1.0 ? -1.0 / p : g);
        *grad_out = ls == 0.0 ? limit : g;
    }
    return xmul(tp, -lp) + xmul(tq, -lq);
}

/* Mean squared error: term (p - t)^2, derivative 2 (p - t); p - t exact for float32 input, rounded
 * once for float64 (1.5 ulp in the square). */
KINLINE double mse_at(double p, double t, const double *prm, double *grad_out) {
    double d = p - t;
    if (grad_out) *grad_out = 2.0 * d;
    return d * d;
}

/* Mean absolute error: term |p - t|, derivative sign(p - t) (0 at zero error, NaN kept). */
KINLINE double mae_at(double p, double t, const double *prm, double *grad_out) {
    double d = p - t;
    if (grad_out) *grad_out = sign_of(d);
    return fabs(d);
}

/* Hinge (margin._hinge) with labels already -1/+1: term max(0, 1 - t f) (1 - t f exact for float32
 * input, one rounding for float64); derivative -t inside the margin, -t/2 on it, 0 outside, NaN where
 * the margin is NaN. */
KINLINE double hinge_at(double f, double t, const double *prm, double *grad_out) {
    double mg = 1.0 - t * f;
    if (grad_out) *grad_out = mg > 0.0 ? -t : (mg == 0.0 ? -0.5 * t : (mg != mg ? mg : 0.0));
    return max0(mg);
}

/* Huber (regression._huber; prm[0] = delta): term d^2/2 for |d| <= delta, else delta (|d| - delta/2)
 * (|d| - delta/2 >= delta/2 there: no cancellation), d = p - t; derivative clip(d, -delta, delta). */
KINLINE double huber_at(double p, double t, const double *prm, double *grad_out) {
    double delta = prm[0], d = p - t, a = fabs(d);
    if (grad_out) *grad_out = a <= delta ? d : delta * sign_of(d);
    return a <= delta ? 0.5 * d * d : delta * (a - 0.5 * delta);
}

/* Smooth L1 (regression._smooth_l1; prm[0] = beta): term d (d/beta)/2 for |d| < beta, else
 * |d| - beta/2; derivative d/beta or sign(d) (beta = 0: the absolute error). */
KINLINE double smooth_l1_at(double p, double t, const double *prm, double *grad_out) {
    double beta = prm[0], b = beta > 0.0 ? beta : 1.0, d = p - t, a = fabs(d);
    if (grad_out) *grad_out = a < beta ? d / b : sign_of(d);
    return a < beta ? 0.5 * d * (d / b) : a - 0.5 * beta;
}

/* Log-cosh (regression._log_cosh): term log cosh(d); |d| <= 2: log1p(cosh d - 1) with
 * cosh d - 1 = 2 sinh(d/2)^2 = em^2 / (2 (1 + em)), em = expm1(|d|) (no cancellation);
 * beyond: (|d| - log 2) + log1p(exp(-2|d|)). Derivative tanh(d). float32 input only (expm1 and tanh
 * are good to a few double ulps, not to float64's 8). */
KINLINE double log_cosh_at(double p, double t, const double *prm, double *grad_out) {
    const double LOG2 = 0.6931471805599453;
    double d = p - t, a = fabs(d);
    int small = a <= 2.0;
    double em = kexpm1(small ? a : 0.0);
    double near = klog1p(em * em / (2.0 * (1.0 + em)));
    double far = (a - LOG2) + klog1p(kexp(-2.0 * a));
    if (grad_out) *grad_out = ktanh(d);
    return small ? near : far;
}

/* Mean absolute percentage error (regression._mape; targets checked non-zero): term 100 |d|/|t|,
 * derivative 100 sign(d)/|t|. */
KINLINE double mape_at(double p, double t, const double *prm, double *grad_out) {
    double at = fabs(t);
    if (grad_out) *grad_out = 100.0 * (sign_of(p - t) / at);
    return 100.0 * (fabs(p - t) / at);
}

/* log((1 + p)/(1 + t)) as regression._msle: log1p(u), u = (p - t)/(1 + t), for u in [-1/2, 1];
 * else log(r), r = (1 + p)/(1 + t), or log1p(p) - log1p(t) where r is beyond 1e+-300. */
KINLINE double msle_log_ratio(double p, double t) {
    double pp = 1.0 + p, tp = 1.0 + t, u = (p - t) / tp;
    int near = u >= -0.5 && u <= 1.0;
    double rt = pp / tp;
    int finite_r = rt > 1e-300 && rt < 1e300;
    double far = finite_r ? klog(finite_r ? rt : 1.0) : klog1p(p) - klog1p(t);
    return near ? klog1p(near ? u : 0.0) : far;
}

/* Mean squared logarithmic error (regression._msle): term L^2, L = log((1 + p)/(1 + t)); derivative
 * 2 L / (1 + p). float32 input only. */
KINLINE double msle_at(double p, double t, const double *prm, double *grad_out) {
    double l = msle_log_ratio(p, t);
    /* L/(1 + p) -> 0 at p = +inf, where inf/inf gives NaN */
    if (grad_out) *grad_out = p == INFINITY ? 0.0 : 2.0 * (l / (1.0 + p));
    return l * l;
}

/* Pinball (regression._pinball; prm[0] = quantile q): term q d (d >= 0) or (q - 1) d, d = t - p;
 * derivative -q, 1 - q, and 1/2 - q at d = 0; NaN where d is NaN. */
KINLINE double pinball_at(double p, double t, const double *prm, double *grad_out) {
    double q = prm[0], d = t - p;
    if (grad_out) {
        double g = d > 0.0 ? -q : (d < 0.0 ? 1.0 - q : 0.5 - q);
        *grad_out = d != d ? d : g;  /* NaN propagates; an infinite error has its finite slope */
    }
    return d >= 0.0 ? q * d : (q - 1.0) * d;
}

/* Squared hinge (margin._squared_hinge), labels already -1/+1: term a^2, a = max(0, 1 - t f) (NaN
 * kept); derivative -2 t a. */
KINLINE double squared_hinge_at(double f, double t, const double *prm, double *grad_out) {
    double a = max0(1.0 - t * f);
    if (grad_out) *grad_out = -2.0 * t * a;
    return a * a;
}

/* Soft margin (margin._soft_margin), labels -1/+1: term softplus(z), z = -t x,
 * softplus(z) = max(z, 0) + log1p(exp(-|z|)); derivative -t sigmoid(z). */
KINLINE double soft_margin_at(double xv, double t, const double *prm, double *grad_out) {
    double z = -t * xv, e = kexp(-fabs(z));
    if (grad_out) {
        double big = 1.0 / (1.0 + e), small = e * big;
        *grad_out = -t * (z >= 0.0 ? big : small);
    }
    return max0(z) + klog1p(e);
}

/* Perceptron (margin._perceptron), labels -1/+1: term max(0, z), z = -t f (NaN kept); derivative
 * -t kink(z), NaN where z is NaN. */
KINLINE double perceptron_at(double f, double t, const double *prm, double *grad_out) {
    double z = -t * f;
    if (grad_out) *grad_out = z != z ? z : -t * kink(z);
    return max0(z);
}

ELEMENTWISE_KERNEL(bce_probs, bce_probs_at)
ELEMENTWISE_KERNEL(mse, mse_at)
ELEMENTWISE_KERNEL(mae, mae_at)
ELEMENTWISE_KERNEL(hinge, hinge_at)
ELEMENTWISE_KERNEL(huber, huber_at)
ELEMENTWISE_KERNEL(smooth_l1, smooth_l1_at)
ELEMENTWISE_KERNEL(log_cosh, log_cosh_at)
ELEMENTWISE_KERNEL(mape, mape_at)
ELEMENTWISE_KERNEL(msle, msle_at)
ELEMENTWISE_KERNEL(pinball, pinball_at)
ELEMENTWISE_KERNEL(squared_hinge, squared_hinge_at)
ELEMENTWISE_KERNEL(perceptron, perceptron_at)

/* float64 input (see ELEMENTWISE_KERNEL) */
ELEMENTWISE_KERNEL_D(bce_logits_d, bce_logits_at)
ELEMENTWISE_KERNEL_D(bce_probs_d, bce_probs_at)
ELEMENTWISE_KERNEL_D(mse_d, mse_at)
ELEMENTWISE_KERNEL_D(mae_d, mae_at)
ELEMENTWISE_KERNEL_D(hinge_d, hinge_at)
ELEMENTWISE_KERNEL_D(huber_d, huber_at)
ELEMENTWISE_KERNEL_D(smooth_l1_d, smooth_l1_at)
ELEMENTWISE_KERNEL_D(mape_d, mape_at)
ELEMENTWISE_KERNEL_D(pinball_d, pinball_at)
ELEMENTWISE_KERNEL_D(squared_hinge_d, squared_hinge_at)
ELEMENTWISE_KERNEL_D(soft_margin_d, soft_margin_at)
ELEMENTWISE_KERNEL_D(perceptron_d, perceptron_at)

/* ------------------------------------ float32-first elementwise kernels (issue 8, item 1) */

/* The kernels below (bce_logits, soft_margin: float32 input only) evaluate the value's terms with a
 * float32 exp and a division-free log1p, and select the few elements that need more: a logit beyond
 * +-FAR_LOGIT, inf or NaN is recomputed by the double kernel term (the *_at above), whatever the rest
 * of its block. The gradient, where asked for, keeps the double kexp and the double formula of the
 * *_at term, operation for operation: the float32 gradient stays equal to the float64 kernel's result
 * rounded (tests/test_properties.py: test_dtype_is_preserved), which an exp good to 2^-23 would break
 * in a few elements in a hundred. */

/* exp(x - m) in float32 (below, with the row kernels; relative error below 2^-23.4 for x - m >= -110,
 * 0 below, NaN kept), here with m = 0 and x = -|logit| */
KINLINE double kexp_diff_f32(float x, float m);

/* log1p(e) for e in [0, 1] (the softplus tail log1p(exp(-|x|))) as e P(e), P of degree 10 in double,
 * no division: P interpolates log1p(e)/e at the 11 Chebyshev nodes of [0, 1] (coefficients solved
 * in 40-digit mpmath, rounded to double): relative error below 2^-30.1 over [0, 1] (the singularity
 * at e = -1 bounds the Chebyshev convergence to 5.83^-n), plus Horner's roundings, below
 * 11 2^-53 (sum |c_j| e^j) / P(e) < 2^-47; tested against mpmath in tests/test_backend_cpu.py.
 * Only for values (a sum of non-negative terms, where 2^-30 relative is nothing): never for a
 * gradient, which must equal the float64 kernel's rounded. */
KINLINE double klog1p_unit(double e) {
    double p = 0.0019866965936534606;
    p = p * e - 0.013187826565578388;
    p = p * e + 0.041006573693958395;
    p = p * e - 0.08188040923582843;
    p = p * e + 0.12377995867871511;
    p = p * e - 0.16087623009295732;
    p = p * e + 0.19885820285008451;
    p = p * e - 0.24986496459409926;
    p = p * e + 0.3333249754352652;
    p = p * e - 0.4999997949139123;
    p = p * e + 0.9999999991556823;
    return e * p;
}

/* logits beyond this (and inf, NaN) go to the double term: kexp_diff_f32 is good down to -110 */
#define FAR_LOGIT 100.0f
KINLINE int far_logit(float x) { return !(fabsf(x) <= FAR_LOGIT); }

/* ELEMENTWISE_KERNEL with a float32-first term FAST(x, t, prm, grad_out) (float inputs) and the
 * selection FAR(x): the elements where FAR holds are recomputed by AT (the double term, value and
 * gradient) after the block's vectorised loop, which counts them. */
#define ELEMENTWISE_KERNEL_SEL(NAME, FAST, AT, FAR)                                                 \
    CLONES static void NAME(const void *tv, const float *x, idx rows, idx k, double *value,         \
                            float *grad, const double *scale, double *work, const double *prm) {   \
        const float *yt = tv;                                                                       \
        double inv_k = 1.0 / (double)k, *term = work, *g = work + (k > BLOCK ? k : BLOCK);          \
        idx rb = k >= BLOCK ? 1 : BLOCK / k;                                                        \
        for (idx r0 = 0; r0 < rows; r0 += rb) {                                                     \
            idx nr = rows - r0 < rb ? rows - r0 : rb, n = nr * k, nfar = 0;                         \
            const float *xb = x + r0 * k, *yb = yt + r0 * k;                                        \
            if (grad) {                                                                             \
                PRAGMA(omp simd reduction(+ : nfar))                                                \
                for (idx i = 0; i < n; i++) {                                                       \
                    term[i] = FAST(xb[i], yb[i], prm, g + i);                                       \
                    nfar += FAR(xb[i]);                                                             \
                }                                                                                   \
            } else {                                                                                \
                PRAGMA(omp simd reduction(+ : nfar))                                                \
                for (idx i = 0; i < n; i++) {                                                       \
                    term[i] = FAST(xb[i], yb[i], prm, NULL);                                        \
                    nfar += FAR(xb[i]);                                                             \
                }                                                                                   \
            }                                                                                       \
            if (nfar) {                                                                             \
                for (idx i = 0; i < n; i++)                                                         \
                    if (FAR(xb[i])) term[i] = AT((double)xb[i], (double)yb[i], prm, grad ? g + i : NULL); \
            }                                                                                       \
            if (grad) write_grads_f(grad + r0 * k, g, nr, k, inv_k, scale ? scale + r0 : NULL);     \
            row_means(term, nr, k, inv_k, value + r0, 0);                                           \
        }                                                                                           \
    }

/* Binary cross-entropy from logits, float32 (bce_logits_at's formula): the value's tail
 * log1p(exp(-|x|)) from e = kexp_diff_f32(-|x|, 0) (value only) or kexp (with the gradient) and
 * klog1p_unit. Error of the value for |x| <= FAR_LOGIT: e within 2^-23.4 relative, log1p's condition
 * e/((1 + e) log1p(e)) <= 1 and klog1p_unit's 2^-30 give the tail within 2^-23.3; softplus(+-x) =
 * max(+-x, 0) + tail and t softplus(-x) + q softplus(x) (t, q >= 0: y and the smoothing lie in
 * [0, 1]) are sums of non-negative terms, each adding one double rounding, and so is the row mean:
 * the value is within 2^-23.2 relative before its rounding to float32 (1.4 float32 ulps after it).
 * The gradient is bce_logits_at's, from the same double e, operation for operation. */
KINLINE double bce_logits_fast(float xf, float yf, const double *prm, double *grad_out) {
    double e = grad_out ? kexp(-fabs((double)xf)) : kexp_diff_f32(-fabsf(xf), 0.0f);
    return bce_logits_from((double)xf, (double)yf, prm, e, klog1p_unit(e), grad_out);
}

/* Soft margin, float32 (soft_margin_at's formula): softplus(z) = max(z, 0) + tail, z = -t x, the
 * tail as in bce_logits_fast (|z| = |x| for labels +-1): within 2^-23.2 relative, a sum of two
 * non-negative terms; the gradient soft_margin_at's. */
KINLINE double soft_margin_fast(float xf, float tf, const double *prm, double *grad_out) {
    double t = (double)tf, z = -t * (double)xf;
    double e = grad_out ? kexp(-fabs(z)) : kexp_diff_f32(-fabsf(xf), 0.0f), tail = klog1p_unit(e);
    if (grad_out) {
        double big = 1.0 / (1.0 + e), small = e * big;
        *grad_out = -t * (z >= 0.0 ? big : small);
    }
    return max0(z) + tail;
}

ELEMENTWISE_KERNEL_SEL(bce_logits, bce_logits_fast, bce_logits_at, far_logit)
ELEMENTWISE_KERNEL_SEL(soft_margin, soft_margin_fast, soft_margin_at, far_logit)

/* ------------------------------------------------- elementwise losses whose parts may cancel */

/* Poisson NLL and Gaussian NLL: the per-sample value is the mean of terms whose parts, and whose
 * terms over a row, have both signs, so a double evaluation is not always within the contract. A
 * term here is AT(pred, true, extra, prm, grad_out, err_out): the term, its derivative into *grad_out
 * (unless NULL), and into *err_out an absolute bound of the term's error as computed (every rounding
 * and the math's 2^-51, the tested 2 double ulps of kexp/klog), +inf where the gradient element is
 * not within 4 float32 ulps. CHECKED_KERNEL drives it over blocks as ELEMENTWISE_KERNEL does, and
 * keeps a row's value only when
 *     sum_j err_j + (k + 2) 2^-53 sum_j |term_j| <= 2^-22 |sum_j term_j|
 * (the row's plain sum adds at most (k - 1) 2^-53 sum |term_j|, the mean's 1/k two more roundings):
 * the mean is then within 2^-22 relative, 4 float32 ulps (ulp(v) >= 2^-24 |v|), of the exact value,
 * 4.5 after the final rounding. Any other row (also one whose value is not finite, or NaN) gets the
 * value NaN; numpy.py recomputes those rows, and only those, with the generic kernel (its double-length
 * tiers), values and gradients. float32 input only: float64's 8 ulps would need exp and log as
 * double-length pairs on every element, which these terms do not have.
 * extra: a third float32 array shaped like the predictions (Gaussian NLL's var; the predictions
 * again for Poisson, unread). The work buffer holds 3 max(k, BLOCK) doubles. */
#define CHECKED_KERNEL(NAME, AT)                                                                    \
    CLONES static void NAME(const void *tv, const float *x, const float *ex, idx rows, idx k,       \
                            double *value, float *grad, const double *scale, double *work,         \
                            const double *prm) {                                                   \
        const float *yt = tv;                                                                       \
        idx bl = k > BLOCK ? k : BLOCK, rb = k >= BLOCK ? 1 : BLOCK / k;                            \
        double inv_k = 1.0 / (double)k, *term = work, *g = work + bl, *err = work + 2 * bl;         \
        double slack = (double)(k + 2) * 0x1p-53;                                                   \
        for (idx r0 = 0; r0 < rows; r0 += rb) {                                                     \
            idx nr = rows - r0 < rb ? rows - r0 : rb, n = nr * k;                                   \
            const float *xb = x + r0 * k, *yb = yt + r0 * k, *eb = ex + r0 * k;                     \
            if (grad) {                                                                             \
                PRAGMA(omp simd)                                                                    \
                for (idx i = 0; i < n; i++)                                                         \
                    term[i] = AT((double)xb[i], (double)yb[i], (double)eb[i], prm, g + i, err + i); \
                write_grads_f(grad + r0 * k, g, nr, k, inv_k, scale ? scale + r0 : NULL);           \
            } else {                                                                                \
                PRAGMA(omp simd)                                                                    \
                for (idx i = 0; i < n; i++)                                                         \
                    term[i] = AT((double)xb[i], (double)yb[i], (double)eb[i], prm, NULL, err + i);  \
            }                                                                                       \
            for (idx r = 0; r < nr; r++) {                                                          \
                const double *tr = term + r * k, *er = err + r * k;                                 \
                double s = 0.0, a = 0.0, e = 0.0;                                                   \
                PRAGMA(omp simd reduction(+ : s, a, e))                                             \
                for (idx j = 0; j < k; j++) {                                                       \
                    s += tr[j];                                                                     \
                    a += fabs(tr[j]);                                                               \
                    e += er[j];                                                                     \
                }                                                                                   \
                int ok = e + slack * a <= 0x1p-22 * fabs(s);                                       \
                value[r0 + r] = ok ? s * inv_k : NAN;                                               \
            }                                                                                       \
        }                                                                                           \
    }

/* Poisson NLL (regression._poisson_nll; prm = [log_input, full, eps]), float32 input in double.
 * log_input (poisson_nll_log): term e^x - t x, derivative e^x - t. t x is exact (24 + 24 bits),
 * e^x within 2^-51 relative: err 2^-51 e^x (the subtraction's rounding is the row's |term| share).
 * The derivative's error is below 2^-51 e^x + 2^-53 |g|, within 4 float32 ulps unless
 * e^x > 2^28 |g| (near the optimum x = log t): those elements flag their row (at x = 0, e^x = 1
 * exactly and g is exact).
 * Otherwise (poisson_nll_rate): term x - t log(x + eps) with x + eps = s + c exactly (TwoSum) and
 * log(x + eps) = l + c/s (klog: 2^-51 |l|; the pair's sum and the product add 2^-53 each), err
 * 2^-50 t (|l + c/s| + 2^-53); derivative ((s - t) + c)/s: s - t is exact where it cancels
 * (Sterbenz), so within 3 double roundings.
 * full: plus t log t - t + log(2 pi t)/2 where t > 1 (PyTorch's mask), err 2^-50 times the sum of
 * the parts' magnitudes (each addition's rounding is below 2^-53 of that). */
KINLINE double poisson_stirling(double t, double term, const double *prm, double *err_out) {
    const double HALF_LOG_2PI = 0.9189385332046728;
    if (prm[1] == 0.0) return term;  /* loop-invariant: GCC unswitches the row loop */
    int big = t > 1.0;
    double tb = big ? t : 1.0, lg = klog(tb);
    double st = (tb * lg - tb) + (0.5 * lg + HALF_LOG_2PI);
    double mag = fabs(term) + tb * lg + tb + 0.5 * lg + HALF_LOG_2PI;
    *err_out += big ? 0x1p-50 * mag : 0.0;
    return big ? term + st : term;
}

KINLINE double poisson_nll_log_at(double xv, double t, double unused, const double *prm,
                                  double *grad_out, double *err_out) {
    double e = kexp(xv);
    double er = 0x1p-51 * e;
    if (grad_out) {
        double g = e - t;
        *grad_out = g;
        er = (xv != 0.0 && e * 0x1p-28 > fabs(g)) ? INFINITY : er;
    }
    *err_out = er;
    return poisson_stirling(t, e - t * xv, prm, err_out);
}

KINLINE double poisson_nll_rate_at(double xv, double t, double unused, const double *prm,
                                   double *grad_out, double *err_out) {
    double c, s = two_sum(xv, prm[2], &c);
    double lt = klog_sub(s) + c / s;
    if (grad_out) *grad_out = ((s - t) + c) / s;
    *err_out = 0x1p-50 * t * (fabs(lt) + 0x1p-53);
    return poisson_stirling(t, xv - t * lt, prm, err_out);
}

/* Gaussian NLL (regression._gaussian_nll; prm = [full, eps]), float32 input in double: v = max(var,
 * eps) (NaN kept), term L + Q [+ log(2 pi)/2] with L = log(v)/2 (2^-51 |L|) and Q = d (d/v)/2,
 * d = p - t exact (2 roundings: 2^-52 Q); err 2^-50 (|L| + Q + the constant), which also covers the
 * term's two additions. Derivative d/v, one rounding. */
KINLINE double gaussian_nll_at(double p, double t, double var, const double *prm, double *grad_out,
                               double *err_out) {
    const double HALF_LOG_2PI = 0.9189385332046728;
    double cst = prm[0] != 0.0 ? HALF_LOG_2PI : 0.0, eps = prm[1];
    double v = var > eps ? var : (var != var ? var : eps);
    double d = p - t, q = d / v;
    double lh = 0.5 * klog_sub(v), qh = 0.5 * d * q;
    if (grad_out) *grad_out = q;
    *err_out = 0x1p-50 * ((fabs(lh) + qh) + cst);
    return (lh + qh) + cst;
}

/* Poisson in Keras's form (regression._poisson; prm unused), float32 input in double: term
 * p - t log p, 0 log 0 = 0 (t = 0: the term is p, exact, derivative 1). l = log p (klog: 2^-51
 * |l|), t l one rounding: err 2^-50 t |l| plus the subtraction's rounding (the row's |term| share).
 * p = 0 < t, p = +inf and NaN give a term that is not finite: the row is recomputed. Derivative
 * (p - t)/p: p - t is exact where it cancels (Sterbenz; floats in double), one division. */
KINLINE double poisson_at(double p, double t, double unused, const double *prm, double *grad_out,
                          double *err_out) {
    (void)unused; (void)prm;
    double l = klog(p), tl = t * l;
    int zero = t == 0.0;
    if (grad_out) *grad_out = zero ? 1.0 : (p - t) / p;
    *err_out = zero ? 0.0 : 0x1p-50 * fabs(tl);
    return zero ? p : p - tl;
}

/* Gamma deviance (regression._gamma; prm unused), float32 input in double: term
 * 2 (log(p/t) + t/p - 1) = 2 (u - log1p(u)) with u = (t - p)/p (t - p exact in double, one
 * division: u within 2^-53 relative, which moves the term by 2^-52 relative at most). Each term is
 * non-negative, so the row sum does not cancel. |u| < 1/16: u^2 (1/2 - u/3 + u^2/4 - ...), 12
 * terms of the series (the rest below 16^-12 = 2^-48 of the first), Horner in a few double
 * roundings each: within 2^-48 relative; otherwise u - log1p(u) >= u^2/3 (|u| >= 1/16, u > -1)
 * and klog1p's error 2^-51 |log1p(u)| <= 2^-50 |u| is within 2^-44 of the term. Derivative wrt p,
 * 2 (1/p - t/p^2) = -2 u/p: two roundings. Non-finite terms (p = 0, t = 0, ...) flag the row, for
 * the generic kernel. */
KINLINE double gamma_dev_at(double p, double t, double unused, const double *prm, double *grad_out,
                            double *err_out) {
    (void)unused; (void)prm;
    double u = (t - p) / p;
    double s = 1.0 / 13.0;
    s = 1.0 / 12.0 - u * s; s = 1.0 / 11.0 - u * s; s = 1.0 / 10.0 - u * s; s = 1.0 / 9.0 - u * s;
    s = 1.0 / 8.0 - u * s;  s = 1.0 / 7.0 - u * s;  s = 1.0 / 6.0 - u * s;  s = 1.0 / 5.0 - u * s;
    s = 1.0 / 4.0 - u * s;  s = 1.0 / 3.0 - u * s;  s = 1.0 / 2.0 - u * s;
    double term = 2.0 * (fabs(u) < 0.0625 ? u * u * s : u - klog1p(u));
    if (grad_out) *grad_out = -2.0 * u / p;
    *err_out = 0x1p-43 * term;
    return term;
}

CHECKED_KERNEL(poisson_nll_log, poisson_nll_log_at)
CHECKED_KERNEL(poisson_nll_rate, poisson_nll_rate_at)
CHECKED_KERNEL(gaussian_nll, gaussian_nll_at)
CHECKED_KERNEL(poisson_keras, poisson_at)
CHECKED_KERNEL(gamma_dev, gamma_dev_at)

/* ------------------------------------------------------------------------------ the kernels */

typedef void (*kernel_fn)(const void *t, const float *x, idx rows, idx k, double *value, float *grad,
                          const double *scale, double *work, const double *prm);
typedef void (*kernel64_fn)(const void *t, const double *x, idx rows, idx k, double *value,
                            double *grad, const double *scale, double *work, const double *prm);

/* index of the first maximum (of the first NaN if any) of a row: the maximum and a NaN count by a
 * vectorised pass, then the first index holding it (0.0 and -0.0 are equal, as in the comparison
 * chain this replaces); rows under 32 by that chain (the two passes cost more there) */
CLONES static idx row_top(const float *xr, idx k) {
    float m = xr[0];
    if (k < 32) {
        idx top = 0;
        for (idx j = 1; j < k && m == m; j++) {
            if (!(xr[j] <= m)) { m = xr[j]; top = j; }
        }
        return top;
    }
    int nan = 0;
    PRAGMA(omp simd reduction(max : m) reduction(+ : nan))
    for (idx j = 0; j < k; j++) {
        m = xr[j] > m ? xr[j] : m;
        nan += xr[j] != xr[j];
    }
    idx j = 0;
    if (nan) {
        while (xr[j] == xr[j]) j++;
        return j;
    }
    while (xr[j] != m) j++;
    return j;
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

/* exp(x - m) for float32 x <= m, mostly in float32 (8 lanes on AVX2 where the double kexp has 4, and
 * a degree-7 polynomial where it has 13), returned as a double with relative error below 2^-23.4
 * (tests/test_backend_cpu.py: against mpmath on a dense sample of pairs). How:
 * - s + c = x - m exactly (TwoSum in float32; s <= 0); below -110 (also s = -inf where x - m
 *   overflows) the result is 0 and the caller recomputes those elements with kexp (exp(s) <
 *   2^-158, but a sum of many of them can still be a float32 subnormal); NaN is kept;
 * - k = rint(s log2 e), r = (s - k C1) - k C2 + c with C1 = 355/512 (k C1 and s - k C1 exact for
 *   |k| <= 160) and C1 + C2 = ln 2 to 2^-32: |r| <= 0.3466 + 2^-17, with an absolute error below
 *   2^-25 (the two roundings after the exact step);
 * - exp(r) = 1 + u, u = r + r^2 (1/2 + r/6 + ... + r^5/5040) (Taylor: truncation below 2^-29.6 at
 *   |r| = 0.347) in float32: u within 2^-24 |u| + 2^-26 of its value (|u| <= 0.42); 1 + u and the
 *   scaling by 2^k in double (exact: no float32 underflow).
 * Sum: below 0.42 2^-24 + 2^-26 + 2^-25 + 2^-29.6 (1 + u >= 0.707): 2^-23.5 relative. */
KINLINE double kexp_diff_f32(float x, float m) {
    float s = x - m, bb = s - x;
    float c = (x - (s - bb)) + (-m - bb);
    int far = !(s >= -110.0f);  /* also NaN: kept below */
    float sc = far ? -110.0f : s;
    c = far ? 0.0f : c;
    float k = rintf(sc * 1.44269504088896341f);
    float r = ((sc - k * 0.693359375f) - k * -2.12194440e-4f) + c;
    float q = 1.0f / 5040.0f;
    q = q * r + 1.0f / 720.0f;
    q = q * r + 1.0f / 120.0f;
    q = q * r + 1.0f / 24.0f;
    q = q * r + 1.0f / 6.0f;
    q = q * r + 0.5f;
    float u = (q * r) * r + r;
    double y = (1.0 + (double)u) * pow2((double)k);
    y = far ? 0.0 : y;
    return s != s ? (double)s : y;
}

/* Poisson NLL with log_input, value only (issue 8; poisson_nll_log's formulation without the
 * gradient's work; full = false): per row one vectorised pass into three scalar sums rather than
 * per-element terms and bounds: S = sum_j term_j, A = sum_j |term_j|, E = sum_j e_j, term_j =
 * e_j - t_j x_j (t_j x_j exact in double, 24 + 24 bits; the subtraction's rounding is A's share).
 * Tier 1: e_j = kexp_diff_f32(x_j, 0) (float32 arithmetic, twice the lanes of kexp and half its
 * polynomial): relative error below 2^-23.4 for |x_j| <= 100 (its comment's argument, which holds
 * for x > 0 as for x < 0: k = rint(x log2 e) <= 145 < 160), so the e_j add at most 2^-23.4 E; the
 * row keeps its value when, as in CHECKED_KERNEL,
 *     2^-23.4 E + (k + 2) 2^-53 A <= 2^-22 |S|
 * (so when the terms cancel by less than a factor of about 2.6). Tier 2, a row that fails that or
 * has an |x_j| > 100 (inf, NaN): the same sums with e_j = kexp(x_j) (2^-51 relative, as
 * poisson_nll_log_at), kept when 2^-51 E + (k + 2) 2^-53 A <= 2^-22 |S|; else NaN, and numpy.py
 * recomputes the row with the generic kernel. A kept value is within 2^-22 relative of the exact
 * mean (4 float32 ulps; CHECKED_KERNEL's argument), 4.5 after the final rounding. */
CLONES static void poisson_nll_log_value(const float *yt, const float *x, idx rows, idx k,
                                         double *value) {
    const double slack = (double)(k + 2) * 0x1p-53, inv_k = 1.0 / (double)k;
    for (idx r = 0; r < rows; r++) {
        const float *xr = x + r * k, *tr = yt + r * k;
        double s = 0.0, a = 0.0, e = 0.0;
        int nfar = 0;
        PRAGMA(omp simd reduction(+ : s, a, e, nfar))
        for (idx j = 0; j < k; j++) {
            double ej = kexp_diff_f32(xr[j], 0.0f), tm = ej - (double)tr[j] * (double)xr[j];
            s += tm;
            a += fabs(tm);
            e += ej;
            nfar += !(fabsf(xr[j]) <= 100.0f);
        }
        if (nfar == 0 && 0x1.88p-24 * e + slack * a <= 0x1p-22 * fabs(s)) {  /* 0x1.88p-24 > 2^-23.4 */
            value[r] = s * inv_k;
            continue;
        }
        s = a = e = 0.0;
        PRAGMA(omp simd reduction(+ : s, a, e))
        for (idx j = 0; j < k; j++) {
            double xv = (double)xr[j], ej = kexp(xv), tm = ej - (double)tr[j] * xv;
            s += tm;
            a += fabs(tm);
            e += ej;
        }
        value[r] = 0x1p-51 * e + slack * a <= 0x1p-22 * fabs(s) ? s * inv_k : NAN;
    }
}

/* KERNELS3's poisson_nll_log entry: the value-only path above when there is no gradient and no
 * Stirling term, else the checked kernel */
static void poisson_nll_log_any(const void *tv, const float *x, const float *ex, idx rows, idx k,
                                double *value, float *grad, const double *scale, double *work,
                                const double *prm) {
    if (!grad && prm[1] == 0.0)
        poisson_nll_log_value(tv, x, rows, k, value);
    else
        poisson_nll_log(tv, x, ex, rows, k, value, grad, scale, work, prm);
}

/* softmax_others with kexp_diff_f32: e_j (0 at the top) into e, their sum S in double; the elements
 * more than 110 below the top (rare: a second pass only for a row that has them) by kexp. */
CLONES static double softmax_others_f32(const float *xr, idx k, idx top, double *e) {
    float m = xr[top];
    double s = 0.0;
    idx far = 0;
    SIMD_SUM2(s, far)
    for (idx j = 0; j < k; j++) {
        double v = kexp_diff_f32(xr[j], m);
        v = j == top ? 0.0 : v;
        e[j] = v;
        s += v;
        far += xr[j] - m < -110.0f;
    }
    if (far) {
        double md = (double)m;
        s = 0.0;
        for (idx j = 0; j < k; j++) {
            if (xr[j] - m < -110.0f && j != top) e[j] = kexp((double)xr[j] - md);
            s += e[j];
        }
    }
    return s;
}

/* ---------------------------------------- short rows (issues 8, 10): blocks of whole rows */

/* scce_logits and cce_logits (with the gradient or without: grad NULL) for rows of at most SHORT_ROW
 * classes: the same
 * formulas and roundings as the row loops below (same top, same kexp per element, the same double
 * expressions for the value and the gradient, so the same error argument), evaluated over blocks of
 * whole rows (about BLOCK elements) so that the exp, log1p, reciprocal and gradient passes are flat
 * vectorised loops whatever k: per-row loops of 10 elements spend most of their time in loop
 * overhead and remainders, and the per-row log1p and division are scalar. Per-row quantities a flat
 * pass needs (the maximum, 1/(1+S), T, the scale) are broadcast over the row's elements first. The
 * row sums S (and the linear part and T for cce) are summed in index order within the row: a sum of
 * at most 32 non-negative double terms, within k 2^-53 relative as the vectorised row sums (the
 * gradient, which does not use these sums' order, is bit for bit the row loops'). Up to 32 classes:
 * beyond that the row loops' vectorised row_top and row passes are as fast (measured: k = 48, 64). */
#define SHORT_ROW 32

/* first maximum (first NaN if any) of each row of a block, as row_top's comparison chain; the row's
 * maximum (as double) broadcast over its elements into mx */
KINLINE void block_tops(const float *xb, idx nr, idx k, idx *tops, double *mx) {
    float mr[BLOCK];
    /* the rows side by side (one lane a row): no per-row loop overhead nor mispredicted branches */
    PRAGMA(omp simd)
    for (idx r = 0; r < nr; r++) {
        const float *xr = xb + r * k;
        float m = xr[0];
        idx top = 0;
        for (idx j = 1; j < k; j++) {
            float v = xr[j];
            int up = m == m && !(v <= m);
            m = up ? v : m;
            top = up ? j : top;
        }
        tops[r] = top;
        mr[r] = m;
    }
    for (idx r = 0; r < nr; r++) {
        double md = (double)mr[r];
        for (idx j = 0; j < k; j++) mx[r * k + j] = md;
    }
}

/* whether a gradient buffer shares memory with the n inputs it is computed from: the short-row
 * kernels read a block of rows in several passes, so a gradient written over its own logits (as
 * losskit/linear.py does, to save a buffer) takes the row-at-a-time kernels, which read a whole row
 * before writing it */
KINLINE int overlaps(const float *grad, const float *x, idx n) {
    return (uintptr_t)grad < (uintptr_t)(x + n) && (uintptr_t)x < (uintptr_t)(grad + n);
}

/* e_i = kexp(x_i - m_row) over the block, 0 at each row's top; S of each row into srow */
KINLINE void block_softmax_others(const float *xb, idx nr, idx k, const idx *tops, const double *mx,
                                  double *e, double *srow) {
    idx n = nr * k;
    PRAGMA(omp simd)
    for (idx i = 0; i < n; i++) e[i] = kexp((double)xb[i] - mx[i]);
    for (idx r = 0; r < nr; r++) {
        double *er = e + r * k, s = 0.0;
        er[tops[r]] = 0.0;
        for (idx j = 0; j < k; j++) s += er[j];
        srow[r] = s;
    }
}

CLONES static void scce_logits_short(const int64_t *label, const float *x, idx rows, idx k,
                                     double *value, float *grad, const double *scale) {
    double e[BLOCK], mx[BLOCK], sx[BLOCK], srow[BLOCK], tail[BLOCK], inv[BLOCK];
    idx tops[BLOCK];
    idx rb = BLOCK / k;
    for (idx r0 = 0; r0 < rows; r0 += rb) {
        idx nr = rows - r0 < rb ? rows - r0 : rb, n = nr * k;
        const float *xb = x + r0 * k;
        float *gb = grad ? grad + r0 * k : NULL;
        block_tops(xb, nr, k, tops, mx);
        block_softmax_others(xb, nr, k, tops, mx, e, srow);
        PRAGMA(omp simd)
        for (idx r = 0; r < nr; r++) {
            tail[r] = klog1p(srow[r]);
            inv[r] = 1.0 / (1.0 + srow[r]);
        }
        for (idx r = 0; r < nr && grad; r++) {
            double sc = scale ? scale[r0 + r] : 1.0;
            for (idx j = 0; j < k; j++) {
                mx[r * k + j] = inv[r];
                sx[r * k + j] = sc;
            }
        }
        if (grad) {
            PRAGMA(omp simd)
            for (idx i = 0; i < n; i++) gb[i] = write_grad(e[i] * mx[i], sx[i]);
        }
        for (idx r = 0; r < nr; r++) {
            const float *xr = xb + r * k;
            idx top = tops[r];
            int64_t y = label[r0 + r];
            y = (y < 0 || y >= k) ? top : y;
            value[r0 + r] = y == top ? tail[r] : ((double)xr[top] - (double)xr[y]) + tail[r];
            if (!grad) continue;
            double sc = sx[r * k], iv = inv[r];
            float *gr = gb + r * k;
            if (y != top) gr[y] = write_grad(e[r * k + y] * iv - 1.0, sc);
            gr[top] = write_grad(y == top ? -srow[r] * iv : iv, sc);
        }
    }
}

CLONES static void cce_logits_short(const float *t, const float *x, idx rows, idx k, double *value,
                                    float *grad, const double *scale) {
    double e[BLOCK], mx[BLOCK], sx[BLOCK], tx[BLOCK], lp[BLOCK], srow[BLOCK], inv[BLOCK], lin_r[BLOCK];
    idx tops[BLOCK];
    idx rb = BLOCK / k;
    for (idx r0 = 0; r0 < rows; r0 += rb) {
        idx nr = rows - r0 < rb ? rows - r0 : rb, n = nr * k;
        const float *xb = x + r0 * k, *tb = t + r0 * k;
        float *gb = grad ? grad + r0 * k : NULL;
        block_tops(xb, nr, k, tops, mx);
        /* the linear part's terms t_j (m - x_j) (0 at the top and where t_j = 0) */
        PRAGMA(omp simd)
        for (idx i = 0; i < n; i++) {
            double tj = (double)tb[i], d = mx[i] - (double)xb[i];
            lp[i] = tj == 0.0 ? 0.0 : tj * d;
        }
        block_softmax_others(xb, nr, k, tops, mx, e, srow);
        for (idx r = 0; r < nr; r++) {
            const float *tr = tb + r * k;
            double *lr = lp + r * k, lin = 0.0, total = 0.0;
            lr[tops[r]] = 0.0;
            for (idx j = 0; j < k; j++) {
                lin += lr[j];
                total += (double)tr[j];
            }
            lin_r[r] = lin;
            tx[r] = total;
        }
        PRAGMA(omp simd)
        for (idx r = 0; r < nr; r++) {
            double s = srow[r], total = tx[r];
            value[r0 + r] = lin_r[r] + (total == 0.0 ? 0.0 : total * klog1p(s));
            inv[r] = 1.0 / (1.0 + s);
        }
        if (!grad) continue;
        for (idx r = 0; r < nr; r++) {
            double sc = scale ? scale[r0 + r] : 1.0, total = tx[r];
            for (idx j = 0; j < k; j++) {
                mx[r * k + j] = inv[r];
                sx[r * k + j] = sc;
                lp[r * k + j] = total;
            }
        }
        PRAGMA(omp simd)
        for (idx i = 0; i < n; i++) gb[i] = write_grad(lp[i] * (e[i] * mx[i]) - (double)tb[i], sx[i]);
        for (idx r = 0; r < nr; r++) {
            idx top = tops[r];
            double ttop = (double)tb[r * k + top], total = lp[r * k];
            gb[r * k + top] = write_grad(((total - ttop) - ttop * srow[r]) * inv[r], sx[r * k]);
        }
    }
}

/* Sparse categorical cross-entropy from logits (crossentropy._scce_hard, from_logits):
 * value = (m - x_y) + log1p(S), S = sum of exp(x_j - m) over j other than the first maximum (the
 * value is log1p(S) alone when the label is the top, which is also the limit for an infinite top);
 * gradient = softmax - onehot, softmax_j = e_j/(1+S), softmax_top = 1/(1+S), and -S/(1+S) when the
 * label is the top. Labels were checked; a row with a label outside [0, k) (ignored) gets any class.
 * Value only (grad NULL) on rows longer than SHORT_ROW: the e_j come from kexp_diff_f32 (relative
 * error d <= 2^-23.4; shorter rows take the block kernel above, kexp, without its gradient). With the
 * gradient they come from kexp: the property suite asks for float32 gradients equal to the float64
 * ones rounded (tests/test_properties.py: test_dtype_is_preserved), which a float32 exp's 2^-23.4
 * would break in a few elements in a hundred, although within 8 ulps as follows.
 * Nothing here cancels: S, a sum of
 * positive terms in double, is within d + k 2^-53 (d' below) relative; log1p(S) within d' too (its
 * condition number S/((1 + S) log1p(S)) is below 1); the value, a sum of two non-negative terms,
 * within d' + 2^-52. Gradient: e_j/(1+S) within d + d' S/(1 + S) + 2^-52 < 2 d'; at a label y other
 * than the top, e_y/(1+S) <= 1/2, so e_y/(1+S) - 1, in [-1, -1/2], has relative error below 2 d'
 * too; -S/(1+S) and 1/(1+S) likewise. So within 2^-22 relative (4 float32 ulps) before the final
 * rounding. */
CLONES static void scce_logits(const void *t, const float *x, idx rows, idx k, double *value, float *grad,
                        const double *scale, double *e, const double *prm) {
    const int64_t *label = t;
    if (k <= SHORT_ROW && !(grad && overlaps(grad, x, rows * k))) {
        scce_logits_short(label, x, rows, k, value, grad, scale);
        return;
    }
    for (idx r = 0; r < rows; r++) {
        const float *xr = x + r * k;
        idx top = row_top(xr, k);
        int64_t y = label[r];
        y = (y < 0 || y >= k) ? top : y;
        double s = grad ? softmax_others(xr, k, top, e) : softmax_others_f32(xr, k, top, e);
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

/* cce_logits' value of one row without the gradient, in one pass: S as softmax_others_f32 (the e_j by
 * kexp_diff_f32, the classes more than 110 below the top by kexp in a second pass that only a row
 * holding them takes), the linear part sum_j t_j (m - x_j) and T = sum_j t_j; the e_j are not stored. */
CLONES static double cce_row_value_f32(const float *xr, const float *tr, idx k, idx top) {
    float m = xr[top];
    double md = (double)m, s = 0.0, lin = 0.0, total = 0.0;
    idx far = 0;
    PRAGMA(omp simd reduction(+ : s, lin, total, far))
    for (idx j = 0; j < k; j++) {
        double v = kexp_diff_f32(xr[j], m);
        s += j == top ? 0.0 : v;
        far += xr[j] - m < -110.0f;
        double tj = (double)tr[j], d = j == top ? 0.0 : md - (double)xr[j];
        lin += tj == 0.0 ? 0.0 : tj * d;
        total += tj;
    }
    if (far) {
        s = 0.0;
        for (idx j = 0; j < k; j++) {
            double v = xr[j] - m < -110.0f ? kexp((double)xr[j] - md) : kexp_diff_f32(xr[j], m);
            s += j == top ? 0.0 : v;
        }
    }
    double tail = klog1p(s);
    return lin + (total == 0.0 ? 0.0 : total * tail);
}

/* Categorical cross-entropy from logits with soft targets (crossentropy._from_logits):
 * value = sum_j t_j (m - x_j) + T log1p(S), T = sum t, every term non-negative;
 * gradient = T e_j/(1+S) - t_j, and (sum_{j != top} t_j - t_top S)/(1+S) at the top.
 * Value only (grad NULL, cce_row_value_f32, rows longer than SHORT_ROW): the e_j by kexp_diff_f32 (as
 * scce_logits): S within
 * 2^-23.4 + k 2^-53 relative, log1p(S) within that too (condition below 1), and the value, a sum of
 * non-negative terms (t_j in [0, 1], m - x_j >= 0 exact), within 2^-23.3 before its rounding. With
 * the gradient they come from kexp (the float32 gradient equals the float64 one rounded, see
 * scce_logits). */
CLONES static void cce_logits(const void *tv, const float *x, idx rows, idx k, double *value, float *grad,
                       const double *scale, double *e, const double *prm) {
    const float *t = tv;
    if (k <= SHORT_ROW && !(grad && overlaps(grad, x, rows * k))) {
        cce_logits_short(t, x, rows, k, value, grad, scale);
        return;
    }
    for (idx r = 0; r < rows; r++) {
        const float *xr = x + r * k, *tr = t + r * k;
        idx top = row_top(xr, k);
        if (!grad) {
            value[r] = cce_row_value_f32(xr, tr, k, top);
            continue;
        }
        double s = softmax_others(xr, k, top, e);
        double md = (double)xr[top], lin = 0.0, total = 0.0;
        SIMD_SUM2(lin, total)
        for (idx j = 0; j < k; j++) {
            double tj = (double)tr[j], d = j == top ? 0.0 : md - (double)xr[j];
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

/* KL divergence of probabilities (divergence._kl_terms_widened): t log(t/p) per element, with
 * log1p((t - p)/p) where t/p is within [1/2, 3/2] (t - p exact in double) and log(t/p) elsewhere,
 * both from one klog_plus (log1p's as klog1p forms it: u = 1 + x and its rounding error c/u; the
 * ratio itself otherwise); 0 where t = 0, inf where p = 0 < t, NaN where p or t is NaN.
 * Gradient -t/p (0 where t = 0). */
KINLINE double kl_term(double p, double tj) {
    double sp = p > 0.0 ? p : 1.0;
    double ratio = tj / sp, d = (tj - p) / sp;
    int near = fabs(ratio - 1.0) <= 0.5;
    double u = near ? 1.0 + d : ratio;
    double bv = u - 1.0, av = u - bv, c = (1.0 - av) + (d - bv);
    double lr = klog_plus(u, near ? c / u : 0.0);
    lr = near && fabs(d) < 0x1p-54 ? d : lr;
    lr = ratio == INFINITY ? INFINITY : lr;
    double term = tj == 0.0 ? 0.0 : tj * lr;
    term = (ratio == 0.0 && tj > 0.0) ? -INFINITY : term;  /* p = inf */
    term = (p == 0.0 && tj > 0.0) ? INFINITY : term;
    return p != p || tj != tj ? NAN : term;
}

/* the terms of a block of rows (all of a short row's block at once: one vectorised loop over its
 * elements), then each row's sum; the work buffer holds max(k, BLOCK) doubles */
CLONES static void kl(const void *tv, const float *x, idx rows, idx k, double *value, float *grad,
                      const double *scale, double *work, const double *prm) {
    const float *t = tv;
    idx rb = k >= BLOCK ? 1 : BLOCK / k;
    double *term = work;
    (void)prm;
    for (idx r0 = 0; r0 < rows; r0 += rb) {
        idx nr = rows - r0 < rb ? rows - r0 : rb, n = nr * k;
        const float *pb = x + r0 * k, *tb = t + r0 * k;
        PRAGMA(omp simd)
        for (idx i = 0; i < n; i++) term[i] = kl_term((double)pb[i], (double)tb[i]);
        for (idx r = 0; r < nr; r++) {
            const double *tr = term + r * k;
            double sum = 0.0;
            SIMD_SUM(sum)
            for (idx j = 0; j < k; j++) sum += tr[j];
            value[r0 + r] = sum;
        }
        if (grad) {
            for (idx r = 0; r < nr; r++) {
                const float *pr = pb + r * k, *tr = tb + r * k;
                double sc = scale ? scale[r0 + r] : 1.0;
                float *gr = grad + (r0 + r) * k;
                for (idx j = 0; j < k; j++) {
                    double tj = (double)tr[j];
                    gr[j] = write_grad(tj != 0.0 ? -tj / (double)pr[j] : 0.0, sc);
                }
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

/* Categorical cross-entropy of renormalised probabilities (crossentropy._from_probabilities), the row
 * loop (cce_probs below runs it for the rows it does not take):
 * value = sum_j t_j log1p(R_j / p_j), R_j = P - p_j (the others summed directly at the top), 0 where
 * t_j = 0; gradient ((T - t_i) p_i - t_i R_i) / (p_i P) with T - t_i likewise, T/P where t_i = 0. */
CLONES static void cce_probs_rows(const void *tv, const float *x, idx rows, idx k, double *value,
                           float *grad, const double *scale, double *work, const double *prm) {
    const float *t = tv;
    for (idx r = 0; r < rows; r++) {
        const float *pr = x + r * k, *tr = t + r * k;
        idx top = row_top(pr, k), ttop = row_top(tr, k);
        double big, others_top, tt, t_others_top;
        row_sums(pr, k, top, &big, &others_top);
        row_sums(tr, k, ttop, &tt, &t_others_top);
        double sum = 0.0;
        SIMD_SUM(sum)
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

/* ------------------------ cross-entropy of probabilities, float32: flat vectorised logs (issue 8)
 *
 * cce_probs below evaluates the same loss as cce_probs_rows (the row loop it replaced, kept for the
 * rows whose sum is 0, inf or NaN and for a gradient written over its own input) with one klog per
 * element and no division, in flat loops: rows of at most SHORT_ROW classes are taken in blocks of
 * whole rows (about BLOCK elements) with the per-row loops running the rows side by side (one lane
 * a row), longer rows one at a time with vectorised loops along the row.
 *
 * Error argument (value). P = sum_j p_j, summed in double from the float32 p_j (non-negative terms:
 * within (k - 1) 2^-53 relative, whatever the order). With q_j = p_j / P <= 1 the loss is
 * sum_j t_j (-log q_j), a sum of non-negative terms, so its relative error is at most the largest
 * relative error of a term, plus 2^-53 for each product t_j * term and k 2^-53 for the double sum.
 * Each term -log q_j is evaluated as
 *   (a) log P - log p_j (klog of P within 2^-50 relative, klogf_d of p_j within 2^-26.5 absolute,
 *       below), for every j but the top, and at the top when p_top <= P/2. Then q_j <= 1/2 (a class
 *       other than the first maximum has p_j <= p_top, and only a unique maximum can exceed P/2), so
 *       -log q_j >= ln 2: the subtraction's absolute error, below 2^-26.5 + 2^-50 |log P| + k 2^-53
 *       (P's own error) + 2^-53 (|log P| + |log p_j|), with |log p_j| <= 104 over the float32 range
 *       (subnormals included) and |log P| <= 89 + ln k, is below 2^-25.9 + k 2^-52.4 relative;
 *   (b) log1p(R / p_top) at the top when p_top > P/2, where (a) would lose relative accuracy as
 *       q_top -> 1 (a loss of 1e-30 is log P - log p of two nearly equal logs): R = the other p_j
 *       summed directly (never P - p_top: k 2^-53 relative), the ratio one rounding, klog1p within
 *       2^-50 (its condition number is below 1): within k 2^-53 + 2^-49.
 * So the value is within 2^-25.8 + 2k 2^-53 relative before its float32 rounding (below 0.3 ulp
 * for k <= 2^20): within 0.8 ulp of the exact value, far inside the 8 ulp contract. Only the log of
 * the mantissa is a float32 polynomial (16 lanes, no division); its error is absolute, so it cannot
 * grow with |log p_j| as a float32 log p_j - log P would. 0 where t_j = 0 (also at p_j = 0), inf
 * where p_j = 0 < t_j (log p_j = -inf). Rows whose P is 0, inf or NaN take cce_probs_rows.
 * Gradient: cce_probs_rows's expression with one division, ((T - t_j) p_j - t_j R_j) / (p_j P)
 * with R_j = P - p_j (the others summed directly at the top), T - t_j likewise (at t's first
 * maximum), T/P (once a row) where t_j = 0: each a few double roundings, as before. */

typedef union { float f; uint32_t u; } bits32;
KINLINE uint32_t fbits32(float x) { bits32 v; v.f = x; return v.u; }
KINLINE float from_bits32(uint32_t u) { bits32 v; v.u = u; return v.f; }

/* log(p) in double for a float32 p >= 0 (subnormals included; -inf at 0, inf at inf, NaN kept), with
 * an absolute error below 2^-26.9 (|log p| <= 104 over the float32 range): p = 2^e m, m in
 * [sqrt(1/2), sqrt(2)) (a subnormal p scaled by 2^24 first, exactly), f = m - 1 exact (Sterbenz),
 * log(m) = f - f^2/2 + f^3 h(f), h a degree-8 polynomial fitted here (least squares on Chebyshev
 * nodes of g(f) = (log1p(f) - f + f^2/2)/f^3, weighted by |f|^3; coefficients rounded to float32:
 * |log1p(f) - (f - f^2/2 + f^3 h(f))| < 2^-30.9 over the interval, measured against mpmath in
 * tests/test_backend_cpu.py). h and c = f h - 1/2 in float32 (16 lanes): c in [-0.64, -0.36] within
 * 2^-23.4 relative, so f^2 c, below 0.11 in magnitude, within 2^-26.6 absolute; f + f^2 c (f^2
 * exact) and e ln 2 (within 2^-46 absolute) in double. So log p is within 2^-26.5 absolute: a term
 * log P - log p of at least ln 2 within 2^-26 relative, what cce_probs needs. */
KINLINE double klogf_d(float p) {
    int sub = p < 0x1p-126f;
    float ps = sub ? p * 0x1p24f : p;
    uint32_t b = fbits32(ps);
    float e = (float)(int32_t)((b >> 23) & 0xffu) - (sub ? 151.0f : 127.0f);
    float m = from_bits32((b & 0x7fffffu) | 0x3f800000u);
    int big = m > 1.41421356f;
    m = big ? m * 0.5f : m;
    e = big ? e + 1.0f : e;
    float f = m - 1.0f;
    float h = 0.06698058545589447f;
    h = h * f - 0.11782003194093704f;
    h = h * f + 0.11973252892494202f;
    h = h * f - 0.12391865253448486f;
    h = h * f + 0.14204512536525726f;
    h = h * f - 0.1666834056377411f;
    h = h * f + 0.200030118227005f;
    h = h * f - 0.25000014901161194f;
    h = h * f + 0.33333295583724976f;
    float c = f * h - 0.5f;
    double fd = (double)f;
    double y = (double)e * 0.6931471805599453 + (fd + (fd * fd) * (double)c);
    y = p == 0.0f ? -INFINITY : y;
    y = p == INFINITY ? INFINITY : y;
    return p != p ? (double)p : y;
}

/* per row of a block of short rows: P, T, the first maxima of p and (with the gradient) t, the
 * others' sums there, and the value from the logs lp of the block's p. The loops run the rows side by
 * side (the row index the inner, vectorised loop; each row's elements in index order) */
KINLINE void block_top_sum(const float *xb, idx nr, idx k, idx *tops, double *sum, double *others) {
    float m[BLOCK];
    PRAGMA(omp simd)
    for (idx r = 0; r < nr; r++) {
        m[r] = xb[r * k];
        tops[r] = 0;
        sum[r] = 0.0;
        others[r] = 0.0;
    }
    for (idx j = 0; j < k; j++) {
        PRAGMA(omp simd)
        for (idx r = 0; r < nr; r++) {
            float v = xb[r * k + j], mr = m[r];
            int up = mr == mr && !(v <= mr);
            m[r] = up ? v : mr;
            tops[r] = up ? j : tops[r];
            sum[r] += (double)v;
        }
    }
    for (idx j = 0; j < k; j++) {
        PRAGMA(omp simd)
        for (idx r = 0; r < nr; r++) {
            double v = (double)xb[r * k + j]; /* loaded outside the select: if-converted */
            others[r] += j == tops[r] ? 0.0 : v;
        }
    }
}

KINLINE void cce_probs_block_rows(const float *pb, const float *tb, const double *lp, idx nr, idx k,
                                  int grad, double *value, double *big, double *tt, idx *tops,
                                  double *others, idx *ttops, double *t_others) {
    double lP[BLOCK], head[BLOCK], acc[BLOCK];
    block_top_sum(pb, nr, k, tops, big, others);
    /* the logs of the row sums, and (b) at every top (used where p_top > P/2) */
    PRAGMA(omp simd)
    for (idx r = 0; r < nr; r++) {
        double ptop = (double)pb[r * k + tops[r]];
        lP[r] = klog(big[r]);
        head[r] = klog1p(others[r] / ptop);
        acc[r] = 0.0;
    }
    for (idx j = 0; j < k; j++) {
        PRAGMA(omp simd)
        for (idx r = 0; r < nr; r++) {
            double tj = (double)tb[r * k + j], term = tj * (lP[r] - lp[r * k + j]);
            acc[r] += (j == tops[r] || tj == 0.0) ? 0.0 : term;
        }
    }
    PRAGMA(omp simd)
    for (idx r = 0; r < nr; r++) {
        idx top = tops[r];
        double ptop = (double)pb[r * k + top], ttop = (double)tb[r * k + top];
        double la = lP[r] - lp[r * k + top], hb = head[r];
        double h = 2.0 * ptop > big[r] ? hb : la, v = acc[r] + ttop * h;
        value[r] = ttop == 0.0 ? acc[r] : v;
    }
    if (grad) block_top_sum(tb, nr, k, ttops, tt, t_others);
}

/* one gradient element, as cce_probs_rows writes it */
KINLINE float cce_probs_grad_at(double p, double tj, double big, double rj, double tp, double trj,
                                double sc) {
    double g = tj == 0.0 ? tp : (trj * p - tj * rj) / (p * big);
    return write_grad(g, sc);
}

CLONES static void cce_probs_short(const float *t, const float *x, idx rows, idx k, double *value,
                                   float *grad, const double *scale, double *work, const double *prm) {
    double lp[BLOCK], bb[BLOCK], tb2[BLOCK], tpb[BLOCK], sb[BLOCK];
    double big[BLOCK], tt[BLOCK], others[BLOCK], t_others[BLOCK];
    idx tops[BLOCK], ttops[BLOCK];
    idx rb = BLOCK / k;
    for (idx r0 = 0; r0 < rows; r0 += rb) {
        idx nr = rows - r0 < rb ? rows - r0 : rb, n = nr * k;
        const float *pb = x + r0 * k, *tb = t + r0 * k;
        PRAGMA(omp simd)
        for (idx i = 0; i < n; i++) lp[i] = klogf_d(pb[i]);
        cce_probs_block_rows(pb, tb, lp, nr, k, grad != NULL, value + r0, big, tt, tops, others,
                             ttops, t_others);
        if (grad) {
            float *gb = grad + r0 * k;
            for (idx r = 0; r < nr; r++) {
                double sc = scale ? scale[r0 + r] : 1.0, tp = tt[r] / big[r];
                for (idx j = 0; j < k; j++) {
                    bb[r * k + j] = big[r];
                    tb2[r * k + j] = tt[r];
                    tpb[r * k + j] = tp;
                    sb[r * k + j] = sc;
                }
            }
            PRAGMA(omp simd)
            for (idx i = 0; i < n; i++) {
                double p = (double)pb[i], tj = (double)tb[i];
                gb[i] = cce_probs_grad_at(p, tj, bb[i], bb[i] - p, tpb[i], tb2[i] - tj, sb[i]);
            }
            for (idx r = 0; r < nr; r++) {
                const float *pr = pb + r * k, *tr = tb + r * k;
                idx a = tops[r], b = ttops[r];
                double sc = sb[r * k], tp = tpb[r * k];
                gb[r * k + a] = cce_probs_grad_at((double)pr[a], (double)tr[a], big[r], others[r], tp,
                                                  a == b ? t_others[r] : tt[r] - (double)tr[a], sc);
                if (b != a)
                    gb[r * k + b] = cce_probs_grad_at((double)pr[b], (double)tr[b], big[r],
                                                      big[r] - (double)pr[b], tp, t_others[r], sc);
            }
        }
        for (idx r = 0; r < nr; r++) {
            if (big[r] > 0.0 && big[r] < INFINITY) continue;
            cce_probs_rows(tb + r * k, pb + r * k, 1, k, value + r0 + r, grad ? grad + (r0 + r) * k : NULL,
                           scale ? scale + r0 + r : NULL, work, prm);
        }
    }
}

/* rows longer than SHORT_ROW, one at a time: the value by (a)/(b) above with vectorised passes
 * along the row, the gradient by cce_probs_rows's loop */
CLONES static void cce_probs_long(const float *t, const float *x, idx rows, idx k, double *value,
                                  float *grad, const double *scale, double *work, const double *prm) {
    for (idx r = 0; r < rows; r++) {
        const float *pr = x + r * k, *tr = t + r * k;
        idx top = row_top(pr, k);
        double big, others_top;
        row_sums(pr, k, top, &big, &others_top);
        if (!(big > 0.0 && big < INFINITY)) {
            cce_probs_rows(tr, pr, 1, k, value + r, grad ? grad + r * k : NULL, scale ? scale + r : NULL,
                           work, prm);
            continue;
        }
        double lP = klog(big), acc = 0.0;
        SIMD_SUM(acc)
        for (idx j = 0; j < k; j++) {
            double tj = (double)tr[j];
            acc += (j == top || tj == 0.0) ? 0.0 : tj * (lP - klogf_d(pr[j]));
        }
        double ptop = (double)pr[top], ttop = (double)tr[top];
        double head = 2.0 * ptop > big ? klog1p(others_top / ptop) : lP - klogf_d(pr[top]);
        value[r] = acc + (ttop == 0.0 ? 0.0 : ttop * head);
        if (grad) {
            double sc = scale ? scale[r] : 1.0, tt, t_others_top;
            idx ttopi = row_top(tr, k);
            row_sums(tr, k, ttopi, &tt, &t_others_top);
            float *gr = grad + r * k;
            double tp = tt / big;
            PRAGMA(omp simd)
            for (idx j = 0; j < k; j++) {
                double p = (double)pr[j], tj = (double)tr[j];
                double rj = j == top ? others_top : big - p;
                double trj = j == ttopi ? t_others_top : tt - tj;
                gr[j] = cce_probs_grad_at(p, tj, big, rj, tp, trj, sc);
            }
        }
    }
}

/* Categorical cross-entropy of renormalised probabilities (crossentropy._from_probabilities), float32:
 * see the error argument above. */
CLONES static void cce_probs(const void *tv, const float *x, idx rows, idx k, double *value, float *grad,
                             const double *scale, double *work, const double *prm) {
    const float *t = tv;
    if (grad && overlaps(grad, x, rows * k))
        cce_probs_rows(t, x, rows, k, value, grad, scale, work, prm);
    else if (k <= SHORT_ROW)
        cce_probs_short(t, x, rows, k, value, grad, scale, work, prm);
    else
        cce_probs_long(t, x, rows, k, value, grad, scale, work, prm);
}


/* Sparse categorical cross-entropy of renormalised probabilities (crossentropy._scce_hard): value
 * log1p(R_y / p_y), R_y = P - p_y (the others summed directly when y is the top); gradient 1/P, and
 * -(R_y / p_y) / P at the label. */
CLONES static void scce_probs_rows(const void *tv, const float *x, idx rows, idx k, double *value,
                            float *grad, const double *scale, double *work, const double *prm) {
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

/* scce_probs_rows's loss without a maximum: R_y = the p_j other than the label's, summed directly
 * in double (non-negative terms: within (k - 1) 2^-53 relative, whatever the order, so as accurate
 * as the others' sum at the top that scce_probs_rows takes, and more than P - p_y elsewhere),
 * value log1p(R_y / p_y) (the ratio one rounding, klog1p within 2^-50, condition number below 1),
 * gradient 1/P and -(R_y / p_y) / P at the label with P = R_y + p_y (one rounding more). One pass
 * over the row for the sum, one log1p and one division a row; rows of at most SHORT_ROW classes in
 * blocks with the rows side by side (one lane a row). Rows whose label is outside [0, k) (ignored
 * ones) or whose P is not finite and positive take scce_probs_rows (the same special values). */
KINLINE void scce_probs_grad_row(float *gr, idx k, idx y, double big, double ry, double py, double sc) {
    float w = write_grad(1.0 / big, sc);
    PRAGMA(omp simd)
    for (idx j = 0; j < k; j++) gr[j] = w;
    gr[y] = write_grad(-(ry / py) / big, sc);
}

CLONES static void scce_probs(const void *tv, const float *x, idx rows, idx k, double *value, float *grad,
                              const double *scale, double *work, const double *prm) {
    const int64_t *label = tv;
    double rs[BLOCK], ps[BLOCK];
    idx ys[BLOCK];
    idx rb = k <= SHORT_ROW ? BLOCK / k : 1;
    for (idx r0 = 0; r0 < rows; r0 += rb) {
        idx nr = rows - r0 < rb ? rows - r0 : rb;
        const float *pb = x + r0 * k;
        PRAGMA(omp simd)
        for (idx r = 0; r < nr; r++) {
            int64_t yl = label[r0 + r];
            ys[r] = (yl < 0 || yl >= k) ? 0 : (idx)yl;
            rs[r] = 0.0;
        }
        if (k <= SHORT_ROW) {
            for (idx j = 0; j < k; j++) {
                PRAGMA(omp simd)
                for (idx r = 0; r < nr; r++) {
                    double v = (double)pb[r * k + j];
                    rs[r] += j == ys[r] ? 0.0 : v;
                }
            }
        } else {
            double o = 0.0;
            idx y = ys[0];
            SIMD_SUM(o)
            for (idx j = 0; j < k; j++) {
                double v = (double)pb[j];
                o += j == y ? 0.0 : v;
            }
            rs[0] = o;
        }
        for (idx r = 0; r < nr; r++) ps[r] = (double)pb[r * k + ys[r]];
        PRAGMA(omp simd)
        for (idx r = 0; r < nr; r++) value[r0 + r] = klog1p(rs[r] / ps[r]);
        for (idx r = 0; r < nr; r++) {
            int64_t yl = label[r0 + r];
            double big = rs[r] + ps[r];
            float *gr = grad ? grad + (r0 + r) * k : NULL;
            if (yl < 0 || yl >= k || !(big > 0.0 && big < INFINITY)) {
                scce_probs_rows(label + r0 + r, pb + r * k, 1, k, value + r0 + r, gr,
                                scale ? scale + r0 + r : NULL, work, prm);
                continue;
            }
            if (gr) scce_probs_grad_row(gr, k, ys[r], big, rs[r], ps[r], scale ? scale[r0 + r] : 1.0);
        }
    }
}

/* ------------------------------------------------------------------ regression (regression.py) */

/* ------------------------------------------------------------------------ margins (margin.py) */

/* Categorical hinge (margin._categorical_hinge): m = 1 + neg - sum_j t_j f_j with
 * neg = max_j (1 - t_j) f_j (0 where 1 - t_j = 0), summed with compensation; value max(0, m);
 * gradient kink(m) ((1 - t_j) w_j - t_j), w_j = 1 at the maximum (1/2 each where it is tied);
 * NaN rows NaN. */
CLONES static void categorical_hinge(const void *tv, const float *x, idx rows, idx k, double *value,
                              float *grad, const double *scale, double *work, const double *prm) {
    const float *t = tv;
    for (idx r = 0; r < rows; r++) {
        const float *fr = x + r * k, *tr = t + r * k;
        double neg = -INFINITY;
        int nan = 0;
        for (idx j = 0; j < k; j++) {
            double tj = (double)tr[j], fj = (double)fr[j];
            double v = xmul(1.0 - tj, fj);
            nan |= v != v;
            neg = v > neg ? v : neg;
            work[j] = -xmul(tj, fj);
        }
        neg = nan ? NAN : neg;
        double m = acc_sum(work, k, 1.0, neg);
        double val = max0(m);
        value[r] = val;
        if (grad) {
            double sc = scale ? scale[r] : 1.0, a = kink(m);
            float *gr = grad + r * k;
            idx count = 0;
            for (idx j = 0; j < k; j++) count += xmul(1.0 - (double)tr[j], (double)fr[j]) == neg;
            double wt = count > 1 ? 0.5 : 1.0;
            for (idx j = 0; j < k; j++) {
                double tj = (double)tr[j], v = xmul(1.0 - tj, (double)fr[j]);
                double g = a * ((1.0 - tj) * (v == neg ? wt : 0.0) - tj);
                gr[j] = write_grad(val != val ? val : g, sc);
            }
        }
    }
}

/* Multilabel soft margin (margin._multilabel_soft_margin; prm = [1, w_0 .. w_{k-1}], the weights 1
 * without the option, so that the loops read them unconditionally and vectorise):
 * 1/k sum_j w_j (y_j softplus(-x_j) + (1 - y_j) softplus(x_j)) (xmul products);
 * gradient w_j ((1 - y_j) sigmoid(x_j) - y_j sigmoid(-x_j)) / k; NaN rows NaN. */
CLONES static void multilabel_soft_margin(const void *tv, const float *x, idx rows, idx k,
                                          double *value, float *grad, const double *scale,
                                          double *work, const double *prm) {
    const float *y = tv;
    const double *w = prm + 1;
    double inv_k = 1.0 / (double)k;
    for (idx r = 0; r < rows; r++) {
        const float *xr = x + r * k, *yr = y + r * k;
        double sum = 0.0, sc = scale ? scale[r] : 1.0;
        SIMD_SUM(sum)
        for (idx j = 0; j < k; j++) {
            double xv = (double)xr[j], yv = (double)yr[j];
            double tail = klog1p(kexp(-fabs(xv)));
            double sp_pos = max0(xv) + tail, sp_neg = max0(-xv) + tail;
            double term = xmul(yv, sp_neg) + xmul(1.0 - yv, sp_pos);
            sum += xmul(w[j], term);
        }
        double val = sum * inv_k;
        value[r] = val;
        if (grad) {
            float *gr = grad + r * k;
            for (idx j = 0; j < k; j++) {
                double xv = (double)xr[j], yv = (double)yr[j];
                double e = kexp(-fabs(xv)), big = 1.0 / (1.0 + e), small = e * big;
                double sig_pos = xv >= 0.0 ? big : small, sig_neg = xv >= 0.0 ? small : big;
                double g = xmul(1.0 - yv, sig_pos) - xmul(yv, sig_neg);
                g = w[j] * g;
                gr[j] = write_grad(val != val ? val : g * inv_k, sc);
            }
        }
    }
}

/* Labels of a sparse kernel: those outside [0, k) (ignored samples) read class 0. */
KINLINE idx label_of(const int64_t *label, idx r, idx k) {
    int64_t y = label[r];
    return (y < 0 || y >= k) ? 0 : (idx)y;
}

/* Multiclass hinge (margin._multiclass_hinge): m = 1 + (top - s_y) with top the maximum over the
 * other classes and top - s_y exact (TwoSum); value max(0, m); gradient kink(m) (w_j - [j = y]),
 * w = 1 at the best other class (1/2 each where tied); NaN rows NaN. */
CLONES static void multiclass_hinge(const void *tv, const float *x, idx rows, idx k, double *value,
                             float *grad, const double *scale, double *work, const double *prm) {
    const int64_t *label = tv;
    for (idx r = 0; r < rows; r++) {
        const float *sr = x + r * k;
        idx y = label_of(label, r, k);
        double sy = (double)sr[y], top = -INFINITY;
        int nan = 0;
        for (idx j = 0; j < k; j++) {
            double v = j == y ? -INFINITY : (double)sr[j];
            nan |= v != v;
            top = v > top ? v : top;
        }
        top = nan ? NAN : top;
        double e, d = two_sum(top, -sy, &e);
        e = e - e == 0.0 ? e : 0.0;
        double m = (1.0 + d) + e;
        m = sy != sy ? sy : m;
        double val = max0(m);
        value[r] = val;
        if (grad) {
            double sc = scale ? scale[r] : 1.0, a = kink(m);
            float *gr = grad + r * k;
            idx count = 0;
            for (idx j = 0; j < k; j++) count += (j == y ? -INFINITY : (double)sr[j]) == top;
            double wt = count > 1 ? 0.5 : 1.0;
            for (idx j = 0; j < k; j++) {
                double v = j == y ? -INFINITY : (double)sr[j];
                double g = a * ((v == top ? wt : 0.0) - (j == y ? 1.0 : 0.0));
                gr[j] = write_grad(val != val ? val : g, sc);
            }
        }
    }
}

/* Multi-margin (margin._multi_margin; prm = [p, margin, has weight, w_0 .. w_{k-1}]):
 * w_y/k sum_{j != y} max(0, m_j)^p, m_j = margin + (x_j - x_y) with x_j - x_y exact (TwoSum);
 * gradient w_y/k (p max(0, m_j)^(p-1), kink 1/2 for p = 1) at j != y, minus their sum at y;
 * w_y multiplies as xmul; NaN rows NaN. */
/* one row's terms (the sum returned) and, with SLOPES, slopes of multi_margin; P2 and SLOPES are
 * constant at each call, so each of the four variants is one vectorised loop; *ssum: the slopes' sum */
KINLINE double multi_margin_row(const float *xr, idx k, idx y, double margin, const int P2,
                                const int SLOPES, double *slopes, double *ssum_out) {
    double xy = (double)xr[y], sum = 0.0, ssum = 0.0;
    SIMD_SUM2(sum, ssum)
    for (idx j = 0; j < k; j++) {
        double e, d = two_sum((double)xr[j], -xy, &e);
        e = e - e == 0.0 ? e : 0.0;
        double m = (margin + d) + e;
        m = j == y ? -INFINITY : m;
        double a = max0(m);
        sum += P2 ? a * a : a;
        if (SLOPES) {
            double slope = P2 ? 2.0 * a : kink(m);
            slopes[j] = slope;
            ssum += slope;
        }
    }
    *ssum_out = ssum;
    return sum;
}

CLONES static void multi_margin(const void *tv, const float *x, idx rows, idx k, double *value,
                                float *grad, const double *scale, double *work, const double *prm) {
    const int64_t *label = tv;
    int p2 = prm[0] == 2.0, has_w = prm[2] != 0.0;
    double margin = prm[1], inv_k = 1.0 / (double)k;
    const double *w = prm + 3;
    for (idx r = 0; r < rows; r++) {
        const float *xr = x + r * k;
        idx y = label_of(label, r, k);
        double sum, ssum;
        if (grad) sum = p2 ? multi_margin_row(xr, k, y, margin, 1, 1, work, &ssum)
                           : multi_margin_row(xr, k, y, margin, 0, 1, work, &ssum);
        else sum = p2 ? multi_margin_row(xr, k, y, margin, 1, 0, work, &ssum)
                      : multi_margin_row(xr, k, y, margin, 0, 0, work, &ssum);
        double wy = has_w ? w[y] : 1.0;
        double val = sum * inv_k;
        val = has_w ? xmul(wy, val) : val;
        value[r] = val;
        if (grad) {
            double sc = scale ? scale[r] : 1.0;
            float *gr = grad + r * k;
            for (idx j = 0; j < k; j++) {
                double g = (j == y ? -ssum : work[j]) * inv_k;
                g = has_w ? xmul(wy, g) : g;
                gr[j] = write_grad(val != val ? val : g, sc);
            }
        }
    }
}

/* ------------------------------------------ pair and ranking losses (embedding.py, margin.py) */

/* Hinge embedding (embedding._hinge_embedding; prm = [margin]): term x for t = 1, max(0, m) with
 * m = margin - x otherwise (NaN for a NaN label); derivative 1 (t = 1) or -kink(m), NaN where m is.
 * m is one double rounding of the exact margin - x (the generic kernel's own float64 rounding for
 * widened float32 input, and for float64 input); every other step is exact, then the row mean. */
KINLINE double hinge_embedding_at(double x, double t, const double *prm, double *grad_out) {
    double m = prm[0] - x;
    int similar = t == 1.0;
    if (grad_out) *grad_out = m != m ? m : (similar ? 1.0 : -kink(m));
    return similar ? x : (t != t ? t : max0(m));
}

ELEMENTWISE_KERNEL(hinge_embedding, hinge_embedding_at)
ELEMENTWISE_KERNEL_D(hinge_embedding_d, hinge_embedding_at)

/* Margin ranking (embedding._margin_ranking; prm = [margin], extra = x2), float32 input in double:
 * m = (margin + d) + e with d + e = t x2 - t x1 exactly (TwoSum; t = +-1 makes t x exact; e is 0
 * where an infinite score makes it NaN, as margin.shifted_difference does). Error: where margin + d
 * cancels (margin and -d within a factor 2) Sterbenz makes it exact and m is one rounding of the
 * exact value M; elsewhere |margin + d| >= |d|/2 >= 2^52 |e|, so m is within 2^-52 (1 + 2^-51) |M|.
 * The terms max(0, m) are non-negative: the row mean adds (k + 1) 2^-53 relative, far below
 * float32's 2^-24 (hence no flagged rows: a kernel3_fn, but not a CHECKED_KERNEL).
 * Gradient wrt x1: -t kink(m) / k (NaN where m is NaN); wrt x2 it is the negative, written too when
 * prm[1] = n > 0, at grad + n (numpy.py passes n = all rows' elements: the second half of one
 * (2, rows, k) buffer, whichever rows this call covers). */
CLONES static void margin_ranking(const void *tv, const float *x, const float *x2, idx rows, idx k,
                                  double *value, float *grad, const double *scale, double *work,
                                  const double *prm) {
    const float *yt = tv;
    double margin = prm[0], inv_k = 1.0 / (double)k;
    (void)work;
    for (idx r = 0; r < rows; r++) {
        const float *ar = x + r * k, *br = x2 + r * k, *tr = yt + r * k;
        double sum = 0.0, sc = scale ? scale[r] : 1.0, gs = inv_k * sc;
        float *gr = grad ? grad + r * k : NULL, *g2 = grad && prm[1] > 0.0 ? gr + (idx)prm[1] : NULL;
        int zero = sc == 0.0;
        if (g2) {
            SIMD_SUM(sum)
            for (idx j = 0; j < k; j++) {
                double t = (double)tr[j], e, d = two_sum(t * (double)br[j], -(t * (double)ar[j]), &e);
                e = e - e == 0.0 ? e : 0.0;
                double m = (margin + d) + e;
                sum += max0(m);
                double g = m != m ? m : -t * kink(m);
                float gf = zero ? 0.0f : (float)(g * gs);
                gr[j] = gf;
                g2[j] = zero ? 0.0f : -gf;
            }
        } else if (gr) {
            SIMD_SUM(sum)
            for (idx j = 0; j < k; j++) {
                double t = (double)tr[j], e, d = two_sum(t * (double)br[j], -(t * (double)ar[j]), &e);
                e = e - e == 0.0 ? e : 0.0;
                double m = (margin + d) + e;
                sum += max0(m);
                double g = m != m ? m : -t * kink(m);
                gr[j] = zero ? 0.0f : (float)(g * gs);
            }
        } else {
            SIMD_SUM(sum)
            for (idx j = 0; j < k; j++) {
                double t = (double)tr[j], e, d = two_sum(t * (double)br[j], -(t * (double)ar[j]), &e);
                e = e - e == 0.0 ? e : 0.0;
                sum += max0((margin + d) + e);
            }
        }
        value[r] = sum * inv_k;
    }
}

/* Multilabel margin (margin._multilabel_margin): y_true holds each row's target classes (float
 * indices) up to the first negative entry. For each listed target c (a class listed twice counts
 * twice) and each class i outside the target set: m = (1 + d) + e, d + e = x_i - x_c exactly
 * (TwoSum; e 0 where an infinite score makes it NaN), term max(0, m), slope a = kink(m). As for margin
 * ranking m is within 2^-52 (1 + 2^-51) |exact| and the terms are non-negative: the row's sum and
 * the division by k add (t k + 1) 2^-53 relative for t targets. value = sum / k; gradient
 * (sum_c a_ci) / k at the classes i outside the set, -(sum_i a_ci) / k summed over the listings of
 * each target c (sums of halves and ones: exact); a NaN row (value NaN) gets NaN gradients.
 * Entries out of [0, k) end the list too (the caller's check refuses them first). work: 2 k doubles
 * (the target flags, the slope sums). */
CLONES static void multilabel_margin(const void *tv, const float *x, idx rows, idx k, double *value,
                                     float *grad, const double *scale, double *work,
                                     const double *prm) {
    const float *yt = tv;
    double inv_k = 1.0 / (double)k, *is_t = work, *acc = work + k;
    (void)prm;
    for (idx r = 0; r < rows; r++) {
        const float *xr = x + r * k, *tr = yt + r * k;
        idx nt = 0;
        for (idx j = 0; j < k; j++) { is_t[j] = 0.0; acc[j] = 0.0; }
        while (nt < k && tr[nt] >= 0.0f && tr[nt] < (float)k) is_t[(idx)tr[nt++]] = 1.0;
        double sum = 0.0;
        for (idx q = 0; q < nt; q++) {
            idx c = (idx)tr[q];
            double xc = (double)xr[c], s = 0.0, srow = 0.0;
            SIMD_SUM2(s, srow)
            for (idx i = 0; i < k; i++) {
                double e, d = two_sum((double)xr[i], -xc, &e);
                e = e - e == 0.0 ? e : 0.0;
                double m = (1.0 + d) + e;
                int out = is_t[i] == 0.0;
                double a = out ? kink(m) : 0.0;
                s += out ? max0(m) : 0.0;
                srow += a;
                acc[i] += a;
            }
            sum += s;
            acc[c] -= srow;
        }
        double val = sum * inv_k;
        value[r] = val;
        if (grad) {
            double sc = scale ? scale[r] : 1.0;
            float *gr = grad + r * k;
            for (idx j = 0; j < k; j++) gr[j] = write_grad(val != val ? val : acc[j] * inv_k, sc);
        }
    }
}

/* multilabel_margin for float64 input (labels float64 too): the same terms, now from double inputs
 * (TwoSum exact for any doubles, so each m within 2^-52 (1 + 2^-51) of its exact value as above);
 * each target's terms summed with acc_sum (compensated) and those sums added as a double-length
 * pair, so the row's value stays within a few float64 ulps (the plain sum of up to k^2 terms would
 * not). The gradients are exact counts over k, as in float32. work: 3 k doubles. */
CLONES static void multilabel_margin_d(const void *tv, const double *x, idx rows, idx k,
                                       double *value, double *grad, const double *scale,
                                       double *work, const double *prm) {
    const double *yt = tv;
    double *is_t = work, *acc = work + k, *term = work + 2 * k;
    (void)prm;
    for (idx r = 0; r < rows; r++) {
        const double *xr = x + r * k, *tr = yt + r * k;
        idx nt = 0;
        for (idx j = 0; j < k; j++) { is_t[j] = 0.0; acc[j] = 0.0; }
        while (nt < k && tr[nt] >= 0.0 && tr[nt] < (double)k) is_t[(idx)tr[nt++]] = 1.0;
        double hi = 0.0, lo = 0.0;
        for (idx q = 0; q < nt; q++) {
            idx c = (idx)tr[q];
            double xc = xr[c], srow = 0.0;
            SIMD_SUM(srow)
            for (idx i = 0; i < k; i++) {
                double e, d = two_sum(xr[i], -xc, &e);
                e = e - e == 0.0 ? e : 0.0;
                double m = (1.0 + d) + e;
                int out = is_t[i] == 0.0;
                double a = out ? kink(m) : 0.0;
                term[i] = out ? max0(m) : 0.0;
                srow += a;
                acc[i] += a;
            }
            double e, sq = acc_sum(term, k, 0.0, 0.0);
            hi = two_sum(hi, sq, &e);
            lo += e - e == 0.0 ? e : 0.0;
            acc[c] -= srow;
        }
        double val = (hi + lo) / (double)k;  /* divisions: one rounding each, as the generic kernel */
        value[r] = val;
        if (grad) {
            double sc = scale ? scale[r] : 1.0;
            double *gr = grad + r * k;
            for (idx j = 0; j < k; j++) {
                double g = val != val ? val : acc[j] / (double)k;
                gr[j] = sc == 0.0 ? 0.0 : g * sc;
            }
        }
    }
}

/* ------------------------------------------------------------------ divergences (divergence.py) */

/* KL with log-probability predictions (divergence._kl_div, widened branch; prm[0] = log_target):
 * terms t_j (log t_j - x_j) (0 where t_j = 0), t = exp(y) with log_target (t (y - x) then); NaN
 * where x or t is NaN; the row summed with compensation. Gradient -t. */
CLONES static void kl_div(const void *tv, const float *x, idx rows, idx k, double *value, float *grad,
                   const double *scale, double *work, const double *prm) {
    const float *y = tv;
    int log_target = prm[0] != 0.0;
    for (idx r = 0; r < rows; r++) {
        const float *xr = x + r * k, *yr = y + r * k;
        for (idx j = 0; j < k; j++) {
            double xv = (double)xr[j], yv = (double)yr[j];
            double t = log_target ? kexp(yv) : yv;
            double lt = log_target ? yv : klog(t > 0.0 ? t : 1.0);
            double term = t == 0.0 ? 0.0 : t * (lt - xv);
            work[j] = (xv != xv || t != t) ? NAN : term;
        }
        value[r] = acc_sum(work, k, 0.0, 0.0);
        if (grad) {
            double sc = scale ? scale[r] : 1.0;
            float *gr = grad + r * k;
            for (idx j = 0; j < k; j++) {
                double yv = (double)yr[j];
                gr[j] = write_grad(-(log_target ? kexp(yv) : yv), sc);
            }
        }
    }
}

/* 1/(k(2k - 1)), k = 2..33 (divergence._JS_SERIES) */
static const double JS_SERIES[32] = {
    1.0/6, 1.0/15, 1.0/28, 1.0/45, 1.0/66, 1.0/91, 1.0/120, 1.0/153, 1.0/190, 1.0/231, 1.0/276,
    1.0/325, 1.0/378, 1.0/435, 1.0/496, 1.0/561, 1.0/630, 1.0/703, 1.0/780, 1.0/861, 1.0/946,
    1.0/1035, 1.0/1128, 1.0/1225, 1.0/1326, 1.0/1431, 1.0/1540, 1.0/1653, 1.0/1770, 1.0/1891,
    1.0/2016, 1.0/2145};

/* one Jensen-Shannon term and its gradient (divergence._js, line by line) */
KINLINE double js_term(double t, double p, double *grad_out) {
    const double HALF_LOG2 = 0.5 * 0.6931471805599453;
    double d_lo, s_lo;
    double d_hi = two_sum(t, -p, &d_lo), s_hi = two_sum(t, p, &s_lo);
    d_lo = d_lo - d_lo == 0.0 ? d_lo : 0.0;
    s_lo = s_lo - s_lo == 0.0 ? s_lo : 0.0;
    int positive = s_hi > 0.0;
    double safe_s = positive ? s_hi : 1.0, safe_d = d_hi != 0.0 ? d_hi : 1.0;
    double s_corr = 1.0 - s_lo / safe_s;
    double rr = positive ? (d_hi / safe_s) * (s_corr + d_lo / safe_d) : 0.0;
    int near = fabs(rr) <= 0.6;
    double r2 = near ? rr * rr : 0.0;
    double series = JS_SERIES[31];
#pragma GCC unroll 32
    for (int i = 30; i >= 0; i--) series = series * r2 + JS_SERIES[i];
    series = 1.0 + series * r2;
    double d2_over_s = (d_hi * d_hi / safe_s) * (s_corr + 2.0 * d_lo / safe_d);
    double near_term = d_hi != 0.0 ? 0.25 * d2_over_s * series : 0.0;
    double ratio_t = (2.0 * t / safe_s) * s_corr, ratio_p = (2.0 * p / safe_s) * s_corr;
    double lp = klog(near ? 1.0 : ratio_p);
    double far_term = 0.5 * (xmul(t, klog(near ? 1.0 : ratio_t)) + xmul(p, lp));
    double term = positive ? (near ? near_term : far_term) : 0.0;
    int nan = s_hi != s_hi;
    if (grad_out) {
        double g = positive ? (near ? 0.5 * klog1p(-(near ? rr : 0.0)) : 0.5 * lp) : HALF_LOG2;
        *grad_out = nan ? s_hi : g;
    }
    return nan ? s_hi : term;
}

/* Jensen-Shannon divergence (divergence._js): the series (t - p)^2/(4 (t + p)) G(r^2) near equality
 * (with t - p and t + p as exact pairs), the two logarithms farther apart; gradient
 * 1/2 log(2 p / (t + p)). */
CLONES static void jensen_shannon(const void *tv, const float *x, idx rows, idx k, double *value,
                                  float *grad, const double *scale, double *work,
                                  const double *prm) {
    const float *t = tv;
    for (idx r = 0; r < rows; r++) {
        const float *pr = x + r * k, *tr = t + r * k;
        double sum = 0.0, sc = scale ? scale[r] : 1.0;
        SIMD_SUM(sum)
        for (idx j = 0; j < k; j++) sum += js_term((double)tr[j], (double)pr[j], NULL);
        value[r] = sum;
        if (grad) {
            float *gr = grad + r * k;
            for (idx j = 0; j < k; j++) {
                double g;
                js_term((double)tr[j], (double)pr[j], &g);
                gr[j] = write_grad(g, sc);
            }
        }
    }
}

/* Total variation (divergence._tv): 1/2 sum |p - t|; gradient sign(p - t)/2. */
CLONES static void total_variation(const void *tv, const float *x, idx rows, idx k, double *value,
                                   float *grad, const double *scale, double *work,
                                   const double *prm) {
    const float *t = tv;
    for (idx r = 0; r < rows; r++) {
        const float *pr = x + r * k, *tr = t + r * k;
        double sum = 0.0, sc = scale ? scale[r] : 1.0;
        SIMD_SUM(sum)
        for (idx j = 0; j < k; j++) sum += fabs((double)pr[j] - (double)tr[j]);
        value[r] = 0.5 * sum;
        if (grad) {
            float *gr = grad + r * k;
            for (idx j = 0; j < k; j++)
                gr[j] = write_grad(0.5 * sign_of((double)pr[j] - (double)tr[j]), sc);
        }
    }
}

/* 1/(2k + 1), k = 1..17 (_numerics._ATANH_SERIES) */
static const double ATANH_SERIES[17] = {
    1.0/3, 1.0/5, 1.0/7, 1.0/9, 1.0/11, 1.0/13, 1.0/15, 1.0/17, 1.0/19, 1.0/21, 1.0/23, 1.0/25,
    1.0/27, 1.0/29, 1.0/31, 1.0/33, 1.0/35};

/* generalized KL term (divergence._generalized_kl on _numerics.kl_parts): near equality
 * (|r| <= 1/3, r = (y - p)/(y + p), y > 0) the excess r (r (y + p) + 2 y (atanh(r)/r - 1)),
 * otherwise y log(y/p) + (p - y) (0 log 0 = 0; inf where p = 0 < y); NaN kept. */
KINLINE double gkl_term(double y, double p) {
    double ssum = y + p;
    double rr = ssum > 0.0 ? (y - p) / (ssum > 0.0 ? ssum : 1.0) : 0.0;
    int near = fabs(rr) <= 1.0 / 3.0 && y > 0.0;
    double rn = near ? rr : 0.0, r2 = rn * rn;
    double acc = ATANH_SERIES[16];
#pragma GCC unroll 17
    for (int i = 15; i >= 0; i--) acc = acc * r2 + ATANH_SERIES[i];
    double excess = rn * (rn * ssum + 2.0 * y * (acc * r2));
    double safe_y = y > 0.0 ? y : 1.0, safe_p = p > 0.0 ? p : 1.0;
    double quotient = safe_y / safe_p;
    int finite_q = quotient > 0.0 && quotient < INFINITY;
    double log_ratio = finite_q ? klog(finite_q ? quotient : 1.0) : klog(safe_y) - klog(safe_p);
    double direct = y > 0.0 ? y * log_ratio : 0.0;
    direct = (p == 0.0 && y > 0.0) ? INFINITY : direct;
    double first = near ? excess : direct, second = near ? y - p : 0.0;
    double term = first + (second != 0.0 ? 0.0 : p - y);
    term = p == INFINITY ? p : term;  /* the limit, where inf - inf gives NaN (y is finite: checked) */
    return ssum != ssum ? ssum + ssum : term;
}

/* Generalized KL divergence of measures (log_predictions=False): sum of gkl_term; gradient
 * (p - t)/p, 1 where t = 0, -inf where p = 0 < t, NaN where either is NaN. */
CLONES static void generalized_kl(const void *tv, const float *x, idx rows, idx k, double *value,
                                  float *grad, const double *scale, double *work,
                                  const double *prm) {
    const float *t = tv;
    for (idx r = 0; r < rows; r++) {
        const float *pr = x + r * k, *tr = t + r * k;
        double sum = 0.0, sc = scale ? scale[r] : 1.0;
        SIMD_SUM(sum)
        for (idx j = 0; j < k; j++) sum += gkl_term((double)tr[j], (double)pr[j]);
        value[r] = sum;
        if (grad) {
            float *gr = grad + r * k;
            for (idx j = 0; j < k; j++) {
                double p = (double)pr[j], tj = (double)tr[j];
                double g = (tj == 0.0 || p == INFINITY) ? 1.0 : (p - tj) / (p > 0.0 ? p : 1.0);
                g = (p == 0.0 && tj > 0.0) ? -INFINITY : g;
                g = (p != p || tj != tj) ? p + tj : g;
                gr[j] = write_grad(g, sc);
            }
        }
    }
}

/* ------------------------------------------------------------ classification (classification.py) */

/* Binary focal cross-entropy (classification._binary_focal; prm = [ls, gamma, balancing, alpha]):
 * t = y(1 - ls) + ls/2, c = (1 - y)(1 - ls) + ls/2, slope = (1 - 2y)(1 - ls); per element
 * w u^gamma b (xmul), w = t alpha + c (1 - alpha) with balancing; the mean over the row.
 * From logits: u = t sigmoid(-z) + c sigmoid(z), b = t softplus(-z) + c softplus(z);
 * gradient w u^g (g slope h b + sigmoid(z) - t), h = s sc / u (s or sc for a hard label).
 * Returns the element's value; *grad_out (unscaled, not yet over k) when asked. */
KINLINE double focal_logits_at(double z, double y, const double *prm, double *grad_out) {
    double ls = prm[0], gamma = prm[1], alpha = prm[3];
    int balance = prm[2] != 0.0;
    double t = ls != 0.0 ? y * (1.0 - ls) + 0.5 * ls : y;
    double c = ls != 0.0 ? (1.0 - y) * (1.0 - ls) + 0.5 * ls : 1.0 - y;
    double e = kexp(-fabs(z)), big = 1.0 / (1.0 + e), small = e * big;
    double s = z >= 0.0 ? big : small, sc_ = z >= 0.0 ? small : big;
    double tail = klog1p(e);
    double u = xmul(t, sc_) + xmul(c, s);
    double b = xmul(t, max0(-z) + tail) + xmul(c, max0(z) + tail);
    double focal = kpow(u, gamma);
    double w = balance ? t * alpha + c * (1.0 - alpha) : 1.0;
    double v = xmul(focal, b);
    if (grad_out) {
        double slope = ls != 0.0 ? (1.0 - 2.0 * y) * (1.0 - ls) : 1.0 - 2.0 * y;
        double h = t == 1.0 ? s : (t == 0.0 ? sc_ : (s * sc_) / (u > 0.0 ? u : 1.0));
        double db = xmul(1.0 - y, s) - xmul(y, sc_);
        db = ls != 0.0 ? db + ls * (y - 0.5) : db;
        double g = focal * ((gamma * slope) * xmul(h, b) + db);
        *grad_out = balance ? w * g : g;
    }
    return balance ? w * v : v;
}

/* Binary focal from probabilities: u = t (1 - p) + c p, b = -t log p - c log(1 - p); gradient
 * w u^g (g slope b/u + (p - t)/(p (1 - p))) (b/u -> 1 where u = 0; the BCE's limits without
 * smoothing), the log term's slope alone where b is infinite. */
KINLINE double focal_probs_at(double p, double y, const double *prm, double *grad_out) {
    double ls = prm[0], gamma = prm[1], alpha = prm[3];
    int balance = prm[2] != 0.0;
    double t = ls != 0.0 ? y * (1.0 - ls) + 0.5 * ls : y;
    double c = ls != 0.0 ? (1.0 - y) * (1.0 - ls) + 0.5 * ls : 1.0 - y;
    double lq, lp = log_both(p, &lq);
    double u = xmul(t, 1.0 - p) + xmul(c, p);
    double b = xmul(t, -lp) + xmul(c, -lq);
    double focal = kpow(u, gamma);
    double w = balance ? t * alpha + c * (1.0 - alpha) : 1.0;
    double v = xmul(focal, b);
    if (grad_out) {
        double slope = ls != 0.0 ? (1.0 - 2.0 * y) * (1.0 - ls) : 1.0 - 2.0 * y;
        double ratio = u > 0.0 ? b / (u > 0.0 ? u : 1.0) : 1.0;
        double diff = ls != 0.0 ? (p - y) + ls * (y - 0.5) : p - y;
        double db = diff / (p * (1.0 - p));
        double limit = y == 0.0 ? 1.0 / (1.0 - p) : (y == 1.0 ? -1.0 / p : db);
        db = ls == 0.0 ? limit : db;
        double g = focal * ((gamma * slope) * ratio + db);
        g = fabs(b) == INFINITY ? db : g;
        *grad_out = balance ? w * g : g;
    }
    return balance ? w * v : v;
}

ELEMENTWISE_KERNEL(focal_logits, focal_logits_at)
ELEMENTWISE_KERNEL(focal_probs, focal_probs_at)

/* The softmax pieces of classification._softmax_parts for element j, given the row maximum md at
 * index top, e_j (0 at the top), S and lg = log1p(S): q = softmax, n = -log q, v = 1 - q. */
KINLINE void softmax_at(double xj, double ej, int is_top, double md, double s, double lg,
                              double *q, double *n, double *v) {
    double z = 1.0 + s;
    *q = is_top ? 1.0 / z : ej / z;
    *n = is_top ? lg : (md - xj) + lg;  /* 0 + lg at the top, also for an infinite top */
    *v = is_top ? s / z : (1.0 + (s - ej)) / z;
}

/* Categorical focal cross-entropy from logits (classification._categorical_focal_kept, widened;
 * prm = [alpha, gamma, ls]): alpha sum_j t_j v_j^g n_j, t = y (1 - ls) + ls/k; gradient
 * alpha (q_i sum_{j != i} c_j - t_i v_i^g (g q_i n_i + v_i)), c_j = t_j v_j^g (g q_j n_j / v_j + 1)
 * (q_j where v_j = 0), the others' sum taken directly at the largest c. */
CLONES static void cfocal_logits(const void *tv, const float *x, idx rows, idx k, double *value,
                                 float *grad, const double *scale, double *work,
                                 const double *prm) {
    const float *yt = tv;
    double alpha = prm[0], gamma = prm[1], ls = prm[2], lsk = ls / (double)k;
    double *e = work, *f = work + k, *c = work + 2 * k;
    for (idx r = 0; r < rows; r++) {
        const float *xr = x + r * k, *yr = yt + r * k;
        idx top = row_top(xr, k);
        double s = softmax_others(xr, k, top, e);
        double md = (double)xr[top], lg = klog1p(s), sum = 0.0;
        SIMD_SUM(sum)
        for (idx j = 0; j < k; j++) {
            double q, n, v, t = ls != 0.0 ? (double)yr[j] * (1.0 - ls) + lsk : (double)yr[j];
            softmax_at((double)xr[j], e[j], j == top, md, s, lg, &q, &n, &v);
            double fj = kpow(v, gamma);
            f[j] = fj;
            c[j] = xmul(t, fj * (gamma * (v > 0.0 ? xmul(q, n) / (v > 0.0 ? v : 1.0) : q) + 1.0));
            sum += xmul(t, xmul(fj, n));
        }
        value[r] = alpha * sum;
        if (grad) {
            double sc = scale ? scale[r] : 1.0, c_top_others;
            idx ctop;
            double c_total = sums_d(c, k, &ctop, &c_top_others);
            float *gr = grad + r * k;
            for (idx j = 0; j < k; j++) {
                double q, n, v, t = ls != 0.0 ? (double)yr[j] * (1.0 - ls) + lsk : (double)yr[j];
                softmax_at((double)xr[j], e[j], j == top, md, s, lg, &q, &n, &v);
                double others = j == ctop ? c_top_others : c_total - c[j];
                double own = xmul(t, f[j] * (gamma * xmul(q, n) + v));
                gr[j] = write_grad(alpha * (q * others - own), sc);
            }
        }
    }
}

/* Categorical focal from probabilities (renormalised: q = p/P, n = log1p(R/p), v = R/P with R the
 * others' sum, taken directly at the top); gradient alpha (sum_{j != i} c_j - t_i v_i^g
 * (g n_i + R_i/p_i)) / P. */
CLONES static void cfocal_probs(const void *tv, const float *x, idx rows, idx k, double *value,
                                float *grad, const double *scale, double *work, const double *prm) {
    const float *yt = tv;
    double alpha = prm[0], gamma = prm[1], ls = prm[2], lsk = ls / (double)k;
    double *f = work + k, *c = work + 2 * k;
    for (idx r = 0; r < rows; r++) {
        const float *pr = x + r * k, *yr = yt + r * k;
        idx top = row_top(pr, k);
        double total, others_top;
        row_sums(pr, k, top, &total, &others_top);
        double sum = 0.0;
        SIMD_SUM(sum)
        for (idx j = 0; j < k; j++) {
            double p = (double)pr[j], t = ls != 0.0 ? (double)yr[j] * (1.0 - ls) + lsk : (double)yr[j];
            double rj = j == top ? others_top : total - p, ratio = rj / p;
            int huge = ratio == INFINITY && p > 0.0;
            double n = huge ? klog(rj) - klog(huge ? p : 1.0) : klog1p(ratio);
            double q = p / total, v = rj / total;
            double fj = kpow(v, gamma);
            f[j] = fj;
            c[j] = xmul(t, fj * (gamma * (v > 0.0 ? xmul(q, n) / (v > 0.0 ? v : 1.0) : q) + 1.0));
            sum += xmul(t, xmul(fj, n));
        }
        value[r] = alpha * sum;
        if (grad) {
            double sc = scale ? scale[r] : 1.0, c_top_others;
            idx ctop;
            double c_total = sums_d(c, k, &ctop, &c_top_others);
            float *gr = grad + r * k;
            for (idx j = 0; j < k; j++) {
                double p = (double)pr[j], t = ls != 0.0 ? (double)yr[j] * (1.0 - ls) + lsk : (double)yr[j];
                double rj = j == top ? others_top : total - p, ratio = rj / p;
                int huge = ratio == INFINITY && p > 0.0;
                double n = huge ? klog(rj) - klog(huge ? p : 1.0) : klog1p(ratio);
                double others = j == ctop ? c_top_others : c_total - c[j];
                double own = xmul(t, f[j] * (gamma * n + rj / p));
                gr[j] = write_grad(alpha * ((others - own) / total), sc);
            }
        }
    }
}

/* Negative log-likelihood (classification._nll), gathered: only the entry at each sample's label is
 * read. x is laid out as (outer, k, inner), the classes on the middle axis (NumPy rows: inner = 1;
 * PyTorch's (N, C, d1, ...) in place: inner = d1 * ...), labels as (outer, inner). For a sample whose
 * label y is in [0, k): value xmul(w_y, -x[n, y, d]) (one rounding of the exact product: exact), NaN
 * only when that entry is NaN (the entries the loss does not read are not read, as in PyTorch's
 * nll_loss); the gradient entry at y is -w_y * scale_i * gscale (scale may be NULL: 1), 0 where that
 * factor is 0; nothing else of grad is written (the caller zeroes it). A sample whose label is
 * `ignore` (has_ignore) or out of range reads nothing: value 0, counted in `stats` (bad labels: out of
 * range and not ignored; bad entries: read entries above 0, outside the log-probabilities' domain;
 * the sum of the values and of w_y over the samples read, PyTorch's weighted-mean divisor). */
typedef struct { idx bad_labels, bad_entries, counted; double total, wsum; } nll_stats;

/* rows ahead whose entry the gather prefetches (one cache miss each in a large array: the loop's own
 * work per row is too short for the processor to keep enough of them in flight) */
#define NLL_AHEAD 24

#define NLL_GATHER(NAME, T)                                                                         \
KINLINE void NAME##_body(const T *x, const int64_t *label, idx outer, idx k, idx inner,             \
                         const double *w, int64_t ignore, int has_ignore, double *value, T *grad,   \
                         const double *scale, double gscale, nll_stats *st, int read) {             \
    idx bad_labels = 0, bad_entries = 0, counted = 0;                                               \
    double total = 0.0, wsum = 0.0;                                                                 \
    for (idx n = 0; n < outer; n++) {                                                               \
        if (inner == 1 && read && n + NLL_AHEAD < outer) {  /* rows: fetch a later row's entry */   \
            int64_t ya = label[n + NLL_AHEAD];                                                      \
            if (ya >= 0 && ya < k) __builtin_prefetch(x + (n + NLL_AHEAD) * k + (idx)ya);           \
        }                                                                                           \
        for (idx d = 0; d < inner; d++) {                                                           \
            idx i = n * inner + d;                                                                  \
            int64_t y = label[i];                                                                   \
            int skip = has_ignore && y == ignore;                                                   \
            if (skip || y < 0 || y >= k) {                                                          \
                bad_labels += !skip;                                                                \
                if (value) value[i] = 0.0;                                                          \
                continue;                                                                           \
            }                                                                                       \
            idx at = (n * k + (idx)y) * inner + d;                                                  \
            double xv = read ? (double)x[at] : 0.0, wy = w ? w[y] : 1.0;                            \
            double v = xmul(wy, -xv);                                                               \
            bad_entries += xv > 0.0;                                                                \
            if (value) value[i] = v;                                                                \
            total += v;                                                                             \
            wsum += wy;                                                                             \
            counted++;                                                                              \
            if (grad) {                                                                             \
                double sc = (scale ? scale[i] : 1.0) * gscale;                                      \
                grad[at] = sc == 0.0 ? (T)0.0 : (T)(-wy * sc);                                      \
            }                                                                                       \
        }                                                                                           \
    }                                                                                               \
    st->bad_labels += bad_labels; st->bad_entries += bad_entries; st->counted += counted;           \
    st->total += total; st->wsum += wsum;                                                           \
}                                                                                                   \
/* the common layouts compiled apart (rows, with or without a gradient): twice as fast as one loop; \
 * with a gradient and no value (a backward pass) x is not read at all (stats: labels only) */     \
static void NAME(const T *x, const int64_t *label, idx outer, idx k, idx inner, const double *w,     \
                 int64_t ignore, int has_ignore, double *value, T *grad, const double *scale,       \
                 double gscale, nll_stats *st) {                                                    \
    int read = value || !grad;                                                                      \
    if (inner == 1 && !grad)                                                                        \
        NAME##_body(x, label, outer, k, 1, w, ignore, has_ignore, value, NULL, scale, gscale, st, 1); \
    else if (inner == 1 && read)                                                                    \
        NAME##_body(x, label, outer, k, 1, w, ignore, has_ignore, value, grad, scale, gscale, st, 1); \
    else if (inner == 1)                                                                            \
        NAME##_body(x, label, outer, k, 1, w, ignore, has_ignore, NULL, grad, scale, gscale, st, 0); \
    else                                                                                            \
        NAME##_body(x, label, outer, k, inner, w, ignore, has_ignore, value, grad, scale, gscale,   \
                    st, read);                                                                      \
}
NLL_GATHER(nll_gather_f, float)
NLL_GATHER(nll_gather_d, double)

/* The KERNELS entry (prm = [has weight, w_0 .. w_{k-1}]): rows (rows, k), the gradient zeroed here. */
static void nll(const void *tv, const float *x, idx rows, idx k, double *value, float *grad,
                const double *scale, double *work, const double *prm) {
    nll_stats st = {0, 0, 0, 0.0, 0.0};
    if (grad) memset(grad, 0, (size_t)(rows * k) * sizeof(float));
    nll_gather_f(x, tv, rows, k, 1, prm[0] != 0.0 ? prm + 1 : NULL, 0, 0, value, grad, scale, 1.0, &st);
}

/* 1/(2k + 1), k = 1..40 (classification._ATANH_TERMS) */
static const double ATANH_TERMS[40] = {
    1.0/3, 1.0/5, 1.0/7, 1.0/9, 1.0/11, 1.0/13, 1.0/15, 1.0/17, 1.0/19, 1.0/21, 1.0/23, 1.0/25,
    1.0/27, 1.0/29, 1.0/31, 1.0/33, 1.0/35, 1.0/37, 1.0/39, 1.0/41, 1.0/43, 1.0/45, 1.0/47, 1.0/49,
    1.0/51, 1.0/53, 1.0/55, 1.0/57, 1.0/59, 1.0/61, 1.0/63, 1.0/65, 1.0/67, 1.0/69, 1.0/71, 1.0/73,
    1.0/75, 1.0/77, 1.0/79, 1.0/81};

/* -log(1 - v) - v given n = -log(1 - v) (classification._neglog1m_minus) */
KINLINE double neglog1m_minus(double v, double n) {
    int small = v <= 0.75;
    double rr = (small ? v : 0.0) / (2.0 - v), r2 = rr * rr;
    double acc = ATANH_TERMS[39];
#pragma GCC unroll 40
    for (int i = 38; i >= 0; i--) acc = acc * r2 + ATANH_TERMS[i];
    double series = 2.0 * r2 / (1.0 + rr) + 2.0 * rr * (acc * r2);
    return small ? series : n - v;
}

/* Poly-1 cross-entropy (classification._poly1, widened; prm[0] = epsilon): sum_j t_j (n_j + eps v_j),
 * for eps < 0 (n_j - v_j) + (1 + eps) v_j; gradient q_i sum_{j != i} a_j - v_i a_i,
 * a = t (1 + eps q) (written (1 + eps) - eps v for eps < 0). */
CLONES static void poly1(const void *tv, const float *x, idx rows, idx k, double *value, float *grad,
                         const double *scale, double *work, const double *prm) {
    const float *tt = tv;
    double eps = prm[0];
    double *e = work, *a = work + k;
    for (idx r = 0; r < rows; r++) {
        const float *xr = x + r * k, *tr = tt + r * k;
        idx top = row_top(xr, k);
        double s = softmax_others(xr, k, top, e);
        double md = (double)xr[top], lg = klog1p(s), sum = 0.0;
        SIMD_SUM(sum)
        for (idx j = 0; j < k; j++) {
            double q, n, v, t = (double)tr[j];
            softmax_at((double)xr[j], e[j], j == top, md, s, lg, &q, &n, &v);
            double term = eps >= 0.0 ? n + eps * v : neglog1m_minus(v, n) + (1.0 + eps) * v;
            double cj = eps >= 0.0 ? 1.0 + eps * q : (1.0 + eps) - eps * v;
            a[j] = xmul(t, cj);
            sum += xmul(t, term);
        }
        value[r] = sum;
        if (grad) {
            double sc = scale ? scale[r] : 1.0, a_top_others;
            idx atop;
            double a_total = sums_d(a, k, &atop, &a_top_others);
            float *gr = grad + r * k;
            for (idx j = 0; j < k; j++) {
                double q, n, v;
                softmax_at((double)xr[j], e[j], j == top, md, s, lg, &q, &n, &v);
                double others = j == atop ? a_top_others : a_total - a[j];
                gr[j] = write_grad(q * others - v * a[j], sc);
            }
        }
    }
}

/* Generalized cross-entropy from logits (classification._gce; prm[0] = q): -expm1(-q n_y)/q,
 * n_y = (m - x_y) + log1p(S); gradient p_y^q (softmax_i - [i = y]), -p_y^q v_y at the label,
 * p_y^q = exp(q (x_y - m)) (1 + S)^-q. */
CLONES static void gce_logits(const void *tv, const float *x, idx rows, idx k, double *value, float *grad,
                       const double *scale, double *e, const double *prm) {
    const int64_t *label = tv;
    double qq = prm[0];
    for (idx r = 0; r < rows; r++) {
        const float *xr = x + r * k;
        idx top = row_top(xr, k), y = label_of(label, r, k);
        double s = softmax_others(xr, k, top, e);
        double md = (double)xr[top], lg = klog1p(s), xy = (double)xr[y];
        value[r] = -kexpm1(-qq * ((y == top ? 0.0 : md - xy) + lg)) / qq;
        if (grad) {
            double sc = scale ? scale[r] : 1.0, z = 1.0 + s;
            double pq = kexp(qq * (xy - md)) * kexp(-qq * lg);
            float *gr = grad + r * k;
            for (idx j = 0; j < k; j++) gr[j] = write_grad(pq * (e[j] / z), sc);
            gr[top] = write_grad(pq * (1.0 / z), sc);
            double vy = y == top ? s / z : (1.0 + (s - e[y])) / z;
            gr[y] = write_grad(-pq * vy, sc);
        }
    }
}

/* Generalized cross-entropy from probabilities (not renormalised): -expm1(q log p_y)/q (log p_y as
 * log_both), NaN for a row with a NaN anywhere; gradient -p_y^(q-1) at the label. */
CLONES static void gce_probs(const void *tv, const float *x, idx rows, idx k, double *value, float *grad,
                      const double *scale, double *work, const double *prm) {
    const int64_t *label = tv;
    double qq = prm[0];
    for (idx r = 0; r < rows; r++) {
        const float *pr = x + r * k;
        idx y = label_of(label, r, k);
        double py = (double)pr[y], lq, lp = log_both(py, &lq);
        value[r] = row_has_nan(pr, k) ? NAN : -kexpm1(qq * lp) / qq;
        if (grad) {
            double sc = scale ? scale[r] : 1.0;
            float *gr = grad + r * k;
            memset(gr, 0, (size_t)k * sizeof(float));
            gr[y] = write_grad(-kpow(py, qq - 1.0), sc);
        }
    }
}


/* Knowledge distillation (distillation._distill, widened float32 path): teacher logits t, student
 * logits x, prm = (1/T, c, beta, g_factor) with c = T^2 or 1 and g_factor = c/T.
 * p = softmax(t/T), q = softmax(x/T) with the exponents (z_j - max)/T in double; d_j = log(p_j/q_j)
 * = ((t_j - x_j) - (t_r - x_r))/T + d_r (r the teacher's top class, t - x exact in double), d_r =
 * log p_r - log q_r. Terms are phi excesses t phi(y) (phi_terms): beta = 0, KL(p||q): p phi(d);
 * beta = 1, KL(q||p): q phi(-d); else beta p phi(log(p/m)) + (1 - beta) q phi(log(q/m)) with
 * log(m/q) = log(beta e^d + 1 - beta) and log(m/p) = log(beta + (1 - beta) e^-d) (log_mixture).
 * Gradient (times g_factor): q - p; q (-d - KL(q||p)); -(1 - beta) q (log(m/q) + KL(q||m)). */
KINLINE double phi_excess(double t, double u, double y) {
    /* t phi(y), phi(y) = e^-y - 1 + y, u = t e^-y (u where t = 0): the series for |y| <= 1 (to y^15:
     * truncation below 2^-40 relative), expm1(-y) + y above 1, (u - t) + t y below -1 */
    double yn = fabs(y) <= 1.0 ? y : 0.0, s = 1.0 / 355687428096000.0;  /* 1/17! */
    s = s * -yn + 1.0 / 20922789888000.0;
    s = s * -yn + 1.0 / 1307674368000.0;
    s = s * -yn + 1.0 / 87178291200.0;
    s = s * -yn + 1.0 / 6227020800.0;
    s = s * -yn + 1.0 / 479001600.0;
    s = s * -yn + 1.0 / 39916800.0;
    s = s * -yn + 1.0 / 3628800.0;
    s = s * -yn + 1.0 / 362880.0;
    s = s * -yn + 1.0 / 40320.0;
    s = s * -yn + 1.0 / 5040.0;
    s = s * -yn + 1.0 / 720.0;
    s = s * -yn + 1.0 / 120.0;
    s = s * -yn + 1.0 / 24.0;
    s = s * -yn + 1.0 / 6.0;
    s = s * -yn + 0.5;
    double big = y > 1.0 ? y : 0.0;
    double phi = fabs(y) <= 1.0 ? yn * yn * s : kexpm1(-big) + y;
    double term = y < -1.0 ? (u - t) + t * y : t * phi;
    return t == 0.0 ? u : term;
}

KINLINE double log_mixture(double d, double beta) {
    /* log(beta e^d + 1 - beta) for beta <= 1/2 (1 + beta expm1(d) >= 1/2: no cancellation), d
     * clamped at 700, above which it is d + log(beta) to far below an ulp */
    double dc = d > 700.0 ? 700.0 : d;
    double y = klog1p(beta * kexpm1(dc));
    return d > 700.0 ? d + klog(beta) : y;
}

KINLINE double log_mixture_any(double d, double w, double w1) {
    /* log(w e^d + w1), w1 = 1 - w, any weight: log1p(w expm1(d)) while 1 + w expm1(d) >= 1/2, else
     * the log of the sum of the two positive parts (the generic kernel's _log_mixture) */
    double dc = d > 700.0 ? 700.0 : d;
    double xm = w * kexpm1(dc);
    double y = xm >= -0.5 ? klog1p(xm) : klog(w * kexp(dc) + w1);
    return d > 700.0 ? d + klog(w) : y;
}

/* The second pass of a distill row: each element's divergence term from p_j = ep_j np and
 * q_j = eq_j nq, and what the gradient reads (ep: KL(q||m)'s term or beta = 1's term, eq: q_j, dd: p_j
 * or d_j or log(m/q)); returns the row's sum of terms. MODE (constant at each call, so each variant is
 * one vectorised loop): 0 beta = 0, 1 beta = 1, 2 1e-6 <= beta <= 1/2, 3 1/2 < beta <= 1 - 1e-6.
 * Modes 2 and 3 take the other logarithm by adding d (see distill's comment); beyond d = +-700 (a
 * probability that is 0 or below 2^-1000 relative) it is log(beta), resp. log(1 - beta) (lw), to
 * far below an ulp, as log_mixture_any gives it there. Weights within 1e-6 of 0 or 1 (other than 0
 * and 1): distill_row_any. */
typedef struct {
    const float *tr, *xr;
    double mt, mx, inv_t, lp, lq, big_d, d_r, np, nq, beta, b1, lw;
    int direct;
} distill_args;

KINLINE double distill_dj(const distill_args *a, idx j) {
    double tj = (double)a->tr[j], xj = (double)a->xr[j];
    return a->direct ? ((tj - a->mt) * a->inv_t - a->lp) - ((xj - a->mx) * a->inv_t - a->lq)
                     : ((tj - xj) - a->big_d) * a->inv_t + a->d_r;
}

KINLINE double distill_row(const distill_args *a, idx k, const int MODE, double *ep, double *eq,
                           double *dd) {
    const double np = a->np, nq = a->nq, beta = a->beta, b1 = a->b1, lw = a->lw;
    double sum = 0.0;
    SIMD_SUM(sum)
    for (idx j = 0; j < k; j++) {
        double pj = ep[j] * np, qj = eq[j] * nq, dj = distill_dj(a, j);
        double term, e_out = ep[j], d_out = dj;
        if (MODE == 0) {
            term = phi_excess(pj, qj, dj);
            d_out = pj;
        } else if (MODE == 1) {
            term = phi_excess(qj, pj, -dj);
        } else {
            double la, lb;  /* log(m/q), log(m/p) */
            if (MODE == 2) {
                la = log_mixture(dj, beta);
                lb = dj > 700.0 ? lw : la - dj;
            } else {
                lb = log_mixture(-dj, b1);
                la = dj < -700.0 ? lw : lb + dj;
            }
            double m = beta * pj + b1 * qj;
            double kq = phi_excess(qj, m, -la);
            term = beta * phi_excess(pj, m, -lb) + b1 * kq;
            e_out = kq;
            d_out = la;
        }
        term = (pj == 0.0 && qj == 0.0) ? 0.0 : term;
        e_out = MODE == 1 ? term : e_out;
        sum += term;
        ep[j] = e_out;
        eq[j] = qj;
        dd[j] = d_out;
    }
    return sum;
}

/* distill's second pass for any weight (the scalar loop, for weights within 1e-6 of 0 or 1) */
static double distill_row_any(const float *tr, const float *xr, idx k, double mt, double mx,
                              double inv_t, double lp, double lq, double big_d, double d_r, int direct,
                              double np, double nq, double beta, double b1, double *ep, double *eq,
                              double *dd) {
    double sum = 0.0;
    for (idx j = 0; j < k; j++) {
        double pj = ep[j] * np, qj = eq[j] * nq;
        double dj = direct ? (((double)tr[j] - mt) * inv_t - lp) - (((double)xr[j] - mx) * inv_t - lq)
                           : (((double)tr[j] - (double)xr[j]) - big_d) * inv_t + d_r;
        double term;
        if (beta == 0.0) {
            term = phi_excess(pj, qj, dj);
        } else if (beta == 1.0) {
            term = phi_excess(qj, pj, -dj);
        } else {
            /* a = log(m/q), b = log(m/p) = a - d: one from log_mixture (with the smaller weight,
             * no cancellation), the other by adding d, which cancels by at most |d|/|log w| (w
             * the smaller weight): far less than the 29 bits double has beyond float32, except
             * for a weight within 1e-6 of 0 or 1, and where d is beyond +-700 (infinite: a zero
             * probability), where both come directly */
            double a, b;
            if (beta <= 0.5) {
                a = log_mixture(dj, beta);
                b = (beta < 1e-6 || dj > 700.0) ? log_mixture_any(-dj, b1, beta) : a - dj;
            } else {
                b = log_mixture(-dj, b1);
                a = (b1 < 1e-6 || dj < -700.0) ? log_mixture_any(dj, beta, b1) : b + dj;
            }
            double m = beta * pj + b1 * qj;
            double kq = phi_excess(qj, m, -a);
            term = beta * phi_excess(pj, m, -b) + b1 * kq;
            ep[j] = kq;  /* KL(q||m)'s term, for the gradient */
            dj = a;      /* log(m/q), for the gradient */
        }
        term = (pj == 0.0 && qj == 0.0) ? 0.0 : term;
        if (beta == 1.0) ep[j] = term;
        sum += term;
        eq[j] = qj;
        dd[j] = beta == 0.0 ? pj : dj;
    }
    return sum;
}

CLONES static void distill(const void *tv, const float *x, idx rows, idx k, double *value, float *grad,
                           const double *scale, double *work, const double *prm) {
    const float *t = tv;
    const double inv_t = prm[0], c = prm[1], beta = prm[2], gf = prm[3], b1 = 1.0 - beta;
    double *ep = work, *eq = work + k, *dd = work + 2 * k;
    for (idx r = 0; r < rows; r++) {
        const float *tr = t + r * k, *xr = x + r * k;
        idx top = row_top(tr, k), top_x = row_top(xr, k);
        double mt = (double)tr[top], mx = (double)xr[top_x], sp = 0.0, sq = 0.0;
        SIMD_SUM2(sp, sq)
        for (idx j = 0; j < k; j++) {
            double a = kexp(((double)tr[j] - mt) * inv_t), b = kexp(((double)xr[j] - mx) * inv_t);
            a = j == top ? 0.0 : a;
            b = j == top_x ? 0.0 : b;
            ep[j] = a;
            eq[j] = b;
            sp += a;
            sq += b;
        }
        double np = 1.0 / (1.0 + sp), nq = 1.0 / (1.0 + sq), lp = klog1p(sp), lq = klog1p(sq);
        double big_d = (double)tr[top] - (double)xr[top];
        double d_r = -lp - (((double)xr[top] - mx) * inv_t - lq);
        int direct = !isfinite(big_d);
        ep[top] = 1.0;
        eq[top_x] = 1.0;
        distill_args da = {tr, xr, mt, mx, inv_t, lp, lq, big_d, d_r, np, nq, beta, b1,
                           beta <= 0.5 ? klog(beta) : klog(b1), direct};
        double sum;
        if (beta == 0.0) sum = distill_row(&da, k, 0, ep, eq, dd);
        else if (beta == 1.0) sum = distill_row(&da, k, 1, ep, eq, dd);
        else if (beta >= 1e-6 && beta <= 0.5) sum = distill_row(&da, k, 2, ep, eq, dd);
        else if (beta > 0.5 && b1 >= 1e-6) sum = distill_row(&da, k, 3, ep, eq, dd);
        else sum = distill_row_any(tr, xr, k, mt, mx, inv_t, lp, lq, big_d, d_r, direct, np, nq, beta,
                                   b1, ep, eq, dd);
        value[r] = c * sum;
        if (grad) {
            double sc = scale ? scale[r] : 1.0;
            float *gr = grad + r * k;
            if (beta == 0.0) {
                for (idx j = 0; j < k; j++) gr[j] = write_grad(gf * (eq[j] - dd[j]), sc);
            } else {
                double kl = 0.0;
                for (idx j = 0; j < k; j++) kl += (eq[j] == 0.0 && ep[j] == 0.0) ? 0.0 : ep[j];
                if (beta == 1.0) kl = sum;
                for (idx j = 0; j < k; j++) {
                    double qj = eq[j];
                    double g = beta == 1.0 ? (qj * gf) * (-dd[j] - kl) : (qj * (-b1 * gf)) * (dd[j] + kl);
                    gr[j] = write_grad(qj == 0.0 ? 0.0 : g, sc);
                }
            }
        }
    }
}

/* ============================================ float64 row kernels: cross-entropies and KL (issue 8)
 *
 * float64 input, float64 gradient, registered in KERNELS64 under the float32 kernels' ids. Unlike the
 * float32 kernels, the difference x - m of two doubles is not exact and exp/log are only a few ulps
 * good, so these kernels carry exact pairs where the contract needs them (TwoSum differences, exp of
 * a pair, log of a probability as a hi + lo pair, TwoProduct terms) and compensated row sums
 * (acc_sum). Error budget: the contract is 8 ulp against mpmath; since ulp(v) > 2^-53 |v|, a relative
 * error of at most n 2^-53 is within n ulp. Bounds used below: kexp (kexp_pair) within 1.5 2^-53
 * relative and klog1p within 2.9 2^-53 relative (measured maxima 1.43 and 2.85 over 3 M points against
 * long double, see tests/test_backend_cpu.py for the mpmath checks at 2 ulp), every other operation
 * one rounding (2^-53 relative) unless said.
 * A row whose error cannot be bounded within the contract gets the value NaN: numpy.py's _flagged64
 * recomputes those rows (and rows that are NaN anyway) with the generic kernel, values and gradients.
 * grad: scale[r] * d value[r] / d pred[r, j] (0 for a row of scale 0), as the float32 kernels. */

KINLINE double write_grad_d(double g, double scale) { return scale == 0.0 ? 0.0 : g * scale; }

/* exp(d + c) for a pair with |c| <= ulp(d)/2 (c finite): kexp with c added to the reduced argument
 * (one more rounding of at most 2^-55 absolute there, 2^-55 relative in the result). */
KINLINE double kexp_pair(double d, double c) {
    const double LOG2E = 1.4426950408889634, LN2_HI = 0.6931471803691238,
                 LN2_LO = 1.9082149292705877e-10;
    double xc = d < -746.0 ? -746.0 : (d > 710.0 ? 710.0 : d);
    double k = nearbyint(xc * LOG2E);
    double r = ((xc - k * LN2_HI) - k * LN2_LO) + c;
    double p = expm1_poly(r);
    double k1 = floor(k * 0.5), k2 = k - k1;
    double y = (1.0 + p) * pow2(k1) * pow2(k2);
    y = d < -746.0 ? 0.0 : y;
    y = d > 710.0 ? INFINITY : y;
    return d != d ? d : y;
}

/* Compensated sum (acc_sum's algorithm) of v[0..k) as a pair: returns hi, *lo the rest (hi + lo within
 * 2^-106 |sum| + (k 2^-53)^2 sum |v|, Ogita-Rump-Oishi Sum2); the plain sum and lo = 0 where it is not
 * finite. */
CLONES static double acc_sum_pair(const double *v, idx k, double *lo) {
    double hi[8] = {0}, lw[8] = {0};
    idx j = 0;
    for (; j + 8 <= k; j += 8) {
        for (int l = 0; l < 8; l++) {
            double e, s = two_sum(hi[l], v[j + l], &e);
            hi[l] = s;
            lw[l] += e;
        }
    }
    double e, s = 0.0, c = 0.0;
    for (int l = 0; l < 8; l++) {
        s = two_sum(s, hi[l], &e);
        c += e + lw[l];
    }
    for (; j < k; j++) {
        s = two_sum(s, v[j], &e);
        c += e;
    }
    if (s - s != 0.0) { *lo = 0.0; return s; }
    double h = s + c;
    *lo = c - (h - s);
    return h;
}

/* log(c_i) for c_i = 1 + i/128, i = 0..128, as hi + lo (from mpmath at 200 bits, rounded twice) */
static const double LOG_TABLE[129][2] = {
    {0x0.0p+0, 0x0.0p+0}, {0x1.fe02a6b106789p-8, -0x1.e44b7e3711ebfp-67},
    {0x1.fc0a8b0fc03e4p-7, -0x1.83092c59642a1p-62}, {0x1.7b91b07d5b11bp-6, -0x1.5b602ace3a510p-60},
    {0x1.f829b0e783300p-6, 0x1.33e3f04f1ef23p-60}, {0x1.39e87b9febd60p-5, -0x1.5bfa937f551bbp-59},
    {0x1.77458f632dcfcp-5, 0x1.18d3ca87b9296p-59}, {0x1.b42dd711971bfp-5, -0x1.eb9759c130499p-60},
    {0x1.f0a30c01162a6p-5, 0x1.85f325c5bbacdp-59}, {0x1.16536eea37ae1p-4, -0x1.79da3e8c22cdap-60},
    {0x1.341d7961bd1d1p-4, -0x1.b599f227becbbp-58}, {0x1.51b073f06183fp-4, 0x1.a49e39a1a8be4p-58},
    {0x1.6f0d28ae56b4cp-4, -0x1.906d99184b992p-58}, {0x1.8c345d6319b21p-4, -0x1.4a697ab3424a9p-61},
    {0x1.a926d3a4ad563p-4, 0x1.942f48aa70ea9p-58}, {0x1.c5e548f5bc743p-4, 0x1.5d617ef8161b1p-60},
    {0x1.e27076e2af2e6p-4, -0x1.61578001e0162p-60}, {0x1.fec9131dbeabbp-4, -0x1.5746b9981b36cp-58},
    {0x1.0d77e7cd08e59p-3, 0x1.9a5dc5e9030acp-57}, {0x1.1b72ad52f67a0p-3, 0x1.483023472cd74p-58},
    {0x1.29552f81ff523p-3, 0x1.301771c407dbfp-57}, {0x1.371fc201e8f74p-3, 0x1.de6cb62af18a0p-58},
    {0x1.44d2b6ccb7d1ep-3, 0x1.9f4f6543e1f88p-57}, {0x1.526e5e3a1b438p-3, -0x1.746ff8a470d3ap-57},
    {0x1.5ff3070a793d4p-3, -0x1.bc60efafc6f6ep-58}, {0x1.6d60fe719d21dp-3, -0x1.caae268ecd179p-57},
    {0x1.7ab890210d909p-3, 0x1.be36b2d6a0608p-59}, {0x1.87fa06520c911p-3, -0x1.bf7fdbfa08d9ap-57},
    {0x1.9525a9cf456b4p-3, 0x1.d904c1d4e2e26p-57}, {0x1.a23bc1fe2b563p-3, 0x1.93711b07a998cp-59},
    {0x1.af3c94e80bff3p-3, -0x1.398cff3641985p-58}, {0x1.bc286742d8cd6p-3, 0x1.4fce744870f55p-58},
    {0x1.c8ff7c79a9a22p-3, -0x1.4f689f8434012p-57}, {0x1.d5c216b4fbb91p-3, 0x1.6e443597e4d40p-57},
    {0x1.e27076e2af2e6p-3, -0x1.61578001e0162p-59}, {0x1.ef0adcbdc5936p-3, 0x1.48637950dc20dp-57},
    {0x1.fb9186d5e3e2bp-3, -0x1.caaae64f21acbp-57}, {0x1.0402594b4d041p-2, -0x1.28ec217a5022dp-57},
    {0x1.0a324e27390e3p-2, 0x1.7dcfde8061c03p-56}, {0x1.1058bf9ae4ad5p-2, 0x1.89fa0ab4cb31dp-58},
    {0x1.1675cababa60ep-2, 0x1.ce63eab883717p-61}, {0x1.1c898c16999fbp-2, -0x1.0e5c62aff1c44p-60},
    {0x1.22941fbcf7966p-2, -0x1.76f5eb09628afp-56}, {0x1.2895a13de86a3p-2, 0x1.7ad24c13f040ep-56},
    {0x1.2e8e2bae11d31p-2, -0x1.8f4cdb95ebdf9p-56}, {0x1.347dd9a987d55p-2, -0x1.4dd4c580919f8p-57},
    {0x1.3a64c556945eap-2, -0x1.c68651945f97cp-57}, {0x1.404308686a7e4p-2, -0x1.0bcfb6082ce6dp-56},
    {0x1.4618bc21c5ec2p-2, 0x1.f42decdeccf1dp-56}, {0x1.4be5f957778a1p-2, -0x1.259b35b04813dp-57},
    {0x1.51aad872df82dp-2, 0x1.3927ac19f55e3p-59}, {0x1.5767717455a6cp-2, 0x1.526adb283660cp-56},
    {0x1.5d1bdbf5809cap-2, 0x1.4236383dc7fe1p-56}, {0x1.62c82f2b9c795p-2, 0x1.7b7af915300e5p-57},
    {0x1.686c81e9b14afp-2, -0x1.ddea0f7f58e3dp-57}, {0x1.6e08eaa2ba1e4p-2, -0x1.cfb1b39ca3a0fp-56},
    {0x1.739d7f6bbd007p-2, -0x1.8c76ceb014b04p-56}, {0x1.792a55fdd47a2p-2, 0x1.f057691fe9ed7p-56},
    {0x1.7eaf83b82afc3p-2, 0x1.92ce979ed2950p-56}, {0x1.842d1da1e8b17p-2, 0x1.24ec519784676p-56},
    {0x1.89a3386c1425bp-2, -0x1.29639dfbbf0fbp-56}, {0x1.8f11e873662c7p-2, 0x1.f85da755a61a3p-56},
    {0x1.947941c2116fbp-2, -0x1.16cc8bae0bbe4p-56}, {0x1.99d958117e08bp-2, -0x1.a2b6889dc3e72p-57},
    {0x1.9f323ecbf984cp-2, -0x1.a92e513217f5cp-59}, {0x1.a484090e5bb0ap-2, 0x1.5fe535b875a75p-57},
    {0x1.a9cec9a9a084ap-2, -0x1.cadec02b436afp-56}, {0x1.af1293247786bp-2, 0x1.133844a15dc28p-58},
    {0x1.b44f77bcc8f63p-2, -0x1.cd04495459c78p-56}, {0x1.b9858969310fbp-2, 0x1.663ec53e23bc4p-56},
    {0x1.beb4d9da71b7cp-2, -0x1.0f3c590a887cap-59}, {0x1.c3dd7a7cdad4dp-2, 0x1.cecf052dea69bp-56},
    {0x1.c8ff7c79a9a22p-2, -0x1.4f689f8434012p-56}, {0x1.ce1af0b85f3ebp-2, 0x1.edf4af2ab4267p-56},
    {0x1.d32fe7e00ebd5p-2, 0x1.877b232fafa37p-56}, {0x1.d83e7258a2f3ep-2, 0x1.41456e8bb2511p-56},
    {0x1.dd46a04c1c4a1p-2, -0x1.0467656d8b892p-56}, {0x1.e24881a7c6c26p-2, 0x1.cbd8f45954a46p-58},
    {0x1.e744261d68788p-2, -0x1.c825c90c344b9p-58}, {0x1.ec399d2468cc0p-2, 0x1.75cee53f35397p-58},
    {0x1.f128f5faf06edp-2, -0x1.328df13bb38c3p-56}, {0x1.f6123fa7028acp-2, 0x1.8515b0f2db341p-56},
    {0x1.faf588f78f31fp-2, -0x1.328260d8abca0p-57}, {0x1.ffd2e0857f498p-2, 0x1.565f40d9321afp-56},
    {0x1.02552a5a5d0ffp-1, -0x1.cb1cb51408c00p-56}, {0x1.04bdf9da926d2p-1, 0x1.97f304022c9dfp-55},
    {0x1.0723e5c1cdf40p-1, 0x1.395e58e2445bbp-55}, {0x1.0986f4f573521p-1, -0x1.1b8095ac02f01p-55},
    {0x1.0be72e4252a83p-1, -0x1.259da11330801p-55}, {0x1.0e44985d1cc8cp-1, -0x1.22a3442d2d384p-58},
    {0x1.109f39e2d4c97p-1, -0x1.0e09b27a4373ap-60}, {0x1.12f719593efbcp-1, 0x1.4c048c671f435p-55},
    {0x1.154c3d2f4d5eap-1, -0x1.59c33171a6876p-55}, {0x1.179eabbd899a1p-1, -0x1.00e7c6417e0b4p-55},
    {0x1.19ee6b467c96fp-1, -0x1.9d1a11443f10cp-56}, {0x1.1c3b81f713c25p-1, -0x1.0dac1c4c810e9p-55},
    {0x1.1e85f5e7040d0p-1, 0x1.ef62cd2f9f1e3p-56}, {0x1.20cdcd192ab6ep-1, -0x1.b2bf0bc229014p-55},
    {0x1.23130d7bebf43p-1, -0x1.f48725e374d6ep-55}, {0x1.2555bce98f7cbp-1, 0x1.e021d6d6881e7p-56},
    {0x1.2795e1289b11bp-1, -0x1.487c0c246978ep-57}, {0x1.29d37fec2b08bp-1, -0x1.bd1949a2d1982p-56},
    {0x1.2c0e9ed448e8cp-1, -0x1.1a158f3917586p-55}, {0x1.2e47436e40268p-1, 0x1.0150861a4886bp-55},
    {0x1.307d7334f10bep-1, 0x1.fb590a1f566dap-57}, {0x1.32b1339121d71p-1, 0x1.902ab5b3d916bp-56},
    {0x1.34e289d9ce1d3p-1, 0x1.6eb92d885ce4fp-57}, {0x1.37117b54747b6p-1, -0x1.d117edbdd9103p-56},
    {0x1.393e0d3562a1ap-1, -0x1.58eef67f2483ap-55}, {0x1.3b68449fffc23p-1, -0x1.41c484f9e9b26p-55},
    {0x1.3d9026a7156fbp-1, -0x1.6fef670bd4b62p-55}, {0x1.3fb5b84d16f42p-1, 0x1.6d3a754172aefp-55},
    {0x1.41d8fe84672aep-1, 0x1.9192f30bd1806p-55}, {0x1.43f9fe2f9ce67p-1, 0x1.e9c9ee6d83b86p-55},
    {0x1.4618bc21c5ec2p-1, 0x1.f42decdeccf1dp-55}, {0x1.48353d1ea88dfp-1, 0x1.cf57a2ecc07f4p-55},
    {0x1.4a4f85db03ebbp-1, 0x1.13dfa3d3761b6p-60}, {0x1.4c679afccee3ap-1, -0x1.3a5c4c8b39e41p-55},
    {0x1.4e7d811b75bb1p-1, -0x1.8d3d9ea6e9ea9p-55}, {0x1.50913cc01686bp-1, 0x1.2f2ce96c2d5b1p-55},
    {0x1.52a2d265bc5abp-1, -0x1.1883750ea4d0ap-57}, {0x1.54b2467999498p-1, -0x1.5baaf5d2f09f4p-55},
    {0x1.56bf9d5b3f399p-1, 0x1.0471885cd8ff3p-55}, {0x1.58cadb5cd7989p-1, 0x1.849792ec98458p-56},
    {0x1.5ad404c359f2dp-1, -0x1.35955683f7196p-59}, {0x1.5cdb1dc6c1765p-1, -0x1.cc2470e8a3df4p-55},
    {0x1.5ee02a9241675p-1, 0x1.c358257f49082p-55}, {0x1.60e32f44788d9p-1, -0x1.ac1bb52fa589bp-56},
    {0x1.62e42fefa39efp-1, 0x1.abc9e3b39803fp-56}
};

/* log(t) as hi + lo for a finite t > 0 (subnormal t scaled by 2^60 first), absolute error below 2^-66:
 * t = 2^e m, m in [1, 2); i = rint(128 (m - 1)), c = 1 + i/128, f = m - c exact (|f| <= 2^-8, both
 * multiples of 2^-52); r + rl = f/c to 2^-104 relative (rl from the division's exact remainder, fma);
 * log m = log c + log1p(r + rl), log1p(r + rl) = r + rl (1 - r) + r^2 (-1/2 + r/3 - ... - r^6/8)
 * (truncation below r^9/9 < 2^-75, the polynomial's rounding below 2^-68 as it is below 2^-17);
 * e ln2 = e LN2_HI (exact: LN2_HI has 32 bits) + e LN2_LO (below 2^-75 off for |e| <= 1134); the
 * table pair is within 2^-106; the sums by TwoSum, the small parts (below 2^-16) added plainly
 * (roundings below 2^-69). Total below 2^-67; 2^-66 is the bound the kernels use. */
KINLINE double klog_pair(double t, double *lo) {
    const double LN2_HI = 0.6931471803691238, LN2_LO = 1.9082149292705877e-10;
    int sub = t < 0x1p-1022;
    double u = sub ? t * 0x1p60 : t;
    uint64_t b = bits_of(u);
    double e = from_bits(((b >> 52) & 0x7ff) | 0x4330000000000000ULL) - (4503599627370496.0 + 1023.0);
    e = sub ? e - 60.0 : e;
    double m = from_bits((b & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL);
    double fi = nearbyint((m - 1.0) * 128.0);
    int i = (int)fi;
    double c = 1.0 + fi * 0x1p-7;
    double f = m - c;
    double r = f / c;
    double rl = fma(-r, c, f) / c;
    double q = -1.0 / 8.0;
    q = q * r + 1.0 / 7.0;
    q = q * r - 1.0 / 6.0;
    q = q * r + 1.0 / 5.0;
    q = q * r - 1.0 / 4.0;
    q = q * r + 1.0 / 3.0;
    q = q * r - 0.5;
    double tail = (q * r) * r;
    double rest = ((rl - rl * r) + (e * LN2_LO + LOG_TABLE[i][1])) + tail;
    double a_lo, a = two_sum(e * LN2_HI, LOG_TABLE[i][0], &a_lo);
    double b_lo, bh = two_sum(r, rest, &b_lo);
    double h_lo, h = two_sum(a, bh, &h_lo);
    double l = (a_lo + b_lo) + h_lo;
    double hi = h + l;
    *lo = l - (hi - h);
    return hi;
}

/* exp(y) as hi + lo for y <= 709 (0 below -745, NaN kept), relative error below 2^-57 for normal
 * results (absolute 2^-1074 below): y = k ln2 + (r + rl) with r + rl exact to 2^-74 (TwoSum of the
 * exact y - k LN2_HI and the TwoProduct k LN2_LO), |r| <= 0.3466; exp(r + rl) = (1 + r) + r^2/2
 * (both exact pairs: fast TwoSum, fma) + r^3 (1/6 + r/24 + ... + r^13/16!) (truncation below 2^-74;
 * this part, below 0.0075, is the one rounded: below 2^-59.4 relative) + rl (1 + r). */
KINLINE double kexp_dd(double y, double *lo) {
    const double LOG2E = 1.4426950408889634, LN2_HI = 0.6931471803691238,
                 LN2_LO = 1.9082149292705877e-10;
    double yc = y < -745.0 ? -745.0 : (y > 709.0 ? 709.0 : y);
    double k = nearbyint(yc * LOG2E);
    double a = yc - k * LN2_HI;
    double pl = k * LN2_LO, ple = fma(k, LN2_LO, -pl);
    double rl0, r = two_sum(a, -pl, &rl0);
    double rl = rl0 - ple;
    double h = 1.0 + r, hl = r - (h - 1.0);
    double sq = r * r, sqe = fma(r, r, -sq);
    double h2l, h2 = two_sum(h, 0.5 * sq, &h2l);
    double p = 1.0 / 20922789888000.0;
    p = p * r + 1.0 / 1307674368000.0;
    p = p * r + 1.0 / 87178291200.0;
    p = p * r + 1.0 / 6227020800.0;
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
    double l = ((hl + h2l) + (0.5 * sqe + rl * (1.0 + r))) + (sq * r) * p;
    double hi = h2 + l;
    l = l - (hi - h2);
    double k1 = floor(k * 0.5), k2 = k - k1, s1 = pow2(k1), s2 = pow2(k2);
    hi = hi * s1 * s2;
    l = l * s1 * s2;
    int zero = y < -745.0;
    *lo = (zero || y != y) ? 0.0 : l;
    hi = zero ? 0.0 : hi;
    return y != y ? y : hi;
}

/* e_j = exp(x_j - m) (0 at the top) with x_j - m as an exact pair (TwoSum), into e; the caller sums
 * them with acc_sum. Each e_j within 1.5 2^-53 + 2^-55 relative (kexp_pair), absolute 2^-1074 where
 * it is subnormal. */
CLONES static void softmax_others_d(const double *xr, idx k, idx top, double *e) {
    double m = xr[top];
    PRAGMA(omp simd)
    for (idx j = 0; j < k; j++) {
        double c, d = two_sum(xr[j], -m, &c);
        c = c - c == 0.0 ? c : 0.0;
        double v = kexp_pair(d, c);
        e[j] = j == top ? 0.0 : v;
    }
}

/* Sparse categorical cross-entropy from logits, float64 (crossentropy._scce_hard with exp_difference):
 * value = (m - x_y) + log1p(S), log1p(S) alone at y = top; gradient e_j/(1+S), e_y/(1+S) - 1 at the
 * label (one fma), 1/(1+S) or -S/(1+S) at the top.
 * Error (in units of 2^-53 relative): S (acc_sum of the e_j, 1.75 each) within 1.75 + 1 = 2.75
 * (acc_sum's second-order term (k 2^-53)^2 is negligible); log1p(S) adds 2.9 (its condition number
 * S/((1+S) log1p S) is below 1): 5.65; the value, m - x_y rounded (1) plus that non-negative term,
 * rounded (1): below 6.65, so 6.65 ulp. Gradient: e_j/(1+S) within 1.75 + 2.75 + 2 (1+S rounded, the
 * quotient) = 6.5; at a label other than the top, e_y/(1+S) <= 1/2, so fma(e_y, 1/(1+S), -1), in
 * [-1, -1/2], has an absolute error below 6.5/2 before its one rounding: 6.5 + 1 = 7.5 relative;
 * -S/(1+S) within 2.75 + 2 (S's error enters it through the factor 1/(1+S)); 1/(1+S) within 2.75 + 2;
 * the scale one more rounding (none for scale 1). Flagged (NaN): a row with y = top whose S lies in
 * (0, 2^-960), where subnormal e_j (absolute error 2^-1074 each) could show in the value S. */
CLONES static void scce_logits_d(const void *t, const double *x, idx rows, idx k, double *value,
                                 double *grad, const double *scale, double *e, const double *prm) {
    const int64_t *label = t;
    for (idx r = 0; r < rows; r++) {
        const double *xr = x + r * k;
        idx top = row_top_d(xr, k);
        int64_t yl = label[r];
        idx y = (yl < 0 || yl >= k) ? top : (idx)yl;
        softmax_others_d(xr, k, top, e);
        double s = acc_sum(e, k, 0.0, 0.0);
        double tail = klog1p(s);
        double v = y == top ? tail : (xr[top] - xr[y]) + tail;
        value[r] = (y == top && s > 0.0 && s < 0x1p-960) ? NAN : v;
        if (grad) {
            double sc = scale ? scale[r] : 1.0, inv = 1.0 / (1.0 + s);
            double *gr = grad + r * k;
            PRAGMA(omp simd)
            for (idx j = 0; j < k; j++) gr[j] = write_grad_d(e[j] * inv, sc);
            if (y != top) gr[y] = write_grad_d(fma(e[y], inv, -1.0), sc);
            gr[top] = write_grad_d(y == top ? -s * inv : inv, sc);
        }
    }
}

/* Categorical cross-entropy from logits with soft targets, float64 (crossentropy.cross_entropy_of_logits):
 * value = sum_j t_j (m - x_j) + T log1p(S), T = sum t; every term non-negative. m - x_j is an exact
 * pair and t_j (m - x_j) an exact TwoProduct plus t_j times the pair's low part, so the first sum
 * (acc_sum) is within 2^-53 (+ (k 2^-53)^2: nothing); T (acc_sum) within 2^-53, log1p(S) within 5.65
 * 2^-53 (see scce_logits_d), and fma(T, log1p S, first sum) rounds once: the value within
 * 1 + 5.65 + 1 = 7.65 2^-53 relative, 7.65 ulp. Gradient as the generic kernel: T e_j/(1+S) - t_j,
 * and (sum_{j != top} t_j - t_top S)/(1+S) at the top (the sum of the others summed directly where
 * the top of t is the top of x). Flagged as scce_logits_d: S in (0, 2^-960) (its value term). */
CLONES static void cce_logits_d(const void *tv, const double *x, idx rows, idx k, double *value,
                                double *grad, const double *scale, double *work, const double *prm) {
    const double *t = tv;
    double *e = work, *parts = work + k;
    for (idx r = 0; r < rows; r++) {
        const double *xr = x + r * k, *tr = t + r * k;
        idx top = row_top_d(xr, k);
        double m = xr[top], small = 0.0;
        softmax_others_d(xr, k, top, e);
        double s = acc_sum(e, k, 0.0, 0.0);
        SIMD_SUM(small)
        for (idx j = 0; j < k; j++) {
            double tj = tr[j], dl, d = two_sum(m, -xr[j], &dl);
            dl = dl - dl == 0.0 ? dl : 0.0;
            d = j == top ? 0.0 : d;
            dl = j == top ? 0.0 : dl;
            double p = tj * d, pe = fma(tj, d, -p) + tj * dl;
            pe = p - p == 0.0 ? pe : 0.0;
            parts[j] = tj == 0.0 ? 0.0 : p;
            small += tj == 0.0 ? 0.0 : pe;
        }
        double lin = acc_sum(parts, k, small, 0.0);
        double total = acc_sum(tr, k, 0.0, 0.0);
        double tail = klog1p(s);
        double v = total == 0.0 ? lin : fma(total, tail, lin);
        value[r] = (s > 0.0 && s < 0x1p-960) ? NAN : v;
        if (grad) {
            double sc = scale ? scale[r] : 1.0, inv = 1.0 / (1.0 + s), t_others;
            idx ttop;
            double t_total = sums_d(tr, k, &ttop, &t_others);
            double others = top == ttop ? t_others : t_total - tr[top];
            double *gr = grad + r * k;
            PRAGMA(omp simd)
            for (idx j = 0; j < k; j++) gr[j] = write_grad_d(t_total * (e[j] * inv) - tr[j], sc);
            gr[top] = write_grad_d((others - tr[top] * s) * inv, sc);
        }
    }
}

/* The KL kernels' check: a row keeps its value v (a compensated sum of exact products, within 2^-53
 * |v| once rounded) when the bound err of everything else is at most 6 2^-53 |v| (7 ulp in all);
 * otherwise (also where v is NaN) the row gets NaN and is recomputed by the generic kernel. err =
 * delta sum_j w_j (the pairs' error times each term's weight) + slack sum_j |p_j| with slack =
 * k 2^-103 (the low parts, each below 2^-50 |p_j|, summed plainly) + (k 2^-53)^2 (acc_sum's second
 * order) + k 2^-1070 (TwoProducts whose low part underflows). */
KINLINE double kl_keep(double v, double wsum, double delta, double absum, idx k) {
    double kd = (double)k;
    double err = delta * wsum + (kd * 0x1p-103 + kd * kd * 0x1p-106) * absum + kd * 0x1p-1070;
    int ok = err <= 6.0 * 0x1p-53 * fabs(v);
    return (ok || v == INFINITY) ? v : NAN;
}

/* KL with log-probability predictions, float64 (divergence._kl_div; prm[0] = log_target).
 * Probability targets: term t (log t - x) with log t = L + Ll (klog_pair, absolute error 2^-66), L - x
 * an exact pair (TwoSum) plus Ll, t times it an exact TwoProduct plus t times the low part: each
 * term within 2^-66 t (weight w = t, delta 2^-66) plus roundings of the low parts (slack).
 * Log targets: term e^y (y - x) with e^y = E + El (kexp_dd, relative 2^-57, absolute 2^-1074 where
 * subnormal), y - x an exact pair: within 2^-57 e^y |y - x| (w = (e^y + 2^-1017) |y - x|, delta 2^-57).
 * 0 where t = 0 (also for x = -inf), inf where x = -inf < log t, NaN where x or t is NaN; the row
 * checked by kl_keep. Gradient -t (e^y rounded once from its pair). */
CLONES static void kl_div_d(const void *tv, const double *x, idx rows, idx k, double *value,
                            double *grad, const double *scale, double *work, const double *prm) {
    const double *yt = tv;
    int log_target = prm[0] != 0.0;
    double delta = log_target ? 0x1p-57 : 0x1p-66;
    for (idx r = 0; r < rows; r++) {
        const double *xr = x + r * k, *yr = yt + r * k;
        double small = 0.0, wsum = 0.0, absum = 0.0;
        PRAGMA(omp simd reduction(+ : small, wsum, absum))
        for (idx j = 0; j < k; j++) {
            double xv = xr[j], yv = yr[j], tj, tl, d, dl, w;
            if (log_target) {
                tj = kexp_dd(yv, &tl);
                d = two_sum(yv, -xv, &dl);
                w = (tj + 0x1p-1017) * fabs(d);
            } else {
                double ll, l = klog_pair(yv > 0.0 ? yv : 1.0, &ll);
                tj = yv;
                tl = 0.0;
                d = two_sum(l, -xv, &dl);
                dl += ll;
                w = tj;
            }
            int fin = d - d == 0.0;
            dl = fin ? dl : 0.0;
            double p = tj * d, pe = fma(tj, d, -p) + (tj * dl + tl * d);
            int live = tj > 0.0;
            pe = (fin && live) ? pe : 0.0;
            p = live ? p : 0.0;
            p = (xv != xv || yv != yv) ? NAN : p;
            work[j] = p;
            small += pe;
            wsum += live ? w : 0.0;
            absum += fabs(p);
        }
        double v = acc_sum(work, k, small, 0.0);
        value[r] = kl_keep(v, wsum, delta, absum, k);
        if (grad) {
            double sc = scale ? scale[r] : 1.0, *gr = grad + r * k;
            if (log_target) {
                PRAGMA(omp simd)
                for (idx j = 0; j < k; j++) {
                    double tl, th = kexp_dd(yr[j], &tl);
                    gr[j] = write_grad_d(-(th + tl), sc);
                }
            } else {
                PRAGMA(omp simd)
                for (idx j = 0; j < k; j++) gr[j] = write_grad_d(-yr[j], sc);
            }
        }
    }
}

/* KL divergence of probabilities, float64 (divergence._kl): term t log(t/p) = t ((Lt - Lp) + (lt -
 * lp)) with both logarithms from klog_pair (2^-66 each: delta 2^-65, weight t), the difference an
 * exact pair and the product a TwoProduct as in kl_div_d; 0 where t = 0, inf where p = 0 < t; the row
 * checked by kl_keep. Gradient -t/p (one rounding), 0 where t = 0. */
CLONES static void kl_d(const void *tv, const double *x, idx rows, idx k, double *value, double *grad,
                        const double *scale, double *work, const double *prm) {
    const double *yt = tv;
    for (idx r = 0; r < rows; r++) {
        const double *pr = x + r * k, *tr = yt + r * k;
        double small = 0.0, wsum = 0.0, absum = 0.0;
        PRAGMA(omp simd reduction(+ : small, wsum, absum))
        for (idx j = 0; j < k; j++) {
            double pv = pr[j], tj = tr[j];
            double ltl, lt = klog_pair(tj > 0.0 ? tj : 1.0, &ltl);
            double lpl, lp = klog_pair(pv > 0.0 ? pv : 1.0, &lpl);
            double dl, d = two_sum(lt, -lp, &dl);
            dl += ltl - lpl;
            double p = tj * d, pe = fma(tj, d, -p) + tj * dl;
            int live = tj > 0.0;
            pe = live ? pe : 0.0;
            p = live ? p : 0.0;
            p = (live && pv == 0.0) ? INFINITY : p;
            pe = pv == 0.0 ? 0.0 : pe;
            p = (pv != pv || tj != tj) ? NAN : p;
            work[j] = p;
            small += pe;
            wsum += live ? tj : 0.0;
            absum += fabs(p);
        }
        double v = acc_sum(work, k, small, 0.0);
        value[r] = kl_keep(v, wsum, 0x1p-65, absum, k);
        if (grad) {
            double sc = scale ? scale[r] : 1.0, *gr = grad + r * k;
            PRAGMA(omp simd)
            for (idx j = 0; j < k; j++) {
                double tj = tr[j];
                gr[j] = write_grad_d(tj != 0.0 ? -tj / pr[j] : 0.0, sc);
            }
        }
    }
}

/* log1p(q + ql) for q >= 0 and |ql| <= ulp(q): klog1p(q) + ql/(1 + q) (the pair's low part enters
 * with the derivative; its own error is below 2^-100 relative). */
KINLINE double klog1p_pair(double q, double ql) {
    double v = klog1p(q);
    return q == INFINITY ? q : v + ql / (1.0 + q);
}

/* R_j / p_j as a pair (q + ql, to 2^-100 relative) for R_j = (P + Pl) - p_j, or the others' sum (Ro
 * + Rol) at the top: P - p_j is an exact TwoSum, the quotient's remainder exact by fma. */
KINLINE double ratio_pair(double rh, double rl, double p, double *ql) {
    double q = rh / p;
    double rem = fma(-q, p, rh) + rl;
    *ql = (q - q == 0.0 && p > 0.0) ? rem / p : 0.0;
    return q;
}

/* Categorical cross-entropy of renormalised probabilities, float64 (crossentropy._from_probabilities):
 * value = sum_j t_j log1p(R_j / p_j), R_j = P - p_j (P = sum p as a compensated pair, P - p_j an exact
 * pair: R_j >= P/2 off the top) and the others' compensated sum at the top; R_j/p_j a pair (ratio_pair)
 * and its log1p within 2.9 2^-53 (klog1p; condition number below 1); each term one more rounding and
 * the row acc_sum'ed: the value within 4.9 2^-53 relative (terms all non-negative). 0 where t_j = 0,
 * inf where p_j = 0 < t_j. Flagged: a row where some R_j/p_j overflows with p_j > 0 (the generic
 * kernel's log(R) - log(p) branch). Gradient as the generic kernel: ((T - t_i) p_i - t_i R_i)/(p_i P),
 * T/P where t_i = 0. */
CLONES static void cce_probs_d(const void *tv, const double *x, idx rows, idx k, double *value,
                               double *grad, const double *scale, double *work, const double *prm) {
    const double *t = tv;
    double *parts = work, *other = work + k;
    for (idx r = 0; r < rows; r++) {
        const double *pr = x + r * k, *tr = t + r * k;
        idx top = row_top_d(pr, k);
        double big_lo, big = acc_sum_pair(pr, k, &big_lo);
        memcpy(other, pr, (size_t)k * sizeof(double));
        other[top] = 0.0;
        double ro_lo, ro = acc_sum_pair(other, k, &ro_lo);
        int huge = 0;
        for (idx j = 0; j < k; j++) {
            double p = pr[j], tj = tr[j], rl, rh = two_sum(big, -p, &rl);
            rl = rl - rl == 0.0 ? rl + big_lo : 0.0;
            rh = j == top ? ro : rh;
            rl = j == top ? ro_lo : rl;
            double ql, q = ratio_pair(rh, rl, p, &ql);
            huge |= q == INFINITY && p > 0.0;
            double n = klog1p_pair(q, ql);
            double term = tj == 0.0 ? 0.0 : tj * n;
            parts[j] = term;
        }
        double v = acc_sum(parts, k, 0.0, 0.0);
        value[r] = huge ? NAN : v;
        if (grad) {
            double sc = scale ? scale[r] : 1.0, *gr = grad + r * k, tt_others;
            idx ttop;
            double tt = sums_d(tr, k, &ttop, &tt_others);
            for (idx j = 0; j < k; j++) {
                double p = pr[j], tj = tr[j];
                double rj = j == top ? ro : big - p;
                double trj = j == ttop ? tt_others : tt - tj;
                double g = tj == 0.0 ? tt / big : ((trj * p - tj * rj) / p) / big;
                gr[j] = write_grad_d(g, sc);
            }
        }
    }
}

/* Sparse categorical cross-entropy of renormalised probabilities, float64 (crossentropy._scce_hard):
 * value log1p(R_y/p_y) with R_y and the ratio as pairs (see cce_probs_d): within 2.9 2^-53 + 2^-100;
 * flagged where R_y/p_y overflows with p_y > 0. Gradient 1/P, and -(R_y/p_y)/P at the label. */
CLONES static void scce_probs_d(const void *tv, const double *x, idx rows, idx k, double *value,
                                double *grad, const double *scale, double *work, const double *prm) {
    const int64_t *label = tv;
    for (idx r = 0; r < rows; r++) {
        const double *pr = x + r * k;
        idx top = row_top_d(pr, k);
        int64_t yl = label[r];
        idx y = (yl < 0 || yl >= k) ? top : (idx)yl;
        double big_lo, big = acc_sum_pair(pr, k, &big_lo), py = pr[y], rh, rl;
        if (y == top) {
            memcpy(work, pr, (size_t)k * sizeof(double));
            work[top] = 0.0;
            rh = acc_sum_pair(work, k, &rl);
        } else {
            rh = two_sum(big, -py, &rl);
            rl = rl - rl == 0.0 ? rl + big_lo : 0.0;
        }
        double ql, q = ratio_pair(rh, rl, py, &ql);
        double v = klog1p_pair(q, ql);
        value[r] = (q == INFINITY && py > 0.0) ? NAN : v;
        if (grad) {
            double sc = scale ? scale[r] : 1.0, inv = 1.0 / big, *gr = grad + r * k;
            for (idx j = 0; j < k; j++) gr[j] = write_grad_d(inv, sc);
            gr[y] = write_grad_d(-(rh / py) / big, sc);
        }
    }
}

/* Vectorised pairs for the tests (py_map ids 8 and 9): in[2i] -> out[2i] + out[2i+1] = log or exp */
CLONES static void map_log_pair(const double *a, double *o, idx n) {
    for (idx i = 0; i + 1 < n; i += 2) o[i] = klog_pair(a[i], o + i + 1);
}
CLONES static void map_exp_pair(const double *a, double *o, idx n) {
    for (idx i = 0; i + 1 < n; i += 2) o[i] = kexp_dd(a[i], o + i + 1);
}

/* cce_probs for the value alone, where the targets are sparse (one-hot, or few non-zero): the same
 * terms t_j log1p(R_j / p_j), but evaluated only where t_j != 0 (NaN included) instead of a log1p
 * and two divisions for every class then masked: the value is the same sum of the same non-negative
 * terms (only the order of the additions differs). The rows with over k/4 non-zero targets (each run
 * of them in one call), and any call with a gradient, go to cce_probs. */
CLONES static void cce_probs_sparse(const void *tv, const float *x, idx rows, idx k, double *value,
                                    float *grad, const double *scale, double *work, const double *prm) {
    const float *t = tv;
    if (grad) {
        cce_probs(tv, x, rows, k, value, grad, scale, work, prm);
        return;
    }
    idx dense = 0; /* the first of the dense rows before r, which cce_probs takes in one call */
    for (idx r = 0; r < rows; r++) {
        const float *pr = x + r * k, *tr = t + r * k;
        idx nz = 0;
        SIMD_SUM(nz)
        for (idx j = 0; j < k; j++) nz += tr[j] != 0.0f;
        if (4 * nz > k) {
            if (r + 1 == rows) cce_probs(t + dense * k, x + dense * k, rows - dense, k, value + dense, NULL,
                                         NULL, work, prm);
            continue;
        }
        if (dense < r) cce_probs(t + dense * k, x + dense * k, r - dense, k, value + dense, NULL, NULL, work,
                                 prm);
        dense = r + 1;
        idx top = row_top(pr, k);
        double big, others_top, sum = 0.0;
        row_sums(pr, k, top, &big, &others_top);
        for (idx j = 0; j < k; j++) {
            if (tr[j] == 0.0f) continue;
            double p = (double)pr[j], tj = (double)tr[j];
            double rj = j == top ? others_top : big - p;
            sum += tj * klog1p(rj / p);
        }
        value[r] = sum;
    }
}

/* Multi-margin on float64 input (multi_margin's formula, KERNELS64; prm as multi_margin's).
 * m_j = margin + (x_j - x_y) as a pair mh + ml: x_j - x_y = d + e exactly (TwoSum; e is 0 where an
 * infinite score makes it NaN, as margin.shifted_difference does), margin + d = s + se exactly
 * (TwoSum), mh + ml = s + (se + e) (TwoSum; the one rounding, of se + e, is below 2^-105 |m|), so
 * mh carries the exact sign and is within 1/2 ulp of m. Terms: p = 1, max(0, mh) plus ml where
 * mh > 0; p = 2, mh^2 as an exact TwoProduct plus 2 mh ml: each within 2^-100 relative. The terms
 * are non-negative: their compensated sum (acc_sum, the low parts as its extra input) is within
 * 2^-53 (1 + 2^-45) relative; / k and the weight w_y (xmul) two more roundings: the value within
 * 3.1 ulp. Gradient: slopes kink(mh) (exact) or 2 mh (1/2 ulp), their sum at y compensated
 * (acc_sum, 1 ulp), then / k and w_y (xmul) and the scale: within 4.5 ulp. NaN rows NaN; a row whose
 * value is not finite is recomputed by the generic kernel (_core). work: 2 k doubles. */
/* one row's terms (and slopes, with SLOPES) of multi_margin_d, P2 and SLOPES constant at each call:
 * one vectorised loop each; returns the sum of the low parts */
KINLINE double multi_margin_row_d(const double *xr, idx k, idx y, double margin, const int P2,
                                  const int SLOPES, double *terms, double *slopes) {
    double xy = xr[y], small = 0.0;
    SIMD_SUM(small)
    for (idx j = 0; j < k; j++) {
        double e, d = two_sum(xr[j], -xy, &e);
        e = e - e == 0.0 ? e : 0.0;
        double se, s = two_sum(margin, d, &se);
        se = se - se == 0.0 ? se : 0.0;
        double ml, mh = two_sum(s, se + e, &ml);
        ml = ml - ml == 0.0 ? ml : 0.0;
        mh = j == y ? -INFINITY : mh;
        int on = mh > 0.0;
        double a = max0(mh);
        if (P2) {
            double q = a * a, qe = on ? fma(a, a, -q) + 2.0 * a * ml : 0.0;
            terms[j] = q;
            small += qe - qe == 0.0 ? qe : 0.0;
        } else {
            terms[j] = a;
            small += on ? ml : 0.0;
        }
        if (SLOPES) slopes[j] = j == y ? 0.0 : (P2 ? 2.0 * a : kink(mh));
    }
    return small;
}

CLONES static void multi_margin_d(const void *tv, const double *x, idx rows, idx k, double *value,
                                  double *grad, const double *scale, double *work, const double *prm) {
    const int64_t *label = tv;
    int p2 = prm[0] == 2.0, has_w = prm[2] != 0.0;
    double margin = prm[1], kd = (double)k;
    const double *w = prm + 3;
    double *terms = work, *slopes = work + k;
    for (idx r = 0; r < rows; r++) {
        const double *xr = x + r * k;
        idx y = label_of(label, r, k);
        double small;
        if (grad) small = p2 ? multi_margin_row_d(xr, k, y, margin, 1, 1, terms, slopes)
                             : multi_margin_row_d(xr, k, y, margin, 0, 1, terms, slopes);
        else small = p2 ? multi_margin_row_d(xr, k, y, margin, 1, 0, terms, slopes)
                        : multi_margin_row_d(xr, k, y, margin, 0, 0, terms, slopes);
        double wy = has_w ? w[y] : 1.0;
        double val = acc_sum(terms, k, small, 0.0) / kd;
        val = has_w ? xmul(wy, val) : val;
        value[r] = val;
        if (grad) {
            double sc = scale ? scale[r] : 1.0, ssum = acc_sum(slopes, k, 0.0, 0.0);
            double *gr = grad + r * k;
            for (idx j = 0; j < k; j++) {
                double g = (j == y ? -ssum : slopes[j]) / kd;
                g = has_w ? xmul(wy, g) : g;
                gr[j] = write_grad_d(val != val ? val : g, sc);
            }
        }
    }
}

/* Multilabel soft margin on float64 input (multilabel_soft_margin's formula, KERNELS64; prm as
 * multilabel_soft_margin's): the term is binary cross-entropy from logits without smoothing
 * (bce_logits_at, the float64 term bce_logits_d uses: two non-negative parts), times w_j (xmul);
 * the non-negative terms summed with compensation (acc_sum) and divided by k: the value within the
 * terms' own error plus 2 roundings. Gradient w_j bce_logits_at's derivative / k times the scale;
 * NaN rows NaN; a row whose value is not finite is recomputed by the generic kernel (_core). */
CLONES static void multilabel_soft_margin_d(const void *tv, const double *x, idx rows, idx k,
                                            double *value, double *grad, const double *scale,
                                            double *work, const double *prm) {
    static const double NO_SMOOTHING[1] = {0.0};
    const double *y = tv, *w = prm + 1;
    double kd = (double)k, *g = work + k;
    for (idx r = 0; r < rows; r++) {
        const double *xr = x + r * k, *yr = y + r * k;
        if (grad) {
            PRAGMA(omp simd)
            for (idx j = 0; j < k; j++)
                work[j] = xmul(w[j], bce_logits_at(xr[j], yr[j], NO_SMOOTHING, g + j));
        } else {
            PRAGMA(omp simd)
            for (idx j = 0; j < k; j++) work[j] = xmul(w[j], bce_logits_at(xr[j], yr[j], NO_SMOOTHING, NULL));
        }
        double val = acc_sum(work, k, 0.0, 0.0) / kd;
        value[r] = val;
        if (grad) {
            double sc = scale ? scale[r] : 1.0, *gr = grad + r * k;
            PRAGMA(omp simd)
            for (idx j = 0; j < k; j++) gr[j] = write_grad_d(val != val ? val : (w[j] * g[j]) / kd, sc);
        }
    }
}

/* Multiclass hinge on float64 input (multiclass_hinge's code in double, KERNELS64): m = (1 + d) + e
 * with d + e = top - s_y exactly (TwoSum; e 0 where an infinite score makes it NaN). As for
 * margin_ranking_d: where 1 + d cancels (Sterbenz) m is one rounding of the exact M, elsewhere within
 * 2^-52 (1 + 2^-50) |M| (2 ulp), and M = 0 only in the first case, so the sign (the gradient's kink)
 * is exact; value max(0, m) within 2 ulp; gradient exact (then the scale). NaN rows NaN; rows whose
 * value is not finite are recomputed by the generic kernel (_core). */
CLONES static void multiclass_hinge_d(const void *tv, const double *x, idx rows, idx k, double *value,
                                      double *grad, const double *scale, double *work,
                                      const double *prm) {
    const int64_t *label = tv;
    for (idx r = 0; r < rows; r++) {
        const double *sr = x + r * k;
        idx y = label_of(label, r, k);
        double sy = sr[y], top = -INFINITY;
        int nan = 0;
        for (idx j = 0; j < k; j++) {
            double v = j == y ? -INFINITY : sr[j];
            nan |= v != v;
            top = v > top ? v : top;
        }
        top = nan ? NAN : top;
        double e, d = two_sum(top, -sy, &e);
        e = e - e == 0.0 ? e : 0.0;
        double m = (1.0 + d) + e;
        m = sy != sy ? sy : m;
        double val = max0(m);
        value[r] = val;
        if (grad) {
            double sc = scale ? scale[r] : 1.0, a = kink(m), *gr = grad + r * k;
            idx count = 0;
            for (idx j = 0; j < k; j++) count += (j == y ? -INFINITY : sr[j]) == top;
            double wt = count > 1 ? 0.5 : 1.0;
            for (idx j = 0; j < k; j++) {
                double v = j == y ? -INFINITY : sr[j];
                double g = a * ((v == top ? wt : 0.0) - (j == y ? 1.0 : 0.0));
                gr[j] = write_grad_d(val != val ? val : g, sc);
            }
        }
    }
}

/* Total variation on float64 input (KERNELS64): 1/2 sum |p - t| with p - t rounded once (1/2 ulp,
 * its sign exact), the non-negative terms summed with compensation (acc_sum), times 1/2 exactly:
 * within 1.5 ulp. Gradient sign(p - t)/2, exact (0 where p = t). */
CLONES static void total_variation_d(const void *tv, const double *x, idx rows, idx k, double *value,
                                     double *grad, const double *scale, double *work,
                                     const double *prm) {
    const double *t = tv;
    for (idx r = 0; r < rows; r++) {
        const double *pr = x + r * k, *tr = t + r * k;
        double sc = scale ? scale[r] : 1.0;
        PRAGMA(omp simd)
        for (idx j = 0; j < k; j++) work[j] = fabs(pr[j] - tr[j]);
        value[r] = 0.5 * acc_sum(work, k, 0.0, 0.0);
        if (grad) {
            double *gr = grad + r * k;
            PRAGMA(omp simd)
            for (idx j = 0; j < k; j++) gr[j] = write_grad_d(0.5 * sign_of(pr[j] - tr[j]), sc);
        }
    }
}

/* Categorical hinge on float64 input (KERNELS64): categorical_hinge's code in double, which is
 * margin._categorical_hinge's float64 formula operation for operation (1 - t and the products
 * rounded as xmul, 1 + neg - sum t f summed by acc_sum, _numerics.accurate_sum's algorithm), so the
 * value and gradient are the generic kernel's. */
CLONES static void categorical_hinge_d(const void *tv, const double *x, idx rows, idx k,
                                       double *value, double *grad, const double *scale,
                                       double *work, const double *prm) {
    const double *t = tv;
    for (idx r = 0; r < rows; r++) {
        const double *fr = x + r * k, *tr = t + r * k;
        double neg = -INFINITY;
        int nan = 0;
        for (idx j = 0; j < k; j++) {
            double v = xmul(1.0 - tr[j], fr[j]);
            nan |= v != v;
            neg = v > neg ? v : neg;
            work[j] = -xmul(tr[j], fr[j]);
        }
        neg = nan ? NAN : neg;
        double m = acc_sum(work, k, 1.0, neg);
        double val = max0(m);
        value[r] = val;
        if (grad) {
            double sc = scale ? scale[r] : 1.0, a = kink(m), *gr = grad + r * k;
            idx count = 0;
            for (idx j = 0; j < k; j++) count += xmul(1.0 - tr[j], fr[j]) == neg;
            double wt = count > 1 ? 0.5 : 1.0;
            for (idx j = 0; j < k; j++) {
                double tj = tr[j], v = xmul(1.0 - tj, fr[j]);
                double g = a * ((1.0 - tj) * (v == neg ? wt : 0.0) - tj);
                gr[j] = write_grad_d(val != val ? val : g, sc);
            }
        }
    }
}

/* scce_probs with y_pred's domain check folded into its pass (KERNELS id 39; numpy.py's float32
 * sparse cross-entropy from probabilities runs this one): the same values and gradients as
 * scce_probs, bit for bit (the same sums in the same order, the same klog1p over a block's rows),
 * and while each element is read for the sum, the largest bit pattern of the row's float32 elements
 * read as unsigned integers. Every p in [+0, 1] has a pattern at most 0x3f800000 (1.0f); negative
 * numbers (sign bit set, -0.0 included), values above 1, infinities and NaN have larger ones. A row
 * with a larger pattern gets the value NaN, which the Python side reads as "check the domain as
 * _core does": that raises _core's message for an element outside [0, 1]; otherwise (NaN, which the
 * domain lets through, or -0.0) scce_probs runs again for the whole call. The check costs an integer
 * max per element read anyway, instead of the two min/max reductions over y_pred (a second and a
 * third read of it) that _core ran before the kernel. */
CLONES static void scce_probs_checked(const void *tv, const float *x, idx rows, idx k, double *value,
                                      float *grad, const double *scale, double *work, const double *prm) {
    const int64_t *label = tv;
    double rs[BLOCK], ps[BLOCK];
    idx ys[BLOCK];
    uint32_t hb[BLOCK];
    idx rb = k <= SHORT_ROW ? BLOCK / k : 1;
    for (idx r0 = 0; r0 < rows; r0 += rb) {
        idx nr = rows - r0 < rb ? rows - r0 : rb;
        const float *pb = x + r0 * k;
        PRAGMA(omp simd)
        for (idx r = 0; r < nr; r++) {
            int64_t yl = label[r0 + r];
            ys[r] = (yl < 0 || yl >= k) ? 0 : (idx)yl;
            rs[r] = 0.0;
            hb[r] = 0;
        }
        if (k <= SHORT_ROW) {
            for (idx j = 0; j < k; j++) {
                PRAGMA(omp simd)
                for (idx r = 0; r < nr; r++) {
                    float f = pb[r * k + j];
                    uint32_t b = fbits32(f);
                    rs[r] += j == ys[r] ? 0.0 : (double)f;
                    hb[r] = b > hb[r] ? b : hb[r];
                }
            }
        } else {
            double o = 0.0;
            uint32_t h = 0;
            idx y = ys[0];
            PRAGMA(omp simd reduction(+ : o) reduction(max : h))
            for (idx j = 0; j < k; j++) {
                float f = pb[j];
                uint32_t b = fbits32(f);
                o += j == y ? 0.0 : (double)f;
                h = b > h ? b : h;
            }
            rs[0] = o;
            hb[0] = h;
        }
        for (idx r = 0; r < nr; r++) ps[r] = (double)pb[r * k + ys[r]];
        PRAGMA(omp simd)
        for (idx r = 0; r < nr; r++) value[r0 + r] = klog1p(rs[r] / ps[r]);
        for (idx r = 0; r < nr; r++) {
            int64_t yl = label[r0 + r];
            double big = rs[r] + ps[r];
            float *gr = grad ? grad + (r0 + r) * k : NULL;
            if (hb[r] > 0x3f800000u) {  /* outside [+0, 1], or NaN: the caller checks */
                value[r0 + r] = NAN;
                continue;
            }
            if (yl < 0 || yl >= k || !(big > 0.0 && big < INFINITY)) {
                scce_probs_rows(label + r0 + r, pb + r * k, 1, k, value + r0 + r, gr,
                                scale ? scale + r0 + r : NULL, work, prm);
                continue;
            }
            if (gr) scce_probs_grad_row(gr, k, ys[r], big, rs[r], ps[r], scale ? scale[r0 + r] : 1.0);
        }
    }
}

/* ------------------------ cross-entropy of probabilities, float32, domain checked (issue 8, KERNELS id 40)
 *
 * cce_probs_checked: the loss of cce_probs (renormalised rows, sum_j t_j log(P / p_j)) with one klogf_d
 * per element, no double log per element or per row, the row sums in one pass (the top's "others"
 * kept while the row is read: where a new first maximum appears at j, the others' sum becomes the
 * sum of everything before j, then every later non-top element is added to it, so it is the sum of
 * the non-top elements in index order, as a direct sum) and y_pred's and y_true's domain [0, 1]
 * checked in that same pass: the largest bit pattern of the row's float32 p and t read as unsigned
 * integers is above 0x3f800000 (1.0f) exactly when an element is negative (-0.0 included), above
 * 1, infinite or NaN. Such a row gets the value NaN, which the Python side reads as "check the
 * domain as _core does, then run cce_probs" (numpy.py's _cce_probs_checked). Rows whose P is 0 (all
 * p_j zero) take cce_probs_rows.
 *
 * Value, per row with a the first maximum of p, P = sum_j p_j, R = sum_{j != a} p_j (both summed in
 * double from the float32 p_j: non-negative terms, within k 2^-53 relative), T' = sum_{j != a} t_j,
 * W = sum_{j != a, t_j != 0} t_j log p_j:
 *     loss = (T' log P - W) + t_a h,
 *     h = log1p(R / p_a) where 2 p_a > P (then R/p_a < 1), else log P - log p_a.
 * log p_j = klogf_d(p_j), within 2^-26.5 absolute (its comment). log P: P rounded to float32 (P_f;
 * P <= k, so finite, and at least the smallest p_j > 0, so P_f > 0; P - P_f is exact in double), then
 * log P = klogf_d(P_f) + (P - P_f)/P_f: log(1 + d) - d <= d^2/2 <= 2^-49 for |d| <= 2^-24, so within
 * 2^-26.4 absolute. For j != a, q_j = p_j / P <= 1/2 (p_j <= p_a and p_j + p_a <= P), so each exact
 * term L_j = log P - log p_j is at least ln 2 and the computed one, from logs within 2^-26.4, is within
 * 2^-25.4 / ln 2 = 2^-24.9 relative. The grouping T' log P - W = sum_{j != a} t_j L_j in double: the
 * products and the sums add at most (k + 2) 2^-53 (T' |log P| + sum t_j |log p_j|) <= (k + 2) 2^-53
 * (2 T' |log P| + sum t_j L_j), and |log P| <= 104 (float32's range; P >= 2^-149), sum t_j L_j >=
 * T' ln 2: within (k + 2) 2^-53 (1 + 2 * 104 / ln 2) < (k + 2) 2^-44.7 relative, below 2^-28.6 for
 * k <= 2^16 (longer rows take cce_probs). The top's h: where 2 p_a <= P, log P - log p_a >= ln 2 as
 * above (within 2^-24.9); where 2 p_a > P, x = R / p_a < 1 (one double rounding; log1p's condition
 * number x / ((1 + x) log1p(x)) is below 1) and log1p(x) by klog1p_unit (the softplus tail's
 * division-free polynomial), within 2^-30.1 + 2^-47 relative. All terms are non-negative, so the value is within
 * 2^-24.9 + 2^-28.6 + 3 2^-53 < 2^-24.8 relative before its float32 rounding: under 0.6 ulp for the
 * rounded sum (the 8-ulp contract; tests/test_cce_probs_checked.py holds its hard rows to 1 ulp).
 * Special values: 0 where t_j = 0 (also at p_j = 0), inf where p_j = 0 < t_j (log p_j = -inf, W = -inf).
 *
 * Gradient: cce_probs's expression, ((T - t_j) p_j - t_j R_j) / (p_j P) with R_j = P - p_j (R at the
 * top), T - t_j likewise (the others of t's own first maximum summed in the same pass), T/P where
 * t_j = 0: the same roundings as cce_probs_rows.
 *
 * Rows of at most SHORT_ROW classes run side by side (one lane a row, CCE_RB rows a block, each row's
 * elements in index order); longer rows one at a time: their top found first (row_top's vectorised
 * maximum), then one vectorised pass for the sums with the top left out. */
#define CCE_RB 64

/* c(f) = (log1p(f) - f) / f^2 for f in [sqrt(1/2) - 1, sqrt(2) - 1]: klogf_d's polynomial (h and
 * c = f h - 1/2 in float32, as there) */
KINLINE float klogf_c(float f) {
    float h = 0.06698058545589447f;
    h = h * f - 0.11782003194093704f;
    h = h * f + 0.11973252892494202f;
    h = h * f - 0.12391865253448486f;
    h = h * f + 0.14204512536525726f;
    h = h * f - 0.1666834056377411f;
    h = h * f + 0.200030118227005f;
    h = h * f - 0.25000014901161194f;
    h = h * f + 0.33333295583724976f;
    return f * h - 0.5f;
}

/* log P for a double P > 0 below 2^128 (float32's range): klogf_d of P rounded to float32 plus the
 * relative rounding d = (P - P_f)/P_f (P - P_f exact): within 2^-26.4 absolute */
KINLINE double klog_rowsum(double s) {
    float sf = (float)s;
    double sd = (double)sf;
    return klogf_d(sf) + (s - sd) / sd;
}

/* the value of a row from its sums (above); NaN where the row left the domain */
KINLINE double cce_checked_value(double big, double others, double ptop, double to, double wo,
                                 double ttop, double lptop, uint32_t hb) {
    double lP = klog_rowsum(big);
    double x = others / ptop;
    double h = 2.0 * ptop > big ? klog1p_unit(x < 1.0 ? x : 1.0) : lP - lptop;
    double v = (to * lP - wo) + (ttop == 0.0 ? 0.0 : ttop * h);
    return hb > 0x3f800000u ? NAN : v;
}

/* log p for a float32 p in [+0, 1] (a row that passed the domain check): klogf_d without its inf and
 * NaN cases (-inf at 0, subnormals scaled first): the same value */
KINLINE double klogf_unit(float p) {
    int sub = p < 0x1p-126f;
    float ps = sub ? p * 0x1p24f : p;
    uint32_t b = fbits32(ps);
    int32_t eb = (int32_t)(b >> 23) - (sub ? 151 : 127);
    float m = from_bits32((b & 0x7fffffu) | 0x3f800000u);
    int big = m > 1.41421356f;
    m = big ? m * 0.5f : m;
    eb = big ? eb + 1 : eb;
    float f = m - 1.0f;
    float c = klogf_c(f);
    double fd = (double)f;
    double y = (double)eb * 0.6931471805599453 + (fd + (fd * fd) * (double)c);
    return p == 0.0f ? -INFINITY : y;
}

/* the sums of a block of short rows (above), the rows side by side (one lane a row, the inner,
 * vectorised loop; each row's elements in index order); with_t: also t's top and its others */
KINLINE void cce_checked_block(const float *pb, const float *tb, idx nr, idx k, int with_t, double *big,
                               double *oth, double *tsum, double *to, double *tto, double *wo, double *lpa,
                               float *m, float *ta, idx *tops, idx *ttops, uint32_t *hb) {
    double ws[CCE_RB];
    float tm[CCE_RB];
    int32_t a32[CCE_RB], b32[CCE_RB];
    PRAGMA(omp simd)
    for (idx r = 0; r < nr; r++) {
        big[r] = oth[r] = tsum[r] = to[r] = tto[r] = ws[r] = wo[r] = 0.0;
        m[r] = tm[r] = -1.0f;
        ta[r] = 0.0f;
        a32[r] = b32[r] = 0;
        hb[r] = 0;
    }
    for (idx j = 0; j < k; j++) {
        PRAGMA(omp simd)
        for (idx r = 0; r < nr; r++) {
            float pf = pb[r * k + j], tf = tb[r * k + j];
            uint32_t b = fbits32(pf) > fbits32(tf) ? fbits32(pf) : fbits32(tf);
            hb[r] = b > hb[r] ? b : hb[r];
            double p = (double)pf, tj = (double)tf, lp = klogf_unit(pf);
            double w = tf == 0.0f ? 0.0 : tj * lp;
            int up = !(pf <= m[r]);
            oth[r] = up ? big[r] : oth[r] + p;
            big[r] += p;
            to[r] = up ? tsum[r] : to[r] + tj;
            wo[r] = up ? ws[r] : wo[r] + w;
            ws[r] += w;
            ta[r] = up ? tf : ta[r];
            m[r] = up ? pf : m[r];
            if (with_t) {
                a32[r] = up ? (int32_t)j : a32[r];
                int upt = !(tf <= tm[r]);
                tto[r] = upt ? tsum[r] : tto[r] + tj;
                tm[r] = upt ? tf : tm[r];
                b32[r] = upt ? (int32_t)j : b32[r];
            }
            tsum[r] += tj;
        }
    }
    PRAGMA(omp simd)
    for (idx r = 0; r < nr; r++) {
        lpa[r] = klogf_unit(m[r]);
        tops[r] = a32[r];
        ttops[r] = b32[r];
    }
}

CLONES static void cce_probs_checked(const void *tv, const float *x, idx rows, idx k, double *value,
                                     float *grad, const double *scale, double *work, const double *prm) {
    const float *t = tv;
    if ((grad && overlaps(grad, x, rows * k)) || k > ((idx)1 << 16)) {
        cce_probs(tv, x, rows, k, value, grad, scale, work, prm);
        return;
    }
    if (k <= SHORT_ROW) {
        double big[CCE_RB], oth[CCE_RB], tsum[CCE_RB], to[CCE_RB], tto[CCE_RB], wo[CCE_RB], lpa[CCE_RB];
        float m[CCE_RB], ta[CCE_RB];
        idx tops[CCE_RB], ttops[CCE_RB];
        uint32_t hb[CCE_RB];
        for (idx r0 = 0; r0 < rows; r0 += CCE_RB) {
            idx nr = rows - r0 < CCE_RB ? rows - r0 : CCE_RB;
            const float *pb = x + r0 * k, *tb = t + r0 * k;
            if (grad)
                cce_checked_block(pb, tb, nr, k, 1, big, oth, tsum, to, tto, wo, lpa, m, ta, tops, ttops, hb);
            else
                cce_checked_block(pb, tb, nr, k, 0, big, oth, tsum, to, tto, wo, lpa, m, ta, tops, ttops, hb);
            PRAGMA(omp simd)
            for (idx r = 0; r < nr; r++)
                value[r0 + r] = cce_checked_value(big[r], oth[r], (double)m[r], to[r], wo[r], (double)ta[r],
                                                  lpa[r], hb[r]);
            if (grad) {
                float *gb = grad + r0 * k;
                for (idx r = 0; r < nr; r++) {
                    const float *pr = pb + r * k, *tr = tb + r * k;
                    double sc = scale ? scale[r0 + r] : 1.0, bg = big[r], tt = tsum[r], tp = tt / bg;
                    double ro = oth[r], tro = tto[r];
                    idx a = tops[r], bt = ttops[r];
                    float *gr = gb + r * k;
                    PRAGMA(omp simd)
                    for (idx j = 0; j < k; j++) {
                        double p = (double)pr[j], tj = (double)tr[j];
                        double rj = j == a ? ro : bg - p;
                        double trj = j == bt ? tro : tt - tj;
                        gr[j] = cce_probs_grad_at(p, tj, bg, rj, tp, trj, sc);
                    }
                }
            }
            for (idx r = 0; r < nr; r++) {
                if (big[r] > 0.0 || hb[r] > 0x3f800000u) continue;
                cce_probs_rows(tb + r * k, pb + r * k, 1, k, value + r0 + r, grad ? grad + (r0 + r) * k : NULL,
                               scale ? scale + r0 + r : NULL, work, prm);
            }
        }
        return;
    }
    for (idx r = 0; r < rows; r++) {
        const float *pr = x + r * k, *tr = t + r * k;
        uint32_t h = 0;
        float mx = pr[0];
        PRAGMA(omp simd reduction(max : h, mx))
        for (idx j = 0; j < k; j++) {
            uint32_t bp = fbits32(pr[j]), bt = fbits32(tr[j]);
            uint32_t b = bp > bt ? bp : bt;
            h = b > h ? b : h;
            mx = pr[j] > mx ? pr[j] : mx;
        }
        if (h > 0x3f800000u) {  /* outside [+0, 1], or NaN: the caller checks */
            value[r] = NAN;
            continue;
        }
        idx a = 0;
        while (pr[a] != mx) a++;
        double big = 0.0, oth = 0.0, to = 0.0, wo = 0.0;
        PRAGMA(omp simd reduction(+ : big, oth, to, wo))
        for (idx j = 0; j < k; j++) {
            float pf = pr[j], tf = tr[j];
            double p = (double)pf, tj = (double)tf;
            double w = tf == 0.0f ? 0.0 : tj * klogf_unit(pf);
            big += p;
            oth += j == a ? 0.0 : p;
            to += j == a ? 0.0 : tj;
            wo += j == a ? 0.0 : w;
        }
        if (!(big > 0.0)) {
            cce_probs_rows(tr, pr, 1, k, value + r, grad ? grad + r * k : NULL, scale ? scale + r : NULL,
                           work, prm);
            continue;
        }
        double ptop = (double)pr[a], ttop = (double)tr[a];
        value[r] = cce_checked_value(big, oth, ptop, to, wo, ttop, klogf_d(pr[a]), 0);
        if (grad) {
            double sc = scale ? scale[r] : 1.0, tt, t_others_top;
            idx ttopi = row_top(tr, k);
            row_sums(tr, k, ttopi, &tt, &t_others_top);
            float *gr = grad + r * k;
            double tp = tt / big;
            PRAGMA(omp simd)
            for (idx j = 0; j < k; j++) {
                double p = (double)pr[j], tj = (double)tr[j];
                double rj = j == a ? oth : big - p;
                double trj = j == ttopi ? t_others_top : tt - tj;
                gr[j] = cce_probs_grad_at(p, tj, big, rj, tp, trj, sc);
            }
        }
    }
}

/* ======================================== float64 knowledge distillation (issue 8, KERNELS64 id 35)
 *
 * distill_d: logits_distillation, and generalized_jsd with beta = 0 (and, by distill_mix_row below,
 * 0 < beta < 1; numpy.py routes only those),
 * on float64 teacher logits z (t) and student logits w (x); prm = (1/T, c, beta, g_factor, T, T is a
 * power of two). The generic kernel's formulation (distillation._front / _distill, exact mode) with
 * double-length pairs where the error analysis needs them and an a-posteriori check of the parts
 * that depend on the row; u = 2^-53 below, "pair" = hi + lo.
 *
 * Per row (r the teacher's top class, r' the student's):
 *  - exponents h_j = (z_j - z_r)/T as pairs: z_j - z_r exact (TwoSum), divided by T exactly (a power
 *    of two) or as RN(g/T) plus (fma remainder + low part)/T: within 2^-104 |h_j|. Same for w.
 *  - a_j = exp(h_j) as pairs (kexp_dd, 2^-57 relative, times 1 + h_lo), S_p = sum_{j != r} a_j by
 *    acc_sum_pair plus the low parts (2^-57 + k^2 2^-106 relative), P = 1/(1 + S_p) a pair (2^-57
 *    relative); p_j = a_j P as a pair (TwoProduct): p_j within 2^-56 (= u/8) relative. Same for q.
 *  - y_j = log(p_j/q_j) = (h^z_j - h^w_j) + C, C = log(1 + S_q) - log(1 + S_p) (klog_pair: 2^-66
 *    absolute each), as a pair: an error eps_C <= 2^-65 + 2^-100 |C| common to the row, and
 *    individual errors below delta = 2^-100 (max |h^z| + max |h^w| + |C| + 1).
 *  - term_j = excess_d(p_j, q_j, y_j) = p_j phi(y_j) (phi(y) = e^-y - 1 + y >= 0; distillation's
 *    phi_terms), a non-negative term; error bounds per branch below (a priori, at most 4.7u);
 *    Sigma = acc_sum of the terms (one more rounding), value c Sigma (one more unless c is exact).
 *  - the row check (a posteriori): with exact p, q the first-order effect of a common shift eps of
 *    every y_j on Sigma is eps sum_j (p_j - q_j) = 0 for the series terms (d term / dy = p - q), and
 *    eps p_j for the terms that read q_j directly (y < -2 and y > 1), whose sum is eps (sum over
 *    those terms of q_j), with q_j <= 1.7 term_j there (term >= q for y > 1; term = q - p + p y >=
 *    (1 - 3 e^-2) q for y <= -2); with the u/8 errors of p and q, and at second order (d^2 term /
 *    dy^2 = q): |error| <= eps_C (1.7 Sigma + 2^-54) + eps_C^2 (sum q = 1). The individual errors:
 *    |d term / dy| <= p_j + q_j, so <= 2 delta. Where p_j or q_j is below 2^-960 (the pairs lose
 *    their relative accuracy; a_j or b_j underflowed to 0 or subnormal: absolute errors below
 *    2^-1074 (2 + |y_j|) in the term, whatever the logits, also 1e300) the row check adds
 *    2^-1070 (2 + |y_j|) per such element. The row keeps its value
 *    when that sum is at most 2^-54 Sigma (u/2); otherwise (nearly equal distributions, whose
 *    divergence is below about 2^-64; a non-finite logit; a value that is not finite) the value is
 *    NaN and numpy.py recomputes the row (value and gradient) with the generic kernel.
 *  Total: 4.7u (term) + 1u (sum) + 1u (c) + u/2 (check) = 7.2u, within 8 ulp (ulp(v) > u |v|).
 *
 * Gradient (T^2 or 1)/T (q_j - p_j): TwoSum of the high parts plus the low ones, one rounding: an
 * error below u/8 (p_j + q_j) + u |g|, so within 8 ulp of max(p_j, q_j) (the documented scale where
 * they cancel) and, where they do not (|q - p| >= max/2, p + q <= 3 |q - p|), 3u/8 + 1u of g;
 * g_factor and the scale two more roundings (none for T = 2 and scale 1). At the teacher's top,
 * where p_r and q_r are both near 1 (P >= 1/2), q_r - p_r = (1 - p_r) - (1 - q_r) from the pairs
 * 1 - p_r = S_p P and 1 - q_r = (S_q - b_r + 1) Q (S_q Q where r = r'): within u/8 of the larger
 * remaining mass, the oracle's scale there. */

/* t phi(y) for t = th + tl >= 0, u = uh + ul (= t e^-y, given), y = yh + yl (finite):
 *  -2 <= y <= 1: t y^2 s(y), s(y) = sum_{k=0}^{22} (-y)^k / (k + 2)! (truncation below 2^-60 of s,
 *    s >= e^-1 on [-2, 1]); Horner in double within 2.4u (y <= 0: every step adds non-negative
 *    parts, the later steps weighted by at most 0.6 each; 0 < y <= 1: the one subtraction loses at
 *    most a factor 1.4), y^2 exact (fma), phi one fma (1u), times t (1u), the yl part through
 *    phi'(y) = (t - u)/t (second order below 2^-104): 4.4u + u/8 (t's pair);
 *  y > 1: t (y - 1) + u, two non-negative parts (y - 1 exact up to y = 2, 1u beyond), two roundings:
 *    3u + u/8;
 *  y < -2: (u - t) + t y (u > e^2 t: the parts cancel by at most a factor 1.46): u - t as an exact
 *    TwoSum, the sum 1.46u, the fma 1u: 2.5u + u/4. */
KINLINE double excess_d(double th, double tl, double uh, double ul, double yh, double yl) {
    double yn = (yh >= -2.0 && yh <= 1.0) ? yh : 0.0, m = -yn;
    double s = 1.0 / 620448401733239439360000.0;
    s = s * m + 1.0 / 25852016738884976640000.0;
    s = s * m + 1.0 / 1124000727777607680000.0;
    s = s * m + 1.0 / 51090942171709440000.0;
    s = s * m + 1.0 / 2432902008176640000.0;
    s = s * m + 1.0 / 121645100408832000.0;
    s = s * m + 1.0 / 6402373705728000.0;
    s = s * m + 1.0 / 355687428096000.0;
    s = s * m + 1.0 / 20922789888000.0;
    s = s * m + 1.0 / 1307674368000.0;
    s = s * m + 1.0 / 87178291200.0;
    s = s * m + 1.0 / 6227020800.0;
    s = s * m + 1.0 / 479001600.0;
    s = s * m + 1.0 / 39916800.0;
    s = s * m + 1.0 / 3628800.0;
    s = s * m + 1.0 / 362880.0;
    s = s * m + 1.0 / 40320.0;
    s = s * m + 1.0 / 5040.0;
    s = s * m + 1.0 / 720.0;
    s = s * m + 1.0 / 120.0;
    s = s * m + 1.0 / 24.0;
    s = s * m + 1.0 / 6.0;
    s = fma(s, m, 0.5);
    double y2 = yn * yn, y2e = fma(yn, yn, -y2);
    double ph = fma(y2, s, y2e * s);
    double series = fma(th, ph, tl * ph + yl * (th - uh));
    double ym1 = yh - 1.0;
    double above = fma(th, ym1, uh + ((ul + tl * ym1) + th * yl));
    double de, d = two_sum(uh, -th, &de);
    double below = fma(th, yh, d + (((de + ul) - tl) + (tl * yh + th * yl)));
    return yh > 1.0 ? above : (yh < -2.0 ? below : series);
}

/* (z_j - m)/T as a pair (see distill_d): exact for a power-of-two T (inv = 1/T) */
KINLINE double scaled_gap(double z, double m, double T, double inv, int pow2, double *lo) {
    double gl, g = two_sum(z, -m, &gl);
    if (pow2) {
        *lo = gl * inv;
        return g * inv;
    }
    double h = g / T;
    *lo = (fma(-h, T, g) + gl) / T;
    return h;
}

/* 1/(1 + (s + sl)) as a pair, and log(1 + (s + sl)) as a pair (klog_pair, 2^-66 absolute) */
KINLINE double inv_log1p_pair(double s, double sl, double *inv_lo, double *lg, double *lg_lo) {
    double nl, n = two_sum(1.0, s, &nl);
    nl += sl;
    double n2 = n + nl;
    nl = nl - (n2 - n);
    n = n2;
    double ih = 1.0 / n;
    *inv_lo = (fma(-ih, n, 1.0) - ih * nl) * ih;
    double ll, l = klog_pair(n, &ll);
    *lg = l;
    *lg_lo = ll + nl / n;
    return ih;
}

/* the product of two pairs (TwoProduct of the high parts plus the cross terms), not renormalised */
KINLINE double pair_mul(double ah, double al, double bh, double bl, double *lo) {
    double p = ah * bh;
    *lo = fma(ah, bh, -p) + (ah * bl + al * bh);
    return p;
}

/* distill_d's second pass over a row (GRAD constant at each call: one vectorised loop each): the
 * terms into dh (over the exponent differences), the gradient into gr */
KINLINE double distill_terms_d(double *buf, idx k, const double *pq, double ch, double cl, const int GRAD,
                               double *gr, double gf, double sc) {
    const double *ah = buf, *al = buf + k, *bh = buf + 2 * k, *bl = buf + 3 * k, *dl = buf + 5 * k;
    double *dh = buf + 4 * k;
    const double ph = pq[0], pl = pq[1], qh = pq[2], ql = pq[3];
    double sub = 0.0;
    PRAGMA(omp simd reduction(+ : sub))
    for (idx j = 0; j < k; j++) {
        double pjl, pj = pair_mul(ah[j], al[j], ph, pl, &pjl);
        double qjl, qj = pair_mul(bh[j], bl[j], qh, ql, &qjl);
        double te, tt = two_sum(dh[j], ch, &te);
        double rest = (te + dl[j]) + cl;
        double yl, y = two_sum(tt, rest, &yl);
        dh[j] = excess_d(pj, pjl, qj, qjl, y, yl);
        sub += (pj < 0x1p-960 || qj < 0x1p-960) ? 2.0 + fabs(y) : 0.0;
        if (GRAD) {
            double ge, g = two_sum(qj, -pj, &ge);
            gr[j] = write_grad_d(gf * (g + (ge + (qjl - pjl))), sc);
        }
    }
    return sub;
}

/* ------------------------- generalized JSD at 0 < beta < 1, float64 (distill_d's mixture pass, issue 8)
 *
 * With y_j = log(p_j/q_j) the pair of distill_d's second pass (its errors: eps common to the row,
 * delta each), b1 = 1 - beta as the exact pair (TwoSum), m_j = beta p_j + b1 q_j, and
 * a_j = log(m_j/q_j) = log(beta e^y + b1), b_j = log(m_j/p_j) = log(b1 e^-y + beta), each taken
 * directly (log_mix_pair: no cancellation), the divergence is sum_j (P_j + Q_j) with the
 * non-negative terms
 *     P_j = excess_d(beta p_j, beta m_j, -b_j) = beta p_j phi(-b_j),
 *     Q_j = excess_d(b1 q_j, b1 m_j, -a_j) = b1 q_j phi(-a_j)
 * (the weights inside t and u, so no product after the term), all 2k summed by acc_sum.
 * A priori: each term within excess_d's 4.7u (its t and u pairs within u/8: p and q as in distill_d,
 * the products by beta and b1 and m's sum 2^-104 more), the sum 1u, c 1u: 6.7u.
 * A posteriori (the row check), the errors of the a_j and b_j the terms read:
 *     da_j = eps + delta + 2^-63 + rel_j, X_j = beta expm1(y_j), A_j = 1 + X_j = m_j/q_j
 * (y's errors through |da/dy| = beta p/m <= 1; klog_dd's 2^-64 and the series' 2^-62 relative;
 * rel_j the relative error of A_j, log_mix_pair's), db_j likewise with -y and b1. excess_d's value
 * t phi(Y) moves by t |1 - e^-Y| |dY| in its series branch (-2 <= Y <= 1), where e^-Y = A (or B):
 * t |X| |dY|, and by t |dY| in the other two (they read u directly). So the row's error beyond the
 * a priori part is below
 *     E = 1.01 sum_j (b1 q_j s_j da_j + beta p_j s'_j db_j) + sub 2^-1070
 * (s = |X| or 1 by the branch; 1.01 for the derivatives taken at the computed points and the
 * pairs' u/8; sub as in distill_d, for p or q below 2^-960), and the row keeps its value when
 * E <= 1.25u Sigma: 6.7u + 1.25u < 8u in all. Otherwise NaN, and numpy.py recomputes the row with
 * the generic kernel: distributions so close that 2^-63 outweighs 1.25u of the divergence (below
 * about 1e-3), a |y| over 700, non-finite logits (distill_d's first pass).
 * Gradient: -(c/T) q_j (a_j + KL(q||m)) = -g_factor q_j (b1 a_j + sum_j Q_j) (b1 KL(q||m) is the sum
 * of the Q_j), b1 a_j and the sum as pairs, one product: as accurate as the generic kernel's. */

/* double-double product and sum (with the CTC kernels below) */
KINLINE double dd_mul(double ah, double al, double bh, double bl, double *lo);
KINLINE double dd_add(double ah, double al, double bh, double bl, double *lo);

/* expm1(y + yl) as a pair, |y| <= 700 (the caller flags larger |y|), relative error below 2^-56: for |y| <= 1 the series
 * y + y^2/2 + y^3/6 + y^4/24 in pair arithmetic plus y^5 (1/5! + ... + y^15/20!) in double
 * (truncation below 2^-64.8 of |E| >= 0.632 |y|; the double part, below 0.0085 |y|, within 5u of
 * itself: 2^-56.9 of E); beyond, kexp_dd(y) (1 + yl) - 1 (2^-57, the subtraction cancelling by at
 * most e/(e - 1): 2^-56.3); *ex, *exl: exp(y) as a pair (kexp_dd's, 2^-57 relative). */
KINLINE double expm1_pair(double y, double yl, double *lo, double *ex, double *exl) {
    /* (no clamp of y here: kexp_dd clamps, and one more made GCC give up vectorising the loop) */
    int near = fabs(y) <= 1.0;
    double yn = near ? y : 0.0, ynl = near ? yl : 0.0;
    double p = 1.0 / 2432902008176640000.0;
    p = p * yn + 1.0 / 121645100408832000.0;
    p = p * yn + 1.0 / 6402373705728000.0;
    p = p * yn + 1.0 / 355687428096000.0;
    p = p * yn + 1.0 / 20922789888000.0;
    p = p * yn + 1.0 / 1307674368000.0;
    p = p * yn + 1.0 / 87178291200.0;
    p = p * yn + 1.0 / 6227020800.0;
    p = p * yn + 1.0 / 479001600.0;
    p = p * yn + 1.0 / 39916800.0;
    p = p * yn + 1.0 / 3628800.0;
    p = p * yn + 1.0 / 362880.0;
    p = p * yn + 1.0 / 40320.0;
    p = p * yn + 1.0 / 5040.0;
    p = p * yn + 1.0 / 720.0;
    p = p * yn + 1.0 / 120.0;
    double sq = yn * yn, sqe = fma(yn, yn, -sq) + 2.0 * yn * ynl;
    double tail = p * ((sq * sq) * yn);
    double c3l, c3 = dd_mul(sq, sqe, yn, ynl, &c3l);
    double c4l, c4 = dd_mul(sq, sqe, sq, sqe, &c4l);
    /* (a fresh variable for each call's low part: one whose address is taken again becomes a
     * per-lane array in memory under omp simd, and the loop is not vectorised) */
    double s1l, s1 = dd_mul(c4, c4l, 0x1.5555555555555p-5, 0x1.5555555555555p-59, &s1l);
    double s2l, s2 = dd_add(s1, s1l, tail, 0.0, &s2l);
    double tl, t = dd_mul(c3, c3l, 0x1.5555555555555p-3, 0x1.5555555555555p-57, &tl);
    double s3l, s3 = dd_add(s2, s2l, t, tl, &s3l);
    double s4l, s4 = dd_add(s3, s3l, 0.5 * sq, 0.5 * sqe, &s4l);
    double sl, s = dd_add(s4, s4l, yn, ynl, &sl);
    double el, e = kexp_dd(y, &el);
    double el2 = el + e * yl;
    double fl, f = dd_add(e, el2, -1.0, 0.0, &fl);
    *ex = e;
    *exl = el2;
    *lo = near ? sl : fl;
    return near ? s : f;
}

/* log(a + al) as a pair for a normal a > 0 (|al| <= ulp(a)/2), absolute error below 2^-64, without
 * klog_pair's table (whose reads keep a loop from vectorising): a = 2^e m, m in [sqrt(1/2),
 * sqrt(2)) (exact scaling, al with it); s = (m - 1)/(m + 1) as a pair (m - 1 exact, Sterbenz; the
 * quotient's remainder by fma: 2^-104 relative), |s| <= 0.1716; log m = 2 (s + s^3/3 + s^5 P(s^2)),
 * P = 1/5 + s^2/7 + ... + s^24/29 (truncation below 2 |s|^31/31 < 2^-80), s^3/3 in pairs, s^5 P in
 * double (below 6.2e-5: its roundings below 2^-66); e ln2 as e (L1 + L2) (LOG_TABLE[128]'s pair,
 * 2^-109; the products exact or 2^-104 of |e L2|). Sum of the parts below 2^-64.5. */
KINLINE double klog_dd(double a, double al, double *lo) {
    const double L1 = 0x1.62e42fefa39efp-1, L2 = 0x1.abc9e3b39803fp-56;
    uint64_t b = bits_of(a);
    double e = from_bits(((b >> 52) & 0x7ff) | 0x4330000000000000ULL) - (4503599627370496.0 + 1023.0);
    double m = from_bits((b & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL);
    int big = m > 1.4142135623730951;
    m = big ? m * 0.5 : m;
    e = big ? e + 1.0 : e;
    double ml = al * (m / a);  /* m / a: a power of two, exact */
    double n = m - 1.0, dl, d = two_sum(m, 1.0, &dl);
    double sh = n / d, sl = (fma(-sh, d, n) + ml - sh * (dl + ml)) / d;
    double zl, z = dd_mul(sh, sl, sh, sl, &zl);
    double cl, c = dd_mul(z, zl, sh, sl, &cl);
    double q = 1.0 / 29.0;
    q = q * z + 1.0 / 27.0;
    q = q * z + 1.0 / 25.0;
    q = q * z + 1.0 / 23.0;
    q = q * z + 1.0 / 21.0;
    q = q * z + 1.0 / 19.0;
    q = q * z + 1.0 / 17.0;
    q = q * z + 1.0 / 15.0;
    q = q * z + 1.0 / 13.0;
    q = q * z + 1.0 / 11.0;
    q = q * z + 1.0 / 9.0;
    q = q * z + 1.0 / 7.0;
    q = q * z + 1.0 / 5.0;
    double tl, t = dd_mul(c, cl, 0x1.5555555555555p-2, 0x1.5555555555555p-56, &tl);
    double u1l, u1 = dd_add(sh, sl, t, tl, &u1l);
    double ul, u = dd_add(u1, u1l, (c * z) * q, 0.0, &ul);
    double el, eh = dd_mul(e, 0.0, L1, L2, &el);
    double rl, r = dd_add(eh, el, 2.0 * u, 2.0 * ul, &rl);
    *lo = rl;
    return r;
}

/* log(w e^y + v) as a pair for weight pairs w in (0, 1), v = 1 - w and |y| <= 700: log1p(X) with
 * X = w expm1(y) (>= -w) as a pair: for |X| <= 2^-5 the series X - X^2/2 (pairs) + X^3 (1/3 - X/4 +
 * ... - X^17/20) (double; truncation below 2^-100 |X|, rounding below 2^-62 |X|), else klog_dd(A)
 * with A = 1 + X (2^-64 absolute, below 2^-58 of |log A| there): within 2^-62 |log1p X| + 2^-64,
 * so the gradient's a_j keeps its relative accuracy. A's own relative error
 * (returned in *rel): expm1_pair's 2^-56 through |X|/A; where A < 1/2 (y < -1 and a weight v near
 * 0: 1 + X would cancel) A = w e^y + v instead, two positive pairs (kexp_dd's 2^-57): 2^-56.
 * X (high part) into *xo. */
KINLINE double log_mix_pair(double y, double yl, double wh, double wl, double vh, double vl,
                            double *lo, double *xo, double *rel) {
    double eh, ehl, el, e = expm1_pair(y, yl, &el, &eh, &ehl);
    double xl, x = dd_mul(e, el, wh, wl, &xl);
    double al, a = dd_add(1.0, 0.0, x, xl, &al);
    double bl, b = dd_mul(eh, ehl, wh, wl, &bl);
    double cl, cc = dd_add(b, bl, vh, vl, &cl);
    int sum = a < 0.5;
    *rel = sum ? 0x1p-56 : 0x1p-56 * fabs(x) / a;
    double rl, h = klog_dd(sum ? cc : a, sum ? cl : al, &rl);
    int small = fabs(x) <= 0x1p-5;
    double xs = small ? x : 0.0, xsl = small ? xl : 0.0;
    double q = -1.0 / 20.0;
    q = q * xs + 1.0 / 19.0;
    q = q * xs - 1.0 / 18.0;
    q = q * xs + 1.0 / 17.0;
    q = q * xs - 1.0 / 16.0;
    q = q * xs + 1.0 / 15.0;
    q = q * xs - 1.0 / 14.0;
    q = q * xs + 1.0 / 13.0;
    q = q * xs - 1.0 / 12.0;
    q = q * xs + 1.0 / 11.0;
    q = q * xs - 1.0 / 10.0;
    q = q * xs + 1.0 / 9.0;
    q = q * xs - 1.0 / 8.0;
    q = q * xs + 1.0 / 7.0;
    q = q * xs - 1.0 / 6.0;
    q = q * xs + 1.0 / 5.0;
    q = q * xs - 1.0 / 4.0;
    q = q * xs + 1.0 / 3.0;
    double x2l, x2 = dd_mul(xs, xsl, xs, xsl, &x2l);
    double s1l, s1 = dd_add(xs, xsl, -0.5 * x2, -0.5 * x2l, &s1l);
    double sl, sh = dd_add(s1, s1l, q * (x2 * xs), 0.0, &sl);
    *lo = small ? sl : rl;
    *xo = x;
    return small ? sh : h;
}

/* distill_d's second pass at 0 < beta < 1 (see above): the row's value c Sigma, or NaN; the
 * gradient row into gr (unless NULL; unspecified where NaN). buf as distill_terms_d's; e0 = eps +
 * delta + 2^-63. */
KINLINE double distill_mix_row(double *buf, idx k, const double *pq, double ch, double cl, double beta,
                               double e0, double *gr, double gf, double sc, double c) {
    double *ah = buf, *al = buf + k, *bh = buf + 2 * k, *bl = buf + 3 * k, *dh = buf + 4 * k,
           *dl = buf + 5 * k;
    const double ph = pq[0], pl = pq[1], qh = pq[2], ql = pq[3];
    double b1l, b1 = two_sum(1.0, -beta, &b1l);
    double err = 0.0, sub = 0.0, far = 0.0;
    PRAGMA(omp simd reduction(+ : err, sub, far))
    for (idx j = 0; j < k; j++) {
        double pjl, pj = pair_mul(ah[j], al[j], ph, pl, &pjl);
        double qjl, qj = pair_mul(bh[j], bl[j], qh, ql, &qjl);
        double te, tt = two_sum(dh[j], ch, &te);
        double rest = (te + dl[j]) + cl;
        double yl, y = two_sum(tt, rest, &yl);
        double tpl, tp = dd_mul(pj, pjl, beta, 0.0, &tpl);
        double tql, tq = dd_mul(qj, qjl, b1, b1l, &tql);
        double ml, m = dd_add(tp, tpl, tq, tql, &ml);
        double upl, up = dd_mul(m, ml, beta, 0.0, &upl);
        double uql, uq = dd_mul(m, ml, b1, b1l, &uql);
        double xa, ra, lal, la = log_mix_pair(y, yl, beta, 0.0, b1, b1l, &lal, &xa, &ra);
        double xb, rb, lbl, lb = log_mix_pair(-y, -yl, b1, b1l, beta, 0.0, &lbl, &xb, &rb);
        double P = excess_d(tp, tpl, up, upl, -lb, -lbl);
        double Q = excess_d(tq, tql, uq, uql, -la, -lal);
        double sa = (la >= -1.0 && la <= 2.0) ? fabs(xa) : 1.0;
        double sb = (lb >= -1.0 && lb <= 2.0) ? fabs(xb) : 1.0;
        err += tq * sa * (e0 + ra) + tp * sb * (e0 + rb);
        sub += (pj < 0x1p-960 || qj < 0x1p-960) ? 2.0 + fabs(la) + fabs(lb) : 0.0;
        far += fabs(y) <= 700.0 ? 0.0 : 1.0;
        dh[j] = P;
        dl[j] = Q;
        ah[j] = la;
        al[j] = lal;
        bh[j] = qj;
        bl[j] = qjl;
    }
    double sql, sq = acc_sum_pair(dl, k, &sql);
    double sigma = acc_sum(dh, k, sq, sql);
    err = 1.01 * err + sub * 0x1p-1070;
    if (!(far == 0.0 && sigma - sigma == 0.0 && err <= 0x1.4p-53 * sigma)) return NAN;
    if (gr) {
        PRAGMA(omp simd)
        for (idx j = 0; j < k; j++) {
            double tl, t = dd_mul(b1, b1l, ah[j], al[j], &tl);
            double sl, s = dd_add(t, tl, sq, sql, &sl);
            double g = bh[j] * s + (bl[j] * s + bh[j] * sl);
            gr[j] = write_grad_d(bh[j] == 0.0 ? 0.0 : -gf * g, sc);
        }
    }
    return c * sigma;
}

CLONES static void distill_d(const void *tv, const double *x, idx rows, idx k, double *value,
                             double *grad, const double *scale, double *work, const double *prm) {
    const double *t = tv;
    const double inv = prm[0], c = prm[1], beta = prm[2], gf = prm[3], T = prm[4];
    const int pow2 = prm[5] != 0.0;
    double *buf = PyMem_RawMalloc((size_t)(6 * (k > 0 ? k : 1)) * sizeof(double));
    if (!buf) {  /* no memory for the row buffers: every row to the generic kernel */
        for (idx r = 0; r < rows; r++) value[r] = NAN;
        return;
    }
    double *ah = buf, *al = buf + k, *bh = buf + 2 * k, *bl = buf + 3 * k, *dh = buf + 4 * k,
           *dl = buf + 5 * k;
    (void)work;
    for (idx r = 0; r < rows; r++) {
        const double *zr = t + r * k, *wr = x + r * k;
        idx top = row_top_d(zr, k), topw = row_top_d(wr, k);
        double mz = zr[top], mw = wr[topw];
        double *gr = grad ? grad + r * k : NULL;
        if (!(mz - mz == 0.0 && mw - mw == 0.0)) {
            value[r] = NAN;
            continue;
        }
        double bad = 0.0, alo = 0.0, blo = 0.0, hzm = 0.0, hwm = 0.0;
        PRAGMA(omp simd reduction(+ : bad, alo, blo) reduction(max : hzm, hwm))
        for (idx j = 0; j < k; j++) {
            double hzl, hz = scaled_gap(zr[j], mz, T, inv, pow2, &hzl);
            double hwl, hw = scaled_gap(wr[j], mw, T, inv, pow2, &hwl);
            double el, e = kexp_dd(hz, &el);
            double fl, f = kexp_dd(hw, &fl);
            el += e * hzl;
            fl += f * hwl;
            double yl, y = two_sum(hz, -hw, &yl);
            yl += hzl - hwl;
            bad += (zr[j] - zr[j] == 0.0 && wr[j] - wr[j] == 0.0) ? 0.0 : 1.0;
            ah[j] = j == top ? 0.0 : e;
            al[j] = j == top ? 0.0 : el;
            bh[j] = j == topw ? 0.0 : f;
            bl[j] = j == topw ? 0.0 : fl;
            alo += j == top ? 0.0 : el;
            blo += j == topw ? 0.0 : fl;
            dh[j] = y;
            dl[j] = yl;
            hzm = hzm > -hz ? hzm : -hz;
            hwm = hwm > -hw ? hwm : -hw;
        }
        if (bad != 0.0) {
            value[r] = NAN;
            continue;
        }
        double spl, sp = acc_sum_pair(ah, k, &spl), sql, sq = acc_sum_pair(bh, k, &sql);
        spl += alo;
        sql += blo;
        double pl, lp, lpl, ph = inv_log1p_pair(sp, spl, &pl, &lp, &lpl);
        double ql, lq, lql, qh = inv_log1p_pair(sq, sql, &ql, &lq, &lql);
        double cl, ch = two_sum(lq, -lp, &cl);
        cl += lql - lpl;
        ah[top] = 1.0;
        bh[topw] = 1.0;
        double sc = scale ? scale[r] : 1.0, pq[4] = {ph, pl, qh, ql};
        if (beta != 0.0) {  /* 0 < beta < 1 (numpy.py routes no other): the mixture's pass */
            double e0 = (0x1p-65 + 0x1p-100 * fabs(ch)) + 0x1p-100 * (hzm + hwm + fabs(ch) + 1.0) + 0x1p-63;
            value[r] = distill_mix_row(buf, k, pq, ch, cl, beta, e0, gr, gf, sc, c);
            continue;
        }
        double sub = gr ? distill_terms_d(buf, k, pq, ch, cl, 1, gr, gf, sc)
                        : distill_terms_d(buf, k, pq, ch, cl, 0, NULL, gf, sc);
        double sigma = acc_sum(dh, k, 0.0, 0.0);
        double eps = 0x1p-65 + 0x1p-100 * fabs(ch);
        double delta = 0x1p-100 * (hzm + hwm + fabs(ch) + 1.0);
        double err = eps * (1.7 * sigma + 0x1p-54) + eps * eps + 2.0 * delta + sub * 0x1p-1070;
        int keep = sigma - sigma == 0.0 && err <= 0x1p-54 * sigma;
        value[r] = keep ? c * sigma : NAN;
        if (gr && keep && ph >= 0.5) {
            /* 1 - p_r = S_p P, 1 - q_r = (S_q - b_r + 1) Q (S_q Q at r = r') */
            double ol = sql, o = sq;
            if (top != topw) {
                double e1, e2;
                o = two_sum(sq, -bh[top], &e1);
                o = two_sum(o, 1.0, &e2);
                ol = (sql - bl[top]) + (e1 + e2);
            }
            double m1l, m1 = pair_mul(sp, spl, ph, pl, &m1l);
            double m2l, m2 = pair_mul(o, ol, qh, ql, &m2l);
            double ge, g = two_sum(m1, -m2, &ge);
            gr[top] = write_grad_d(gf * (g + (ge + (m1l - m2l))), sc);
        }
    }
    PyMem_RawFree(buf);
}

static const kernel_fn KERNELS[] = {
    scce_logits, cce_logits, bce_logits, bce_probs, mse, mae, kl, hinge, cce_probs, scce_probs,
    huber, smooth_l1, log_cosh, squared_hinge, categorical_hinge, soft_margin, mape, msle, pinball,
    focal_logits, focal_probs, cfocal_logits, cfocal_probs, kl_div, jensen_shannon, total_variation,
    generalized_kl, multilabel_soft_margin, perceptron, nll, poly1, gce_logits, gce_probs,
    multiclass_hinge, multi_margin, distill,
    hinge_embedding, multilabel_margin,
    cce_probs_sparse,
    scce_probs_checked,
    cce_probs_checked};

#define N_KERNELS ((int)(sizeof(KERNELS) / sizeof(KERNELS[0])))

/* the kernels with a third input array (CHECKED_KERNEL), ids N_KERNELS on */
typedef void (*kernel3_fn)(const void *t, const float *x, const float *extra, idx rows, idx k,
                           double *value, float *grad, const double *scale, double *work,
                           const double *prm);
static const kernel3_fn KERNELS3[] = {poisson_nll_log_any, poisson_nll_rate, gaussian_nll,
    margin_ranking,
    poisson_keras, gamma_dev};
#define N_KERNELS3 ((int)(sizeof(KERNELS3) / sizeof(KERNELS3[0])))

/* the float64 kernels, by the same ids (NULL: none) */
static const kernel64_fn KERNELS64[] = {
    scce_logits_d, cce_logits_d, bce_logits_d, bce_probs_d, mse_d, mae_d, kl_d, hinge_d, cce_probs_d, scce_probs_d, huber_d, smooth_l1_d, NULL, squared_hinge_d, categorical_hinge_d, soft_margin_d, mape_d, NULL, pinball_d, NULL, NULL, NULL, NULL, kl_div_d, NULL, total_variation_d, NULL, multilabel_soft_margin_d, perceptron_d, NULL, NULL, NULL, NULL, multiclass_hinge_d, multi_margin_d, distill_d,
    hinge_embedding_d, multilabel_margin_d,
    NULL,
    NULL,
    NULL};

/* Margin ranking on float64 input (embedding._margin_ranking's double-length formula in plain double;
 * prm = [margin, n] as margin_ranking's): m = (margin + d) + e with d + e = t x2 - t x1 exactly
 * (TwoSum of doubles; t = +-1 makes t x exact; e is 0 where an infinite score makes it NaN, as
 * margin.shifted_difference does). Per-element bound: with M = margin + d + e the exact hinge, where
 * margin + d cancels (margin and -d within a factor 2) Sterbenz makes it exact and m is one rounding of
 * M (1/2 ulp); elsewhere |margin + d| >= |d|/2 and |e| <= 2^-53 |d| <= 2^-52 |margin + d|, so
 * m = ((margin + d)(1 + d1) + e)(1 + d2) is within 2^-52 (1 + 2^-50) |M| (2 ulp), and M = 0 only
 * in the first case, so the sign of m (the gradient) is exact. The terms max(0, m) are non-negative;
 * their row sum is compensated (acc_sum, within 2^-53 relative plus 2^-104 k) and multiplied by
 * 1/k (two roundings): the row mean within 5 ulp of the exact one (8 allowed); a row that is not
 * finite (infinite scores, NaN) is recomputed by numpy.py with the generic kernel. Gradient wrt x1:
 * -t kink(m) / k times the row's scale (exact but for the last two roundings), wrt x2 its negative,
 * written at grad + n when prm[1] = n > 0. work: k doubles (the terms). */
CLONES static void margin_ranking_d(const void *tv, const double *x, const double *x2, idx rows, idx k,
                                    double *value, double *grad, const double *scale, double *work,
                                    const double *prm) {
    const double *yt = tv;
    double margin = prm[0], inv_k = 1.0 / (double)k;
    for (idx r = 0; r < rows; r++) {
        const double *ar = x + r * k, *br = x2 + r * k, *tr = yt + r * k;
        double sc = scale ? scale[r] : 1.0, gs = inv_k * sc;
        double *gr = grad ? grad + r * k : NULL, *g2 = grad && prm[1] > 0.0 ? gr + (idx)prm[1] : NULL;
        int zero = sc == 0.0;
        for (idx j = 0; j < k; j++) {
            double t = tr[j], e, d = two_sum(t * br[j], -(t * ar[j]), &e);
            e = e - e == 0.0 ? e : 0.0;
            double m = (margin + d) + e;
            work[j] = max0(m);
            if (gr) {
                double g = m != m ? m : -t * kink(m);
                double gv = zero ? 0.0 : g * gs;
                gr[j] = gv;
                if (g2) g2[j] = zero ? 0.0 : -gv;
            }
        }
        value[r] = acc_sum(work, k, 0.0, 0.0) * inv_k;
    }
}

/* ======================================== float64 Poisson and Gaussian NLL (issue 8, KERNELS3_D)
 *
 * Double-double helpers for the rare elements that need more than kexp_dd's 2^-57 (a gradient
 * exp(x) - t near the optimum x = log t). dd_mul / dd_add: relative error below 2^-104 per operation
 * for normal operands (TwoProduct by fma, TwoSum, one renormalisation). */
KINLINE double dd_mul(double ah, double al, double bh, double bl, double *lo) {
    double p = ah * bh, e = fma(ah, bh, -p) + (ah * bl + al * bh);
    double h = p + e;
    *lo = e - (h - p);
    return h;
}

KINLINE double dd_add(double ah, double al, double bh, double bl, double *lo) {
    double e, s = two_sum(ah, bh, &e);
    e += al + bl;
    double h = s + e;
    *lo = e - (h - s);
    return h;
}

/* exp(x) as hi + lo to about 2^-100 relative, for x in [-708, 709] (a normal result; the callers
 * use it nowhere else): x = k ln2 + r with k = floor(x / ln2), ln2 = L1 + L2 (LOG_TABLE[128], within
 * 2^-109), k L1 exact by TwoProduct and x - k L1 by TwoSum, so r is a pair to 2^-99 absolute (|k| <= 1023); r in about [0, ln2]: c_i = 1 + i/128
 * with i = rint(128 (e^r - 1)) (any i in range is correct, the closer the shorter the series),
 * z = r - log c_i (table pair, 2^-106), |z| <= 2^-7.9; e^z by Taylor to z^9 in double-double
 * (truncation below z^10/10! < 2^-100); times c_i (8 bits: exact in the pair's product) and 2^k
 * (exact for a normal result). About 25 double-double operations: below 2^-98 in all. */
static double kexp_acc(double x, double *lo) {
    static const double INV_FACT[10][2] = {
        {1.0, 0.0}, {1.0, 0.0}, {0.5, 0.0},
        {0x1.5555555555555p-3, 0x1.5555555555555p-57}, {0x1.5555555555555p-5, 0x1.5555555555555p-59},
        {0x1.1111111111111p-7, 0x1.1111111111111p-63}, {0x1.6c16c16c16c17p-10, -0x1.f49f49f49f49fp-65},
        {0x1.a01a01a01a01ap-13, 0x1.a01a01a01a01ap-73}, {0x1.a01a01a01a01ap-16, 0x1.a01a01a01a01ap-76},
        {0x1.71de3a556c734p-19, -0x1.c154f8ddc6c00p-73}};
    const double L1 = LOG_TABLE[128][0], L2 = LOG_TABLE[128][1];
    double k = floor(x * 1.4426950408889634);
    double p = k * L1, pe = fma(k, L1, -p);
    double r0e, r0 = two_sum(x, -p, &r0e);  /* not always exact: k = -1 with |x| < ln2/2 */
    double q = k * L2, qe = fma(k, L2, -q);
    double t1e, t1 = two_sum(pe, q, &t1e);
    double rl, rh = two_sum(r0, -t1, &rl);
    rl += r0e - (t1e + qe);
    double fi = nearbyint((kexp(rh) - 1.0) * 128.0);
    fi = fi < 0.0 ? 0.0 : (fi > 128.0 ? 128.0 : fi);
    int i = (int)fi;
    double zl, zh = dd_add(rh, rl, -LOG_TABLE[i][0], -LOG_TABLE[i][1], &zl);
    double sl = INV_FACT[9][1], sh = INV_FACT[9][0];
    for (int n = 8; n >= 0; n--) {
        double ml, mh = dd_mul(sh, sl, zh, zl, &ml);
        sh = dd_add(mh, ml, INV_FACT[n][0], INV_FACT[n][1], &sl);
    }
    double c = 1.0 + fi * 0x1p-7;
    double hl, h = dd_mul(sh, sl, c, 0.0, &hl);
    double k1 = floor(k * 0.5), k2 = k - k1, s1 = pow2(k1), s2 = pow2(k2);
    *lo = hl * s1 * s2;
    return h * s1 * s2;
}

/* A mean kernel's row check (float64): the row's compensated sum v (within 2^-53 |v| once rounded)
 * divided by k (one rounding) is kept when the bound err of everything else is at most 5 2^-53 |v|
 * (7 ulp in all); otherwise (also where v is not finite) the row gets NaN and numpy.py recomputes it
 * with the generic kernel. err = the elements' own bounds + slack sum of the parts' magnitudes, slack
 * = (k + 8) 2^-104 (the low parts, each below 2^-52 of its parts, summed plainly) + (k 2^-53)^2
 * (acc_sum's second order) + k 2^-1070 (subnormal low parts). */
KINLINE double mean_keep(double v, double err, double mag, idx k) {
    double kd = (double)k;
    err += ((kd + 8.0) * 0x1p-104 + kd * kd * 0x1p-106) * mag + kd * 0x1p-1070;
    return (err <= 5.0 * 0x1p-53 * fabs(v) && v - v == 0.0) ? v / kd : NAN;
}

/* Stirling's term t log t - t + log(2 pi t)/2 for t > 1 (PyTorch's mask) added to the pair (*h, *l):
 * log t = Lh + Ll (klog_pair, 2^-66 absolute), t Lh an exact TwoProduct, every part added by TwoSum
 * or (the low ones) plainly; returns the absolute error bound 2^-66 (t + 1/2) and adds the parts'
 * magnitudes to *mag. */
KINLINE double poisson_stirling_d(double t, double *h, double *l, double *mag) {
    const double HL2PI_HI = 0x1.d67f1c864beb5p-1, HL2PI_LO = -0x1.65b5a1b7ff5dfp-55;
    int big = t > 1.0 && t < INFINITY;
    double tb = big ? t : 2.0, ll, lh = klog_pair(tb, &ll);
    double q = tb * lh, qe = fma(tb, lh, -q) + tb * ll;
    double e1, e2, e3, e4;
    double s = two_sum(*h, q, &e1);
    s = two_sum(s, -tb, &e2);
    s = two_sum(s, 0.5 * lh, &e3);
    s = two_sum(s, HL2PI_HI, &e4);
    double lo = *l + ((e1 + e2) + (e3 + e4)) + (qe + (0.5 * ll + HL2PI_LO));
    *h = big ? s : *h;
    *l = big ? lo : *l;
    *mag += big ? q + tb + 0.5 * lh + HL2PI_HI : 0.0;
    return big ? 0x1p-66 * (tb + 0.5) : 0.0;
}

/* Poisson NLL, float64 (regression._poisson_nll; prm = [log_input, full, eps]; the extra array is
 * not read). Each term is a pair hi + lo: the hi parts go to work and are summed by acc_sum with the
 * lo parts added, the row checked by mean_keep.
 * log_input: e^x - t x with e^x = E + El (kexp_dd, 2^-57 relative: the element's bound 2^-57 E) and
 * t x = P + Pe (TwoProduct, exact), E - P by TwoSum. Rows where a value may lose more (the terms
 * cancel by over ~80) are evaluated again with kexp_acc (2^-98: bound 2^-98 E) before the check.
 * Gradient (e^x - t)/k: g = (E - t) + El, within 2^-57 E + 2 roundings (E - t is exact by Sterbenz
 * wherever it cancels); where E > 32 |g| (x near log t) g comes from kexp_acc instead: (H - t) + Hl,
 * exact subtraction, one rounding, plus 2^-98 E (within 8 ulp unless |g| < 2^-43 E, where even the
 * exact value is a rounding of the pair's parts: the generic kernel's 2^-94 has the same limit).
 * Then times scale/k (two roundings): within 6 ulp. x > 709 (e^x near or past overflow) gives the
 * row NaN (the generic kernel's overflow rules).
 * Otherwise (rate): x - t log(x + eps) with x + eps = s + c (TwoSum), log s = Lh + Ll (klog_pair,
 * 2^-66 absolute) plus c/s, t Lh an exact TwoProduct: bound 2^-66 t; gradient ((s - t) + c)/s, s - t
 * exact where it cancels: 3 roundings, 5 with scale/k.
 * full: Stirling's term (poisson_stirling_d) in each term's pair. */
/* one row's terms of poisson_nll_d (LOG, FULL, GRAD constants at each call: one vectorised loop each)
 * into work (hi parts) and sums[0..4] = (lo parts, error bound, magnitudes, x > 709 count, count of
 * gradient elements near the optimum) */
KINLINE void poisson_row_d(const double *xr, const double *tr, idx k, const int LOG, const int FULL,
                           const int GRAD, double *gr, double eps, double gs, double *work, double *sums) {
    double small = 0.0, err = 0.0, mag = 0.0, wide = 0.0, near = 0.0;
    PRAGMA(omp simd reduction(+ : small, err, mag, wide, near))
    for (idx j = 0; j < k; j++) {
        double xv = xr[j], t = tr[j], h, l, g;
        int e_near = 0;
        if (LOG) {
            double el, e = kexp_dd(xv, &el);
            double p = t * xv, pe = fma(t, xv, -p);
            h = two_sum(e, -p, &l);
            l += el - pe;
            err += 0x1p-57 * e;
            mag += e + fabs(p);
            wide += xv > 709.0 ? 1.0 : 0.0;
            g = (e - t) + el;
            e_near = e > 32.0 * fabs(g) && gs != 0.0;
            near += e_near ? 1.0 : 0.0;
        } else {
            double c, s = two_sum(xv, eps, &c);
            double ll, lh = klog_pair(s, &ll);
            double p = t * lh, pe = fma(t, lh, -p) + t * (ll + c / s);
            h = two_sum(xv, -p, &l);
            l -= pe;
            err += 0x1p-66 * t;
            mag += fabs(xv) + fabs(p);
            g = ((s - t) + c) / s;
        }
        if (FULL) err += poisson_stirling_d(t, &h, &l, &mag);
        work[j] = h;
        small += l;
        /* near the optimum: NaN for now, the caller recomputes it (poisson_nll_d) */
        if (GRAD) gr[j] = (LOG && e_near) ? NAN : write_grad_d(g, gs);
    }
    sums[0] = small, sums[1] = err, sums[2] = mag, sums[3] = wide, sums[4] = near;
}

CLONES static void poisson_nll_d(const void *tv, const double *x, const double *unused, idx rows, idx k,
                                 double *value, double *grad, const double *scale, double *work,
                                 const double *prm) {
    const double *yt = tv;
    int log_input = prm[0] != 0.0, full = prm[1] != 0.0;
    double eps = prm[2], kd = (double)k;
    for (idx r = 0; r < rows; r++) {
        const double *xr = x + r * k, *tr = yt + r * k;
        double sc = scale ? scale[r] : 1.0, gs = sc / kd;
        double *gr = grad ? grad + r * k : NULL, sums[5];
        if (full) {  /* not vectorised for speed: full's Stirling term is the rare option */
            if (log_input) poisson_row_d(xr, tr, k, 1, 1, gr != NULL, gr, eps, gs, work, sums);
            else poisson_row_d(xr, tr, k, 0, 1, gr != NULL, gr, eps, gs, work, sums);
        } else if (log_input) {
            if (gr) poisson_row_d(xr, tr, k, 1, 0, 1, gr, eps, gs, work, sums);
            else poisson_row_d(xr, tr, k, 1, 0, 0, NULL, eps, gs, work, sums);
        } else {
            if (gr) poisson_row_d(xr, tr, k, 0, 0, 1, gr, eps, gs, work, sums);
            else poisson_row_d(xr, tr, k, 0, 0, 0, NULL, eps, gs, work, sums);
        }
        double small = sums[0], err = sums[1], mag = sums[2], wide = sums[3], near = sums[4];
        if (near > 0.0 && gr) {  /* the elements marked NaN: e^x from kexp_acc (kexp_dd below -708) */
            for (idx j = 0; j < k; j++) {
                double xv = xr[j], t = tr[j], el, e;
                if (gr[j] == gr[j] || xv != xv) continue;
                e = xv < -708.0 || xv > 709.0 ? kexp_dd(xv, &el) : kexp_acc(xv, &el);
                gr[j] = write_grad_d((e - t) + el, gs);
            }
        }
        double v = acc_sum(work, k, small, 0.0);
        double kept = mean_keep(v, err, mag, k);
        if (log_input && kept != kept && v - v == 0.0 && wide == 0.0) {
            /* the terms cancel: every e^x from kexp_acc (x < -708: kexp_dd's result is subnormal or
             * 0, absolute 2^-1074, within the slack) */
            small = err = mag = 0.0;
            for (idx j = 0; j < k; j++) {
                double xv = xr[j], t = tr[j], el, e = xv < -708.0 ? kexp_dd(xv, &el) : kexp_acc(xv, &el);
                double p = t * xv, pe = fma(t, xv, -p), l, h = two_sum(e, -p, &l);
                l += el - pe;
                err += 0x1p-98 * e;
                mag += e + fabs(p);
                if (full) err += poisson_stirling_d(t, &h, &l, &mag);
                work[j] = h;
                small += l;
            }
            v = acc_sum(work, k, small, 0.0);
            kept = mean_keep(v, err, mag, k);
        }
        value[r] = wide > 0.0 ? NAN : kept;
    }
}

/* Gaussian NLL, float64 (regression._gaussian_nll; prm = [full, eps], the extra array var):
 * v = max(var, eps) (NaN kept), term log(v)/2 + (p - t)^2/(2v) [+ log(2 pi)/2] as a pair: log v =
 * Lh + Ll (klog_pair, 2^-66 absolute: bound 2^-67 per element), d = p - t an exact pair (TwoSum), d^2
 * a pair (TwoProduct plus 2 dh dl), the quotient's remainder by fma: (d^2/v) to about 2^-103 relative
 * (bound 2^-100 Q); the halves exact; summed per element by TwoSum; the row checked by mean_keep.
 * Gradient (d/v)/k: d rounded, the quotient, scale/k: 4 roundings. A row whose value is not finite
 * (d^2 overflows, inf or NaN input) is recomputed by the generic kernel. */
CLONES static void gaussian_nll_d(const void *tv, const double *x, const double *var, idx rows, idx k,
                                  double *value, double *grad, const double *scale, double *work,
                                  const double *prm) {
    const double *yt = tv;
    const double HL2PI_HI = 0x1.d67f1c864beb5p-1, HL2PI_LO = -0x1.65b5a1b7ff5dfp-55;
    double cst = prm[0] != 0.0 ? HL2PI_HI : 0.0, cst_lo = prm[0] != 0.0 ? HL2PI_LO : 0.0;
    double eps = prm[1], kd = (double)k;
    for (idx r = 0; r < rows; r++) {
        const double *xr = x + r * k, *tr = yt + r * k, *vr = var + r * k;
        double sc = scale ? scale[r] : 1.0, gs = sc / kd;
        double *gr = grad ? grad + r * k : NULL;
        double small = 0.0, err = 0.0, mag = 0.0;
        PRAGMA(omp simd reduction(+ : small, err, mag))
        for (idx j = 0; j < k; j++) {
            double w = vr[j];
            double v = w > eps ? w : (w != w ? w : eps);
            double dl, d = two_sum(xr[j], -tr[j], &dl);
            dl = dl - dl == 0.0 ? dl : 0.0;
            double sq = d * d, sqe = fma(d, d, -sq) + 2.0 * d * dl;
            double q = sq / v, qe = (fma(-q, v, sq) + sqe) / v;
            double ll, lh = klog_pair(v > 0.0 && v < INFINITY ? v : 1.0, &ll);
            lh = v == INFINITY ? v : lh;
            double e1, e2, h = two_sum(0.5 * lh, 0.5 * q, &e1);
            h = two_sum(h, cst, &e2);
            double l = (e1 + e2) + (0.5 * (ll + qe) + cst_lo);
            h = v != v ? v : h;
            work[j] = h;
            small += l;
            err += 0x1p-67 + 0x1p-100 * q;
            mag += 0.5 * (fabs(lh) + q) + cst;
            if (gr) gr[j] = write_grad_d(d / v, gs);
        }
        double s = acc_sum(work, k, small, 0.0);
        value[r] = mean_keep(s, err, mag, k);
    }
}

/* the float64 kernels with a third input array (KERNELS3's signature in double), by their own ids
 * from 0 (run3_d below) */
typedef void (*kernel3_d_fn)(const void *t, const double *x, const double *extra, idx rows, idx k,
                             double *value, double *grad, const double *scale, double *work,
                             const double *prm);
static const kernel3_d_fn KERNELS3_D[] = {margin_ranking_d,
    poisson_nll_d, gaussian_nll_d};
#define N_KERNELS3_D ((int)(sizeof(KERNELS3_D) / sizeof(KERNELS3_D[0])))

/* run3_d(kernel id in KERNELS3_D, y_true float64 buffer, y_pred float64 buffer, extra float64 buffer
 * (y_pred's size), rows, k, value float64 out, grad float64 out or None, scale float64 or None, params
 * float64 buffer): as run for those kernels, with a work buffer of k doubles */
static PyObject *py_run3_d(PyObject *self, PyObject *args) {
    int id;
    Py_buffer t, x, ex, val, prm, gr = {0}, sc = {0};
    PyObject *grobj, *scobj, *result = NULL;
    idx rows, k;
    double *work = NULL;
    if (!PyArg_ParseTuple(args, "iy*y*y*nnw*OOy*", &id, &t, &x, &ex, &rows, &k, &val, &grobj, &scobj,
                          &prm))
        return NULL;
    size_t n = (size_t)(rows > 0 ? rows : 0) * (size_t)(k > 0 ? k : 0);
    if (id < 0 || id >= N_KERNELS3_D || rows < 0 || k < 1 || (size_t)x.len < n * 8
        || (size_t)t.len < n * 8 || (size_t)ex.len < n * 8 || (size_t)val.len < (size_t)rows * 8) {
        PyErr_SetString(PyExc_ValueError, "run3_d: unknown kernel or a buffer shorter than its shape");
        goto done;
    }
    if (grobj != Py_None && PyObject_GetBuffer(grobj, &gr, PyBUF_WRITABLE) < 0) goto done;
    if (scobj != Py_None && PyObject_GetBuffer(scobj, &sc, PyBUF_SIMPLE) < 0) goto done;
    if ((gr.obj && (size_t)gr.len < n * 8) || (sc.obj && (size_t)sc.len < (size_t)rows * 8)) {
        PyErr_SetString(PyExc_ValueError, "run3_d: a buffer shorter than its shape");
        goto done;
    }
    work = PyMem_RawMalloc((size_t)k * sizeof(double));
    if (!work) { PyErr_NoMemory(); goto done; }
    Py_BEGIN_ALLOW_THREADS
    KERNELS3_D[id](t.buf, x.buf, ex.buf, rows, k, val.buf, gr.obj ? gr.buf : NULL,
                   sc.obj ? sc.buf : NULL, work, prm.buf);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyMem_RawFree(work);
    PyBuffer_Release(&t); PyBuffer_Release(&x); PyBuffer_Release(&ex); PyBuffer_Release(&val);
    PyBuffer_Release(&prm);
    if (gr.obj) PyBuffer_Release(&gr);
    if (sc.obj) PyBuffer_Release(&sc);
    return result;
}

/* run(kernel id, wide, y_true buffer, y_pred buffer (float32, or float64 when wide), rows, k, value
 * float64 out, grad out (y_pred's type) or None, scale float64 or None, params float64 buffer
 * [, extra float32 buffer shaped like y_pred (the KERNELS3 ids; None or absent: y_pred)]) */
static PyObject *py_run(PyObject *self, PyObject *args) {
    int id, wide;
    Py_buffer t, x, val, prm, gr = {0}, sc = {0}, ex = {0};
    PyObject *grobj, *scobj, *exobj = Py_None;
    idx rows, k;
    if (!PyArg_ParseTuple(args, "iiy*y*nnw*OOy*|O", &id, &wide, &t, &x, &rows, &k, &val, &grobj,
                          &scobj, &prm, &exobj))
        return NULL;
    void *g = NULL;
    const double *s = NULL;
    double *work = NULL;
    PyObject *result = NULL;
    int three = id >= N_KERNELS && id < N_KERNELS + N_KERNELS3;
    if (id < 0 || (id >= N_KERNELS && !three) || (wide && (three || KERNELS64[id] == NULL))) {
        PyErr_SetString(PyExc_ValueError, "unknown kernel");
        goto done;
    }
    if (exobj != Py_None) {
        if (PyObject_GetBuffer(exobj, &ex, PyBUF_SIMPLE) < 0) goto done;
        if (ex.len < x.len) {
            PyErr_SetString(PyExc_ValueError, "extra buffer shorter than y_pred");
            goto done;
        }
    }
    if (grobj != Py_None) {
        if (PyObject_GetBuffer(grobj, &gr, PyBUF_WRITABLE) < 0) goto done;
        g = gr.buf;
    }
    if (scobj != Py_None) {
        if (PyObject_GetBuffer(scobj, &sc, PyBUF_SIMPLE) < 0) goto done;
        s = sc.buf;
    }
    /* 3 rows of k (the row kernels), 2 max(k, BLOCK) (the elementwise ones), 3 (the checked ones) */
    work = PyMem_RawMalloc((size_t)(3 * (k > 0 ? k : 1) + 3 * BLOCK) * sizeof(double));
    if (!work) { PyErr_NoMemory(); goto done; }
    Py_BEGIN_ALLOW_THREADS
    if (three) KERNELS3[id - N_KERNELS](t.buf, x.buf, ex.obj ? ex.buf : x.buf, rows, k, val.buf, g, s,
                                        work, prm.buf);
    else if (wide) KERNELS64[id](t.buf, x.buf, rows, k, val.buf, g, s, work, prm.buf);
    else KERNELS[id](t.buf, x.buf, rows, k, val.buf, g, s, work, prm.buf);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyMem_RawFree(work);
    PyBuffer_Release(&t); PyBuffer_Release(&x); PyBuffer_Release(&val); PyBuffer_Release(&prm);
    if (gr.obj) PyBuffer_Release(&gr);
    if (sc.obj) PyBuffer_Release(&sc);
    if (ex.obj) PyBuffer_Release(&ex);
    return result;
}

/* nll(x buffer (float32, or float64 when wide), wide, labels int64 buffer, outer, k, inner, ignore,
 * has_ignore, weights float64 buffer of k or None, value float64 out (outer * inner) or None, grad out
 * (x's type, outer * k * inner, zeroed by the caller) or None, scale float64 (outer * inner) or None,
 * gscale) -> (bad labels, bad entries, samples read, sum of their values, sum of their w_y; with a
 * grad and no value, x is not read: the entries' counts and sum are 0): the
 * gathered NLL above on any (outer, k, inner) layout in one call, for numpy.py's kernel and
 * losskit.torch's nll_loss (which reduce from these sums and refuse a call with a bad count through
 * the general path, whose messages name the offending element). */
static PyObject *py_nll(PyObject *self, PyObject *args) {
    Py_buffer x, t, w = {0}, val = {0}, gr = {0}, sc = {0};
    PyObject *wobj, *vobj, *gobj, *sobj, *result = NULL;
    int wide, has_ignore;
    idx outer, k, inner;
    long long ignore;
    double gscale;
    if (!PyArg_ParseTuple(args, "y*iy*nnnLiOOOOd", &x, &wide, &t, &outer, &k, &inner, &ignore,
                          &has_ignore, &wobj, &vobj, &gobj, &sobj, &gscale))
        return NULL;
    size_t esize = wide ? sizeof(double) : sizeof(float);
    idx samples = outer * inner;
    if ((wobj != Py_None && PyObject_GetBuffer(wobj, &w, PyBUF_SIMPLE) < 0)
            || (vobj != Py_None && PyObject_GetBuffer(vobj, &val, PyBUF_WRITABLE) < 0)
            || (gobj != Py_None && PyObject_GetBuffer(gobj, &gr, PyBUF_WRITABLE) < 0)
            || (sobj != Py_None && PyObject_GetBuffer(sobj, &sc, PyBUF_SIMPLE) < 0))
        goto done;
    if (outer < 0 || k < 0 || inner < 0 || (size_t)x.len < (size_t)(samples * k) * esize
            || (size_t)t.len < (size_t)samples * 8 || (w.obj && (size_t)w.len < (size_t)k * 8)
            || (val.obj && (size_t)val.len < (size_t)samples * 8)
            || (gr.obj && (size_t)gr.len < (size_t)(samples * k) * esize)
            || (sc.obj && (size_t)sc.len < (size_t)samples * 8)) {
        PyErr_SetString(PyExc_ValueError, "nll: a buffer shorter than its shape");
        goto done;
    }
    nll_stats st = {0, 0, 0, 0.0, 0.0};
    /* the GIL is released for large calls only: a small one costs less than the hand-over */
    PyThreadState *released = samples >= 4096 ? PyEval_SaveThread() : NULL;
    if (wide) nll_gather_d(x.buf, t.buf, outer, k, inner, w.obj ? w.buf : NULL, ignore, has_ignore,
                           val.obj ? val.buf : NULL, gr.obj ? gr.buf : NULL, sc.obj ? sc.buf : NULL,
                           gscale, &st);
    else nll_gather_f(x.buf, t.buf, outer, k, inner, w.obj ? w.buf : NULL, ignore, has_ignore,
                      val.obj ? val.buf : NULL, gr.obj ? gr.buf : NULL, sc.obj ? sc.buf : NULL, gscale,
                      &st);
    if (released) PyEval_RestoreThread(released);
    result = Py_BuildValue("nnndd", st.bad_labels, st.bad_entries, st.counted, st.total, st.wsum);
done:
    PyBuffer_Release(&x); PyBuffer_Release(&t);
    if (w.obj) PyBuffer_Release(&w);
    if (val.obj) PyBuffer_Release(&val);
    if (gr.obj) PyBuffer_Release(&gr);
    if (sc.obj) PyBuffer_Release(&sc);
    return result;
}

/* add a finite double (its bits b) to a row of 8-bit buckets, as exact_sum and bce_exact do */
KINLINE void ev_add(int64_t *row, uint64_t b) {
    const int64_t mask = (1LL << 24) - 1;
    int ex = (int)((b >> 52) & 0x7ff);
    int64_t m = (int64_t)(b & ((1ULL << 52) - 1));
    int e = -1074;
    if (ex) { m |= 1LL << 52; e = ex - 1075; }
    if (b >> 63) m = -m;
    int sh = e + 1126;
    int64_t aligned = m * ((int64_t)1 << (sh & 7));
    int64_t *r = row + (sh >> 3);
    r[0] += aligned & mask;
    r[3] += (aligned >> 24) & mask;
    r[6] += aligned >> 48;
}

/* Exact sums of float64 values in groups, for losskit/metrics/_exact.py's Grid (its docstring has the
 * representation): a finite x = M 2^E (|M| < 2^53, E >= -1074) with S = E + 1126 >= 52 is shifted
 * left by S mod 8 (|M'| < 2^60) and cut into two 24-bit digits and a signed top one, added at the
 * 8-bit buckets b, b + 3 and b + 6 of its group (b = S >> 3 <= 262). Each addend is below 2^24, so
 * the int64 buckets are exact for fewer than 2^39 values per call. Non-finite values are skipped
 * (the caller counts them).
 * exact_sum(x float64 buffer, group ids int64 buffer or None (all group 0), acc int64 buffer
 * (groups x nb), nb) */
static PyObject *py_exact_sum(PyObject *self, PyObject *args) {
    Py_buffer x, acc, gid = {0};
    PyObject *gobj;
    idx nb;
    if (!PyArg_ParseTuple(args, "y*Ow*n", &x, &gobj, &acc, &nb)) return NULL;
    if (gobj != Py_None && PyObject_GetBuffer(gobj, &gid, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&x); PyBuffer_Release(&acc);
        return NULL;
    }
    const uint64_t *v = x.buf;
    const int64_t *g = gid.obj ? gid.buf : NULL;
    int64_t *a = acc.buf;
    idx n = x.len / 8;
    Py_BEGIN_ALLOW_THREADS
    for (idx i = 0; i < n; i++) {
        uint64_t b = v[i];
        if (((b >> 52) & 0x7ff) == 0x7ff) continue;
        ev_add(a + (g ? g[i] : 0) * nb, b);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&x); PyBuffer_Release(&acc);
    if (gid.obj) PyBuffer_Release(&gid);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------------
 * losskit evaluate's hot path for binary cross-entropy on probabilities (no smoothing, no pos_weight):
 * one pass over a batch that screens each row (NaN, outside [0, 1]), computes its per-sample value and
 * adds it exactly into the same buckets as exact_sum. The value is bce_probs_at(p, y, {0}, NULL) bit
 * for bit (what losskit.binary_crossentropy gives for float64 input, so the exact sum is the same
 * whichever path scores a row); for a hard label (0 or 1) only the logarithm its term needs is taken.
 * The caller discards the sums of a batch for which any count is non-zero and scores it the slow way
 * (which finds and reports the rows): a NaN or out-of-domain row, an infinite value (p = 0 with y = 1,
 * p = 1 with y = 0), or a subnormal p (the float64 kernel's klog takes normal numbers only; the slow
 * path decides those rows). */
#define EV_BLOCK 256

/* bce_probs_at(p, y, {0}, NULL) for y = 0 or 1 and p in [0, 1] (not subnormal): log_both's q, then
 * klog(q) where the label's term is log q, klog1p(-q) where it is log(1 - q), written as one klog_plus
 * call (klog's and klog1p's special cases that can occur for q in [0, 1/2] kept); + 0.0 as xmul's
 * zero term (-0 becomes +0). */
KINLINE double bce_hard_at(double p, double y) {
    int upper = p > 0.5;
    double q = upper ? 1.0 - p : p;
    int use_log = (y == 1.0) != upper;
    double x = -q, u1 = 1.0 + x;
    double bv = u1 - 1.0, av = u1 - bv;
    double c = (1.0 - av) + (x - bv);
    double u = use_log ? q : u1;
    double extra = use_log ? 0.0 : c / u1;
    double r = klog_plus(u, extra);
    r = use_log ? (q == 0.0 ? -INFINITY : r) : (fabs(x) < 0x1p-54 ? x : r);
    return -r + 0.0;
}

/* counts of a block: [0] rows with a NaN, [1] other rows outside [0, 1], [2] subnormal p, [3] labels
 * other than 0 and 1 */
CLONES static void ev_screen(const double *p, const double *y, idx n, int64_t *cnt) {
    int64_t a = 0, b = 0, c = 0, s = 0;
    PRAGMA(omp simd reduction(+ : a, b, c, s))
    for (idx i = 0; i < n; i++) {
        double pi = p[i], yi = y[i];
        int nan_row = (pi != pi) | (yi != yi);
        int ok = (pi >= 0.0) & (pi <= 1.0) & (yi >= 0.0) & (yi <= 1.0);
        a += nan_row;
        b += !ok & !nan_row;
        c += (pi > 0.0) & (pi < 0x1p-1022);
        s += (yi != 0.0) & (yi != 1.0);
    }
    cnt[0] += a; cnt[1] += b; cnt[2] += c; cnt[3] += s;
}

CLONES static void ev_bce_hard(const double *p, const double *y, idx n, double *v) {
    PRAGMA(omp simd)
    for (idx i = 0; i < n; i++) v[i] = bce_hard_at(p[i], y[i]);
}

CLONES static void ev_bce_soft(const double *p, const double *y, idx n, double *v, const double *prm) {
    PRAGMA(omp simd)
    for (idx i = 0; i < n; i++) v[i] = bce_probs_at(p[i], y[i], prm, NULL);
}


/* One group: per exponent field, the sums of the significands' high 27 and low 26 bits (signed), in
 * 4 interleaved lanes so that consecutive rows (mostly of the same binade) do not wait on each other's
 * adds: 2 adds a row instead of 3. Flushed into the buckets every EV_FLUSH rows (a lane's sums then
 * stay below 2^49, shifted by at most 7 bits below 2^56: three 24-bit digits). */
#define EV_FLUSH (1 << 22)

/* The split of a block of finite or infinite doubles (their bits), vectorised: each value's lane slot
 * 2 ex + 4096 lane (lane = row mod 4) and the high 27 and low 26 bits of its signed significand, for
 * the scalar adds that follow; a non-finite value gets parts 0 in the unused slot of field 2047.
 * Returns the number of infinite values. */
CLONES static int64_t ev_split(const uint64_t *bits, idx n, int64_t *ib, int64_t *hb, int64_t *lb) {
    int64_t inf = 0;
    PRAGMA(omp simd reduction(+ : inf))
    for (idx i = 0; i < n; i++) {
        uint64_t b = bits[i];
        int64_t ex = (int64_t)((b >> 52) & 0x7ff);
        int64_t m = (int64_t)(b & ((1ULL << 52) - 1)) | (ex ? 1LL << 52 : 0);
        m = (b >> 63) ? -m : m;
        m = ex == 0x7ff ? 0 : m;
        inf += (ex == 0x7ff) & ((b << 12) == 0);
        ib[i] = (i & 3) * 4096 + 2 * ex;
        hb[i] = m >> 26;
        lb[i] = m & ((1LL << 26) - 1);
    }
    return inf;
}

static void ev_put(int64_t *row, int64_t v, int sh) {   /* v 2^(sh - 1126) into the buckets */
    const int64_t mask = (1LL << 24) - 1;
    int64_t aligned = v * ((int64_t)1 << (sh & 7));
    int64_t *r = row + (sh >> 3);
    r[0] += aligned & mask;
    r[3] += (aligned >> 24) & mask;
    r[6] += aligned >> 48;
}

static void ev_flush(int64_t *lanes, int64_t *row) {
    for (int l = 0; l < 4; l++) {
        int64_t *lane = lanes + l * 4096;
        for (int ex = 0; ex < 2047; ex++) {
            int sh = (ex ? ex - 1075 : -1074) + 1126;
            if (lane[2 * ex]) ev_put(row, lane[2 * ex], sh + 26);
            if (lane[2 * ex + 1]) ev_put(row, lane[2 * ex + 1], sh);
            lane[2 * ex] = lane[2 * ex + 1] = 0;
        }
    }
}

/* a block of n values of type (kind, size) from base + r0 items, as doubles */
#define EV_LOAD(T) { const T *s = (const T *)base + r0; for (idx i = 0; i < n; i++) out[i] = (double)s[i]; return 0; }
static int ev_load(const void *base, int kind, idx size, idx r0, idx n, double *out) {
    if (kind == 'f' && size == 8) EV_LOAD(double)
    if (kind == 'f' && size == 4) EV_LOAD(float)
    if (kind == 'i' && size == 1) EV_LOAD(int8_t)
    if (kind == 'i' && size == 2) EV_LOAD(int16_t)
    if (kind == 'i' && size == 4) EV_LOAD(int32_t)
    if (kind == 'i' && size == 8) EV_LOAD(int64_t)
    if ((kind == 'u' || kind == 'b') && size == 1) EV_LOAD(uint8_t)
    if (kind == 'u' && size == 2) EV_LOAD(uint16_t)
    if (kind == 'u' && size == 4) EV_LOAD(uint32_t)
    if (kind == 'u' && size == 8) EV_LOAD(uint64_t)
    return -1;
}

/* bce_exact(y_true buffer, its dtype kind ('f', 'i', 'u', 'b') and item size, y_pred buffer (float32 or
 * float64: kind 'f'), its item size, rows n, group ids (int64 buffer or None: all group 0), acc (int64
 * buffer, groups x nb, nb = 272 as exact_sum; None: no sums), values (float64 buffer of n, or None))
 * -> (rows with a NaN, other rows outside [0, 1], infinite values, subnormal predictions). The sums and
 * values are meant for the caller only when all four are 0. Releases the GIL. */
static PyObject *py_bce_exact(PyObject *self, PyObject *args) {
    Py_buffer t, x, gid = {0}, acc = {0}, val = {0};
    PyObject *gobj, *aobj, *vobj, *result = NULL;
    int tkind, xkind;
    idx tsize, xsize, n, nb;
    int64_t *lanes = NULL;
    if (!PyArg_ParseTuple(args, "y*Cny*CnnOOnO", &t, &tkind, &tsize, &x, &xkind, &xsize, &n, &gobj,
                          &aobj, &nb, &vobj))
        return NULL;
    if (gobj != Py_None && PyObject_GetBuffer(gobj, &gid, PyBUF_SIMPLE) < 0) goto done;
    if (aobj != Py_None && PyObject_GetBuffer(aobj, &acc, PyBUF_WRITABLE) < 0) goto done;
    if (vobj != Py_None && PyObject_GetBuffer(vobj, &val, PyBUF_WRITABLE) < 0) goto done;
    double probe;
    if (n < 0 || xkind != 'f' || (xsize != 4 && xsize != 8) || ev_load(t.buf, tkind, tsize, 0, 0, &probe)
        || t.len < n * tsize || x.len < n * xsize || (gid.obj && gid.len < n * 8)
        || (val.obj && val.len < n * 8) || (acc.obj && (nb < 272 || acc.len < nb * 8))) {
        PyErr_SetString(PyExc_ValueError, "bce_exact: unsupported dtype or buffer too small");
        goto done;
    }
    idx groups = acc.obj ? acc.len / (nb * 8) : 0;
    const int64_t *g = gid.obj ? gid.buf : NULL;
    int64_t *a = acc.obj ? acc.buf : NULL;
    double *vout = val.obj ? val.buf : NULL;
    int64_t cnt[4] = {0, 0, 0, 0}, inf = 0, bad_gid = 0;
    /* one group: 4 interleaved bucket rows, so that consecutive rows (mostly of the same binade) add
     * to different memory and the adds do not wait on each other */
    if (a && !g) {
        lanes = PyMem_RawCalloc((size_t)(4 * 4096), sizeof(int64_t));
        if (!lanes) { PyErr_NoMemory(); goto done; }
    }
    const double prm0[1] = {0.0};
    Py_BEGIN_ALLOW_THREADS
    double pb[EV_BLOCK], yb[EV_BLOCK], vb[EV_BLOCK];
    for (idx r0 = 0; r0 < n; r0 += EV_BLOCK) {
        idx m = n - r0 < EV_BLOCK ? n - r0 : EV_BLOCK;
        const double *p = pb, *y = yb;
        if (xsize == 8) p = (const double *)x.buf + r0; else ev_load(x.buf, 'f', 4, r0, m, pb);
        if (tkind == 'f' && tsize == 8) y = (const double *)t.buf + r0; else ev_load(t.buf, tkind, tsize, r0, m, yb);
        int64_t before = cnt[3];
        ev_screen(p, y, m, cnt);
        double *v = vout ? vout + r0 : vb;
        if (cnt[3] == before) ev_bce_hard(p, y, m, v);
        else ev_bce_soft(p, y, m, v, prm0);
        if (!a) {
            for (idx i = 0; i < m; i++) inf += isinf(v[i]) != 0;
            continue;
        }
        const uint64_t *bits = (const uint64_t *)v;
        if (!g) {
            int64_t ib[EV_BLOCK], hb[EV_BLOCK], lb[EV_BLOCK];
            inf += ev_split(bits, m, ib, hb, lb);
            for (idx i = 0; i < m; i++) {
                lanes[ib[i]] += hb[i];
                lanes[ib[i] + 1] += lb[i];
            }
            if ((r0 + EV_BLOCK) % EV_FLUSH == 0) ev_flush(lanes, a);
        } else {
            for (idx i = 0; i < m; i++) {
                uint64_t b = bits[i];
                int64_t gi = g[r0 + i];
                if (((b >> 52) & 0x7ff) == 0x7ff) { inf += !(b << 12); continue; }
                if (gi < 0 || gi >= groups) { bad_gid++; continue; }
                ev_add(a + gi * nb, b);
            }
        }
    }
    if (lanes) ev_flush(lanes, a);
    Py_END_ALLOW_THREADS
    if (bad_gid) {
        PyErr_SetString(PyExc_ValueError, "bce_exact: a group id outside the accumulator's rows");
        goto done;
    }
    result = Py_BuildValue("nnnn", (idx)cnt[0], (idx)cnt[1], (idx)inf, (idx)cnt[2]);
done:
    PyMem_RawFree(lanes);
    PyBuffer_Release(&t); PyBuffer_Release(&x);
    if (gid.obj) PyBuffer_Release(&gid);
    if (acc.obj) PyBuffer_Release(&acc);
    if (val.obj) PyBuffer_Release(&val);
    return result;
}

/* Vectorised math for the tests: out[i] = f(in[i]) in double. */
CLONES static void map_exp(const double *a, double *o, idx n) { for (idx i = 0; i < n; i++) o[i] = kexp(a[i]); }
CLONES static void map_log(const double *a, double *o, idx n) { for (idx i = 0; i < n; i++) o[i] = klog(a[i]); }
CLONES static void map_log1p(const double *a, double *o, idx n) { for (idx i = 0; i < n; i++) o[i] = klog1p(a[i]); }
CLONES static void map_expm1(const double *a, double *o, idx n) { for (idx i = 0; i < n; i++) o[i] = kexpm1(a[i]); }
CLONES static void map_tanh(const double *a, double *o, idx n) { for (idx i = 0; i < n; i++) o[i] = ktanh(a[i]); }
CLONES static void map_log_sub(const double *a, double *o, idx n) { for (idx i = 0; i < n; i++) o[i] = klog_sub(a[i]); }
/* exp(x - m) by kexp_diff_f32 for pairs (x, m) of float32 values given as doubles: n/2 results */
CLONES static void map_exp_f32(const double *a, double *o, idx n) {
    for (idx i = 0; i < n / 2; i++) o[i] = kexp_diff_f32((float)a[2 * i], (float)a[2 * i + 1]);
}
/* klog1p_unit (the float32 kernels' softplus tail log1p(e), e in [0, 1]) */
CLONES static void map_log1p_unit(const double *a, double *o, idx n) {
    for (idx i = 0; i < n; i++) o[i] = klog1p_unit(a[i]);
}

static PyObject *py_map(PyObject *self, PyObject *args) {
    Py_buffer a, o;
    int which;
    if (!PyArg_ParseTuple(args, "iy*w*", &which, &a, &o)) return NULL;
    idx n = a.len / 8;
    Py_BEGIN_ALLOW_THREADS
    if (which == 0) map_exp(a.buf, o.buf, n);
    else if (which == 1) map_log(a.buf, o.buf, n);
    else if (which == 2) map_log1p(a.buf, o.buf, n);
    else if (which == 3) map_expm1(a.buf, o.buf, n);
    else if (which == 4) map_tanh(a.buf, o.buf, n);
    else if (which == 5) map_log_sub(a.buf, o.buf, n);
    else if (which == 7) map_log1p_unit(a.buf, o.buf, n);
    else if (which == 8) map_log_pair(a.buf, o.buf, n);
    else if (which == 9) map_exp_pair(a.buf, o.buf, n);
    else map_exp_f32(a.buf, o.buf, n);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&a); PyBuffer_Release(&o);
    Py_RETURN_NONE;
}

/* minmax: the minimum and maximum of a float32 (wide = 0) or float64 (wide = 1) buffer in one pass,
 * for the core's range checks of small calls (Interval.any_outside): NaN for both when an element is
 * NaN, as NumPy's min and max give. On large arrays NumPy's two reductions are as fast (they are
 * memory-bound), so the core calls this below a size only. */
#define MINMAX(T)                                                                                   \
    CLONES static void minmax_##T(const T *a, idx n, double *rlo, double *rhi, int *any_nan) {      \
        T lo = a[0], hi = a[0];                                                                     \
        int bad = 0;                                                                                \
        _Pragma("omp simd reduction(min:lo) reduction(max:hi) reduction(|:bad)")                    \
        for (idx i = 0; i < n; i++) {                                                               \
            T v = a[i];                                                                             \
            lo = v < lo ? v : lo;                                                                   \
            hi = v > hi ? v : hi;                                                                   \
            bad |= v != v;                                                                          \
        }                                                                                           \
        *rlo = lo, *rhi = hi, *any_nan = bad;                                                       \
    }
MINMAX(float)
MINMAX(double)
#undef MINMAX

static PyObject *py_minmax(PyObject *self, PyObject *args) {
    Py_buffer b;
    int wide, any_nan = 0;
    if (!PyArg_ParseTuple(args, "iy*", &wide, &b)) return NULL;
    double lo = INFINITY, hi = -INFINITY;
    idx n = b.len / (wide ? 8 : 4);
    if (n > 0) {
        if (wide) minmax_double(b.buf, n, &lo, &hi, &any_nan);
        else minmax_float(b.buf, n, &lo, &hi, &any_nan);
    }
    PyBuffer_Release(&b);
    if (any_nan) lo = hi = NAN;
    return Py_BuildValue("dd", lo, hi);
}

/* label_kind(wide, buffer): 1 if every element of the float32 (0) or float64 (1) buffer is -1 or 1,
 * else 2 if every element is 0 or 1, else 0 (NaN included; an empty buffer gives 1): the sign labels'
 * check (margin.sign_checker) and Keras's 0/1 -> -1/1 rule (numpy._signs) in one pass. */
static PyObject *py_label_kind(PyObject *self, PyObject *args) {
    Py_buffer b;
    int wide;
    if (!PyArg_ParseTuple(args, "iy*", &wide, &b)) return NULL;
    idx n = b.len / (wide ? 8 : 4);
    int signs = 1, bits = 1;
    PyThreadState *ts = n > 65536 ? PyEval_SaveThread() : NULL;  /* (a small call keeps the GIL) */
    for (idx i0 = 0; i0 < n && (signs || bits); i0 += 4096) {  /* blocks: vectorised, early exit */
        idx i1 = n - i0 < 4096 ? n : i0 + 4096;
        int sb = 1, bb = 1;
        if (wide) {
            const double *v = b.buf;
            PRAGMA(omp simd reduction(& : sb, bb))
            for (idx i = i0; i < i1; i++) {
                sb &= fabs(v[i]) == 1.0;
                bb &= v[i] == 0.0 || v[i] == 1.0;
            }
        } else {
            const float *v = b.buf;
            PRAGMA(omp simd reduction(& : sb, bb))
            for (idx i = i0; i < i1; i++) {
                sb &= fabsf(v[i]) == 1.0f;
                bb &= v[i] == 0.0f || v[i] == 1.0f;
            }
        }
        signs &= sb;
        bits &= bb;
    }
    if (ts) PyEval_RestoreThread(ts);
    PyBuffer_Release(&b);
    return PyLong_FromLong(signs ? 1 : bits ? 2 : 0);
}

static PyObject *py_boost(PyObject *self, PyObject *args);  /* losskit.boosting's kernels, at the end */
static PyObject *py_embed(PyObject *self, PyObject *args);  /* the embedding losses' kernels, at the end */
/* the lengths and labels of a ctc call within range (else a ValueError naming the entry point) */
static int ctc_lengths_ok(const char *name, const int64_t *tls, const int64_t *lls, const int64_t *labs,
                          idx rows, idx T, idx S, idx C, int64_t blank) {
    for (idx r = 0; r < rows; r++) {
        if (tls[r] < 0 || tls[r] > T || lls[r] < 0 || lls[r] > S) {
            PyErr_Format(PyExc_ValueError, "%s: a length out of range", name);
            return 0;
        }
        for (idx k = 0; k < lls[r]; k++) {
            int64_t v = labs[r * S + k];
            if (v < 0 || v >= C || v == blank) {
                PyErr_Format(PyExc_ValueError, "%s: a label out of range", name);
                return 0;
            }
        }
    }
    if (blank < 0 || blank >= C) {
        PyErr_Format(PyExc_ValueError, "%s: blank out of range", name);
        return 0;
    }
    return 1;
}

static PyObject *py_ctc(PyObject *self, PyObject *args);  /* CTC's forward-backward, at the end */
static PyObject *py_ctc_dd(PyObject *self, PyObject *args);  /* CTC in double length, after it */
static PyObject *py_boost_soft(PyObject *self, PyObject *args);  /* boosting, one formula per element: at the end */
static PyObject *py_boost_identity(PyObject *self, PyObject *args);  /* boosting's identity links: at the end */
static PyObject *py_xla_targets(PyObject *self, PyObject *args);  /* the embedding kernels as XLA FFI targets: at the end */

static PyMethodDef methods[] = {
    {"run", py_run, METH_VARARGS, "run a loss kernel on float32 (or float64) rows (see the module comment)"},
    {"exact_sum", py_exact_sum, METH_VARARGS,
     "exact sums of float64 values into groups of 8-bit buckets (metrics/_exact.py's Grid)"},
    {"bce_exact", py_bce_exact, METH_VARARGS,
     "evaluate's binary cross-entropy: screening, per-sample values and exact sums in one pass"},
    {"boost", py_boost, METH_VARARGS, "losskit.boosting's float64 gradient/hessian kernels (ids 1000+)"},
    {"embed", py_embed, METH_VARARGS, "triplet margin (0) and cosine embedding (1) losses, every member's gradient"},
    {"nll", py_nll, METH_VARARGS, "the gathered negative log-likelihood on (outer, k, inner) layouts"},
    {"map", py_map, METH_VARARGS,
     "exp (0), log (1), log1p (2), expm1 (3), tanh (4), log with subnormals (5) of a float64 buffer; "
     "exp(x - m) of float32 pairs (6, half as many results); the tests' probes: float32-budget log1p "
     "on [0, 1] (7), log and exp as double-length pairs (8, 9: results in out[2i], out[2i + 1])"},
    {"ctc", py_ctc, METH_VARARGS, "CTC's plain float64 forward-backward with per-row error bounds"},
    {"ctc_dd", py_ctc_dd, METH_VARARGS, "CTC's double-length forward-backward (float64) with per-row error bounds"},
    {"minmax", py_minmax, METH_VARARGS,
     "(min, max) of a float32 (0) or float64 (1) buffer in one pass; both NaN if any element is NaN"},
    {"label_kind", py_label_kind, METH_VARARGS,
     "1: a float32 (0) or float64 (1) buffer of -1 and 1 only; 2: of 0 and 1 only; 0: anything else"},
    {"boost_soft", py_boost_soft, METH_VARARGS, "losskit.boosting: binomial (0) and exponential (1) loss, 62-bit difference"},
    {"boost_identity", py_boost_identity, METH_VARARGS, "losskit.boosting: absolute (0), Huber (1), pinball (2) gradients"},
    {"run3_d", py_run3_d, METH_VARARGS, "the float64 kernels with a third input array (margin ranking)"},
    {"xla_targets", py_xla_targets, METH_NOARGS, "{name: PyCapsule} of the XLA FFI handlers (empty: built without XLA's header)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cpu", NULL, -1, methods};

/* N_KERNELS: the first id of the KERNELS3 table (numpy.py numbers those from it, so a kernel added
 * to KERNELS shifts nothing by hand) */
PyMODINIT_FUNC PyInit__cpu(void) {
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "N_KERNELS", N_KERNELS) < 0) { Py_DECREF(m); return NULL; }
    return m;
}

/* ================================================================================================
 * Boosting (losskit.boosting, ids 1000+): gradient and hessian of the log-link Tweedie family
 * (Poisson p = 1, Gamma p = 2, any p with an exact 1 - p; id 1000) and of the binomial loss (id 1001)
 * in raw-score space, float64 in and out.
 *
 * This is the "middle tier" of losskit/boosting/_kernels.py (TweedieKernel._kernel with _exp_mid)
 * applied to every element in one branch-free loop, with the same error analysis (see the comments
 * there): exp(x) = A + C to within 2^-62 from a 2048-entry table of 2^(j/2048) as double-doubles
 * (passed in from Python, where it is built and tested against mpmath) and a degree-4 polynomial;
 * the gradient F ((A - y) + C) with F = exp((1-p) r) from the same exponential of the exact product
 * (1-p) r = bh + bl (bl from an FMA), F = (A' + C') (1 + bl); the hessian F (a (A + C) - b y) with
 * a = 2-p, b = 1-p. A fused multiply-add anywhere in these formulas only removes a rounding.
 * Elements that need more are flagged for the Python tiers, which recompute them exactly as before:
 *   flag 1: the gradient's terms agree to 1/kmid of their size (|(A-y)+C| kmid < A): the 2^-76 tier;
 *   flag 2: |r| or |(1-p) r| beyond 650 (where A, C or 2^k leave the normal range), a result outside
 *           [2^-1000, 2^1000] (other than 0), or a non-convex hessian whose terms are not a factor 7
 *           apart: the double-double path.
 * Returns the number of flagged elements (the caller skips its scan when it is 0).
 * ============================================================================================= */

#define BOOST_TWEEDIE 1000
#define BOOST_BINOMIAL 1001

/* exp(x) = A + C (|x| <= 650); inv = 2048/ln 2, c1 + c2 = ln 2/2048 (c1 of 32 bits): _kernels._MID_* */
KINLINE void boost_exp_mid(double x, const double *thi, const double *tlo, double inv, double c1, double c2,
                           double *a_out, double *c_out) {
    const double shifter = 6755399441055744.0;      /* 1.5 * 2^52 */
    double m = x * inv + shifter;
    int64_t n = (int64_t)(bits_of(m) - bits_of(shifter));
    m -= shifter;
    double s = x - m * c1;
    s -= m * c2;
    int64_t j = n & 2047;
    int64_t k = n >> 11;
    double th = thi[j], c = tlo[j];
    double u = s * (1.0 / 24.0) + 1.0 / 6.0;
    u = u * s + 0.5;
    u = u * s * s + s;                              /* expm1(s) */
    c += u * th;
    double scale = from_bits((uint64_t)(k + 1023) << 52);
    *a_out = th * scale;
    *c_out = c * scale;
}

/* flag of one element: 2 (double-double path) if wild or a result outside [2^-1000, 2^1000] other than
 * 0, else 1 if the gradient's terms agree to 1/kmid (the 2^-76 tier), else 0 */
KINLINE unsigned char boost_flag(int wild, int deep, double gi, double hi) {
    double ag = fabs(gi), ah = fabs(hi);
    wild |= (ag != 0.0) & ((ag < 0x1p-1000) | (ag > 0x1p1000));
    wild |= (ah != 0.0) & ((ah < 0x1p-1000) | (ah > 0x1p1000));
    return wild ? 2 : (deep ? 1 : 0);
}

#define BOOST_KERNELS(SFX, BOOST_ATTR) \
/* Poisson (p = 1): gradient (A - y) + C, hessian A + C. */ \
BOOST_ATTR static idx boost_poisson##SFX(const double *restrict y, const double *restrict r, idx n, \
                                const double *restrict thi, const double *restrict tlo, double *restrict g, \
                                double *restrict h, unsigned char *restrict flag, const double *prm) { \
    const double kmid = prm[2], inv = prm[5], c1 = prm[6], c2 = prm[7]; \
    idx flagged = 0; \
    SIMD_SUM(flagged) \
    for (idx i = 0; i < n; i++) { \
        double ri = r[i], yi = y[i]; \
        int wild = !(fabs(ri) <= 650.0); \
        double A, C; \
        boost_exp_mid(wild ? 0.0 : ri, thi, tlo, inv, c1, c2, &A, &C); \
        double d = (A - yi) + C; \
        double e = A + C; \
        unsigned char fl = boost_flag(wild, fabs(d) * kmid < A, d, e); \
        g[i] = d; \
        h[i] = e; \
        flag[i] = fl; \
        flagged += fl != 0; \
    } \
    return flagged; \
} \
 \
/* Any other power with an exact b = 1 - p: gradient F ((A - y) + C), hessian F (a (A + C) - b y). */ \
BOOST_ATTR static idx boost_tweedie##SFX(const double *restrict y, const double *restrict r, idx n, \
                                const double *restrict thi, const double *restrict tlo, double *restrict g, \
                                double *restrict h, unsigned char *restrict flag, const double *prm) { \
    /* prm: a = 2-p, b = 1-p (exact double), kmid, convex (1 or 0), poisson (p = 1), inv, c1, c2 */ \
    const double a = prm[0], b = prm[1], kmid = prm[2], inv = prm[5], c1 = prm[6], c2 = prm[7]; \
    const int nonconvex = prm[3] == 0.0; \
    idx flagged = 0; \
    SIMD_SUM(flagged) \
    for (idx i = 0; i < n; i++) { \
        double ri = r[i], yi = y[i]; \
        double bh = b * ri; \
        int wild = !(fabs(ri) <= 650.0) | !(fabs(bh) <= 650.0); \
        double rs = wild ? 0.0 : ri, bs = wild ? 0.0 : bh; \
        double A, C, fa, fc; \
        boost_exp_mid(rs, thi, tlo, inv, c1, c2, &A, &C); \
        boost_exp_mid(bs, thi, tlo, inv, c1, c2, &fa, &fc); \
        double bl = fma(b, rs, -bs);                  /* b r = bh + bl exactly */ \
        double f = fa + fc; \
        f += f * bl; \
        double d = (A - yi) + C; \
        double gi = f * d; \
        double ea = a * (A + C), by = b * yi; \
        double hd = ea - by; \
        double hi = f * hd; \
        double big = fabs(ea) > fabs(by) ? fabs(ea) : fabs(by); \
        wild |= nonconvex & !(fabs(hd) >= 0.75 * big);  /* the hessian's terms may cancel */ \
        unsigned char fl = boost_flag(wild, fabs(d) * kmid < A, gi, hi); \
        g[i] = gi; \
        h[i] = hi; \
        flag[i] = fl; \
        flagged += fl != 0; \
    } \
    return flagged; \
} \
 \
/* Binomial (logit link): with e = exp(-|r|) = A + C rounded, the numerator (1-y) exp(min(r,0)) - \
 * y exp(-max(r,0)) over 1 + e (the float64 kernel of _kernels.BinomialKernel, with a more accurate e); \
 * flag 1 where the two numerator terms are not a factor 7 apart (soft labels that cancel). */ \
BOOST_ATTR static idx boost_binomial##SFX(const double *restrict y, const double *restrict r, idx n, \
                                 const double *restrict thi, const double *restrict tlo, double *restrict g, \
                                 double *restrict h, unsigned char *restrict flag, const double *prm) { \
    const double inv = prm[5], c1 = prm[6], c2 = prm[7]; \
    idx flagged = 0; \
    SIMD_SUM(flagged) \
    for (idx i = 0; i < n; i++) { \
        double ri = r[i], yi = y[i]; \
        int wild = !(fabs(ri) <= 650.0); \
        double A, C; \
        boost_exp_mid(wild ? 0.0 : -fabs(ri), thi, tlo, inv, c1, c2, &A, &C); \
        double e = A + C; \
        int neg = ri < 0.0; \
        double t1 = (1.0 - yi) * (neg ? e : 1.0), t2 = yi * (neg ? 1.0 : e); \
        double num = t1 - t2; \
        int hard = fabs(num) < 0.75 * (t1 + t2); \
        double onep = 1.0 + e; \
        double gi = num / onep, hi = (e / onep) / onep; \
        unsigned char fl = wild ? 2 : (hard ? 1 : 0); \
        g[i] = gi; \
        h[i] = hi; \
        flag[i] = fl; \
        flagged += fl != 0; \
    } \
    return flagged; \
}

/* target_clones does not vectorise these loops (GCC 12: "no vectype" in the clones), explicit targets
 * do: one copy per ISA level, chosen at run time (x86-64 with GCC), else the portable copy only. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define BOOST_MULTI 1
BOOST_KERNELS(_v4, __attribute__((target("arch=x86-64-v4"))))
BOOST_KERNELS(_v3, __attribute__((target("arch=x86-64-v3"))))
#endif
BOOST_KERNELS(_base, )

typedef idx (*boost_fn)(const double *restrict, const double *restrict, idx, const double *restrict,
                        const double *restrict, double *restrict, double *restrict, unsigned char *restrict,
                        const double *);

/* which: 0 Tweedie, 1 Poisson, 2 binomial */
static boost_fn boost_pick(int which) {
#ifdef BOOST_MULTI
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4"))
        return which == 1 ? boost_poisson_v4 : which == 2 ? boost_binomial_v4 : boost_tweedie_v4;
    if (__builtin_cpu_supports("x86-64-v3"))
        return which == 1 ? boost_poisson_v3 : which == 2 ? boost_binomial_v3 : boost_tweedie_v3;
#endif
    return which == 1 ? boost_poisson_base : which == 2 ? boost_binomial_base : boost_tweedie_base;
}

/* boost(id, y float64, r float64, n, table hi, table lo, g out, h out, flag uint8 out, params) -> count */
static PyObject *py_boost(PyObject *self, PyObject *args) {
    int id;
    idx n;
    Py_buffer y, r, thi, tlo, g, h, fl, prm;
    if (!PyArg_ParseTuple(args, "iy*y*ny*y*w*w*w*y*", &id, &y, &r, &n, &thi, &tlo, &g, &h, &fl, &prm))
        return NULL;
    idx count = -1;
    if ((id == BOOST_TWEEDIE || id == BOOST_BINOMIAL) && thi.len == 2048 * 8 && tlo.len == 2048 * 8 && y.len >= n * 8 && r.len >= n * 8
            && g.len >= n * 8 && h.len >= n * 8 && fl.len >= n && prm.len >= 8 * 8) {
        Py_BEGIN_ALLOW_THREADS
        const double *p = prm.buf;
        count = boost_pick(id == BOOST_BINOMIAL ? 2 : p[4] != 0.0)(y.buf, r.buf, n, thi.buf, tlo.buf, g.buf,
                                                                   h.buf, fl.buf, p);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&y); PyBuffer_Release(&r); PyBuffer_Release(&thi); PyBuffer_Release(&tlo);
    PyBuffer_Release(&g); PyBuffer_Release(&h); PyBuffer_Release(&fl); PyBuffer_Release(&prm);
    if (count < 0) { PyErr_SetString(PyExc_ValueError, "boost: unknown kernel id or wrong buffer sizes"); return NULL; }
    return PyLong_FromSsize_t(count);
}

/* ================================================================================================
 * CTC (losskit/losses/sequence.py): the plain float64 forward-backward of float32 inputs (given
 * widened to float64), one sequence at a time, with the per-row error bound of ``_ctc_plain`` (its
 * docstring has the analysis, step by step). This is the same recursion in the same float64
 * operations: e = exp(x - m_t) (m_t the step's largest score), y_t(s) = e_t(l'_s), alpha and beta
 * divided at each step by their largest state, the occupancy alpha beta summed per class and divided
 * by its step total. Only the order of the row sums differs, which the bounds do not depend on (a sum
 * of n terms in any order is within (n - 1) u of the sum of their magnitudes), and exp/log are the C
 * library's log (below 1 ulp) and e comes from NumPy's exp, as in _ctc_plain.
 * Per row the bound of the value and of every gradient element is evaluated, and a row is flagged
 * (redo[r] = 1) when any exceeds 6 float32 ulps of its result (plus half an ulp for the final
 * rounding: within 8), or when the row has non-finite scores, no input steps, an impossible or
 * underflowed alignment (a step's largest state or total occupancy below 2^-900); the caller
 * recomputes the flagged rows with the double-length kernel (_ctc_double). value[r] (and grad's row)
 * of a flagged row are unspecified.
 * ctc(x float64 (rows, T, C), e = exp(x - m) float64 (rows, T, C) and m, the step maxima, float64
 * (rows, T) (from NumPy, whose SIMD float64 exp is several times faster than the C library's scalar
 * one and is the exp _ctc_plain's analysis assumes), labels int64 (rows, S), input lengths int64
 * (rows), label lengths
 * int64 (rows), rows, T, C, S, blank, from_logits, length_normalize, value float64 (rows) out, grad
 * float64 or float32 (rows, T, C) out (by its item size; float32: each element rounded once) or None,
 * redo uint8 (rows) out); lengths must lie in [0, T] and [0, S]
 * (the caller has checked them), labels within the label length in [0, C) other than blank.
 * ================================================================================================ */

#define CTC_U (1.0 / 9007199254740992.0)          /* 2^-53, float64's unit roundoff */
#define CTC_BUDGET (6.0 / 16777216.0)             /* 6 float32 ulps (2^-24 relative each) */
#define CTC_SAFE 0x1p-900

/* work: T (z) + T (scales) + W (a step's y, gathered from e when the step runs: not T W) + (T + 1)(W + 2)
 * (alpha, then the occupancy) + 3 (W + 2) (beta, its products, the final states) + 2 W (skips) + C
 * (occupancy per class) */
static size_t ctc_work_size(idx T, idx C, idx S) {
    size_t W = (size_t)(2 * S + 1);
    return 2 * (size_t)T + W + ((size_t)T + 1) * (W + 2) + 3 * (W + 2) + 2 * W + (size_t)C;
}

CLONES static void ctc_row(const double *x, const double *e, const double *m, const int64_t *lab, idx tl,
                    idx ll, idx T, idx C, idx S, int64_t blank, int from_logits, int normalize,
                    double *value, double *g, uint8_t *redo, double *work, int64_t *ext) {
    const idx W = 2 * S + 1, W2 = W + 2;
    double *z = work, *sc = z + T, *y = sc + T, *al = y + W;
    double *b = al + (T + 1) * W2, *w = b + W2, *fresh = w + W2, *skip = fresh + W2;
    double *skipn = skip + W, *gam = skipn + W;
    *redo = 0;
    *value = 0.0;
    if (g) memset(g, 0, (size_t)(T * C) * sizeof(double));
    if (tl < 1) { *redo = 1; return; }
    for (idx s = 0; s < W; s++) { ext[s] = blank; skip[s] = 0.0; }
    for (idx k = 0; k < ll; k++) {
        ext[2 * k + 1] = lab[k];
        skip[2 * k + 1] = k == 0 ? 1.0 : (lab[k] != lab[k - 1]);
    }
    for (idx s = 0; s < W; s++) skipn[s] = s + 2 < W ? skip[s + 2] : 0.0;
    /* the scores (e = exp(x - m) and the step maxima m given), Z, and E_x (2 max|x| when x - m may be
     * rounded) */
    double big = 0.0, small = INFINITY;
    for (idx t = 0; t < T; t++) {
        const double *xt = x + t * C;
        for (idx c = 0; c < C; c++) {
            double v = xt[c], a = fabs(v);
            if (v != v) { *redo = 1; return; }
            if (a > big) big = a;
            if (a > 0 && a < small) small = a;
        }
        if (!isfinite(m[t])) { *redo = 1; return; }
        double zt = 0.0;
        const double *et = e + t * C;
        for (idx c = 0; c < C; c++) zt += et[c];
        z[t] = zt;
    }
    const double e_x = small < big * 0x1p-27 ? 2.0 * big : 0.0;
    /* forward: al[t + 1] is step t over W + 2 entries, two virtual states first (index 1: "before the
     * start", 1 at t = -1), so new(s) = a(s) + a(s - 1) + skip(s) a(s - 2) */
    memset(al, 0, (size_t)W2 * sizeof(double));
    al[1] = 1.0;
    for (idx t = 0; t < tl; t++) {
        const double *restrict prev = al + t * W2, *restrict et = e + t * C;
        double *restrict yt = y, *restrict cur = al + (t + 1) * W2 + 2, top = 0.0;
        for (idx s = 0; s < W; s++) yt[s] = et[ext[s]];
        cur[-2] = cur[-1] = 0.0;
        for (idx s = 0; s < W; s++) cur[s] = ((prev[s + 2] + prev[s + 1]) + prev[s] * skip[s]) * yt[s];
        for (idx s = 0; s < W; s++) top = cur[s] > top ? cur[s] : top;
        sc[t] = top;
        if (!(top >= CTC_SAFE)) { *redo = 1; return; }
        for (idx s = 0; s < W; s++) cur[s] /= top;
    }
    const double *last = al + tl * W2;
    const double fin = last[2 + 2 * ll] + last[1 + 2 * ll];  /* states 2L and 2L - 1 */
    if (!(fin > 0)) { *redo = 1; return; }
    double v = 0.0, magnitude = 0.0;
    for (idx t = 0; t < tl; t++) {
        double a_t = from_logits ? log(z[t]) : -m[t], ls = log(sc[t]);
        v += a_t - ls;
        magnitude += fabs(a_t) + fabs(ls);
    }
    const double lf = log(fin);
    v -= lf;
    magnitude += fabs(lf);
    const double steps = (double)tl, length = ll > 1 ? (double)ll : 1.0;
    double bound = CTC_U * (steps * ((double)C + 7.0 + 2.0 * e_x) + 4.0 + (steps + 4.0) * magnitude);
    if (normalize) { v /= length; bound /= length; }
    *value = v;
    if (!(bound <= CTC_BUDGET * v)) { *redo = 1; return; }
    if (!g) return;
    /* backward: b holds beta_t (W + 2 entries, two trailing zeros), the rest of the alignment after
     * step t from state s; the occupancy alpha_t beta_t replaces alpha_t in place */
    memset(fresh, 0, (size_t)W2 * sizeof(double));
    fresh[2 * ll] = 1.0;
    if (ll > 0) fresh[2 * ll - 1] += 1.0;
    memcpy(b, fresh, (size_t)W2 * sizeof(double));
    w[W] = w[W + 1] = 0.0;
    for (idx t = tl - 1; t >= 0; t--) {
        double *occ = al + (t + 1) * W2 + 2;
        for (idx s = 0; s < W; s++) occ[s] *= b[s];
        if (t == 0) break;
        const double *restrict et = e + t * C;
        double *restrict yt = y, *restrict bb = b, *restrict ww = w, top = 0.0;
        for (idx s = 0; s < W; s++) yt[s] = et[ext[s]];
        for (idx s = 0; s < W; s++) ww[s] = bb[s] * yt[s];
        for (idx s = 0; s < W; s++) bb[s] = (ww[s] + ww[s + 1]) + ww[s + 2] * skipn[s];
        for (idx s = 0; s < W; s++) top = bb[s] > top ? bb[s] : top;
        if (!(top >= CTC_SAFE)) { *redo = 1; return; }
        for (idx s = 0; s < W; s++) bb[s] /= top;
    }
    /* gamma_t(c) = sum_{l'_s = c} occ_t(s) / sum_s occ_t(s); the gradient and its bound */
    const double g_factor = 2.0 * (5.0 + e_x) * steps + 4.0 * (double)W + 8.0;
    const double q_factor = (double)C + 2.0 + e_x;
    for (idx t = 0; t < tl; t++) {
        const double *occ = al + (t + 1) * W2 + 2;
        double tot = 0.0;
        for (idx c = 0; c < C; c++) gam[c] = 0.0;
        for (idx s = 0; s < W; s++) { tot += occ[s]; gam[ext[s]] += occ[s]; }
        if (!(tot >= CTC_SAFE)) { *redo = 1; return; }
        const double *et = e + t * C;
        for (idx c = 0; c < C; c++) {
            double ga = gam[c] / tot, q = from_logits ? et[c] / z[t] : 0.0, gv = q - ga;
            double tol = CTC_U * (q * q_factor + ga * g_factor + fabs(gv));
            if (tol > CTC_BUDGET * fabs(gv)) { *redo = 1; return; }
            g[t * C + c] = normalize ? gv / length : gv;
        }
    }
}

static PyObject *py_ctc(PyObject *self, PyObject *args) {
    Py_buffer x, ex, mx, lab, il, ll, val, rd, gr = {0};
    PyObject *grobj;
    idx rows, T, C, S;
    long long blank;
    int from_logits, normalize;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*nnnnLppw*Ow*", &x, &ex, &mx, &lab, &il, &ll, &rows, &T, &C,
                          &S, &blank, &from_logits, &normalize, &val, &grobj, &rd))
        return NULL;
    PyObject *result = NULL;
    double *work = NULL;
    int64_t *ext = NULL;
    idx W = 2 * S + 1;
    if (grobj != Py_None && PyObject_GetBuffer(grobj, &gr, PyBUF_WRITABLE) < 0) goto done;
    if (rows < 0 || T < 1 || C < 1 || S < 0 || x.len < (Py_ssize_t)(rows * T * C * 8)
        || ex.len < (Py_ssize_t)(rows * T * C * 8) || mx.len < (Py_ssize_t)(rows * T * 8)
        || lab.len < (Py_ssize_t)(rows * S * 8) || il.len < rows * 8 || ll.len < rows * 8
        || val.len < rows * 8 || rd.len < rows || (gr.obj && gr.len < (Py_ssize_t)(rows * T * C * 8))) {
        PyErr_SetString(PyExc_ValueError, "ctc: wrong sizes");
        goto done;
    }
    const int64_t *tls = il.buf, *lls = ll.buf, *labs = lab.buf;
    if (!ctc_lengths_ok("ctc", tls, lls, labs, rows, T, S, C, blank)) goto done;
    work = PyMem_RawMalloc(ctc_work_size(T, C, S) * sizeof(double));
    ext = PyMem_RawMalloc((size_t)W * sizeof(int64_t));
    if (!work || !ext) { PyErr_NoMemory(); goto done; }
    Py_BEGIN_ALLOW_THREADS
    for (idx r = 0; r < rows; r++)
        ctc_row((const double *)x.buf + r * T * C, (const double *)ex.buf + r * T * C,
                (const double *)mx.buf + r * T, labs + r * S, (idx)tls[r], (idx)lls[r], T, C, S,
                (int64_t)blank, from_logits, normalize, (double *)val.buf + r,
                gr.obj ? (double *)gr.buf + r * T * C : NULL, (uint8_t *)rd.buf + r, work, ext);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyMem_RawFree(work);
    PyMem_RawFree(ext);
    PyBuffer_Release(&x); PyBuffer_Release(&ex); PyBuffer_Release(&mx);
    PyBuffer_Release(&lab); PyBuffer_Release(&il); PyBuffer_Release(&ll);
    PyBuffer_Release(&val); PyBuffer_Release(&rd);
    if (gr.obj) PyBuffer_Release(&gr);
    return result;
}

/* ================================================================================================
 * CTC in double length (issue 8): the float64 inputs' forward-backward (and the float32 rows the plain
 * kernel above flags), one sequence at a time, in C. It computes what _ctc_double (sequence.py)
 * computes, with the states kept as double-double pairs, and bounds its own error per row; a row
 * whose bound exceeds 6 float64 ulps of its result (6 2^-53 relative; rounding the pair adds half
 * an ulp), or that this kernel does not handle, is flagged (redo[r] = 1) and the caller recomputes it
 * with _ctc_double, so the exactness contract rests on that kernel wherever this one is not sure.
 *
 * Formulation (logits; log-probabilities below): with m_t the step's largest score and
 * e_t(c) = exp(x_t(c) - m_t) (exactly 1 at the top), Z_t = sum_c e_t(c) and q_t = e_t / Z_t, the
 * alignment probability is prod_t q_t(pi_t) = prod_t e_t(pi_t) / prod_t Z_t, so
 * loss = sum_t log Z_t - log alpha', alpha' the forward sum run on y_t(s) = e_t(l'_s); with
 * log-probabilities q_t = exp(x_t) = e_t exp(m_t) and loss = -sum_t m_t - log alpha'. alpha is
 * divided at each step by the power of two of its largest state (exact), whose exponents E are
 * summed: log alpha' = log f + E ln2 (f the final states' sum). gradient: q_t(c) - gamma_t(c) or
 * -gamma_t(c), gamma_t(c) = sum_{l'_s = c} alpha_t(s) beta_t(s) / sum_s alpha_t(s) beta_t(s).
 *
 * Error (u = 2^-53; every quantity of the recursions is a non-negative pair):
 * - x - m_t is the exact pair d + c (TwoSum); e = exp(d + c) by ctc_exp_row within 2^-98 relative for
 *   d >= -650 (e >= 2^-938, so its low part is normal too; rows with a smaller d, or a non-finite
 *   score, are flagged).
 * - dd_add of non-negative pairs and dd_mul: relative error below 2^-103 each. A forward step (two
 *   additions, a product by y, an exact power-of-two scaling) adds at most STEP = 2^-97 to a state's
 *   relative error (3 2^-103 + 2^-98 < 2^-97), so f is within T STEP + 2^-103 relative, and log f's
 *   absolute error is that plus klog_pair's 2^-66 (absolute) plus the pair's low part's correction
 *   (2^-104). E ln2 by the exact product E L1 and E L2 (ln2 = L1 + L2 to 2^-106): |E| 2^-105.
 * - Z_t: the C terms added by TwoSum, the low parts and errors plainly, of values each within 2^-98:
 *   (C + 1) 2^-98 + C^2 2^-104 relative, log Z_t within that plus 2^-66 absolute (klog_pair of the high part, the low part's
 *   correction). The T terms and the final subtraction are pair additions (and -sum m_t, TwoSum with the
 *   errors summed plainly): below (T + 4)^2 2^-103 of the magnitudes summed.
 * - Underflow: a forward step whose largest state is below 2^-900 before scaling flags the row; a
 *   state below 2^-960 relative to its step's largest may lose its low part (absolute error
 *   2^-1074), which is harmless unless that state later carries the alignment: the backward pass
 *   checks that every step's total occupancy sum_s alpha_t(s) beta_t(s) (both normalised to largest
 *   state ~1) is at least 2^-900, so such errors are below T S' 2^-1072 / 2^-900 relative (taken as
 *   2^-150, negligible). Without the gradient the backward pass runs only when a state was that small.
 * - gradient: alpha_t beta_t within (T + 1) STEP + 2^-103, gamma's two sums S' 2^-103 each and the
 *   quotient: G = (T + 1) STEP + (2 S' + 3) 2^-103 relative; q within Q = (C + 3) 2^-98 + C^2 2^-104; q - gamma as a
 *   pair, then rounded (and divided by the label length as a pair: 2^-103 more): tolerance
 *   G gamma + Q q + 2^-102 |g|, plus (S' + 1) 2^-1068 / the step's total occupancy once a state of
 *   either recursion (up to that step) fell below 2^-960 of its step's largest or underflowed to 0
 *   (its low part, or all of it, lost: then a class with no occupancy left can be flagged),
 *   within 6 u |g| or the row is flagged.
 * value and grad of a flagged row are unspecified.
 *
 * ctc_dd(x float64 (rows, T, C), labels int64 (rows, S), input lengths int64 (rows), label lengths
 * int64 (rows), rows, T, C, S, blank, from_logits, length_normalize, value float64 (rows) out, grad
 * float64 (rows, T, C) out or None, redo uint8 (rows) out); the same argument checks as ctc.
 * ================================================================================================ */

#define CTCD_STEP 0x1p-97
#define CTCD_BUDGET (6.0 * 0x1p-53)

/* e = exp(x - m) as pairs (hi, lo) over a step's C scores, within 2^-98 relative for x - m >= -700:
 * x - m = d + c exactly (TwoSum); d + c = k ln2 + r, k = floor((d) / ln2), ln2 = L1 + L2
 * (LOG_TABLE[128], within 2^-109), k L1 exact by TwoProduct, so r is a pair to 2^-99 absolute
 * (kexp_acc's reduction, with c added to r's low part); c_i = 1 + i/128 with i = rint(128 (e^r - 1)),
 * z = r - log c_i (LOG_TABLE's pair, 2^-106), |z| <= 2^-7.9; e^z by its Taylor series, the terms
 * from z^6 on (below 2^-56.9) in plain double (2^-109 absolute), the rest in double-double; times
 * c_i and 2^k (exact for a normal result: k >= -1011). In blocks, so that the table reads (a gather
 * the vectoriser does not make) are a scalar loop between two vectorised ones. */
CLONES static void ctc_exp_row(const double *restrict x, double m, idx C, double *restrict hi,
                               double *restrict lo) {
    const double L1 = LOG_TABLE[128][0], L2 = LOG_TABLE[128][1];
    double kk[64], rhs[64], rls[64], fis[64], th[64], tl[64];
    for (idx c0 = 0; c0 < C; c0 += 64) {
        idx n = C - c0 < 64 ? C - c0 : 64;
        const double *xb = x + c0;
        PRAGMA(omp simd)
        for (idx j = 0; j < n; j++) {
            double c, d = two_sum(xb[j], -m, &c);
            double k = floor(d * 1.4426950408889634);
            double p = k * L1, pe = fma(k, L1, -p);
            double r0e, r0 = two_sum(d, -p, &r0e);
            double q = k * L2, qe = fma(k, L2, -q);
            double t1e, t1 = two_sum(pe, q, &t1e);
            double rl, rh = two_sum(r0, -t1, &rl);
            rl += (r0e - (t1e + qe)) + c;
            double fi = nearbyint((kexp(rh) - 1.0) * 128.0);
            fi = fi < 0.0 ? 0.0 : (fi > 128.0 ? 128.0 : fi);
            kk[j] = k;
            rhs[j] = rh;
            rls[j] = rl;
            fis[j] = fi;
        }
        for (idx j = 0; j < n; j++) {
            int i = (int)fis[j];
            th[j] = LOG_TABLE[i][0];
            tl[j] = LOG_TABLE[i][1];
        }
        PRAGMA(omp simd)
        for (idx j = 0; j < n; j++) {
            double zl, zh = dd_add(rhs[j], rls[j], -th[j], -tl[j], &zl);
            double t = 1.0 / 720.0 + zh * (1.0 / 5040.0 + zh * (1.0 / 40320.0 + zh * (1.0 / 362880.0)));
            double sl, sh = dd_add(0x1.1111111111111p-7, 0x1.1111111111111p-63, zh * t, 0.0, &sl);
            double ml, mh = dd_mul(sh, sl, zh, zl, &ml);
            sh = dd_add(mh, ml, 0x1.5555555555555p-5, 0x1.5555555555555p-59, &sl);
            mh = dd_mul(sh, sl, zh, zl, &ml);
            sh = dd_add(mh, ml, 0x1.5555555555555p-3, 0x1.5555555555555p-57, &sl);
            mh = dd_mul(sh, sl, zh, zl, &ml);
            sh = dd_add(mh, ml, 0.5, 0.0, &sl);
            mh = dd_mul(sh, sl, zh, zl, &ml);
            sh = dd_add(mh, ml, 1.0, 0.0, &sl);
            mh = dd_mul(sh, sl, zh, zl, &ml);
            sh = dd_add(mh, ml, 1.0, 0.0, &sl);
            double hl, h = dd_mul(sh, sl, 1.0 + fis[j] * 0x1p-7, 0.0, &hl);
            double sc = pow2(kk[j]);
            hi[c0 + j] = h * sc;
            lo[c0 + j] = hl * sc;
        }
    }
}

/* work (doubles): 2 T C (e) + 2 T (Z) + 2 (T + 1)(W + 2) (alpha, then the occupancy) + 4 (W + 2)
 * (beta and its products) + 2 W (skips) + 2 C (occupancy per class) + 2 W (a step's y) */
static size_t ctc_dd_work_size(idx T, idx C, idx S) {
    size_t W = (size_t)(2 * S + 1);
    return 2 * (size_t)T * (size_t)C + 2 * (size_t)T + 2 * ((size_t)T + 1) * (W + 2) + 4 * (W + 2)
           + 4 * W + 2 * (size_t)C;
}

/* the exponent k of a pair's high part top in [2^-1000, 4): top 2^-k in [1/2, 1) */
KINLINE double ctc_expo(double top) {
    return (double)(int64_t)((bits_of(top) >> 52) & 0x7ff) - 1022.0;
}

CLONES static void ctc_dd_row(const double *x, const int64_t *lab, idx tl, idx ll, idx T, idx C, idx S,
                              int64_t blank, int from_logits, int normalize, double *value, double *g,
                              uint8_t *redo, double *work, int64_t *ext) {
    const idx W = 2 * S + 1, W2 = W + 2;
    double *eh = work, *el = eh + T * C, *zh = el + T * C, *zl = zh + T;
    double *ah = zl + T, *al = ah + (T + 1) * W2, *bh = al + (T + 1) * W2, *bl = bh + W2;
    double *wh = bl + W2, *wl = wh + W2, *skip = wl + W2, *skipn = skip + W, *gh = skipn + W, *gl = gh + C;
    double *yh = gl + C, *yl = yh + W;
    *redo = 1;
    *value = 0.0;
    if (g) memset(g, 0, (size_t)(T * C) * sizeof(double));
    if (tl < 1) return;
    for (idx s = 0; s < W; s++) { ext[s] = blank; skip[s] = 0.0; }
    for (idx k = 0; k < ll; k++) {
        ext[2 * k + 1] = lab[k];
        skip[2 * k + 1] = k == 0 ? 1.0 : (lab[k] != lab[k - 1]);
    }
    for (idx s = 0; s < W; s++) skipn[s] = s + 2 < W ? skip[s + 2] : 0.0;
    /* e = exp(x - m) as pairs, Z = 1 + (the others) as a pair, -sum m (log-probabilities) */
    double msum = 0.0, msum_l = 0.0;
    for (idx t = 0; t < tl; t++) {
        const double *xt = x + t * C;
        double m = -INFINITY, lowest = INFINITY;
        int nan = 0;
        for (idx c = 0; c < C; c++) {
            m = xt[c] > m ? xt[c] : m;
            lowest = xt[c] < lowest ? xt[c] : lowest;
            nan |= xt[c] != xt[c];
        }
        if (nan || !(m - lowest <= 650.0)) return;  /* NaN, infinities, or e possibly below 2^-938 */
        double *restrict et = eh + t * C, *restrict etl = el + t * C, s_h = 0.0, s_l = 0.0;
        ctc_exp_row(xt, m, C, et, etl);
        for (idx c = 0; c < C; c++) { double er; s_h = two_sum(s_h, et[c], &er); s_l += er + etl[c]; }
        zh[t] = two_sum(s_h, s_l, &zl[t]);
        double er, ms = two_sum(msum, m, &er);
        msum = ms;
        msum_l += er;
    }
    /* forward */
    memset(ah, 0, (size_t)W2 * sizeof(double));
    memset(al, 0, (size_t)W2 * sizeof(double));
    ah[1] = 1.0;
    double expo = 0.0;
    int small_state = 0;
    for (idx t = 0; t < tl; t++) {
        const double *restrict ph = ah + t * W2, *restrict pl = al + t * W2;
        double *restrict ch = ah + (t + 1) * W2 + 2, *restrict cl = al + (t + 1) * W2 + 2;
        const double *et = eh + t * C, *etl = el + t * C;
        ch[-2] = ch[-1] = cl[-2] = cl[-1] = 0.0;
        double top = 0.0;
        for (idx s = 0; s < W; s++) { yh[s] = et[ext[s]]; yl[s] = etl[ext[s]]; }
        PRAGMA(omp simd reduction(max : top))
        for (idx s = 0; s < W; s++) {
            double l1, h1 = dd_add(ph[s + 2], pl[s + 2], ph[s + 1], pl[s + 1], &l1);
            double l2, h2 = dd_add(h1, l1, ph[s] * skip[s], pl[s] * skip[s], &l2);
            double l3, h3 = dd_mul(h2, l2, yh[s], yl[s], &l3);
            ch[s] = h3;
            cl[s] = l3;
            top = h3 > top ? h3 : top;
        }
        if (!(top >= 0x1p-900)) return;
        double k = ctc_expo(top), sc = pow2(-k);
        expo += k;
        for (idx s = 0; s < W; s++) {
            ch[s] *= sc;
            cl[s] *= sc;
            /* small, or underflowed to 0 from a positive value */
            small_state |= ch[s] < 0x1p-960 && ph[s + 2] + ph[s + 1] + ph[s] * skip[s] > 0.0;
        }
    }
    const double *lh = ah + tl * W2, *lw = al + tl * W2;
    double fl, fh = dd_add(lh[2 + 2 * ll], lw[2 + 2 * ll], lh[1 + 2 * ll], lw[1 + 2 * ll], &fl);
    if (!(fh > 0.0)) return;  /* impossible (or underflowed): the double-length kernel's rules */
    /* value: sum log Z_t - log f - E ln2 (logits), -sum m_t - log f - E ln2 (log-probabilities) */
    double vh, vl, mag, err;
    const double steps = (double)tl;
    if (from_logits) {
        vh = 0.0, vl = 0.0, mag = 0.0;
        for (idx t = 0; t < tl; t++) {
            double lzl, lzh = klog_pair(zh[t], &lzl);
            lzl += zl[t] / zh[t];
            vh = dd_add(vh, vl, lzh, lzl, &vl);
            mag += lzh;
        }
        err = steps * (0x1p-66 + ((double)C + 1.0) * 0x1p-98 + (double)C * (double)C * 0x1p-104);
    } else {
        vh = -msum, vl = -msum_l, mag = fabs(msum), err = 0.0;
    }
    double lfl, lfh = klog_pair(fh, &lfl);
    lfl += fl / fh;
    const double L1 = LOG_TABLE[128][0], L2 = LOG_TABLE[128][1];
    double kh = expo * L1, kl = fma(expo, L1, -kh) + expo * L2;
    double sh_, sl_;
    sh_ = dd_add(lfh, lfl, kh, kl, &sl_);  /* log alpha' */
    vh = dd_add(vh, vl, -sh_, -sl_, &vl);
    mag += fabs(lfh) + fabs(kh);
    err += 0x1p-66 + steps * CTCD_STEP + 0x1p-102 + fabs(expo) * 0x1p-105 + 0x1p-150
           + (steps + 4.0) * (steps + 4.0) * 0x1p-103 * mag;
    const double length = ll > 1 ? (double)ll : 1.0;
    double v = vh + vl;
    if (normalize) {
        double qv = vh / length, rem = fma(-qv, length, vh) + vl;
        v = qv + rem / length;
        err = err / length + 0x1p-103 * fabs(v);
    }
    *value = v;
    if (!(err <= CTCD_BUDGET * v)) return;
    if (!g && !small_state) { *redo = 0; return; }
    /* backward: beta (normalised per step), the occupancy alpha beta in place of alpha */
    memset(wh, 0, (size_t)W2 * sizeof(double));
    memset(wl, 0, (size_t)W2 * sizeof(double));
    memset(bh, 0, (size_t)W2 * sizeof(double));
    memset(bl, 0, (size_t)W2 * sizeof(double));
    bh[2 * ll] = 1.0;
    if (ll > 0) bh[2 * ll - 1] = 1.0;
    const double gfac = (steps + 1.0) * CTCD_STEP + (2.0 * (double)W + 3.0) * 0x1p-103;
    const double qfac = ((double)C + 3.0) * 0x1p-98 + (double)C * (double)C * 0x1p-104;
    for (idx t = tl - 1; t >= 0; t--) {
        double *oh = ah + (t + 1) * W2 + 2, *ol = al + (t + 1) * W2 + 2, tot_h = 0.0, tot_l = 0.0;
        for (idx s = 0; s < W; s++) {
            double l, h = dd_mul(oh[s], ol[s], bh[s], bl[s], &l);
            oh[s] = h;
            ol[s] = l;
            tot_h = dd_add(tot_h, tot_l, h, l, &tot_l);
        }
        if (!(tot_h >= 0x1p-900)) return;
        if (g) {
            const double *et = eh + t * C, *etl = el + t * C;
            double *gt = g + t * C;
            for (idx c = 0; c < C; c++) { gh[c] = 0.0; gl[c] = 0.0; }
            for (idx s = 0; s < W; s++) gh[ext[s]] = dd_add(gh[ext[s]], gl[ext[s]], oh[s], ol[s], &gl[ext[s]]);
            int bad = 0;
            for (idx c = 0; c < C; c++) {
                double qh = gh[c] / tot_h;  /* gamma as a pair: quotient and correction */
                double ph = qh * tot_h, pe = fma(qh, tot_h, -ph);
                double gal = ((gh[c] - ph) - pe + gl[c] - qh * tot_l) / tot_h, gah = qh;
                double dh = -gah, dl = -gal, q = 0.0;
                if (from_logits) {
                    double sq = et[c] / zh[t], sp = sq * zh[t], spe = fma(sq, zh[t], -sp);
                    double sql = ((et[c] - sp) - spe + etl[c] - sq * zl[t]) / zh[t];
                    dh = dd_add(sq, sql, -gah, -gal, &dl);
                    q = sq;
                }
                double gv = dh + dl;
                if (normalize) {
                    double qv = dh / length, rem = fma(-qv, length, dh) + dl;
                    gv = qv + rem / length;
                }
                double tol = gfac * gah + qfac * q + 0x1p-102 * fabs(dh)
                             + (small_state ? ((double)W + 1.0) * 0x1p-1068 / tot_h : 0.0);
                if (normalize) tol /= length;
                bad |= !(tol <= CTCD_BUDGET * fabs(gv));
                gt[c] = gv;
            }
            if (bad) return;
        }
        if (t == 0) break;
        const double *et = eh + t * C, *etl = el + t * C;
        for (idx s = 0; s < W; s++) { yh[s] = et[ext[s]]; yl[s] = etl[ext[s]]; }
        PRAGMA(omp simd)
        for (idx s = 0; s < W; s++) {
            double l, h = dd_mul(bh[s], bl[s], yh[s], yl[s], &l);
            wh[s] = h;
            wl[s] = l;
        }
        double top = 0.0;
        PRAGMA(omp simd reduction(max : top))
        for (idx s = 0; s < W; s++) {
            double l1, h1 = dd_add(wh[s], wl[s], wh[s + 1], wl[s + 1], &l1);
            double l2, h2 = dd_add(h1, l1, wh[s + 2] * skipn[s], wl[s + 2] * skipn[s], &l2);
            bh[s] = h2;
            bl[s] = l2;
            top = h2 > top ? h2 : top;
        }
        if (!(top >= 0x1p-900)) return;
        double sc = pow2(-ctc_expo(top));
        for (idx s = 0; s < W; s++) {
            bh[s] *= sc;
            bl[s] *= sc;
            small_state |= bh[s] < 0x1p-960 && wh[s] + wh[s + 1] + wh[s + 2] * skipn[s] > 0.0;
        }
    }
    *redo = 0;
}

static PyObject *py_ctc_dd(PyObject *self, PyObject *args) {
    Py_buffer x, lab, il, ll, val, rd, gr = {0};
    PyObject *grobj;
    idx rows, T, C, S;
    long long blank;
    int from_logits, normalize;
    if (!PyArg_ParseTuple(args, "y*y*y*y*nnnnLppw*Ow*", &x, &lab, &il, &ll, &rows, &T, &C, &S, &blank,
                          &from_logits, &normalize, &val, &grobj, &rd))
        return NULL;
    PyObject *result = NULL;
    double *work = NULL;
    int64_t *ext = NULL;
    idx W = 2 * S + 1;
    if (grobj != Py_None && PyObject_GetBuffer(grobj, &gr, PyBUF_WRITABLE) < 0) goto done;
    if (rows < 0 || T < 1 || C < 1 || S < 0 || x.len < (Py_ssize_t)(rows * T * C * 8)
        || lab.len < (Py_ssize_t)(rows * S * 8) || il.len < rows * 8 || ll.len < rows * 8
        || val.len < rows * 8 || rd.len < rows || (gr.obj && gr.len < (Py_ssize_t)(rows * T * C * 8))) {
        PyErr_SetString(PyExc_ValueError, "ctc_dd: wrong sizes");
        goto done;
    }
    const int64_t *tls = il.buf, *lls = ll.buf, *labs = lab.buf;
    if (!ctc_lengths_ok("ctc_dd", tls, lls, labs, rows, T, S, C, blank)) goto done;
    work = PyMem_RawMalloc(ctc_dd_work_size(T, C, S) * sizeof(double));
    ext = PyMem_RawMalloc((size_t)W * sizeof(int64_t));
    if (!work || !ext) { PyErr_NoMemory(); goto done; }
    Py_BEGIN_ALLOW_THREADS
    for (idx r = 0; r < rows; r++)
        ctc_dd_row((const double *)x.buf + r * T * C, labs + r * S, (idx)tls[r], (idx)lls[r], T, C, S,
                   (int64_t)blank, from_logits, normalize, (double *)val.buf + r,
                   gr.obj ? (double *)gr.buf + r * T * C : NULL, (uint8_t *)rd.buf + r, work, ext);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyMem_RawFree(work);
    PyMem_RawFree(ext);
    PyBuffer_Release(&x); PyBuffer_Release(&lab); PyBuffer_Release(&il); PyBuffer_Release(&ll);
    PyBuffer_Release(&val); PyBuffer_Release(&rd);
    if (gr.obj) PyBuffer_Release(&gr);
    return result;
}

/* ================================================================================================
 * Embedding losses with several differentiable inputs (losskit/losses/embedding.py, issue 8/10): the
 * triplet margin loss (p = 1 or 2 with eps inside the difference, or p = 2 with eps added to the sum
 * of squares, or the cosine distance; with or without the swap) and the cosine embedding loss. float32 rows evaluated in plain
 * double, the value and the gradients of every member wanted (anchor, positive, negative; x1, x2) in
 * one pass, each already multiplied by the row's scale. A row for which plain double cannot promise
 * the 8-ulp contract gets the value NaN (as the CHECKED_KERNELs do) and numpy.py recomputes exactly
 * those rows with the double-length generic kernel (values and every gradient); NaN or infinite input
 * rows are flagged the same way.
 *
 * Error argument (embedding.py's float32 tier, with the eps terms made explicit; rho = (k + 8) 2^-53,
 * k the row length). Inputs are float32 values (24-bit significands) held in double: a_i - x_i is exact
 * unless the exponents differ by more than 29 bits, and then rounded once; adding eps rounds once
 * more. As |a_i - x_i| <= |u_i| + eps, u_i = (a_i - x_i) + eps is within 2^-52 |u_i| + 2^-53 eps.
 * A sum of k non-negative terms (u_i^2, |u_i|; in any order, the SIMD partial sums included) is within
 * (k + 2) 2^-53 relative; a square root halves that, a division adds 2^-53: the distances D and each
 * term u_i / D are within rho relative, plus (from eps) at most E = 2^-52 eps k absolute in D and
 * 2^-52 eps k / D in u_i / D.
 * - The hinge m = D(a,p) - D(a,n) + margin is within (rho + 2^-51)(D(a,p) + D(a,n) + |margin|) + 2E;
 *   it is accepted when |m| exceeds 2^22 times that bound (a relative error below 2^-22, at most 4
 *   float32 ulps; with the final rounding to float32, 4.5 ulp < 8), else the row is flagged (a hinge
 *   within rounding of 0, a NaN).
 * - Each gradient element is a sum of at most two such terms (u_i/D(a,p) - v_i/D(a,n); with the swap,
 *   -u_i/D(a,p) - w_i/D(p,n) for the positive): its error is below rho' (|g1| + |g2|) + E (1/D1 + 1/D2)
 *   (rho' = rho + 2^-50, the product with the scale included); accepted when the element exceeds 2^22
 *   times that bound (4.5 ulp as above), else the row is flagged (terms that cancel). For p = 1 the
 *   gradient is sign(u_i) - sign(v_i), exact, unless a sign could be wrong (|u_i| <= 2^-52 |a_i - x_i|,
 *   only with eps != 0): flagged. A zero distance (its gradient is the generic kernel's call) is
 *   flagged, and so is a swap whose choice is within the error: |D(a,n) - D(p,n)| <= 2 rho (D(a,n) +
 *   D(p,n)) + 2E.
 * - Cosine: |a|^2, |x|^2 are within (k + 2) 2^-53 relative and the dot product within (k + 2) 2^-53 |a||x|
 *   absolute (Cauchy-Schwarz), so cos is within 4 rho absolute and 1 - cos, cos - margin within
 *   4 rho + 2^-52 (1 + |margin|): accepted above 2^22 times that. The gradient's numerator
 *   x_i |a|^2 - (a.x) a_i is within 2 rho (|x_i| |a|^2 + |a||x| |a_i|) (the dot product's absolute error
 *   times a_i, not its relative one: nearly orthogonal vectors are covered), accepted above 2^22 times
 *   that; its factor slope / (|a|^2 |a||x|) is within 2 rho relative. A zero vector and a label other
 *   than -1 and 1 are flagged (the generic kernel gives cosine 0, and NaN for a NaN label).
 * ================================================================================================ */

#define EMBED_ACCEPT 0x1p22

/* one row of the triplet margin loss with the cosine distance D(u, v) = 1 - cos(u, v) (triplet_rows'
 * distance_function "cosine"; p and eps unused). Error argument: the cosine loss's (above): each cos
 * within 4 rho absolute, so m = D(a,p) - D(a,n) + margin within 8 rho + 2^-51 (2 + |margin|), and the
 * swap's choice within 8 rho + 2^-51; each gradient element is a sum of at most two terms
 * c (v_i |u|^2 - (u.v) u_i), c = 1/(|u|^2 |u||v|), each within 4 rho |c| (|v_i| |u|^2 + |u||v| |u_i|)
 * (numerator and factor); accepted above 2^22 times the sum of those bounds. A zero vector is flagged. */
KINLINE void triplet_cosine_row(const float *ar, const float *pr, const float *nr, idx k, int swap,
                                double margin, double rho, double *value, float *gar, float *gpr,
                                float *gnr, double sc) {
    double qa = 0.0, qp = 0.0, qn = 0.0, dap = 0.0, dan = 0.0, dpn = 0.0;
    PRAGMA(omp simd reduction(+ : qa, qp, qn, dap, dan, dpn))
    for (idx j = 0; j < k; j++) {
        double aj = (double)ar[j], pj = (double)pr[j], nj = (double)nr[j];
        qa += aj * aj; qp += pj * pj; qn += nj * nj;
        dap += aj * pj; dan += aj * nj; dpn += pj * nj;
    }
    const double n_ap = sqrt(qa * qp), n_an = sqrt(qa * qn), n_pn = sqrt(qp * qn);
    const double d_ap = 1.0 - dap / n_ap, d_an = 1.0 - dan / n_an, d_pn = 1.0 - dpn / n_pn;
    const int use = !swap || d_an <= d_pn;
    int bad = !(n_ap > 0.0) || !(n_an > 0.0);
    if (swap) bad = bad || !(n_pn > 0.0) || !(fabs(d_an - d_pn) > 8.0 * rho + 0x1p-51);
    const double dn = use ? d_an : d_pn, m = (d_ap - dn) + margin;
    bad = bad || !(fabs(m) > EMBED_ACCEPT * (8.0 * rho + 0x1p-51 * (2.0 + fabs(margin))));
    *value = bad ? NAN : (m > 0.0 ? m : 0.0);
    if (bad || !(m > 0.0) || sc == 0.0) {
        if (gar) memset(gar, 0, (size_t)k * sizeof(float));
        if (gpr) memset(gpr, 0, (size_t)k * sizeof(float));
        if (gnr) memset(gnr, 0, (size_t)k * sizeof(float));
        return;
    }
    if (!gar && !gpr && !gnr) return;
    const double cu = use ? 1.0 : 0.0, cw = use ? 0.0 : 1.0, t = EMBED_ACCEPT * 4.0 * rho;
    const double c_aap = 1.0 / (qa * n_ap), c_aan = cu / (qa * n_an), c_pap = 1.0 / (qp * n_ap);
    const double c_ppn = swap ? cw / (qp * n_pn) : 0.0, c_nan = cu / (qn * n_an);
    const double c_npn = swap ? cw / (qn * n_pn) : 0.0;
    int cancel = 0;
    PRAGMA(omp simd reduction(+ : cancel))
    for (idx j = 0; j < k; j++) {
        double aj = (double)ar[j], pj = (double)pr[j], nj = (double)nr[j];
        /* dcos(u,v)/du = c (v |u|^2 - (u.v) u); D = 1 - cos, so dD/du = -dcos/du */
        double a1 = c_aap * (pj * qa - dap * aj), a2 = c_aan * (nj * qa - dan * aj);
        double p1 = c_pap * (aj * qp - dap * pj), p2 = c_ppn * (nj * qp - dpn * pj);
        double n1 = c_nan * (aj * qn - dan * nj), n2 = c_npn * (pj * qn - dpn * nj);
        double ea1 = c_aap * (fabs(pj) * qa + n_ap * fabs(aj)), ea2 = c_aan * (fabs(nj) * qa + n_an * fabs(aj));
        double ep1 = c_pap * (fabs(aj) * qp + n_ap * fabs(pj)), ep2 = c_ppn * (fabs(nj) * qp + n_pn * fabs(pj));
        double en1 = c_nan * (fabs(aj) * qn + n_an * fabs(nj)), en2 = c_npn * (fabs(pj) * qn + n_pn * fabs(nj));
        double x_a = a2 - a1, x_p = p2 - p1, x_n = n1 + n2;
        double th_a = t * (ea1 + ea2), th_p = t * (ep1 + ep2), th_n = t * (en1 + en2);
        int c = 0;
        if (gar) { gar[j] = (float)(x_a * sc); c |= (fabs(x_a) <= th_a) & (th_a > 0.0); }
        if (gpr) { gpr[j] = (float)(x_p * sc); c |= (fabs(x_p) <= th_p) & (th_p > 0.0); }
        if (gnr) { gnr[j] = (float)(x_n * sc); c |= (fabs(x_n) <= th_n) & (th_n > 0.0); }
        cancel += c;
    }
    if (cancel) *value = NAN;
}

/* rows lo..hi of the triplet margin loss; prm: margin, p (1 or 2), eps, swap, eps added to the sum of
 * squares (p = 2; else eps is inside the difference), the cosine distance (then p and eps are unused).
 * ga/gp/gn: gradients wrt anchor, positive, negative (each may be NULL). */
CLONES static void triplet_rows(const float *a, const float *pos, const float *neg, idx lo, idx hi, idx k,
                                double *value, float *ga, float *gp, float *gn, const double *scale,
                                const double *prm) {
    const double margin = prm[0], eps = prm[2];
    const int two = prm[1] == 2.0, swap = prm[3] != 0.0, sum_eps = two && prm[4] != 0.0;
    const double e_in = sum_eps ? 0.0 : eps;
    const double rho = ((double)k + 8.0) * 0x1p-53, e_abs = 0x1p-52 * eps * (double)k;
    const double tol_rel = EMBED_ACCEPT * (rho + 0x1p-50), tol_abs = EMBED_ACCEPT * e_abs;
    const int cosine = prm[5] != 0.0;
    for (idx r = lo; r < hi; r++) {
        const float *ar = a + r * k, *pr = pos + r * k, *nr = neg + r * k;
        if (cosine) {
            triplet_cosine_row(ar, pr, nr, k, swap, margin, rho, value + r, ga ? ga + r * k : NULL,
                               gp ? gp + r * k : NULL, gn ? gn + r * k : NULL, scale ? scale[r] : 1.0);
            continue;
        }
        double sp = 0.0, sn = 0.0, sw = 0.0;
        int risky = 0;
        if (two) {
            PRAGMA(omp simd reduction(+ : sp, sn, sw))
            for (idx j = 0; j < k; j++) {
                double u = ((double)ar[j] - (double)pr[j]) + e_in, v = ((double)ar[j] - (double)nr[j]) + e_in;
                double w = ((double)pr[j] - (double)nr[j]) + e_in;
                sp += u * u;
                sn += v * v;
                sw += w * w;
            }
            if (sum_eps) { sp += eps; sn += eps; sw += eps; }
            sp = sqrt(sp); sn = sqrt(sn); sw = sqrt(sw);
        } else {
            PRAGMA(omp simd reduction(+ : sp, sn, sw, risky))
            for (idx j = 0; j < k; j++) {
                double du = (double)ar[j] - (double)pr[j], dv = (double)ar[j] - (double)nr[j];
                double dw = (double)pr[j] - (double)nr[j];
                double u = du + e_in, v = dv + e_in, w = dw + e_in;
                sp += fabs(u);
                sn += fabs(v);
                sw += fabs(w);
                risky += (fabs(u) <= 0x1p-52 * fabs(du)) | (fabs(v) <= 0x1p-52 * fabs(dv))
                         | (swap & (fabs(w) <= 0x1p-52 * fabs(dw)));
            }
            risky = e_in != 0.0 && risky;
        }
        const double dap = sp, dan = sn, dpn = sw;
        const int use = !swap || dan <= dpn;
        int bad = risky || !(dap > 0.0) || !(dan > 0.0);
        if (swap) bad = bad || !(dpn > 0.0) || !(fabs(dan - dpn) > 2.0 * rho * (dan + dpn) + 2.0 * e_abs);
        const double dn = use ? dan : dpn, m = (dap - dn) + margin;
        bad = bad || !(fabs(m) > EMBED_ACCEPT * ((rho + 0x1p-51) * (dap + dn + fabs(margin)) + 2.0 * e_abs));
        value[r] = bad ? NAN : (m > 0.0 ? m : 0.0);
        const double sc = scale ? scale[r] : 1.0;
        if (bad || !(m > 0.0) || sc == 0.0) {  /* no gradient (a flagged row is rewritten by numpy.py) */
            if (ga) memset(ga + r * k, 0, (size_t)k * sizeof(float));
            if (gp) memset(gp + r * k, 0, (size_t)k * sizeof(float));
            if (gn) memset(gn + r * k, 0, (size_t)k * sizeof(float));
            continue;
        }
        if (!ga && !gp && !gn) continue;
        float *gar = ga ? ga + r * k : NULL, *gpr = gp ? gp + r * k : NULL, *gnr = gn ? gn + r * k : NULL;
        if (!two) {  /* p = 1: signs, exact */
            const double cu = use ? 1.0 : 0.0, cw = use ? 0.0 : 1.0;
            for (idx j = 0; j < k; j++) {
                double u = ((double)ar[j] - (double)pr[j]) + e_in, v = ((double)ar[j] - (double)nr[j]) + e_in;
                double w = ((double)pr[j] - (double)nr[j]) + e_in;
                double s1 = (double)((u > 0.0) - (u < 0.0)), s2 = cu * (double)((v > 0.0) - (v < 0.0));
                double s3 = cw * (double)((w > 0.0) - (w < 0.0));
                if (gar) gar[j] = (float)((s1 - s2) * sc);
                if (gpr) gpr[j] = (float)(-(s1 + s3) * sc);
                if (gnr) gnr[j] = (float)((s2 + s3) * sc);
            }
            continue;
        }
        const double ia = 1.0 / dap, cu = use ? 1.0 / dan : 0.0, cw = use ? 0.0 : 1.0 / dpn;
        const double abs_a = tol_abs * (ia + cu), abs_p = tol_abs * (ia + cw), abs_n = tol_abs * (cu + cw);
        int cancel = 0;
        if (gar && !gpr && !gnr) {  /* the common call: the anchor only */
            PRAGMA(omp simd reduction(+ : cancel))
            for (idx j = 0; j < k; j++) {
                double u = ((double)ar[j] - (double)pr[j]) + e_in, v = ((double)ar[j] - (double)nr[j]) + e_in;
                double g1 = u * ia, g2 = v * cu, g = g1 - g2;
                double th = tol_rel * (fabs(g1) + fabs(g2)) + abs_a;
                cancel += (fabs(g) <= th) & (th > 0.0);
                gar[j] = (float)(g * sc);
            }
        } else {
            PRAGMA(omp simd reduction(+ : cancel))
            for (idx j = 0; j < k; j++) {
                double u = ((double)ar[j] - (double)pr[j]) + e_in, v = ((double)ar[j] - (double)nr[j]) + e_in;
                double w = ((double)pr[j] - (double)nr[j]) + e_in;
                double g1 = u * ia, g2 = v * cu, g3 = w * cw;
                double x_a = g1 - g2, x_p = -(g1 + g3), x_n = g2 + g3;
                double th_a = tol_rel * (fabs(g1) + fabs(g2)) + abs_a;
                double th_p = tol_rel * (fabs(g1) + fabs(g3)) + abs_p;
                double th_n = tol_rel * (fabs(g2) + fabs(g3)) + abs_n;
                int c = 0;
                if (gar) { gar[j] = (float)(x_a * sc); c |= (fabs(x_a) <= th_a) & (th_a > 0.0); }
                if (gpr) { gpr[j] = (float)(x_p * sc); c |= (fabs(x_p) <= th_p) & (th_p > 0.0); }
                if (gnr) { gnr[j] = (float)(x_n * sc); c |= (fabs(x_n) <= th_n) & (th_n > 0.0); }
                cancel += c;
            }
        }
        if (cancel) value[r] = NAN;
    }
}

/* rows lo..hi of the cosine embedding loss; y: the row labels (-1 or 1) as doubles; prm: margin.
 * g1, g2: gradients wrt x1 (= a) and x2 (each may be NULL). */
CLONES static void cosine_rows(const float *a, const float *x, const double *y, idx lo, idx hi, idx k,
                               double *value, float *g1, float *g2, const double *scale, const double *prm) {
    const double margin = prm[0], rho = ((double)k + 8.0) * 0x1p-53;
    const double err = 4.0 * rho + 0x1p-52 * (1.0 + fabs(margin)), tol = EMBED_ACCEPT * 2.0 * rho;
    for (idx r = lo; r < hi; r++) {
        const float *ar = a + r * k, *xr = x + r * k;
        double qa = 0.0, qx = 0.0, dot = 0.0;
        PRAGMA(omp simd reduction(+ : qa, qx, dot))
        for (idx j = 0; j < k; j++) {
            double aj = (double)ar[j], xj = (double)xr[j];
            qa += aj * aj;
            qx += xj * xj;
            dot += aj * xj;
        }
        const double norm = sqrt(qa * qx), yr = y[r];
        const int similar = yr == 1.0;
        const double cos = dot / norm, hinge = cos - margin, one_minus = 1.0 - cos;
        int bad = !(norm > 0.0) || !(similar || yr == -1.0)
                  || !(fabs(similar ? one_minus : hinge) > EMBED_ACCEPT * err);
        value[r] = bad ? NAN : similar ? one_minus : (hinge > 0.0 ? hinge : 0.0);
        if (!g1 && !g2) continue;
        const double sc = scale ? scale[r] : 1.0, slope = similar ? -1.0 : (hinge > 0.0 ? 1.0 : 0.0);
        if (bad || slope == 0.0 || sc == 0.0) {
            if (g1) memset(g1 + r * k, 0, (size_t)k * sizeof(float));
            if (g2) memset(g2 + r * k, 0, (size_t)k * sizeof(float));
            continue;
        }
        const double ca = slope * sc / (qa * norm), cx = slope * sc / (qx * norm);
        int cancel = 0;
        float *g1r = g1 ? g1 + r * k : NULL, *g2r = g2 ? g2 + r * k : NULL;
        if (g1r && !g2r) {
            PRAGMA(omp simd reduction(+ : cancel))
            for (idx j = 0; j < k; j++) {
                double aj = (double)ar[j], xj = (double)xr[j];
                double t1 = xj * qa, t2 = dot * aj, num = t1 - t2, th = tol * (fabs(t1) + norm * fabs(aj));
                cancel += (fabs(num) <= th) & (th > 0.0);
                g1r[j] = (float)(num * ca);
            }
        } else {
            PRAGMA(omp simd reduction(+ : cancel))
            for (idx j = 0; j < k; j++) {
                double aj = (double)ar[j], xj = (double)xr[j];
                double t1 = xj * qa, t2 = dot * aj, num = t1 - t2, th = tol * (fabs(t1) + norm * fabs(aj));
                double s1 = aj * qx, s2 = dot * xj, num2 = s1 - s2, th2 = tol * (fabs(s1) + norm * fabs(xj));
                int c = 0;
                if (g1r) { g1r[j] = (float)(num * ca); c |= (fabs(num) <= th) & (th > 0.0); }
                c |= (fabs(num2) <= th2) & (th2 > 0.0);
                g2r[j] = (float)(num2 * cx);
                cancel += c;
            }
        }
        if (cancel) value[r] = NAN;
    }
}

/* Cosine similarity (regression._cosine_similarity; losskit.cosine_similarity): value -cos(t, p) per
 * row, gradient -(t - alpha p) / (|t| |p|), alpha = t.p / |p|^2; float32 (id 2) or float64 (id 3)
 * rows, the gradient written in the input's type, times the row's scale.
 *
 * Error argument. The three sums t.p, t.t, p.p are summed in 8 interleaved lanes with TwoSum (the
 * error terms summed apart, the lanes joined with TwoSum), from exact products: float32 products are
 * exact in double; float64 products are split exactly by one fma (TwoProduct), the low parts added to
 * the lanes' error sums. Each sum is then a pair (hi, lo) within 2^-53 |sum| + (k + 8)^2 2^-104
 * sum |terms| of the exact sum (Ogita, Rump and Oishi's Dot2 bound) -- the same double-length pairs the
 * generic kernel forms with TwoProduct and dd_sum. The value -(hi + lo) / (sqrt(tt) sqrt(pp)) is then
 * within 2^-53 (1 + 1 + 1/2 + 1/2 + 1/2) + (k + 8)^2 2^-104 / |cos| relative of the exact one: below
 * 4 float64 ulps (8 allowed) where |cos| >= (k + 8)^2 2^-52 (float32: the second term below 2^-28
 * where |cos| >= (k + 8)^2 2^-76); nearly orthogonal rows beyond that are handed back. The gradient: alpha as a pair, a_h = d_h /
 * pp_h and a_l = (((d_h - x) - e) + d_l - a_h pp_l) / pp_h with x + e = a_h pp_h exactly (fma);
 * r_i = fma(-a_h, p_i, t_i) - a_l p_i is within 2^-52 |r_i| + 2^-105 |alpha p_i| (one rounding of
 * t_i - a_h p_i, whose size is at most |r_i| + 2^-52 |alpha p_i|), then divided by the norms (three
 * roundings): the generic kernel's accuracy (it too keeps alpha p_i to about 2^-105 where r_i cancels).
 * Rows handed back to numpy.py (value NaN, recomputed by the generic kernel): the nearly orthogonal
 * rows above, a NaN or infinite component (the generic kernel takes an infinite vector's direction), and squared norms outside
 * [2^-900, 2^900] for a non-zero vector (products that under- or overflow; float32 never does). A zero
 * vector gives value 0 and gradient 0, as the generic kernel. */
KINLINE void cossim_row(const void *tv, const void *pv, idx r, idx k, int wide, double *value, void *gv,
                        double sc) {
    const float *tf = (const float *)tv + r * k, *pf = (const float *)pv + r * k;
    const double *td = (const double *)tv + r * k, *pd = (const double *)pv + r * k;
    double dh[8] = {0}, dl[8] = {0}, th[8] = {0}, tl[8] = {0}, ph[8] = {0}, pl[8] = {0};
    double mt[8] = {0}, mp[8] = {0};
    idx j = 0;
    for (; j + 8 <= k; j += 8) {
        PRAGMA(omp simd)
        for (int l = 0; l < 8; l++) {
            double a = wide ? td[j + l] : (double)tf[j + l], b = wide ? pd[j + l] : (double)pf[j + l];
            double x = a * b, y = a * a, z = b * b;
            double s1 = dh[l] + x, v1 = s1 - dh[l], s2 = th[l] + y, v2 = s2 - th[l];
            double s3 = ph[l] + z, v3 = s3 - ph[l];
            double e1 = (dh[l] - (s1 - v1)) + (x - v1), e2 = (th[l] - (s2 - v2)) + (y - v2);
            double e3 = (ph[l] - (s3 - v3)) + (z - v3);
            if (wide) { e1 += fma(a, b, -x); e2 += fma(a, a, -y); e3 += fma(b, b, -z); }
            dh[l] = s1; th[l] = s2; ph[l] = s3;
            dl[l] += e1; tl[l] += e2; pl[l] += e3;
            double fa = fabs(a), fb = fabs(b);
            mt[l] = mt[l] > fa ? mt[l] : fa;
            mp[l] = mp[l] > fb ? mp[l] : fb;
        }
    }
    double d = 0.0, dlo = 0.0, t = 0.0, tlo = 0.0, p = 0.0, plo = 0.0, at = 0.0, ap = 0.0, e;
    for (int l = 0; l < 8; l++) {
        d = two_sum(d, dh[l], &e); dlo += e + dl[l];
        t = two_sum(t, th[l], &e); tlo += e + tl[l];
        p = two_sum(p, ph[l], &e); plo += e + pl[l];
        at = at > mt[l] ? at : mt[l];
        ap = ap > mp[l] ? ap : mp[l];
    }
    for (; j < k; j++) {
        double a = wide ? td[j] : (double)tf[j], b = wide ? pd[j] : (double)pf[j];
        double x = a * b, y = a * a, z = b * b;
        if (wide) { dlo += fma(a, b, -x); tlo += fma(a, a, -y); plo += fma(b, b, -z); }
        d = two_sum(d, x, &e); dlo += e;
        t = two_sum(t, y, &e); tlo += e;
        p = two_sum(p, z, &e); plo += e;
        at = at > fabs(a) ? at : fabs(a);
        ap = ap > fabs(b) ? ap : fabs(b);
    }
    /* normalise the pairs (|lo| <= ulp(hi)/2): TwoSum */
    d = two_sum(d, dlo, &dlo); t = two_sum(t, tlo, &tlo); p = two_sum(p, plo, &plo);
    float *gf = gv ? (float *)gv + r * k : NULL;
    double *gd = gv ? (double *)gv + r * k : NULL;
    if (at == 0.0 || ap == 0.0) {  /* a zero vector (the maxima skip NaN: a row of NaN and zeros
                                      has NaN sums, checked here) */
        if (!(t == t && p == p && d == d)) { *value = NAN; return; }
        *value = 0.0;
        if (gv) memset(wide ? (void *)gd : (void *)gf, 0, (size_t)k * (wide ? 8 : 4));
        return;
    }
    if (!(t >= 0x1p-900 && t <= 0x1p900 && p >= 0x1p-900 && p <= 0x1p900 && d == d)) {
        *value = NAN;  /* NaN, inf, or squared norms out of range: the generic kernel */
        return;
    }
    const double denom = sqrt(t) * sqrt(p), kk = (double)k + 8.0;
    /* nearly orthogonal beyond the bound (|cos| below (k + 8)^2 2^-76 for float32, 2^-52 for float64;
       sum |t_i p_i| <= |t| |p|): the generic kernel */
    if (!(fabs(d) * (wide ? 0x1p52 : 0x1p76) > kk * kk * denom)) { *value = NAN; return; }
    double v = -((d + dlo) / denom);
    *value = v > 1.0 ? 1.0 : (v < -1.0 ? -1.0 : v);
    if (!gv) return;
    if (sc == 0.0) { memset(wide ? (void *)gd : (void *)gf, 0, (size_t)k * (wide ? 8 : 4)); return; }
    const double a_h = d / p, x = a_h * p, ex = fma(a_h, p, -x);
    const double a_l = ((((d - x) - ex) + dlo) - a_h * plo) / p;
    if (wide) {
        const double s = -sc;
        PRAGMA(omp simd)
        for (idx i = 0; i < k; i++) gd[i] = ((fma(-a_h, pd[i], td[i]) - a_l * pd[i]) / denom) * s;
    } else {
        const double c = -sc / denom;
        PRAGMA(omp simd)
        for (idx i = 0; i < k; i++) {
            double b = (double)pf[i];
            gf[i] = (float)((fma(-a_h, b, (double)tf[i]) - a_l * b) * c);
        }
    }
}

CLONES static void cossim_rows(const float *t, const float *p, idx lo, idx hi, idx k, double *value,
                               float *g, const double *scale) {
    for (idx r = lo; r < hi; r++) cossim_row(t, p, r, k, 0, value + r, g, scale ? scale[r] : 1.0);
}

CLONES static void cossim_rows_d(const double *t, const double *p, idx lo, idx hi, idx k, double *value,
                                 double *g, const double *scale) {
    for (idx r = lo; r < hi; r++) cossim_row(t, p, r, k, 1, value + r, g, scale ? scale[r] : 1.0);
}

/* NT-Xent (embedding._ntxent, denominator "negatives") on float32 rows of similarities s, in plain
 * double (id 4). lab: 1 a positive, 2 an excluded entry (where = False), else a negative (the 0/1
 * check ran before); prm: 1/T. With M the largest negative similarity, d_k = (s_k - M) / T,
 * e_k = exp(d_k), S = sum_N e_k >= 1, and for a positive y_p = (M - s_p) / T + log S:
 * value (1/|P|) sum_P softplus(y_p), gradient -sigmoid(y_p) / (|P| T) (positives) and
 * (e_k / S) sum_P sigmoid(y_p) / (|P| T) (negatives), 0 for excluded entries.
 * Error argument: s_k - M and M - s_p are differences of float32 numbers, exact in double (or, with
 * exponents more than 29 bits apart, within 2^-53 relative); times 1/T (itself within 2^-53) each d
 * is within 2^-51.4 |d|, so e_k within 2^-50 relative (kexp 2^-51) wherever it is above 2^-1022 (|d|
 * < 745); S, a sum of k positive terms, within (k + 2) 2^-53 relative, log S within that absolute
 * (S >= 1). y_p is a sum of (M - s_p)/T and log S <= log k: within 2^-51 (|y_p| + 2 log S + 1)
 * absolute, and softplus(y) = max(y, 0) + log1p(exp(-|y|)) has a relative error of at most that
 * absolute error (its derivative over itself is below 1.5) plus 2^-50; sigmoid likewise. So the value,
 * a mean of positive terms, and each gradient element (products and quotients of such terms) are
 * within 2^-40 (k < 2^20, |y_p| < 2^20) of the exact ones, far below a float32 ulp (2^-24);
 * rows whose |y_p| or |d| reach 2^20 (similarities far beyond T 2^20) and rows with a NaN (value or
 * label) are handed back (value NaN: the generic kernel), and so are rows of more than 2^20 entries. A
 * row without positives or without negatives gives 0 (gradient 0), as the generic kernel.
 * work: k doubles (the e_k). */
CLONES static void ntxent_rows(const float *s, const float *lab, idx lo, idx hi, idx k, double *value,
                               float *g, const double *scale, const double *prm, double *work) {
    const double c = prm[0];
    for (idx r = lo; r < hi; r++) {
        const float *sr = s + r * k, *lr = lab + r * k;
        float *gr = g ? g + r * k : NULL;
        const double sc = scale ? scale[r] : 1.0;
        float m = -INFINITY;
        int npos = 0, nneg = 0, nan = 0;
        for (idx j = 0; j < k; j++) {
            float x = sr[j], l = lr[j];
            int pos = l == 1.0f, neg = !pos && l != 2.0f;
            nan |= (x != x) | (l != l);
            npos += pos; nneg += neg;
            if (neg && x > m) m = x;
        }
        if (nan || k > (1 << 20) || (npos && nneg && !(fabs((double)m) * c < 0x1p20))) {
            value[r] = NAN;
            if (gr) memset(gr, 0, (size_t)k * sizeof(float));
            continue;
        }
        if (npos == 0 || nneg == 0) {
            value[r] = 0.0;
            if (gr) memset(gr, 0, (size_t)k * sizeof(float));
            continue;
        }
        const double md = (double)m;
        double total = 0.0;
        PRAGMA(omp simd reduction(+ : total))
        for (idx j = 0; j < k; j++) {
            float l = lr[j];
            int neg = l != 1.0f && l != 2.0f;
            double e = kexp(((double)sr[j] - md) * c);
            e = neg ? e : 0.0;
            work[j] = e;
            total += e;
        }
        const double log_s = klog(total);
        double acc = 0.0, sig = 0.0;
        int far = 0;
        for (idx j = 0; j < k; j++) {  /* the positives (few): one at a time */
            if (lr[j] != 1.0f) continue;
            double y = (md - (double)sr[j]) * c + log_s;
            double ey = kexp(-fabs(y));
            double sg = y > 0.0 ? 1.0 / (1.0 + ey) : ey / (1.0 + ey);
            far += !(fabs(y) < 0x1p20);
            acc += (y > 0.0 ? y : 0.0) + klog1p(ey);
            sig += sg;
            work[j] = sg;  /* a positive's sigmoid where its e_k would be (0) */
        }
        if (far) {
            value[r] = NAN;
            if (gr) memset(gr, 0, (size_t)k * sizeof(float));
            continue;
        }
        const double inv = 1.0 / (double)npos;
        value[r] = acc * inv;
        if (!gr) continue;
        if (sc == 0.0) { memset(gr, 0, (size_t)k * sizeof(float)); continue; }
        const double gpos = -c * inv * sc, gneg = sig * c * inv * sc / total;
        PRAGMA(omp simd)
        for (idx j = 0; j < k; j++) {
            float l = lr[j];
            double v = l == 1.0f ? work[j] * gpos : (l == 2.0f ? 0.0 : work[j] * gneg);
            gr[j] = (float)v;
        }
    }
}

/* Circle loss (embedding._circle, Keras's form) on float32 rows of similarities s, in plain double
 * (id 5). lab as for ntxent; prm: gamma, margin m >= 0. s' = min(s, 1), d = 1 - s' (exact in double but
 * for |s| < 2^-29, then within 2^-53), t_j = gamma (d + m)(d - m) (positives), gamma max(s' + m, 0)
 * (s' - m) (negatives): each within 2^-51 |t_j|. With M_P, M_N the maxima of t over P and N,
 * e_j = exp(t_j - M) (M the maximum of the entry's set), S_P, S_N >= 1 their sums, A = M_P + M_N +
 * log S_P + log S_N: the exponents t_j - M are within 2^-51 (|t_j| + |M|) <= 2^-50 B, B = |M_P| + |M_N|
 * + 1 (where e_j matters, |t_j - M| < 745: |t_j| <= |M| + 745), A within 2^-50 (B + 2 log k + 1).
 * value softplus(A) (relative error at most 1.5 times A's absolute error, plus 2^-50), gradient
 * sigmoid(A) (e_j / S) dt_j/ds_j, dt/ds = -2 gamma d (positives), 2 gamma s on (-m, 1) (negatives; -gamma
 * m at s = -m, gamma at s = 1, 0 beyond): within 2^-47 (B + 2 log k + 800) relative. Accepted when that
 * is below 2^-28 (B < 2^18: similarities below about 45 in magnitude at gamma 80; cosine similarities
 * always), else the row is handed back (value NaN: the generic kernel), as rows with a NaN and rows of
 * more than 2^20 entries. A row without positives or without negatives gives 0 (gradient 0).
 * work: k doubles (the e_j). */
CLONES static void circle_rows(const float *s, const float *lab, idx lo, idx hi, idx k, double *value,
                               float *g, const double *scale, const double *prm, double *work) {
    const double gamma = prm[0], mg = prm[1];
    for (idx r = lo; r < hi; r++) {
        const float *sr = s + r * k, *lr = lab + r * k;
        float *gr = g ? g + r * k : NULL;
        const double sc = scale ? scale[r] : 1.0;
        double mp = -INFINITY, mn = -INFINITY;
        int npos = 0, nneg = 0, nan = 0;
        for (idx j = 0; j < k; j++) {
            float x = sr[j], l = lr[j];
            int pos = l == 1.0f, neg = !pos && l != 2.0f;
            nan |= (x != x) | (l != l);
            npos += pos; nneg += neg;
            double sp = x < 1.0f ? (double)x : 1.0, d = 1.0 - sp;
            double a = sp + mg;
            double t = pos ? gamma * ((d + mg) * (d - mg)) : gamma * ((a > 0.0 ? a : 0.0) * (sp - mg));
            work[j] = t;
            if (pos && t > mp) mp = t;
            if (neg && t > mn) mn = t;
        }
        if (nan || k > (1 << 20)) {
            value[r] = NAN;
            if (gr) memset(gr, 0, (size_t)k * sizeof(float));
            continue;
        }
        if (npos == 0 || nneg == 0) {
            value[r] = 0.0;
            if (gr) memset(gr, 0, (size_t)k * sizeof(float));
            continue;
        }
        if (!(fabs(mp) + fabs(mn) < 0x1p18)) {
            value[r] = NAN;
            if (gr) memset(gr, 0, (size_t)k * sizeof(float));
            continue;
        }
        double tp = 0.0, tn = 0.0;
        PRAGMA(omp simd reduction(+ : tp, tn))
        for (idx j = 0; j < k; j++) {
            float l = lr[j];
            int pos = l == 1.0f, neg = !pos && l != 2.0f;
            double e = kexp(work[j] - (pos ? mp : mn));
            e = (pos | neg) ? e : 0.0;
            work[j] = e;
            tp += pos ? e : 0.0;
            tn += neg ? e : 0.0;
        }
        const double A = (mp + mn) + (klog(tp) + klog(tn));
        const double ea = kexp(-fabs(A));
        value[r] = (A > 0.0 ? A : 0.0) + klog1p(ea);
        if (!gr) continue;
        if (sc == 0.0) { memset(gr, 0, (size_t)k * sizeof(float)); continue; }
        const double sg = (A > 0.0 ? 1.0 / (1.0 + ea) : ea / (1.0 + ea)) * sc;
        const double wp = sg / tp, wn = sg / tn;
        PRAGMA(omp simd)
        for (idx j = 0; j < k; j++) {
            float l = lr[j];
            double x = (double)sr[j];
            int pos = l == 1.0f, neg = !pos && l != 2.0f;
            double sp = x < 1.0 ? x : 1.0, d = 1.0 - sp;
            double dneg = (x > -mg && x < 1.0) ? 2.0 * gamma * x : 0.0;
            dneg = x == -mg ? -gamma * mg : dneg;
            dneg = x == 1.0 ? gamma : dneg;
            double v = pos ? work[j] * wp * (-2.0 * gamma * d) : (neg ? work[j] * wn * dneg : 0.0);
            gr[j] = (float)v;
        }
    }
}

/* Double-length helpers for the float64 embedding kernels (embedding.py's _double pairs, with fma):
 * each result a normalised pair (hi, lo), |lo| <= ulp(hi)/2. */
KINLINE double fast_two_sum(double a, double b, double *e) {
    double s = a + b;
    *e = b - (s - a);
    return s;
}
/* (ah + al)(bh + bl) within 2^-104 relative (the al bl term dropped) */
KINLINE double ddk_mul(double ah, double al, double bh, double bl, double *lo) {
    double p = ah * bh, e = fma(ah, bh, -p) + (ah * bl + al * bh);
    return fast_two_sum(p, e, lo);
}
/* sqrt(h + l), h > 0: one Newton correction with the exact square (fma) */
KINLINE double ddk_sqrt(double h, double l, double *lo) {
    double sq = sqrt(h), r = (fma(-sq, sq, h) + l) / (2.0 * sq);
    return fast_two_sum(sq, r, lo);
}
/* (ah + al) / (bh + bl): one correction with the remainder (fma) */
KINLINE double ddk_div(double ah, double al, double bh, double bl, double *lo) {
    double q = ah / bh, r = (fma(-q, bh, ah) + al) - q * bl;
    return fast_two_sum(q, r / bh, lo);
}

/* Cosine embedding loss on float64 rows (id 6; cosine_rows' float64 twin, embedding._cosine_embedding's
 * double-length formula with fma): x1.x1, x2.x2 and x1.x2 as pairs (TwoProduct by fma, TwoSum in 8
 * lanes: within 2^-104 (k + 8)^2 of sum |terms|, cossim_row's bound), cos = dot / sqrt(qa qx) as a pair
 * (products, square root and quotient each within about 2^-104 relative), then 1 - cos and cos - margin
 * by TwoSum from the pair: each within 2^-53 of itself plus about 2^-100 (k + 8)^2 absolute; a row whose
 * |1 - cos| (y = 1) or |cos - margin| (y = -1) is below 2^-70 (k + 8)^2 is handed back (value NaN,
 * the generic kernel), so the value is within 0.5 ulp + 2^-30 ulp. Gradient: the numerator
 * x2_i qa - dot x1_i (d cos/d x1; x1_i qx - dot x2_i for x2) from exact products (fma) and the pairs'
 * low parts, within 2^-53 |num| + 2^-104 (|x2_i qa| + |dot x1_i|) (the generic kernel's accuracy where
 * it cancels); divided by qa_h |x1||x2| (the norm from the pair: three roundings): within 3 ulp,
 * times slope and scale (exact, then one rounding). A numerator below 2^-48 of its two terms (where
 * 2^-104 of them could exceed 2 ulps of it: vectors parallel to rounding) hands the row back. Also handed back: a zero vector, squared norms
 * outside [2^-900, 2^900], a NaN or infinite component, a label other than -1 and 1. */
CLONES static void cosine_rows_d(const double *a, const double *x, const double *y, idx lo, idx hi, idx k,
                                 double *value, double *g1, double *g2, const double *scale,
                                 const double *prm) {
    const double margin = prm[0], kk = (double)k + 8.0, tiny = kk * kk * 0x1p-70;
    for (idx r = lo; r < hi; r++) {
        const double *ar = a + r * k, *xr = x + r * k;
        double dh[8] = {0}, dl[8] = {0}, th[8] = {0}, tl[8] = {0}, ph[8] = {0}, pl[8] = {0};
        idx j = 0;
        for (; j + 8 <= k; j += 8) {
            PRAGMA(omp simd)
            for (int l = 0; l < 8; l++) {
                double u = ar[j + l], v = xr[j + l];
                double p1 = u * v, p2 = u * u, p3 = v * v;
                double s1 = dh[l] + p1, v1 = s1 - dh[l], s2 = th[l] + p2, v2 = s2 - th[l];
                double s3 = ph[l] + p3, v3 = s3 - ph[l];
                dl[l] += ((dh[l] - (s1 - v1)) + (p1 - v1)) + fma(u, v, -p1);
                tl[l] += ((th[l] - (s2 - v2)) + (p2 - v2)) + fma(u, u, -p2);
                pl[l] += ((ph[l] - (s3 - v3)) + (p3 - v3)) + fma(v, v, -p3);
                dh[l] = s1; th[l] = s2; ph[l] = s3;
            }
        }
        double dot = 0.0, dlo = 0.0, qa = 0.0, qalo = 0.0, qx = 0.0, qxlo = 0.0, e;
        for (int l = 0; l < 8; l++) {
            dot = two_sum(dot, dh[l], &e); dlo += e + dl[l];
            qa = two_sum(qa, th[l], &e); qalo += e + tl[l];
            qx = two_sum(qx, ph[l], &e); qxlo += e + pl[l];
        }
        for (; j < k; j++) {
            double u = ar[j], v = xr[j], p1 = u * v, p2 = u * u, p3 = v * v;
            dlo += fma(u, v, -p1); qalo += fma(u, u, -p2); qxlo += fma(v, v, -p3);
            dot = two_sum(dot, p1, &e); dlo += e;
            qa = two_sum(qa, p2, &e); qalo += e;
            qx = two_sum(qx, p3, &e); qxlo += e;
        }
        dot = two_sum(dot, dlo, &dlo);
        qa = two_sum(qa, qalo, &qalo);
        qx = two_sum(qx, qxlo, &qxlo);
        const double yr = y[r];
        const int similar = yr == 1.0;
        int bad = !(qa >= 0x1p-900 && qa <= 0x1p900 && qx >= 0x1p-900 && qx <= 0x1p900 && dot == dot)
                  || !(similar || yr == -1.0);
        double nl = 0.0, nh = 1.0, cl = 0.0, ch = 0.0, v = 0.0, hinge = 0.0;
        if (!bad) {
            double pq_l, pq = ddk_mul(qa, qalo, qx, qxlo, &pq_l);
            nh = ddk_sqrt(pq, pq_l, &nl);
            ch = ddk_div(dot, dlo, nh, nl, &cl);
            double om_l, om = two_sum(1.0, -ch, &om_l), hg_l, hg = two_sum(ch, -margin, &hg_l);
            v = om + (om_l - cl);
            hinge = hg + (hg_l + cl);
            bad = !(fabs(similar ? v : hinge) > tiny);
        }
        value[r] = bad ? NAN : similar ? v : (hinge > 0.0 ? hinge : 0.0);
        if (!g1 && !g2) continue;
        const double sc = scale ? scale[r] : 1.0, slope = similar ? -1.0 : (hinge > 0.0 ? 1.0 : 0.0);
        double *g1r = g1 ? g1 + r * k : NULL, *g2r = g2 ? g2 + r * k : NULL;
        if (bad || slope == 0.0 || sc == 0.0) {
            if (g1r) memset(g1r, 0, (size_t)k * sizeof(double));
            if (g2r) memset(g2r, 0, (size_t)k * sizeof(double));
            continue;
        }
        const double da = qa * nh, dx = qx * nh;
        int cancel = 0;
        if (g1r) {
            PRAGMA(omp simd reduction(+ : cancel))
            for (idx i = 0; i < k; i++) {
                double u = ar[i], w = xr[i];
                double p1 = w * qa, e1 = fma(w, qa, -p1), p2 = dot * u, e2 = fma(dot, u, -p2);
                double ee, s = two_sum(p1, -p2, &ee);
                double num = s + (((ee + e1) - e2) + (w * qalo - dlo * u));
                cancel += fabs(num) <= 0x1p-48 * (fabs(p1) + fabs(p2));
                g1r[i] = (num / da) * slope * sc;
            }
        }
        if (g2r) {
            PRAGMA(omp simd reduction(+ : cancel))
            for (idx i = 0; i < k; i++) {
                double u = ar[i], w = xr[i];
                double p1 = u * qx, e1 = fma(u, qx, -p1), p2 = dot * w, e2 = fma(dot, w, -p2);
                double ee, s = two_sum(p1, -p2, &ee);
                double num = s + (((ee + e1) - e2) + (u * qxlo - dlo * w));
                cancel += fabs(num) <= 0x1p-48 * (fabs(p1) + fabs(p2));
                g2r[i] = (num / dx) * slope * sc;
            }
        }
        if (cancel) value[r] = NAN;  /* parallel to rounding: the generic kernel (its accuracy) */
    }
}

/* Triplet margin loss on float64 rows, p = 2 (id 7; triplet_rows' float64 twin for p = 2, eps in the
 * difference or in the sum, with or without the swap; embedding._pnorm_distance's double-length formula
 * with fma). u = a - x (+ eps) as an exact pair (TwoSum, then eps by TwoSum), u^2 as a pair (fma,
 * 2 u_h u_l), summed in 8 TwoSum lanes (error terms apart): the sum of squares within 2^-104 (k + 8)^2
 * relative (non-negative terms), D = sqrt as a pair (one Newton step with the exact square): within
 * about 2^-103 (k + 8)^2 relative. m = (D(a,p) - D(a,n)) + margin by TwoSum from the pairs: within
 * 2^-53 |m| + 2^-102 (k + 8)^2 (D(a,p) + D(a,n) + |margin|); a row with |m| below 2^-60 of that sum
 * is handed back (a hinge at 0: the generic kernel's half slope), and so is a swap whose two distances
 * agree to 2^-60. Gradients: each term u_i / D as a pair (one correction with the remainder by fma:
 * within 2^-100 relative), the two terms of an element subtracted as pairs and rounded once, times the
 * scale (a second rounding): within 1 ulp plus 2^-100 of the terms, so a row with an element below
 * 2^-46 of its two terms (where that could exceed 2^-54 of it) is handed back. Also handed back: a zero distance, sums of squares outside
 * [2^-900, 2^900] (products that under- or overflow), NaN or infinite components. */
KINLINE double tri_diff(double a, double x, double eps, double *lo) {
    double e, h = two_sum(a, -x, &e);
    if (eps != 0.0) {
        double e2, h2 = two_sum(h, eps, &e2);
        return fast_two_sum(h2, e2 + e, lo);
    }
    *lo = e;
    return h;
}

KINLINE double tri_dist(const double *x, const double *y, idx k, double eps, double sum_eps,
                        double *lo_out) {
    double sh[8] = {0}, sl[8] = {0};
    idx j = 0;
    for (; j + 8 <= k; j += 8) {
        PRAGMA(omp simd)
        for (int l = 0; l < 8; l++) {
            double ul, uh = tri_diff(x[j + l], y[j + l], eps, &ul);
            double q = uh * uh, qe = fma(uh, uh, -q) + 2.0 * uh * ul;
            double s = sh[l] + q, v = s - sh[l];
            sl[l] += ((sh[l] - (s - v)) + (q - v)) + qe;
            sh[l] = s;
        }
    }
    double t = 0.0, tl = 0.0, e;
    for (int l = 0; l < 8; l++) { t = two_sum(t, sh[l], &e); tl += e + sl[l]; }
    for (; j < k; j++) {
        double ul, uh = tri_diff(x[j], y[j], eps, &ul);
        double q = uh * uh;
        tl += fma(uh, uh, -q) + 2.0 * uh * ul;
        t = two_sum(t, q, &e); tl += e;
    }
    t = two_sum(t, tl, &tl);
    if (sum_eps != 0.0) { t = two_sum(t, sum_eps, &e); tl += e; t = fast_two_sum(t, tl, &tl); }
    if (!(t >= 0x1p-900 && t <= 0x1p900)) { *lo_out = 0.0; return NAN; }
    return ddk_sqrt(t, tl, lo_out);
}

CLONES static void triplet_rows_d(const double *a, const double *pos, const double *neg, idx lo, idx hi,
                                  idx k, double *value, double *ga, double *gp, double *gn,
                                  const double *scale, const double *prm) {
    const double margin = prm[0], eps = prm[2];
    const int swap = prm[3] != 0.0, sum_eps = prm[4] != 0.0;
    const double e_in = sum_eps ? 0.0 : eps, e_sum = sum_eps ? eps : 0.0;
    for (idx r = lo; r < hi; r++) {
        const double *ar = a + r * k, *pr = pos + r * k, *nr = neg + r * k;
        double *gar = ga ? ga + r * k : NULL, *gpr = gp ? gp + r * k : NULL, *gnr = gn ? gn + r * k : NULL;
        double apl, aph = tri_dist(ar, pr, k, e_in, e_sum, &apl);
        double anl, anh = tri_dist(ar, nr, k, e_in, e_sum, &anl);
        double pnl = 0.0, pnh = 0.0;
        int bad = !(aph > 0.0) || !(anh > 0.0), use = 1;
        if (swap && !bad) {
            pnh = tri_dist(pr, nr, k, e_in, e_sum, &pnl);
            double el, eh = two_sum(anh, -pnh, &el);
            el += anl - pnl;
            bad = !(pnh > 0.0) || !(fabs(eh + el) > 0x1p-60 * (anh + pnh));
            use = (eh + el) < 0.0;
        }
        double dnh = use ? anh : pnh, dnl = use ? anl : pnl, m = 0.0;
        if (!bad) {
            double e1, h1 = two_sum(aph, -dnh, &e1), e2, h2 = two_sum(h1, margin, &e2);
            m = h2 + (e2 + (e1 + (apl - dnl)));
            bad = !(fabs(m) > 0x1p-60 * (aph + dnh + fabs(margin)));
        }
        value[r] = bad ? NAN : (m > 0.0 ? m : 0.0);
        const double sc = scale ? scale[r] : 1.0;
        if (bad || !(m > 0.0) || sc == 0.0) {
            if (gar) memset(gar, 0, (size_t)k * sizeof(double));
            if (gpr) memset(gpr, 0, (size_t)k * sizeof(double));
            if (gnr) memset(gnr, 0, (size_t)k * sizeof(double));
            continue;
        }
        if (!gar && !gpr && !gnr) continue;
        const double cu = use ? 1.0 : 0.0, cw = use ? 0.0 : 1.0;
        const double wh = use ? 1.0 : pnh, wl = use ? 0.0 : pnl;  /* D(p, n), unused when not swapped */
        int cancel = 0;
        PRAGMA(omp simd reduction(+ : cancel))
        for (idx j = 0; j < k; j++) {
            double ul, uh = tri_diff(ar[j], pr[j], e_in, &ul);
            double vl, vh = tri_diff(ar[j], nr[j], e_in, &vl);
            double xl, xh = tri_diff(pr[j], nr[j], e_in, &xl);
            double q1l, q1 = ddk_div(uh, ul, aph, apl, &q1l);            /* dD(a,p)/da */
            double q2l, q2 = ddk_div(vh, vl, anh, anl, &q2l);            /* dD(a,n)/da */
            double q3l, q3 = ddk_div(xh, xl, wh, wl, &q3l);              /* dD(p,n)/dp */
            q2 *= cu; q2l *= cu; q3 *= cw; q3l *= cw;
            double ea, sa = two_sum(q1, -q2, &ea), xa = sa + (ea + (q1l - q2l));
            double ep, spp = two_sum(-q1, -q3, &ep), xp = spp + (ep + (-q1l - q3l));
            double en, sn = two_sum(q2, q3, &en), xn = sn + (en + (q2l + q3l));
            int c = 0;
            if (gar) { gar[j] = xa * sc; c |= fabs(xa) <= 0x1p-46 * (fabs(q1) + fabs(q2)) && q2 != 0.0; }
            if (gpr) { gpr[j] = xp * sc; c |= fabs(xp) <= 0x1p-46 * (fabs(q1) + fabs(q3)) && q3 != 0.0; }
            if (gnr) gnr[j] = xn * sc;
            cancel += c;
        }
        if (cancel) value[r] = NAN;
    }
}

/* ---- ntxent and circle on float64 rows (ids 8, 9; issue 8) ------------------------------------
 * The float32 kernels above (ntxent_rows, circle_rows) evaluate in plain double: their errors, up to
 * 2^-40 relative, are far below a float32 ulp but thousands of float64 ulps (an exponent d rounded
 * to 2^-53 |d| is a relative error |d| 2^-53 of exp(d), and |d| reaches 745). The float64 twins
 * follow the generic kernels (embedding._ntxent, embedding._circle): the exponents as double-length
 * pairs (TwoSum, fma), the row sums of exponentials compensated (acc_sum_pair), the log of the sum
 * and everything after it (per positive for ntxent, per row for circle: a few elements) in double
 * length; the elements' own exponentials stay in plain double (kexp_pair: 1.5 u + 2^-55, u = 2^-53),
 * the one plain rounding per element that the bounds below carry. A relative error of n u is within
 * n ulp (ulp(v) > u |v|). */

/* log1p(eh + el) for 0 <= eh <= 1, |el| <= u eh, as a pair within 0.2 u relative: 2 atanh(s) with
 * s = e / (2 + e) in [0, 1/3] as a pair (2 + e by TwoSum, the quotient by ddk_div: 2^-104), 2 atanh(s)
 * = 2 s + 2 s z (1/3 + z/5 + ... + z^16/35), z = s^2 <= 1/9 (truncation below 2^-58 relative); the
 * tail, at most 0.04 of the result, has a relative error of a few u from its roundings (positive
 * terms): 0.15 u of the result. No table and no branch: the callers' loops stay vectorisable. */
KINLINE double klog1p_dd(double eh, double el, double *lo) {
    double dl, dh = two_sum(2.0, eh, &dl);
    double sl, sh = ddk_div(eh, el, dh, dl + el, &sl);
    double z = sh * sh, q = 1.0 / 35.0;
    q = q * z + 1.0 / 33.0;
    q = q * z + 1.0 / 31.0;
    q = q * z + 1.0 / 29.0;
    q = q * z + 1.0 / 27.0;
    q = q * z + 1.0 / 25.0;
    q = q * z + 1.0 / 23.0;
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
    return fast_two_sum(2.0 * sh, 2.0 * sl + (2.0 * sh) * z * q, lo);
}

/* softplus(y) and sigmoid(y) of a pair y = yh + yl (|yl| <= ulp(yh)), each as a pair within 0.3 u
 * relative of the function at the pair (plus 2^-1074 absolute where it is subnormal; the callers
 * hand such rows back): e = exp(-|y|) by kexp_dd (2^-57) times 1 - sign(yh) yl (the dropped yl^2/2 is
 * below 2^-86 for |y| < 746), softplus = max(y, 0) + log1p(e) (klog1p_dd, 0.2 u; the sum of two
 * non-negative pairs), sigmoid = 1/(1 + e) or e/(1 + e) (ddk_div of pairs, about 2^-104).
 * Branch-free (selects), for SIMD loops. */
KINLINE void softplus_sigmoid_dd(double yh, double yl, double *sp, double *sp_lo, double *sg,
                                 double *sg_lo) {
    const int up = yh > 0.0;
    double el, eh = kexp_dd(-fabs(yh), &el);
    el -= eh * (up ? yl : -yl);
    double ll, lh = klog1p_dd(eh, el, &ll);
    double e, h = two_sum(up ? yh : 0.0, lh, &e);
    *sp = fast_two_sum(h, e + ((up ? yl : 0.0) + ll), sp_lo);
    double dl, dh = two_sum(1.0, eh, &dl);
    dl += el;
    *sg = ddk_div(up ? 1.0 : eh, up ? 0.0 : el, dh, dl, sg_lo);
}

/* NT-Xent on float64 rows (id 8; ntxent_rows' float64 twin, embedding._ntxent's formula): lab as for
 * id 4 (float64 labels: 1 a positive, 2 excluded, else a negative); prm: 1/T as a pair (c_h, c_l,
 * within 2^-106 relative). M = the largest negative similarity; for a negative z_k = (s_k - M)(c_h +
 * c_l) as a pair (s_k - M an exact TwoSum pair, the product by fma: within 2^-104 |z_k|, below
 * 2^-94 where e_k matters), e_k = kexp_pair(z_k) within 1.75 u (M's own term exactly 1); S = sum_N
 * e_k >= 1 as a pair (acc_sum_pair: 2^-66 relative for k <= 2^20): within 1.75 u relative, so
 * L = log S (klog_pair plus S_lo/S_hi: 2^-66) within 1.75 u + 2^-65 absolute. For a positive p,
 * y_p = (M - s_p)(c_h + c_l) + L as a pair (TwoSum; the product's error 2^-104 |y_p - L| is
 * negligible wherever softplus and sigmoid are not simply y_p, 1 or 0): its absolute error delta is
 * L's, 1.75 u + 2^-65.
 * - value (1/|P|) sum_P softplus(y_p): softplus's relative error from delta is at most delta times
 *   sigmoid/softplus <= 1, plus 0.3 u (softplus_sigmoid_dd); the terms are summed as pairs and the
 *   mean rounded once: within 1.75 + 0.3 + 1 = 3.05 u.
 * - positive's gradient -sigmoid(y_p) F, F = c sc / |P| as a pair (2^-104): sigmoid's relative
 *   error from delta is (1 - sigmoid) delta <= 1.75 u, plus 0.3 u, plus the final rounding: 3.05 u.
 * - negative's gradient e_k W, W = F sum_P sigmoid(y_p) / S formed in pairs and rounded once (1 u):
 *   S's relative error eps moves L by eps, so sigmoid(y_p)/S by -sigmoid(y_p) eps: within 1.75 u
 *   together, plus 0.3 u; e_k 1.75 u; the product 1 u: within 5.8 u.
 * Handed back (value NaN: the generic kernel): a row with a NaN or infinite similarity or a NaN label,
 * a positive whose (M - s_p)/T overflows, a y_p below -700 (softplus, sigmoid near the subnormal range),
 * a negative with e_k below 2^-1022 (absolute error 2^-1074) where |W| > 1/8, or more than 2^20
 * entries. A row without positives or without negatives gives 0 (gradient 0), as the generic kernel.
 * work: 7k doubles (the e_k; the positives' similarities, indices and pairs). */
CLONES static void ntxent_rows_d(const double *s, const double *lab, idx lo, idx hi, idx k, double *value,
                                 double *g, const double *scale, const double *prm, double *work) {
    const double ch = prm[0], cl = prm[1];
    for (idx r = lo; r < hi; r++) {
        const double *sr = s + r * k, *lr = lab + r * k;
        double *gr = g ? g + r * k : NULL;
        const double sc = scale ? scale[r] : 1.0;
        double m = -INFINITY;
        int npos = 0, nneg = 0, nan = 0;
        PRAGMA(omp simd reduction(| : nan) reduction(+ : npos, nneg) reduction(max : m))
        for (idx j = 0; j < k; j++) {
            double x = sr[j], l = lr[j];
            int pos = l == 1.0, neg = !pos && l != 2.0;
            nan |= ((x - x) != 0.0) | (l != l);
            npos += pos; nneg += neg;
            m = neg && x > m ? x : m;
        }
        int bad = nan || k > (1 << 20) || !(ch < INFINITY);
        if (bad || npos == 0 || nneg == 0) {
            value[r] = bad ? NAN : 0.0;
            if (gr) memset(gr, 0, (size_t)k * sizeof(double));
            continue;
        }
        PRAGMA(omp simd)
        for (idx j = 0; j < k; j++) {
            double l = lr[j];
            int neg = l != 1.0 && l != 2.0;
            double dl, dh = two_sum(sr[j], -m, &dl);
            double z = dh * ch, zl = fma(dh, ch, -z) + (dh * cl + dl * ch);
            double e = kexp_pair(z, zl);
            work[j] = neg ? e : 0.0;
        }
        double sl, sh = acc_sum_pair(work, k, &sl);
        double Ll, Lh = klog_pair(sh, &Ll);
        Ll += sl / sh;
        /* F = c sc / |P| as a pair: sc / |P| with its remainder (fma), times c */
        const double np = (double)npos, q = sc / np, ql = fma(-q, np, sc) / np;
        double Fl, Fh = ddk_mul(ch, cl, q, ql, &Fl);
        /* the positives, gathered (similarity and index), then in double length in one SIMD loop */
        double *ps = work + k, *pj = work + 2 * k, *sp = work + 3 * k, *spl = work + 4 * k;
        double *sg = work + 5 * k, *sgl = work + 6 * k;
        idx n = 0;
        for (idx j = 0; j < k; j++) {  /* branch-free: labels come in any order */
            ps[n] = sr[j]; pj[n] = (double)j;
            n += lr[j] == 1.0;
        }
        int far = 0;
        PRAGMA(omp simd reduction(| : far))
        for (idx i = 0; i < n; i++) {
            double dl, dh = two_sum(m, -ps[i], &dl);
            double ah = dh * ch, al = fma(dh, ch, -ah) + (dh * cl + dl * ch);
            double yl, yh = two_sum(ah, Lh, &yl);
            yh = fast_two_sum(yh, yl + (al + Ll), &yl);
            far |= !(fabs(ah) < INFINITY) | !(yh > -700.0);
            softplus_sigmoid_dd(yh, yl, sp + i, spl + i, sg + i, sgl + i);
        }
        double vl, vh = acc_sum_pair(sp, n, &vl), gl, gh = acc_sum_pair(sg, n, &gl), vl2 = 0.0, gl2 = 0.0;
        PRAGMA(omp simd reduction(+ : vl2, gl2))
        for (idx i = 0; i < n; i++) { vl2 += spl[i]; gl2 += sgl[i]; }
        vl += vl2; gl += gl2;
        for (idx i = 0; i < n; i++)  /* each positive's gradient into its (zero) e_k slot */
            work[(idx)pj[i]] = -(sg[i] * Fh + (sg[i] * Fl + sgl[i] * Fh));
        bad |= far;
        if (bad) {
            value[r] = NAN;
            if (gr) memset(gr, 0, (size_t)k * sizeof(double));
            continue;
        }
        double v = vh / np;
        value[r] = v + (fma(-v, np, vh) + vl) / np;
        if (!gr) continue;
        if (sc == 0.0) { memset(gr, 0, (size_t)k * sizeof(double)); continue; }
        double wl, wh = ddk_mul(gh, gl, Fh, Fl, &wl);
        const double W = ddk_div(wh, wl, sh, sl, &wl), aw = fabs(W);
        int tiny = 0;
        PRAGMA(omp simd reduction(+ : tiny))
        for (idx j = 0; j < k; j++) {
            double l = lr[j], x = work[j];
            int pos = l == 1.0;
            tiny += !pos & (l != 2.0) & (x < 0x1p-1022) & (aw > 0.125);
            gr[j] = pos ? x : x * W;
        }
        if (tiny) value[r] = NAN;
    }
}

/* Circle loss on float64 rows (id 9; circle_rows' float64 twin, embedding._circle's formula): lab as
 * for id 8; prm: gamma, margin m >= 0. s' = min(s, 1), d = 1 - s' an exact pair (TwoSum); u = d
 * (positives) or s' (negatives), t_j = gamma (u + m)(u - m) with u +- m pairs (TwoSum), their product
 * (ddk_mul) and gamma's by fma: within 2^-100 (|t_j| + gamma (1 + m)^2) absolute (u - m may cancel; the
 * rounding of its low part is then 2^-105 of u), t_j = 0 for a negative with s' + m < 0. With M_P, M_N
 * the largest high parts over P and N, e_j = kexp_pair((t_j - M) as a pair): as rows with
 * |M_P| or gamma (1 + m)^2 at or above 2^40 are handed back (t_j >= -gamma m^2 for every entry, so
 * |t_j| <= max(|M_P|, gamma (1 + m)^2)), the exponents are within 2^-59 and e_j within 1.8 u. S_P, S_N
 * (acc_sum_pair; >= 1 - 2^-52, the top's term exp(t_lo)) within 1.8 u relative; their logs (klog_pair
 * and the low parts) within 1.8 u + 2^-65 absolute; A = M_P + M_N + log S_P + log S_N as a pair
 * (TwoSum; the low parts' roundings below 2^-104 (|M_P| + |M_N| + 30) < 2^-62): within
 * delta = 3.6 u + 2^-61 absolute.
 * - value softplus(A): relative error at most delta (sigmoid/softplus <= 1) + 0.3 u
 *   (softplus_sigmoid_dd) + 1 u (the rounding of the pair): within 4.9 u.
 * - gradient sigmoid(A) (e_j / S) dt_j/ds_j sc: W_P = -2 gamma sc sigmoid(A) / S_P and W_N =
 *   2 gamma sc sigmoid(A) / S_N formed in pairs and rounded once (1 u); the relative errors eps_P,
 *   eps_N of S_P, S_N move sigmoid(A) / S_P by (1 - sigmoid) (eps_P + eps_N) - eps_P, at most 1.8 u
 *   (and 0.3 u more); times d (fma with the pair: one rounding) for a positive, times s (exact) for
 *   a negative on (-m, 1), -m/2 at s = -m, 1/2 at s = 1 (exact halvings), 0 beyond (1 u); times e_j
 *   (1.8 u, and 1 u): within 1.8 + 0.3 + 1 + 1 + 1.8 + 1 = 6.9 u.
 * Handed back (value NaN: the generic kernel), besides the range above: a row with a NaN or infinite
 * similarity or a NaN label, A below -700 (softplus, sigmoid near the subnormal range), an e_j below
 * 2^-1022 (absolute error 2^-1074) whose factor exceeds 1/8, more than 2^20 entries. A row without
 * positives or without negatives gives 0 (gradient 0), as the generic kernel.
 * work: 2k doubles (the t_j pairs, then e_j over P and over N). */
CLONES static void circle_rows_d(const double *s, const double *lab, idx lo, idx hi, idx k, double *value,
                                 double *g, const double *scale, const double *prm, double *work) {
    const double gamma = prm[0], mg = prm[1], span = gamma * (1.0 + mg) * (1.0 + mg);
    double *th = work, *tl = work + k;
    for (idx r = lo; r < hi; r++) {
        const double *sr = s + r * k, *lr = lab + r * k;
        double *gr = g ? g + r * k : NULL;
        const double sc = scale ? scale[r] : 1.0;
        double mp = -INFINITY, mn = -INFINITY;
        int npos = 0, nneg = 0, nan = 0;
        PRAGMA(omp simd reduction(| : nan) reduction(+ : npos, nneg) reduction(max : mp, mn))
        for (idx j = 0; j < k; j++) {
            double x = sr[j], l = lr[j];
            int pos = l == 1.0, neg = !pos && l != 2.0;
            nan |= ((x - x) != 0.0) | (l != l);
            npos += pos; nneg += neg;
            double sp = x < 1.0 ? x : 1.0, dl, dh = two_sum(1.0, -sp, &dl);
            double uh = pos ? dh : sp, ul = pos ? dl : 0.0;
            double al, ah = two_sum(uh, mg, &al), bl, bh = two_sum(uh, -mg, &bl);
            al += ul; bl += ul;
            double pl, ph = ddk_mul(ah, al, bh, bl, &pl);
            double t = ph * gamma, tlo = fma(ph, gamma, -t) + pl * gamma;
            int off = !pos & (ah < 0.0);
            t = off ? 0.0 : t;
            th[j] = t; tl[j] = off ? 0.0 : tlo;
            mp = pos && t > mp ? t : mp;
            mn = neg && t > mn ? t : mn;
        }
        int bad = nan || k > (1 << 20);
        if (!bad && npos && nneg) bad = !(fabs(mp) < 0x1p40) || !(span < 0x1p40);
        if (bad || npos == 0 || nneg == 0) {
            value[r] = bad ? NAN : 0.0;
            if (gr) memset(gr, 0, (size_t)k * sizeof(double));
            continue;
        }
        PRAGMA(omp simd)
        for (idx j = 0; j < k; j++) {
            double l = lr[j];
            int pos = l == 1.0, neg = !pos && l != 2.0;
            double dl, dh = two_sum(th[j], -(pos ? mp : mn), &dl);
            double e = kexp_pair(dh, dl + tl[j]);
            th[j] = pos ? e : 0.0;
            tl[j] = neg ? e : 0.0;
        }
        double spl, sph = acc_sum_pair(th, k, &spl), snl, snh = acc_sum_pair(tl, k, &snl);
        double lpl, lph = klog_pair(sph, &lpl), lnl, lnh = klog_pair(snh, &lnl);
        double e1, a1 = two_sum(mp, mn, &e1), e2, a2 = two_sum(lph, lnh, &e2), e3, ah = two_sum(a1, a2, &e3);
        double al = ((e1 + e2) + e3) + ((lpl + spl / sph) + (lnl + snl / snh));
        ah = fast_two_sum(ah, al, &al);
        double vl, vh, sgl, sg;
        softplus_sigmoid_dd(ah, al, &vh, &vl, &sg, &sgl);
        if (!(ah > -700.0)) {
            value[r] = NAN;
            if (gr) memset(gr, 0, (size_t)k * sizeof(double));
            continue;
        }
        value[r] = vh + vl;
        if (!gr) continue;
        if (sc == 0.0) { memset(gr, 0, (size_t)k * sizeof(double)); continue; }
        const double gs = 2.0 * gamma * sc, gsl = fma(2.0 * gamma, sc, -gs);
        double fl, fh = ddk_mul(sg, sgl, gs, gsl, &fl), wl;
        const double WP = -ddk_div(fh, fl, sph, spl, &wl), WN = ddk_div(fh, fl, snh, snl, &wl);
        int tiny = 0;
        PRAGMA(omp simd reduction(+ : tiny))
        for (idx j = 0; j < k; j++) {
            double l = lr[j], x = sr[j];
            int pos = l == 1.0, neg = !pos && l != 2.0;
            double sp = x < 1.0 ? x : 1.0, dl, dh = two_sum(1.0, -sp, &dl);
            double fn = (x > -mg && x < 1.0) ? x : 0.0;
            fn = x == -mg ? -0.5 * mg : fn;
            fn = x == 1.0 ? 0.5 : fn;
            double f = pos ? fma(WP, dh, WP * dl) : WN * fn;
            double ej = pos ? th[j] : tl[j];
            tiny += (pos | neg) & (ej < 0x1p-1022) & (fabs(f) > 0.125);
            gr[j] = (pos | neg) ? ej * f : 0.0;
        }
        if (tiny) value[r] = NAN;
    }
}

/* embed(id, anchor float32, second float32, third float32 or None, labels float64 or None, lo, hi, k,
 *       value float64 out, g1, g2, g3 float32 outs or None, scale float64 or None, params float64):
 * rows lo..hi of full (rows, k) row-major buffers (one thread runs one range; the GIL is released).
 * id 0: triplet margin loss (anchor = y_pred, second = the positive, third = the negative; g1, g2, g3:
 *   the gradients wrt anchor, positive, negative; params: margin, p, eps, swap, eps added to the sum,
 *   cosine distance);
 * id 1: cosine embedding loss (anchor = x1, second = x2, labels: y per row; g1, g2: wrt x1, x2;
 *   params: margin). value[r] is NaN for a row to recompute (see above).
 * id 2, 3: cosine similarity, float32 (2) or float64 (3) rows (anchor = y_true, second = y_pred, both
 *   of that type; g1: wrt y_pred, of that type; no third, labels, g2, g3; params unused);
 * id 4, 5: ntxent (params: 1/T) and circle (params: gamma, margin), float32 (anchor = the similarities,
 *   second = the labels: 1 positive, 2 excluded, else negative; g1: wrt the similarities);
 * id 6: cosine embedding loss on float64 rows (as id 1, every buffer float64 but the labels');
 * id 7: triplet margin loss on float64 rows, p = 2 only (as id 0, every buffer float64);
 * id 8, 9: ntxent (params: 1/T as a pair) and circle (params: gamma, margin) on float64 rows (as ids
 *   4, 5, every buffer float64). */
static PyObject *py_embed(PyObject *self, PyObject *args) {
    int id;
    idx lo, hi, k;
    Py_buffer a, b, val, prm, c = {0}, y = {0}, sc = {0}, g[3] = {{0}, {0}, {0}};
    PyObject *cobj, *yobj, *gobj[3], *scobj, *result = NULL;
    if (!PyArg_ParseTuple(args, "iy*y*OOnnnw*OOOOy*", &id, &a, &b, &cobj, &yobj, &lo, &hi, &k, &val,
                          &gobj[0], &gobj[1], &gobj[2], &scobj, &prm))
        return NULL;
    Py_ssize_t need = hi * k * (Py_ssize_t)(id == 3 || id >= 6 ? sizeof(double) : sizeof(float));
    double *work = NULL;
    int ok = id >= 0 && id <= 9 && lo >= 0 && lo <= hi && k >= 0 && a.len >= need && b.len >= need
             && val.len >= hi * 8 && prm.len >= (id == 0 || id == 7 ? 6 : 1) * 8;
    if (ok && cobj != Py_None) ok = PyObject_GetBuffer(cobj, &c, PyBUF_SIMPLE) == 0 && c.len >= need;
    if (ok && yobj != Py_None) ok = PyObject_GetBuffer(yobj, &y, PyBUF_SIMPLE) == 0 && y.len >= hi * 8;
    if (ok && scobj != Py_None) ok = PyObject_GetBuffer(scobj, &sc, PyBUF_SIMPLE) == 0 && sc.len >= hi * 8;
    for (int i = 0; i < 3 && ok; i++)
        if (gobj[i] != Py_None) ok = PyObject_GetBuffer(gobj[i], &g[i], PyBUF_WRITABLE) == 0 && g[i].len >= need;
    if (ok) ok = (id == 0 || id == 7) ? c.obj != NULL : (id == 1 || id == 6) ? (y.obj != NULL && g[2].obj == NULL)
                                          : (g[1].obj == NULL && g[2].obj == NULL);
    if (ok && (id == 4 || id == 5)) ok = prm.len >= (id == 5 ? 2 : 1) * 8;
    if (ok && (id == 8 || id == 9)) ok = prm.len >= 2 * 8;
    if (ok && (id == 4 || id == 5 || id == 8 || id == 9)) {
        work = PyMem_RawMalloc((size_t)(k > 0 ? k : 1) * (id == 9 ? 2 : id == 8 ? 7 : 1) * sizeof(double));
        if (!work) { PyErr_NoMemory(); ok = 0; }
    }
    if (!ok) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "embed: unknown kernel id or wrong buffers");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    if (id == 0) triplet_rows(a.buf, b.buf, c.buf, lo, hi, k, val.buf, g[0].buf, g[1].buf, g[2].buf,
                              sc.obj ? sc.buf : NULL, prm.buf);
    else if (id == 2) cossim_rows(a.buf, b.buf, lo, hi, k, val.buf, g[0].buf, sc.obj ? sc.buf : NULL);
    else if (id == 3) cossim_rows_d(a.buf, b.buf, lo, hi, k, val.buf, g[0].buf, sc.obj ? sc.buf : NULL);
    else if (id == 7) triplet_rows_d(a.buf, b.buf, c.buf, lo, hi, k, val.buf, g[0].buf, g[1].buf, g[2].buf,
                                     sc.obj ? sc.buf : NULL, prm.buf);
    else if (id == 6) cosine_rows_d(a.buf, b.buf, y.buf, lo, hi, k, val.buf, g[0].buf, g[1].buf,
                                    sc.obj ? sc.buf : NULL, prm.buf);
    else if (id == 4) ntxent_rows(a.buf, b.buf, lo, hi, k, val.buf, g[0].buf, sc.obj ? sc.buf : NULL, prm.buf,
                                  work);
    else if (id == 5) circle_rows(a.buf, b.buf, lo, hi, k, val.buf, g[0].buf, sc.obj ? sc.buf : NULL, prm.buf,
                                  work);
    else if (id == 8) ntxent_rows_d(a.buf, b.buf, lo, hi, k, val.buf, g[0].buf, sc.obj ? sc.buf : NULL,
                                    prm.buf, work);
    else if (id == 9) circle_rows_d(a.buf, b.buf, lo, hi, k, val.buf, g[0].buf, sc.obj ? sc.buf : NULL,
                                    prm.buf, work);
    else cosine_rows(a.buf, b.buf, y.buf, lo, hi, k, val.buf, g[0].buf, g[1].buf, sc.obj ? sc.buf : NULL,
                     prm.buf);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyMem_RawFree(work);
    PyBuffer_Release(&a); PyBuffer_Release(&b); PyBuffer_Release(&val); PyBuffer_Release(&prm);
    if (c.obj) PyBuffer_Release(&c);
    if (y.obj) PyBuffer_Release(&y);
    if (sc.obj) PyBuffer_Release(&sc);
    for (int i = 0; i < 3; i++) if (g[i].obj) PyBuffer_Release(&g[i]);
    return result;
}

/* ================================================================================================
 * Boosting, second entry point (losskit.boosting): kernels whose every element takes one formula.
 *
 * boost_soft(id, y, r, n, table hi, table lo, g out, h out, flag uint8 out, params) -> the number of
 * elements left with flag 2, the same arguments as boost() (params: _kernels._SOFT_PARAMS, the exp
 * constants at [5..7] and [8..9]):
 *   id 0, binomial loss with soft labels (y in [0, 1]): BinomialKernel._kernel_soft for every element.
 *     With e = exp(-|r|) = A + C to 2^-62 (boost_exp_mid) and 1 - y = oh + ol exactly (Fast2Sum),
 *     the numerator of sigmoid(r) - y is c0 + c1 e: r >= 0: c0 = 1 - y, c1 = -y; r < 0: c0 = -y,
 *     c1 = 1 - y. fl(c1) A is exact (its rounding error from an FMA), so the numerator
 *     (c1h A + c0h) + (err + c1h C + c1l A + c0l) is within 2^-62 of its larger term T plus two
 *     roundings of itself (c1h A + c0h is exact by Sterbenz where the terms cancel). Where
 *     |num| >= T / 1024 that is within 2u + 2 roundings; g = num / (1 + e) adds two roundings (1 + e
 *     and the quotient): within 8 ulp. h = e / (1 + e)^2 from e = fl(A + C), no cancellation.
 *   id 1, exponential loss (y in [0, 1]): g = ((1 - y) exp(2r) - y) / exp(r), h = (1 - y) exp(r) +
 *     y / exp(r): ExponentialKernel._kernel_soft for every element, the difference as above with
 *     exp(2r) = A2 + C2 (2r exact) and the divisor e = fl(A1 + C1) from exp(r) (within 0.5u + 2^-62).
 * Flags, as boost(): 1 where the numerator's terms agree to 1/1024 of the larger (|num| 1024 < T):
 * those are redone at once by boost_soft_deep (the 2^-76 tier, below), which leaves flag 0 or 2;
 * 2 where |r| > 650 (binomial) or |r| > 325 (exponential: exp(2r) must stay
 * normal) or the larger term is below 2^-900 (subnormal products): the double-double path. Flagged
 * elements' g (and h for flag 2) are unspecified. Hard labels (0 or 1) come out right too (one term
 * is 0: no cancellation).
 *
 * boost_identity(id, y, r, n, g out, h out, param) -> 1 if some r - y is not finite, else 0:
 * the gradient of an identity-link loss with hessian 1 in one pass (two reads, two writes), from
 * the same per-element functions as run()'s float64 kernels: id 0 absolute error (mae_at), 1 Huber
 * (huber_at, param = delta), 2 pinball (pinball_at, param = quantile). A non-finite r - y shows a
 * NaN or infinite input (the caller then checks the inputs) or an overflow of finite ones (whose
 * derivative, the limit, is still right).
 * ============================================================================================= */

/* exp(x) = A + P + R to within 2^-76 (|x| <= 650): _kernels._exp_precise, with T_hi s_hi exact from
 * an FMA instead of the pre-split table. prm[8], prm[9]: the 32-bit second part of ln 2/2048 and the
 * rest (_kernels._MID_C2P, _MID_C3P). */
KINLINE void boost_exp_precise(double x, const double *thi, const double *tlo, const double *prm,
                              double *a_out, double *p_out, double *r_out) {
    const double shifter = 6755399441055744.0;
    double m = x * prm[5] + shifter;
    int64_t n = (int64_t)(bits_of(m) - bits_of(shifter));
    m -= shifter;
    double s1 = x - m * prm[6];                     /* exact */
    double e;
    double sh = two_sum(s1, -(m * prm[8]), &e);     /* m C2' exact: s_hi + s_lo exact */
    double sl = e - m * prm[9];
    int64_t j = n & 2047, k = n >> 11;
    double th = thi[j], tl = tlo[j];
    double u = sh * (1.0 / 720.0) + 1.0 / 120.0;
    u = u * sh + 1.0 / 24.0;
    u = u * sh + 1.0 / 6.0;
    u = u * sh + 0.5;
    u *= sh * sh;                                   /* expm1(s_hi) - s_hi */
    double plo = u + sl * (1.0 + sh);               /* expm1(s) - s_hi */
    double p = th * sh;
    double pe = fma(th, sh, -p);                    /* th sh = p + pe exactly */
    double rest = pe + (th * plo + tl * (1.0 + sh + plo));
    double scale = from_bits((uint64_t)(k + 1023) << 52);
    *a_out = th * scale;
    *p_out = p * scale;
    *r_out = rest * scale;
}

#define BOOST2_KERNELS(SFX, BOOST_ATTR) \
BOOST_ATTR static idx boost_binsoft##SFX(const double *restrict y, const double *restrict r, idx n, \
                                 const double *restrict thi, const double *restrict tlo, double *restrict g, \
                                 double *restrict h, unsigned char *restrict flag, const double *prm, idx *deep_out) { \
    const double inv = prm[5], c1 = prm[6], c2 = prm[7]; \
    idx flagged = 0, deep = 0; \
    SIMD_SUM2(flagged, deep) \
    for (idx i = 0; i < n; i++) { \
        double ri = r[i], yi = y[i]; \
        int wild = !(fabs(ri) <= 650.0); \
        double A, C; \
        boost_exp_mid(wild ? 0.0 : -fabs(ri), thi, tlo, inv, c1, c2, &A, &C); \
        double oh = 1.0 - yi; \
        double ol = (1.0 - oh) - yi;                    /* 1 - y = oh + ol exactly */ \
        int neg = ri < 0.0; \
        double kh = neg ? oh : -yi, kl = neg ? ol : 0.0;  /* c1 */ \
        double oh0 = neg ? -yi : oh, ol0 = neg ? 0.0 : ol;  /* c0 */ \
        double p = kh * A; \
        double pe = fma(kh, A, -p);                     /* kh A = p + pe exactly */ \
        pe += kh * C + kl * A + ol0; \
        double t = fabs(p) > fabs(oh0) ? fabs(p) : fabs(oh0); \
        double num = (p + oh0) + pe; \
        double e = A + C, onep = 1.0 + e; \
        double gi = num / onep, hi = (e / onep) / onep; \
        wild |= !(t >= 0x1p-900); \
        unsigned char fl = wild ? 2 : (fabs(num) * 1024.0 < t ? 1 : 0); \
        g[i] = gi; \
        h[i] = hi; \
        flag[i] = fl; \
        flagged += fl != 0; \
        deep += fl == 1; \
    } \
    *deep_out = deep; \
    return flagged; \
} \
 \
BOOST_ATTR static idx boost_expo##SFX(const double *restrict y, const double *restrict r, idx n, \
                              const double *restrict thi, const double *restrict tlo, double *restrict g, \
                              double *restrict h, unsigned char *restrict flag, const double *prm, idx *deep_out) { \
    const double inv = prm[5], c1 = prm[6], c2 = prm[7]; \
    idx flagged = 0, deep = 0; \
    SIMD_SUM2(flagged, deep) \
    for (idx i = 0; i < n; i++) { \
        double ri = r[i], yi = y[i]; \
        int wild = !(fabs(ri) <= 325.0); \
        double rs = wild ? 0.0 : ri; \
        double A1, C1, A2, C2; \
        boost_exp_mid(rs, thi, tlo, inv, c1, c2, &A1, &C1); \
        boost_exp_mid(2.0 * rs, thi, tlo, inv, c1, c2, &A2, &C2); \
        double e = A1 + C1; \
        double oh = 1.0 - yi; \
        double ol = (1.0 - oh) - yi; \
        double p = oh * A2; \
        double pe = fma(oh, A2, -p); \
        pe += oh * C2 + ol * A2; \
        double t = fabs(p) > fabs(yi) ? fabs(p) : fabs(yi); \
        double d = (p - yi) + pe; \
        double gi = d / e, hi = oh * e + yi / e; \
        wild |= !(t >= 0x1p-900); \
        unsigned char fl = wild ? 2 : (fabs(d) * 1024.0 < t ? 1 : 0); \
        g[i] = gi; \
        h[i] = hi; \
        flag[i] = fl; \
        flagged += fl != 0; \
        deep += fl == 1; \
    } \
    *deep_out = deep; \
    return flagged; \
} \
 \
/* the 2^-76 tier on m gathered elements (see boost_soft_deep): g and fl (0 or 2) out, count of 2 */ \
BOOST_ATTR static idx boost_deep##SFX(int id, const double *restrict y, const double *restrict r, idx m, \
                              const double *restrict thi, const double *restrict tlo, double *restrict g, \
                              unsigned char *restrict fl, const double *prm) { \
    idx still = 0; \
    const int bin = id == 0; \
    SIMD_SUM(still) \
    for (idx i = 0; i < m; i++) { \
        double ri = r[i], yi = y[i]; \
        double oh = 1.0 - yi, ol = (1.0 - oh) - yi; \
        int pos = ri >= 0.0; \
        /* binomial: D = c e - other with e = exp(-|r|); r >= 0: y e - (1 - y), r < 0: (1 - y) e - y; \
         * exponential: (1 - y) exp(2r) - y */ \
        double x = bin ? -fabs(ri) : 2.0 * ri; \
        double ch = (bin & pos) ? yi : oh, cl = (bin & pos) ? 0.0 : ol; \
        double o_h = (bin & !pos) ? yi : (bin ? oh : yi), o_l = (bin & pos) ? ol : 0.0; \
        double a, p, rest; \
        boost_exp_precise(x, thi, tlo, prm, &a, &p, &rest); \
        double h1 = ch * a, e1 = fma(ch, a, -h1); \
        double h2 = ch * p, e2 = fma(ch, p, -h2); \
        double low = e1 + e2; \
        low += ch * rest; \
        low += cl * (a + p); \
        low -= o_l; \
        double t = fabs(h1) > fabs(o_h) ? fabs(h1) : fabs(o_h); \
        double d = h1 - o_h;                        /* exact (Sterbenz): the terms agree to 2^-10 */ \
        d += h2; \
        d += low; \
        double A1, C1; \
        boost_exp_mid(bin ? 0.0 : ri, thi, tlo, prm[5], prm[6], prm[7], &A1, &C1); \
        double ev = a + (p + rest);                 /* binomial: exp(-|r|) */ \
        double gi = bin ? ((pos ? -d : d) / (1.0 + ev)) : d / (A1 + C1); \
        unsigned char f = !(fabs(d) * 0x1p22 >= t) ? 2 : 0; \
        g[i] = gi; \
        fl[i] = f; \
        still += f != 0; \
    } \
    return still; \
} \
 \
BOOST_ATTR static idx boost_ident##SFX(int kind, const double *restrict y, const double *restrict r, idx n, \
                               double *restrict g, double *restrict h, const double *prm) { \
    idx bad = 0; \
    if (kind == 0) { \
        SIMD_SUM(bad) \
        for (idx i = 0; i < n; i++) { \
            double gi; \
            mae_at(r[i], y[i], prm, &gi); \
            bad += !(fabs(r[i] - y[i]) <= 0x1.fffffffffffffp1023); \
            g[i] = gi; \
            h[i] = 1.0; \
        } \
    } else if (kind == 1) { \
        SIMD_SUM(bad) \
        for (idx i = 0; i < n; i++) { \
            double gi; \
            huber_at(r[i], y[i], prm, &gi); \
            bad += !(fabs(r[i] - y[i]) <= 0x1.fffffffffffffp1023); \
            g[i] = gi; \
            h[i] = 1.0; \
        } \
    } else { \
        SIMD_SUM(bad) \
        for (idx i = 0; i < n; i++) { \
            double gi; \
            pinball_at(r[i], y[i], prm, &gi); \
            bad += !(fabs(r[i] - y[i]) <= 0x1.fffffffffffffp1023); \
            g[i] = gi; \
            h[i] = 1.0; \
        } \
    } \
    return bad; \
}

#ifdef BOOST_MULTI
BOOST2_KERNELS(_v4, __attribute__((target("arch=x86-64-v4"))))
BOOST2_KERNELS(_v3, __attribute__((target("arch=x86-64-v3"))))
#endif
BOOST2_KERNELS(_base, )

/* Double-double helpers of the third tier (FMA products; Dekker's and Knuth's error-free steps). */
KINLINE void bdd_mul(double ah, double al, double bh, double bl, double *ph, double *pl) {
    double p = ah * bh, e = fma(ah, bh, -p);
    e += ah * bl + al * bh;
    *ph = p + e;
    *pl = e - (*ph - p);
}
KINLINE void bdd_add(double ah, double al, double bh, double bl, double *sh, double *sl) {
    double e, s = two_sum(ah, bh, &e);
    e += al + bl;
    *sh = s + e;
    *sl = e - (*sh - s);
}

/* The third tier, for an element whose terms agree to 2^-22 (a perfect prediction): exp(x) (|x| <= 650)
 * as a double-double to about 2^-100 (the reduction s = x - n ln2/2048 kept as s_hi + s_lo to 2^-107:
 * n C1 and n C2' exact, n C3' rounded by 2^-107; (exp(s) - 1)/s by Horner to s^9/10! in double-double,
 * the omitted terms below 2^-112; the table's 2^(j/2048) to 2^-104), then D = (ch + cl) exp(x) -
 * (oh + ol) in double-double: within about 2^-100 of the larger term T (each double-double step
 * errs by ~2^-104 of its result), the accuracy of Python's double-double path (_kernels._combine:
 * "about 100 bits") that it replaces: within 8 ulp of D where |D| >= 2^-44 T, and an absolute error
 * of ~2^-100 T closer (the oracle's allowance for a gradient below 2^-40 of its terms). *d is D
 * rounded, *ev exp(x) rounded; returns 0 (the element stays for Python) only where T < 2^-900. */
static int boost_tier3(double x, double ch, double cl, double oh, double ol, const double *thi,
                       const double *tlo, const double *prm, double *d, double *ev) {
    const double shifter = 6755399441055744.0;
    double m = x * prm[5] + shifter;
    int64_t n = (int64_t)(bits_of(m) - bits_of(shifter));
    m -= shifter;
    double s1 = x - m * prm[6];
    double e, sh = two_sum(s1, -(m * prm[8]), &e);
    double sl = e - m * prm[9];
    double t0 = sh + sl;
    sl -= t0 - sh;
    sh = t0;
    double fact[11] = {1, 1, 2, 6, 24, 120, 720, 5040, 40320, 362880, 3628800};
    double ah = 1.0 / fact[10], al = 0.0;
    for (int k = 9; k >= 1; k--) {
        double ch_k = 1.0 / fact[k], cl_k = -fma(ch_k, fact[k], -1.0) / fact[k];  /* 1/k! to 2^-106 */
        bdd_mul(ah, al, sh, sl, &ah, &al);
        bdd_add(ah, al, ch_k, cl_k, &ah, &al);
    }
    bdd_mul(ah, al, sh, sl, &ah, &al);              /* expm1(s) */
    int64_t j = n & 2047, k2 = n >> 11;
    double th = thi[j], tl = tlo[j], mh, ml;
    bdd_mul(th, tl, ah, al, &mh, &ml);
    bdd_add(th, tl, mh, ml, &mh, &ml);              /* 2^(j/2048) exp(s) */
    double scale = from_bits((uint64_t)(k2 + 1023) << 52);
    mh *= scale;
    ml *= scale;
    double ph, pl, dh, dl;
    bdd_mul(ch, cl, mh, ml, &ph, &pl);
    double t = fabs(ph) > fabs(oh) ? fabs(ph) : fabs(oh);
    bdd_add(ph, pl, -oh, -ol, &dh, &dl);
    if (!(t >= 0x1p-900)) return 0;
    *d = dh + dl;
    *ev = mh + ml;
    return 1;
}

/* The elements boost_binsoft / boost_expo flagged 1 (terms agreeing to 2^-10): the difference again
 * from boost_exp_precise (_kernels.BinomialKernel._precise, ExponentialKernel._precise): ch A and
 * ch P exact (FMA), so D is within 2^-75 T plus two roundings of itself; where |D| >= 2^-22 T that is
 * within u + 2 roundings, and the gradient (D over 1 + e, or over e = exp(r)) gets flag 0; the rest
 * (a perfect prediction) goes through boost_tier3 (double-double, to 2^-100 of T), and what that
 * leaves (T < 2^-900) flag 2, for Python's double-double path. The flagged elements are gathered 256
 * at a time so that the tier runs as a vector loop (boost_deep). Returns how many got flag 2. */
static idx boost_soft_deep(int id, const double *y, const double *r, idx n, const double *thi,
                           const double *tlo, double *g, unsigned char *flag, const double *prm) {
    idx (*f)(int, const double *restrict, const double *restrict, idx, const double *restrict,
             const double *restrict, double *restrict, unsigned char *restrict, const double *) = boost_deep_base;
#ifdef BOOST_MULTI
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) f = boost_deep_v4;
    else if (__builtin_cpu_supports("x86-64-v3")) f = boost_deep_v3;
#endif
    enum { B = 256 };
    idx ix[B];
    double yb[B], rb[B], gb[B];
    unsigned char fb[B];
    idx still = 0, m = 0;
    for (idx i = 0; i <= n; i++) {
        if (i < n && (i & 7) == 0 && i + 8 <= n) {  /* a word of 8 zero flags at a time */
            uint64_t w;
            memcpy(&w, flag + i, 8);
            if (!w) { i += 7; continue; }
        }
        if (i < n && flag[i] == 1) {
            ix[m] = i; yb[m] = y[i]; rb[m] = r[i]; m++;
        }
        if (m == B || (i == n && m)) {
            still += f(id, yb, rb, m, thi, tlo, gb, fb, prm);
            for (idx k = 0; k < m && still; k++) {   /* the third tier on what the second left */
                double ri = rb[k], yi = yb[k];
                if (fb[k] != 2 || !(fabs(ri) <= (id == 0 ? 650.0 : 325.0))) continue;
                double oh = 1.0 - yi, ol = (1.0 - oh) - yi, d, ev;
                int pos = ri >= 0.0;
                if (id == 0) {   /* D as in boost_deep */
                    if (!boost_tier3(-fabs(ri), pos ? yi : oh, pos ? 0.0 : ol, pos ? oh : yi, pos ? ol : 0.0,
                                     thi, tlo, prm, &d, &ev)) continue;
                    gb[k] = (pos ? -d : d) / (1.0 + ev);
                } else {
                    if (!boost_tier3(2.0 * ri, oh, ol, yi, 0.0, thi, tlo, prm, &d, &ev)) continue;
                    double A1, C1;
                    boost_exp_mid(ri, thi, tlo, prm[5], prm[6], prm[7], &A1, &C1);
                    gb[k] = d / (A1 + C1);
                }
                fb[k] = 0;
                still--;
            }
            for (idx k = 0; k < m; k++) {
                g[ix[k]] = gb[k];
                flag[ix[k]] = fb[k];
            }
            m = 0;
        }
    }
    return still;
}

static PyObject *py_boost_soft(PyObject *self, PyObject *args) {
    int id;
    idx n;
    Py_buffer y, r, thi, tlo, g, h, fl, prm;
    if (!PyArg_ParseTuple(args, "iy*y*ny*y*w*w*w*y*", &id, &y, &r, &n, &thi, &tlo, &g, &h, &fl, &prm))
        return NULL;
    idx count = -1;
    if ((id == 0 || id == 1) && n >= 0 && thi.len == 2048 * 8 && tlo.len == 2048 * 8 && y.len >= n * 8
            && r.len >= n * 8 && g.len >= n * 8 && h.len >= n * 8 && fl.len >= n && prm.len >= 10 * 8) {
        idx (*f)(const double *restrict, const double *restrict, idx, const double *restrict,
                 const double *restrict, double *restrict, double *restrict, unsigned char *restrict,
                 const double *, idx *) = id == 0 ? boost_binsoft_base : boost_expo_base;
#ifdef BOOST_MULTI
        __builtin_cpu_init();
        if (__builtin_cpu_supports("x86-64-v4")) f = id == 0 ? boost_binsoft_v4 : boost_expo_v4;
        else if (__builtin_cpu_supports("x86-64-v3")) f = id == 0 ? boost_binsoft_v3 : boost_expo_v3;
#endif
        Py_BEGIN_ALLOW_THREADS
        idx deep = 0;
        count = f(y.buf, r.buf, n, thi.buf, tlo.buf, g.buf, h.buf, fl.buf, prm.buf, &deep);
        if (deep)   /* the 2^-76 tier; its failures join the flag-2 elements */
            count += boost_soft_deep(id, y.buf, r.buf, n, thi.buf, tlo.buf, g.buf, fl.buf, prm.buf) - deep;
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&y); PyBuffer_Release(&r); PyBuffer_Release(&thi); PyBuffer_Release(&tlo);
    PyBuffer_Release(&g); PyBuffer_Release(&h); PyBuffer_Release(&fl); PyBuffer_Release(&prm);
    if (count < 0) { PyErr_SetString(PyExc_ValueError, "boost_soft: unknown kernel id or wrong buffer sizes"); return NULL; }
    return PyLong_FromSsize_t(count);
}

static PyObject *py_boost_identity(PyObject *self, PyObject *args) {
    int id;
    idx n;
    double param;
    Py_buffer y, r, g, h;
    if (!PyArg_ParseTuple(args, "iy*y*nw*w*d", &id, &y, &r, &n, &g, &h, &param)) return NULL;
    idx bad = -1;
    if (id >= 0 && id <= 2 && n >= 0 && y.len >= n * 8 && r.len >= n * 8 && g.len >= n * 8 && h.len >= n * 8) {
        idx (*f)(int, const double *restrict, const double *restrict, idx, double *restrict,
                 double *restrict, const double *) = boost_ident_base;
#ifdef BOOST_MULTI
        __builtin_cpu_init();
        if (__builtin_cpu_supports("x86-64-v4")) f = boost_ident_v4;
        else if (__builtin_cpu_supports("x86-64-v3")) f = boost_ident_v3;
#endif
        Py_BEGIN_ALLOW_THREADS
        bad = f(id, y.buf, r.buf, n, g.buf, h.buf, &param);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&y); PyBuffer_Release(&r); PyBuffer_Release(&g); PyBuffer_Release(&h);
    if (bad < 0) { PyErr_SetString(PyExc_ValueError, "boost_identity: unknown kernel id or wrong buffer sizes"); return NULL; }
    return PyBool_FromLong(bad != 0);
}

/* ================================================================================================
 * The embedding kernels as an XLA FFI target (losskit/_backends/jax.py, issue 8): JAX arrays on a CPU
 * device run _cpu.embed's row kernels on XLA's own buffers under jax.jit, without the copies of a host
 * callback (jax.pure_callback hands its operands and results over as copies: about 15 ms per 32 MB
 * operand on the 2-core machine). Built only when the build finds XLA's FFI header (setup.py: jaxlib
 * installed; LOSSKIT_XLA_FFI defined); without it jax.py keeps its host callback.
 *
 * One handler, "losskit_embed": attributes id (the _cpu.embed id: 0, 2, 3, 4, 5, 7, 9 here), prm (float64
 * array: the kernel's params), slots (int64 array: the gradient slot g1, g2, g3 = 0, 1, 2 that each
 * result after the value fills) and threads (rows are split over that many threads, each a
 * contiguous range, when the buffer is large). Operands: the kernel's two or three row buffers
 * (first, second[, third] as py_embed's a, b, c), every one (..., k) row-major of the kernel's dtype.
 * Results: the per-row value (float32 or float64; the C kernel's double rounded to it, NaN marking a
 * row jax.py recomputes), then the gradients. No scale: jax.py's custom_vjp scales the gradient. */
#ifdef LOSSKIT_XLA_FFI
#include <stdlib.h>
#include <pthread.h>
#include "xla/ffi/api/c_api.h"

typedef struct {
    int id;
    const void *a, *b, *c;
    idx lo, hi, k;
    double *value;
    void *g[3];
    const double *prm;
} xla_embed_job;

static int xla_embed_known(int64_t id) {
    return id == 0 || id == 2 || id == 3 || id == 4 || id == 5 || id == 7 || id == 9;
}

static void *xla_embed_run(void *arg) {
    xla_embed_job *j = (xla_embed_job *)arg;
    double *work = NULL;
    if (j->id == 4 || j->id == 5 || j->id == 9) {
        work = (double *)malloc((size_t)(j->k > 0 ? j->k : 1) * (j->id == 9 ? 2 : 1) * sizeof(double));
        if (!work) {  /* no memory for the row buffer: every row handed back (NaN) */
            for (idx r = j->lo; r < j->hi; r++) j->value[r] = NAN;
            return NULL;
        }
    }
    if (j->id == 0) triplet_rows(j->a, j->b, j->c, j->lo, j->hi, j->k, j->value, j->g[0], j->g[1], j->g[2],
                                 NULL, j->prm);
    else if (j->id == 7) triplet_rows_d(j->a, j->b, j->c, j->lo, j->hi, j->k, j->value, j->g[0], j->g[1],
                                        j->g[2], NULL, j->prm);
    else if (j->id == 2) cossim_rows(j->a, j->b, j->lo, j->hi, j->k, j->value, j->g[0], NULL);
    else if (j->id == 3) cossim_rows_d(j->a, j->b, j->lo, j->hi, j->k, j->value, j->g[0], NULL);
    else if (j->id == 4) ntxent_rows(j->a, j->b, j->lo, j->hi, j->k, j->value, j->g[0], NULL, j->prm, work);
    else if (j->id == 5) circle_rows(j->a, j->b, j->lo, j->hi, j->k, j->value, j->g[0], NULL, j->prm, work);
    else if (j->id == 9) circle_rows_d(j->a, j->b, j->lo, j->hi, j->k, j->value, j->g[0], NULL, j->prm, work);
    free(work);
    return NULL;
}

static int xla_name_is(const XLA_FFI_ByteSpan *s, const char *name) {
    size_t n = strlen(name);
    return s->len == n && memcmp(s->ptr, name, n) == 0;
}

/* What the three handlers (losskit_embed, losskit_run3, losskit_rows) share. */

/* XLA's metadata call (once per target: the API version, no traits): 1 when cf was it */
static int xla_metadata(XLA_FFI_CallFrame *cf) {
    if (cf->extension_start == NULL || cf->extension_start->type != XLA_FFI_Extension_Metadata) return 0;
    XLA_FFI_Metadata_Extension *ext = (XLA_FFI_Metadata_Extension *)cf->extension_start;
    ext->metadata->api_version.struct_size = XLA_FFI_Api_Version_STRUCT_SIZE;
    ext->metadata->api_version.extension_start = NULL;
    ext->metadata->api_version.major_version = XLA_FFI_API_MAJOR;
    ext->metadata->api_version.minor_version = XLA_FFI_API_MINOR;
    ext->metadata->traits = 0;
    ext->metadata->state_type_id.type_id = 0;
    return 1;
}

/* A call's attributes: the integers id (-1 if absent), wide, threads (1), the float64 array prm
 * (NULL if absent, its length prm_size) and the int64 array slots (at most 3; nslots of them). */
typedef struct {
    int64_t id, wide, threads, nslots, slots[3], prm_size;
    const double *prm;
} xla_attrs;

static xla_attrs xla_read_attrs(const XLA_FFI_CallFrame *cf) {
    xla_attrs at = {-1, 0, 1, 0, {0, 1, 2}, 0, NULL};
    for (int64_t i = 0; i < cf->attrs.size; i++) {
        const XLA_FFI_ByteSpan *name = cf->attrs.names[i];
        if (cf->attrs.types[i] == XLA_FFI_AttrType_SCALAR) {
            const XLA_FFI_Scalar *s = (const XLA_FFI_Scalar *)cf->attrs.attrs[i];
            int64_t v = s->dtype == XLA_FFI_DataType_S64 ? *(const int64_t *)s->value
                        : s->dtype == XLA_FFI_DataType_S32 ? *(const int32_t *)s->value : -1;
            if (xla_name_is(name, "id")) at.id = v;
            else if (xla_name_is(name, "wide")) at.wide = v;
            else if (xla_name_is(name, "threads")) at.threads = v;
        } else if (cf->attrs.types[i] == XLA_FFI_AttrType_ARRAY) {
            const XLA_FFI_Array *arr = (const XLA_FFI_Array *)cf->attrs.attrs[i];
            if (xla_name_is(name, "prm") && arr->dtype == XLA_FFI_DataType_F64) {
                at.prm = (const double *)arr->data;
                at.prm_size = (int64_t)arr->size;
            } else if (xla_name_is(name, "slots") && arr->dtype == XLA_FFI_DataType_S64 && arr->size <= 3) {
                at.nslots = (int64_t)arr->size;
                for (int64_t j = 0; j < at.nslots; j++) at.slots[j] = ((const int64_t *)arr->data)[j];
            }
        }
    }
    return at;
}

/* The per-row values: the output buffer itself when it is float64, else a double scratch that
 * xla_values_close rounds into it; NULL when there is no memory for it (the float32 output then
 * holds NaN: every row handed back). */
static double *xla_values_open(XLA_FFI_Buffer *vb, idx rows) {
    if (vb->dtype == XLA_FFI_DataType_F64) return (double *)vb->data;
    double *value = (double *)malloc((size_t)(rows > 0 ? rows : 1) * sizeof(double));
    if (!value)
        for (idx r = 0; r < rows; r++) ((float *)vb->data)[r] = NAN;
    return value;
}

static void xla_values_close(XLA_FFI_Buffer *vb, double *value, idx rows) {
    if (vb->dtype == XLA_FFI_DataType_F64) return;
    for (idx r = 0; r < rows; r++) ((float *)vb->data)[r] = (float)value[r];
    free(value);
}

/* run(&jobs[t]) over rows [0, rows) in contiguous ranges on up to `threads` threads (at most 16;
 * one below min_work elements): jobs is an array of 16 job structs of `size` bytes with jobs[0]
 * filled in, lo_at and hi_at the offsets of its idx members lo and hi (offsetof). A thread that
 * cannot be started runs its range on this one. */
static void xla_split_rows(void *(*run)(void *), void *jobs, size_t size, size_t lo_at, size_t hi_at,
                           idx rows, idx k, int64_t threads, double min_work) {
    int n = threads < 1 ? 1 : (threads > 16 ? 16 : (int)threads);
    if ((double)rows * (double)k < min_work || rows < n) n = 1;
    char *job = (char *)jobs;
    pthread_t tid[16];
    int started[16] = {0};
    for (int t = 1; t < n; t++) memcpy(job + (size_t)t * size, job, size);
    for (int t = 0; t < n; t++) {
        *(idx *)(job + (size_t)t * size + lo_at) = rows * t / n;
        *(idx *)(job + (size_t)t * size + hi_at) = rows * (t + 1) / n;
    }
    for (int t = 1; t < n; t++) started[t] = pthread_create(&tid[t], NULL, run, job + (size_t)t * size) == 0;
    run(job);
    for (int t = 1; t < n; t++) {
        if (started[t]) pthread_join(tid[t], NULL);
        else run(job + (size_t)t * size);
    }
}

static XLA_FFI_Error *xla_embed(XLA_FFI_CallFrame *cf) {
    if (xla_metadata(cf) || cf->stage != XLA_FFI_ExecutionStage_EXECUTE) return NULL;
    xla_attrs at = xla_read_attrs(cf);
    int64_t id = at.id, nslots = at.nslots, *slots = at.slots;
    double none[1] = {0.0};
    /* the wrappers in jax.py build every call; a mismatch here is a bug there: rows are left NaN where
       possible, else nothing is written (the values then are whatever XLA allocated) */
    if (!xla_embed_known(id) || cf->args.size < 2 || cf->args.size > 3 || cf->rets.size < 1
        || cf->rets.size != 1 + nslots)
        return NULL;
    XLA_FFI_Buffer *in[3] = {NULL, NULL, NULL}, *out[4] = {NULL, NULL, NULL, NULL};
    for (int64_t i = 0; i < cf->args.size; i++) {
        if (cf->args.types[i] != XLA_FFI_ArgType_BUFFER) return NULL;
        in[i] = (XLA_FFI_Buffer *)cf->args.args[i];
    }
    for (int64_t i = 0; i < cf->rets.size; i++) {
        if (cf->rets.types[i] != XLA_FFI_RetType_BUFFER) return NULL;
        out[i] = (XLA_FFI_Buffer *)cf->rets.rets[i];
    }
    const XLA_FFI_Buffer *a = in[0];
    idx k = a->rank > 0 ? (idx)a->dims[a->rank - 1] : 1, rows = 1;
    for (int64_t d = 0; d + 1 < a->rank; d++) rows *= (idx)a->dims[d];
    double *value = xla_values_open(out[0], rows);
    if (!value) return NULL;
    xla_embed_job parts[16] = {{(int)id, a->data, in[1]->data, in[2] ? in[2]->data : NULL, 0, rows, k, value,
                                {NULL, NULL, NULL}, at.prm ? at.prm : none}};
    for (int64_t s = 0; s < nslots; s++)
        if (slots[s] >= 0 && slots[s] < 3) parts[0].g[slots[s]] = out[1 + s]->data;
    if (rows > 0 && k > 0)
        xla_split_rows(xla_embed_run, parts, sizeof parts[0], offsetof(xla_embed_job, lo),
                       offsetof(xla_embed_job, hi), rows, k, at.threads, 262144.0);
    else  /* empty rows: handed back (jax.py's fallback gives the generic kernel's answer) */
        for (idx r = 0; r < rows; r++) value[r] = NAN;
    xla_values_close(out[0], value, rows);
    return NULL;
}

/* xla_targets(): {name: PyCapsule of the handler} for jax.ffi.register_ffi_target: losskit_embed, losskit_run3, losskit_rows */
static int xla_add_target(PyObject *d, const char *name, void *handler);  /* the other targets: at the end */
static XLA_FFI_Error *xla_run3(XLA_FFI_CallFrame *cf);
static XLA_FFI_Error *losskit_xla_rows(XLA_FFI_CallFrame *cf);  /* the row kernels' handler: the end of this file */
static PyObject *py_xla_targets(PyObject *self, PyObject *args) {
    PyObject *cap = PyCapsule_New((void *)xla_embed, NULL, NULL);
    if (!cap) return NULL;
    PyObject *d = Py_BuildValue("{sN}", "losskit_embed", cap);
    if (d && xla_add_target(d, "losskit_run3", (void *)xla_run3) < 0) Py_CLEAR(d);
    if (d && xla_add_target(d, "losskit_rows", (void *)losskit_xla_rows) < 0) Py_CLEAR(d);
    return d;
}
#else
static PyObject *py_xla_targets(PyObject *self, PyObject *args) { return PyDict_New(); }
#endif

/* ================================================================================================
 * The three-array kernels as an XLA FFI target, "losskit_run3" (losskit/_backends/jax.py's
 * _run3_kernel, issue 8): the checked kernels of KERNELS3 (float32: Poisson NLL, Gaussian NLL, Keras's
 * Poisson, the gamma deviance) and KERNELS3_D (float64: Poisson NLL, Gaussian NLL) on XLA's own
 * buffers under jax.jit, without a host callback's copies and without the generic kernels'
 * double-length graphs (gaussian_nll's took ~3 s to compile). Built with the embedding target (setup.py:
 * jaxlib's header found, LOSSKIT_XLA_FFI).
 *
 * Attributes: id (the index in KERNELS3, i.e. numpy.py's id - N_KERNELS, or in KERNELS3_D when wide),
 * wide (0: float32, KERNELS3; 1: float64, KERNELS3_D), prm (float64 array: the kernel's params) and
 * threads (rows split over that many threads, each a contiguous range, when the buffer is large).
 * Operands: y_true, y_pred and the extra array (Gaussian NLL's var; y_pred again for the others), each
 * (..., k) row-major of the kernel's dtype. Results: the per-row value (the C kernel's double rounded
 * to the dtype; NaN where the kernel flagged the row or the value is not finite: jax.py recomputes
 * those rows on the host, as numpy.py does), then, when asked (two results), the unscaled gradient with
 * respect to y_pred. margin ranking (KERNELS3 3, KERNELS3_D 0) is not served: its last parameter
 * makes it write a second gradient. */
#ifdef LOSSKIT_XLA_FFI
typedef struct {
    int id, wide;
    const char *t, *x, *e;
    idx lo, hi, k;
    double *value;
    char *g;
    const double *prm;
} xla_run3_job;

static int xla_run3_known(int64_t id, int64_t wide) {
    if (wide) return (id == 1 || id == 2) && id < N_KERNELS3_D;
    return (id == 0 || id == 1 || id == 2 || id == 4 || id == 5) && id < N_KERNELS3;
}

static void *xla_run3_rows(void *arg) {
    xla_run3_job *j = (xla_run3_job *)arg;
    idx n = j->hi - j->lo, bl = j->k > BLOCK ? j->k : BLOCK;
    if (n <= 0) return NULL;
    size_t es = j->wide ? sizeof(double) : sizeof(float), at = (size_t)j->lo * (size_t)j->k * es;
    double *work = (double *)malloc((size_t)(3 * bl) * sizeof(double));
    if (!work) {  /* no memory for the work buffer: every row handed back (NaN) */
        for (idx r = j->lo; r < j->hi; r++) j->value[r] = NAN;
        return NULL;
    }
    if (j->wide)
        KERNELS3_D[j->id](j->t + at, (const double *)(j->x + at), (const double *)(j->e + at), n, j->k,
                          j->value + j->lo, j->g ? (double *)(j->g + at) : NULL, NULL, work, j->prm);
    else
        KERNELS3[j->id](j->t + at, (const float *)(j->x + at), (const float *)(j->e + at), n, j->k,
                        j->value + j->lo, j->g ? (float *)(j->g + at) : NULL, NULL, work, j->prm);
    free(work);
    for (idx r = j->lo; r < j->hi; r++)
        if (!isfinite(j->value[r])) j->value[r] = NAN;
    return NULL;
}

static XLA_FFI_Error *xla_run3(XLA_FFI_CallFrame *cf) {
    if (xla_metadata(cf) || cf->stage != XLA_FFI_ExecutionStage_EXECUTE) return NULL;
    xla_attrs at = xla_read_attrs(cf);
    int64_t id = at.id, wide = at.wide;
    const double *prm = at.prm_size >= 1 ? at.prm : NULL;
    /* jax.py builds every call; a mismatch here is a bug there: nothing is written */
    XLA_FFI_DataType want = wide ? XLA_FFI_DataType_F64 : XLA_FFI_DataType_F32;
    if (!xla_run3_known(id, wide) || prm == NULL || cf->args.size != 3 || cf->rets.size < 1
        || cf->rets.size > 2)
        return NULL;
    XLA_FFI_Buffer *in[3], *out[2] = {NULL, NULL};
    for (int64_t i = 0; i < 3; i++) {
        if (cf->args.types[i] != XLA_FFI_ArgType_BUFFER) return NULL;
        in[i] = (XLA_FFI_Buffer *)cf->args.args[i];
        if (in[i]->dtype != want) return NULL;
    }
    for (int64_t i = 0; i < cf->rets.size; i++) {
        if (cf->rets.types[i] != XLA_FFI_RetType_BUFFER) return NULL;
        out[i] = (XLA_FFI_Buffer *)cf->rets.rets[i];
        if (out[i]->dtype != want) return NULL;
    }
    const XLA_FFI_Buffer *x = in[1];
    idx k = x->rank > 0 ? (idx)x->dims[x->rank - 1] : 1, rows = 1;
    for (int64_t d = 0; d + 1 < x->rank; d++) rows *= (idx)x->dims[d];
    double *value = xla_values_open(out[0], rows);
    if (!value) return NULL;
    xla_run3_job parts[16] = {{(int)id, (int)wide, (const char *)in[0]->data, (const char *)x->data,
                               (const char *)in[2]->data, 0, rows, k, value,
                               out[1] ? (char *)out[1]->data : NULL, prm}};
    if (rows > 0 && k > 0)
        xla_split_rows(xla_run3_rows, parts, sizeof parts[0], offsetof(xla_run3_job, lo),
                       offsetof(xla_run3_job, hi), rows, k, at.threads, 65536.0);
    else  /* empty rows: handed back (jax.py's fallback gives the generic kernel's answer) */
        for (idx r = 0; r < rows; r++) value[r] = NAN;
    xla_values_close(out[0], value, rows);
    return NULL;
}

static int xla_add_target(PyObject *d, const char *name, void *handler) {
    PyObject *cap = PyCapsule_New(handler, NULL, NULL);
    if (!cap) return -1;
    int rc = PyDict_SetItemString(d, name, cap);
    Py_DECREF(cap);
    return rc;
}
#endif

/* ================================================================================================
 * The two-array row kernels (KERNELS, KERNELS64) as an XLA FFI target, "losskit_rows" (jax.py's
 * _rows_kernel, issue 8): JAX arrays on a CPU device run the same C kernel as NumPy arrays on XLA's
 * own buffers under jax.jit (no host-callback copies; see the embedding handler above).
 * Attributes: id (a KERNELS id; float64 operands run KERNELS64[id]), prm (float64 array: the kernel's
 * params, numpy.py's), threads (rows split over that many threads, contiguous ranges, when the buffer
 * is large). Operands: t (the kernel's first array: x's shape and dtype, or int64 labels for the
 * sparse kernels) and x ((..., k) row-major, float32 or float64). Results: the per-row value (x's
 * dtype: the kernel's double rounded to it; a NaN row is recomputed by jax.py through numpy.py's
 * kernel, which also rechecks a float64 row that is not finite), then, when asked, the gradient
 * (x's shape and dtype, unscaled: jax.py's custom_vjp scales it). Built with the embedding handler
 * (LOSSKIT_XLA_FFI). */
#ifdef LOSSKIT_XLA_FFI
typedef struct {
    int id, wide;
    const char *t, *x;
    size_t t_row, x_row;  /* bytes per row of t and x */
    idx lo, hi, k;
    double *value;
    char *g;
    const double *prm;
} xla_rows_job;

static void *xla_rows_run(void *arg) {
    xla_rows_job *j = (xla_rows_job *)arg;
    idx n = j->hi - j->lo;
    double *work = (double *)malloc((size_t)(3 * (j->k > 0 ? j->k : 1) + 3 * BLOCK) * sizeof(double));
    if (!work) {  /* no memory for the row buffers: every row handed back (NaN) */
        for (idx r = j->lo; r < j->hi; r++) j->value[r] = NAN;
        return NULL;
    }
    const void *t = j->t + (size_t)j->lo * j->t_row;
    const void *x = j->x + (size_t)j->lo * j->x_row;
    void *g = j->g ? (void *)(j->g + (size_t)j->lo * j->x_row) : NULL;
    if (j->wide) KERNELS64[j->id](t, (const double *)x, n, j->k, j->value + j->lo, (double *)g, NULL,
                                  work, j->prm);
    else KERNELS[j->id](t, (const float *)x, n, j->k, j->value + j->lo, (float *)g, NULL, work, j->prm);
    free(work);
    return NULL;
}

static XLA_FFI_Error *losskit_xla_rows(XLA_FFI_CallFrame *cf) {
    if (xla_metadata(cf) || cf->stage != XLA_FFI_ExecutionStage_EXECUTE) return NULL;
    xla_attrs at = xla_read_attrs(cf);
    int64_t id = at.id;
    double none[1] = {0.0};
    /* jax.py builds every call; a mismatch is a bug there: nothing is written */
    if (cf->args.size != 2 || cf->rets.size < 1 || cf->rets.size > 2 || id < 0 || id >= N_KERNELS)
        return NULL;
    for (int64_t i = 0; i < 2; i++)
        if (cf->args.types[i] != XLA_FFI_ArgType_BUFFER) return NULL;
    for (int64_t i = 0; i < cf->rets.size; i++)
        if (cf->rets.types[i] != XLA_FFI_RetType_BUFFER) return NULL;
    const XLA_FFI_Buffer *tb = (XLA_FFI_Buffer *)cf->args.args[0], *xb = (XLA_FFI_Buffer *)cf->args.args[1];
    XLA_FFI_Buffer *vb = (XLA_FFI_Buffer *)cf->rets.rets[0];
    XLA_FFI_Buffer *gb = cf->rets.size == 2 ? (XLA_FFI_Buffer *)cf->rets.rets[1] : NULL;
    int wide = xb->dtype == XLA_FFI_DataType_F64;
    if ((!wide && xb->dtype != XLA_FFI_DataType_F32) || (wide && KERNELS64[id] == NULL)) return NULL;
    idx k = xb->rank > 0 ? (idx)xb->dims[xb->rank - 1] : 1, rows = 1, t_size = 1;
    for (int64_t d = 0; d + 1 < xb->rank; d++) rows *= (idx)xb->dims[d];
    for (int64_t d = 0; d < tb->rank; d++) t_size *= (idx)tb->dims[d];
    size_t esize = wide ? sizeof(double) : sizeof(float);
    size_t t_esize = tb->dtype == XLA_FFI_DataType_F64 || tb->dtype == XLA_FFI_DataType_S64 ? 8 : 4;
    double *value = xla_values_open(vb, rows);
    if (!value) return NULL;
    if (rows > 0 && k > 0) {
        xla_rows_job parts[16] = {{(int)id, wide, (const char *)tb->data, (const char *)xb->data,
                                   (size_t)(t_size / rows) * t_esize, (size_t)k * esize, 0, rows, k, value,
                                   gb ? (char *)gb->data : NULL, at.prm ? at.prm : none}};
        xla_split_rows(xla_rows_run, parts, sizeof parts[0], offsetof(xla_rows_job, lo),
                       offsetof(xla_rows_job, hi), rows, k, at.threads, 262144.0);
    } else {  /* empty rows: 0 (numpy.py's run gives 0 there too) */
        for (idx r = 0; r < rows; r++) value[r] = 0.0;
        if (gb) memset(gb->data, 0, (size_t)rows * (size_t)k * esize);
    }
    xla_values_close(vb, value, rows);
    return NULL;
}
#endif
