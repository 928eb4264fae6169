{
  "targets": [
    {
      "target_name": "strata_mmap",
      "sources": ["src/strata_mmap.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    },
    {
      "target_name": "strata_arena",
      "sources": ["src/strata_arena.cc"],
      "cflags_cc": ["-O2", "-Wall", "-Wextra", "-Wno-cast-function-type"]
    },
    {
      "target_name": "strata_lookup",
      "sources": ["src/strata_lookup.c", "src/strata_overlay.c", "src/crc32c.c"],
      "cflags": ["-O3", "-Wall", "-Wextra"],
      "libraries": ["-lpthread"]
    },
    {
      "target_name": "strata_memory",
      "sources": ["src/strata_memory.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    },
    {
      "target_name": "strata_fuse",
      "sources": ["src/strata_fuse.c", "src/crc32c.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "libraries": ["-lpthread"]
    }
  ]
}
