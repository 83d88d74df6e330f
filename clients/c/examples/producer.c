/*
 * Example: a C producer writing frames into a region acquired read-write
 * through the broker. A consumer (clients/python/examples/consumer.py, or
 * any other client with a read-only grant) maps the same region and reads
 * the frames without any further help from the broker.
 *
 *   producer REGION [FRAMES] [INTERVAL_MS]
 *
 * The region must hold the header plus a width*height frame; the frame is
 * as wide as fits in 640 columns. It stops after FRAMES frames (default 100),
 * or earlier if the broker revokes the lease (it then releases and exits 4).
 */
#define _GNU_SOURCE
#include "shmbroker.h"
#include "frame.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int revoked;

static void on_revoke(shmb_client *c, shmb_region *r, const shmb_revocation *n, void *arg)
{
    (void)c;
    (void)r;
    (void)arg;
    fprintf(stderr, "producer: lease revoked (%s), stopping\n", n->reason);
    revoked = 1; /* released by main: it is still inside the frame loop */
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: producer REGION [FRAMES] [INTERVAL_MS]\n");
        return 1;
    }
    long frames = argc > 2 ? atol(argv[2]) : 100;
    int interval = argc > 3 ? atoi(argv[3]) : 10;
    shmb_client *c;
    shmb_region *r;
    int rc = shmb_connect(NULL, &c);
    if (rc < 0) {
        fprintf(stderr, "producer: connect: %s\n", shmb_strerror(rc));
        return 2;
    }
    rc = shmb_acquire(c, argv[1], SHMB_MODE_READ_WRITE, &r);
    if (rc < 0) {
        fprintf(stderr, "producer: acquire %s: %s %s\n", argv[1], shmb_strerror(rc), shmb_last_error_reason(c));
        shmb_client_close(c);
        return 2;
    }
    shmb_set_revocation_callback(c, on_revoke, NULL);

    uint8_t *base = shmb_region_data(r);
    size_t size = shmb_region_size(r);
    struct frame_header *h = (struct frame_header *)base;
    uint8_t *pix = base + FRAME_HEADER;
    uint32_t width = 640, height = size > FRAME_HEADER ? (uint32_t)((size - FRAME_HEADER) / 640) : 0;
    if (height == 0) {
        width = (uint32_t)(size > FRAME_HEADER ? size - FRAME_HEADER : 0);
        height = width ? 1 : 0;
    }
    if (!height) {
        fprintf(stderr, "producer: region too small\n");
        return 2;
    }
    if (height > 480)
        height = 480;
    h->width = width;
    h->height = height;
    memcpy(h->magic, FRAME_MAGIC, 8);

    for (long f = 1; f <= frames && !revoked; f++) {
        uint64_t seq = __atomic_load_n(&h->seq, __ATOMIC_RELAXED);
        __atomic_store_n(&h->seq, seq | 1, __ATOMIC_RELAXED); /* odd: writing */
        __atomic_thread_fence(__ATOMIC_RELEASE);
        uint32_t sum = 0;
        for (uint32_t y = 0; y < height; y++)
            for (uint32_t x = 0; x < width; x++) {
                uint8_t v = (uint8_t)(f + x + 3 * y);
                pix[(size_t)y * width + x] = v;
                sum += v;
            }
        h->frame = (uint64_t)f;
        h->checksum = sum;
        __atomic_store_n(&h->seq, (seq | 1) + 1, __ATOMIC_RELEASE); /* even: complete */
        /* Wait for the next frame while watching for revocation notices. */
        struct pollfd p = {shmb_client_fd(c), POLLIN, 0};
        if (poll(&p, 1, interval) > 0 || shmb_events_pending(c))
            if (shmb_process_events(c) < 0)
                break;
    }
    printf("producer: wrote %llu frames of %ux%u into %s\n", (unsigned long long)h->frame, width, height,
           argv[1]);
    rc = shmb_region_release(r);
    shmb_client_close(c);
    return revoked ? 4 : rc < 0 ? 2 : 0;
}
