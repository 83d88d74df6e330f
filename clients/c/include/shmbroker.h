/*
 * libshmbroker: C client of the shmbroker data plane.
 *
 * A process connects to the broker's data socket (RUNTIME_DIR/data.sock,
 * SOCK_SEQPACKET), acquires regions by name, and gets each one mapped into
 * its address space (MAP_SHARED, PROT_READ or PROT_READ|PROT_WRITE). After
 * that, reads and writes never involve the broker. The broker may push a
 * revocation notice for a lease at any time; the library never starts a
 * thread or installs a signal handler to deliver it: the application polls
 * shmb_client_fd() and calls shmb_process_events(), which marks the lease
 * revoked and invokes the application's callback.
 *
 * Conventions
 *  - Every function that can fail returns 0 (or a non-negative count) on
 *    success and a negative errno value on failure. errno itself is left
 *    unspecified.
 *  - A client (shmb_client) and its regions are not thread-safe: use one
 *    client from one thread at a time (or lock around every call). Separate
 *    clients are independent. Reading and writing a region's memory needs
 *    no lock from the library.
 *  - Pointers returned as `const char *` are owned by the object they came
 *    from and stay valid until that object is freed (closed / released).
 *  - Every fd the library creates is close-on-exec.
 *  - Errors that come from the broker (an ErrorReply) map to errno values:
 *      INVALID_ARGUMENT -> EINVAL, NOT_FOUND -> ENOENT,
 *      PERMISSION_DENIED -> EACCES, RESOURCE_EXHAUSTED -> ENOSPC,
 *      FAILED_PRECONDITION -> EBUSY, UNAVAILABLE -> EAGAIN,
 *      INTERNAL and anything else -> EIO; reason "RATE_LIMITED" (a
 *      RESOURCE_EXHAUSTED the caller should retry later) -> EAGAIN;
 *    the broker's reason and message stay readable through
 *    shmb_last_error_reason() / shmb_last_error_message().
 *  - A reply that breaks the protocol (does not parse, too large, a file
 *    descriptor missing or extra, a size that disagrees with the fd, a mode
 *    other than the one asked for, an unexpected request id) fails the call
 *    with -EPROTO. Every fd that came with it is closed. A packet that does
 *    not parse or answers the wrong request leaves the connection out of
 *    step, so the client is then "broken": every later request fails with
 *    -ENOTCONN (regions already mapped stay mapped and usable; release them
 *    and reconnect).
 *
 * Linux only (SCM_RIGHTS, SOCK_SEQPACKET, memfd/kmod fds). C99.
 */
#ifndef SHMBROKER_H
#define SHMBROKER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && defined(SHMB_BUILDING_LIBRARY)
#define SHMB_API __attribute__((visibility("default")))
#else
#define SHMB_API
#endif

/** Library version, "MAJOR.MINOR.PATCH"; the shared object's soname is libshmbroker.so.MAJOR. */
#define SHMB_VERSION_MAJOR 0
#define SHMB_VERSION_MINOR 1
#define SHMB_VERSION_PATCH 0

/** Access modes. The numbers are the wire values of shmbroker.v1.AccessMode. */
enum shmb_mode {
    SHMB_MODE_READ_ONLY = 1,  /**< map PROT_READ; needs any grant */
    SHMB_MODE_READ_WRITE = 2  /**< map PROT_READ|PROT_WRITE; needs a read-write grant */
};

/** A connection to the broker's data socket. Opaque. */
typedef struct shmb_client shmb_client;

/** One acquired, mapped region (a lease). Opaque. */
typedef struct shmb_region shmb_region;

/** A revocation notice, as passed to a shmb_revocation_fn. */
typedef struct shmb_revocation {
    uint64_t lease_id;   /**< the lease being taken away */
    const char *region;  /**< region name as sent by the broker */
    const char *reason;  /**< "GRANT_REVOKED", "GRANT_EXPIRED", "REGION_DELETED", ... */
    uint32_t grace_ms;   /**< time left before the broker revokes in the kernel */
} shmb_revocation;

/**
 * Called by shmb_process_events() once per revocation notice for a lease
 * this client holds. @p region is the revoked lease (already marked revoked);
 * @p notice and its strings are valid only during the call. The callback may
 * call shmb_region_release(region) (the usual thing to do: stop using the
 * memory, then release), and any other function of this library except
 * shmb_client_close() and shmb_process_events() on the same client.
 */
typedef void (*shmb_revocation_fn)(shmb_client *client, shmb_region *region,
                                   const shmb_revocation *notice, void *arg);

/* ------------------------------------------------------------------------ */
/* Connecting                                                               */

/**
 * Compose the data socket path for a runtime directory into @p buf
 * (capacity @p len, NUL-terminated). With @p runtime_dir NULL the directory
 * is discovered like the CLI does: $SHMBROKER_RUNTIME_DIR if set and
 * non-empty, else /run/shmbroker, for every uid (root's broker is the one
 * broker of a host; there is no per-user or /tmp fallback).
 *
 * @return the length of the path (excluding the NUL), or -ENAMETOOLONG if it
 *         does not fit in @p buf or in a sockaddr_un, or -EINVAL.
 */
SHMB_API int shmb_socket_path(const char *runtime_dir, char *buf, size_t len);

/**
 * Connect to the broker's data socket at @p socket_path (NULL: discover it
 * with shmb_socket_path(NULL, ...)). On success *@p out receives a new client
 * that the caller owns and frees with shmb_client_close().
 *
 * Before anything is sent the broker is authenticated: every directory on
 * the way is checked component by component without following symlinks
 * (owned by root or $SHMBROKER_BROKER_UID, writable by others only with the
 * sticky bit; the runtime directory itself not group/world-writable), the
 * socket is owned by a trusted uid, and the connected peer's SO_PEERCRED
 * uid is root or $SHMBROKER_BROKER_UID. Every region fd received later is
 * checked before it is mapped (a regular file owned by that peer, no access
 * for group/others, memfd sealed against shrink/grow/reseal).
 *
 * @return 0, or a negative errno from socket(2)/connect(2) (-ENOENT when
 *         the socket does not exist, -ECONNREFUSED when no broker listens),
 *         -EPERM when the broker is not trusted (BROKER_NOT_TRUSTED),
 *         -ENAMETOOLONG, -EINVAL (also for a malformed
 *         $SHMBROKER_BROKER_UID), -ENOMEM.
 */
SHMB_API int shmb_connect(const char *socket_path, shmb_client **out);

/**
 * shmb_connect(), and on failure a one-line explanation in @p why (capacity
 * @p why_len, may be NULL/0) naming what did not match, e.g. "/tmp/x is
 * owned by uid 1002, not by root".
 */
SHMB_API int shmb_connect_explain(const char *socket_path, shmb_client **out, char *why, size_t why_len);

/**
 * Make a client from an already connected SOCK_SEQPACKET socket @p fd (for
 * socket activation, or a socketpair in tests). The application vouches for
 * the peer; region fds must still be owned by the peer's uid, private and
 * (memfd) sealed, as with shmb_connect(). On success the client owns
 * the fd and closes it in shmb_client_close(); on failure the caller still
 * owns it.
 *
 * @return 0, -EBADF (not a socket), -EPROTOTYPE (not SOCK_SEQPACKET),
 *         -EINVAL, -ENOMEM.
 */
SHMB_API int shmb_connect_fd(int fd, shmb_client **out);

/**
 * Close the connection and free the client. Regions still acquired stay
 * mapped and remain valid memory: they become detached, and
 * shmb_region_release() on them only unmaps and frees (the broker drops the
 * connection's leases when it sees the connection close). NULL is a no-op.
 */
SHMB_API void shmb_client_close(shmb_client *client);

/**
 * The socket fd to poll for POLLIN: readable when the broker pushed a notice
 * (or closed the connection). Owned by the client; do not read from it or
 * close it. After poll() reports it readable, call shmb_process_events().
 *
 * Notices that arrive while the library waits for a reply are read and queued
 * inside the library, so the socket may not be readable although notices are
 * pending: call shmb_process_events() (cheap when nothing is pending) after
 * every shmb_acquire()/shmb_region_release() before blocking in poll() again,
 * or check shmb_events_pending().
 */
SHMB_API int shmb_client_fd(const shmb_client *client);

/**
 * Set how long a request waits for its reply (milliseconds; negative = wait
 * forever). Default 30000. A request that times out fails with -ETIMEDOUT
 * and leaves the client broken (a late reply would be out of step).
 */
SHMB_API void shmb_set_timeout(shmb_client *client, int timeout_ms);

/**
 * Set (or clear, with @p fn NULL) the callback for revocation notices.
 * Callbacks only ever run inside shmb_process_events().
 */
SHMB_API void shmb_set_revocation_callback(shmb_client *client, shmb_revocation_fn fn, void *arg);

/**
 * Read every packet waiting on the socket without blocking, then dispatch
 * every queued revocation notice: the lease is marked revoked (it already is
 * from the moment the notice was read) and the callback, if set, is invoked.
 * Notices for leases this client does not hold (any more) are dropped.
 *
 * @return the number of notices dispatched (>= 0), or a negative errno:
 *         -ECONNRESET when the broker closed the connection, -EPROTO when
 *         it sent something that breaks the protocol, -ENOTCONN when the
 *         client was already broken. Notices read before the failure are
 *         still dispatched first.
 */
SHMB_API int shmb_process_events(shmb_client *client);

/** Number of notices queued and not yet dispatched (see shmb_client_fd()). */
SHMB_API int shmb_events_pending(const shmb_client *client);

/**
 * The broker's reason ("NO_GRANT", ...) and message from the last ErrorReply
 * this client received, or "" if the last failed request did not fail with
 * one. Owned by the client; valid until its next request.
 */
SHMB_API const char *shmb_last_error_reason(const shmb_client *client);
SHMB_API const char *shmb_last_error_message(const shmb_client *client);

/* ------------------------------------------------------------------------ */
/* Regions                                                                  */

/**
 * Acquire region @p name (`[a-z0-9][a-z0-9._-]{0,62}`) with @p mode and map
 * it. On success *@p out receives a region the caller owns and frees with
 * shmb_region_release(). The mapping is MAP_SHARED of exactly the size the
 * broker announced (checked against fstat of the fd).
 *
 * @return 0, or -EINVAL (bad name or mode), -ENOENT / -EACCES / ... from the
 *         broker (see the conventions above), -EPROTO, -ETIMEDOUT,
 *         -ECONNRESET, -ENOTCONN (client broken), -ENOMEM, or an errno from
 *         mmap(2).
 */
SHMB_API int shmb_acquire(shmb_client *client, const char *name, enum shmb_mode mode,
                          shmb_region **out);

/**
 * Unmap the region, close its fd, tell the broker (ReleaseRequest, waiting
 * for the reply) and free the handle. The handle is freed whatever happens;
 * the return value only reports whether the broker confirmed. A revoked
 * lease that the broker no longer knows counts as released (0). A region
 * whose client was closed is just unmapped (0). NULL is a no-op (0).
 *
 * @return 0, or a negative errno from talking to the broker.
 */
SHMB_API int shmb_region_release(shmb_region *region);

/**
 * Offer a region this process still holds back to the broker over client
 * @p client, typically a new connection after the broker restarted (the old
 * client returned -ECONNRESET; close it, which detaches its regions, connect
 * again, and offer each region). The region's fd travels with the
 * OfferRequest; on the memfd backend it also brings back region memory the
 * restarted broker had lost. On success the region belongs to @p client from
 * then on (its notices arrive there; shmb_region_release() talks to it) and
 * keeps its mapping. The broker accepts only a lease it still has on record
 * for this very process, region and mode.
 *
 * Reconnecting right after the old connection dropped can still reach the
 * dying broker's listening socket (a killed process closes its fds one by
 * one): treat -ECONNRESET from the offer like a failed connect, and retry
 * with a new client after a short wait.
 *
 * @return 0; -ESTALE if the broker refused (the lease was revoked or the
 *         region deleted meanwhile: the region is marked revoked with reason
 *         "LEASE_LOST" and stays where it was; release it); or the errors of
 *         any request (-EPROTO, -ETIMEDOUT, -ECONNRESET, -ENOTCONN, broker
 *         errors).
 */
SHMB_API int shmb_region_offer(shmb_client *client, shmb_region *region);

/** Start of the mapping. Writable only for SHMB_MODE_READ_WRITE. */
SHMB_API void *shmb_region_data(const shmb_region *region);

/** Size of the mapping in bytes (the region's size). */
SHMB_API size_t shmb_region_size(const shmb_region *region);

/** Mode the region was acquired (and mapped) with. */
SHMB_API enum shmb_mode shmb_region_mode(const shmb_region *region);

/** Broker's lease id for this acquisition. */
SHMB_API uint64_t shmb_region_lease_id(const shmb_region *region);

/** Region name. */
SHMB_API const char *shmb_region_name(const shmb_region *region);

/** Backend that holds the region, "memfd" or "kmod" (as the broker said). */
SHMB_API const char *shmb_region_backend(const shmb_region *region);

/** Grant that allowed the acquisition, "" when owner or admin. */
SHMB_API const char *shmb_region_grant(const shmb_region *region);

/**
 * The region fd, owned by the region (closed by shmb_region_release()).
 * Kept open for fstat/poll (a kmod grant fd reports POLLHUP once revoked).
 */
SHMB_API int shmb_region_fd(const shmb_region *region);

/**
 * 1 once a revocation notice for this lease was read (stop touching the
 * memory and release it), else 0.
 */
SHMB_API int shmb_region_revoked(const shmb_region *region);

/** Reason of the revocation notice, or NULL if not revoked. */
SHMB_API const char *shmb_region_revoke_reason(const shmb_region *region);

/* ------------------------------------------------------------------------ */
/* Region events (docs/ARCHITECTURE.md, "Region events")                    */
/*
 * A region's holders can notify it and wait for notifies without spinning
 * and without the broker. Each region has a 64-bit sequence every notify
 * increments. On the kmod backend the region fd itself is the doorbell: the
 * kernel module keeps the sequence, notify and wait are ioctls on the region
 * fd (SHMBROKER_IOC_NOTIFY / SHMBROKER_IOC_WAIT), and the fd polls readable
 * after a notify and hung up (POLLHUP) once the lease is revoked. On memfd
 * the broker hands each lease that asks for events the region's event page
 * (holding the sequence) and its doorbell (an eventfd every holder shares)
 * with the acquire reply. The calls below are the same on both.
 * Notifies are broadcast (every waiter of the region, in every process,
 * wakes) and coalesced (N notifies before a waiter runs may wake it once;
 * the sequence tells how many). A lease acquired read-write may notify; a
 * read-only one may only wait, unless its grant was made with allow_notify
 * (on kmod the kernel enforces this on the region fd itself).
 *
 * No lost wake-up: read shmb_region_seq() *before* you look at the shared
 * memory, and pass that value to shmb_region_wait(): it returns at once if
 * anyone notified since.
 */

/** shmb_acquire_ex() flag: also take the region's doorbell. */
#define SHMB_ACQUIRE_EVENTS 1u

/** What shmb_region_wait() saw. */
enum shmb_event {
    SHMB_EVENT_TIMEOUT = 0,  /**< the timeout passed, the sequence did not move */
    SHMB_EVENT_NOTIFY = 1,   /**< the sequence moved past `after` */
    SHMB_EVENT_REVOKED = 2   /**< the lease was revoked or the region deleted: stop, release */
};

/**
 * shmb_acquire() with @p flags (0 or SHMB_ACQUIRE_EVENTS).
 * @return as shmb_acquire(); -EINVAL for unknown flags.
 */
SHMB_API int shmb_acquire_ex(shmb_client *client, const char *name, enum shmb_mode mode, unsigned flags,
                             shmb_region **out);

/** 1 if the region was acquired with SHMB_ACQUIRE_EVENTS, else 0. */
SHMB_API int shmb_region_events_enabled(const shmb_region *region);

/** 1 if this lease may notify (acquired read-write with events, or read-only on an allow_notify grant), else 0. */
SHMB_API int shmb_region_may_notify(const shmb_region *region);

/** The region's sequence: how many notifies so far (0 without events). */
SHMB_API uint64_t shmb_region_seq(const shmb_region *region);

/**
 * Increment the region's sequence and wake every waiter. Never talks to the
 * broker: one ioctl(2) on the region fd (kmod), or one atomic add and one
 * write(2) (memfd). The new sequence goes to *@p seq (may be NULL).
 * @return 0, -EPERM (wait-only lease; on kmod the kernel's answer),
 *         -ENOTSUP (acquired without events), -ESTALE (lease revoked), or an
 *         errno from ioctl(2) / write(2).
 */
SHMB_API int shmb_region_notify(shmb_region *region, uint64_t *seq);

/**
 * Wait until the region's sequence differs from @p after, the lease is
 * revoked (a revocation notice read from the data socket, which this call
 * watches too; the revocation callback runs later, in
 * shmb_process_events()), or @p timeout_ms passes (negative: forever; 0:
 * just check). The sequence seen goes to *@p seq (may be NULL).
 * @return SHMB_EVENT_NOTIFY, SHMB_EVENT_TIMEOUT, SHMB_EVENT_REVOKED, or
 *         -ENOTSUP (acquired without events), or an errno from epoll_wait(2).
 */
SHMB_API int shmb_region_wait(shmb_region *region, uint64_t after, int timeout_ms, uint64_t *seq);

/**
 * A pollable fd for the caller's own event loop (an epoll fd owned by the
 * region, closed by shmb_region_release()): readable after a notify, or
 * when the data socket has a packet. When it is readable, call
 * shmb_region_wait(region, last_seq, 0, &seq). On kmod the epoll set holds
 * the region fd itself, which may also be polled directly (shmb_region_fd():
 * readable while a notify is not yet acknowledged by a shmb_region_wait(),
 * POLLHUP once revoked); this fd adds the data socket, so a revocation
 * notice wakes the loop a grace period before the kernel revokes.
 * @return the fd, or -ENOTSUP (acquired without events).
 */
SHMB_API int shmb_region_event_fd(const shmb_region *region);

/** Human-readable text for a negative return value of this library. */
SHMB_API const char *shmb_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* SHMBROKER_H */
