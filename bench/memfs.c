/*
 * bench/memfs.c: the FUSE ceiling for bench/native-fuse.ts. A minimal libfuse 3
 * low-level file system serving one file, /data.bin, from memory, with 1 MiB read
 * requests and libfuse's multithreaded loop: nothing between /dev/fuse and memcpy.
 * Built by the benchmark into a temporary folder, never shipped.
 *
 *   memfs MOUNTPOINT SIZE_BYTES
 */
#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FILE_NODE 2
#define IO_BYTES (1024 * 1024)

static char *data;
static size_t data_size;

static void fill_stat(fuse_ino_t ino, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_ino = ino;
  if (ino == FUSE_ROOT_ID) {
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
  } else {
    st->st_mode = S_IFREG | 0444;
    st->st_nlink = 1;
    st->st_size = (off_t)data_size;
  }
}

static void on_init(void *userdata, struct fuse_conn_info *conn) {
  (void)userdata;
  conn->max_write = IO_BYTES;
  conn->max_read = IO_BYTES;
  conn->max_readahead = IO_BYTES;
}

static void on_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  if (parent != FUSE_ROOT_ID || strcmp(name, "data.bin") != 0) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  e.ino = FILE_NODE;
  e.attr_timeout = 60;
  e.entry_timeout = 60;
  fill_stat(FILE_NODE, &e.attr);
  fuse_reply_entry(req, &e);
}

static void on_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)fi;
  struct stat st;
  fill_stat(ino, &st);
  fuse_reply_attr(req, &st, 60);
}

static void on_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  if (ino != FILE_NODE) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  fuse_reply_open(req, fi);
}

static void on_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)ino;
  (void)fi;
  if (off < 0 || (size_t)off >= data_size) {
    fuse_reply_buf(req, NULL, 0);
    return;
  }
  size_t n = data_size - (size_t)off < size ? data_size - (size_t)off : size;
  fuse_reply_buf(req, data + off, n);
}

static const struct fuse_lowlevel_ops ops = {
    .init = on_init,
    .lookup = on_lookup,
    .getattr = on_getattr,
    .open = on_open,
    .read = on_read,
};

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: memfs MOUNTPOINT SIZE_BYTES\n");
    return 2;
  }
  data_size = strtoull(argv[2], NULL, 10);
  data = malloc(data_size);
  if (!data) return 1;
  for (size_t i = 0; i < data_size; i++) data[i] = (char)(i * 2654435761u >> 24);
  char *fuse_argv[] = {argv[0], "-o", "max_read=1048576,fsname=memfs"};
  struct fuse_args args = FUSE_ARGS_INIT(3, fuse_argv);
  struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
  if (!se) return 1;
  if (fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, argv[1]) != 0) return 1;
  printf("mounted\n");
  fflush(stdout);
  struct fuse_loop_config *config = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(config, 4);
  int rc = fuse_session_loop_mt(se, config);
  fuse_loop_cfg_destroy(config);
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  free(data);
  return rc == 0 ? 0 : 1;
}
