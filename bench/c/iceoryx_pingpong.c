/*
 * The peer baseline for region events (bench/items/events.js): the same
 * round trip through iceoryx (Debian's iceoryx 2.0 C binding), with RouDi
 * already running. Two processes: the pinger publishes a 64-byte sample on
 * "shmb-bench/ping" and blocks in a waitset until the ponger's sample on
 * "shmb-bench/pong" arrives; the ponger blocks in its waitset on ping and
 * publishes pong. Prints {"ns":[...]} (one round trip per entry, after a
 * warm-up).
 *
 *   iceoryx_pingpong ROUNDS
 */
#include "bench_pin.h"
#include "iceoryx_binding_c/publisher.h"
#include "iceoryx_binding_c/runtime.h"
#include "iceoryx_binding_c/subscriber.h"
#include "iceoryx_binding_c/wait_set.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WARMUP 200
#define SAMPLE 64

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct ends {
    iox_pub_storage_t pub_storage;
    iox_sub_storage_t sub_storage;
    iox_ws_storage_t ws_storage;
    iox_pub_t pub;
    iox_sub_t sub;
    iox_ws_t ws;
};

static void open_ends(struct ends *e, const char *name, const char *out, const char *in)
{
    iox_pub_options_t po;
    iox_sub_options_t so;
    iox_runtime_init(name);
    iox_pub_options_init(&po);
    po.historyCapacity = 0;
    e->pub = iox_pub_init(&e->pub_storage, "shmb-bench", out, "sample", &po);
    iox_sub_options_init(&so);
    so.queueCapacity = 16;
    so.historyRequest = 0;
    e->sub = iox_sub_init(&e->sub_storage, "shmb-bench", in, "sample", &so);
    e->ws = iox_ws_init(&e->ws_storage);
    if (iox_ws_attach_subscriber_state(e->ws, e->sub, SubscriberState_HAS_DATA, 0, NULL) != WaitSetResult_SUCCESS) {
        fprintf(stderr, "iceoryx_pingpong: waitset attach failed\n");
        exit(2);
    }
    /* Both directions connected before the first sample. */
    while (iox_sub_get_subscription_state(e->sub) != SubscribeState_SUBSCRIBED || !iox_pub_has_subscribers(e->pub))
        usleep(1000);
}

static void send_sample(struct ends *e, uint64_t i)
{
    void *chunk;
    if (iox_pub_loan_chunk(e->pub, &chunk, SAMPLE) != AllocationResult_SUCCESS) {
        fprintf(stderr, "iceoryx_pingpong: loan failed\n");
        exit(2);
    }
    memset(chunk, 0, SAMPLE);
    memcpy(chunk, &i, sizeof i);
    iox_pub_publish_chunk(e->pub, chunk);
}

static void receive_one(struct ends *e)
{
    iox_notification_info_t info[1];
    uint64_t missed;
    const void *chunk;
    for (;;) {
        if (iox_sub_take_chunk(e->sub, &chunk) == ChunkReceiveResult_SUCCESS) {
            iox_sub_release_chunk(e->sub, chunk);
            return;
        }
        iox_ws_wait(e->ws, info, 1, &missed);
    }
}

static void close_ends(struct ends *e)
{
    iox_ws_deinit(e->ws);
    iox_sub_deinit(e->sub);
    iox_pub_deinit(e->pub);
    iox_runtime_shutdown();
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: iceoryx_pingpong ROUNDS\n");
        return 1;
    }
    int rounds = atoi(argv[1]), total = rounds + WARMUP;
    uint64_t *ns = calloc((size_t)rounds, sizeof *ns);
    struct ends e;
    pid_t child = fork();
    if (child == 0) {
        bench_pin(BENCH_PEER);
        open_ends(&e, "shmb-bench-pong", "pong", "ping");
        for (int i = 0; i < total; i++) {
            receive_one(&e);
            send_sample(&e, (uint64_t)i);
        }
        /* Let the last sample reach the pinger before tearing down. */
        usleep(100000);
        close_ends(&e);
        _exit(0);
    }
    bench_pin(BENCH_PINGER);
    open_ends(&e, "shmb-bench-ping", "ping", "pong");
    for (int i = 0; i < total; i++) {
        uint64_t t0 = now_ns();
        send_sample(&e, (uint64_t)i);
        receive_one(&e);
        if (i >= WARMUP)
            ns[i - WARMUP] = now_ns() - t0;
    }
    int st;
    waitpid(child, &st, 0);
    close_ends(&e);
    printf("{\"ns\":[");
    for (int i = 0; i < rounds; i++)
        printf("%s%" PRIu64, i ? "," : "", ns[i]);
    printf("]}\n");
    free(ns);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 2;
}
