/*
 * A region's doorbell as the C client holds it (internal to libshmbroker;
 * docs/ARCHITECTURE.md, "Region events"): the event page mapped (read-write
 * when the lease may notify), the shared doorbell eventfd, and this lease's
 * own epoll set watching the doorbell edge-triggered and the client's data
 * socket level-triggered (so a revocation notice wakes a blocked wait too).
 */
#ifndef SHMB_EVENTS_H
#define SHMB_EVENTS_H

#include <stdint.h>

typedef struct shmb_doorbell shmb_doorbell;

/* Takes ownership of page_fd and bell_fd (closed on failure too). */
int shmb_doorbell_open(int page_fd, int bell_fd, int may_notify, int sock_fd, shmb_doorbell **out);
void shmb_doorbell_close(shmb_doorbell *d);
int shmb_doorbell_may_notify(const shmb_doorbell *d);
uint64_t shmb_doorbell_seq(const shmb_doorbell *d);
int shmb_doorbell_deleted(const shmb_doorbell *d);
/* seq += 1, ring; the new sequence in *seq. -EPERM on a wait-only lease. */
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
