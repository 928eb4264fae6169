/*
 * strata_mmap: the few memory-mapping calls the pmem tier needs, as a Node-API addon.
 *
 *   map(fd, offset, length) -> Buffer   MAP_SHARED read/write view of the file range.
 *                                       The mapping is released when the Buffer is
 *                                       garbage-collected, so no JavaScript reference
 *                                       can outlive it (no explicit unmap on purpose).
 *   sync(buffer, offset, length)        msync(MS_SYNC) of the byte range, widened to
 *                                       whole pages as msync requires.
 *   allocate(fd, length[, offset])      posix_fallocate of [offset, offset + length)
 *                                       (offset 0 when absent), so stores through the
 *                                       mapping never hit a full tmpfs (SIGBUS).
 *   punch(fd, offset, length)           fallocate(PUNCH_HOLE | KEEP_SIZE): the range's
 *                                       memory or disk blocks are given back and it reads
 *                                       as zeros; `allocate` takes them again before reuse.
 *   pageSize() -> number
 *   resident(buffer) -> number          bytes of the buffer's pages now in memory
 *                                       (mincore), for reporting how much of a
 *                                       table on NVMe the page cache holds.
 *   hugeBlock(length) -> Buffer         private anonymous memory of `length` bytes (a
 *                                       positive multiple of 2 MiB), 2 MiB-aligned and
 *                                       advised MADV_HUGEPAGE, so its first touch costs
 *                                       one page fault per 2 MiB instead of 512. Counted
 *                                       (once) in V8's external memory as a Buffer's is;
 *                                       unmapped when the Buffer is garbage-collected.
 *
 * Errors are thrown as JavaScript Errors carrying the errno name in `code`.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>
#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "resident.h"

static napi_value throw_errno(napi_env env, const char *op, int err) {
  char message[160];
  const char *code = "EIO";
  switch (err) {
    case EINVAL: code = "EINVAL"; break;
    case ENOMEM: code = "ENOMEM"; break;
    case ENOSPC: code = "ENOSPC"; break;
    case EBADF: code = "EBADF"; break;
    case EACCES: code = "EACCES"; break;
    case ENODEV: code = "ENODEV"; break;
    case EFBIG: code = "EFBIG"; break;
    case EOPNOTSUPP: code = "EOPNOTSUPP"; break;
    default: break;
  }
  snprintf(message, sizeof message, "%s failed: %s", op, strerror(err));
  napi_throw_error(env, code, message);
  return NULL;
}

static int get_int64(napi_env env, napi_value value, int64_t *out) {
  return napi_get_value_int64(env, value, out) == napi_ok && *out >= 0;
}

static void release_mapping(napi_env env, void *data, void *hint) {
  (void)env;
  munmap(data, (size_t)(uintptr_t)hint);
}

static napi_value map_file(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int64_t fd, offset, length;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3 || !get_int64(env, argv[0], &fd) || !get_int64(env, argv[1], &offset) ||
      !get_int64(env, argv[2], &length) || length == 0) {
    napi_throw_type_error(env, "EINVAL", "map(fd, offset, length) expects non-negative integers, length > 0");
    return NULL;
  }
  void *addr = mmap(NULL, (size_t)length, PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, (off_t)offset);
  if (addr == MAP_FAILED) return throw_errno(env, "mmap", errno);
  napi_value buffer;
  napi_status status = napi_create_external_buffer(env, (size_t)length, addr, release_mapping,
                                                   (void *)(uintptr_t)length, &buffer);
  if (status != napi_ok) {
    munmap(addr, (size_t)length);
    napi_throw_error(env, "ENOMEM", "could not wrap the mapping in a Buffer");
    return NULL;
  }
  return buffer;
}

static napi_value sync_range(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  void *data;
  size_t buffer_length;
  int64_t offset, length;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3 || napi_get_buffer_info(env, argv[0], &data, &buffer_length) != napi_ok ||
      !get_int64(env, argv[1], &offset) || !get_int64(env, argv[2], &length) ||
      (uint64_t)offset + (uint64_t)length > buffer_length) {
    napi_throw_range_error(env, "EINVAL", "sync(buffer, offset, length) range is outside the buffer");
    return NULL;
  }
  if (length == 0) return NULL;
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t start = (uintptr_t)data + (uintptr_t)offset;
  uintptr_t aligned = start & ~(page - 1);
  if (msync((void *)aligned, (size_t)(start - aligned) + (size_t)length, MS_SYNC) != 0) {
    return throw_errno(env, "msync", errno);
  }
  return NULL;
}

static napi_value allocate(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int64_t fd, length, offset = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 || !get_int64(env, argv[0], &fd) || !get_int64(env, argv[1], &length) ||
      (argc >= 3 && !get_int64(env, argv[2], &offset)) || fd > INT32_MAX || length > INT64_MAX - offset) {
    napi_throw_type_error(env, "EINVAL", "allocate(fd, length[, offset]) expects non-negative integers");
    return NULL;
  }
  if (length == 0) return NULL;
  int err = posix_fallocate((int)fd, (off_t)offset, (off_t)length);
  if (err != 0) return throw_errno(env, "posix_fallocate", err);
  return NULL;
}

static napi_value punch(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int64_t fd, offset, length;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3 || !get_int64(env, argv[0], &fd) || !get_int64(env, argv[1], &offset) ||
      !get_int64(env, argv[2], &length) || fd > INT32_MAX || length > INT64_MAX - offset) {
    napi_throw_type_error(env, "EINVAL", "punch(fd, offset, length) expects non-negative integers");
    return NULL;
  }
  if (length == 0) return NULL;
  if (fallocate((int)fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length) != 0) {
    return throw_errno(env, "fallocate(PUNCH_HOLE)", errno);
  }
  return NULL;
}

static napi_value page_size(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  napi_create_int64(env, (int64_t)sysconf(_SC_PAGESIZE), &result);
  return result;
}

static napi_value resident(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data;
  size_t length;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_buffer_info(env, argv[0], &data, &length) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "resident(buffer) expects a Buffer");
    return NULL;
  }
  napi_value result;
  if (length == 0) {
    napi_create_int64(env, 0, &result);
    return result;
  }
  size_t bytes = 0;
  int err = resident_bytes(data, length, &bytes);
  if (err != 0) return throw_errno(env, "mincore", err);
  napi_create_int64(env, (int64_t)bytes, &result);
  return result;
}
/* Transparent huge pages are 2 MiB on x86-64 and arm64 with 4 KiB base pages. */
#define HUGE_BYTES ((size_t)2 * 1024 * 1024)

static void release_huge_block(napi_env env, void *data, void *hint) {
  size_t length = (size_t)(uintptr_t)hint;
  (void)env;
  munmap(data, length);
}

static napi_value huge_block(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int64_t length;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  /* 1 GiB is far above any block size (at most 16 MiB) and keeps the arithmetic below in range. */
  if (argc < 1 || !get_int64(env, argv[0], &length) || length == 0 || (uint64_t)length % HUGE_BYTES != 0 || length > ((int64_t)1 << 30)) {
    napi_throw_type_error(env, "EINVAL", "hugeBlock(length) expects a positive multiple of 2 MiB, at most 1 GiB");
    return NULL;
  }
  /* Map one huge page more than asked, then trim to a 2 MiB-aligned start. */
  size_t span = (size_t)length + HUGE_BYTES;
  uint8_t *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return throw_errno(env, "mmap", errno);
  uintptr_t start = ((uintptr_t)raw + HUGE_BYTES - 1) & ~(uintptr_t)(HUGE_BYTES - 1);
  size_t head = start - (uintptr_t)raw;
  size_t tail = span - head - (size_t)length;
  if (head > 0) munmap(raw, head);
  if (tail > 0) munmap((uint8_t *)start + length, tail);
  /* Advice only: without THP the memory still works, with a fault per base page. */
  (void)madvise((void *)start, (size_t)length, MADV_HUGEPAGE);
  napi_value buffer;
  if (napi_create_external_buffer(env, (size_t)length, (void *)start, release_huge_block, (void *)(uintptr_t)length, &buffer) != napi_ok) {
    munmap((void *)start, (size_t)length);
    napi_throw_error(env, "ENOMEM", "could not wrap the memory in a Buffer");
    return NULL;
  }
  /* napi_create_external_buffer has counted `length` in V8's external memory already; counting
     it again here doubled the full collections a cold read caused. */
  return buffer;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"map", NULL, map_file, NULL, NULL, NULL, napi_enumerable, NULL},
    {"sync", NULL, sync_range, NULL, NULL, NULL, napi_enumerable, NULL},
    {"allocate", NULL, allocate, NULL, NULL, NULL, napi_enumerable, NULL},
    {"punch", NULL, punch, NULL, NULL, NULL, napi_enumerable, NULL},
    {"pageSize", NULL, page_size, NULL, NULL, NULL, napi_enumerable, NULL},
    {"resident", NULL, resident, NULL, NULL, NULL, napi_enumerable, NULL},
    {"hugeBlock", NULL, huge_block, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
