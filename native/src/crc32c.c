/*
 * crc32c: CRC-32C (Castagnoli, reflected), shared by the addons: the parameter-table
 * format (strata_lookup.c) and the block checksums the FUSE data plane checks (strata_fuse.c),
 * so both compute exactly what cache/checksum.ts stores. SSE4.2 when the CPU has it.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include "crc32c.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif


#define CRC32C_POLY 0x82f63b78u /* Castagnoli polynomial, bit-reversed */

static uint32_t crc_table[8][256];
/* x^(2^k) modulo the polynomial, for shifting a CRC over k-th powers of two bits. */
static uint32_t x2n_table[64];
static int have_sse42 = 0;

/* a * b modulo the polynomial, in the reflected representation (bit 31 is x^0). */
uint32_t crc32c_gf2_multiply(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (uint32_t bit = 1u << 31; bit != 0; bit >>= 1) {
    if (a & bit) product ^= b;
    b = (b & 1) ? (b >> 1) ^ CRC32C_POLY : b >> 1;
  }
  return product;
}

/* x^(8 * bytes) modulo the polynomial: multiplying a raw CRC state by it appends `bytes` zeros. */
uint32_t crc32c_shift_for_bytes(uint64_t bytes) {
  uint32_t result = 1u << 31; /* x^0 */
  for (int k = 3; bytes != 0; bytes >>= 1, k++) {
    if (bytes & 1) result = crc32c_gf2_multiply(x2n_table[k & 63], result);
  }
  return result;
}

static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int b = 0; b < 8; b++) c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
    crc_table[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++) {
    for (int t = 1; t < 8; t++) crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
  }
  uint32_t p = 1u << 30; /* x^1 */
  for (int k = 0; k < 64; k++) {
    x2n_table[k] = p;
    p = crc32c_gf2_multiply(p, p);
  }
#if defined(__x86_64__)
  __builtin_cpu_init();
  have_sse42 = __builtin_cpu_supports("sse4.2");
#endif
}

/* Raw state update (no pre/post inversion), eight bytes a step by table lookups. */
static uint32_t crc_software(uint32_t crc, const uint8_t *p, size_t n) {
  while (n > 0 && ((uintptr_t)p & 7) != 0) {
    crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    n--;
  }
  while (n >= 8) {
    uint64_t word;
    memcpy(&word, p, 8);
    word ^= crc;
    crc = crc_table[7][word & 0xff] ^ crc_table[6][(word >> 8) & 0xff] ^ crc_table[5][(word >> 16) & 0xff] ^
          crc_table[4][(word >> 24) & 0xff] ^ crc_table[3][(word >> 32) & 0xff] ^ crc_table[2][(word >> 40) & 0xff] ^
          crc_table[1][(word >> 48) & 0xff] ^ crc_table[0][word >> 56];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
  return crc;
}

#if defined(__x86_64__)
/*
 * The crc32 instruction has a latency of 3 cycles and a throughput of 1, so three
 * independent streams over thirds of a stripe keep it busy; the three states are then
 * joined by shifting the first two over the bytes that follow them (a GF(2) multiply).
 * 8 KiB a stream: the two shift constants are computed once per call, and a 150 MB index
 * is about 6,100 stripes, so the joins cost nothing measurable.
 */
#define STREAM_BYTES 8192

/*
 * Three raw CRC states, each carried over its own run of `words` 8-byte words, interleaved so
 * that the crc32 instruction's latency is paid once for three: the inner loop of both the long
 * input split in three streams (crc_hardware) and three separate buffers (crc32c_three).
 */
__attribute__((target("sse4.2"))) static inline void crc3_words(uint64_t state[3], const uint8_t *a, const uint8_t *b, const uint8_t *c, size_t words) {
  uint64_t s0 = state[0], s1 = state[1], s2 = state[2];
  for (size_t i = 0; i < words * 8; i += 8) {
    uint64_t wa, wb, wc;
    memcpy(&wa, a + i, 8);
    memcpy(&wb, b + i, 8);
    memcpy(&wc, c + i, 8);
    s0 = _mm_crc32_u64(s0, wa);
    s1 = _mm_crc32_u64(s1, wb);
    s2 = _mm_crc32_u64(s2, wc);
  }
  state[0] = s0;
  state[1] = s1;
  state[2] = s2;
}

__attribute__((target("sse4.2"))) static uint32_t crc_hardware(uint32_t crc, const uint8_t *p, size_t n) {
  uint64_t c0 = crc;
  while (n > 0 && ((uintptr_t)p & 7) != 0) {
    c0 = _mm_crc32_u8((uint32_t)c0, *p++);
    n--;
  }
  if (n >= 3 * STREAM_BYTES) {
    const uint32_t shift1 = crc32c_shift_for_bytes(STREAM_BYTES);
    const uint32_t shift2 = crc32c_shift_for_bytes(2 * STREAM_BYTES);
    while (n >= 3 * STREAM_BYTES) {
      uint64_t state[3] = {c0, 0, 0};
      crc3_words(state, p, p + STREAM_BYTES, p + 2 * STREAM_BYTES, STREAM_BYTES / 8);
      c0 = crc32c_gf2_multiply(shift2, (uint32_t)state[0]) ^ crc32c_gf2_multiply(shift1, (uint32_t)state[1]) ^ (uint32_t)state[2];
      p += 3 * STREAM_BYTES;
      n -= 3 * STREAM_BYTES;
    }
  }
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    c0 = _mm_crc32_u64(c0, w);
    p += 8;
    n -= 8;
  }
  while (n-- > 0) c0 = _mm_crc32_u8((uint32_t)c0, *p++);
  return (uint32_t)c0;
}
#endif

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static void three_hardware(const uint8_t *a, const uint8_t *b, const uint8_t *c, size_t n, uint32_t out[3]) {
  uint64_t state[3] = {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu};
  crc3_words(state, a, b, c, n / 8);
  uint64_t ca = state[0], cb = state[1], cc = state[2];
  for (size_t i = n - n % 8; i < n; i++) {
    ca = _mm_crc32_u8((uint32_t)ca, a[i]);
    cb = _mm_crc32_u8((uint32_t)cb, b[i]);
    cc = _mm_crc32_u8((uint32_t)cc, c[i]);
  }
  out[0] = ~(uint32_t)ca;
  out[1] = ~(uint32_t)cb;
  out[2] = ~(uint32_t)cc;
}
#endif

void crc32c_three(const uint8_t *a, const uint8_t *b, const uint8_t *c, size_t n, uint32_t out[3]) {
#if defined(__x86_64__)
  if (have_sse42) {
    three_hardware(a, b, c, n, out);
    return;
  }
#endif
  out[0] = crc32c_update(0, a, n);
  out[1] = crc32c_update(0, b, n);
  out[2] = crc32c_update(0, c, n);
}

/*
 * The raw state is linear: raw(s, B) = shift(|B|) * s ^ raw(0, B). With the inversions of the
 * finished CRC, crc(A B) = ~(shift * ~crc(A) ^ raw(0, B)) and crc(B) = ~(shift * ~0 ^ raw(0, B)),
 * which leaves shift * crc(A) ^ crc(B).
 */
uint32_t crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t bytes_b) {
  return crc32c_gf2_multiply(crc32c_shift_for_bytes(bytes_b), crc_a) ^ crc_b;
}

/* Raw state update over any bytes, by the fastest means the CPU has. */
uint32_t crc32c_raw(uint32_t state, const uint8_t *p, size_t n) {
#if defined(__x86_64__)
  if (have_sse42) return crc_hardware(state, p, n);
#endif
  return crc_software(state, p, n);
}

uint32_t crc32c_update(uint32_t crc, const uint8_t *p, size_t n) { return ~crc32c_raw(~crc, p, n); }

void crc32c_init(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, crc_init);
}
