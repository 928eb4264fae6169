/*
 * strata_memory: the C library allocator's knobs the daemon's memory bound needs, as a
 * Node-API addon. Block buffers (1-16 MiB), FUSE write requests (1 MiB) and upload parts are
 * allocated with malloc by V8 and by the FUSE reader threads; what glibc does with them when
 * they are freed decides whether the process's resident size follows its budget.
 *
 *   tune(mmapThresholdBytes, arenaMax) -> boolean
 *       mallopt(M_MMAP_THRESHOLD): allocations of at least that size are mapped on their own
 *       and unmapped when freed, so a freed block returns to the system at once. Setting it
 *       also stops glibc from raising the threshold after each such free, which otherwise
 *       sends every later block into the heap, where freed blocks stay resident.
 *       mallopt(M_ARENA_MAX): at most that many heaps for all threads (glibc's default is
 *       8 per core), so memory freed by one thread is reused by the others.
 *       false where the C library is not glibc (nothing is changed).
 *   trim() -> boolean
 *       malloc_trim(0): returns the free pages of every heap to the system; true if any were.
 *
 * Neither call can fail in a way the caller could act on: mallopt's and malloc_trim's
 * answers are passed on as they are.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <stdint.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

static napi_value boolean(napi_env env, int value) {
  napi_value result;
  napi_get_boolean(env, value != 0, &result);
  return result;
}

static napi_value tune(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  uint32_t threshold = 0;
  uint32_t arenas = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || napi_get_value_uint32(env, argv[0], &threshold) != napi_ok ||
      napi_get_value_uint32(env, argv[1], &arenas) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "tune(mmapThresholdBytes, arenaMax) expects two unsigned integers");
    return NULL;
  }
#if defined(__GLIBC__)
  /* glibc caps the threshold at 32 MiB on 64-bit systems (HEAP_MAX_SIZE / 2) and refuses more. */
  if (threshold == 0 || threshold > 32u * 1024 * 1024 || arenas == 0) {
    napi_throw_range_error(env, "EINVAL", "tune: mmapThresholdBytes must be 1..32 MiB and arenaMax at least 1");
    return NULL;
  }
  int ok = mallopt(M_MMAP_THRESHOLD, (int)threshold) == 1 && mallopt(M_ARENA_MAX, (int)arenas) == 1;
  return boolean(env, ok);
#else
  (void)threshold;
  (void)arenas;
  return boolean(env, 0);
#endif
}

static napi_value trim(napi_env env, napi_callback_info info) {
  (void)info;
#if defined(__GLIBC__)
  return boolean(env, malloc_trim(0));
#else
  return boolean(env, 0);
#endif
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"tune", NULL, tune, NULL, NULL, NULL, napi_enumerable, NULL},
    {"trim", NULL, trim, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
