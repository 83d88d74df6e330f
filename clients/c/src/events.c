/*
 * Region doorbells (see events.h and docs/ARCHITECTURE.md, "Region events").
 *
 * Event page (memfd backend): nobody reads the doorbell eventfd: every write
 * to it re-arms each holder's edge-triggered epoll item, so one write wakes
 * every waiter of the region.
 *
 * Kernel (kmod backend): the region fd is the doorbell. The module keeps the
 * sequence; SHMBROKER_IOC_NOTIFY bumps it and wakes every waiter, and the fd
 * polls readable (level-triggered) while the sequence differs from what this
 * open file last acknowledged ("seen", set by SHMBROKER_IOC_WAIT's last_seq),
 * EPOLLHUP once the grant is revoked. A wait acknowledges `after` before it
 * blocks, so a notify after the caller's read of the sequence keeps the fd
 * readable: no lost wake-up.
 */
#define _GNU_SOURCE
#include "events.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <linux/shmbroker.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE_BYTES 4096
#define PAGE_MAGIC 0x56454253u /* "SBEV" */
#define PAGE_VERSION 1u
#define TAG_BELL 1u
#define TAG_SOCK 2u

struct event_page {
    uint32_t magic;
    uint32_t version;
    uint64_t seq;
    uint32_t flags; /* bit 0: region deleted */
};

struct shmb_doorbell {
    struct event_page *page; /* NULL in kernel mode */
    int page_fd, bell_fd, ep_fd;
    int may_notify;
    /* kernel mode: region_fd is the doorbell (borrowed, not closed here) */
    int kernel, region_fd, revoked;
    uint64_t acked; /* what "seen" was last set to through this handle */
};

/* An ioctl on the region fd, retried on EINTR. ENOENT means the grant was
 * revoked (or the region destroyed): the doorbell is over, -ESTALE. */
static int kioctl(shmb_doorbell *d, unsigned long cmd, void *arg)
{
    int r;
    do
        r = ioctl(d->region_fd, cmd, arg);
    while (r < 0 && errno == EINTR);
    if (r >= 0)
        return 0;
    if (errno == ENOENT) {
        d->revoked = 1;
        return -ESTALE;
    }
    return -errno;
}

/* SHMBROKER_IOC_WAIT with NONBLOCK: "seen" = last, the sequence to *seq. */
static int kwait(shmb_doorbell *d, uint64_t last, uint64_t *seq)
{
    struct shmbroker_wait w;
    int r;
    memset(&w, 0, sizeof w);
    w.last_seq = last;
    w.flags = SHMBROKER_WAIT_NONBLOCK;
    if ((r = kioctl(d, SHMBROKER_IOC_WAIT, &w)) < 0)
        return r;
    d->acked = last;
    *seq = w.seq;
    return 0;
}

/* The last step of both opens: the bell joins the doorbell's epoll set, and
 * the client's socket too when given. On success the doorbell is the
 * caller's; on failure it is closed. */
static int arm(shmb_doorbell *d, int bell, uint32_t events, int sock_fd, shmb_doorbell **out)
{
    struct epoll_event ev;
    int rc = 0;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.u32 = TAG_BELL;
    if (epoll_ctl(d->ep_fd, EPOLL_CTL_ADD, bell, &ev) < 0)
        rc = -errno;
    else if (sock_fd >= 0)
        rc = shmb_doorbell_watch_socket(d, sock_fd);
    if (rc < 0) {
        shmb_doorbell_close(d);
        return rc;
    }
    *out = d;
    return 0;
}

int shmb_doorbell_open_kernel(int region_fd, int may_notify, int sock_fd, shmb_doorbell **out)
{
    uint64_t s;
    int rc;
    shmb_doorbell *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    d->page_fd = d->bell_fd = -1;
    d->kernel = 1;
    d->region_fd = region_fd;
    d->may_notify = may_notify;
    d->ep_fd = epoll_create1(EPOLL_CLOEXEC);
    if (d->ep_fd < 0) {
        rc = -errno;
        goto fail;
    }
    /* Is this a grant fd of a module with events (0.3.0)? Acknowledge the
     * sequence as it is now (OPEN set "seen" to it already). */
    if ((rc = kwait(d, 0, &s)) < 0 || (rc = kwait(d, s, &s)) < 0)
        goto fail;
    /* Level-triggered: readable while seq != seen. */
    return arm(d, region_fd, EPOLLIN, sock_fd, out);
fail:
    shmb_doorbell_close(d);
    return rc;
}

int shmb_doorbell_open(int page_fd, int bell_fd, int may_notify, int sock_fd, shmb_doorbell **out)
{
    shmb_doorbell *d = calloc(1, sizeof *d);
    int rc = 0;
    if (!d) {
        close(page_fd);
        close(bell_fd);
        return -ENOMEM;
    }
    d->page_fd = page_fd;
    d->bell_fd = bell_fd;
    d->ep_fd = -1;
    d->may_notify = may_notify;
    void *p = mmap(NULL, PAGE_BYTES, PROT_READ | (may_notify ? PROT_WRITE : 0), MAP_SHARED, page_fd, 0);
    if (p == MAP_FAILED) {
        rc = -errno;
        goto fail;
    }
    d->page = p;
    if (d->page->magic != PAGE_MAGIC || d->page->version != PAGE_VERSION) {
        rc = -EPROTO;
        goto fail;
    }
    d->ep_fd = epoll_create1(EPOLL_CLOEXEC);
    if (d->ep_fd < 0) {
        rc = -errno;
        goto fail;
    }
    /* Registered before the first read of the sequence: a notify whose
     * increment a later read misses re-arms this item (no lost wake-up). */
    return arm(d, bell_fd, EPOLLIN | EPOLLET, sock_fd, out);
fail:
    shmb_doorbell_close(d);
    return rc;
}

int shmb_doorbell_watch_socket(shmb_doorbell *d, int sock_fd)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN; /* level-triggered: pending notices keep it readable */
    ev.data.u32 = TAG_SOCK;
    if (epoll_ctl(d->ep_fd, EPOLL_CTL_ADD, sock_fd, &ev) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

void shmb_doorbell_unwatch_socket(shmb_doorbell *d, int sock_fd)
{
    (void)epoll_ctl(d->ep_fd, EPOLL_CTL_DEL, sock_fd, NULL);
}

void shmb_doorbell_close(shmb_doorbell *d)
{
    if (!d)
        return;
    if (d->page)
        munmap(d->page, PAGE_BYTES);
    if (d->ep_fd >= 0)
        close(d->ep_fd);
    if (!d->kernel) {
        close(d->bell_fd);
        close(d->page_fd);
    }
    free(d);
}

int shmb_doorbell_is_kernel(const shmb_doorbell *d)
{
    return d->kernel;
}

int shmb_doorbell_may_notify(const shmb_doorbell *d)
{
    return d->may_notify;
}

uint64_t shmb_doorbell_seq(shmb_doorbell *d)
{
    uint64_t s = d->acked;
    if (d->kernel) {
        /* Reading leaves "seen" where the last wait put it. */
        if (!d->revoked)
            (void)kwait(d, d->acked, &s);
        return s;
    }
    return __atomic_load_n(&d->page->seq, __ATOMIC_SEQ_CST);
}

int shmb_doorbell_deleted(const shmb_doorbell *d)
{
    if (d->kernel)
        return d->revoked;
    return (__atomic_load_n(&d->page->flags, __ATOMIC_SEQ_CST) & 1u) != 0;
}

int shmb_doorbell_check(shmb_doorbell *d, uint64_t after, uint64_t *seq)
{
    uint64_t s, again;
    int rc;
    if (!d->kernel) {
        *seq = shmb_doorbell_seq(d);
        return 0;
    }
    if ((rc = kwait(d, after, &s)) < 0)
        return rc;
    /* Moved: the caller learns s, so acknowledge it (the fd stops polling
     * readable until the next notify). */
    if (s != after && (rc = kwait(d, s, &again)) < 0)
        return rc;
    *seq = s;
    return 0;
}

int shmb_doorbell_notify(shmb_doorbell *d, uint64_t *seq)
{
    uint64_t one = 1, s;
    if (d->kernel) {
        /* The kernel decides: EPERM on a read-only grant without ALLOW_NOTIFY. */
        struct shmbroker_notify n;
        int r;
        memset(&n, 0, sizeof n);
        if ((r = kioctl(d, SHMBROKER_IOC_NOTIFY, &n)) < 0)
            return r;
        if (seq)
            *seq = n.seq;
        return 0;
    }
    if (!d->may_notify)
        return -EPERM;
    s = __atomic_add_fetch(&d->page->seq, 1, __ATOMIC_SEQ_CST);
    for (int attempt = 0;; attempt++) {
        if (write(d->bell_fd, &one, sizeof one) == (ssize_t)sizeof one)
            break;
        if (errno == EINTR)
            continue;
        /* The counter is never read, so only a holder jamming it at its
         * maximum gets here: reading it back to 0 does not disturb the
         * edge-triggered waiters (a read raises EPOLLOUT, not EPOLLIN). */
        if (errno == EAGAIN && attempt == 0) {
            uint64_t v;
            if (read(d->bell_fd, &v, sizeof v) < 0 && errno != EAGAIN)
                return -errno;
            continue;
        }
        return -errno;
    }
    if (seq)
        *seq = s;
    return 0;
}

int shmb_doorbell_fd(const shmb_doorbell *d)
{
    return d->ep_fd;
}

int shmb_doorbell_block(shmb_doorbell *d, int timeout_ms)
{
    struct epoll_event evs[2];
    int n, got = 0;
    do
        n = epoll_wait(d->ep_fd, evs, 2, timeout_ms < 0 ? -1 : timeout_ms);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    for (int i = 0; i < n; i++)
        got |= evs[i].data.u32 == TAG_SOCK ? 2 : 1;
    return got & 2 ? 2 : got;
}
