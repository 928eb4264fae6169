/*
 * strata_arena: block memory in a few large mappings, handed to JavaScript as ArrayBuffers that
 * V8 does not count as external memory.
 *
 * Why V8's own API and not Node-API: every ArrayBuffer that Node-API wraps around outside memory
 * (napi_create_external_buffer, napi_create_external_arraybuffer) carries a deleter, and V8 adds
 * its length to the isolate's external memory. V8 starts a full (mark-compact) collection
 * whenever that grows by tens of MiB since the last one, so a cold read that allocates a fresh
 * 4 MiB block per GET ran dozens of full collections per GiB read, most of them with nothing to
 * collect (docs/ARCHITECTURE.md, "Block memory"). An ArrayBuffer created with
 * v8::BackingStore::EmptyDeleter is the embedder's memory: V8 does not account it, and never
 * frees it. The caller (store/block-arena.ts) knows when the memory may be reused: when the
 * ArrayBuffer object itself has been collected (a FinalizationRegistry on it), which happens only
 * once no view of it is left anywhere in JavaScript.
 *
 *   reserve(bytes) -> number            a new region of `bytes` (a positive multiple of 2 MiB,
 *                                       at most 64 GiB) of private anonymous memory, reserved
 *                                       without commitment (MAP_NORESERVE), 2 MiB-aligned and
 *                                       advised MADV_NOHUGEPAGE (Reserve says why); answers
 *                                       the region's number.
 *                                       Regions live as long as the process (views may outlive
 *                                       any object that could own them).
 *   view(region, offset, length) -> ArrayBuffer
 *                                       the bytes [offset, offset + length) of the region.
 *   release(region, offset, length)     MADV_DONTNEED of that page-aligned range: its pages go
 *                                       back to the system and read as zeros when next touched.
 *
 * Errors are thrown as JavaScript Errors carrying the errno name (or EINVAL) in `code`.
 */
#include <node.h>
#include <v8.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <sys/mman.h>
#include <unistd.h>

namespace {

constexpr uint64_t kHugeBytes = 2ull * 1024 * 1024;
/* Far above any daemon's block memory, and keeps every sum below in range. */
constexpr uint64_t kMaxRegionBytes = 64ull * 1024 * 1024 * 1024;
constexpr int kMaxRegions = 64;

struct Region {
  uint8_t *start;
  uint64_t length;
};

/* Shared by every isolate that loads the addon (worker threads): guarded by one mutex. */
std::mutex regions_lock;
Region regions[kMaxRegions];
int region_count = 0;

void Throw(v8::Isolate *isolate, const char *code, const char *message) {
  v8::Local<v8::Context> context = isolate->GetCurrentContext();
  v8::Local<v8::Value> error = v8::Exception::Error(v8::String::NewFromUtf8(isolate, message).ToLocalChecked());
  v8::Local<v8::Object> object;
  if (error->ToObject(context).ToLocal(&object)) {
    /* Without its code the error still reaches the caller, with its message. */
    (void)object->Set(context, v8::String::NewFromUtf8Literal(isolate, "code"), v8::String::NewFromUtf8(isolate, code).ToLocalChecked()).FromMaybe(false);
  }
  isolate->ThrowException(error);
}

void ThrowErrno(v8::Isolate *isolate, const char *op, int err) {
  char message[160];
  snprintf(message, sizeof message, "%s failed: %s", op, strerror(err));
  Throw(isolate, err == ENOMEM ? "ENOMEM" : err == EINVAL ? "EINVAL" : "EIO", message);
}

/* A non-negative integer argument that is exactly representable (at most 2^53). */
bool Whole(const v8::FunctionCallbackInfo<v8::Value> &args, int index, uint64_t *out) {
  if (index >= args.Length() || !args[index]->IsNumber()) return false;
  double value = args[index].As<v8::Number>()->Value();
  if (!(value >= 0) || value > 9007199254740992.0 || value != static_cast<double>(static_cast<uint64_t>(value))) return false;
  *out = static_cast<uint64_t>(value);
  return true;
}

/* The region and range named by the first three arguments, checked; false after throwing. */
bool Range(const v8::FunctionCallbackInfo<v8::Value> &args, const char *usage, uint8_t **start, uint64_t *length) {
  v8::Isolate *isolate = args.GetIsolate();
  uint64_t index, offset, bytes;
  if (!Whole(args, 0, &index) || !Whole(args, 1, &offset) || !Whole(args, 2, &bytes) || bytes == 0) {
    Throw(isolate, "EINVAL", usage);
    return false;
  }
  Region region{nullptr, 0};
  {
    std::lock_guard<std::mutex> guard(regions_lock);
    if (index < static_cast<uint64_t>(region_count)) region = regions[index];
  }
  if (region.start == nullptr || offset > region.length || bytes > region.length - offset) {
    Throw(isolate, "EINVAL", "the range is outside the arena's regions");
    return false;
  }
  *start = region.start + offset;
  *length = bytes;
  return true;
}

void Reserve(const v8::FunctionCallbackInfo<v8::Value> &args) {
  v8::Isolate *isolate = args.GetIsolate();
  uint64_t length;
  if (!Whole(args, 0, &length) || length == 0 || length % kHugeBytes != 0 || length > kMaxRegionBytes) {
    Throw(isolate, "EINVAL", "reserve(bytes) expects a positive multiple of 2 MiB, at most 64 GiB");
    return;
  }
  std::lock_guard<std::mutex> guard(regions_lock);
  if (region_count == kMaxRegions) {
    Throw(isolate, "ENOMEM", "the arena has all the regions it can hold");
    return;
  }
  /* One huge page more than asked, trimmed to a 2 MiB-aligned start. */
  size_t span = static_cast<size_t>(length + kHugeBytes);
  void *raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) {
    ThrowErrno(isolate, "mmap", errno);
    return;
  }
  uintptr_t base = reinterpret_cast<uintptr_t>(raw);
  uintptr_t start = (base + kHugeBytes - 1) & ~static_cast<uintptr_t>(kHugeBytes - 1);
  size_t head = start - base;
  size_t tail = span - head - static_cast<size_t>(length);
  if (head > 0) munmap(raw, head);
  if (tail > 0) munmap(reinterpret_cast<void *>(start + length), tail);
  /*
   * Base pages, not transparent huge pages, even where THP is on for every mapping. A huge page
   * must be 2 MiB of contiguous free memory, which the kernel mostly finds where nothing has been
   * since boot; on a virtual machine whose host backs guest memory lazily, that first touch costs
   * far more than the faults it saves. Filling 1 GiB of block memory cold, on the development VM:
   * 2.1-2.3 s of system time with huge pages (0.8 s when the previous daemon's huge pages happen
   * to be reused), 0.8-0.9 s with base pages, which come from memory just freed (the page cache
   * a cold read drops, the last daemon's blocks); a cold 1 GiB read went from 324-576 to
   * 548-615 MiB/s (bench/cold-read.ts). Later reads of the blocks copy them into the kernel's
   * replies, where the TLB misses of base pages are lost in the copy.
   */
  (void)madvise(reinterpret_cast<void *>(start), static_cast<size_t>(length), MADV_NOHUGEPAGE);
  regions[region_count] = Region{reinterpret_cast<uint8_t *>(start), length};
  args.GetReturnValue().Set(static_cast<double>(region_count));
  region_count++;
}

void View(const v8::FunctionCallbackInfo<v8::Value> &args) {
  v8::Isolate *isolate = args.GetIsolate();
  uint8_t *start;
  uint64_t length;
  if (!Range(args, "view(region, offset, length) expects whole numbers, length > 0", &start, &length)) return;
  std::unique_ptr<v8::BackingStore> store = v8::ArrayBuffer::NewBackingStore(start, static_cast<size_t>(length), v8::BackingStore::EmptyDeleter, nullptr);
  args.GetReturnValue().Set(v8::ArrayBuffer::New(isolate, std::move(store)));
}

void Release(const v8::FunctionCallbackInfo<v8::Value> &args) {
  v8::Isolate *isolate = args.GetIsolate();
  uint8_t *start;
  uint64_t length;
  if (!Range(args, "release(region, offset, length) expects whole numbers, length > 0", &start, &length)) return;
  uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  if (reinterpret_cast<uintptr_t>(start) % page != 0 || length % page != 0) {
    Throw(isolate, "EINVAL", "release(region, offset, length) expects a page-aligned range");
    return;
  }
  if (madvise(start, static_cast<size_t>(length), MADV_DONTNEED) != 0) ThrowErrno(isolate, "madvise", errno);
}

}  // namespace

NODE_MODULE_INIT(/* exports, module, context */) {
  v8::Isolate *isolate = context->GetIsolate();
  auto method = [&](const char *name, v8::FunctionCallback callback) {
    v8::Local<v8::Function> fn = v8::FunctionTemplate::New(isolate, callback)->GetFunction(context).ToLocalChecked();
    /* A missing method is found by the loader (store/block-arena.ts checks each one). */
    (void)exports->Set(context, v8::String::NewFromUtf8(isolate, name).ToLocalChecked(), fn).FromMaybe(false);
  };
  method("reserve", Reserve);
  method("view", View);
  method("release", Release);
}
