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

/* Kernel protocol numbers (include/uapi/linux/fuse.h). */
#define FUSE_KERNEL_VERSION 7
/* 7.40 added FUSE_PASSTHROUGH, fuse_open_out.backing_id and fuse_init_out.max_stack_depth. */
#define FUSE_OUR_MINOR 40
#define OP_INIT 26
#define OP_INTERRUPT 36
#define INIT_ASYNC_READ (1u << 0)
#define INIT_ATOMIC_O_TRUNC (1u << 3)
#define INIT_BIG_WRITES (1u << 5)
#define INIT_AUTO_INVAL_DATA (1u << 12)
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
};

struct message {
  unsigned char *bytes;
  size_t length;
};

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
  pthread_mutex_init(&s->notice_lock, NULL);
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
  (void)hint;
  free(data);
}

/* Runs on the event loop: one request becomes one Buffer for JavaScript. */
static void deliver(napi_env env, napi_value callback, void *context, void *data) {
  (void)context;
  struct message *m = data;
  if (env == NULL) { /* the function is being torn down */
    free(m->bytes);
    free(m);
    return;
  }
  napi_value buffer;
  if (napi_create_external_buffer(env, m->length, m->bytes, free_message_memory, NULL, &buffer) != napi_ok) {
    void *copy = NULL;
    napi_status status = napi_create_buffer_copy(env, m->length, m->bytes, &copy, &buffer);
    free(m->bytes);
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
  if (napi_call_threadsafe_function(s->tsfn, m, napi_tsfn_nonblocking) != napi_ok) {
    free(copy);
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
  uint32_t wanted = INIT_ASYNC_READ | INIT_ATOMIC_O_TRUNC | INIT_BIG_WRITES | INIT_AUTO_INVAL_DATA | INIT_PARALLEL_DIROPS | INIT_MAX_PAGES | INIT_EXT;
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
  unsigned char *buffer = malloc(capacity);
  if (buffer) {
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
      hand_to_javascript(s, buffer, (size_t)n);
    }
    free(buffer);
  }
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
  napi_property_descriptor properties[] = {
      {"mount", NULL, do_mount, NULL, NULL, NULL, napi_default, NULL},
      {"start", NULL, do_start, NULL, NULL, NULL, napi_default, NULL},
      {"reply", NULL, do_reply, NULL, NULL, NULL, napi_default, NULL},
      {"notify", NULL, do_notify, NULL, NULL, NULL, napi_default, NULL},
      {"backingOpen", NULL, do_backing_open, NULL, NULL, NULL, napi_default, NULL},
      {"backingClose", NULL, do_backing_close, NULL, NULL, NULL, napi_default, NULL},
      {"stop", NULL, do_stop, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
