/* SETI-style signal search: find the strongest narrow-band tone in a chunk of a noisy signal.
 *
 * stdin:  the chunk, as little-endian float32 samples; their count must be a power of two (2 .. 2^20).
 * stdout: one line "<bin> <power> <snr>": the frequency bin k (1 .. n/2, the DC bin 0 is skipped) whose
 *         power |X[k]|^2 of the discrete Fourier transform is largest, that power, and its ratio to the mean
 *         power of the other bins in 1 .. n/2 (a tone stands far above the noise floor; noise alone gives a
 *         ratio of a few units; "inf" when the other bins are exactly zero).
 * exit:   0 on success, 2 when the input is not a power-of-two count of samples (a message on stderr).
 *
 * The transform is an in-place iterative radix-2 Cooley-Tukey FFT in double precision; the twiddle factors are
 * computed once by sin/cos, so every run of the same input gives bit-identical output (volunteers' replies
 * are compared by hash).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SAMPLES (1u << 20)

static int read_samples(float **out, uint32_t *count) {
    size_t limit = MAX_SAMPLES * sizeof(float), len = 0;
    unsigned char *buf = malloc(limit + 1);  /* one byte more: an input over the limit is seen, not cut */
    if (!buf) return -1;
    for (size_t got; len <= limit && (got = fread(buf + len, 1, limit + 1 - len, stdin)) > 0;) len += got;
    if (len > limit || len % sizeof(float)) { free(buf); return -1; }
    *out = (float *)buf;
    *count = (uint32_t)(len / sizeof(float));
    return 0;
}

static void fft(double *re, double *im, uint32_t n) {
    for (uint32_t i = 1, j = 0; i < n; i++) {  /* bit-reversal permutation */
        uint32_t bit = n >> 1;
        for (; j & bit; bit >>= 1) j ^= bit;
        j |= bit;
        if (i < j) {
            double t = re[i]; re[i] = re[j]; re[j] = t;
            t = im[i]; im[i] = im[j]; im[j] = t;
        }
    }
    double *wr = malloc(n / 2 * sizeof(double)), *wi = malloc(n / 2 * sizeof(double));
    if (!wr || !wi) { fputs("out of memory\n", stderr); exit(3); }
    for (uint32_t k = 0; k < n / 2; k++) {
        wr[k] = cos(-2.0 * M_PI * k / n);
        wi[k] = sin(-2.0 * M_PI * k / n);
    }
    for (uint32_t len = 2; len <= n; len <<= 1) {
        uint32_t half = len / 2, step = n / len;
        for (uint32_t start = 0; start < n; start += len) {
            for (uint32_t k = 0; k < half; k++) {
                double cr = wr[k * step], ci = wi[k * step];
                uint32_t a = start + k, b = a + half;
                double tr = re[b] * cr - im[b] * ci, ti = re[b] * ci + im[b] * cr;
                re[b] = re[a] - tr; im[b] = im[a] - ti;
                re[a] += tr; im[a] += ti;
            }
        }
    }
    free(wr); free(wi);
}

int main(void) {
    float *samples;
    uint32_t n;
    if (read_samples(&samples, &n) != 0 || n < 2 || (n & (n - 1)) != 0) {
        fputs("input must be a power-of-two count (2 .. 2^20) of float32 samples\n", stderr);
        return 2;
    }
    double *re = malloc(n * sizeof(double)), *im = calloc(n, sizeof(double));
    if (!re || !im) { fputs("out of memory\n", stderr); return 3; }
    for (uint32_t i = 0; i < n; i++) re[i] = samples[i];
    free(samples);
    fft(re, im, n);
    uint32_t best = 1;
    double best_power = -1.0;
    for (uint32_t k = 1; k <= n / 2; k++) {
        double power = re[k] * re[k] + im[k] * im[k];
        if (power > best_power) { best_power = power; best = k; }
    }
    double others = 0.0;  /* summed apart, not as total - peak: a pure tone's floor would vanish in rounding */
    for (uint32_t k = 1; k <= n / 2; k++)
        if (k != best) others += re[k] * re[k] + im[k] * im[k];
    double floor_power = n / 2 > 1 ? others / (n / 2 - 1) : 0.0;
    double snr = floor_power > 0.0 ? best_power / floor_power : INFINITY;
    printf("%u %.6e %.3f\n", best, best_power, snr);
    return 0;
}
