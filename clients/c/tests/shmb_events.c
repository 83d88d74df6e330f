/*
 * Region events from C against a real broker (test/clients-c/c-events.test.ts).
 * Finds the broker like any client (SHMBROKER_RUNTIME_DIR etc.).
 *
 *   ring NAME producer|consumer FRAMES [hold]
 *        the ring of test/region-events.test.ts: u32 head at 0, u32 tail at 4,
 *        64 slots of 64 bytes from offset 64; the producer writes FRAMES frames
 *        (slot bytes = frame & 0xff, first u32 = frame number) and notifies,
 *        the consumer checks them, advances tail and notifies. Both sleep in
 *        shmb_region_wait() when they cannot proceed. Prints
 *        "done sum=S bad=B wakes=W". With "hold": prints "acquired
 *        backend=B" after the acquire and waits for a line on stdin before
 *        it starts (so the test can stop the broker in between). A wait that
 *        sees nothing for SHMB_EVENTS_WAIT_MS (default 20000; the VM suite,
 *        where the other side's process may still be starting, sets more)
 *        ends the run with status 3.
 *   raw-notify NAME ro|rw
 *        acquires with events, then rings through the library and with the
 *        bare NOTIFY ioctl on the region fd (kmod: the kernel's own answer,
 *        no library check in between); prints "notify rc=RC raw=OK|ERRNO
 *        may_notify=M backend=B".
 *   poll NAME ro|rw N
 *        acquires N leases with events, prints "ready seq=S may_notify=M
 *        notify_rc=RC", then polls their N event fds with poll(2) (the
 *        caller's own event loop) until every lease is revoked; prints
 *        "all-notified" once every lease has seen a notify, and at the end
 *        "revoked n=N reason=R".
 *
 * Exit status: 0 ok, 1 usage, 2 library error, 3 protocol surprise.
 */
#define _GNU_SOURCE
#include "shmbroker.h"

#include <errno.h>
#include <inttypes.h>
#include <linux/shmbroker.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 64u
#define SLOT 64u
#define BASE 64u

static int die(const char *what, int rc, shmb_client *c)
{
    fprintf(stderr, "shmb_events: %s: %s (%d)%s%s\n", what, shmb_strerror(rc), rc,
            c && shmb_last_error_reason(c)[0] ? " reason=" : "", c ? shmb_last_error_reason(c) : "");
    return 2;
}

static int ring(shmb_client *c, const char *name, int producer, uint32_t frames, int hold)
{
    shmb_region *r;
    int rc = shmb_acquire_ex(c, name, SHMB_MODE_READ_WRITE, SHMB_ACQUIRE_EVENTS, &r);
    if (rc < 0)
        return die("acquire", rc, c);
    if (hold) {
        char line[64];
        printf("acquired backend=%s\n", shmb_region_backend(r));
        fflush(stdout);
        if (!fgets(line, sizeof line, stdin))
            return 1;
    }
    uint8_t *mem = shmb_region_data(r);
    uint32_t *head = (uint32_t *)mem, *tail = (uint32_t *)mem + 1;
    uint64_t sum = 0, wakes = 0, bad = 0;
    const char *env = getenv("SHMB_EVENTS_WAIT_MS");
    int wait_ms = env && atoi(env) > 0 ? atoi(env) : 20000;
    for (uint32_t i = 0; i < frames;) {
        /* The sequence first, then the indices: a notify between the two
         * makes the wait below return at once. */
        uint64_t seen = shmb_region_seq(r);
        uint32_t h = __atomic_load_n(head, __ATOMIC_ACQUIRE), t = __atomic_load_n(tail, __ATOMIC_ACQUIRE);
        if (producer && h - t < SLOTS) {
            uint8_t *slot = mem + BASE + (h % SLOTS) * SLOT;
            memset(slot, (int)(h & 0xff), SLOT);
            memcpy(slot, &h, sizeof h);
            __atomic_store_n(head, h + 1, __ATOMIC_RELEASE);
            if ((rc = shmb_region_notify(r, NULL)) < 0)
                return die("notify", rc, c);
            i++;
            continue;
        }
        if (!producer && t < h) {
            uint8_t *slot = mem + BASE + (t % SLOTS) * SLOT;
            uint32_t n;
            memcpy(&n, slot, sizeof n);
            if (n != t || slot[SLOT - 1] != (uint8_t)(t & 0xff))
                bad++;
            sum += n;
            __atomic_store_n(tail, t + 1, __ATOMIC_RELEASE);
            if ((rc = shmb_region_notify(r, NULL)) < 0)
                return die("notify", rc, c);
            i++;
            continue;
        }
        rc = shmb_region_wait(r, seen, wait_ms, NULL);
        if (rc != SHMB_EVENT_NOTIFY) {
            fprintf(stderr, "shmb_events: wait returned %d (head %u tail %u)\n", rc, h, t);
            return 3;
        }
        wakes++;
    }
    printf("done sum=%" PRIu64 " bad=%" PRIu64 " wakes=%" PRIu64 "\n", sum, bad, wakes);
    fflush(stdout);
    return shmb_region_release(r) < 0 ? 2 : 0;
}

static int poll_leases(shmb_client *c, const char *name, enum shmb_mode mode, int n)
{
    shmb_region **rs = calloc((size_t)n, sizeof *rs);
    struct pollfd *pfds = calloc((size_t)n, sizeof *pfds);
    uint64_t *last = calloc((size_t)n, sizeof *last);
    char *seen = calloc((size_t)n, 1);
    int rc, live = n, fresh = n;
    const char *reason = "";
    if (!rs || !pfds || !last || !seen)
        return 2;
    for (int i = 0; i < n; i++) {
        if ((rc = shmb_acquire_ex(c, name, mode, SHMB_ACQUIRE_EVENTS, &rs[i])) < 0)
            return die("acquire", rc, c);
        last[i] = shmb_region_seq(rs[i]);
        pfds[i].fd = shmb_region_event_fd(rs[i]);
        pfds[i].events = POLLIN;
    }
    int nrc = shmb_region_notify(rs[0], NULL);
    printf("ready seq=%" PRIu64 " may_notify=%d notify_rc=%d\n", last[0], shmb_region_may_notify(rs[0]), nrc);
    fflush(stdout);
    while (live > 0) {
        if (poll(pfds, (nfds_t)n, -1) < 0)
            return die("poll", -1, c);
        for (int i = 0; i < n; i++) {
            if (pfds[i].fd < 0 || !(pfds[i].revents & POLLIN))
                continue;
            uint64_t s;
            rc = shmb_region_wait(rs[i], last[i], 0, &s);
            if (rc == SHMB_EVENT_NOTIFY) {
                if (!seen[i] && (seen[i] = 1) && --fresh == 0) {
                    printf("all-notified\n");
                    fflush(stdout);
                }
                last[i] = s;
            } else if (rc == SHMB_EVENT_REVOKED) {
                reason = shmb_region_revoke_reason(rs[i]) ? shmb_region_revoke_reason(rs[i]) : "REGION_DELETED";
                pfds[i].fd = -1;
                live--;
            } else if (rc < 0) {
                return die("wait", rc, c);
            }
        }
    }
    printf("revoked n=%d reason=%s\n", n, reason);
    fflush(stdout);
    for (int i = 0; i < n; i++)
        shmb_region_release(rs[i]);
    free(rs);
    free(pfds);
    free(last);
    free(seen);
    return 0;
}

static int raw_notify(shmb_client *c, const char *name, enum shmb_mode mode)
{
    shmb_region *r;
    struct shmbroker_notify n;
    int rc = shmb_acquire_ex(c, name, mode, SHMB_ACQUIRE_EVENTS, &r);
    if (rc < 0)
        return die("acquire", rc, c);
    int lib = shmb_region_notify(r, NULL);
    memset(&n, 0, sizeof n);
    int raw = ioctl(shmb_region_fd(r), SHMBROKER_IOC_NOTIFY, &n) < 0 ? errno : 0;
    printf("notify rc=%d raw=%s may_notify=%d backend=%s\n", lib,
           raw == 0 ? "OK" : raw == EPERM ? "EPERM" : strerror(raw), shmb_region_may_notify(r), shmb_region_backend(r));
    fflush(stdout);
    return shmb_region_release(r) < 0 ? 2 : 0;
}

int main(int argc, char **argv)
{
    shmb_client *c;
    int rc;
    if (argc < 4 || (argc < 5 && strcmp(argv[1], "raw-notify") != 0))
        return 1;
    if ((rc = shmb_connect(NULL, &c)) < 0)
        return die("connect", rc, NULL);
    if (strcmp(argv[1], "ring") == 0)
        rc = ring(c, argv[2], strcmp(argv[3], "producer") == 0, (uint32_t)strtoul(argv[4], NULL, 10),
                  argc > 5 && strcmp(argv[5], "hold") == 0);
    else if (strcmp(argv[1], "raw-notify") == 0)
        rc = raw_notify(c, argv[2], strcmp(argv[3], "rw") == 0 ? SHMB_MODE_READ_WRITE : SHMB_MODE_READ_ONLY);
    else if (strcmp(argv[1], "poll") == 0)
        rc = poll_leases(c, argv[2], strcmp(argv[3], "rw") == 0 ? SHMB_MODE_READ_WRITE : SHMB_MODE_READ_ONLY, atoi(argv[4]));
    else
        rc = 1;
    shmb_client_close(c);
    return rc;
}
