/*
 * resident_bytes: how many bytes of [addr, addr + length) are in memory now, by mincore,
 * in slices of 4,096 pages (16 MiB) so the vector stays on the stack. Pages are counted
 * whole, and the answer is capped at `length`. Answers 0 or the errno of mincore.
 * Shared by both addons (static: each gets its own copy).
 */
#ifndef STRATA_RESIDENT_H
#define STRATA_RESIDENT_H

#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

static int resident_bytes(const void *addr, size_t length, size_t *out) {
  *out = 0;
  if (length == 0) return 0;
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  const uintptr_t start = (uintptr_t)addr & ~(page - 1);
  const size_t span = (size_t)((uintptr_t)addr + length - start);
  const size_t pages = (span + page - 1) / page;
  unsigned char vec[4096];
  size_t in_memory = 0;
  for (size_t first = 0; first < pages; first += sizeof vec) {
    const size_t count = pages - first < sizeof vec ? pages - first : sizeof vec;
    const size_t bytes = first + count == pages ? span - first * page : count * page;
    if (mincore((void *)(start + first * page), bytes, vec) != 0) return errno;
    for (size_t i = 0; i < count; i++) in_memory += vec[i] & 1;
  }
  const size_t total = in_memory * page;
  *out = total > length ? length : total;
  return 0;
}

#endif
