/*
 * Small C client driven by the end-to-end tests (test/clients-c/c-client.test.ts)
 * against a real broker. Finds the broker like any client (SHMBROKER_RUNTIME_DIR
 * etc.) unless --socket PATH is given. One command per run:
 *
 *   write NAME OFFSET TEXT        acquire rw, copy TEXT at OFFSET, release
 *   read NAME OFFSET LEN          acquire ro, print LEN bytes at OFFSET, release
 *   ro-check NAME                 acquire ro and try every way to write; prints
 *                                 one "key=value" line per attempt
 *   acquire NAME ro|rw            print "rc=N reason=R" (errors are not fatal)
 *   hold-offer NAME TEXT MS       acquire rw, write TEXT at 0, print "acquired LEASE",
 *                                 wait for the broker to go away, reconnect (for
 *                                 up to MS ms), offer the region back, print
 *                                 "offered rc=N", release ("released rc=N")
 *   wait-revoke NAME ro|rw MS     acquire, print "acquired LEASE", then poll
 *                                 for a revocation notice for up to MS ms; on
 *                                 it print "revoked LEASE REASON GRACE" and
 *                                 release (exit 0), else exit 3
 *
 * Exit status: 0 ok, 1 usage, 2 library error (message on stderr).
 */
#define _GNU_SOURCE
#include "shmbroker.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static int die(const char *what, int rc, shmb_client *c)
{
    fprintf(stderr, "shmb_e2e: %s: %s (%d)%s%s\n", what, shmb_strerror(rc), rc,
            c && shmb_last_error_reason(c)[0] ? " reason=" : "", c ? shmb_last_error_reason(c) : "");
    return 2;
}

static enum shmb_mode parse_mode(const char *s)
{
    return strcmp(s, "rw") == 0 ? SHMB_MODE_READ_WRITE : SHMB_MODE_READ_ONLY;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int revoked_count;

static void on_revoke(shmb_client *c, shmb_region *r, const shmb_revocation *n, void *arg)
{
    (void)c;
    (void)arg;
    printf("revoked %llu %s %u\n", (unsigned long long)n->lease_id, n->reason, n->grace_ms);
    fflush(stdout);
    int rc = shmb_region_release(r);
    printf("released rc=%d\n", rc);
    fflush(stdout);
    revoked_count++;
}

int main(int argc, char **argv)
{
    const char *sock = NULL;
    shmb_client *c = NULL;
    shmb_region *r = NULL;
    int rc;

    if (argc > 2 && strcmp(argv[1], "--socket") == 0) {
        sock = argv[2];
        argc -= 2;
        argv += 2;
    }
    if (argc < 3)
        return 1;
    {
        char why[512];
        rc = shmb_connect_explain(sock, &c, why, sizeof why);
        if (rc < 0) {
            fprintf(stderr, "shmb_e2e: connect: %s (%d): %s\n", shmb_strerror(rc), rc, why);
            return 2;
        }
    }

    if (strcmp(argv[1], "write") == 0 && argc == 5) {
        size_t off = strtoul(argv[3], NULL, 0), len = strlen(argv[4]);
        rc = shmb_acquire(c, argv[2], SHMB_MODE_READ_WRITE, &r);
        if (rc < 0)
            return die("acquire", rc, c);
        if (off > shmb_region_size(r) || len > shmb_region_size(r) - off)
            return die("range", -ERANGE, c);
        memcpy((char *)shmb_region_data(r) + off, argv[4], len);
        printf("wrote %zu bytes lease=%llu backend=%s\n", len, (unsigned long long)shmb_region_lease_id(r),
               shmb_region_backend(r));
    } else if (strcmp(argv[1], "read") == 0 && argc == 5) {
        size_t off = strtoul(argv[3], NULL, 0), len = strtoul(argv[4], NULL, 0);
        rc = shmb_acquire(c, argv[2], SHMB_MODE_READ_ONLY, &r);
        if (rc < 0)
            return die("acquire", rc, c);
        if (off > shmb_region_size(r) || len > shmb_region_size(r) - off)
            return die("range", -ERANGE, c);
        fwrite((const char *)shmb_region_data(r) + off, 1, len, stdout);
    } else if (strcmp(argv[1], "ro-check") == 0) {
        rc = shmb_acquire(c, argv[2], SHMB_MODE_READ_ONLY, &r);
        if (rc < 0)
            return die("acquire", rc, c);
        int e = mprotect(shmb_region_data(r), shmb_region_size(r), PROT_READ | PROT_WRITE) == 0 ? 0 : errno;
        printf("mprotect=%s\n", e ? strerrorname_np(e) : "ok");
        void *w = mmap(NULL, shmb_region_size(r), PROT_READ | PROT_WRITE, MAP_SHARED, shmb_region_fd(r), 0);
        e = w == MAP_FAILED ? errno : 0;
        printf("mmap_rw=%s\n", e ? strerrorname_np(e) : "ok");
        if (w != MAP_FAILED)
            munmap(w, shmb_region_size(r));
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", shmb_region_fd(r));
        FILE *f = fopen(path, "r+");
        printf("reopen_rw=%s\n", f ? "ok" : strerrorname_np(errno));
        if (f)
            fclose(f);
        shmb_region *rw = NULL;
        rc = shmb_acquire(c, argv[2], SHMB_MODE_READ_WRITE, &rw);
        printf("acquire_rw=%d reason=%s\n", rc, shmb_last_error_reason(c));
        if (rc == 0)
            shmb_region_release(rw);
    } else if (strcmp(argv[1], "acquire") == 0 && argc == 4) {
        rc = shmb_acquire(c, argv[2], parse_mode(argv[3]), &r);
        printf("rc=%d reason=%s\n", rc, shmb_last_error_reason(c));
        if (rc == 0)
            printf("size=%zu mode=%d backend=%s grant=%s\n", shmb_region_size(r), (int)shmb_region_mode(r),
                   shmb_region_backend(r), shmb_region_grant(r));
    } else if (strcmp(argv[1], "hold-offer") == 0 && argc == 5) {
        long long deadline = now_ms() + atoll(argv[4]);
        rc = shmb_acquire(c, argv[2], SHMB_MODE_READ_WRITE, &r);
        if (rc < 0)
            return die("acquire", rc, c);
        memcpy(shmb_region_data(r), argv[3], strlen(argv[3]));
        printf("acquired %llu\n", (unsigned long long)shmb_region_lease_id(r));
        fflush(stdout);
        for (;;) {
            struct pollfd p = {shmb_client_fd(c), POLLIN, 0};
            if (now_ms() > deadline)
                return die("waiting for the broker to go away", -ETIMEDOUT, c);
            if (poll(&p, 1, 100) > 0 && (rc = shmb_process_events(c)) < 0)
                break;
        }
        printf("disconnected rc=%d\n", rc);
        fflush(stdout);
        shmb_client_close(c); /* r stays mapped, detached */
        /* Reconnect and offer. A connect right after the drop may still reach
         * the dying broker's listener (its fds close one by one), so a reset
         * during the offer just means: not connected yet, try again. */
        for (;;) {
            c = NULL;
            rc = shmb_connect(sock, &c);
            if (rc == 0) {
                rc = shmb_region_offer(c, r);
                if (rc != -ECONNRESET && rc != -ENOTCONN)
                    break;
                shmb_client_close(c);
                c = NULL;
            }
            if (now_ms() > deadline)
                return die("reconnect", rc, NULL);
            usleep(50 * 1000);
        }
        printf("offered rc=%d lease=%llu reason=%s\n", rc, (unsigned long long)shmb_region_lease_id(r),
               shmb_last_error_reason(c));
        rc = shmb_region_release(r);
        printf("released rc=%d\n", rc);
        r = NULL;
    } else if (strcmp(argv[1], "wait-revoke") == 0 && argc == 5) {
        long long deadline = now_ms() + atoll(argv[4]);
        rc = shmb_acquire(c, argv[2], parse_mode(argv[3]), &r);
        if (rc < 0)
            return die("acquire", rc, c);
        printf("acquired %llu\n", (unsigned long long)shmb_region_lease_id(r));
        fflush(stdout);
        shmb_set_revocation_callback(c, on_revoke, NULL);
        while (revoked_count == 0) {
            long long left = deadline - now_ms();
            if (left <= 0)
                break;
            /* Notices read during another call would be pending already. */
            if (!shmb_events_pending(c)) {
                struct pollfd p = {shmb_client_fd(c), POLLIN, 0};
                if (poll(&p, 1, (int)left) <= 0)
                    continue;
            }
            rc = shmb_process_events(c);
            if (rc < 0)
                return die("process_events", rc, c);
        }
        if (!revoked_count) {
            printf("timeout\n");
            shmb_region_release(r);
            shmb_client_close(c);
            return 3;
        }
        r = NULL; /* released in the callback */
    } else {
        shmb_client_close(c);
        return 1;
    }
    if (r) {
        rc = shmb_region_release(r);
        if (rc < 0)
            return die("release", rc, c);
    }
    shmb_client_close(c);
    return 0;
}
