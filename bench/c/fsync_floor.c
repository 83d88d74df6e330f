// The durability floor of a control-plane write on this disk: append PAGES
// x 4 KiB to a file in DIR and fdatasync it, COUNT times (SQLite in WAL mode
// with synchronous=FULL appends the changed pages to its WAL and syncs it
// once per committed transaction).
//   fsync_floor DIR COUNT [PAGES]  ->  {"ns":[...]}
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  char path[4096];
  snprintf(path, sizeof path, "%s/fsync-floor.%d", argv[1], (int)getpid());
  int n = atoi(argv[2]);
  int pages = argc > 3 ? atoi(argv[3]) : 1;
  int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) {
    perror("open");
    return 2;
  }
  char buf[4096];
  memset(buf, 'x', sizeof buf);
  uint64_t *ns = calloc((size_t)n, sizeof *ns);
  for (int i = 0; i < n; i++) {
    uint64_t t0 = now_ns();
    for (int p = 0; p < pages; p++) {
      if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) {
        perror("write");
        return 2;
      }
    }
    if (fdatasync(fd) < 0) {
      perror("fdatasync");
      return 2;
    }
    ns[i] = now_ns() - t0;
  }
  close(fd);
  unlink(path);
  printf("{\"ns\":[");
  for (int i = 0; i < n; i++) printf("%s%llu", i ? "," : "", (unsigned long long)ns[i]);
  printf("]}\n");
  return 0;
}
