/*
 * strata_lookup: the parameter-table lookup kernel and the CRC-32C the table format uses,
 * as a Node-API addon. params/lookup-binding.ts loads it; without it the same work runs in
 * JavaScript (params/served-table.ts, params/crc32c.ts), slower but with the same answers.
 *
 *   crc32c(data: Uint8Array, crc: number, threads?: number) -> number
 *       CRC-32C (Castagnoli, reflected, initial and final value 0xFFFFFFFF) of `data`,
 *       continuing `crc` (0 to start), like zlib's crc32(). SSE4.2 when the CPU has it.
 *       With threads > 1 and a large input, the parts are checksummed on that many threads
 *       at once and joined (recovery checks a 150 MB index this way).
 *
 *   table(index, first, homes, chunks, chunkShift, dim, seed, keyCount) -> handle
 *       index:  Buffer of the index region (slots of 3 uint32: key lo, key hi, row)
 *       first, homes: Float64Array per shard (first slot, home slots)
 *       chunks: Array of Buffers, the values chunks (2^chunkShift rows of dim float32 each)
 *       The handle keeps references to every Buffer, so the mappings live as long as it.
 *
 *   mapTable(fd, indexOffset, indexBytes, valuesOffset, valuesBytes, first, homes, dim, seed, keyCount) -> handle
 *       The same handle over mappings this addon makes itself (read-only, MAP_SHARED; the
 *       offsets are page multiples), unmapped when the handle is garbage-collected. No
 *       JavaScript Buffer stands for them, so V8 counts none of it as external memory: a
 *       table of 800 MB in Buffers set off several garbage collections "for external memory
 *       pressure" while a daemon recovered.
 *   crc32cOf(handle, region, crc, threads) -> number   CRC-32C of a mapTable handle's index
 *       (region 0) or values (region 1), as crc32c() computes it.
 *   slotRow(handle, slot) -> number     the row field of an index slot (0xFFFFFFFF: empty).
 *   resident(handle) -> number          bytes of a mapTable handle's mappings in memory (mincore).
 *   unmapTable(handle)                  releases a handle's mappings now (a replaced version's
 *                                       memory on tmpfs is freed at once, not at some later
 *                                       garbage collection); the handle then finds no key.
 *
 *   mget(handle, keys: Uint32Array, n, from, to, out: Uint32Array) -> found
 *       Keys [from, to) of an n-key batch, given as uint32 halves (keys[2i] low,
 *       keys[2i+1] high): sets their found bits in the bitmap at out[0 .. ceil(n/32)) and
 *       writes their rows after it (zeros when missing). `from` is a multiple of 32 and `to`
 *       too unless it is n, so callers answering parts of one batch write disjoint words.
 *       Each call counts itself as a lookup in progress while it runs: in-place deltas pace
 *       themselves while there are some (strata_overlay.c, "pacing").
 *
 * The hash, shard and slot functions are the ones of params/key-hash.ts: they are the
 * format, and params/served-table.test.ts checks both kernels give the same answers.
 * Every slot and row read is bounds-checked, so a table file changed under its mapping
 * gives wrong answers at worst, never a read outside the mapping.
 */
#include <pthread.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "resident.h"
#include "lookup_table.h"
#include "strata_overlay.h"
#include "crc32c.h"

/* ---------- CRC-32C over threads (the CRC itself: crc32c.c) ---------- */

/* Parts of one input checksummed on several threads: each part starts from a zero state. */
#define MAX_CRC_THREADS 16
/* Below this, starting a thread costs more than it saves (about 50 us against 4 MiB at 12 GB/s). */
#define PARALLEL_MIN_BYTES (4u << 20)

typedef struct {
  const uint8_t *p;
  size_t n;
  uint32_t state;
} crc_part;

static void *crc_part_run(void *arg) {
  crc_part *part = arg;
  part->state = crc32c_raw(0, part->p, part->n);
  return NULL;
}

static uint32_t crc32c_parallel(uint32_t crc, const uint8_t *p, size_t n, uint32_t threads) {
  if (threads > MAX_CRC_THREADS) threads = MAX_CRC_THREADS;
  if (threads < 2 || n < PARALLEL_MIN_BYTES) return crc32c_update(crc, p, n);
  crc_part parts[MAX_CRC_THREADS];
  pthread_t ids[MAX_CRC_THREADS];
  int started[MAX_CRC_THREADS] = {0};
  const size_t step = n / threads;
  for (uint32_t t = 0; t < threads; t++) {
    parts[t].p = p + t * step;
    parts[t].n = t + 1 == threads ? n - t * step : step;
    /* Part 0 runs on this thread, from the caller's state. */
    if (t > 0) started[t] = pthread_create(&ids[t], NULL, crc_part_run, &parts[t]) == 0;
  }
  uint32_t state = crc32c_raw(~crc, parts[0].p, parts[0].n);
  for (uint32_t t = 1; t < threads; t++) {
    if (started[t]) pthread_join(ids[t], NULL);
    else crc_part_run(&parts[t]); /* no thread to be had: do the part here */
    /* Linear in the state: shift what came before over this part, then add the part. */
    state = crc32c_gf2_multiply(crc32c_shift_for_bytes(parts[t].n), state) ^ parts[t].state;
  }
  return ~state;
}

/*
 * CRC-32C of a file's byte range read with pread into a buffer of each thread's own, not
 * through a mapping: the kernel copies from the page cache through its own long-lived
 * mapping, so a check does not touch every page of a mapping for the first time, which is
 * what dominated recovery on the development VM (first touch of a page about 2-3 us there;
 * bench/params-delta's recovery rows time the same checks again over touched mappings).
 */
/*
 * 256 KiB: big enough that pread's cost per call vanishes, small enough that the buffer pread
 * just filled is still in the core's L2 when the CRC reads it back. Recovery of a 10M-key table
 * with 1M upserts of deltas (this check and the overlay's, CHECK_READ_BLOCKS there), 1 MiB
 * against 256 KiB in fresh processes taking turns, three runs at load 4.6-11: medians 80 / 68,
 * 81 / 73 and 47 / 45 ms.
 */
#define FILE_CRC_CHUNK (256u << 10)

typedef struct {
  int fd;
  uint64_t offset, n;
  uint32_t state;
  int err;
} file_crc_part;

static void *file_crc_part_run(void *arg) {
  file_crc_part *part = arg;
  part->state = 0;
  part->err = 0;
  uint8_t *buf = malloc(FILE_CRC_CHUNK);
  if (!buf) {
    part->err = ENOMEM;
    return NULL;
  }
  for (uint64_t done = 0; done < part->n;) {
    const size_t want = part->n - done < FILE_CRC_CHUNK ? (size_t)(part->n - done) : FILE_CRC_CHUNK;
    const ssize_t got = pread(part->fd, buf, want, (off_t)(part->offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      part->err = got < 0 ? errno : EIO; /* 0: the file is shorter than its header says */
      break;
    }
    part->state = crc32c_raw(part->state, buf, (size_t)got);
    done += (uint64_t)got;
  }
  free(buf);
  return NULL;
}

/* CRC-32C of [offset, offset + n) of fd continuing crc, on up to `threads` threads; 0 or errno in *err. */
static uint32_t crc32c_file(int fd, uint64_t offset, uint64_t n, uint32_t crc, uint32_t threads, int *err) {
  if (threads > MAX_CRC_THREADS) threads = MAX_CRC_THREADS;
  if (threads < 1 || n < PARALLEL_MIN_BYTES) threads = 1;
  file_crc_part parts[MAX_CRC_THREADS];
  pthread_t ids[MAX_CRC_THREADS];
  int started[MAX_CRC_THREADS] = {0};
  const uint64_t step = n / threads;
  for (uint32_t t = 0; t < threads; t++) {
    parts[t].fd = fd;
    parts[t].offset = offset + t * step;
    parts[t].n = t + 1 == threads ? n - t * step : step;
    if (t > 0) started[t] = pthread_create(&ids[t], NULL, file_crc_part_run, &parts[t]) == 0;
  }
  file_crc_part_run(&parts[0]);
  uint32_t state = 0;
  *err = 0;
  for (uint32_t t = 0; t < threads; t++) {
    if (t > 0) {
      if (started[t]) pthread_join(ids[t], NULL);
      else file_crc_part_run(&parts[t]);
    }
    if (parts[t].err && !*err) *err = parts[t].err;
    /* Each part's raw state started from zero: shift what came before over it, then add it. */
    state = t == 0 ? parts[0].state : crc32c_gf2_multiply(crc32c_shift_for_bytes(parts[t].n), state) ^ parts[t].state;
  }
  /* The caller's crc continues over the whole range: its raw state shifted over all n bytes. */
  return ~(crc32c_gf2_multiply(crc32c_shift_for_bytes(n), ~crc) ^ state);
}

uint32_t strata_crc32c(uint32_t crc, const uint8_t *p, size_t n) { return crc32c_update(crc, p, n); }
uint32_t strata_crc32c_parallel(uint32_t crc, const uint8_t *p, size_t n, uint32_t threads) { return crc32c_parallel(crc, p, n, threads); }

/* ---------- helpers ---------- */

static napi_value fail(napi_env env, const char *message) {
  napi_throw_type_error(env, "EINVAL", message);
  return NULL;
}

static int get_bytes(napi_env env, napi_value value, uint8_t **data, size_t *length) {
  napi_typedarray_type type;
  size_t elements;
  napi_value buffer;
  size_t offset;
  void *raw;
  if (napi_get_typedarray_info(env, value, &type, &elements, &raw, &buffer, &offset) != napi_ok) return 0;
  size_t width = 1;
  switch (type) {
    case napi_int8_array: case napi_uint8_array: case napi_uint8_clamped_array: width = 1; break;
    case napi_int16_array: case napi_uint16_array: width = 2; break;
    case napi_int32_array: case napi_uint32_array: case napi_float32_array: width = 4; break;
    default: width = 8; break;
  }
  *data = raw;
  *length = elements * width;
  return 1;
}

/* The elements of a typed array that must be of `want` type (Uint32Array, Float64Array). */
static int get_typed(napi_env env, napi_value value, napi_typedarray_type want, void **data, size_t *count) {
  napi_typedarray_type type;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, value, &type, count, data, &buffer, &offset) != napi_ok) return 0;
  return type == want;
}

static int get_u32_array(napi_env env, napi_value value, uint32_t **data, size_t *words) {
  return get_typed(env, value, napi_uint32_array, (void **)data, words);
}

static int get_f64_array(napi_env env, napi_value value, double **data, size_t *count) {
  return get_typed(env, value, napi_float64_array, (void **)data, count);
}

/* A whole number a JavaScript double holds exactly (below 2^53). */
static int get_size(napi_env env, napi_value value, uint64_t *out) {
  double d;
  if (napi_get_value_double(env, value, &d) != napi_ok || d < 0 || d > 9007199254740991.0 || d != (double)(uint64_t)d) return 0;
  *out = (uint64_t)d;
  return 1;
}

static int get_u32(napi_env env, napi_value value, uint32_t *out) {
  uint64_t v;
  if (!get_size(env, value, &v) || v > UINT32_MAX) return 0;
  *out = (uint32_t)v;
  return 1;
}

/* ---------- crc32c(data, crc) ---------- */

static napi_value js_crc32c(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint8_t *data;
  size_t length;
  uint32_t crc = 0, threads = 1;
  napi_valuetype type = napi_undefined;
  if (argc < 1 || !get_bytes(env, argv[0], &data, &length)) return fail(env, "crc32c(data, crc, threads) expects a typed array");
  if (argc >= 2 && napi_typeof(env, argv[1], &type) == napi_ok && type != napi_undefined && !get_u32(env, argv[1], &crc))
    return fail(env, "crc32c(data, crc, threads): crc must be a uint32");
  if (argc >= 3 && napi_typeof(env, argv[2], &type) == napi_ok && type != napi_undefined && (!get_u32(env, argv[2], &threads) || threads == 0))
    return fail(env, "crc32c(data, crc, threads): threads must be a positive integer");
  napi_value result;
  napi_create_uint32(env, crc32c_parallel(crc, data, length, threads), &result);
  return result;
}

/* ---------- tables ---------- */


static void unmap_table(lookup_table *t) {
  for (int i = 0; i < 2; i++) {
    if (t->mapped[i]) munmap(t->mapped[i], t->mapped_bytes[i]);
    t->mapped[i] = NULL;
    t->mapped_bytes[i] = 0;
  }
  /* Nothing left to read: every probe ends at once and every row is out of range. */
  t->index_slots = 0;
  t->key_count = 0;
  t->chunk_count = 0;
}

static void free_table(lookup_table *t) {
  unmap_table(t);
  free(t->shard_first);
  free(t->shard_homes);
  free((void *)t->chunks);
  free(t->chunk_rows);
  free(t->refs);
  free(t);
}

/* Copies the shard directory in, after checking every shard's home slots lie in the index. */
static int set_shards(lookup_table *t, const double *first, const double *homes, size_t shards) {
  for (size_t s = 0; s < shards; s++) {
    if (first[s] < 0 || homes[s] < 1 || first[s] + homes[s] > (double)t->index_slots) return 0;
    t->shard_first[s] = (uint64_t)first[s];
    t->shard_homes[s] = (uint64_t)homes[s];
  }
  return 1;
}

/* A table with room for `shards` shard entries and `chunk_slots` chunks (and as many Buffer references); NULL when out of memory. */
static lookup_table *alloc_table(size_t shards, uint32_t chunk_slots) {
  lookup_table *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->shard_first = calloc(shards, sizeof(uint64_t));
  t->shard_homes = calloc(shards, sizeof(uint64_t));
  t->chunks = calloc(chunk_slots, sizeof(uint32_t *));
  t->chunk_rows = calloc(chunk_slots, sizeof(uint64_t));
  t->refs = calloc(chunk_slots, sizeof(napi_ref));
  if (!t->shard_first || !t->shard_homes || !t->chunks || !t->chunk_rows || !t->refs) {
    free_table(t);
    return NULL;
  }
  return t;
}

static void finalize_table(napi_env env, void *data, void *hint) {
  (void)hint;
  lookup_table *t = data;
  for (uint32_t i = 0; i < t->ref_count; i++) napi_delete_reference(env, t->refs[i]);
  free_table(t);
}

static napi_value js_table(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 8) return fail(env, "table(index, first, homes, chunks, chunkShift, dim, seed, keyCount) takes 8 arguments");
  uint8_t *index;
  size_t index_bytes;
  double *first, *homes;
  size_t shards, homes_count;
  uint32_t chunk_count, chunk_shift, dim, seed;
  double key_count;
  bool is_array;
  if (!get_bytes(env, argv[0], &index, &index_bytes) || ((uintptr_t)index & 3) != 0) return fail(env, "table: index must be a 4-byte aligned Buffer");
  if (!get_f64_array(env, argv[1], &first, &shards) || !get_f64_array(env, argv[2], &homes, &homes_count) || shards != homes_count || shards == 0)
    return fail(env, "table: first and homes must be Float64Arrays of one entry per shard");
  if (napi_is_array(env, argv[3], &is_array) != napi_ok || !is_array || napi_get_array_length(env, argv[3], &chunk_count) != napi_ok)
    return fail(env, "table: chunks must be an Array of Buffers");
  if (!get_u32(env, argv[4], &chunk_shift) || chunk_shift > 32 || !get_u32(env, argv[5], &dim) || dim == 0 || !get_u32(env, argv[6], &seed) ||
      napi_get_value_double(env, argv[7], &key_count) != napi_ok || key_count < 0)
    return fail(env, "table: chunkShift, dim, seed and keyCount must be integers (dim > 0)");

  /* One chunk slot more than chunks: the index Buffer's reference. */
  lookup_table *t = alloc_table(shards, chunk_count + 1);
  if (!t) return fail(env, "table: out of memory");
  t->index = (const uint32_t *)index;
  t->index_slots = index_bytes / 12;
  t->shard_count = (uint32_t)shards;
  t->chunk_count = chunk_count;
  t->chunk_shift = chunk_shift;
  t->dim = dim;
  t->seed = seed;
  t->key_count = (uint64_t)key_count;
  if (!set_shards(t, first, homes, shards)) {
    free_table(t);
    return fail(env, "table: a shard lies outside the index");
  }
  for (uint32_t c = 0; c < chunk_count; c++) {
    napi_value chunk;
    uint8_t *data;
    size_t bytes;
    if (napi_get_element(env, argv[3], c, &chunk) != napi_ok || !get_bytes(env, chunk, &data, &bytes) || ((uintptr_t)data & 3) != 0) {
      finalize_table(env, t, NULL);
      return fail(env, "table: every chunk must be a 4-byte aligned Buffer");
    }
    t->chunks[c] = (const uint32_t *)data;
    t->chunk_rows[c] = bytes / ((uint64_t)dim * 4);
    napi_create_reference(env, chunk, 1, &t->refs[t->ref_count++]);
  }
  napi_create_reference(env, argv[0], 1, &t->refs[t->ref_count++]);

  napi_value handle;
  if (napi_create_external(env, t, finalize_table, NULL, &handle) != napi_ok) {
    finalize_table(env, t, NULL);
    return fail(env, "table: could not create the handle");
  }
  return handle;
}

/*
 * Keys handled per pass: hashing all of them and touching their home slots first, then
 * probing, then touching rows, then copying, lets the CPU overlap the cache misses of a
 * whole group. 64 keys keep about 8 KiB of index and values lines in flight, well within L1
 * and the line-fill buffers' reach over a pass.
 */
#define GROUP 64

static napi_value js_mget(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  lookup_table *t;
  overlay *ov = NULL;
  uint32_t *keys, *out;
  size_t key_words, out_words;
  uint32_t n, from, to;
  if (argc < 6 || napi_get_value_external(env, argv[0], (void **)&t) != napi_ok) return fail(env, "mget(handle, keys, n, from, to, out): bad handle");
  if (!get_u32_array(env, argv[1], &keys, &key_words) || !get_u32(env, argv[2], &n) || !get_u32(env, argv[3], &from) ||
      !get_u32(env, argv[4], &to) || !get_u32_array(env, argv[5], &out, &out_words))
    return fail(env, "mget(handle, keys: Uint32Array, n, from, to, out: Uint32Array, overlay?)");
  if (argc >= 7 && !get_overlay(env, argv[6], &ov)) return fail(env, "mget: the 7th argument must be an overlay handle or undefined");
  const uint64_t dim = t->dim;
  const uint64_t bitmap_words = ((uint64_t)n + 31) / 32;
  if ((uint64_t)key_words < 2 * (uint64_t)n || from > to || to > n || (from & 31) != 0 || (to != n && (to & 31) != 0) ||
      (uint64_t)out_words < bitmap_words + (uint64_t)n * dim)
    return fail(env, "mget: keys, range or answer buffer do not fit the batch");

  overlay_lookups_begin();
  const uint32_t *index = t->index;
  const uint32_t shift = t->chunk_shift; /* up to 32: rows are split with 64-bit shifts */
  const uint64_t mask = ((uint64_t)1 << shift) - 1;
  uint64_t slots[GROUP];
  uint32_t rows[GROUP];
  uint32_t found = 0;
  for (uint32_t w = from / 32; w < (to + 31) / 32; w++) out[w] = 0;
  for (uint32_t start = from; start < to; start += GROUP) {
    const uint32_t count = to - start < GROUP ? to - start : GROUP;
    for (uint32_t i = 0; i < count; i++) {
      const uint32_t lo = keys[2 * (start + i)], hi = keys[2 * (start + i) + 1];
      const uint32_t h = key_hash(lo, hi, t->seed);
      const uint32_t s = t->shard_count == 1 ? 0 : shard_of(h, t->shard_count);
      slots[i] = t->shard_first[s] + scale_to_range(h, t->shard_homes[s]);
      __builtin_prefetch(index + slots[i] * 3);
    }
    for (uint32_t i = 0; i < count; i++) {
      const uint32_t lo = keys[2 * (start + i)], hi = keys[2 * (start + i) + 1];
      uint32_t row = EMPTY_ROW;
      for (uint64_t slot = slots[i]; slot < t->index_slots; slot++) {
        const uint32_t *entry = index + slot * 3;
        if (entry[2] == EMPTY_ROW) break;
        if (entry[0] == lo && entry[1] == hi) {
          row = entry[2];
          break;
        }
      }
      if (row != EMPTY_ROW && (row >= t->key_count || ((uint64_t)row >> shift) >= t->chunk_count || (row & mask) >= t->chunk_rows[(uint64_t)row >> shift])) row = EMPTY_ROW;
      rows[i] = row;
      if (row != EMPTY_ROW) __builtin_prefetch(t->chunks[(uint64_t)row >> shift] + (row & mask) * dim);
    }
    uint32_t *dest = out + bitmap_words + (uint64_t)start * dim;
    for (uint32_t i = 0; i < count; i++, dest += dim) {
      const uint32_t row = rows[i];
      if (row == EMPTY_ROW) {
        memset(dest, 0, dim * 4);
        continue;
      }
      found++;
      out[(start + i) >> 5] |= 1u << ((start + i) & 31);
      memcpy(dest, t->chunks[(uint64_t)row >> shift] + (row & mask) * dim, dim * 4);
    }
  }
  if (ov) found = overlay_patch(ov, keys, n, from, to, out, found);
  overlay_lookups_end();
  napi_value result;
  napi_create_uint32(env, found, &result);
  return result;
}

static napi_value throw_errno(napi_env env, const char *op, int err) {
  char message[160];
  snprintf(message, sizeof message, "%s failed: %s", op, strerror(err));
  napi_throw_error(env, err == ENOMEM ? "ENOMEM" : err == EACCES ? "EACCES" : err == EINVAL ? "EINVAL" : "EIO", message);
  return NULL;
}

static napi_value js_map_table(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint64_t fd, index_offset, index_bytes, values_offset, values_bytes, key_count;
  uint32_t dim, seed;
  double *first, *homes;
  size_t shards, homes_count;
  if (argc < 10 || !get_size(env, argv[0], &fd) || !get_size(env, argv[1], &index_offset) || !get_size(env, argv[2], &index_bytes) ||
      !get_size(env, argv[3], &values_offset) || !get_size(env, argv[4], &values_bytes) || !get_f64_array(env, argv[5], &first, &shards) ||
      !get_f64_array(env, argv[6], &homes, &homes_count) || shards != homes_count || shards == 0 || !get_u32(env, argv[7], &dim) || dim == 0 ||
      !get_u32(env, argv[8], &seed) || !get_size(env, argv[9], &key_count))
    return fail(env, "mapTable(fd, indexOffset, indexBytes, valuesOffset, valuesBytes, first, homes, dim, seed, keyCount)");
  const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  if (index_bytes == 0 || index_offset % page != 0 || values_offset % page != 0 || values_bytes != key_count * (uint64_t)dim * 4 || key_count >= EMPTY_ROW)
    return fail(env, "mapTable: regions must start on pages, the index must not be empty and values must hold keyCount rows");

  /* An optional 11th argument, populate (default true): false leaves the index to fault in as it is read. */
  bool populate = true;
  napi_valuetype populate_type = napi_undefined;
  if (argc >= 11 && napi_typeof(env, argv[10], &populate_type) == napi_ok && populate_type != napi_undefined && napi_get_value_bool(env, argv[10], &populate) != napi_ok)
    return fail(env, "mapTable: populate must be a boolean");
  lookup_table *t = alloc_table(shards, 1); /* one chunk: the values mapping */
  if (!t) return fail(env, "mapTable: out of memory");
  /*
   * The index is read whole at once (its checksum, then every probe), so its page tables
   * are filled in the mmap call: one pass in the kernel instead of a fault per 64 KiB,
   * which in a starting Node process (V8 changing its own mappings on other threads)
   * measured several times slower. The values are left to fault in as keys are asked for.
   * Without populate (a mapping that lookup threads, with mappings of their own, answer for)
   * nothing is filled in ahead.
   */
  void *index = mmap(NULL, index_bytes, PROT_READ, MAP_SHARED | (populate ? MAP_POPULATE : 0), (int)fd, (off_t)index_offset);
  if (index == MAP_FAILED) {
    int err = errno;
    free_table(t);
    return throw_errno(env, "mmap of the index", err);
  }
  t->mapped[0] = index;
  t->mapped_bytes[0] = index_bytes;
  if (values_bytes > 0) {
    void *values = mmap(NULL, values_bytes, PROT_READ, MAP_SHARED, (int)fd, (off_t)values_offset);
    if (values == MAP_FAILED) {
      int err = errno;
      free_table(t);
      return throw_errno(env, "mmap of the values", err);
    }
    t->mapped[1] = values;
    t->mapped_bytes[1] = values_bytes;
    t->chunks[0] = values;
    t->chunk_rows[0] = key_count;
    t->chunk_count = 1;
  }
  t->index = index;
  t->index_slots = index_bytes / 12;
  t->shard_count = (uint32_t)shards;
  t->chunk_shift = 32; /* one mapping holds every row */
  t->dim = dim;
  t->seed = seed;
  t->key_count = key_count;
  if (!set_shards(t, first, homes, shards)) {
    free_table(t);
    return fail(env, "mapTable: a shard lies outside the index");
  }
  napi_value handle;
  if (napi_create_external(env, t, finalize_table, NULL, &handle) != napi_ok) {
    free_table(t);
    return fail(env, "mapTable: could not create the handle");
  }
  return handle;
}

static napi_value js_unmap_table(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  lookup_table *t;
  if (argc < 1 || napi_get_value_external(env, argv[0], (void **)&t) != napi_ok) return fail(env, "unmapTable(handle)");
  unmap_table(t);
  return NULL;
}

static lookup_table *mapped_table(napi_env env, napi_value value) {
  lookup_table *t;
  if (napi_get_value_external(env, value, (void **)&t) != napi_ok || !t->mapped[0]) return NULL;
  return t;
}

static napi_value js_crc32c_of(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  lookup_table *t = argc >= 4 ? mapped_table(env, argv[0]) : NULL;
  uint32_t region, crc, threads;
  if (!t || !get_u32(env, argv[1], &region) || region > 1 || !get_u32(env, argv[2], &crc) || !get_u32(env, argv[3], &threads) || threads == 0)
    return fail(env, "crc32cOf(mapTable handle, region 0|1, crc, threads)");
  napi_value result;
  napi_create_uint32(env, t->mapped[region] ? crc32c_parallel(crc, t->mapped[region], t->mapped_bytes[region], threads) : crc, &result);
  return result;
}

static napi_value js_crc32c_of_file(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint64_t fd, offset, length;
  uint32_t crc, threads;
  if (argc < 5 || !get_size(env, argv[0], &fd) || fd > INT32_MAX || !get_size(env, argv[1], &offset) || !get_size(env, argv[2], &length) || !get_u32(env, argv[3], &crc) ||
      !get_u32(env, argv[4], &threads) || threads == 0)
    return fail(env, "crc32cOfFile(fd, offset, length, crc, threads)");
  int err;
  const uint32_t value = crc32c_file((int)fd, offset, length, crc, threads, &err);
  if (err) return throw_errno(env, "read for a checksum", err);
  napi_value result;
  napi_create_uint32(env, value, &result);
  return result;
}

static napi_value js_slot_row(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  lookup_table *t;
  uint64_t slot;
  if (argc < 2 || napi_get_value_external(env, argv[0], (void **)&t) != napi_ok || !get_size(env, argv[1], &slot) || slot >= t->index_slots)
    return fail(env, "slotRow(handle, slot): slot outside the index");
  napi_value result;
  napi_create_uint32(env, t->index[slot * 3 + 2], &result);
  return result;
}

static napi_value js_resident(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  lookup_table *t = argc >= 1 ? mapped_table(env, argv[0]) : NULL;
  if (!t) return fail(env, "resident(mapTable handle)");
  int64_t total = 0;
  for (int r = 0; r < 2; r++) {
    size_t bytes = 0;
    if (!t->mapped[r]) continue;
    int err = resident_bytes(t->mapped[r], t->mapped_bytes[r], &bytes);
    if (err != 0) return throw_errno(env, "mincore", err);
    total += (int64_t)bytes;
  }
  const int64_t most = (int64_t)(t->mapped_bytes[0] + t->mapped_bytes[1]);
  napi_value result;
  napi_create_int64(env, total > most ? most : total, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  /* Lookup threads load the addon too; the tables are built once for the process. */
  crc32c_init();
  napi_property_descriptor props[] = {
    {"crc32c", NULL, js_crc32c, NULL, NULL, NULL, napi_enumerable, NULL},
    {"table", NULL, js_table, NULL, NULL, NULL, napi_enumerable, NULL},
    {"mget", NULL, js_mget, NULL, NULL, NULL, napi_enumerable, NULL},
    {"mapTable", NULL, js_map_table, NULL, NULL, NULL, napi_enumerable, NULL},
    {"crc32cOf", NULL, js_crc32c_of, NULL, NULL, NULL, napi_enumerable, NULL},
    {"crc32cOfFile", NULL, js_crc32c_of_file, NULL, NULL, NULL, napi_enumerable, NULL},
    {"slotRow", NULL, js_slot_row, NULL, NULL, NULL, napi_enumerable, NULL},
    {"resident", NULL, js_resident, NULL, NULL, NULL, napi_enumerable, NULL},
    {"unmapTable", NULL, js_unmap_table, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  overlay_register(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
