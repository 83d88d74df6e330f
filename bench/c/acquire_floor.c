// The raw floor of the acquire path, in C, two processes: a "broker" holding
// a sealed memfd and a client on a SOCK_SEQPACKET socketpair. Per trial the
// client sends a request, the broker answers with the fd by SCM_RIGHTS, the
// client mmaps it, touches the first page, munmaps and closes it.
// With --release the client also sends a release and waits for its answer
// (the SDK's acquire+release is two round trips; this shows the second one).
//
//   acquire_floor SIZE_BYTES TRIALS WARMUP [--release]
// Prints one line of JSON: {"size":..,"trials":..,"ns":[...]} per-trial ns.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
  perror(what);
  exit(2);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void send_fd(int sock, int fd) {
  char byte = 'A';
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (fd >= 0) {
    msg.msg_control = u.buf;
    msg.msg_controllen = sizeof(u.buf);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  if (sendmsg(sock, &msg, 0) != 1) die("sendmsg");
}

static int recv_fd(int sock) {
  char byte;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
  ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  if (n <= 0) return -2;
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  if (!c || c->cmsg_type != SCM_RIGHTS) return -1;
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof(int));
  return fd;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s SIZE TRIALS WARMUP [--release]\n", argv[0]);
    return 2;
  }
  size_t size = strtoull(argv[1], NULL, 0);
  int trials = atoi(argv[2]);
  int warmup = atoi(argv[3]);
  int with_release = argc > 4 && strcmp(argv[4], "--release") == 0;

  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) die("socketpair");
  int mfd = memfd_create("floor", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (mfd < 0) die("memfd_create");
  if (ftruncate(mfd, (off_t)size) < 0) die("ftruncate");
  if (fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) die("seals");

  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    // The broker side: answer each request with the fd (a fresh open file
    // description each time, as the memfd backend does), each release with a byte.
    close(sv[0]);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", mfd);
    for (;;) {
      char req;
      ssize_t n = recv(sv[1], &req, 1, 0);
      if (n <= 0) _exit(0);
      if (req == 'R') {
        send_fd(sv[1], -1);
        continue;
      }
      int fd = open(path, O_RDWR | O_CLOEXEC);
      if (fd < 0) die("open /proc/self/fd");
      send_fd(sv[1], fd);
      close(fd);
    }
  }
  close(sv[1]);
  close(mfd);
  int s = sv[0];
  uint64_t *ns = calloc((size_t)trials, sizeof *ns);
  for (int i = -warmup; i < trials; i++) {
    uint64_t t0 = now_ns();
    char req = 'A';
    if (send(s, &req, 1, 0) != 1) die("send");
    int fd = recv_fd(s);
    if (fd < 0) die("recv_fd");
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) die("mmap");
    ((volatile char *)p)[0] += 1;
    munmap(p, size);
    close(fd);
    if (with_release) {
      req = 'R';
      if (send(s, &req, 1, 0) != 1) die("send");
      if (recv_fd(s) < -1) die("recv");
    }
    uint64_t t1 = now_ns();
    if (i >= 0) ns[i] = t1 - t0;
  }
  close(s);
  waitpid(pid, NULL, 0);
  printf("{\"size\":%zu,\"trials\":%d,\"release\":%s,\"ns\":[", size, trials, with_release ? "true" : "false");
  for (int i = 0; i < trials; i++) printf("%s%llu", i ? "," : "", (unsigned long long)ns[i]);
  printf("]}\n");
  return 0;
}
