/*
 * Acquire latency from C against a real broker:
 *   bench_acquire [--socket PATH] NAME [ITERATIONS] [ro|rw]
 * Each iteration: shmb_acquire (request, fd by SCM_RIGHTS, fstat, mmap), touch
 * the first byte, then shmb_region_release (munmap, close, ReleaseRequest and
 * its reply). Prints one JSON line with p50/p99/max in microseconds for
 * "acquire" (acquire + touch: the raw floor's request/fd/mmap/touch) and
 * "cycle" (acquire + touch + release, i.e. a second round trip on top).
 */
#define _GNU_SOURCE
#include "shmbroker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, int n, double p)
{
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

int main(int argc, char **argv)
{
    const char *sock = NULL;
    if (argc > 2 && strcmp(argv[1], "--socket") == 0) {
        sock = argv[2];
        argc -= 2;
        argv += 2;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: bench_acquire [--socket PATH] NAME [ITERATIONS] [ro|rw]\n");
        return 1;
    }
    int n = argc > 2 ? atoi(argv[2]) : 2000;
    enum shmb_mode mode = argc > 3 && strcmp(argv[3], "rw") == 0 ? SHMB_MODE_READ_WRITE : SHMB_MODE_READ_ONLY;
    if (n < 1)
        n = 1;
    shmb_client *c;
    int rc = shmb_connect(sock, &c);
    if (rc < 0) {
        fprintf(stderr, "connect: %s\n", shmb_strerror(rc));
        return 2;
    }
    double *acq = malloc(sizeof(double) * (size_t)n), *cyc = malloc(sizeof(double) * (size_t)n);
    volatile unsigned sink = 0;
    for (int i = -200; i < n; i++) { /* 200 warm-up rounds */
        shmb_region *r;
        double t0 = now_us();
        rc = shmb_acquire(c, argv[1], mode, &r);
        if (rc < 0) {
            fprintf(stderr, "acquire: %s %s\n", shmb_strerror(rc), shmb_last_error_reason(c));
            return 2;
        }
        sink += *(volatile const unsigned char *)shmb_region_data(r);
        double t1 = now_us();
        rc = shmb_region_release(r);
        double t2 = now_us();
        if (rc < 0) {
            fprintf(stderr, "release: %s\n", shmb_strerror(rc));
            return 2;
        }
        if (i >= 0) {
            acq[i] = t1 - t0;
            cyc[i] = t2 - t0;
        }
    }
    qsort(acq, (size_t)n, sizeof *acq, cmp);
    qsort(cyc, (size_t)n, sizeof *cyc, cmp);
    printf("{\"iterations\":%d,\"mode\":\"%s\","
           "\"acquire_us\":{\"p50\":%.1f,\"p99\":%.1f,\"max\":%.1f},"
           "\"cycle_us\":{\"p50\":%.1f,\"p99\":%.1f,\"max\":%.1f}}\n",
           n, mode == SHMB_MODE_READ_WRITE ? "rw" : "ro", pct(acq, n, 0.5), pct(acq, n, 0.99), acq[n - 1],
           pct(cyc, n, 0.5), pct(cyc, n, 0.99), cyc[n - 1]);
    free(acq);
    free(cyc);
    shmb_client_close(c);
    (void)sink;
    return 0;
}
