#ifndef STRATA_CRC32C_H
#define STRATA_CRC32C_H
#include <stddef.h>
#include <stdint.h>

/* Builds the tables and detects SSE4.2; call once before the others (idempotent, thread-safe). */
void crc32c_init(void);
/* CRC-32C of `n` bytes continuing `crc` (0 to start), initial and final value 0xFFFFFFFF, like zlib's crc32(). */
uint32_t crc32c_update(uint32_t crc, const uint8_t *p, size_t n);
/* Raw state update, without the pre and post inversion. */
uint32_t crc32c_raw(uint32_t state, const uint8_t *p, size_t n);
/* a * b modulo the polynomial (reflected); with crc32c_shift_for_bytes, joins CRCs of consecutive parts. */
uint32_t crc32c_gf2_multiply(uint32_t a, uint32_t b);
/* x^(8 * bytes) modulo the polynomial: multiplying a raw state by it appends `bytes` zero bytes. */
uint32_t crc32c_shift_for_bytes(uint64_t bytes);
/* The CRC-32C (as crc32c_update from 0) of A then B, from A's and B's own CRCs and B's length. */
uint32_t crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t bytes_b);
/*
 * The CRC-32C (as crc32c_update from 0) of three separate buffers of `n` bytes each, into
 * out[0..2]: interleaved, so that the crc32 instruction's latency is paid once for three.
 */
void crc32c_three(const uint8_t *a, const uint8_t *b, const uint8_t *c, size_t n, uint32_t out[3]);

#endif
