/*
 * A region's doorbell as the C client holds it (internal to libshmbroker;
 * docs/ARCHITECTURE.md, "Region events"), and this lease's own epoll set
 * watching it and the client's data socket level-triggered (so a revocation
 * notice wakes a blocked wait too). The doorbell is either
 *  - the event page mapped (read-write when the lease may notify) and the
 *    shared doorbell eventfd, watched edge-triggered (memfd backend), or
 *  - the region fd itself (kmod backend: NOTIFY/WAIT ioctls), watched
 *    level-triggered: readable while the region's sequence differs from the
 *    last one a wait acknowledged, EPOLLHUP once the grant is revoked.
 */
#ifndef SHMB_EVENTS_H
#define SHMB_EVENTS_H

#include <stdint.h>

typedef struct shmb_doorbell shmb_doorbell;

/* Takes ownership of page_fd and bell_fd (closed on failure too). */
int shmb_doorbell_open(int page_fd, int bell_fd, int may_notify, int sock_fd, shmb_doorbell **out);
/* Kernel mode: region_fd is the doorbell; borrowed (the region closes it,
 * after the doorbell or not). -ENOTTY/-EINVAL from a module without events. */
int shmb_doorbell_open_kernel(int region_fd, int may_notify, int sock_fd, shmb_doorbell **out);
void shmb_doorbell_close(shmb_doorbell *d);
int shmb_doorbell_may_notify(const shmb_doorbell *d);
/* 1 when the region fd is the doorbell (kmod), 0 for the event page. */
int shmb_doorbell_is_kernel(const shmb_doorbell *d);
/* The sequence now (kernel mode: the last one known once revoked). */
uint64_t shmb_doorbell_seq(shmb_doorbell *d);
/* The sequence for a wait that last saw `after`; in kernel mode this also
 * acknowledges `after` (then the sequence returned, if it moved) to the
 * kernel, so the fd polls readable exactly when a notify is not yet seen.
 * -ESTALE once the kernel revoked the grant. */
int shmb_doorbell_check(shmb_doorbell *d, uint64_t after, uint64_t *seq);
/* Event page: the broker marked the region deleted. Kernel: the grant is gone. */
int shmb_doorbell_deleted(const shmb_doorbell *d);
/* seq += 1, ring; the new sequence in *seq. -EPERM on a wait-only lease
 * (kernel mode: the kernel's answer), -ESTALE once revoked (kernel mode). */
int shmb_doorbell_notify(shmb_doorbell *d, uint64_t *seq);
/* Watch (or stop watching) a client's data socket in this lease's epoll set. */
int shmb_doorbell_watch_socket(shmb_doorbell *d, int sock_fd);
void shmb_doorbell_unwatch_socket(shmb_doorbell *d, int sock_fd);
/* Pollable fd: readable after a ring or when the data socket has a packet. */
int shmb_doorbell_fd(const shmb_doorbell *d);
/* Sleep until ringing (returns 1), the data socket is readable (2), or the
 * timeout (0; negative timeout_ms = forever). Negative errno on failure. */
int shmb_doorbell_block(shmb_doorbell *d, int timeout_ms);

#endif
