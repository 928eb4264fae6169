/*
 * strata_overlay: in-place deltas of a parameter table, part of the strata_lookup addon.
 * docs/PARAMS.md ("In-place deltas") documents the file byte by byte and the crash argument;
 * params/overlay-format.ts creates the file. In short:
 *
 *   [0, 4096)        superblock (magic STRATAOV, dim, seed, layout), CRC-32C at 124;
 *                    the published epoch, a u32 at 2048, outside the checksummed bytes
 *   [4096, 12288)    two commit records, epoch e in the one at 4096 + 4096 * (e & 1)
 *   [12288, 16384)   the intent record of the delta being applied
 *   sums             CRC-32C of each block of 64 index slots
 *   index            2^k slots of (key lo, key hi, ref): ref 0 empty, REF_NONE a key with no
 *                    record, else record number + 1 of the key's newest record
 *   log              records (key lo, key hi, epoch | TOMBSTONE, prev ref, dim float32),
 *                    appended; a record's prev is the key's record before it (0: none)
 *
 * Readers take the published epoch once per lookup and, from a key's slot, walk back to the
 * newest record whose epoch is at most that: one writer appends a delta's records, links them
 * and commits, and no reader sees a record of a delta that is not published.
 *
 *   overlayMap(fd, table?) -> handle        maps the file read/write (MAP_SHARED), checks the
 *                                           superblock. `table` (a mapTable handle) is the base,
 *                                           for key counts; readers pass none.
 *   overlayRecover(handle) -> [epoch, records, slotsUsed, liveKeys, rolledBack]
 *                                           picks the valid commit, undoes a delta whose intent
 *                                           is newer (rolledBack: its records), checks the index
 *                                           blocks and the last delta's records, and publishes.
 *                                           Throws EBADMSG on a bad checksum.
 *   overlayApply(handle, body, upserts, deletes) -> Promise<[epoch, records, slotsUsed, liveKeys,
 *                 chunks, pausedChunks, sleptMs, cpuMs, wallMs]>
 *                                           applies an "SPD1" body on a libuv thread, paced while
 *                                           lookups run (below); throws EFULL at once when it
 *                                           would not fit, ENOSPC when the file system cannot
 *                                           hold its records. The last five say what the pacing
 *                                           did and the applying thread's CPU and wall time.
 *   overlayPacing(handle, share, windowMs) -> [share, windowMs] before
 *                                           sets the pacing of the handle's next applies.
 *   overlayInfo(handle) -> [published, records, slotsUsed, liveKeys, recordCapacity,
 *                           maxSlotsUsed, baseTag, dim, logCrc]
 *   overlayUnmap(handle)                    releases the mapping (after a running apply).
 */
#include "strata_overlay.h"
#include "crc32c.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OV_MAGIC "STRATAOV"
#define OV_VERSION 1u
#define OV_SUPER_BYTES 128
#define OV_PUBLISHED_AT 2048
#define OV_COMMIT_AT(e) (4096u + 4096u * ((e) & 1u))
#define OV_INTENT_AT 12288
#define OV_HEAD_BYTES 16384
#define OV_PAGE 4096
#define COMMIT_MAGIC 0x434f5053u /* "SPOC" */
#define INTENT_MAGIC 0x494f5053u /* "SPOI" */
#define COMMIT_BYTES 52
#define INTENT_BYTES 28
/* Slots per checksummed block: 768 bytes, so a delta of K keys re-checksums at most K such blocks. */
#define BLOCK_SLOTS 64
#define REF_NONE 0xffffffffu
#define TOMBSTONE 0x80000000u
#define RECORD_HEAD_BYTES 16
/* Keys per pass of the lookup patch, as in the base kernel: the slot misses of a group overlap. */
#define GROUP 64
/* Slots in use at most 7 in 10: linear probes stay short (about 2 slots a hit). */
#define MAX_LOAD_NUM 7
#define MAX_LOAD_DEN 10

/*
 * Pacing of an apply while lookups run (docs/PARAMS.md, "Pacing"): an apply works in chunks
 * and, between chunks, sleeps so that its thread uses at most PACE_SHARE of a core, but never
 * so long that it would end later than PACE_WINDOW_NS after it started (past that it takes
 * what it needs). With no lookups in progress it does not sleep. On 2 cores with both lookup
 * threads busy, lookups keep about 1 - (the apply's CPU / its wall time) / 2 of their rate
 * while deltas apply back to back: a 100,000-upsert delta into 10M keys is about 31 ms of CPU
 * under lookups, which 0.3 of a core would spread over 103 ms; the 90 ms window ends it at
 * 90 (a share of 0.34), under the 100 ms such a delta may take, and the lookups keep about
 * 0.83x (bench/params-delta.ts). A small delta keeps to the share: 1 ms of CPU takes 3.3 ms.
 */
#define PACE_SHARE 0.3
#define PACE_WINDOW_NS 90000000ull
/*
 * Records per chunk (a multiple of LINK_AHEAD): 4096 records are 0.2-0.5 ms of work, so a
 * sleep between chunks is about a millisecond, well above the timer's slack. Each chunk after
 * a sleep starts with caches the lookups have refilled: at 2048 records a paced delta took
 * about 1.5 ms more CPU than at 8192, which ended it up to 5 ms past the window.
 */
#define PACE_CHUNK_RECORDS 4096
/* Index blocks scanned per chunk of the checksum pass (4096 blocks: 3 MiB of index). */
#define PACE_CHUNK_BLOCKS 4096
/* Bytes of records per chunk of the delta's CRC. */
#define PACE_CHUNK_BYTES ((uint64_t)1 << 20)
/*
 * A lookup that ended this recently still counts as lookups running: the gap between two
 * batches on a busy lookup thread (a message round trip) is far shorter.
 */
#define LOOKUP_GRACE_NS 2000000ull
/* Sleeps shorter than this are skipped: the timer's slack would make them longer. */
#define PACE_MIN_SLEEP_NS 100000ull

static const napi_type_tag OVERLAY_TAG = {0x5354524154414f56ull, 0x6f7665726c617931ull};

struct overlay {
  uint8_t *map;
  size_t bytes;
  int fd;
  uint32_t dim;
  uint32_t seed;
  uint32_t base_tag;
  uint64_t slots;
  uint64_t mask;
  uint64_t record_capacity;
  uint64_t record_bytes;
  uint64_t sums_offset;
  uint64_t index_offset;
  uint64_t log_offset;
  uint32_t *sums;
  uint32_t *index;
  uint8_t *log;
  uint32_t *published;
  /* The committed state, kept by the writer (set by overlayRecover). */
  int recovered;
  uint32_t epoch;
  uint64_t records;
  uint64_t slots_used;
  uint64_t live_keys;
  uint32_t log_crc;
  /* How an apply paces itself while lookups run (overlayPacing; see "pacing" below). */
  double pace_share;
  uint64_t pace_window_ns;
  /* An apply is running on a libuv thread; an unmap asked for meanwhile runs after it. */
  int busy;
  int unmap_pending;
  lookup_table *table;
  napi_ref table_ref;
};

static inline uint32_t load_acquire(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void store_release(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

static inline uint32_t *record_at(const overlay *ov, uint64_t r) { return (uint32_t *)(ov->log + r * ov->record_bytes); }

static uint32_t rd32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
static uint64_t rd64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}
static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static napi_value throw_code(napi_env env, const char *code, const char *message) {
  napi_throw_error(env, code, message);
  return NULL;
}

static napi_value throw_os(napi_env env, const char *op, int err) {
  char message[200];
  snprintf(message, sizeof message, "%s failed: %s", op, strerror(err));
  return throw_code(env, err == ENOSPC ? "ENOSPC" : err == ENOMEM ? "ENOMEM" : err == EDQUOT ? "EDQUOT" : "EIO", message);
}

/* msync(MS_SYNC) of a byte range of the mapping, widened to whole pages; 0 or errno. */
static int sync_range(overlay *ov, uint64_t offset, uint64_t length) {
  if (length == 0) return 0;
  const uint64_t start = offset & ~(uint64_t)(OV_PAGE - 1);
  return msync(ov->map + start, (size_t)(offset + length - start), MS_SYNC) == 0 ? 0 : errno;
}

static void unmap_overlay(overlay *ov) {
  if (ov->map) munmap(ov->map, ov->bytes);
  ov->map = NULL;
  ov->index = NULL;
  ov->log = NULL;
  ov->sums = NULL;
  ov->published = NULL;
  if (ov->fd >= 0) close(ov->fd);
  ov->fd = -1;
}

static void finalize_overlay(napi_env env, void *data, void *hint) {
  (void)hint;
  overlay *ov = data;
  unmap_overlay(ov);
  if (ov->table_ref) napi_delete_reference(env, ov->table_ref);
  free(ov);
}

int get_overlay(napi_env env, napi_value value, overlay **out) {
  napi_valuetype type;
  *out = NULL;
  if (napi_typeof(env, value, &type) != napi_ok) return 0;
  if (type == napi_undefined) return 1;
  bool tagged = false;
  if (type != napi_external || napi_check_object_type_tag(env, value, &OVERLAY_TAG, &tagged) != napi_ok || !tagged) return 0;
  if (napi_get_value_external(env, value, (void **)out) != napi_ok) return 0;
  if (!(*out)->map) *out = NULL; /* unmapped: nothing to patch with */
  return 1;
}

/* The slot of key (lo, hi): its own when present (*found = 1), else the empty slot that ends its probe. */
static uint64_t find_slot(const overlay *ov, uint32_t lo, uint32_t hi, int *found) {
  uint64_t s = key_hash(lo, hi, ov->seed) & ov->mask;
  for (uint64_t probes = 0; probes < ov->slots; probes++, s = (s + 1) & ov->mask) {
    const uint32_t *e = ov->index + s * 3;
    if (e[2] == 0) {
      *found = 0;
      return s;
    }
    if (e[0] == lo && e[1] == hi) {
      *found = 1;
      return s;
    }
  }
  *found = 0;
  return UINT64_MAX; /* full: the load limit keeps this from happening */
}

/* The newest record of the chain from `ref` whose epoch is at most `epoch`: its ref, or 0. */
static uint32_t visible_ref(const overlay *ov, uint32_t ref, uint32_t epoch) {
  while (ref != 0 && ref != REF_NONE && (uint64_t)ref - 1 < ov->record_capacity) {
    const uint32_t *rec = record_at(ov, ref - 1);
    if ((rec[2] & ~TOMBSTONE) <= epoch) return ref;
    const uint32_t prev = rec[3];
    if (prev >= ref) return 0; /* chains run back in the log; anything else is damage */
    ref = prev;
  }
  return 0;
}

uint32_t overlay_patch(overlay *ov, const uint32_t *keys, uint32_t n, uint32_t from, uint32_t to, uint32_t *out, uint32_t found) {
  const uint32_t epoch = load_acquire(ov->published);
  if (epoch == 0) return found;
  const uint64_t dim = ov->dim;
  const uint64_t bitmap_words = ((uint64_t)n + 31) / 32;
  uint64_t slots[GROUP];
  uint32_t refs[GROUP];
  for (uint32_t start = from; start < to; start += GROUP) {
    const uint32_t count = to - start < GROUP ? to - start : GROUP;
    for (uint32_t i = 0; i < count; i++) {
      slots[i] = key_hash(keys[2 * (start + i)], keys[2 * (start + i) + 1], ov->seed) & ov->mask;
      __builtin_prefetch(ov->index + slots[i] * 3);
    }
    for (uint32_t i = 0; i < count; i++) {
      const uint32_t lo = keys[2 * (start + i)], hi = keys[2 * (start + i) + 1];
      uint32_t ref = 0;
      uint64_t s = slots[i];
      for (uint64_t probes = 0; probes < ov->slots; probes++, s = (s + 1) & ov->mask) {
        const uint32_t *e = ov->index + s * 3;
        const uint32_t r = load_acquire(e + 2);
        if (r == 0) break;
        if (e[0] == lo && e[1] == hi) {
          ref = r;
          break;
        }
      }
      refs[i] = ref == REF_NONE ? 0 : ref;
      if (refs[i] != 0 && (uint64_t)refs[i] - 1 < ov->record_capacity) __builtin_prefetch(record_at(ov, refs[i] - 1));
    }
    for (uint32_t i = 0; i < count; i++) {
      const uint32_t ref = refs[i] ? visible_ref(ov, refs[i], epoch) : 0;
      if (ref == 0) continue;
      const uint32_t *rec = record_at(ov, ref - 1);
      const uint32_t k = start + i;
      uint32_t *dest = out + bitmap_words + (uint64_t)k * dim;
      const uint32_t bit = 1u << (k & 31);
      const int was = (out[k >> 5] & bit) != 0;
      if (rec[2] & TOMBSTONE) {
        if (was) {
          out[k >> 5] &= ~bit;
          found--;
          memset(dest, 0, dim * 4);
        }
        continue;
      }
      memcpy(dest, rec + 4, dim * 4);
      if (!was) {
        out[k >> 5] |= bit;
        found++;
      }
    }
  }
  return found;
}

/* ---------- map ---------- */

static uint64_t align_page(uint64_t n) { return (n + OV_PAGE - 1) & ~(uint64_t)(OV_PAGE - 1); }

static napi_value js_overlay_map(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  double fd_number;
  if (argc < 1 || napi_get_value_double(env, argv[0], &fd_number) != napi_ok || fd_number < 0 || fd_number != (double)(int)fd_number)
    return throw_code(env, "EINVAL", "overlayMap(fd, table?): fd must be a descriptor");
  lookup_table *table = NULL;
  napi_valuetype type = napi_undefined;
  if (argc >= 2 && napi_typeof(env, argv[1], &type) == napi_ok && type != napi_undefined) {
    if (type != napi_external || napi_get_value_external(env, argv[1], (void **)&table) != napi_ok || !table->mapped[0])
      return throw_code(env, "EINVAL", "overlayMap(fd, table?): table must be a mapTable handle");
  }
  struct stat st;
  if (fstat((int)fd_number, &st) != 0) return throw_os(env, "fstat of the overlay", errno);
  if (st.st_size < OV_HEAD_BYTES) return throw_code(env, "EBADMSG", "overlay file shorter than its head");
  uint8_t head[OV_SUPER_BYTES];
  if (pread((int)fd_number, head, sizeof head, 0) != (ssize_t)sizeof head) return throw_os(env, "read of the overlay superblock", errno ? errno : EIO);
  if (memcmp(head, OV_MAGIC, 8) != 0) return throw_code(env, "EBADMSG", "not an overlay file (bad magic)");
  if (rd32(head + 124) != strata_crc32c(0, head, 124)) return throw_code(env, "EBADMSG", "overlay superblock checksum mismatch");
  const uint32_t version = rd32(head + 8), dim = rd32(head + 12), seed = rd32(head + 16), base_tag = rd32(head + 20);
  const uint64_t slots = rd64(head + 24), capacity = rd64(head + 32), sums_offset = rd64(head + 40), index_offset = rd64(head + 48);
  const uint64_t log_offset = rd64(head + 56), file_bytes = rd64(head + 64);
  const uint64_t record_bytes = RECORD_HEAD_BYTES + 4 * (uint64_t)dim;
  const int ok = version == OV_VERSION && dim >= 1 && dim <= 65536 && slots >= BLOCK_SLOTS && (slots & (slots - 1)) == 0 && slots <= ((uint64_t)1 << 32) &&
                 capacity >= 1 && capacity < REF_NONE - 1 && sums_offset == OV_HEAD_BYTES && index_offset == align_page(sums_offset + slots / BLOCK_SLOTS * 4) &&
                 log_offset == align_page(index_offset + slots * 12) && file_bytes == log_offset + capacity * record_bytes && file_bytes == (uint64_t)st.st_size;
  if (!ok) return throw_code(env, "EBADMSG", "overlay superblock describes an impossible layout or the file size differs");

  overlay *ov = calloc(1, sizeof *ov);
  if (!ov) return throw_code(env, "ENOMEM", "overlayMap: out of memory");
  ov->fd = dup((int)fd_number);
  if (ov->fd < 0) {
    int err = errno;
    free(ov);
    return throw_os(env, "dup of the overlay descriptor", err);
  }
  void *map = mmap(NULL, file_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, ov->fd, 0);
  if (map == MAP_FAILED) {
    int err = errno;
    close(ov->fd);
    free(ov);
    return throw_os(env, "mmap of the overlay", err);
  }
  ov->map = map;
  ov->bytes = file_bytes;
  ov->dim = dim;
  ov->seed = seed;
  ov->base_tag = base_tag;
  ov->slots = slots;
  ov->mask = slots - 1;
  ov->record_capacity = capacity;
  ov->record_bytes = record_bytes;
  ov->sums_offset = sums_offset;
  ov->index_offset = index_offset;
  ov->log_offset = log_offset;
  ov->sums = (uint32_t *)(ov->map + sums_offset);
  ov->index = (uint32_t *)(ov->map + index_offset);
  ov->log = ov->map + log_offset;
  ov->published = (uint32_t *)(ov->map + OV_PUBLISHED_AT);
  ov->pace_share = PACE_SHARE;
  ov->pace_window_ns = PACE_WINDOW_NS;
  ov->table = table;
  if (table) napi_create_reference(env, argv[1], 1, &ov->table_ref);

  napi_value handle;
  if (napi_create_external(env, ov, finalize_overlay, NULL, &handle) != napi_ok || napi_type_tag_object(env, handle, &OVERLAY_TAG) != napi_ok) {
    finalize_overlay(env, ov, NULL);
    return throw_code(env, "EIO", "overlayMap: could not create the handle");
  }
  return handle;
}

static overlay *overlay_arg(napi_env env, napi_value value) {
  overlay *ov = NULL;
  if (!get_overlay(env, value, &ov) || !ov) return NULL;
  return ov;
}

/* ---------- commit and intent records ---------- */

typedef struct {
  uint32_t epoch;
  uint64_t records, slots_used, live_keys;
  /* CRC-32C of the whole log below `records`: checked when a compaction reads the log. */
  uint32_t log_crc;
  /* The last delta's records, [last_from, records), and their CRC-32C: checked at recovery. */
  uint64_t last_from;
  uint32_t last_crc;
} commit_record;

static int read_commit(const overlay *ov, uint32_t at, commit_record *c) {
  const uint8_t *p = ov->map + at;
  if (rd32(p) != COMMIT_MAGIC || rd32(p + 48) != strata_crc32c(0, p, 48)) return 0;
  c->epoch = rd32(p + 4);
  c->records = rd64(p + 8);
  c->slots_used = rd64(p + 16);
  c->live_keys = rd64(p + 24);
  c->log_crc = rd32(p + 32);
  c->last_from = rd64(p + 36);
  c->last_crc = rd32(p + 44);
  return c->records <= ov->record_capacity && c->last_from <= c->records && OV_COMMIT_AT(c->epoch) == at;
}

static void write_commit(overlay *ov, const commit_record *c) {
  uint8_t rec[COMMIT_BYTES];
  wr32(rec, COMMIT_MAGIC);
  wr32(rec + 4, c->epoch);
  wr64(rec + 8, c->records);
  wr64(rec + 16, c->slots_used);
  wr64(rec + 24, c->live_keys);
  wr32(rec + 32, c->log_crc);
  wr64(rec + 36, c->last_from);
  wr32(rec + 44, c->last_crc);
  wr32(rec + 48, strata_crc32c(0, rec, 48));
  memcpy(ov->map + OV_COMMIT_AT(c->epoch), rec, sizeof rec);
}

static void write_intent(overlay *ov, uint32_t epoch, uint64_t from, uint64_t to) {
  uint8_t rec[INTENT_BYTES];
  wr32(rec, INTENT_MAGIC);
  wr32(rec + 4, epoch);
  wr64(rec + 8, from);
  wr64(rec + 16, to);
  wr32(rec + 24, strata_crc32c(0, rec, 24));
  memcpy(ov->map + OV_INTENT_AT, rec, sizeof rec);
}

/* ---------- pacing ---------- */

/*
 * Lookups in progress in this process (every mget of the kernel, on any thread) and the time
 * the last one ended. One pair for the process, not one per table: an apply takes its core
 * from whatever lookups run, of any table. Relaxed atomics: a late view only shifts one
 * chunk's decision.
 */
static uint32_t lookups_running;
static uint64_t lookups_last_end_ns;

/* The clock in nanoseconds; 0 when it cannot be read (pacing then stands aside). */
static uint64_t clock_ns(clockid_t clock) {
  struct timespec ts;
  if (clock_gettime(clock, &ts) != 0) return 0;
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void overlay_lookups_begin(void) { __atomic_add_fetch(&lookups_running, 1, __ATOMIC_RELAXED); }

void overlay_lookups_end(void) {
  __atomic_store_n(&lookups_last_end_ns, clock_ns(CLOCK_MONOTONIC), __ATOMIC_RELAXED);
  __atomic_sub_fetch(&lookups_running, 1, __ATOMIC_RELAXED);
}

static int lookups_active(uint64_t now) {
  if (__atomic_load_n(&lookups_running, __ATOMIC_RELAXED) > 0) return 1;
  const uint64_t last = __atomic_load_n(&lookups_last_end_ns, __ATOMIC_RELAXED);
  return last != 0 && now < last + LOOKUP_GRACE_NS;
}

/*
 * One apply's pacing. Work is counted in units that cost about the same CPU (the weights
 * below), so `done / total` is how far the apply is. After each chunk, while lookups run, the
 * apply sleeps until the time, counted from its start, at which its CPU time so far is its
 * share of a core (CPU / share), or, when that is earlier, until where an even schedule ending
 * at the window would be (done / total x window): the share is kept unless keeping it would
 * end the apply past the window. Sleeps end at absolute times, so a late wake-up is made up
 * by the next chunk, not added to the apply.
 */
typedef struct {
  double share;
  uint64_t window_ns;
  uint64_t start_ns, cpu_start_ns;
  double total, done;
  uint64_t chunks, paused, slept_ns;
} pacer;

/*
 * Work units (about 50 ns of CPU each) per record written, per record sorted and probed in the
 * base, per record linked, per index block checksummed and per byte of records checksummed:
 * the CPU of each phase of a 100,000-upsert delta into 10M keys of dim 16 with no lookups
 * (bench/params-delta.ts; 5, 9.5, 6 and 7 ms for 51,000 blocks, 0.8 ms for 8 MB) over its count.
 */
#define WORK_WRITE 1.0
#define WORK_PRESENCE_SORT 0.5
#define WORK_PRESENCE 1.5
#define WORK_LINK 1.2
#define WORK_BLOCK 2.7
#define WORK_CRC_BYTE 0.002

static void pacer_start(pacer *p, double share, uint64_t window_ns, double total) {
  memset(p, 0, sizeof *p);
  p->share = share;
  p->window_ns = window_ns;
  p->total = total;
  p->start_ns = clock_ns(CLOCK_MONOTONIC);
  p->cpu_start_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

/* Records in the last chunk of `count` (PACE_CHUNK_RECORDS when it is whole; 0 for none). */
static uint64_t last_chunk(uint64_t count) { return count == 0 ? 0 : count - (count - 1) / PACE_CHUNK_RECORDS * PACE_CHUNK_RECORDS; }

/* Counts a chunk of `work` units done and, while lookups run, sleeps as the pacer says. */
static void pace(pacer *p, double work) {
  p->done += work;
  p->chunks++;
  if (p->share >= 1 || p->window_ns == 0 || p->start_ns == 0 || p->cpu_start_ns == 0) return;
  const uint64_t now = clock_ns(CLOCK_MONOTONIC), cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID);
  if (now == 0 || cpu < p->cpu_start_ns || now < p->start_ns || !lookups_active(now)) return;
  const double fraction = p->total > 0 && p->done < p->total ? p->done / p->total : 1;
  double at = (double)(cpu - p->cpu_start_ns) / p->share;
  const double even = fraction * (double)p->window_ns;
  if (even < at) at = even;
  const uint64_t wake = p->start_ns + (uint64_t)at;
  if (wake < now + PACE_MIN_SLEEP_NS) return;
  const struct timespec until = {(time_t)(wake / 1000000000ull), (long)(wake % 1000000000ull)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR) {
  }
  p->paused++;
  const uint64_t after = clock_ns(CLOCK_MONOTONIC);
  if (after > now) p->slept_ns += after - now;
}

static void block_sum(overlay *ov, uint64_t block) {
  ov->sums[block] = strata_crc32c(0, (const uint8_t *)(ov->index + block * BLOCK_SLOTS * 3), BLOCK_SLOTS * 12);
}

/*
 * The sums of the index blocks marked in `touched`, three blocks at a time (crc32c_three): a
 * delta of 100,000 random keys touches most blocks of a large overlay, and one block's CRC
 * alone waits on the crc32 instruction's latency at every word. Paced every PACE_CHUNK_BLOCKS
 * blocks scanned.
 */
static void sum_touched_blocks(overlay *ov, const uint8_t *touched, uint64_t blocks, pacer *p) {
  uint64_t pending[3];
  int n = 0;
  uint64_t summed = 0;
  for (uint64_t block = 0; block < blocks; block++) {
    if (block % PACE_CHUNK_BLOCKS == PACE_CHUNK_BLOCKS - 1) {
      pace(p, WORK_BLOCK * (double)summed);
      summed = 0;
    }
    if (!(touched[block >> 3] & (1u << (block & 7)))) continue;
    summed++;
    pending[n++] = block;
    if (n < 3) continue;
    uint32_t sums[3];
    const uint8_t *at = (const uint8_t *)ov->index;
    crc32c_three(at + pending[0] * BLOCK_SLOTS * 12, at + pending[1] * BLOCK_SLOTS * 12, at + pending[2] * BLOCK_SLOTS * 12, BLOCK_SLOTS * 12, sums);
    for (int i = 0; i < 3; i++) ov->sums[pending[i]] = sums[i];
    n = 0;
  }
  for (int i = 0; i < n; i++) block_sum(ov, pending[i]);
  pace(p, WORK_BLOCK * (double)summed);
}

/* ---------- recover ---------- */

/*
 * Recovery reads what it checks with pread into a buffer of its own, not through the new
 * mapping: the kernel copies from the page cache through its own mapping, and a check does
 * not touch every page of the mapping for the first time (what dominated recovery on the
 * development VM; see crc32cOfFile in strata_lookup.c). Lookups then touch only the pages of
 * the keys they ask for.
 */
#define CHECK_READ_BLOCKS 341 /* 256 KiB of index per pread (255.75), as FILE_CRC_CHUNK in strata_lookup.c and for its reason */

typedef struct {
  const overlay *ov;
  uint64_t from, to;
  uint64_t bad; /* first block whose checksum differs, or UINT64_MAX */
  int err;      /* a read that failed (errno), or 0 */
} block_check;

/* pread of exactly n bytes at offset; 0 or errno (EIO when the file ends first). */
static int read_exactly(int fd, uint8_t *buf, size_t n, uint64_t offset) {
  for (size_t done = 0; done < n;) {
    const ssize_t got = pread(fd, buf + done, n - done, (off_t)(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return got < 0 ? errno : EIO;
    done += (size_t)got;
  }
  return 0;
}

static void *check_block_range(void *arg) {
  block_check *part = arg;
  const overlay *ov = part->ov;
  part->bad = UINT64_MAX;
  part->err = 0;
  uint8_t *buf = malloc((size_t)CHECK_READ_BLOCKS * BLOCK_SLOTS * 12);
  if (!buf) {
    part->err = ENOMEM;
    return NULL;
  }
  for (uint64_t block = part->from; block < part->to && part->bad == UINT64_MAX && !part->err;) {
    const uint64_t count = part->to - block < CHECK_READ_BLOCKS ? part->to - block : CHECK_READ_BLOCKS;
    part->err = read_exactly(ov->fd, buf, (size_t)(count * BLOCK_SLOTS * 12), ov->index_offset + block * BLOCK_SLOTS * 12);
    for (uint64_t i = 0; i < count && !part->err; i++) {
      if (ov->sums[block + i] != strata_crc32c(0, buf + i * BLOCK_SLOTS * 12, BLOCK_SLOTS * 12)) {
        part->bad = block + i;
        break;
      }
    }
    block += count;
  }
  free(buf);
  return NULL;
}

/* The first index block whose checksum is wrong (UINT64_MAX: none), on two threads: the index
 * of a 10M-key table's overlay is 48 MiB. A failed read is its errno in *err. */
static uint64_t check_blocks(const overlay *ov, int *err) {
  const uint64_t blocks = ov->slots / BLOCK_SLOTS;
  block_check parts[2] = {{ov, 0, blocks / 2, UINT64_MAX, 0}, {ov, blocks / 2, blocks, UINT64_MAX, 0}};
  pthread_t other;
  const int started = pthread_create(&other, NULL, check_block_range, &parts[1]) == 0;
  check_block_range(&parts[0]);
  if (started) pthread_join(other, NULL);
  else check_block_range(&parts[1]);
  *err = parts[0].err ? parts[0].err : parts[1].err;
  return parts[0].bad != UINT64_MAX ? parts[0].bad : parts[1].bad;
}

/* CRC-32C of records [from, to) of the log, read with pread; 0 or errno in *err. */
static uint32_t log_crc_read(const overlay *ov, uint64_t from, uint64_t to, int *err) {
  const uint64_t total = (to - from) * ov->record_bytes;
  const size_t chunk = (size_t)1 << 20;
  uint32_t crc = 0;
  *err = 0;
  if (total == 0) return 0;
  uint8_t *buf = malloc(chunk);
  if (!buf) {
    *err = ENOMEM;
    return 0;
  }
  for (uint64_t done = 0; done < total && !*err;) {
    const size_t n = total - done < chunk ? (size_t)(total - done) : chunk;
    *err = read_exactly(ov->fd, buf, n, ov->log_offset + from * ov->record_bytes + done);
    if (!*err) crc = strata_crc32c(crc, buf, n);
    done += n;
  }
  free(buf);
  return crc;
}

static napi_value js_overlay_recover(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  overlay *ov = argc >= 1 ? overlay_arg(env, argv[0]) : NULL;
  if (!ov) return throw_code(env, "EINVAL", "overlayRecover(overlay handle)");
  if (ov->busy) return throw_code(env, "EBUSY", "overlayRecover: a delta is being applied");
  commit_record a, b, c;
  const int has_a = read_commit(ov, OV_COMMIT_AT(0), &a), has_b = read_commit(ov, OV_COMMIT_AT(1), &b);
  if (!has_a && !has_b) return throw_code(env, "EBADMSG", "overlay has no valid commit record");
  c = has_a && (!has_b || a.epoch > b.epoch) ? a : b;

  /* A delta whose intent is newer than the commit was cut short: undo what it linked. */
  uint64_t rolled_back = 0;
  const uint8_t *intent = ov->map + OV_INTENT_AT;
  if (rd32(intent) == INTENT_MAGIC && rd32(intent + 24) == strata_crc32c(0, intent, 24) && rd32(intent + 4) == c.epoch + 1) {
    const uint64_t from = rd64(intent + 8), to = rd64(intent + 16);
    if (from != c.records || to < from || to > ov->record_capacity) return throw_code(env, "EBADMSG", "overlay intent record does not follow the commit");
    uint8_t *touched = calloc(ov->slots / BLOCK_SLOTS / 8 + 1, 1);
    if (!touched) return throw_code(env, "ENOMEM", "overlayRecover: out of memory");
    for (uint64_t r = from; r < to; r++) {
      const uint32_t *rec = record_at(ov, r);
      int found;
      const uint64_t s = find_slot(ov, rec[0], rec[1], &found);
      if (s == UINT64_MAX) continue;
      uint32_t *e = ov->index + s * 3;
      if (!found) {
        /* Cut between writing the key and linking it: the slot is empty again, canonically. */
        e[0] = 0;
        e[1] = 0;
      } else if (e[2] != REF_NONE && (uint64_t)e[2] - 1 >= from) {
        uint32_t ref = e[2];
        while (ref != 0 && (uint64_t)ref - 1 >= from && (uint64_t)ref - 1 < ov->record_capacity) {
          const uint32_t prev = record_at(ov, ref - 1)[3];
          ref = prev < ref ? prev : 0;
        }
        if (ref == 0) c.slots_used++; /* a key this delta added keeps its slot, with no record */
        e[2] = ref == 0 ? REF_NONE : ref;
      }
      touched[(s / BLOCK_SLOTS) >> 3] |= (uint8_t)(1u << ((s / BLOCK_SLOTS) & 7));
    }
    for (uint64_t block = 0; block < ov->slots / BLOCK_SLOTS; block++) {
      if (touched[block >> 3] & (1u << (block & 7))) block_sum(ov, block);
    }
    free(touched);
    rolled_back = to - from;
    int err = sync_range(ov, ov->sums_offset, ov->log_offset - ov->sums_offset);
    memset(ov->map + OV_INTENT_AT, 0, INTENT_BYTES);
    if (!err) err = sync_range(ov, OV_INTENT_AT, INTENT_BYTES);
    if (err) return throw_os(env, "msync of the overlay", err);
  }

  /*
   * The checksums recovery owns, as for the base table: every index block (on two threads),
   * and the records of the last delta, the ones a crash could have caught being written. The
   * whole log's checksum is checked when a compaction reads it (as a load checks the values).
   * Both are read from the file (above); the stores of the undo are in the page cache already.
   */
  int read_err = 0;
  const uint64_t bad = check_blocks(ov, &read_err);
  if (read_err) return throw_os(env, "read of the overlay index", read_err);
  if (bad != UINT64_MAX) {
    char message[120];
    snprintf(message, sizeof message, "overlay index block %llu checksum mismatch", (unsigned long long)bad);
    return throw_code(env, "EBADMSG", message);
  }
  const uint32_t last_crc = log_crc_read(ov, c.last_from, c.records, &read_err);
  if (read_err) return throw_os(env, "read of the overlay log", read_err);
  if (last_crc != c.last_crc) return throw_code(env, "EBADMSG", "overlay log checksum mismatch (the last delta's records)");

  ov->epoch = c.epoch;
  ov->records = c.records;
  ov->slots_used = c.slots_used;
  ov->live_keys = c.live_keys;
  ov->log_crc = c.log_crc;
  ov->recovered = 1;
  store_release(ov->published, c.epoch);
  napi_value result, v;
  napi_create_array_with_length(env, 5, &result);
  const double values[5] = {c.epoch, (double)c.records, (double)c.slots_used, (double)c.live_keys, (double)rolled_back};
  for (uint32_t i = 0; i < 5; i++) {
    napi_create_double(env, values[i], &v);
    napi_set_element(env, result, i, v);
  }
  return result;
}

/* ---------- apply ---------- */

typedef struct {
  overlay *ov;
  /* The handle and the body stay alive while the libuv thread uses them. */
  napi_ref handle_ref;
  napi_ref body_ref;
  const uint8_t *upserts;
  const uint8_t *deletes;
  uint64_t upsert_count;
  uint64_t delete_count;
  /* The overlay's pacing when the apply was queued, and what it did. */
  double pace_share;
  uint64_t pace_window_ns;
  uint64_t chunks, paused, slept_ns, cpu_ns, wall_ns;
  int err;
  const char *what;
  napi_deferred deferred;
  napi_async_work work;
} apply_job;

/* Whether the key is in the table at the writer's state: the overlay's record, else `in_base`. */
static int key_present(const overlay *ov, const uint32_t *e, int found, int in_base) {
  if (found && e[2] != REF_NONE) return (uint64_t)e[2] - 1 < ov->record_capacity && (record_at(ov, e[2] - 1)[2] & TOMBSTONE) == 0;
  return in_base;
}

/*
 * Slots of the base index per bucket when base_presence orders its probes: 512 slots are 6 KiB,
 * a page and a half, so the probes of one bucket share their page walks and lines.
 */
#define PRESENCE_BUCKET_SHIFT 9
/*
 * Probes ahead whose lines are prefetched, the home slot's line and the next: a key not in the
 * table probes about 13 slots (156 bytes) at a load factor of 0.8. The second line took the
 * presence pass from 11.5 to 9.5 ms for 100,000 keys (bench/params-delta.ts' table).
 */
#define PRESENCE_AHEAD 32

typedef struct {
  uint64_t home;
  uint32_t lo, hi, record;
} presence_probe;

/*
 * A bit per record of [from, from + count): its key is in the base table. The key count needs
 * it for each key the overlay does not hold. Probed in the order of the keys' home slots (a
 * counting sort by bucket), not the records': 100,000 probes in random order into the 170 MB
 * index of 10M keys were a cache and TLB miss each, 17 of the 22 ms that linking a
 * 100,000-upsert delta took (bench/params-delta.ts, its keys half new); in slot order
 * neighbouring probes share pages and lines. NULL when out of memory.
 */
static uint8_t *base_presence(const overlay *ov, uint64_t from, uint64_t count, pacer *p) {
  const lookup_table *t = ov->table;
  uint8_t *present = calloc(count / 8 + 1, 1);
  if (!present || !t || t->index_slots == 0 || count == 0) return present;
  const uint64_t buckets = (t->index_slots >> PRESENCE_BUCKET_SHIFT) + 1;
  uint32_t *starts = calloc(buckets + 1, sizeof *starts);
  uint64_t *homes = malloc(count * sizeof *homes);
  presence_probe *sorted = malloc(count * sizeof *sorted);
  if (!starts || !homes || !sorted) {
    free(starts);
    free(homes);
    free(sorted);
    free(present);
    return NULL;
  }
  /*
   * Counting sort by bucket of the keys themselves (record numbers are below 2^32: the log
   * holds fewer records), so the probes then read them in order; a home past the index (none
   * in a well-formed table) goes to the last bucket and finds nothing.
   */
  for (uint64_t i = 0; i < count; i++) {
    const uint32_t *rec = record_at(ov, from + i);
    homes[i] = base_home(t, rec[0], rec[1]);
    starts[(homes[i] < t->index_slots ? homes[i] >> PRESENCE_BUCKET_SHIFT : buckets - 1) + 1]++;
  }
  for (uint64_t b = 0; b < buckets; b++) starts[b + 1] += starts[b];
  for (uint64_t i = 0; i < count; i++) {
    const uint32_t *rec = record_at(ov, from + i);
    presence_probe *to = &sorted[starts[homes[i] < t->index_slots ? homes[i] >> PRESENCE_BUCKET_SHIFT : buckets - 1]++];
    to->home = homes[i];
    to->lo = rec[0];
    to->hi = rec[1];
    to->record = (uint32_t)i;
  }
  free(starts);
  free(homes);
  pace(p, WORK_PRESENCE_SORT * (double)count);
  for (uint64_t k = 0; k < count; k++) {
    if (k % PACE_CHUNK_RECORDS == 0 && k > 0) pace(p, WORK_PRESENCE * PACE_CHUNK_RECORDS);
    if (k + PRESENCE_AHEAD < count && sorted[k + PRESENCE_AHEAD].home + 16 < t->index_slots) {
      const uint32_t *home = t->index + sorted[k + PRESENCE_AHEAD].home * 3;
      __builtin_prefetch(home);
      __builtin_prefetch((const uint8_t *)home + 64);
    }
    const presence_probe *q = &sorted[k];
    if (q->home < t->index_slots && base_row_from(t, q->home, q->lo, q->hi) != EMPTY_ROW) present[q->record >> 3] |= (uint8_t)(1u << (q->record & 7));
  }
  pace(p, WORK_PRESENCE * (double)last_chunk(count));
  free(sorted);
  return present;
}

/*
 * Records whose slots are prefetched at once while linking: 64 keys' slots are 64 lines in
 * flight, as the lookup kernel's groups of 64 keep (strata_lookup.c).
 */
#define LINK_AHEAD 64

/* What the pacer did, for the apply's answer. */
static void pacer_report(const pacer *p, apply_job *job) {
  const uint64_t now = clock_ns(CLOCK_MONOTONIC), cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID);
  job->chunks = p->chunks;
  job->paused = p->paused;
  job->slept_ns = p->slept_ns;
  job->cpu_ns = cpu >= p->cpu_start_ns && p->cpu_start_ns ? cpu - p->cpu_start_ns : 0;
  job->wall_ns = now >= p->start_ns && p->start_ns ? now - p->start_ns : 0;
}

static void apply_execute(napi_env env, void *data) {
  (void)env;
  apply_job *job = data;
  overlay *ov = job->ov;
  const uint64_t count = job->upsert_count + job->delete_count;
  const uint64_t from = ov->records, to = from + count;
  const uint32_t epoch = ov->epoch + 1;
  const uint64_t rb = ov->record_bytes;
  const uint64_t blocks = ov->slots / BLOCK_SLOTS;
  /* Until the link knows how many blocks it touched: as many as keys, at most all. */
  const double blocks_guess = (double)(count < blocks ? count : blocks);
  pacer p;
  pacer_start(&p, job->pace_share, job->pace_window_ns, (WORK_WRITE + WORK_PRESENCE_SORT + WORK_PRESENCE + WORK_LINK) * (double)count + WORK_BLOCK * blocks_guess + WORK_CRC_BYTE * (double)(count * rb));
  if (count == 0) {
    /* Still a new epoch, so every delta answers a new version. */
  } else if (posix_fallocate(ov->fd, (off_t)(ov->log_offset + from * rb), (off_t)(count * rb)) != 0) {
    job->err = ENOSPC;
    job->what = "allocating the delta's records in the overlay";
    return;
  }
  /* 1. The records, unlinked (prev 0): deletes first, as the delta format says. */
  for (uint64_t i = 0; i < count; i++) {
    if (i % PACE_CHUNK_RECORDS == 0 && i > 0) pace(&p, WORK_WRITE * PACE_CHUNK_RECORDS);
    uint32_t *rec = record_at(ov, from + i);
    if (i < job->delete_count) {
      memcpy(rec, job->deletes + i * 8, 8);
      rec[2] = epoch | TOMBSTONE;
      memset(rec + 4, 0, ov->dim * 4);
    } else {
      const uint8_t *src = job->upserts + (i - job->delete_count) * (8 + 4 * (uint64_t)ov->dim);
      memcpy(rec, src, 8);
      rec[2] = epoch;
      memcpy(rec + 4, src + 8, ov->dim * 4);
    }
    rec[3] = 0;
  }
  pace(&p, WORK_WRITE * (double)last_chunk(count));
  int err = sync_range(ov, ov->log_offset + from * rb, count * rb);
  /* 2. The intent: from here on a crash is undone from these records. */
  if (!err) {
    write_intent(ov, epoch, from, to);
    err = sync_range(ov, OV_INTENT_AT, INTENT_BYTES);
  }
  if (err) {
    job->err = err;
    job->what = "msync of the overlay records";
    return;
  }
  /* 3. Link each record: key into its slot when new, prev, then the slot's ref (release). */
  uint8_t *in_base = base_presence(ov, from, count, &p);
  uint8_t *touched = in_base ? calloc(blocks / 8 + 1, 1) : NULL;
  if (!touched) {
    free(in_base);
    job->err = ENOMEM;
    job->what = "apply";
    return;
  }
  uint64_t slots_used = ov->slots_used;
  int64_t live = (int64_t)ov->live_keys;
  for (uint64_t r = from; r < to; r++) {
    /*
     * Every LINK_AHEAD records, the home slots of the next LINK_AHEAD keys in the overlay's
     * index are prefetched: each is a cache miss (and often a TLB miss) in tens of MiB of
     * index, and overlapping them is what the lookup kernel does for its groups. Only a hint:
     * the links below stay in record order. (Whether a key is in the base table was found
     * before, in base_presence.)
     */
    if ((r - from) % LINK_AHEAD == 0) {
      if ((r - from) % PACE_CHUNK_RECORDS == 0 && r > from) pace(&p, WORK_LINK * PACE_CHUNK_RECORDS);
      const uint64_t ahead = r + LINK_AHEAD < to ? r + LINK_AHEAD : to;
      for (uint64_t q = r; q < ahead; q++) {
        const uint32_t *next = record_at(ov, q);
        __builtin_prefetch(ov->index + (key_hash(next[0], next[1], ov->seed) & ov->mask) * 3, 1);
      }
    }
    uint32_t *rec = record_at(ov, r);
    const uint32_t lo = rec[0], hi = rec[1];
    int found;
    const uint64_t s = find_slot(ov, lo, hi, &found);
    if (s == UINT64_MAX) {
      /* Cannot happen under the load limit apply checks; if it does, stop as after a failed
       * msync: nothing is published, and recovery undoes the links made so far. */
      free(touched);
      free(in_base);
      ov->recovered = 0;
      job->err = ENOSPC;
      job->what = "linking a record into the overlay index (full)";
      return;
    }
    uint32_t *e = ov->index + s * 3;
    const int before = key_present(ov, e, found, (in_base[(r - from) >> 3] >> ((r - from) & 7)) & 1);
    if (!found) {
      e[0] = lo;
      e[1] = hi;
      slots_used++;
    }
    rec[3] = found && e[2] != REF_NONE ? e[2] : 0;
    store_release(e + 2, (uint32_t)(r + 1));
    live += ((rec[2] & TOMBSTONE) ? 0 : 1) - before;
    touched[(s / BLOCK_SLOTS) >> 3] |= (uint8_t)(1u << ((s / BLOCK_SLOTS) & 7));
  }
  pace(&p, WORK_LINK * (double)last_chunk(count));
  /* Now the blocks touched are known: the rest of the work is their sums and the records' CRC. */
  uint64_t touched_blocks = 0;
  for (uint64_t i = 0; i < blocks / 8 + 1; i++) touched_blocks += (uint64_t)__builtin_popcount(touched[i]);
  p.total = p.done + WORK_BLOCK * (double)touched_blocks + WORK_CRC_BYTE * (double)(count * rb);
  free(in_base);
  sum_touched_blocks(ov, touched, blocks, &p);
  free(touched);
  /* The delta's records are read once: the log's running CRC is joined from theirs. */
  uint32_t delta_crc = 0;
  for (uint64_t at = 0; at < count * rb; at += PACE_CHUNK_BYTES) {
    const uint64_t n = count * rb - at < PACE_CHUNK_BYTES ? count * rb - at : PACE_CHUNK_BYTES;
    delta_crc = strata_crc32c(delta_crc, ov->log + from * rb + at, n);
    pace(&p, WORK_CRC_BYTE * (double)n);
  }
  const uint32_t log_crc = crc32c_combine(ov->log_crc, delta_crc, count * rb);
  err = sync_range(ov, ov->sums_offset, ov->log_offset - ov->sums_offset);
  if (!err) err = sync_range(ov, ov->log_offset + from * rb, count * rb);
  /* 4. The commit, into the record the last one is not in; then readers may see it. */
  const commit_record c = {epoch, to, slots_used, live < 0 ? 0 : (uint64_t)live, log_crc, from, delta_crc};
  if (!err) {
    write_commit(ov, &c);
    err = sync_range(ov, OV_COMMIT_AT(epoch), COMMIT_BYTES);
  }
  if (err) {
    /* Linked but not committed: readers never see it, and recovery undoes it. Stop writing. */
    ov->recovered = 0;
    job->err = err;
    job->what = "msync of the overlay";
    return;
  }
  ov->epoch = epoch;
  ov->records = to;
  ov->slots_used = slots_used;
  ov->live_keys = c.live_keys;
  ov->log_crc = log_crc;
  store_release(ov->published, epoch);
  pacer_report(&p, job);
}

/* [epoch, records, slotsUsed, liveKeys, chunks, pausedChunks, sleptMs, cpuMs, wallMs] */
static napi_value state_array(napi_env env, const overlay *ov, const apply_job *job) {
  napi_value result, v;
  napi_create_array_with_length(env, 9, &result);
  const double values[9] = {ov->epoch,          (double)ov->records,      (double)ov->slots_used,  (double)ov->live_keys, (double)job->chunks,
                            (double)job->paused, (double)job->slept_ns / 1e6, (double)job->cpu_ns / 1e6, (double)job->wall_ns / 1e6};
  for (uint32_t i = 0; i < 9; i++) {
    napi_create_double(env, values[i], &v);
    napi_set_element(env, result, i, v);
  }
  return result;
}

static void apply_complete(napi_env env, napi_status status, void *data) {
  apply_job *job = data;
  overlay *ov = job->ov;
  ov->busy = 0;
  napi_delete_reference(env, job->body_ref);
  napi_delete_reference(env, job->handle_ref);
  if (status != napi_ok && job->err == 0) {
    job->err = EIO;
    job->what = "apply (cancelled)";
  }
  if (job->err) {
    char message[200];
    snprintf(message, sizeof message, "%s failed: %s", job->what, strerror(job->err));
    napi_value msg, code, error;
    napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
    napi_create_string_utf8(env, job->err == ENOSPC ? "ENOSPC" : "EIO", NAPI_AUTO_LENGTH, &code);
    napi_create_error(env, code, msg, &error);
    napi_reject_deferred(env, job->deferred, error);
  } else {
    napi_resolve_deferred(env, job->deferred, state_array(env, ov, job));
  }
  if (ov->unmap_pending) unmap_overlay(ov);
  napi_delete_async_work(env, job->work);
  free(job);
}

static napi_value js_overlay_apply(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  overlay *ov = argc >= 4 ? overlay_arg(env, argv[0]) : NULL;
  uint8_t *body;
  size_t body_bytes;
  double upserts, deletes;
  napi_typedarray_type type;
  size_t elements, offset;
  napi_value arraybuffer;
  if (!ov || napi_get_typedarray_info(env, argv[1], &type, &elements, (void **)&body, &arraybuffer, &offset) != napi_ok || type != napi_uint8_array ||
      napi_get_value_double(env, argv[2], &upserts) != napi_ok || napi_get_value_double(env, argv[3], &deletes) != napi_ok || upserts < 0 || deletes < 0)
    return throw_code(env, "EINVAL", "overlayApply(overlay handle, body: Buffer, upserts, deletes)");
  body_bytes = elements;
  const uint64_t record = 8 + 4 * (uint64_t)ov->dim;
  if (upserts > 4e9 || deletes > 4e9 || body_bytes != 24 + (uint64_t)upserts * record + (uint64_t)deletes * 8 || memcmp(body, "SPD1", 4) != 0 || rd32(body + 4) != ov->dim)
    return throw_code(env, "EINVAL", "overlayApply: the body is not an SPD1 delta of this dim with these counts");
  if (!ov->recovered) return throw_code(env, "EINVAL", "overlayApply: the overlay was not recovered (or a failed apply stopped it)");
  if (ov->busy) return throw_code(env, "EBUSY", "overlayApply: a delta is being applied already (one writer per table)");
  const uint64_t count = (uint64_t)upserts + (uint64_t)deletes;
  if (ov->records + count > ov->record_capacity || ov->slots_used + count > ov->slots * MAX_LOAD_NUM / MAX_LOAD_DEN || ov->epoch + 1 >= TOMBSTONE)
    return throw_code(env, "EFULL", "overlayApply: the overlay has no room for this delta");
  apply_job *job = calloc(1, sizeof *job);
  if (!job) return throw_code(env, "ENOMEM", "overlayApply: out of memory");
  job->ov = ov;
  job->pace_share = ov->pace_share;
  job->pace_window_ns = ov->pace_window_ns;
  job->upsert_count = (uint64_t)upserts;
  job->delete_count = (uint64_t)deletes;
  job->upserts = body + 24;
  job->deletes = body + 24 + job->upsert_count * record;
  napi_value promise, name;
  napi_create_reference(env, argv[1], 1, &job->body_ref);
  napi_create_reference(env, argv[0], 1, &job->handle_ref);
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "strata-overlay-apply", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, apply_execute, apply_complete, job, &job->work) != napi_ok || napi_queue_async_work(env, job->work) != napi_ok) {
    napi_delete_reference(env, job->body_ref);
    napi_delete_reference(env, job->handle_ref);
    free(job);
    return throw_code(env, "EIO", "overlayApply: could not queue the work");
  }
  ov->busy = 1;
  return promise;
}

/*
 * overlayPacing(handle, share, windowMs) -> [share, windowMs] before: how this overlay's next
 * applies pace themselves while lookups run. share in (0, 1] (1: never paced), windowMs in
 * [0, 60000] (0: never paced). Every overlay starts at PACE_SHARE and PACE_WINDOW_NS; the
 * service leaves them so, benches and tests compare.
 */
static napi_value js_overlay_pacing(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  overlay *ov = argc >= 3 ? overlay_arg(env, argv[0]) : NULL;
  double share, window_ms;
  if (!ov || napi_get_value_double(env, argv[1], &share) != napi_ok || napi_get_value_double(env, argv[2], &window_ms) != napi_ok || !(share > 0 && share <= 1) ||
      !(window_ms >= 0 && window_ms <= 60000))
    return throw_code(env, "EINVAL", "overlayPacing(overlay handle, share in (0, 1], windowMs in [0, 60000])");
  napi_value result, v;
  napi_create_array_with_length(env, 2, &result);
  napi_create_double(env, ov->pace_share, &v);
  napi_set_element(env, result, 0, v);
  napi_create_double(env, (double)ov->pace_window_ns / 1e6, &v);
  napi_set_element(env, result, 1, v);
  ov->pace_share = share;
  ov->pace_window_ns = (uint64_t)(window_ms * 1e6);
  return result;
}

/* ---------- info, unmap ---------- */

static napi_value js_overlay_info(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  overlay *ov = argc >= 1 ? overlay_arg(env, argv[0]) : NULL;
  if (!ov) return throw_code(env, "EINVAL", "overlayInfo(overlay handle)");
  napi_value result, v;
  napi_create_array_with_length(env, 9, &result);
  const double values[9] = {load_acquire(ov->published), (double)ov->records, (double)ov->slots_used, (double)ov->live_keys,
                            (double)ov->record_capacity, (double)(ov->slots * MAX_LOAD_NUM / MAX_LOAD_DEN), ov->base_tag, ov->dim, ov->log_crc};
  for (uint32_t i = 0; i < 9; i++) {
    napi_create_double(env, values[i], &v);
    napi_set_element(env, result, i, v);
  }
  return result;
}

static napi_value js_overlay_unmap(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  overlay *ov = NULL;
  if (argc < 1 || !get_overlay(env, argv[0], &ov)) return throw_code(env, "EINVAL", "overlayUnmap(overlay handle)");
  if (!ov) return NULL; /* already unmapped */
  if (ov->busy) ov->unmap_pending = 1;
  else unmap_overlay(ov);
  return NULL;
}

void overlay_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"overlayMap", NULL, js_overlay_map, NULL, NULL, NULL, napi_enumerable, NULL},
    {"overlayRecover", NULL, js_overlay_recover, NULL, NULL, NULL, napi_enumerable, NULL},
    {"overlayApply", NULL, js_overlay_apply, NULL, NULL, NULL, napi_enumerable, NULL},
    {"overlayPacing", NULL, js_overlay_pacing, NULL, NULL, NULL, napi_enumerable, NULL},
    {"overlayInfo", NULL, js_overlay_info, NULL, NULL, NULL, napi_enumerable, NULL},
    {"overlayUnmap", NULL, js_overlay_unmap, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
