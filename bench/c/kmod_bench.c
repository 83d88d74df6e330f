// Item 5 of the benchmarks, run as root inside the VM with shmbroker.ko
// loaded (it also runs on a host without the module: kmod cases are then
// reported as unavailable).
//
//   kmod_bench fault SIZE TRIALS
//     first-touch cost per 4 KiB page: map a fresh region and write one byte
//     per 4 KiB page, for kmod (4 KiB pages), kmod HUGEPAGE, memfd, and
//     memfd MFD_HUGETLB when the hugetlb pool has room. Also the cost of the
//     create itself (kmod allocates and zeroes its pages at CREATE; memfd at
//     first touch), so create + touch is comparable too.
//   kmod_bench revoke NPROCS SIZE TRIALS
//     NPROCS processes map one grant and touch every page; the parent times
//     SHMBROKER_IOC_REVOKE, and each child reports when poll() on the grant
//     fd says POLLHUP (the slowest one is the notice latency).
// Output: one JSON object per line.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../kmod/include/uapi/linux/shmbroker.h"

#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif

static int dev = -1;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_u64);
  return v[n / 2];
}

// A fresh region of `kind`; returns an fd to mmap (and the ids to clean up).
struct region {
  int fd;
  uint64_t region_id, grant_id;
};

static int make_region(const char *kind, size_t size, struct region *r) {
  memset(r, 0, sizeof *r);
  r->fd = -1;
  if (!strcmp(kind, "memfd") || !strcmp(kind, "memfd-hugetlb")) {
    int fd = memfd_create("bench", MFD_CLOEXEC | (!strcmp(kind, "memfd-hugetlb") ? MFD_HUGETLB : 0));
    if (fd < 0) return -errno;
    if (ftruncate(fd, (off_t)size) < 0) {
      int e = errno;
      close(fd);
      return -e;
    }
    r->fd = fd;
    return 0;
  }
  if (dev < 0) return -ENODEV;
  struct shmbroker_create c = {.size = size, .flags = !strcmp(kind, "kmod-huge") ? SHMBROKER_CREATE_HUGEPAGE : 0, .numa_node = SHMBROKER_NUMA_NO_NODE};
  if (ioctl(dev, SHMBROKER_IOC_CREATE, &c)) return -errno;
  struct shmbroker_open o = {.region_id = c.region_id, .flags = SHMBROKER_OPEN_CLOEXEC};
  if (ioctl(dev, SHMBROKER_IOC_OPEN, &o)) {
    int e = errno;
    struct shmbroker_destroy d = {.region_id = c.region_id};
    ioctl(dev, SHMBROKER_IOC_DESTROY, &d);
    return -e;
  }
  r->fd = (int)o.fd;
  r->region_id = c.region_id;
  r->grant_id = o.grant_id;
  return 0;
}

static void free_region(struct region *r) {
  if (r->fd >= 0) close(r->fd);
  if (r->region_id) {
    struct shmbroker_destroy d = {.region_id = r->region_id};
    ioctl(dev, SHMBROKER_IOC_DESTROY, &d);
  }
}

static void fault(size_t size, int trials) {
  const char *kinds[] = {"kmod", "kmod-huge", "memfd", "memfd-hugetlb"};
  size_t pages = size / 4096;
  for (unsigned k = 0; k < sizeof kinds / sizeof *kinds; k++) {
    uint64_t *touch = calloc((size_t)trials, sizeof *touch), *create = calloc((size_t)trials, sizeof *create);
    int err = 0, ok = 0;
    for (int t = 0; t < trials; t++) {
      struct region r;
      uint64_t t0 = now_ns();
      err = make_region(kinds[k], size, &r);
      uint64_t t1 = now_ns();
      if (err) break;
      volatile char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd, 0);
      if (p == MAP_FAILED) {
        err = -errno;
        free_region(&r);
        break;
      }
      uint64_t t2 = now_ns();
      for (size_t i = 0; i < pages; i++) p[i * 4096] = 1;
      uint64_t t3 = now_ns();
      munmap((void *)p, size);
      free_region(&r);
      create[t] = t1 - t0;
      touch[t] = t3 - t2;
      ok++;
    }
    if (ok < trials) {
      printf("{\"case\":\"fault\",\"kind\":\"%s\",\"error\":\"%s\"}\n", kinds[k], strerror(-err));
    } else {
      printf("{\"case\":\"fault\",\"kind\":\"%s\",\"size\":%zu,\"pages4k\":%zu,\"trials\":%d,\"touch_ns_per_page\":%.1f,\"create_ns_per_page\":%.1f}\n", kinds[k], size, pages,
             trials, (double)median(touch, trials) / (double)pages, (double)median(create, trials) / (double)pages);
    }
    fflush(stdout);
    free(touch);
    free(create);
  }
}

static void bench_revoke(int nprocs, size_t size, int trials) {
  uint64_t *ioctl_ns = calloc((size_t)trials, sizeof *ioctl_ns), *notice_ns = calloc((size_t)trials, sizeof *notice_ns);
  for (int t = 0; t < trials; t++) {
    struct region r;
    int err = make_region("kmod", size, &r);
    if (err) {
      printf("{\"case\":\"revoke\",\"nprocs\":%d,\"error\":\"%s\"}\n", nprocs, strerror(-err));
      return;
    }
    int ready[2], done[2];
    if (pipe(ready) || pipe(done)) exit(2);
    for (int c = 0; c < nprocs; c++) {
      if (fork() == 0) {
        volatile char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd, 0);
        if (p == MAP_FAILED) _exit(3);
        for (size_t i = 0; i < size; i += 4096) p[i] = 1;
        char b = 'r';
        if (write(ready[1], &b, 1) != 1) _exit(4);
        struct pollfd pfd = {.fd = r.fd, .events = POLLIN};
        while (poll(&pfd, 1, -1) < 0 && errno == EINTR) {
        }
        uint64_t seen = now_ns();
        if (write(done[1], &seen, sizeof seen) != sizeof seen) _exit(5);
        _exit(0);
      }
    }
    for (int c = 0; c < nprocs; c++) {
      char b;
      if (read(ready[0], &b, 1) != 1) exit(2);
    }
    struct shmbroker_revoke rv = {.grant_id = r.grant_id};
    uint64_t t0 = now_ns();
    if (ioctl(dev, SHMBROKER_IOC_REVOKE, &rv)) {
      printf("{\"case\":\"revoke\",\"error\":\"%s\"}\n", strerror(errno));
      return;
    }
    uint64_t t1 = now_ns(), last = 0;
    for (int c = 0; c < nprocs; c++) {
      uint64_t seen;
      if (read(done[0], &seen, sizeof seen) != sizeof seen) exit(2);
      if (seen > last) last = seen;
    }
    while (wait(NULL) > 0) {
    }
    close(ready[0]);
    close(ready[1]);
    close(done[0]);
    close(done[1]);
    free_region(&r);
    ioctl_ns[t] = t1 - t0;
    notice_ns[t] = last - t0;
  }
  printf("{\"case\":\"revoke\",\"nprocs\":%d,\"size\":%zu,\"trials\":%d,\"revoke_ioctl_ns\":%llu,\"all_saw_pollhup_ns\":%llu}\n", nprocs, size, trials,
         (unsigned long long)median(ioctl_ns, trials), (unsigned long long)median(notice_ns, trials));
  fflush(stdout);
}

int main(int argc, char **argv) {
  dev = open("/dev/shmbroker", O_RDWR | O_CLOEXEC);
  if (argc >= 4 && !strcmp(argv[1], "fault")) {
    fault(strtoull(argv[2], NULL, 0), atoi(argv[3]));
  } else if (argc >= 5 && !strcmp(argv[1], "revoke")) {
    bench_revoke(atoi(argv[2]), strtoull(argv[3], NULL, 0), atoi(argv[4]));
  } else {
    fprintf(stderr, "usage: kmod_bench fault SIZE TRIALS | revoke NPROCS SIZE TRIALS\n");
    return 2;
  }
  return 0;
}
