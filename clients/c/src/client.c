/*
 * libshmbroker: data-plane client. See include/shmbroker.h for the API.
 *
 * Shape of the code: every request is synchronous (send one packet, read
 * packets until the one answering it). Unsolicited RevocationNotice packets
 * (request_id 0) read on the way are queued and the lease is marked revoked
 * at once; the queue is dispatched to the application's callback only in
 * shmb_process_events(), so callbacks never run inside other calls.
 *
 * Why one file of ~1000 lines: the client's state (struct shmb_client,
 * struct shmb_region, the notice queue, the receive buffer) is defined here
 * and nowhere else, and every section below works on it directly; splitting
 * the file would put those structs in a private header shared by several
 * files, so any of them could break the invariants above. The sections, in
 * order: small helpers, socket I/O, connecting (and dispatching notices),
 * regions (acquire, release, offer), region events.
 */
#define _GNU_SOURCE /* MSG_CMSG_CLOEXEC */
#define SHMB_BUILDING_LIBRARY 1

#include "shmbroker.h"
#include "proto.h"
#include "trust.h"
#include "events.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 8              /* fds accepted on one packet before MSG_CTRUNC */
#define NAME_CAP 64            /* region names are at most 63 characters */
#define SHORT_CAP 64           /* backend, revocation reason */
#define GRANT_CAP 256
#define ERR_REASON_CAP 128
#define ERR_MESSAGE_CAP 512
#define DEFAULT_TIMEOUT_MS 30000

struct shmb_region {
    shmb_client *client; /* NULL once the client is closed (detached) */
    shmb_region *prev, *next;
    void *addr;
    size_t size;
    enum shmb_mode mode;
    uint64_t lease_id;
    int fd;
    int revoked;
    shmb_doorbell *bell; /* NULL unless acquired with SHMB_ACQUIRE_EVENTS */
    char name[NAME_CAP];
    char backend[SHORT_CAP];
    char grant[GRANT_CAP];
    char revoke_reason[SHORT_CAP];
};

struct notice {
    struct notice *next;
    uint64_t lease_id;
    uint32_t grace_ms;
    char region[NAME_CAP];
    char reason[SHORT_CAP];
};

struct shmb_client {
    int fd;
    uid_t broker_uid; /* the authenticated peer: region fds must be its own */
    int broken;
    int dispatching;
    int timeout_ms;
    uint64_t next_request_id;
    shmb_region *regions;
    struct notice *q_head, *q_tail;
    int q_len;
    shmb_revocation_fn cb;
    void *cb_arg;
    char err_reason[ERR_REASON_CAP];
    char err_message[ERR_MESSAGE_CAP];
    uint8_t rx[SHMB_PROTO_MAX_PACKET];
};

/* One received packet: decoded reply (string views into client->rx) and the fds. */
typedef struct {
    shmb_pb_reply rep;
    int fds[MAX_FDS];
    int nfds;
} packet;

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */

static void close_fds(int *fds, int *nfds)
{
    for (int i = 0; i < *nfds; i++)
        close(fds[i]);
    *nfds = 0;
}

/* Copy a wire string into a C string: truncated, control bytes and NULs replaced. */
static void copy_str(char *dst, size_t cap, shmb_pb_str s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        dst[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    dst[n] = '\0';
}

static int valid_name(const char *name)
{
    size_t n = 0;
    if (!name)
        return 0;
    for (const char *p = name; *p; p++, n++) {
        char ch = *p;
        int alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (n == 0 ? !alnum : !(alnum || ch == '.' || ch == '_' || ch == '-'))
            return 0;
    }
    return n >= 1 && n <= 63;
}

static int code_to_errno(int32_t code)
{
    switch (code) {
    case 3: return EINVAL;
    case 5: return ENOENT;
    case 7: return EACCES;
    case 8: return ENOSPC;
    case 9: return EBUSY;
    case 14: return EAGAIN;
    default: return EIO;
    }
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static shmb_region *find_lease(shmb_client *c, uint64_t lease_id)
{
    for (shmb_region *r = c->regions; r; r = r->next)
        if (r->lease_id == lease_id)
            return r;
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Socket I/O                                                          */

/*
 * Receive one packet into c->rx. Returns its length (>= 1), 0 for EOF, or a
 * negative errno (-EAGAIN when non-blocking and nothing is there, -EPROTO for
 * an oversized packet or too many fds). Every fd received is either handed
 * back in fds/nfds (on success) or closed.
 */
static long recv_packet(shmb_client *c, int blocking, int *fds, int *nfds)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    } ctrl;
    struct iovec iov = {c->rx, sizeof c->rx};
    struct msghdr msg;
    ssize_t n;

    *nfds = 0;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl.buf;
    msg.msg_controllen = sizeof ctrl.buf;
    do {
        n = recvmsg(c->fd, &msg, MSG_CMSG_CLOEXEC | (blocking ? 0 : MSG_DONTWAIT));
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;

    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char *data = CMSG_DATA(cm);
        for (size_t i = 0; i < count; i++) {
            int fd;
            memcpy(&fd, data + i * sizeof(int), sizeof fd);
            if (*nfds < MAX_FDS)
                fds[(*nfds)++] = fd;
            else
                close(fd); /* cannot happen with our buffer size; stay safe */
        }
    }
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
        close_fds(fds, nfds);
        return -EPROTO;
    }
    if (n == 0) {
        /* EOF, or a zero-length packet (which no valid reply is). */
        close_fds(fds, nfds);
        return 0;
    }
    return (long)n;
}

/* Send one request packet, with `fd` attached as SCM_RIGHTS when >= 0. */
static int send_request(shmb_client *c, const shmb_pb_request *req, int fd)
{
    uint8_t buf[SHMB_PROTO_MAX_PACKET];
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctrl;
    struct iovec iov;
    struct msghdr msg;
    long len = shmb_pb_encode_request(req, buf, sizeof buf);
    ssize_t n;
    if (len < 0)
        return (int)len;
    iov.iov_base = buf;
    iov.iov_len = (size_t)len;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (fd >= 0) {
        struct cmsghdr *cm;
        memset(&ctrl, 0, sizeof ctrl);
        msg.msg_control = ctrl.buf;
        msg.msg_controllen = sizeof ctrl.buf;
        cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    }
    do {
        n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        int e = errno;
        c->broken = 1;
        return (e == EPIPE || e == ECONNRESET) ? -ECONNRESET : -e;
    }
    if (n != len) {
        c->broken = 1;
        return -EIO;
    }
    return 0;
}

static void queue_notice(shmb_client *c, const shmb_pb_reply *rep)
{
    shmb_region *r = find_lease(c, rep->u.revocation.lease_id);
    struct notice *n;
    if (!r)
        return; /* a lease we do not hold (any more): nothing to tell */
    if (!r->revoked) {
        r->revoked = 1;
        copy_str(r->revoke_reason, sizeof r->revoke_reason, rep->u.revocation.reason);
    }
    n = calloc(1, sizeof *n);
    if (!n)
        return; /* the region is still marked revoked; only the callback is lost */
    n->lease_id = rep->u.revocation.lease_id;
    n->grace_ms = rep->u.revocation.grace_ms;
    copy_str(n->region, sizeof n->region, rep->u.revocation.region);
    copy_str(n->reason, sizeof n->reason, rep->u.revocation.reason);
    if (c->q_tail)
        c->q_tail->next = n;
    else
        c->q_head = n;
    c->q_tail = n;
    c->q_len++;
}

/*
 * Handle one received packet of length len (already in c->rx). want is the
 * request id being waited for (0: none). Returns 1 if p holds the reply to
 * `want` (the caller then owns p->fds), 0 if the packet was a notice (queued),
 * or -EPROTO (client broken, fds closed).
 */
static int handle_packet(shmb_client *c, size_t len, uint64_t want, packet *p)
{
    if (shmb_pb_decode_reply(c->rx, len, &p->rep) < 0)
        goto violation;
    if (p->rep.request_id == 0) {
        if (p->rep.kind != SHMB_PB_REPLY_REVOCATION || p->nfds != 0)
            goto violation;
        queue_notice(c, &p->rep);
        return 0;
    }
    if (want == 0 || p->rep.request_id != want || p->rep.kind == SHMB_PB_REPLY_REVOCATION)
        goto violation;
    return 1;

violation:
    close_fds(p->fds, &p->nfds);
    c->broken = 1;
    return -EPROTO;
}

/* Wait for the reply to request `want`, queuing notices read on the way. */
static int wait_reply(shmb_client *c, uint64_t want, packet *p)
{
    long long deadline = c->timeout_ms >= 0 ? now_ms() + c->timeout_ms : -1;
    for (;;) {
        struct pollfd pfd = {c->fd, POLLIN, 0};
        int timeout = -1;
        if (deadline >= 0) {
            long long left = deadline - now_ms();
            timeout = left > 0 ? (left > INT_MAX ? INT_MAX : (int)left) : 0;
        }
        int pr = poll(&pfd, 1, timeout);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            c->broken = 1;
            return -errno;
        }
        if (pr == 0) {
            c->broken = 1;
            return -ETIMEDOUT;
        }
        long n = recv_packet(c, 0, p->fds, &p->nfds);
        if (n == -EAGAIN)
            continue;
        if (n <= 0) {
            c->broken = 1;
            return n == 0 ? -ECONNRESET : (int)n;
        }
        int rc = handle_packet(c, (size_t)n, want, p);
        if (rc != 0)
            return rc < 0 ? rc : 0;
    }
}

/* Send a request (with an fd when fd >= 0) and wait for its reply. */
static int transact_fd(shmb_client *c, shmb_pb_request *req, int fd, packet *p)
{
    int rc;
    if (c->broken)
        return -ENOTCONN;
    c->err_reason[0] = '\0';
    c->err_message[0] = '\0';
    req->request_id = c->next_request_id++;
    if (c->next_request_id == 0)
        c->next_request_id = 1;
    rc = send_request(c, req, fd);
    if (rc < 0)
        return rc;
    return wait_reply(c, req->request_id, p);
}

static int transact(shmb_client *c, shmb_pb_request *req, packet *p)
{
    return transact_fd(c, req, -1, p);
}

static int broker_error(shmb_client *c, const packet *p)
{
    copy_str(c->err_reason, sizeof c->err_reason, p->rep.u.error.reason);
    copy_str(c->err_message, sizeof c->err_message, p->rep.u.error.message);
    /* A rate limit is worth retrying, unlike a quota: say so. */
    if (strcmp(c->err_reason, "RATE_LIMITED") == 0)
        return -EAGAIN;
    return -code_to_errno(p->rep.u.error.code);
}

/* Tell the broker a lease is gone; returns 0 or a negative errno. */
static int release_lease(shmb_client *c, uint64_t lease_id, int revoked)
{
    shmb_pb_request req;
    packet p;
    int rc;
    memset(&req, 0, sizeof req);
    req.kind = SHMB_PB_REQ_RELEASE;
    req.u.release.lease_id = lease_id;
    rc = transact(c, &req, &p);
    if (rc < 0)
        return rc;
    if (p.nfds) {
        close_fds(p.fds, &p.nfds);
        return -EPROTO;
    }
    if (p.rep.kind == SHMB_PB_REPLY_ERROR) {
        rc = broker_error(c, &p);
        /* A revoked lease may already be gone on the broker's side. */
        if (revoked && (rc == -ENOENT || rc == -EBUSY))
            return 0;
        return rc;
    }
    if (p.rep.kind != SHMB_PB_REPLY_RELEASE)
        return -EPROTO;
    if (p.rep.u.release.lease_id != 0 && p.rep.u.release.lease_id != lease_id)
        return -EPROTO;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Connecting                                                          */

SHMB_API int shmb_socket_path(const char *runtime_dir, char *buf, size_t len)
{
    char dir[PATH_MAX];
    const char *env;
    int n;
    if (!buf || len == 0)
        return -EINVAL;
    if (runtime_dir && runtime_dir[0]) {
        n = snprintf(dir, sizeof dir, "%s", runtime_dir);
    } else if ((env = getenv("SHMBROKER_RUNTIME_DIR")) && env[0]) {
        n = snprintf(dir, sizeof dir, "%s", env);
    } else {
        /* Root's broker is the one broker of a host: never a per-user or world-writable fallback. */
        n = snprintf(dir, sizeof dir, "/run/shmbroker");
    }
    if (n < 0 || (size_t)n >= sizeof dir)
        return -ENAMETOOLONG;
    /* Strip trailing slashes (but keep "/"). */
    while (n > 1 && dir[n - 1] == '/')
        dir[--n] = '\0';
    n = snprintf(buf, len, "%s%sdata.sock", dir, dir[n - 1] == '/' ? "" : "/");
    if (n < 0 || (size_t)n >= len || (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return -ENAMETOOLONG;
    return n;
}

static int new_client(int fd, uid_t broker_uid, shmb_client **out)
{
    shmb_client *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->fd = fd;
    c->broker_uid = broker_uid;
    c->timeout_ms = DEFAULT_TIMEOUT_MS;
    c->next_request_id = 1;
    *out = c;
    return 0;
}

SHMB_API int shmb_connect(const char *socket_path, shmb_client **out)
{
    return shmb_connect_explain(socket_path, out, NULL, 0);
}

/*
 * Authenticate before sending anything (DESIGN contract, BROKER_NOT_TRUSTED):
 * the path is checked component by component first, then the connected
 * peer's SO_PEERCRED.
 */
SHMB_API int shmb_connect_explain(const char *socket_path, shmb_client **out, char *why, size_t why_len)
{
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct sockaddr_un addr;
    shmb_trust_set trust;
    uid_t peer = 0;
    int fd, rc;

    if (why && why_len)
        why[0] = '\0';
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (socket_path) {
        size_t n = strlen(socket_path);
        if (n == 0)
            return -EINVAL;
        if (n >= sizeof path)
            return -ENAMETOOLONG;
        memcpy(path, socket_path, n + 1);
    } else {
        rc = shmb_socket_path(NULL, path, sizeof path);
        if (rc < 0)
            return rc;
    }
    rc = shmb_trust_from_env(&trust, why, why_len);
    if (rc < 0)
        return rc;
    rc = shmb_trust_check_path(&trust, path, why, why_len);
    if (rc < 0)
        return rc;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path, strlen(path) + 1);

    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    do {
        rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    rc = shmb_trust_check_peer(&trust, fd, &peer, why, why_len);
    if (rc == 0)
        rc = new_client(fd, peer, out);
    if (rc < 0)
        close(fd);
    return rc;
}

SHMB_API int shmb_connect_fd(int fd, shmb_client **out)
{
    int type = 0;
    socklen_t len = sizeof type;
    if (!out || fd < 0)
        return -EINVAL;
    *out = NULL;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
        return errno == ENOTSOCK ? -EBADF : -errno;
    if (type != SOCK_SEQPACKET)
        return -EPROTOTYPE;
    {
        /* The application vouches for this socket; region fds must still come from its peer. */
        struct ucred cred;
        socklen_t clen = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0)
            return -errno;
        return new_client(fd, cred.uid, out);
    }
}

SHMB_API void shmb_client_close(shmb_client *c)
{
    if (!c)
        return;
    for (shmb_region *r = c->regions; r;) {
        shmb_region *next = r->next;
        r->client = NULL;
        r->prev = r->next = NULL;
        r = next;
    }
    while (c->q_head) {
        struct notice *n = c->q_head;
        c->q_head = n->next;
        free(n);
    }
    close(c->fd);
    free(c);
}

SHMB_API int shmb_client_fd(const shmb_client *c)
{
    return c ? c->fd : -EINVAL;
}

SHMB_API void shmb_set_timeout(shmb_client *c, int timeout_ms)
{
    if (c)
        c->timeout_ms = timeout_ms < 0 ? -1 : timeout_ms;
}

SHMB_API void shmb_set_revocation_callback(shmb_client *c, shmb_revocation_fn fn, void *arg)
{
    if (c) {
        c->cb = fn;
        c->cb_arg = arg;
    }
}

SHMB_API int shmb_events_pending(const shmb_client *c)
{
    return c ? c->q_len : 0;
}

SHMB_API const char *shmb_last_error_reason(const shmb_client *c)
{
    return c ? c->err_reason : "";
}

SHMB_API const char *shmb_last_error_message(const shmb_client *c)
{
    return c ? c->err_message : "";
}

/* Read every waiting packet without blocking: notices are queued and their
 * leases marked revoked at once; no callback runs. 0 or a negative errno. */
static int pump(shmb_client *c)
{
    int err = c->broken ? -ENOTCONN : 0;
    while (!err) {
        packet p;
        long n = recv_packet(c, 0, p.fds, &p.nfds);
        if (n == -EAGAIN)
            break;
        if (n <= 0) {
            c->broken = 1;
            err = n == 0 ? -ECONNRESET : (int)n;
            break;
        }
        int rc = handle_packet(c, (size_t)n, 0, &p);
        if (rc < 0)
            err = rc;
    }
    return err;
}

SHMB_API int shmb_process_events(shmb_client *c)
{
    int err, count = 0;
    if (!c)
        return -EINVAL;
    if (c->dispatching)
        return -EBUSY;
    err = pump(c);
    c->dispatching = 1;
    while (c->q_head) {
        struct notice *n = c->q_head;
        c->q_head = n->next;
        if (!c->q_head)
            c->q_tail = NULL;
        c->q_len--;
        shmb_region *r = find_lease(c, n->lease_id);
        if (r) {
            shmb_revocation info;
            info.lease_id = n->lease_id;
            info.region = n->region;
            info.reason = n->reason;
            info.grace_ms = n->grace_ms;
            count++;
            if (c->cb)
                c->cb(c, r, &info, c->cb_arg);
        }
        free(n);
    }
    c->dispatching = 0;
    return err ? err : count;
}

/* ------------------------------------------------------------------ */
/* Regions                                                             */

SHMB_API int shmb_acquire(shmb_client *c, const char *name, enum shmb_mode mode, shmb_region **out)
{
    return shmb_acquire_ex(c, name, mode, 0, out);
}

SHMB_API int shmb_acquire_ex(shmb_client *c, const char *name, enum shmb_mode mode, unsigned flags,
                             shmb_region **out)
{
    int want_events = (flags & SHMB_ACQUIRE_EVENTS) != 0;
    shmb_pb_request req;
    packet p;
    shmb_region *r;
    struct stat st;
    int rc, fd = -1;

    if (!c || !out)
        return -EINVAL;
    *out = NULL;
    if (!valid_name(name) || (mode != SHMB_MODE_READ_ONLY && mode != SHMB_MODE_READ_WRITE) ||
        (flags & ~(unsigned)SHMB_ACQUIRE_EVENTS))
        return -EINVAL;
    r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;

    memset(&req, 0, sizeof req);
    req.kind = SHMB_PB_REQ_ACQUIRE;
    req.u.acquire.region.ptr = name;
    req.u.acquire.region.len = strlen(name);
    req.u.acquire.mode = (int32_t)mode;
    req.u.acquire.want_events = want_events;
    rc = transact(c, &req, &p);
    if (rc < 0)
        goto fail;

    if (p.rep.kind == SHMB_PB_REPLY_ERROR) {
        rc = p.nfds ? -EPROTO : broker_error(c, &p);
        close_fds(p.fds, &p.nfds);
        goto fail;
    }
    if (p.rep.kind != SHMB_PB_REPLY_ACQUIRE) {
        close_fds(p.fds, &p.nfds);
        rc = -EPROTO;
        goto fail;
    }

    /* From here on the broker holds a lease for us: undo it on any failure. */
    r->lease_id = p.rep.u.acquire.lease_id;
    {
        uint64_t size = p.rep.u.acquire.size_bytes;
        shmb_pb_str rname = p.rep.u.acquire.region;
        /* With events, the event page and eventfd follow the region fd,
         * unless the region fd is the doorbell itself (kmod). */
        int extra = want_events && !p.rep.u.acquire.kernel_events ? 2 : 0;
        int ok = p.nfds == 1 + extra && p.rep.u.acquire.has_events == want_events &&
                 r->lease_id != 0 && size != 0 && size <= SIZE_MAX &&
                 p.rep.u.acquire.mode == (int32_t)mode &&
                 (rname.len == 0 ||
                  (rname.len == req.u.acquire.region.len && memcmp(rname.ptr, name, rname.len) == 0));
        if (ok) {
            fd = p.fds[0];
            ok = fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode) && !S_ISSOCK(st.st_mode) &&
                 !S_ISFIFO(st.st_mode) && st.st_size >= 0 && (uint64_t)st.st_size == size;
        }
        if (ok) {
            shmb_pb_str be = p.rep.u.acquire.backend;
            int memfd = be.len == 5 && memcmp(be.ptr, "memfd", 5) == 0;
            if (shmb_trust_check_region_fd(c->broker_uid, fd, memfd, c->err_message, sizeof c->err_message) < 0) {
                snprintf(c->err_reason, sizeof c->err_reason, "BROKER_NOT_TRUSTED");
                close_fds(p.fds, &p.nfds);
                rc = -EPERM;
                goto undo_lease;
            }
        }
        if (!ok) {
            close_fds(p.fds, &p.nfds);
            rc = -EPROTO;
            goto undo_lease;
        }
        r->size = (size_t)size;
    }
    if (want_events && p.rep.u.acquire.kernel_events) {
        /* kmod: the region fd is the doorbell (the doorbell borrows it). */
        rc = shmb_doorbell_open_kernel(fd, p.rep.u.acquire.may_notify, c->fd, &r->bell);
        if (rc < 0) {
            close(fd);
            goto undo_lease;
        }
    } else if (want_events) {
        /* The doorbell owns fds 1 and 2 from here, also when it fails. */
        rc = shmb_doorbell_open(p.fds[1], p.fds[2], p.rep.u.acquire.may_notify, c->fd, &r->bell);
        if (rc < 0) {
            close(fd);
            goto undo_lease;
        }
    }
    copy_str(r->backend, sizeof r->backend, p.rep.u.acquire.backend);
    copy_str(r->grant, sizeof r->grant, p.rep.u.acquire.grant);

    r->addr = mmap(NULL, r->size, mode == SHMB_MODE_READ_WRITE ? PROT_READ | PROT_WRITE : PROT_READ,
                   MAP_SHARED, fd, 0);
    if (r->addr == MAP_FAILED) {
        rc = -errno;
        r->addr = NULL;
        close(fd);
        shmb_doorbell_close(r->bell);
        goto undo_lease;
    }
    r->fd = fd;
    r->mode = mode;
    memcpy(r->name, name, req.u.acquire.region.len + 1);
    r->client = c;
    r->next = c->regions;
    if (c->regions)
        c->regions->prev = r;
    c->regions = r;
    *out = r;
    return 0;

undo_lease:
    if (r->lease_id != 0 && !c->broken) {
        /* Keep the reason this acquire failed for, not the release's. */
        char reason[ERR_REASON_CAP], message[ERR_MESSAGE_CAP];
        memcpy(reason, c->err_reason, sizeof reason);
        memcpy(message, c->err_message, sizeof message);
        (void)release_lease(c, r->lease_id, 0);
        memcpy(c->err_reason, reason, sizeof reason);
        memcpy(c->err_message, message, sizeof message);
    }
fail:
    free(r);
    return rc;
}

static void unlink_region(shmb_region *r)
{
    shmb_client *c = r->client;
    if (!c)
        return;
    if (r->prev)
        r->prev->next = r->next;
    else
        c->regions = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    r->client = NULL;
}

SHMB_API int shmb_region_offer(shmb_client *c, shmb_region *r)
{
    shmb_pb_request req;
    packet p;
    int rc;
    if (!c || !r)
        return -EINVAL;
    memset(&req, 0, sizeof req);
    req.kind = SHMB_PB_REQ_OFFER;
    req.u.offer.region.ptr = r->name;
    req.u.offer.region.len = strlen(r->name);
    req.u.offer.lease_id = r->lease_id;
    req.u.offer.mode = (int32_t)r->mode;
    rc = transact_fd(c, &req, r->fd, &p);
    if (rc < 0)
        return rc;
    if (p.nfds) {
        close_fds(p.fds, &p.nfds);
        return -EPROTO;
    }
    if (p.rep.kind == SHMB_PB_REPLY_ERROR)
        return broker_error(c, &p);
    if (p.rep.kind != SHMB_PB_REPLY_OFFER)
        return -EPROTO;
    if (!p.rep.u.offer.accepted) {
        if (!r->revoked) {
            r->revoked = 1;
            snprintf(r->revoke_reason, sizeof r->revoke_reason, "LEASE_LOST");
        }
        return -ESTALE;
    }
    if (p.rep.u.offer.lease_id != 0)
        r->lease_id = p.rep.u.offer.lease_id;
    if (r->client != c) {
        if (r->bell) {
            if (r->client)
                shmb_doorbell_unwatch_socket(r->bell, r->client->fd);
            (void)shmb_doorbell_watch_socket(r->bell, c->fd);
        }
        unlink_region(r);
        r->client = c;
        r->next = c->regions;
        if (c->regions)
            c->regions->prev = r;
        c->regions = r;
    }
    return 0;
}

SHMB_API int shmb_region_release(shmb_region *r)
{
    shmb_client *c;
    int rc = 0;
    if (!r)
        return 0;
    c = r->client;
    if (r->addr)
        munmap(r->addr, r->size);
    close(r->fd);
    shmb_doorbell_close(r->bell);
    if (c) {
        unlink_region(r);
        rc = release_lease(c, r->lease_id, r->revoked);
    }
    free(r);
    return rc;
}

SHMB_API void *shmb_region_data(const shmb_region *r)
{
    return r ? r->addr : NULL;
}

SHMB_API size_t shmb_region_size(const shmb_region *r)
{
    return r ? r->size : 0;
}

SHMB_API enum shmb_mode shmb_region_mode(const shmb_region *r)
{
    return r ? r->mode : SHMB_MODE_READ_ONLY;
}

SHMB_API uint64_t shmb_region_lease_id(const shmb_region *r)
{
    return r ? r->lease_id : 0;
}

SHMB_API const char *shmb_region_name(const shmb_region *r)
{
    return r ? r->name : "";
}

SHMB_API const char *shmb_region_backend(const shmb_region *r)
{
    return r ? r->backend : "";
}

SHMB_API const char *shmb_region_grant(const shmb_region *r)
{
    return r ? r->grant : "";
}

SHMB_API int shmb_region_fd(const shmb_region *r)
{
    return r ? r->fd : -EINVAL;
}

SHMB_API int shmb_region_revoked(const shmb_region *r)
{
    return r ? r->revoked : 0;
}

SHMB_API const char *shmb_region_revoke_reason(const shmb_region *r)
{
    return r && r->revoked ? r->revoke_reason : NULL;
}

SHMB_API const char *shmb_strerror(int err)
{
    if (err >= 0)
        return "success";
    switch (-err) {
    case EPROTO: return "broker reply breaks the data-plane protocol";
    case ENOTCONN: return "connection to the broker is broken; reconnect";
    case ECONNRESET: return "broker closed the connection";
    case EPERM: return "BROKER_NOT_TRUSTED: what answers is not the broker (owner, mode or peer uid mismatch)";
    default: return strerror(-err);
    }
}

/* ------------------------------------------------------------------ */
/* Region events (docs/ARCHITECTURE.md, "Region events")               */

SHMB_API int shmb_region_events_enabled(const shmb_region *r)
{
    return r && r->bell ? 1 : 0;
}

SHMB_API int shmb_region_may_notify(const shmb_region *r)
{
    return r && r->bell ? shmb_doorbell_may_notify(r->bell) : 0;
}

SHMB_API uint64_t shmb_region_seq(const shmb_region *r)
{
    return r && r->bell ? shmb_doorbell_seq(r->bell) : 0;
}

SHMB_API int shmb_region_notify(shmb_region *r, uint64_t *seq)
{
    if (!r)
        return -EINVAL;
    if (!r->bell)
        return -ENOTSUP;
    if (r->revoked)
        return -ESTALE;
    return shmb_doorbell_notify(r->bell, seq);
}

SHMB_API int shmb_region_event_fd(const shmb_region *r)
{
    if (!r)
        return -EINVAL;
    return r->bell ? shmb_doorbell_fd(r->bell) : -ENOTSUP;
}

/* The doorbell says the lease is gone: the broker marked the event page
 * before sending REGION_DELETED (memfd), or the kernel revoked the grant
 * (kmod, EPOLLHUP). The lease is gone already (a release then finds
 * nothing). On kmod the broker's notice, sent a grace period before the
 * kernel revocation, names the reason: read it if it is waiting. */
static void doorbell_gone(shmb_region *r)
{
    if (!shmb_doorbell_is_kernel(r->bell)) {
        r->revoked = 1;
        snprintf(r->revoke_reason, sizeof r->revoke_reason, "REGION_DELETED");
        return;
    }
    if (r->client)
        (void)pump(r->client);
    if (!r->revoked) {
        r->revoked = 1;
        snprintf(r->revoke_reason, sizeof r->revoke_reason, "GRANT_REVOKED");
    }
}

SHMB_API int shmb_region_wait(shmb_region *r, uint64_t after, int timeout_ms, uint64_t *seq)
{
    long long deadline;
    if (!r)
        return -EINVAL;
    if (!r->bell)
        return -ENOTSUP;
    deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    for (;;) {
        uint64_t s;
        int rc;
        if (!r->revoked && shmb_doorbell_deleted(r->bell))
            doorbell_gone(r);
        if (r->revoked)
            return SHMB_EVENT_REVOKED;
        rc = shmb_doorbell_check(r->bell, after, &s);
        if (rc == -ESTALE)
            continue; /* the kernel revoked the grant: the top of the loop says so */
        if (rc < 0)
            return rc;
        if (seq)
            *seq = s;
        if (s != after)
            return SHMB_EVENT_NOTIFY;
        int left = -1;
        if (deadline >= 0) {
            long long l = deadline - now_ms();
            left = l <= 0 ? 0 : l > INT_MAX ? INT_MAX : (int)l;
        }
        /* Also with no time left: a packet waiting on the data socket (a
         * revocation notice) must be seen by a zero-timeout check. */
        int got = shmb_doorbell_block(r->bell, left);
        if (got < 0)
            return got;
        if (got == 0 && left == 0)
            return SHMB_EVENT_TIMEOUT;
        /* The data socket has a packet: a revocation notice marks the lease
         * revoked here (its callback runs in shmb_process_events()). A lost
         * connection does not end the wait: the lease lives on with the
         * process, and the doorbell still works. */
        if (got == 2 && r->client && pump(r->client) < 0) {
            /* broken or closed connection: stop watching it */
            shmb_doorbell_unwatch_socket(r->bell, r->client->fd);
        }
    }
}
