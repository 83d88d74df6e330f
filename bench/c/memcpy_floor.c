// memcpy inside one process: TOTAL bytes from a 64 MiB source to a 64 MiB
// destination in CHUNK-sized copies (the same buffer sizes the ring and the
// socket runs use). Prints {"ns":[...]} with one time per trial.
//   memcpy_floor TOTAL CHUNK TRIALS
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc < 4) return 2;
  size_t total = strtoull(argv[1], NULL, 0), chunk = strtoull(argv[2], NULL, 0);
  int trials = atoi(argv[3]);
  size_t buf = 64u << 20;
  unsigned char *src = malloc(buf), *dst = malloc(buf);
  for (size_t i = 0; i < buf; i += 4096) memset(src + i, (int)((i >> 12) & 0xff), 4096);
  memset(dst, 0, buf);
  size_t n = total / chunk;
  printf("{\"ns\":[");
  for (int t = 0; t < trials; t++) {
    uint64_t t0 = now_ns();
    for (size_t k = 0; k < n; k++) {
      size_t off = (k * chunk) % buf;
      memcpy(dst + off, src + off, chunk);
    }
    __asm__ __volatile__("" ::: "memory");
    printf("%s%llu", t ? "," : "", (unsigned long long)(now_ns() - t0));
  }
  printf("],\"check\":%d}\n", dst[buf - 1]);
  return 0;
}
