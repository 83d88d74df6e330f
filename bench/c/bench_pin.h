/*
 * Placement for the round-trip benches (bench/items/events.js).
 *
 * On a machine whose idle cores halt (a VM with guest halt-polling off, or
 * deep C-states), waking a process on another, idle core costs tens of µs,
 * while a wake on the waker's own core costs a few. An unpinned ping-pong
 * lands wherever the scheduler puts it, so two methods can differ by 10x for
 * placement alone. Every method is therefore run under the same placement:
 * BENCH_CPUS="A,B" pins the process that starts the round trip to CPU A and
 * its peers (responder, waiters) to CPU B; A == B is the same-core case.
 * Unset: no pinning.
 */
#ifndef SHMB_BENCH_PIN_H
#define SHMB_BENCH_PIN_H
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

enum bench_role { BENCH_PINGER = 0, BENCH_PEER = 1 };

static inline void bench_pin(enum bench_role role)
{
    const char *spec = getenv("BENCH_CPUS");
    int cpu[2];
    cpu_set_t set;
    if (!spec || sscanf(spec, "%d,%d", &cpu[0], &cpu[1]) != 2)
        return;
    CPU_ZERO(&set);
    CPU_SET(cpu[role], &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0) {
        perror("bench: sched_setaffinity (BENCH_CPUS)");
        exit(2);
    }
}
#endif
