/* Proof-of-work style hash search: find the nonces whose SHA-256(prefix || nonce) starts with `bits` zero bits.
 *
 * stdin:  a header line "<bits> <first> <count>\n" (decimal: 1 <= bits <= 256, the nonces first .. first+count-1,
 *         count <= 2^32), then the prefix bytes (the rest of stdin, at most 1 MiB).
 * stdout: every nonce found, in increasing order, one per line in decimal; the nonce is hashed as 8 bytes,
 *         big-endian, after the prefix.
 * exit:   0 on success, 2 on a malformed header or an oversized prefix (a message on stderr).
 *
 * SHA-256 as FIPS 180-4 section 6.2. The prefix's full 64-byte blocks are compressed once (a midstate) and each
 * nonce only costs its last block or two.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PREFIX (1u << 20)

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void compress(uint32_t state[8], const unsigned char block[64]) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16 | (uint32_t)block[4 * i + 2] << 8 |
               block[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    state[0] += a; state[1] += b; state[2] += c; state[3] += d;
    state[4] += e; state[5] += f; state[6] += g; state[7] += h;
}

static int leading_zero_bits_at_least(const uint32_t digest[8], unsigned bits) {
    for (int i = 0; i < 8 && bits > 0; i++) {
        unsigned take = bits < 32 ? bits : 32;
        if (take == 32 ? digest[i] != 0 : (digest[i] >> (32 - take)) != 0) return 0;
        bits -= take;
    }
    return 1;
}

int main(void) {
    unsigned bits;
    unsigned long long first, count;
    if (scanf("%u %llu %llu", &bits, &first, &count) != 3 || getchar() != '\n' || bits < 1 || bits > 256 ||
        count > (1ull << 32)) {
        fputs("header must be \"<bits 1..256> <first> <count <= 2^32>\\n\"\n", stderr);
        return 2;
    }
    unsigned char *prefix = malloc(MAX_PREFIX + 1);
    if (!prefix) { fputs("out of memory\n", stderr); return 3; }
    size_t len = fread(prefix, 1, MAX_PREFIX + 1, stdin);
    if (len > MAX_PREFIX) { fputs("prefix over 1 MiB\n", stderr); return 2; }

    static const uint32_t IV[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    uint32_t mid[8];
    memcpy(mid, IV, sizeof mid);
    size_t full = len / 64 * 64;
    for (size_t off = 0; off < full; off += 64) compress(mid, prefix + off);
    size_t rest = len - full;                      /* prefix bytes left for the tail blocks */
    size_t tail_len = rest + 8 + 1 + 8 <= 64 ? 64 : 128;
    unsigned char tail[128];
    memset(tail, 0, sizeof tail);
    memcpy(tail, prefix + full, rest);
    tail[rest + 8] = 0x80;                         /* FIPS 180-4 5.1.1: a 1 bit, zeros, the length in bits */
    uint64_t total_bits = (uint64_t)(len + 8) * 8;
    for (int i = 0; i < 8; i++) tail[tail_len - 1 - i] = (unsigned char)(total_bits >> (8 * i));

    for (unsigned long long i = 0; i < count; i++) {
        uint64_t nonce = first + i;
        for (int b = 0; b < 8; b++) tail[rest + b] = (unsigned char)(nonce >> (56 - 8 * b));
        uint32_t state[8];
        memcpy(state, mid, sizeof state);
        compress(state, tail);
        if (tail_len == 128) compress(state, tail + 64);
        if (leading_zero_bits_at_least(state, bits)) printf("%llu\n", (unsigned long long)nonce);
    }
    return 0;
}
