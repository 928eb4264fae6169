{
  "targets": [
    {
      "target_name": "strata_mmap",
      "sources": ["src/strata_mmap.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
