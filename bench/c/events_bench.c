/*
 * Region events round trip (bench/items/events.js), from C, in separate
 * processes:
 *
 *   events_bench eventfd ROUNDS
 *       the floor: two processes ping-pong over two eventfds (blocking read,
 *       write), one round trip per sample.
 *   events_bench shmb PING PONG WAITERS ROUNDS
 *       the same round trip through region doorbells: the pinger notifies
 *       region PING and waits on region PONG; WAITERS processes wait on PING
 *       (every one wakes, a notify is broadcast), the first of them notifies
 *       PONG back. Needs SHMBROKER_RUNTIME_DIR; every process acquires its
 *       own leases with SHMB_ACQUIRE_EVENTS.
 *
 * Prints {"ns":[...]} (one round trip per entry, after a warm-up) on stdout.
 */
#define _GNU_SOURCE
#include "bench_pin.h"
#include "shmbroker.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WARMUP 200

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "events_bench: %s: %s (%d)\n", what, rc < 0 ? shmb_strerror(rc) : "failed", rc);
    exit(2);
}

static void print_ns(const uint64_t *ns, int n)
{
    printf("{\"ns\":[");
    for (int i = 0; i < n; i++)
        printf("%s%" PRIu64, i ? "," : "", ns[i]);
    printf("]}\n");
}

static int eventfd_pingpong(int rounds)
{
    int a = eventfd(0, EFD_CLOEXEC), b = eventfd(0, EFD_CLOEXEC);
    uint64_t one = 1, v, *ns = calloc((size_t)rounds, sizeof *ns);
    if (a < 0 || b < 0 || !ns)
        die("eventfd", -1);
    pid_t child = fork();
    if (child == 0) {
        bench_pin(BENCH_PEER);
        for (int i = 0; i < rounds + WARMUP; i++) {
            if (read(a, &v, sizeof v) != sizeof v || write(b, &one, sizeof one) != sizeof one)
                _exit(2);
        }
        _exit(0);
    }
    bench_pin(BENCH_PINGER);
    for (int i = 0; i < rounds + WARMUP; i++) {
        uint64_t t0 = now_ns();
        if (write(a, &one, sizeof one) != sizeof one || read(b, &v, sizeof v) != sizeof v)
            die("eventfd ping-pong", -1);
        if (i >= WARMUP)
            ns[i - WARMUP] = now_ns() - t0;
    }
    int st;
    waitpid(child, &st, 0);
    print_ns(ns, rounds);
    free(ns);
    return 0;
}

static void acquire2(shmb_client **c, const char *ping, const char *pong, shmb_region **rping, shmb_region **rpong)
{
    int rc;
    if ((rc = shmb_connect(NULL, c)) < 0)
        die("connect", rc);
    if ((rc = shmb_acquire_ex(*c, ping, SHMB_MODE_READ_WRITE, SHMB_ACQUIRE_EVENTS, rping)) < 0)
        die("acquire ping", rc);
    if ((rc = shmb_acquire_ex(*c, pong, SHMB_MODE_READ_WRITE, SHMB_ACQUIRE_EVENTS, rpong)) < 0)
        die("acquire pong", rc);
}

/* A waiter on PING: wakes on every notify (coalesced); the responder notifies PONG back. */
static void waiter(const char *ping, const char *pong, int responder, int total, int ready_fd)
{
    shmb_client *c;
    shmb_region *rping, *rpong;
    acquire2(&c, ping, pong, &rping, &rpong);
    uint64_t seen = shmb_region_seq(rping), s;
    char x = 1;
    if (write(ready_fd, &x, 1) != 1)
        _exit(2);
    while (seen < (uint64_t)total) {
        int rc = shmb_region_wait(rping, seen, 30000, &s);
        if (rc != SHMB_EVENT_NOTIFY)
            die("waiter wait", rc);
        seen = s;
        if (responder && (rc = shmb_region_notify(rpong, NULL)) < 0)
            die("responder notify", rc);
    }
    shmb_region_release(rping);
    shmb_region_release(rpong);
    shmb_client_close(c);
    _exit(0);
}

static int shmb_pingpong(const char *ping, const char *pong, int waiters, int rounds)
{
    int total = rounds + WARMUP, pipefd[2];
    uint64_t *ns = calloc((size_t)rounds, sizeof *ns);
    pid_t *kids = calloc((size_t)waiters, sizeof *kids);
    if (!ns || !kids || pipe(pipefd) < 0)
        die("setup", -1);
    shmb_client *c;
    shmb_region *rping, *rpong;
    acquire2(&c, ping, pong, &rping, &rpong);
    for (int w = 0; w < waiters; w++) {
        kids[w] = fork();
        if (kids[w] == 0) {
            bench_pin(BENCH_PEER);
            waiter(ping, pong, w == 0, total, pipefd[1]);
        }
    }
    for (int w = 0; w < waiters; w++) {
        char x;
        if (read(pipefd[0], &x, 1) != 1)
            die("waiter start", -1);
    }
    bench_pin(BENCH_PINGER);
    uint64_t last = shmb_region_seq(rpong), s;
    for (int i = 0; i < total; i++) {
        uint64_t t0 = now_ns();
        int rc = shmb_region_notify(rping, NULL);
        if (rc < 0)
            die("notify", rc);
        rc = shmb_region_wait(rpong, last, 30000, &s);
        if (rc != SHMB_EVENT_NOTIFY)
            die("wait", rc);
        last = s;
        if (i >= WARMUP)
            ns[i - WARMUP] = now_ns() - t0;
    }
    for (int w = 0; w < waiters; w++) {
        int st;
        waitpid(kids[w], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            die("a waiter failed", -1);
    }
    shmb_region_release(rping);
    shmb_region_release(rpong);
    shmb_client_close(c);
    print_ns(ns, rounds);
    free(ns);
    free(kids);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "eventfd") == 0)
        return eventfd_pingpong(atoi(argv[2]));
    if (argc == 6 && strcmp(argv[1], "shmb") == 0)
        return shmb_pingpong(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]));
    fprintf(stderr, "usage: events_bench eventfd ROUNDS | shmb PING PONG WAITERS ROUNDS\n");
    return 1;
}
