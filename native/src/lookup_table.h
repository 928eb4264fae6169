/*
 * The lookup addon's view of a mapped table (the base) and the key hash of the table
 * format, shared by strata_lookup.c (the mget kernel) and strata_overlay.c (in-place
 * deltas). The hash, shard and slot functions are those of params/key-hash.ts: they are
 * the format.
 */
#ifndef STRATA_LOOKUP_TABLE_H
#define STRATA_LOOKUP_TABLE_H

#define NAPI_VERSION 8
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

#define EMPTY_ROW 0xffffffffu

typedef struct {
  const uint32_t *index;
  uint64_t index_slots;
  uint32_t shard_count;
  uint64_t *shard_first;
  uint64_t *shard_homes;
  uint32_t chunk_count;
  const uint32_t **chunks;
  uint64_t *chunk_rows;
  uint32_t chunk_shift;
  uint32_t dim;
  uint32_t seed;
  uint64_t key_count;
  uint32_t ref_count;
  napi_ref *refs;
  /* Mappings made by mapTable (none for a table over Buffers). */
  void *mapped[2];
  size_t mapped_bytes[2];
} lookup_table;

/* MurmurHash3 x86_32 of the 8 key bytes, as params/key-hash.ts computes it. */
static inline uint32_t rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

static inline uint32_t key_hash(uint32_t lo, uint32_t hi, uint32_t seed) {
  uint32_t h = seed, k = lo * 0xcc9e2d51u;
  k = rotl32(k, 15);
  h ^= k * 0x1b873593u;
  h = rotl32(h, 13);
  h = h * 5 + 0xe6546b64u;
  k = rotl32(hi * 0xcc9e2d51u, 15);
  h ^= k * 0x1b873593u;
  h = rotl32(h, 13);
  h = h * 5 + 0xe6546b64u;
  h ^= 8;
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

/* floor(h * n / 2^32): exact in 64 bits for n below 2^32 (home slots and shard counts are). */
static inline uint64_t scale_to_range(uint32_t h, uint64_t n) { return ((uint64_t)h * n) >> 32; }

static inline uint32_t shard_of(uint32_t h, uint32_t shards) {
  return (uint32_t)scale_to_range((h ^ (h >> 15)) * 0x2c1b3c6du, shards);
}

/* The home slot of a key in the base table, where its probe starts (index_slots or more: none). */
static inline uint64_t base_home(const lookup_table *t, uint32_t lo, uint32_t hi) {
  if (t->index_slots == 0) return 0;
  const uint32_t h = key_hash(lo, hi, t->seed);
  const uint32_t s = t->shard_count == 1 ? 0 : shard_of(h, t->shard_count);
  return t->shard_first[s] + scale_to_range(h, t->shard_homes[s]);
}

/* The row of a key whose probe starts at `home` in the base table, or EMPTY_ROW (also for a row outside the mapping). */
static inline uint32_t base_row_from(const lookup_table *t, uint64_t home, uint32_t lo, uint32_t hi) {
  for (uint64_t slot = home; slot < t->index_slots; slot++) {
    const uint32_t *entry = t->index + slot * 3;
    if (entry[2] == EMPTY_ROW) return EMPTY_ROW;
    if (entry[0] == lo && entry[1] == hi) return entry[2] < t->key_count ? entry[2] : EMPTY_ROW;
  }
  return EMPTY_ROW;
}

/* CRC-32C (strata_lookup.c): crc32c_update continues a finished CRC; the parallel one splits large inputs over threads. */
uint32_t strata_crc32c(uint32_t crc, const uint8_t *p, size_t n);
uint32_t strata_crc32c_parallel(uint32_t crc, const uint8_t *p, size_t n, uint32_t threads);

#endif
