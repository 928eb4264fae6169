/*
 * strata_fuse: a FUSE session spoken directly on /dev/fuse, as a Node-API addon.
 *
 * The kernel protocol is used without libfuse so that the daemon can negotiate
 * FUSE_PASSTHROUGH (backing files registered with FUSE_DEV_IOC_BACKING_OPEN) and send
 * invalidation notices; libfuse 3.14 builds the INIT reply itself and offers neither.
 * The ABI numbers below are the kernel's (include/uapi/linux/fuse.h, protocol 7.40).
 *
 *   mount(target, source, options, maxWrite, wantPassthrough) -> session
 *        opens /dev/fuse and mount(2)s it at `target` (needs CAP_SYS_ADMIN); `options`
 *        are extra comma-separated mount options (allow_other, max_read=...).
 *   start(session, onRequest, threads)
 *        starts `threads` reader threads. Each reads requests from /dev/fuse, answers
 *        INIT itself and hands every other request to `onRequest(Buffer)` on the event
 *        loop (a threadsafe function; the Buffer is the request as the kernel sent it,
 *        header included, and owns its memory). After INIT, `onRequest` receives a
 *        synthetic message of opcode INIT whose body is the negotiated
 *        {minor, flags, flags2, maxWrite} (4 x uint32 LE); when the connection ends, one
 *        of opcode 0.
 *   reply(session, header, data?) -> 0 or errno
 *        writes one answer (header and optional payload, one writev). ENOENT means the
 *        request was interrupted meanwhile: nothing to do.
 *   notify(session, message)
 *        queues a notification (unique 0) for the notifier thread. Notices are written
 *        off the event loop on purpose: the kernel may hold a directory lock while a
 *        LOOKUP waits for JavaScript, and an INVAL_ENTRY written from JavaScript would
 *        wait for that lock, a deadlock.
 *   backingOpen(session, fd) -> backing id; backingClose(session, id)
 *        register (and drop) a file the kernel reads and writes itself for opens
 *        answered with FOPEN_PASSTHROUGH.
 *   serveFiles(session, fh, objectSize, blockSize, places, offsets, checksums)
 *        lets the reader threads answer READs of handle `fh` themselves from where the
 *        object's blocks are cached; block i, min(blockSize, objectSize - i * blockSize)
 *        bytes long, is:
 *        - places[i] a string: that file (an NVMe block file, the pmem pool) from byte
 *          offsets[i] (Float64Array), with CRC-32C checksums[i] (Uint32Array), read with
 *          pread. The bytes there must not change until forgetFiles (a block file is
 *          replaced only by the same bytes, a lent pmem slot is not reused). The first time
 *          a thread reads a block in this session it reads it whole and checks its CRC (once
 *          per session and place, whichever handle); a block whose file is gone, is short or
 *          does not match is never read natively again for this handle;
 *        - places[i] a Buffer of exactly the block's bytes (a DRAM tier block), written to
 *          the kernel straight from that memory; the caller keeps it alive and unchanged
 *          until forgetFiles has returned;
 *        - null: not cached. A READ touching such a block (or a failed one) goes to
 *          `onRequest` as before.
 *   forgetFiles(session, fh) -> [block index]
 *        ends serveFiles for `fh` (its RELEASE), waiting for reads in progress to finish,
 *        so no thread touches its places once it returns. Answers the blocks the threads
 *        read (each counted once, as a cache hit).
 *   fileStats(session) -> {reads, bytes, fallbacks, mismatches}
 *        READs answered natively, their bytes, READs of registered handles handed to
 *        JavaScript instead, blocks found not to match their checksum.
 *   stop(session) -> boolean
 *        joins the reader threads (the caller has ended the connection: unmounted, or
 *        aborted it through /sys/fs/fuse/connections), stops the notifier, closes the fd.
 *        false when the connection is still alive after a few seconds (a lazy detach
 *        with files open): the session is then left running until the process exits.
 *
 * Errors are thrown as JavaScript Errors carrying the errno name in `code`.
 */
#define NAPI_VERSION 8
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include "crc32c.h"

/* Kernel protocol numbers (include/uapi/linux/fuse.h). */
#define FUSE_KERNEL_VERSION 7
/* 7.40 added FUSE_PASSTHROUGH, fuse_open_out.backing_id and fuse_init_out.max_stack_depth. */
#define FUSE_OUR_MINOR 40
#define OP_READ 15
#define OP_INIT 26
#define OP_INTERRUPT 36
#define INIT_ASYNC_READ (1u << 0)
#define INIT_ATOMIC_O_TRUNC (1u << 3)
#define INIT_BIG_WRITES (1u << 5)
#define INIT_AUTO_INVAL_DATA (1u << 12)
/* Every READDIR becomes READDIRPLUS: a listing carries each name's attributes, so opening or
 * stat'ing the names listed sends no LOOKUP (see fuse/request-dispatch.ts). */
#define INIT_DO_READDIRPLUS (1u << 13)
#define INIT_PARALLEL_DIROPS (1u << 18)
#define INIT_MAX_PAGES (1u << 22)
#define INIT_EXT (1u << 30)
/* FUSE_PASSTHROUGH is bit 37 of the 64-bit flags: bit 5 of flags2. */
#define INIT2_PASSTHROUGH (1u << 5)
#define DEV_IOC_MAGIC 229

struct in_header {
  uint32_t len;
  uint32_t opcode;
  uint64_t unique;
  uint64_t nodeid;
  uint32_t uid;
  uint32_t gid;
  uint32_t pid;
  uint16_t total_extlen;
  uint16_t padding;
};

struct out_header {
  uint32_t len;
  int32_t error;
  uint64_t unique;
};

struct init_in {
  uint32_t major;
  uint32_t minor;
  uint32_t max_readahead;
  uint32_t flags;
  uint32_t flags2;
  uint32_t unused[11];
};

struct init_out {
  uint32_t major;
  uint32_t minor;
  uint32_t max_readahead;
  uint32_t flags;
  uint16_t max_background;
  uint16_t congestion_threshold;
  uint32_t max_write;
  uint32_t time_gran;
  uint16_t max_pages;
  uint16_t map_alignment;
  uint32_t flags2;
  uint32_t max_stack_depth;
  uint32_t unused[6];
};

struct backing_map {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};

#define DEV_IOC_BACKING_OPEN _IOW(DEV_IOC_MAGIC, 1, struct backing_map)
#define DEV_IOC_BACKING_CLOSE _IOW(DEV_IOC_MAGIC, 2, uint32_t)

/* Room for the largest request: a WRITE of max_write bytes plus its headers (the kernel
 * refuses reads into buffers smaller than that); one page covers the headers. */
#define REQUEST_HEADROOM 4096
#define MAX_THREADS 64
#define MAX_WRITE_LIMIT (16u * 1024 * 1024)
#define PAGE_BYTES 4096u
/* Background requests (readahead, async writes) the kernel may keep in flight: the
 * kernel's default is 12; more keeps several 1 MiB readahead requests queued. */
#define MAX_BACKGROUND 64
#define CONGESTION_THRESHOLD 48
/* How long stop() waits for each reader thread to see the end of the connection. */
#define STOP_WAIT_SECONDS 2

/* fuse_read_in: the body of a READ. */
struct read_in {
  uint64_t fh;
  uint64_t offset;
  uint32_t size;
  uint32_t read_flags;
  uint64_t lock_owner;
  uint32_t flags;
  uint32_t padding;
};

/* Hash buckets of handles served from files: a few hundred open files at most hash well. */
#define FILE_MAP_BUCKETS 256
/* Largest block served natively: the block cache's largest block size (cache/block-cache-config.ts). */
#define MAX_NATIVE_BLOCK (16u * 1024 * 1024)

/*
 * Blocks whose checksum a thread has checked, by place (file, offset, CRC), for the whole
 * session: every handle of the same object (fio's jobs, a data loader's workers) then reads a
 * block that was checked once without reading it whole again. Sound because a block's place
 * only ever holds that block's bytes while a handle may read it: an NVMe block file is
 * replaced, by rename, with a complete file of the same bytes, and a slot of the pmem pool
 * file is not reused while a handle holds it (cache/pmem-tier.ts); the CRC is part of the key,
 * so a slot reused for another block later is checked again. Damage after a check is not caught here
 * (docs/SEMANTICS.md). At most this many places are remembered (about 150 bytes each); past
 * it, blocks are checked per handle.
 */
#define CHECKED_BUCKETS 4096
#define CHECKED_MAX (1u << 20)

struct checked_path {
  struct checked_path *next;
  uint64_t hash;
  uint64_t offset;
  uint32_t checksum;
  char path[];
};

/*
 * Descriptors the threads keep open on block files, per handle's block, so a READ costs a
 * pread and no open and close. A block file the tier evicts or replaces meanwhile stays
 * readable through its descriptor with the same bytes (blocks are named by object version)
 * until the handle is released. At most this many per session: past it, reads open and
 * close the file each time, as a daemon with a low RLIMIT_NOFILE needs.
 */
#define CACHED_FDS_MAX 4096

/* CHECKING: one thread reads the block whole and checks it; others wait for the outcome
 * rather than read and check the same 4 MiB again (the kernel's readahead sends several READs
 * of one block at once). */
enum block_state { BLOCK_UNCHECKED = 0, BLOCK_CHECKED = 1, BLOCK_UNUSABLE = 2, BLOCK_CHECKING = 3 };
/* How long a thread waiting for another's check sleeps between looks: a check is a 4 MiB read
 * and CRC, a few milliseconds; sleeping, not spinning, leaves the core to the checker. */
#define CHECK_WAIT_NS 100000

struct file_block {
  char *path; /* NULL: no file holds this block */
  const unsigned char *memory; /* the block's bytes in a caller's Buffer, or NULL */
  uint64_t offset;
  uint32_t length;
  uint32_t checksum;
  atomic_int state;
  /* The block file kept open for this handle, or -1 (CACHED_FDS_MAX). */
  atomic_int fd;
  /* Set once a thread has answered a READ with bytes of this block. */
  atomic_int served;
  /* Set once the block's file range was asked into the page cache ahead of its first read. */
  atomic_int advised;
};

/* Segments of one READ answer: the header, then per block touched its memory or the part read
 * into the thread's buffer (a 16 MiB request over 1 MiB blocks touches 17). */
#define READ_IOV_MAX 40

/* One handle's blocks, shared by the reader threads while they read it (refs). */
struct file_map {
  struct file_map *next;
  uint64_t fh;
  uint64_t object_size;
  uint32_t block_size;
  uint32_t block_count;
  atomic_int refs;
  /* The session's count of cached descriptors, given back when the map is freed. */
  atomic_int *cached_fds;
  struct file_block blocks[];
};

struct notice {
  struct notice *next;
  size_t length;
  unsigned char bytes[];
};

struct session {
  int fd;
  uint32_t max_write;
  int want_passthrough;
  napi_threadsafe_function tsfn;
  int started;
  int stopped;
  pthread_t threads[MAX_THREADS];
  int thread_count;
  /* Reader threads stop() has joined so far. */
  int joined;
  atomic_int live_threads;
  pthread_mutex_t notice_lock;
  pthread_cond_t notice_ready;
  struct notice *notice_head;
  struct notice *notice_tail;
  int notice_stop;
  pthread_t notifier;
  int notifier_started;
  pthread_mutex_t maps_lock;
  struct file_map *maps[FILE_MAP_BUCKETS];
  pthread_mutex_t checked_lock;
  struct checked_path *checked[CHECKED_BUCKETS];
  uint32_t checked_count;
  atomic_int cached_fds;
  atomic_uint_fast64_t native_reads;
  atomic_uint_fast64_t native_bytes;
  atomic_uint_fast64_t native_fallbacks;
  atomic_uint_fast64_t native_mismatches;
};

struct message {
  unsigned char *bytes;
  size_t length;
  size_t capacity; /* non-zero: a reader's request buffer, returned to the hand-off pool */
};

/* --- request buffers handed to JavaScript -------------------------------------------------
 * A WRITE request carries up to max_write bytes. Copying each into a fresh allocation cost a
 * memcpy plus the page faults of a new 1 MiB mapping per request (glibc maps allocations that
 * large on their own). A large request instead hands JavaScript the buffer it was read into,
 * and the reader takes another from this pool; the Buffer's finalizer gives it back. The pool
 * keeps at most HANDOFF_KEEP free buffers; beyond that they are freed. It is process-wide,
 * since a Buffer may outlive its session. */
#define HANDOFF_MIN (64 * 1024)
#define HANDOFF_KEEP 32

struct free_buffer {
  struct free_buffer *next;
  size_t capacity;
};

static pthread_mutex_t handoff_lock = PTHREAD_MUTEX_INITIALIZER;
static struct free_buffer *handoff_free;
static unsigned handoff_free_count;
static atomic_uint_fast64_t handoff_count;
static atomic_uint_fast64_t handoff_allocations;

/* A buffer of `capacity` bytes: a pooled one when one of that size is free. */
static unsigned char *take_request_buffer(size_t capacity) {
  pthread_mutex_lock(&handoff_lock);
  struct free_buffer **link = &handoff_free;
  while (*link && (*link)->capacity != capacity) link = &(*link)->next;
  struct free_buffer *found = *link;
  if (found) {
    *link = found->next;
    handoff_free_count--;
  }
  pthread_mutex_unlock(&handoff_lock);
  if (found) return (unsigned char *)found;
  atomic_fetch_add(&handoff_allocations, 1);
  return malloc(capacity);
}

static void give_request_buffer(unsigned char *bytes, size_t capacity) {
  if (!bytes) return;
  if (capacity >= sizeof(struct free_buffer)) {
    pthread_mutex_lock(&handoff_lock);
    if (handoff_free_count < HANDOFF_KEEP) {
      struct free_buffer *entry = (struct free_buffer *)bytes;
      entry->capacity = capacity;
      entry->next = handoff_free;
      handoff_free = entry;
      handoff_free_count++;
      bytes = NULL;
    }
    pthread_mutex_unlock(&handoff_lock);
  }
  free(bytes);
}

static napi_value throw_errno(napi_env env, const char *op, int err) {
  char message[200];
  const char *code = "EIO";
  switch (err) {
    case EPERM: code = "EPERM"; break;
    case EACCES: code = "EACCES"; break;
    case ENOENT: code = "ENOENT"; break;
    case ENODEV: code = "ENODEV"; break;
    case EINVAL: code = "EINVAL"; break;
    case EBUSY: code = "EBUSY"; break;
    case ENOTDIR: code = "ENOTDIR"; break;
    case ENOMEM: code = "ENOMEM"; break;
    case EBADF: code = "EBADF"; break;
    case EOPNOTSUPP: code = "EOPNOTSUPP"; break;
    case EAGAIN: code = "EAGAIN"; break;
    default: break;
  }
  snprintf(message, sizeof message, "%s failed: %s", op, strerror(err));
  napi_throw_error(env, code, message);
  return NULL;
}

static napi_value throw_type(napi_env env, const char *message) {
  napi_throw_type_error(env, NULL, message);
  return NULL;
}

static int get_session(napi_env env, napi_value value, struct session **out) {
  void *data = NULL;
  if (napi_get_value_external(env, value, &data) != napi_ok || data == NULL) return 0;
  *out = data;
  return 1;
}

static int get_uint32(napi_env env, napi_value value, uint32_t *out) {
  return napi_get_value_uint32(env, value, out) == napi_ok;
}

/* A copy of a JavaScript string; NULL when it is not one or is too long. */
static char *get_string(napi_env env, napi_value value) {
  size_t length = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok || length > 4096) return NULL;
  char *text = malloc(length + 1);
  if (!text) return NULL;
  if (napi_get_value_string_utf8(env, value, text, length + 1, &length) != napi_ok) {
    free(text);
    return NULL;
  }
  return text;
}

static void write_all_ignoring(int fd, const void *bytes, size_t length) {
  ssize_t n;
  do {
    n = write(fd, bytes, length);
  } while (n < 0 && errno == EINTR);
}

/* One answer in segments: /dev/fuse takes a reply in a single write, whole or not at all. */
static void writev_ignoring(int fd, const struct iovec *iov, int count) {
  ssize_t n;
  do {
    n = writev(fd, iov, count);
  } while (n < 0 && errno == EINTR);
}

/* --- session lifetime ----------------------------------------------------------------- */

static void drop_notices(struct session *s) {
  struct notice *n = s->notice_head;
  while (n) {
    struct notice *next = n->next;
    free(n);
    n = next;
  }
  s->notice_head = s->notice_tail = NULL;
}

/* --- reads served from files ----------------------------------------------------------- */

static void free_file_map(struct file_map *m) {
  for (uint32_t i = 0; i < m->block_count; i++) {
    struct file_block *b = &m->blocks[i];
    int fd = atomic_load(&b->fd);
    if (fd >= 0) {
      close(fd);
      atomic_fetch_sub(m->cached_fds, 1);
    }
    free(b->path);
  }
  free(m);
}

static void release_file_map(struct file_map *m) {
  if (atomic_fetch_sub(&m->refs, 1) == 1) free_file_map(m);
}

/* The map of `fh` with a reference taken, or NULL. */
static struct file_map *acquire_file_map(struct session *s, uint64_t fh) {
  pthread_mutex_lock(&s->maps_lock);
  struct file_map *m = s->maps[fh % FILE_MAP_BUCKETS];
  while (m && m->fh != fh) m = m->next;
  if (m) atomic_fetch_add(&m->refs, 1);
  pthread_mutex_unlock(&s->maps_lock);
  return m;
}

/* How long forgetFiles sleeps between looks at reads still in progress. */
#define FORGET_WAIT_NS 20000

/* Waits until no reader thread holds `m` but the caller, so the places it names (a caller's
 * Buffers, a pmem slot the tier reuses once given back) may be let go once the caller releases
 * it. Almost never waits: the kernel sends RELEASE once every READ of the file is answered, so
 * only a thread between its answer and its release of the map, or a READ the kernel gave up
 * on (a killed reader), is still there; copying from memory takes microseconds, a pread from a
 * disk milliseconds. */
static void wait_for_readers(struct file_map *m) {
  while (atomic_load(&m->refs) > 1) {
    struct timespec pause = {0, FORGET_WAIT_NS};
    nanosleep(&pause, NULL);
  }
}

/* Unlinks the map of `fh` (if any) from the table; the caller releases it. */
static struct file_map *take_file_map(struct session *s, uint64_t fh) {
  pthread_mutex_lock(&s->maps_lock);
  struct file_map **at = &s->maps[fh % FILE_MAP_BUCKETS];
  while (*at && (*at)->fh != fh) at = &(*at)->next;
  struct file_map *m = *at;
  if (m) *at = m->next;
  pthread_mutex_unlock(&s->maps_lock);
  return m;
}

static void drop_file_maps(struct session *s) {
  for (int b = 0; b < FILE_MAP_BUCKETS; b++) {
    struct file_map *m = s->maps[b];
    while (m) {
      struct file_map *next = m->next;
      release_file_map(m);
      m = next;
    }
    s->maps[b] = NULL;
  }
}

/* FNV-1a of the block's place: its file, offset and CRC. */
static uint64_t place_hash(const struct file_block *b) {
  uint64_t h = 1469598103934665603ull;
  for (const char *p = b->path; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
  for (int i = 0; i < 8; i++) h = (h ^ ((b->offset >> (8 * i)) & 0xff)) * 1099511628211ull;
  for (int i = 0; i < 4; i++) h = (h ^ ((b->checksum >> (8 * i)) & 0xff)) * 1099511628211ull;
  return h;
}

static int same_place(const struct checked_path *c, uint64_t h, const struct file_block *b) {
  return c->hash == h && c->offset == b->offset && c->checksum == b->checksum && strcmp(c->path, b->path) == 0;
}

static int was_checked(struct session *s, const struct file_block *b) {
  uint64_t h = place_hash(b);
  pthread_mutex_lock(&s->checked_lock);
  struct checked_path *c = s->checked[h % CHECKED_BUCKETS];
  while (c && !same_place(c, h, b)) c = c->next;
  pthread_mutex_unlock(&s->checked_lock);
  return c != NULL;
}

static void note_checked(struct session *s, const struct file_block *b) {
  uint64_t h = place_hash(b);
  size_t length = strlen(b->path);
  pthread_mutex_lock(&s->checked_lock);
  struct checked_path **bucket = &s->checked[h % CHECKED_BUCKETS];
  struct checked_path *c = *bucket;
  while (c && !same_place(c, h, b)) c = c->next;
  if (!c && s->checked_count < CHECKED_MAX && (c = malloc(sizeof *c + length + 1)) != NULL) {
    c->hash = h;
    c->offset = b->offset;
    c->checksum = b->checksum;
    memcpy(c->path, b->path, length + 1);
    c->next = *bucket;
    *bucket = c;
    s->checked_count++;
  }
  pthread_mutex_unlock(&s->checked_lock);
}

static void drop_checked(struct session *s) {
  for (int b = 0; b < CHECKED_BUCKETS; b++) {
    struct checked_path *c = s->checked[b];
    while (c) {
      struct checked_path *next = c->next;
      free(c);
      c = next;
    }
    s->checked[b] = NULL;
  }
}

/*
 * A descriptor of block `b`'s file: the one kept for the handle, else a new one, kept when the
 * session's budget allows (*owned 0) or to be closed by the caller (*owned 1). -1 when the file
 * is gone.
 */
static int block_fd(struct file_map *m, struct file_block *b, int *owned) {
  *owned = 0;
  int fd = atomic_load(&b->fd);
  if (fd >= 0) return fd;
  fd = open(b->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  if (atomic_fetch_add(m->cached_fds, 1) < CACHED_FDS_MAX) {
    int expected = -1;
    if (atomic_compare_exchange_strong(&b->fd, &expected, fd)) return fd;
    /* Another thread kept one first: use it. */
    atomic_fetch_sub(m->cached_fds, 1);
    close(fd);
    return expected;
  }
  atomic_fetch_sub(m->cached_fds, 1);
  *owned = 1;
  return fd;
}

/* Reads exactly `length` bytes at `offset` of block `b`'s file; 0, or -1 when the file is gone or short. */
static int read_block_range(struct file_map *m, struct file_block *b, uint64_t offset, unsigned char *into, size_t length) {
  int owned;
  int fd = block_fd(m, b, &owned);
  if (fd < 0) return -1;
  size_t done = 0;
  while (done < length) {
    ssize_t n = pread(fd, into + done, length - done, (off_t)(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += (size_t)n;
  }
  if (owned) close(fd);
  return done == length ? 0 : -1;
}

/*
 * Blocks after one being read for the first time whose file ranges are asked into the page cache
 * (POSIX_FADV_WILLNEED starts the reads and does not wait for them). A block's first read reads
 * and checks it whole, so without this a sequential reader of block files waits for one block's
 * disk read at a time; with it the next two are on their way meanwhile. Wasted only for blocks
 * never read, which a file of blocks read at random still reads in the end.
 */
#define PREFETCH_BLOCKS 2

static void prefetch_blocks(struct file_map *m, uint64_t index) {
  for (uint64_t next = index + 1; next <= index + PREFETCH_BLOCKS && next < m->block_count; next++) {
    struct file_block *b = &m->blocks[next];
    if (!b->path || atomic_load(&b->state) != BLOCK_UNCHECKED) continue;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&b->advised, &expected, 1)) continue;
    int owned;
    int fd = block_fd(m, b, &owned);
    if (fd < 0) continue;
    /* Advice: a failure changes nothing but the speed, and the read itself reports real errors. */
    (void)posix_fadvise(fd, (off_t)b->offset, (off_t)b->length, POSIX_FADV_WILLNEED);
    if (owned) close(fd);
  }
}

/* Per reader thread: the reply it builds, and room to check a whole block. */
struct read_scratch {
  unsigned char *reply;
  size_t reply_capacity;
  unsigned char *block;
  size_t block_capacity;
};

/*
 * Answers a READ from the cached places of its handle when every block it touches has one: 1
 * when answered (or the answer failed to be written, which the kernel then reports itself), 0
 * when JavaScript must answer it. Memory blocks go to the kernel straight from their Buffer;
 * file blocks are read into the thread's buffer first.
 */
static int serve_read_from_files(struct session *s, const unsigned char *request, size_t length, struct read_scratch *scratch) {
  const struct in_header *header = (const struct in_header *)request;
  if (length < sizeof *header + sizeof(struct read_in)) return 0;
  struct read_in in;
  memcpy(&in, request + sizeof *header, sizeof in);
  struct file_map *m = acquire_file_map(s, in.fh);
  if (!m) return 0;
  int served = 0;
  uint64_t end = in.offset + in.size;
  if (end > m->object_size || end < in.offset) end = m->object_size;
  size_t total = in.offset < end ? (size_t)(end - in.offset) : 0;
  if (total > scratch->reply_capacity - sizeof(struct out_header)) goto done;
  struct iovec iov[READ_IOV_MAX];
  int segments = 1;
  /* File bytes go to the thread's buffer, one after the other, after room for the header. */
  unsigned char *data = scratch->reply + sizeof(struct out_header);
  size_t buffered = 0;
  for (uint64_t at = in.offset; at < end;) {
    uint64_t index = at / m->block_size;
    if (index >= m->block_count || segments >= READ_IOV_MAX) goto done;
    struct file_block *b = &m->blocks[index];
    int state = atomic_load(&b->state);
    if ((!b->path && !b->memory) || state == BLOCK_UNUSABLE) goto done;
    uint64_t block_start = index * m->block_size;
    uint64_t from = at - block_start;
    uint64_t to = end - block_start < b->length ? end - block_start : b->length;
    if (from >= to) goto done;
    size_t count = (size_t)(to - from);
    if (b->memory) {
      iov[segments].iov_base = (void *)(b->memory + from);
      iov[segments].iov_len = count;
      segments++;
      atomic_store(&b->served, 1);
      at = block_start + to;
      continue;
    }
    unsigned char *into = data + buffered;
    if (state == BLOCK_UNCHECKED && was_checked(s, b)) {
      int expected = BLOCK_UNCHECKED;
      atomic_compare_exchange_strong(&b->state, &expected, BLOCK_CHECKED);
      state = BLOCK_CHECKED;
    }
    int expected = BLOCK_UNCHECKED;
    if (state == BLOCK_UNCHECKED && atomic_compare_exchange_strong(&b->state, &expected, BLOCK_CHECKING)) {
      /* First read of the block: read it whole and check it, then copy out the range. */
      if (scratch->block_capacity < b->length) {
        unsigned char *bigger = realloc(scratch->block, b->length);
        if (!bigger) {
          atomic_store(&b->state, BLOCK_UNCHECKED);
          goto done;
        }
        scratch->block = bigger;
        scratch->block_capacity = b->length;
      }
      prefetch_blocks(m, index);
      if (read_block_range(m, b, b->offset, scratch->block, b->length) != 0) {
        atomic_store(&b->state, BLOCK_UNUSABLE);
        goto done;
      }
      if (crc32c_update(0, scratch->block, b->length) != b->checksum) {
        atomic_store(&b->state, BLOCK_UNUSABLE);
        atomic_fetch_add(&s->native_mismatches, 1);
        goto done;
      }
      atomic_store(&b->state, BLOCK_CHECKED);
      note_checked(s, b);
      memcpy(into, scratch->block + from, count);
    } else {
      if (state == BLOCK_UNCHECKED) state = expected;
      while (state == BLOCK_CHECKING) {
        struct timespec pause = {0, CHECK_WAIT_NS};
        nanosleep(&pause, NULL);
        state = atomic_load(&b->state);
      }
      /* UNCHECKED again: the checker ran out of memory; this READ goes to the daemon. */
      if (state != BLOCK_CHECKED || read_block_range(m, b, b->offset + from, into, count) != 0) {
        if (state == BLOCK_CHECKED) atomic_store(&b->state, BLOCK_UNUSABLE);
        goto done;
      }
    }
    /* Bytes right after the previous buffered segment extend it. */
    struct iovec *last = &iov[segments - 1];
    if (segments > 1 && (unsigned char *)last->iov_base + last->iov_len == into) {
      last->iov_len += count;
    } else {
      iov[segments].iov_base = into;
      iov[segments].iov_len = count;
      segments++;
    }
    buffered += count;
    atomic_store(&b->served, 1);
    at = block_start + to;
  }
  struct out_header out = {(uint32_t)(sizeof out + total), 0, header->unique};
  iov[0].iov_base = &out;
  iov[0].iov_len = sizeof out;
  /* ENOENT (the reader was interrupted) needs nothing more. */
  writev_ignoring(s->fd, iov, segments);
  atomic_fetch_add(&s->native_reads, 1);
  atomic_fetch_add(&s->native_bytes, total);
  served = 1;
done:
  if (!served) atomic_fetch_add(&s->native_fallbacks, 1);
  release_file_map(m);
  return served;
}

static void finalize_session(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct session *s = data;
  /* stop() normally ran; a session dropped without it (a failed start) still frees its fd. */
  if (!s->started && s->fd >= 0) close(s->fd);
  if (!s->started || s->stopped) {
    pthread_mutex_destroy(&s->notice_lock);
    pthread_cond_destroy(&s->notice_ready);
    drop_notices(s);
    drop_file_maps(s);
    pthread_mutex_destroy(&s->maps_lock);
    drop_checked(s);
    pthread_mutex_destroy(&s->checked_lock);
    free(s);
  }
  /* A started session that was never stopped keeps running threads: leak it rather
   * than free memory they use (the process is exiting in that case anyway). */
}

static napi_value do_mount(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5) return throw_type(env, "mount(target, source, options, maxWrite, wantPassthrough)");
  uint32_t max_write = 0;
  bool want_passthrough = false;
  if (!get_uint32(env, argv[3], &max_write) || max_write < PAGE_BYTES || max_write > MAX_WRITE_LIMIT || max_write % PAGE_BYTES != 0) {
    return throw_type(env, "maxWrite must be a multiple of 4096 between 4 KiB and 16 MiB");
  }
  if (napi_get_value_bool(env, argv[4], &want_passthrough) != napi_ok) return throw_type(env, "wantPassthrough must be a boolean");
  char *target = get_string(env, argv[0]);
  char *source = get_string(env, argv[1]);
  char *extra = get_string(env, argv[2]);
  if (!target || !source || !extra) {
    free(target);
    free(source);
    free(extra);
    return throw_type(env, "target, source and options must be strings");
  }
  int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    free(target);
    free(source);
    free(extra);
    return throw_errno(env, "open /dev/fuse", err);
  }
  char options[4400];
  int written = snprintf(options, sizeof options, "fd=%d,rootmode=40000,user_id=%u,group_id=%u%s%s", fd, (unsigned)getuid(), (unsigned)getgid(),
                         extra[0] ? "," : "", extra);
  int err = 0;
  if (written < 0 || (size_t)written >= sizeof options) {
    err = EINVAL;
  } else if (mount(source, target, "fuse.strata", MS_NOSUID | MS_NODEV, options) != 0) {
    err = errno;
  }
  free(target);
  free(source);
  free(extra);
  if (err) {
    close(fd);
    return throw_errno(env, "mount", err);
  }
  struct session *s = calloc(1, sizeof *s);
  if (!s) {
    close(fd);
    return throw_errno(env, "mount", ENOMEM);
  }
  s->fd = fd;
  s->max_write = max_write;
  s->want_passthrough = want_passthrough;
  atomic_init(&s->live_threads, 0);
  atomic_init(&s->cached_fds, 0);
  pthread_mutex_init(&s->notice_lock, NULL);
  pthread_mutex_init(&s->maps_lock, NULL);
  pthread_mutex_init(&s->checked_lock, NULL);
  pthread_cond_init(&s->notice_ready, NULL);
  napi_value result;
  if (napi_create_external(env, s, finalize_session, NULL, &result) != napi_ok) {
    /* The mount exists; the caller unmounts it when this throws. */
    close(fd);
    free(s);
    return throw_errno(env, "mount", ENOMEM);
  }
  return result;
}

/* --- reader threads ------------------------------------------------------------------- */

static void free_message_memory(napi_env env, void *data, void *hint) {
  (void)env;
  give_request_buffer(data, (size_t)(uintptr_t)hint);
}

/* Runs on the event loop: one request becomes one Buffer for JavaScript. */
static void deliver(napi_env env, napi_value callback, void *context, void *data) {
  (void)context;
  struct message *m = data;
  if (env == NULL) { /* the function is being torn down */
    give_request_buffer(m->bytes, m->capacity);
    free(m);
    return;
  }
  napi_value buffer;
  if (napi_create_external_buffer(env, m->length, m->bytes, free_message_memory, (void *)(uintptr_t)m->capacity, &buffer) != napi_ok) {
    void *copy = NULL;
    napi_status status = napi_create_buffer_copy(env, m->length, m->bytes, &copy, &buffer);
    give_request_buffer(m->bytes, m->capacity);
    if (status != napi_ok) {
      free(m);
      return;
    }
  }
  free(m);
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  napi_call_function(env, undefined, callback, 1, &buffer, NULL);
}

static void hand_to_javascript(struct session *s, const unsigned char *bytes, size_t length) {
  struct message *m = malloc(sizeof *m);
  unsigned char *copy = malloc(length > 0 ? length : 1);
  if (!m || !copy) {
    free(m);
    free(copy);
    /* No memory for the request: answer it ENOMEM rather than leave the caller waiting. */
    if (length >= sizeof(struct in_header)) {
      const struct in_header *in = (const struct in_header *)bytes;
      struct out_header out = {sizeof out, -ENOMEM, in->unique};
      write_all_ignoring(s->fd, &out, sizeof out);
    }
    return;
  }
  memcpy(copy, bytes, length);
  m->bytes = copy;
  m->length = length;
  m->capacity = 0;
  if (napi_call_threadsafe_function(s->tsfn, m, napi_tsfn_nonblocking) != napi_ok) {
    free(copy);
    free(m);
  }
}

/* A large request: JavaScript gets `*buffer` itself and the reader a replacement of the same
 * capacity. Falls back to the copy when no replacement or message can be had. */
static void hand_buffer_to_javascript(struct session *s, unsigned char **buffer, size_t capacity, size_t length) {
  struct message *m = malloc(sizeof *m);
  unsigned char *replacement = m ? take_request_buffer(capacity) : NULL;
  if (!replacement) {
    free(m);
    hand_to_javascript(s, *buffer, length);
    return;
  }
  m->bytes = *buffer;
  m->length = length;
  m->capacity = capacity;
  *buffer = replacement;
  atomic_fetch_add(&handoff_count, 1);
  if (napi_call_threadsafe_function(s->tsfn, m, napi_tsfn_nonblocking) != napi_ok) {
    give_request_buffer(m->bytes, capacity);
    free(m);
  }
}

static void answer_init(struct session *s, const unsigned char *request, size_t length) {
  const struct in_header *header = (const struct in_header *)request;
  struct init_in in;
  memset(&in, 0, sizeof in);
  size_t body = length - sizeof *header;
  memcpy(&in, request + sizeof *header, body < sizeof in ? body : sizeof in);
  struct {
    struct out_header header;
    struct init_out init;
  } reply;
  memset(&reply, 0, sizeof reply);
  reply.header.unique = header->unique;
  if (in.major < FUSE_KERNEL_VERSION) {
    reply.header.len = sizeof reply.header;
    reply.header.error = -EPROTO;
    write_all_ignoring(s->fd, &reply, reply.header.len);
    return;
  }
  reply.init.major = FUSE_KERNEL_VERSION;
  reply.init.minor = FUSE_OUR_MINOR;
  if (in.major > FUSE_KERNEL_VERSION) {
    /* The kernel speaks a newer major: answer ours, it sends INIT again. */
    reply.header.len = sizeof reply;
    write_all_ignoring(s->fd, &reply, reply.header.len);
    return;
  }
  uint32_t wanted = INIT_ASYNC_READ | INIT_ATOMIC_O_TRUNC | INIT_BIG_WRITES | INIT_AUTO_INVAL_DATA | INIT_DO_READDIRPLUS | INIT_PARALLEL_DIROPS | INIT_MAX_PAGES | INIT_EXT;
  uint32_t flags = in.flags & wanted;
  uint32_t flags2 = 0;
  if ((in.flags & INIT_EXT) && s->want_passthrough) flags2 = in.flags2 & INIT2_PASSTHROUGH;
  reply.init.max_readahead = in.max_readahead;
  reply.init.flags = flags;
  reply.init.flags2 = flags2;
  reply.init.max_background = MAX_BACKGROUND;
  reply.init.congestion_threshold = CONGESTION_THRESHOLD;
  reply.init.max_write = s->max_write;
  reply.init.time_gran = 1;
  reply.init.max_pages = (uint16_t)(s->max_write / PAGE_BYTES);
  /* Backing files live on ordinary file systems (stack depth 0), one level below us. */
  reply.init.max_stack_depth = (flags2 & INIT2_PASSTHROUGH) ? 1 : 0;
  reply.header.len = sizeof reply;
  ssize_t n;
  do {
    n = write(s->fd, &reply, sizeof reply);
  } while (n < 0 && errno == EINTR);
  uint32_t summary[4] = {in.minor < FUSE_OUR_MINOR ? in.minor : FUSE_OUR_MINOR, flags, flags2, s->max_write};
  unsigned char synthetic[sizeof(struct in_header) + sizeof summary];
  struct in_header out = *header;
  out.len = sizeof synthetic;
  out.opcode = OP_INIT;
  memcpy(synthetic, &out, sizeof out);
  memcpy(synthetic + sizeof out, summary, sizeof summary);
  hand_to_javascript(s, synthetic, sizeof synthetic);
}

static void *read_requests(void *data) {
  struct session *s = data;
  size_t capacity = (size_t)s->max_write + REQUEST_HEADROOM;
  unsigned char *buffer = take_request_buffer(capacity);
  /* A READ answer is at most max_read (= max_write, the mount's option) bytes. */
  struct read_scratch scratch = {malloc(capacity), capacity, NULL, 0};
  if (buffer && scratch.reply) {
    for (;;) {
      ssize_t n = read(s->fd, buffer, capacity);
      if (n < 0) {
        /* ENOENT: the request was interrupted before we read it; EINTR/EAGAIN: retry. */
        if (errno == EINTR || errno == EAGAIN || errno == ENOENT) continue;
        break; /* ENODEV: unmounted or aborted; anything else ends the session too. */
      }
      if ((size_t)n < sizeof(struct in_header)) continue;
      const struct in_header *header = (const struct in_header *)buffer;
      if (header->len != (uint32_t)n) continue;
      if (header->opcode == OP_INIT) {
        answer_init(s, buffer, (size_t)n);
        continue;
      }
      /* Requests are not cancelled once JavaScript has them; their answer comes anyway. */
      if (header->opcode == OP_INTERRUPT) continue;
      if (header->opcode == OP_READ && serve_read_from_files(s, buffer, (size_t)n, &scratch)) continue;
      if ((size_t)n >= HANDOFF_MIN) {
        hand_buffer_to_javascript(s, &buffer, capacity, (size_t)n);
      } else {
        hand_to_javascript(s, buffer, (size_t)n);
      }
    }
  }
  give_request_buffer(buffer, capacity);
  free(scratch.reply);
  free(scratch.block);
  if (atomic_fetch_sub(&s->live_threads, 1) == 1) {
    struct in_header end;
    memset(&end, 0, sizeof end);
    end.len = sizeof end;
    hand_to_javascript(s, (const unsigned char *)&end, sizeof end);
  }
  return NULL;
}

static void *write_notices(void *data) {
  struct session *s = data;
  pthread_mutex_lock(&s->notice_lock);
  for (;;) {
    while (!s->notice_head && !s->notice_stop) pthread_cond_wait(&s->notice_ready, &s->notice_lock);
    if (!s->notice_head) break;
    struct notice *n = s->notice_head;
    s->notice_head = n->next;
    if (!s->notice_head) s->notice_tail = NULL;
    pthread_mutex_unlock(&s->notice_lock);
    /* ENOENT (the kernel no longer knows that inode or name) is the normal "nothing to drop". */
    write_all_ignoring(s->fd, n->bytes, n->length);
    free(n);
    pthread_mutex_lock(&s->notice_lock);
  }
  pthread_mutex_unlock(&s->notice_lock);
  return NULL;
}

static napi_value do_start(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  struct session *s;
  uint32_t threads = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 || !get_session(env, argv[0], &s) || !get_uint32(env, argv[2], &threads)) {
    return throw_type(env, "start(session, onRequest, threads)");
  }
  if (threads < 1 || threads > MAX_THREADS) return throw_type(env, "threads must be between 1 and 64");
  if (s->started) return throw_type(env, "session already started");
  napi_value name;
  napi_create_string_utf8(env, "strata_fuse", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[1], NULL, name, 0, 1, NULL, NULL, NULL, deliver, &s->tsfn) != napi_ok) {
    return throw_errno(env, "start", ENOMEM);
  }
  /* The mount does not keep the process alive by itself; the daemon's server does. */
  napi_unref_threadsafe_function(env, s->tsfn);
  s->started = 1;
  if (pthread_create(&s->notifier, NULL, write_notices, s) == 0) s->notifier_started = 1;
  atomic_store(&s->live_threads, (int)threads);
  for (uint32_t i = 0; i < threads; i++) {
    if (pthread_create(&s->threads[i], NULL, read_requests, s) != 0) {
      atomic_fetch_sub(&s->live_threads, (int)(threads - i));
      break;
    }
    s->thread_count++;
  }
  if (s->thread_count == 0) return throw_errno(env, "start", EAGAIN);
  return NULL;
}

static napi_value do_reply(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  struct session *s;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || !get_session(env, argv[0], &s)) return throw_type(env, "reply(session, header, data?)");
  struct iovec parts[2];
  int count = 1;
  if (napi_get_buffer_info(env, argv[1], &parts[0].iov_base, &parts[0].iov_len) != napi_ok) return throw_type(env, "header must be a Buffer");
  if (argc >= 3) {
    napi_valuetype type;
    napi_typeof(env, argv[2], &type);
    if (type != napi_undefined) {
      if (napi_get_buffer_info(env, argv[2], &parts[1].iov_base, &parts[1].iov_len) != napi_ok) return throw_type(env, "data must be a Buffer");
      if (parts[1].iov_len > 0) count = 2;
    }
  }
  if (parts[0].iov_len < sizeof(struct out_header)) return throw_type(env, "header too short");
  int err = 0;
  if (s->stopped) {
    err = EBADF;
  } else {
    ssize_t n;
    do {
      n = writev(s->fd, parts, count);
    } while (n < 0 && errno == EINTR);
    if (n < 0) err = errno;
  }
  napi_value result;
  napi_create_int32(env, err, &result);
  return result;
}

static napi_value do_notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  struct session *s;
  void *bytes;
  size_t length;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || !get_session(env, argv[0], &s) ||
      napi_get_buffer_info(env, argv[1], &bytes, &length) != napi_ok || length < sizeof(struct out_header) || length > 8192) {
    return throw_type(env, "notify(session, message)");
  }
  if (!s->notifier_started || s->stopped) return NULL;
  struct notice *n = malloc(sizeof *n + length);
  if (!n) return throw_errno(env, "notify", ENOMEM);
  n->next = NULL;
  n->length = length;
  memcpy(n->bytes, bytes, length);
  pthread_mutex_lock(&s->notice_lock);
  if (s->notice_tail) s->notice_tail->next = n;
  else s->notice_head = n;
  s->notice_tail = n;
  pthread_cond_signal(&s->notice_ready);
  pthread_mutex_unlock(&s->notice_lock);
  return NULL;
}

static napi_value do_backing_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  struct session *s;
  uint32_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || !get_session(env, argv[0], &s) || !get_uint32(env, argv[1], &fd) || fd > INT32_MAX) {
    return throw_type(env, "backingOpen(session, fd)");
  }
  if (s->stopped) return throw_errno(env, "backing open", EBADF);
  struct backing_map map;
  memset(&map, 0, sizeof map);
  map.fd = (int32_t)fd;
  int id = ioctl(s->fd, DEV_IOC_BACKING_OPEN, &map);
  if (id < 0) return throw_errno(env, "backing open", errno);
  napi_value result;
  napi_create_int32(env, id, &result);
  return result;
}

static napi_value do_backing_close(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  struct session *s;
  uint32_t id;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || !get_session(env, argv[0], &s) || !get_uint32(env, argv[1], &id)) {
    return throw_type(env, "backingClose(session, id)");
  }
  if (s->stopped) return NULL;
  if (ioctl(s->fd, DEV_IOC_BACKING_CLOSE, &id) != 0) return throw_errno(env, "backing close", errno);
  return NULL;
}

static napi_value do_serve_files(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  struct session *s;
  const char *usage = "serveFiles(session, fh, objectSize, blockSize, places, offsets, checksums)";
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 7 || !get_session(env, argv[0], &s)) return throw_type(env, usage);
  int64_t fh = 0, object_size = 0;
  uint32_t block_size = 0, count = 0;
  bool is_array = false;
  if (napi_get_value_int64(env, argv[1], &fh) != napi_ok || fh < 0 || napi_get_value_int64(env, argv[2], &object_size) != napi_ok || object_size < 0 ||
      !get_uint32(env, argv[3], &block_size) || block_size == 0 || block_size > MAX_NATIVE_BLOCK || napi_is_array(env, argv[4], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[4], &count) != napi_ok) {
    return throw_type(env, usage);
  }
  napi_typedarray_type offsets_type, checksums_type;
  size_t offsets_length, checksums_length;
  void *offsets_data, *checksums_data;
  if (napi_get_typedarray_info(env, argv[5], &offsets_type, &offsets_length, &offsets_data, NULL, NULL) != napi_ok || offsets_type != napi_float64_array ||
      napi_get_typedarray_info(env, argv[6], &checksums_type, &checksums_length, &checksums_data, NULL, NULL) != napi_ok || checksums_type != napi_uint32_array ||
      offsets_length != count || checksums_length != count || (uint64_t)count * block_size < (uint64_t)object_size ||
      (count > 0 && (uint64_t)(count - 1) * block_size >= (uint64_t)object_size)) {
    return throw_type(env, "paths, offsets (Float64Array) and checksums (Uint32Array) must have one entry per block");
  }
  if (s->stopped) return throw_errno(env, "serveFiles", EBADF);
  struct file_map *m = calloc(1, sizeof *m + (size_t)count * sizeof(struct file_block));
  if (!m) return throw_errno(env, "serveFiles", ENOMEM);
  m->fh = (uint64_t)fh;
  m->object_size = (uint64_t)object_size;
  m->block_size = block_size;
  m->block_count = count;
  atomic_init(&m->refs, 1);
  m->cached_fds = &s->cached_fds;
  for (uint32_t i = 0; i < count; i++) {
    atomic_init(&m->blocks[i].fd, -1);
    atomic_init(&m->blocks[i].served, 0);
    atomic_init(&m->blocks[i].advised, 0);
  }
  const double *offsets = offsets_data;
  const uint32_t *checksums = checksums_data;
  for (uint32_t i = 0; i < count; i++) {
    struct file_block *b = &m->blocks[i];
    uint64_t start = (uint64_t)i * block_size;
    b->length = (uint32_t)((uint64_t)object_size - start < block_size ? (uint64_t)object_size - start : block_size);
    b->checksum = checksums[i];
    atomic_init(&b->state, BLOCK_UNCHECKED);
    napi_value item;
    napi_valuetype type = napi_undefined;
    if (napi_get_element(env, argv[4], i, &item) != napi_ok || napi_typeof(env, item, &type) != napi_ok) type = napi_undefined;
    bool is_buffer = false;
    if (type == napi_object && napi_is_buffer(env, item, &is_buffer) == napi_ok && is_buffer) {
      void *bytes = NULL;
      size_t bytes_length = 0;
      if (napi_get_buffer_info(env, item, &bytes, &bytes_length) != napi_ok || bytes_length != b->length || (bytes == NULL && b->length > 0)) {
        free_file_map(m);
        return throw_type(env, "a Buffer place must hold exactly its block's bytes");
      }
      b->memory = bytes;
      atomic_store(&b->state, BLOCK_CHECKED);
      continue;
    }
    if (type != napi_string) continue;
    if (!(offsets[i] >= 0 && offsets[i] <= 9007199254740991.0)) {
      free_file_map(m);
      return throw_type(env, "offsets must be non-negative integers");
    }
    b->offset = (uint64_t)offsets[i];
    b->path = get_string(env, item);
    if (!b->path) {
      free_file_map(m);
      return throw_type(env, "paths must be strings of at most 4096 bytes, or null");
    }
  }
  /* A second registration of a handle replaces the first. */
  struct file_map *old = take_file_map(s, m->fh);
  if (old) {
    wait_for_readers(old);
    release_file_map(old);
  }
  pthread_mutex_lock(&s->maps_lock);
  m->next = s->maps[m->fh % FILE_MAP_BUCKETS];
  s->maps[m->fh % FILE_MAP_BUCKETS] = m;
  pthread_mutex_unlock(&s->maps_lock);
  return NULL;
}

static napi_value do_forget_files(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  struct session *s;
  int64_t fh = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || !get_session(env, argv[0], &s) || napi_get_value_int64(env, argv[1], &fh) != napi_ok) {
    return throw_type(env, "forgetFiles(session, fh)");
  }
  struct file_map *m = take_file_map(s, (uint64_t)fh);
  napi_value result, value;
  napi_create_array(env, &result);
  if (!m) return result;
  /* No thread starts a read of it any more; once the reads in progress end, nothing reads
   * its places (the caller may then let its Buffers go). */
  wait_for_readers(m);
  uint32_t at = 0;
  for (uint32_t i = 0; i < m->block_count; i++) {
    if (!atomic_load(&m->blocks[i].served)) continue;
    napi_create_uint32(env, i, &value);
    napi_set_element(env, result, at++, value);
  }
  release_file_map(m);
  return result;
}

static napi_value do_file_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  struct session *s;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || !get_session(env, argv[0], &s)) return throw_type(env, "fileStats(session)");
  napi_value result, value;
  napi_create_object(env, &result);
  const char *names[4] = {"reads", "bytes", "fallbacks", "mismatches"};
  uint64_t values[4] = {atomic_load(&s->native_reads), atomic_load(&s->native_bytes), atomic_load(&s->native_fallbacks), atomic_load(&s->native_mismatches)};
  for (int i = 0; i < 4; i++) {
    napi_create_double(env, (double)values[i], &value);
    napi_set_named_property(env, result, names[i], value);
  }
  return result;
}

/* Process-wide: large requests handed to JavaScript in their own buffer, the buffers the pool
 * had to allocate because none was free, and the free buffers it holds now. */
static napi_value do_request_buffer_stats(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result, value;
  napi_create_object(env, &result);
  napi_create_double(env, (double)atomic_load(&handoff_count), &value);
  napi_set_named_property(env, result, "handoffs", value);
  napi_create_double(env, (double)atomic_load(&handoff_allocations), &value);
  napi_set_named_property(env, result, "allocations", value);
  pthread_mutex_lock(&handoff_lock);
  unsigned pooled = handoff_free_count;
  pthread_mutex_unlock(&handoff_lock);
  napi_create_uint32(env, pooled, &value);
  napi_set_named_property(env, result, "pooled", value);
  return result;
}

/* Frees the pooled request buffers (the memory watchdog's reclaim); answers how many. */
static napi_value do_trim_request_buffers(napi_env env, napi_callback_info info) {
  (void)info;
  pthread_mutex_lock(&handoff_lock);
  struct free_buffer *list = handoff_free;
  unsigned count = handoff_free_count;
  handoff_free = NULL;
  handoff_free_count = 0;
  pthread_mutex_unlock(&handoff_lock);
  while (list) {
    struct free_buffer *next = list->next;
    free(list);
    list = next;
  }
  napi_value result;
  napi_create_uint32(env, count, &result);
  return result;
}

static napi_value do_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  struct session *s;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || !get_session(env, argv[0], &s)) return throw_type(env, "stop(session)");
  if (s->stopped) return NULL;
  /* After a clean unmount the threads see ENODEV at once. A connection that outlives a
   * lazy detach (files still open) keeps them reading: they are left to the process's
   * exit, which ends the connection, rather than closing the fd under them. */
  for (; s->joined < s->thread_count; s->joined++) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += STOP_WAIT_SECONDS;
    if (pthread_timedjoin_np(s->threads[s->joined], NULL, &deadline) != 0) {
      napi_value result;
      napi_get_boolean(env, false, &result);
      return result;
    }
  }
  if (s->notifier_started) {
    pthread_mutex_lock(&s->notice_lock);
    s->notice_stop = 1;
    drop_notices(s);
    pthread_cond_signal(&s->notice_ready);
    pthread_mutex_unlock(&s->notice_lock);
    pthread_join(s->notifier, NULL);
  }
  s->stopped = 1;
  if (s->started) napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
  close(s->fd);
  s->fd = -1;
  napi_value result;
  napi_get_boolean(env, true, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  crc32c_init();
  napi_property_descriptor properties[] = {
      {"mount", NULL, do_mount, NULL, NULL, NULL, napi_default, NULL},
      {"start", NULL, do_start, NULL, NULL, NULL, napi_default, NULL},
      {"reply", NULL, do_reply, NULL, NULL, NULL, napi_default, NULL},
      {"notify", NULL, do_notify, NULL, NULL, NULL, napi_default, NULL},
      {"backingOpen", NULL, do_backing_open, NULL, NULL, NULL, napi_default, NULL},
      {"backingClose", NULL, do_backing_close, NULL, NULL, NULL, napi_default, NULL},
      {"serveFiles", NULL, do_serve_files, NULL, NULL, NULL, napi_default, NULL},
      {"forgetFiles", NULL, do_forget_files, NULL, NULL, NULL, napi_default, NULL},
      {"fileStats", NULL, do_file_stats, NULL, NULL, NULL, napi_default, NULL},
      {"requestBufferStats", NULL, do_request_buffer_stats, NULL, NULL, NULL, napi_default, NULL},
      {"trimRequestBuffers", NULL, do_trim_request_buffers, NULL, NULL, NULL, napi_default, NULL},
      {"stop", NULL, do_stop, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
