/*
 * libshmbroker against a fake broker: the test holds the other end of a
 * SOCK_SEQPACKET socketpair and scripts the replies (well-formed, malformed,
 * truncated, oversized, with missing/extra/wrong fds, notices interleaved).
 * Replies are queued before the client call that reads them (requests are
 * answered in order, so the ids are known); scenarios where the client must
 * talk to the peer from inside a callback use a responder thread instead.
 * Every test is checked for fd leaks; `make valgrind` runs it under valgrind.
 * One file (~1100 lines) on purpose: one fake peer and one scenario per
 * function, each independent; the file is a list, read one test at a time.
 */
#define _GNU_SOURCE /* memfd_create */
#include "shmbroker.h"
#include "proto.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Fake peer helpers                                                   */

typedef struct {
    shmb_client *c;
    int peer; /* the broker's end */
} pair;

static pair open_pair(void)
{
    int sv[2];
    pair p = {NULL, -1};
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        perror("socketpair");
        exit(2);
    }
    if (shmb_connect_fd(sv[0], &p.c) != 0) {
        fprintf(stderr, "shmb_connect_fd failed\n");
        exit(2);
    }
    shmb_set_timeout(p.c, 2000);
    p.peer = sv[1];
    return p;
}

static void close_pair(pair *p)
{
    shmb_client_close(p->c);
    if (p->peer >= 0)
        close(p->peer);
    p->c = NULL;
    p->peer = -1;
}

static shmb_pb_str S(const char *s)
{
    shmb_pb_str r;
    r.ptr = s;
    r.len = strlen(s);
    return r;
}

static int send_raw(int sock, const void *buf, size_t len, const int *fds, int nfds)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * 16)];
    } ctrl;
    struct iovec iov = {(void *)(uintptr_t)buf, len};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds > 0) {
        memset(&ctrl, 0, sizeof ctrl);
        msg.msg_control = ctrl.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
    }
    return sendmsg(sock, &msg, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

static void send_reply(int sock, const shmb_pb_reply *r, const int *fds, int nfds)
{
    uint8_t buf[SHMB_PROTO_MAX_PACKET];
    long n = shmb_pb_encode_reply(r, buf, sizeof buf);
    CHECK(n >= 0);
    CHECK_EQ(send_raw(sock, buf, (size_t)n, fds, nfds), 0);
}

static shmb_pb_reply acquire_reply(uint64_t id, uint64_t lease, const char *name, uint64_t size, int mode)
{
    shmb_pb_reply r;
    memset(&r, 0, sizeof r);
    r.request_id = id;
    r.kind = SHMB_PB_REPLY_ACQUIRE;
    r.u.acquire.lease_id = lease;
    r.u.acquire.region = S(name);
    r.u.acquire.size_bytes = size;
    r.u.acquire.mode = mode;
    r.u.acquire.backend = S("memfd");
    r.u.acquire.grant = S("regions/x/grants/g");
    return r;
}

static shmb_pb_reply release_reply(uint64_t id, uint64_t lease)
{
    shmb_pb_reply r;
    memset(&r, 0, sizeof r);
    r.request_id = id;
    r.kind = SHMB_PB_REPLY_RELEASE;
    r.u.release.lease_id = lease;
    return r;
}

static shmb_pb_reply error_reply(uint64_t id, int code, const char *reason)
{
    shmb_pb_reply r;
    memset(&r, 0, sizeof r);
    r.request_id = id;
    r.kind = SHMB_PB_REPLY_ERROR;
    r.u.error.code = code;
    r.u.error.reason = S(reason);
    r.u.error.message = S("from the fake peer");
    return r;
}

static shmb_pb_reply notice(uint64_t lease, const char *reason, uint32_t grace)
{
    shmb_pb_reply r;
    memset(&r, 0, sizeof r);
    r.kind = SHMB_PB_REPLY_REVOCATION;
    r.u.revocation.lease_id = lease;
    r.u.revocation.region = S("x");
    r.u.revocation.reason = S(reason);
    r.u.revocation.grace_ms = grace;
    return r;
}

/* Read one request from the peer end (non-blocking: it must be there). */
static int recv_request(int sock, shmb_pb_request *q, char *region, size_t cap)
{
    static uint8_t buf[SHMB_PROTO_MAX_PACKET];
    ssize_t n = recv(sock, buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0)
        return -1;
    if (shmb_pb_decode_request(buf, (size_t)n, q) < 0)
        return -1;
    if (region) {
        shmb_pb_str s = q->kind == SHMB_PB_REQ_ACQUIRE ? q->u.acquire.region : q->u.offer.region;
        size_t l = s.len < cap - 1 ? s.len : cap - 1;
        memcpy(region, s.ptr, l);
        region[l] = '\0';
    }
    return 0;
}

static int no_request_pending(int sock)
{
    uint8_t b[16];
    return recv(sock, b, sizeof b, MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

/* A region fd as the broker makes one: private inode, sealed size (the client checks both). */
static int make_memfd(size_t size)
{
    int fd = memfd_create("fake-region", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0 || fchmod(fd, 0600) < 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        perror("memfd");
        exit(2);
    }
    return fd;
}

/* Re-open an fd read-only, as the broker hands out read-only grants. */
static int reopen_ro(int fd)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return open(path, O_RDONLY | O_CLOEXEC);
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */

static void test_acquire_rw_write_release(void)
{
    pair p = open_pair();
    int mfd = make_memfd(8192);
    shmb_pb_reply r = acquire_reply(1, 7, "frames", 8192, 2);
    send_reply(p.peer, &r, &mfd, 1);

    shmb_region *reg = NULL;
    CHECK_EQ(shmb_acquire(p.c, "frames", SHMB_MODE_READ_WRITE, &reg), 0);
    CHECK(reg != NULL);
    if (reg) {
        CHECK_EQ(shmb_region_size(reg), 8192);
        CHECK_EQ(shmb_region_mode(reg), SHMB_MODE_READ_WRITE);
        CHECK(shmb_region_lease_id(reg) == 7);
        CHECK(strcmp(shmb_region_name(reg), "frames") == 0);
        CHECK(strcmp(shmb_region_backend(reg), "memfd") == 0);
        CHECK(strcmp(shmb_region_grant(reg), "regions/x/grants/g") == 0);
        CHECK_EQ(shmb_region_revoked(reg), 0);
        CHECK(shmb_region_revoke_reason(reg) == NULL);
        memcpy((char *)shmb_region_data(reg) + 4096, "hello", 5);
        /* The peer sees the write through its own fd. */
        char got[6] = {0};
        CHECK_EQ(pread(mfd, got, 5, 4096), 5);
        CHECK(strcmp(got, "hello") == 0);
    }
    shmb_pb_request q;
    char name[80];
    CHECK_EQ(recv_request(p.peer, &q, name, sizeof name), 0);
    CHECK(q.request_id == 1 && q.kind == SHMB_PB_REQ_ACQUIRE && q.u.acquire.mode == 2);
    CHECK(strcmp(name, "frames") == 0);

    r = release_reply(2, 7);
    send_reply(p.peer, &r, NULL, 0);
    CHECK_EQ(shmb_region_release(reg), 0);
    CHECK_EQ(recv_request(p.peer, &q, NULL, 0), 0);
    CHECK(q.request_id == 2 && q.kind == SHMB_PB_REQ_RELEASE && q.u.release.lease_id == 7);
    close(mfd);
    close_pair(&p);
}

static void test_acquire_ro_cannot_write(void)
{
    pair p = open_pair();
    int mfd = make_memfd(4096);
    CHECK_EQ(pwrite(mfd, "ro!", 3, 0), 3);
    int ro = reopen_ro(mfd);
    shmb_pb_reply r = acquire_reply(1, 3, "ro", 4096, 1);
    send_reply(p.peer, &r, &ro, 1);
    close(ro);

    shmb_region *reg = NULL;
    CHECK_EQ(shmb_acquire(p.c, "ro", SHMB_MODE_READ_ONLY, &reg), 0);
    if (reg) {
        CHECK(memcmp(shmb_region_data(reg), "ro!", 3) == 0);
        /* The mapping is PROT_READ and the fd O_RDONLY: no way to write. */
        CHECK_EQ(mprotect(shmb_region_data(reg), 4096, PROT_READ | PROT_WRITE), -1);
        CHECK_EQ(errno, EACCES);
        void *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, shmb_region_fd(reg), 0);
        CHECK(w == MAP_FAILED && errno == EACCES);
    }
    r = release_reply(2, 3);
    send_reply(p.peer, &r, NULL, 0);
    CHECK_EQ(shmb_region_release(reg), 0);
    close(mfd);
    close_pair(&p);
}

/* A region fd that is not what the broker makes is refused before it is mapped. */
static void test_region_fd_checks(void)
{
    for (int variant = 0; variant < 2; variant++) {
        pair p = open_pair();
        int mfd;
        if (variant == 0) { /* private but unsealed: it could shrink under the mapping */
            mfd = memfd_create("unsealed", MFD_CLOEXEC);
            CHECK(mfd >= 0 && ftruncate(mfd, 4096) == 0 && fchmod(mfd, 0600) == 0);
        } else { /* sealed but open to everybody through /proc/PID/fd */
            mfd = memfd_create("open", MFD_CLOEXEC | MFD_ALLOW_SEALING);
            CHECK(mfd >= 0 && ftruncate(mfd, 4096) == 0 && fchmod(mfd, 0666) == 0);
            CHECK_EQ(fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), 0);
        }
        shmb_pb_reply r = acquire_reply(1, 9, "frames", 4096, 2);
        send_reply(p.peer, &r, &mfd, 1);
        r = release_reply(2, 9); /* the client gives the lease back at once */
        send_reply(p.peer, &r, NULL, 0);
        shmb_region *reg = NULL;
        CHECK_EQ(shmb_acquire(p.c, "frames", SHMB_MODE_READ_WRITE, &reg), -EPERM);
        CHECK(reg == NULL);
        CHECK(strcmp(shmb_last_error_reason(p.c), "BROKER_NOT_TRUSTED") == 0);
        CHECK(strstr(shmb_last_error_message(p.c), variant == 0 ? "not sealed" : "group or others") != NULL);
        close(mfd);
        close_pair(&p);
    }
}

static void test_broker_error(void)
{
    pair p = open_pair();
    shmb_pb_reply r = error_reply(1, 7, "NO_GRANT");
    send_reply(p.peer, &r, NULL, 0);
    shmb_region *reg = (shmb_region *)1;
    CHECK_EQ(shmb_acquire(p.c, "frames", SHMB_MODE_READ_WRITE, &reg), -EACCES);
    CHECK(reg == NULL);
    CHECK(strcmp(shmb_last_error_reason(p.c), "NO_GRANT") == 0);
    CHECK(strcmp(shmb_last_error_message(p.c), "from the fake peer") == 0);

    /* Every code maps, and the client stays usable. */
    static const struct { int code; int err; } map[] = {
        {3, EINVAL}, {5, ENOENT}, {8, ENOSPC}, {9, EBUSY}, {13, EIO}, {14, EAGAIN}, {99, EIO}, {-4, EIO},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        r = error_reply(2 + i, map[i].code, "X");
        send_reply(p.peer, &r, NULL, 0);
        CHECK_EQ(shmb_acquire(p.c, "frames", SHMB_MODE_READ_ONLY, &reg), -map[i].err);
    }
    r = error_reply(10, 8, "RATE_LIMITED");
    send_reply(p.peer, &r, NULL, 0);
    CHECK_EQ(shmb_acquire(p.c, "frames", SHMB_MODE_READ_ONLY, &reg), -EAGAIN);
    close_pair(&p);
}

static void test_invalid_arguments(void)
{
    pair p = open_pair();
    shmb_region *reg;
    const char *bad[] = {"", "A", "-a", ".a", "a/b", "a b", "aé",
                         "a123456789012345678901234567890123456789012345678901234567890123"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ(shmb_acquire(p.c, bad[i], SHMB_MODE_READ_ONLY, &reg), -EINVAL);
    CHECK_EQ(shmb_acquire(p.c, NULL, SHMB_MODE_READ_ONLY, &reg), -EINVAL);
    CHECK_EQ(shmb_acquire(p.c, "ok", (enum shmb_mode)0, &reg), -EINVAL);
    CHECK_EQ(shmb_acquire(p.c, "ok", (enum shmb_mode)3, &reg), -EINVAL);
    CHECK_EQ(shmb_acquire(NULL, "ok", SHMB_MODE_READ_ONLY, &reg), -EINVAL);
    CHECK_EQ(shmb_acquire(p.c, "ok", SHMB_MODE_READ_ONLY, NULL), -EINVAL);
    CHECK(no_request_pending(p.peer)); /* nothing was sent */
    /* 63 characters is the longest valid name. */
    shmb_pb_reply r = error_reply(1, 5, "NOT_FOUND");
    send_reply(p.peer, &r, NULL, 0);
    CHECK_EQ(shmb_acquire(p.c, "a12345678901234567890123456789012345678901234567890123456789012",
                          SHMB_MODE_READ_ONLY, &reg), -ENOENT);
    CHECK_EQ(shmb_region_release(NULL), 0);
    CHECK(shmb_region_data(NULL) == NULL);
    CHECK_EQ(shmb_process_events(NULL), -EINVAL);
    shmb_client_close(NULL);
    close_pair(&p);
}

/* An AcquireReply that is well-formed but wrong: -EPROTO, fds closed, and the
 * client gives the lease back (ReleaseRequest) and stays usable. */
static void bad_acquire_case(const char *what, shmb_pb_reply r, const int *fds, int nfds, int expect_release)
{
    pair p = open_pair();
    shmb_region *reg = NULL;
    send_reply(p.peer, &r, fds, nfds);
    if (expect_release) {
        shmb_pb_reply rr = release_reply(2, r.u.acquire.lease_id);
        send_reply(p.peer, &rr, NULL, 0);
    }
    int rc = shmb_acquire(p.c, "frames", SHMB_MODE_READ_WRITE, &reg);
    if (rc != -EPROTO)
        fprintf(stderr, "case %s: rc %d\n", what, rc);
    CHECK_EQ(rc, -EPROTO);
    CHECK(reg == NULL);
    shmb_pb_request q;
    CHECK_EQ(recv_request(p.peer, &q, NULL, 0), 0); /* the acquire */
    if (expect_release) {
        CHECK_EQ(recv_request(p.peer, &q, NULL, 0), 0);
        CHECK(q.kind == SHMB_PB_REQ_RELEASE && q.u.release.lease_id == r.u.acquire.lease_id);
    }
    CHECK(no_request_pending(p.peer));
    /* Still usable. */
    shmb_pb_reply e = error_reply(expect_release ? 3 : 2, 5, "NOT_FOUND");
    send_reply(p.peer, &e, NULL, 0);
    CHECK_EQ(shmb_acquire(p.c, "frames", SHMB_MODE_READ_WRITE, &reg), -ENOENT);
    close_pair(&p);
}

static void test_bad_acquire_replies(void)
{
    int m1 = make_memfd(8192), m2 = make_memfd(8192), pipefd[2];
    int two[2] = {m1, m2};
    CHECK_EQ(pipe(pipefd), 0);
    int dir = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    bad_acquire_case("missing fd", acquire_reply(1, 7, "frames", 8192, 2), NULL, 0, 1);
    bad_acquire_case("two fds", acquire_reply(1, 7, "frames", 8192, 2), two, 2, 1);
    bad_acquire_case("size smaller than fd", acquire_reply(1, 7, "frames", 4096, 2), &m1, 1, 1);
    bad_acquire_case("size larger than fd", acquire_reply(1, 7, "frames", 1 << 20, 2), &m1, 1, 1);
    bad_acquire_case("size 0", acquire_reply(1, 7, "frames", 0, 2), &m1, 1, 1);
    bad_acquire_case("size 2^63", acquire_reply(1, 7, "frames", 1ULL << 63, 2), &m1, 1, 1);
    bad_acquire_case("size max", acquire_reply(1, 7, "frames", UINT64_MAX, 2), &m1, 1, 1);
    bad_acquire_case("mode ro for rw", acquire_reply(1, 7, "frames", 8192, 1), &m1, 1, 1);
    bad_acquire_case("mode 0", acquire_reply(1, 7, "frames", 8192, 0), &m1, 1, 1);
    bad_acquire_case("mode 77", acquire_reply(1, 7, "frames", 8192, 77), &m1, 1, 1);
    bad_acquire_case("other region", acquire_reply(1, 7, "other", 8192, 2), &m1, 1, 1);
    bad_acquire_case("pipe fd", acquire_reply(1, 7, "frames", 4096, 2), &pipefd[0], 1, 1);
    bad_acquire_case("directory fd", acquire_reply(1, 7, "frames", 4096, 2), &dir, 1, 1);
    /* No lease id: nothing to give back. */
    bad_acquire_case("lease 0", acquire_reply(1, 0, "frames", 8192, 2), &m1, 1, 0);
    /* Wrong reply kind for the request, with and without fds. */
    bad_acquire_case("release reply", release_reply(1, 7), NULL, 0, 0);
    bad_acquire_case("release reply with fd", release_reply(1, 7), &m1, 1, 0);
    bad_acquire_case("error with fd", error_reply(1, 7, "NO_GRANT"), &m1, 1, 0);
    shmb_pb_reply none;
    memset(&none, 0, sizeof none);
    none.request_id = 1;
    bad_acquire_case("empty reply", none, &m1, 1, 0);
    none.kind = SHMB_PB_REPLY_OFFER;
    bad_acquire_case("offer reply", none, NULL, 0, 0);

    /* A rw mapping of an O_RDONLY fd fails in mmap: EACCES, lease given back. */
    {
        pair p = open_pair();
        int ro = reopen_ro(m1);
        shmb_pb_reply r = acquire_reply(1, 8, "frames", 8192, 2);
        send_reply(p.peer, &r, &ro, 1);
        close(ro);
        r = release_reply(2, 8);
        send_reply(p.peer, &r, NULL, 0);
        shmb_region *reg = NULL;
        CHECK_EQ(shmb_acquire(p.c, "frames", SHMB_MODE_READ_WRITE, &reg), -EACCES);
        close_pair(&p);
    }
    close(m1);
    close(m2);
    close(pipefd[0]);
    close(pipefd[1]);
    close(dir);
}

/* Packets that leave the connection out of step break the client. */
static void broken_case(const char *what, const void *bytes, size_t len, const int *fds, int nfds, int expect)
{
    pair p = open_pair();
    shmb_region *reg = NULL;
    CHECK_EQ(send_raw(p.peer, bytes, len, fds, nfds), 0);
    int rc = shmb_acquire(p.c, "frames", SHMB_MODE_READ_ONLY, &reg);
    if (rc != expect)
        fprintf(stderr, "case %s: rc %d, expected %d\n", what, rc, expect);
    CHECK_EQ(rc, expect);
    CHECK(reg == NULL);
    CHECK_EQ(shmb_acquire(p.c, "frames", SHMB_MODE_READ_ONLY, &reg), -ENOTCONN);
    CHECK_EQ(shmb_process_events(p.c), -ENOTCONN);
    close_pair(&p);
}

static void test_malformed_packets(void)
{
    int m = make_memfd(4096);
    int fds[3] = {m, m, m};
    static const uint8_t garbage[] = {0xff, 0xff, 0xff};
    static const uint8_t group[] = {0x08, 0x01, 0x13};
    static const uint8_t cut[] = {0x08, 0x01, 0x12, 0x10, 0x08};
    static uint8_t big[5000];
    memset(big, 0, sizeof big);
    big[0] = 0x08; /* request_id 1, then padding as an unknown field would be too large anyway */
    big[1] = 0x01;

    broken_case("garbage", garbage, sizeof garbage, NULL, 0, -EPROTO);
    broken_case("garbage with fds", garbage, sizeof garbage, fds, 3, -EPROTO);
    broken_case("group", group, sizeof group, fds, 1, -EPROTO);
    broken_case("truncated", cut, sizeof cut, fds, 1, -EPROTO);
    broken_case("oversized", big, sizeof big, fds, 2, -EPROTO);
    broken_case("zero-length packet", garbage, 0, NULL, 0, -ECONNRESET);

    uint8_t buf[256];
    shmb_pb_reply r = acquire_reply(5, 7, "frames", 4096, 1);
    long n = shmb_pb_encode_reply(&r, buf, sizeof buf);
    broken_case("wrong request id", buf, (size_t)n, fds, 1, -EPROTO);
    r = acquire_reply(0, 7, "frames", 4096, 1);
    n = shmb_pb_encode_reply(&r, buf, sizeof buf);
    broken_case("reply with id 0", buf, (size_t)n, fds, 1, -EPROTO);
    r = notice(7, "GRANT_REVOKED", 10);
    r.request_id = 1;
    n = shmb_pb_encode_reply(&r, buf, sizeof buf);
    broken_case("notice as reply", buf, (size_t)n, NULL, 0, -EPROTO);
    r.request_id = 0;
    n = shmb_pb_encode_reply(&r, buf, sizeof buf);
    broken_case("notice with fd", buf, (size_t)n, fds, 1, -EPROTO);

    /* Every prefix of a valid acquire reply, each with an fd attached. */
    r = acquire_reply(1, 7, "frames", 4096, 1);
    n = shmb_pb_encode_reply(&r, buf, sizeof buf);
    for (long len = 1; len < n; len++) {
        pair p = open_pair();
        shmb_region *reg = NULL;
        CHECK_EQ(send_raw(p.peer, buf, (size_t)len, &m, 1), 0);
        /* Give back any lease the prefix happened to carry. */
        shmb_pb_reply rr = release_reply(2, 7);
        send_reply(p.peer, &rr, NULL, 0);
        int rc = shmb_acquire(p.c, "frames", SHMB_MODE_READ_ONLY, &reg);
        CHECK(rc == -EPROTO);
        CHECK(reg == NULL);
        close_pair(&p);
    }
    close(m);
}

/* Too many fds for the library's control buffer: MSG_CTRUNC, all closed. */
static void test_too_many_fds(void)
{
    int m = make_memfd(4096);
    int fds[16];
    for (int i = 0; i < 16; i++)
        fds[i] = m;
    uint8_t buf[64];
    shmb_pb_reply r = acquire_reply(1, 7, "frames", 4096, 1);
    long n = shmb_pb_encode_reply(&r, buf, sizeof buf);
    broken_case("16 fds", buf, (size_t)n, fds, 16, -EPROTO);
    close(m);
}

/* Notices interleaved with replies are queued, then dispatched. */
static int cb_calls;
static uint64_t cb_lease;
static char cb_reason[64];
static uint32_t cb_grace;
static shmb_region *cb_region;

static void record_cb(shmb_client *c, shmb_region *r, const shmb_revocation *n, void *arg)
{
    (void)c;
    CHECK(arg == (void *)&cb_calls);
    cb_calls++;
    cb_lease = n->lease_id;
    cb_grace = n->grace_ms;
    snprintf(cb_reason, sizeof cb_reason, "%s", n->reason);
    cb_region = r;
    CHECK(shmb_region_revoked(r));
}

static void test_notice_between_request_and_reply(void)
{
    pair p = open_pair();
    int m1 = make_memfd(4096), m2 = make_memfd(4096);
    shmb_region *a = NULL, *b = NULL;
    shmb_pb_reply r = acquire_reply(1, 10, "aaa", 4096, 2);
    send_reply(p.peer, &r, &m1, 1);
    CHECK_EQ(shmb_acquire(p.c, "aaa", SHMB_MODE_READ_WRITE, &a), 0);

    cb_calls = 0;
    shmb_set_revocation_callback(p.c, record_cb, &cb_calls);
    /* notice for a, notice for an unknown lease, then b's reply */
    r = notice(10, "GRANT_REVOKED", 1500);
    send_reply(p.peer, &r, NULL, 0);
    r = notice(999, "GRANT_EXPIRED", 1);
    send_reply(p.peer, &r, NULL, 0);
    r = acquire_reply(2, 11, "bbb", 4096, 1);
    send_reply(p.peer, &r, &m2, 1);
    CHECK_EQ(shmb_acquire(p.c, "bbb", SHMB_MODE_READ_ONLY, &b), 0);

    /* Marked at once, but the callback only runs in process_events. */
    CHECK_EQ(shmb_region_revoked(a), 1);
    CHECK(strcmp(shmb_region_revoke_reason(a), "GRANT_REVOKED") == 0);
    CHECK_EQ(shmb_region_revoked(b), 0);
    CHECK_EQ(cb_calls, 0);
    CHECK_EQ(shmb_events_pending(p.c), 1); /* the unknown lease was dropped */

    CHECK_EQ(shmb_process_events(p.c), 1);
    CHECK_EQ(cb_calls, 1);
    CHECK(cb_lease == 10 && cb_grace == 1500 && cb_region == a);
    CHECK(strcmp(cb_reason, "GRANT_REVOKED") == 0);
    CHECK_EQ(shmb_events_pending(p.c), 0);
    CHECK_EQ(shmb_process_events(p.c), 0);

    /* Releasing a revoked lease the broker forgot counts as released. */
    r = error_reply(3, 5, "NOT_FOUND");
    send_reply(p.peer, &r, NULL, 0);
    CHECK_EQ(shmb_region_release(a), 0);
    /* ... but the same error for a live lease is reported. */
    r = error_reply(4, 5, "NOT_FOUND");
    send_reply(p.peer, &r, NULL, 0);
    CHECK_EQ(shmb_region_release(b), -ENOENT);
    close(m1);
    close(m2);
    close_pair(&p);
}

static void test_notice_in_process_events(void)
{
    pair p = open_pair();
    int m = make_memfd(4096);
    shmb_region *a = NULL;
    shmb_pb_reply r = acquire_reply(1, 10, "aaa", 4096, 2);
    send_reply(p.peer, &r, &m, 1);
    CHECK_EQ(shmb_acquire(p.c, "aaa", SHMB_MODE_READ_WRITE, &a), 0);
    CHECK_EQ(shmb_process_events(p.c), 0); /* nothing there: does not block */

    /* No callback set: process_events still marks and counts. */
    r = notice(10, "REGION_DELETED", 0);
    send_reply(p.peer, &r, NULL, 0);
    send_reply(p.peer, &r, NULL, 0); /* a duplicate notice is harmless */
    CHECK_EQ(shmb_process_events(p.c), 2);
    CHECK_EQ(shmb_region_revoked(a), 1);
    CHECK(strcmp(shmb_region_revoke_reason(a), "REGION_DELETED") == 0);

    /* A notice followed by garbage: the notice is dispatched, then -EPROTO. */
    r = notice(10, "GRANT_REVOKED", 0);
    send_reply(p.peer, &r, NULL, 0);
    CHECK_EQ(send_raw(p.peer, "\xff", 1, &m, 1), 0);
    cb_calls = 0;
    shmb_set_revocation_callback(p.c, record_cb, &cb_calls);
    CHECK_EQ(shmb_process_events(p.c), -EPROTO);
    CHECK_EQ(cb_calls, 1);
    /* Broken: release still unmaps and frees, reporting the state. */
    CHECK_EQ(shmb_region_release(a), -ENOTCONN);
    close(m);
    close_pair(&p);
}

static void test_peer_closes(void)
{
    pair p = open_pair();
    int m = make_memfd(4096);
    shmb_region *a = NULL;
    shmb_pb_reply r = acquire_reply(1, 10, "aaa", 4096, 2);
    send_reply(p.peer, &r, &m, 1);
    CHECK_EQ(shmb_acquire(p.c, "aaa", SHMB_MODE_READ_WRITE, &a), 0);
    close(p.peer);
    p.peer = -1;
    CHECK_EQ(shmb_process_events(p.c), -ECONNRESET);
    shmb_region *b = NULL;
    CHECK_EQ(shmb_acquire(p.c, "aaa", SHMB_MODE_READ_WRITE, &b), -ENOTCONN);
    /* The mapping is still good memory. */
    ((volatile char *)shmb_region_data(a))[0] = 1;
    CHECK_EQ(shmb_region_release(a), -ENOTCONN);

    /* Closed while waiting for a reply. */
    pair q = open_pair();
    close(q.peer);
    q.peer = -1;
    CHECK_EQ(shmb_acquire(q.c, "aaa", SHMB_MODE_READ_WRITE, &a), -ECONNRESET);
    close(m);
    close_pair(&p);
    close_pair(&q);
}

static void test_timeout(void)
{
    pair p = open_pair();
    shmb_region *a = NULL;
    shmb_set_timeout(p.c, 50);
    CHECK_EQ(shmb_acquire(p.c, "aaa", SHMB_MODE_READ_WRITE, &a), -ETIMEDOUT);
    /* A late reply must not be taken for the next request's. */
    CHECK_EQ(shmb_acquire(p.c, "aaa", SHMB_MODE_READ_WRITE, &a), -ENOTCONN);
    close_pair(&p);
}

/* Closing the client detaches live regions; they stay readable. */
static void test_close_with_live_region(void)
{
    pair p = open_pair();
    int m = make_memfd(4096);
    CHECK_EQ(pwrite(m, "keep", 4, 0), 4);
    shmb_region *a = NULL;
    shmb_pb_reply r = acquire_reply(1, 10, "aaa", 4096, 1);
    send_reply(p.peer, &r, &m, 1);
    CHECK_EQ(shmb_acquire(p.c, "aaa", SHMB_MODE_READ_ONLY, &a), 0);
    r = notice(10, "GRANT_REVOKED", 0);
    send_reply(p.peer, &r, NULL, 0);
    close_pair(&p); /* a queued-but-unread notice is dropped with the client */
    CHECK(memcmp(shmb_region_data(a), "keep", 4) == 0);
    CHECK_EQ(shmb_region_release(a), 0);
    close(m);
}

static shmb_pb_reply offer_reply(uint64_t id, int accepted, uint64_t lease)
{
    shmb_pb_reply r;
    memset(&r, 0, sizeof r);
    r.request_id = id;
    r.kind = SHMB_PB_REPLY_OFFER;
    r.u.offer.accepted = accepted;
    r.u.offer.lease_id = lease;
    return r;
}

/* Receive a request with the fd attached to it (or -1). */
static int recv_request_fd(int sock, shmb_pb_request *q, int *fd)
{
    static uint8_t buf[SHMB_PROTO_MAX_PACKET];
    union {
        struct cmsghdr align;
        char b[CMSG_SPACE(sizeof(int) * 4)];
    } ctrl;
    struct iovec iov = {buf, sizeof buf};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl.b;
    msg.msg_controllen = sizeof ctrl.b;
    ssize_t n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    *fd = -1;
    if (n <= 0)
        return -1;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    if (cm && cm->cmsg_type == SCM_RIGHTS)
        memcpy(fd, CMSG_DATA(cm), sizeof *fd);
    return shmb_pb_decode_request(buf, (size_t)n, q);
}

/* After a "restart": the region moves to a new connection by OfferRequest. */
static void test_offer_after_reconnect(void)
{
    pair p = open_pair();
    int m = make_memfd(8192);
    struct stat want, got;
    CHECK_EQ(fstat(m, &want), 0);
    shmb_region *a = NULL, *b = NULL;
    shmb_pb_reply r = acquire_reply(1, 10, "aaa", 8192, 2);
    send_reply(p.peer, &r, &m, 1);
    CHECK_EQ(shmb_acquire(p.c, "aaa", SHMB_MODE_READ_WRITE, &a), 0);
    r = acquire_reply(2, 11, "bbb", 8192, 2);
    send_reply(p.peer, &r, &m, 1);
    CHECK_EQ(shmb_acquire(p.c, "bbb", SHMB_MODE_READ_WRITE, &b), 0);
    memcpy(shmb_region_data(a), "survive", 7);
    /* The broker goes away. */
    close(p.peer);
    p.peer = -1;
    CHECK_EQ(shmb_process_events(p.c), -ECONNRESET);

    pair q = open_pair();
    /* a: offered while still on the old (broken) client; accepted. */
    r = offer_reply(1, 1, 10);
    send_reply(q.peer, &r, NULL, 0);
    CHECK_EQ(shmb_region_offer(q.c, a), 0);
    shmb_pb_request req;
    int fd = -1;
    CHECK_EQ(recv_request_fd(q.peer, &req, &fd), 0);
    CHECK(req.kind == SHMB_PB_REQ_OFFER && req.request_id == 1);
    CHECK(req.u.offer.lease_id == 10 && req.u.offer.mode == 2);
    CHECK(req.u.offer.region.len == 3 && memcmp(req.u.offer.region.ptr, "aaa", 3) == 0);
    CHECK(fd >= 0 && fstat(fd, &got) == 0 && got.st_ino == want.st_ino);
    if (fd >= 0)
        close(fd);
    /* b: refused (revoked meanwhile). */
    close_pair(&p); /* detaches b */
    r = offer_reply(2, 0, 0);
    send_reply(q.peer, &r, NULL, 0);
    CHECK_EQ(shmb_region_offer(q.c, b), -ESTALE);
    CHECK_EQ(shmb_region_revoked(b), 1);
    CHECK(strcmp(shmb_region_revoke_reason(b), "LEASE_LOST") == 0);
    CHECK_EQ(recv_request_fd(q.peer, &req, &fd), 0);
    if (fd >= 0)
        close(fd);
    CHECK_EQ(shmb_region_release(b), 0); /* detached: local only */
    /* a now belongs to q: its notices arrive there, release goes there. */
    r = notice(10, "GRANT_REVOKED", 5);
    send_reply(q.peer, &r, NULL, 0);
    CHECK_EQ(shmb_process_events(q.c), 1);
    CHECK_EQ(shmb_region_revoked(a), 1);
    CHECK(memcmp(shmb_region_data(a), "survive", 7) == 0);
    r = release_reply(3, 10);
    send_reply(q.peer, &r, NULL, 0);
    CHECK_EQ(shmb_region_release(a), 0);
    CHECK_EQ(recv_request_fd(q.peer, &req, &fd), 0);
    CHECK(req.kind == SHMB_PB_REQ_RELEASE && req.u.release.lease_id == 10 && fd == -1);
    /* Malformed offer replies. */
    shmb_region *c2 = NULL;
    r = acquire_reply(4, 12, "ccc", 8192, 1);
    send_reply(q.peer, &r, &m, 1);
    CHECK_EQ(shmb_acquire(q.c, "ccc", SHMB_MODE_READ_ONLY, &c2), 0);
    r = offer_reply(5, 1, 12);
    send_reply(q.peer, &r, &m, 1); /* with an fd: refused, closed */
    CHECK_EQ(shmb_region_offer(q.c, c2), -EPROTO);
    r = release_reply(6, 12); /* the wrong kind */
    send_reply(q.peer, &r, NULL, 0);
    CHECK_EQ(shmb_region_offer(q.c, c2), -EPROTO);
    r = error_reply(7, 3, "BAD");
    send_reply(q.peer, &r, NULL, 0);
    CHECK_EQ(shmb_region_offer(q.c, c2), -EINVAL);
    CHECK_EQ(shmb_region_offer(NULL, c2), -EINVAL);
    r = release_reply(8, 12);
    send_reply(q.peer, &r, NULL, 0);
    CHECK_EQ(shmb_region_release(c2), 0);
    /* Drain what the client sent (each offer carried an fd). */
    while (recv_request_fd(q.peer, &req, &fd) == 0)
        if (fd >= 0)
            close(fd);
    close(m);
    close_pair(&q);
}

/* A responder thread answers releases, so callbacks can release. */
typedef struct {
    int sock;
    int releases;
} responder;

static void *responder_main(void *arg)
{
    responder *rs = arg;
    uint8_t buf[SHMB_PROTO_MAX_PACKET];
    for (;;) {
        ssize_t n = recv(rs->sock, buf, sizeof buf, 0);
        shmb_pb_request q;
        if (n <= 0)
            break;
        if (shmb_pb_decode_request(buf, (size_t)n, &q) < 0)
            break;
        if (q.kind == SHMB_PB_REQ_RELEASE) {
            shmb_pb_reply r = release_reply(q.request_id, q.u.release.lease_id);
            rs->releases++;
            send_reply(rs->sock, &r, NULL, 0);
        } else {
            shmb_pb_reply r = error_reply(q.request_id, 5, "NOT_FOUND");
            send_reply(rs->sock, &r, NULL, 0);
        }
    }
    return NULL;
}

static void release_cb(shmb_client *c, shmb_region *r, const shmb_revocation *n, void *arg)
{
    int *released = arg;
    (void)c;
    (void)n;
    if (shmb_region_release(r) == 0)
        (*released)++;
}

static void test_callback_releases(void)
{
    pair p = open_pair();
    enum { N = 5 };
    int m = make_memfd(4096);
    shmb_region *regs[N];
    char name[16];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "r%d", i);
        shmb_pb_reply r = acquire_reply((uint64_t)i + 1, 100 + (uint64_t)i, name, 4096, 2);
        send_reply(p.peer, &r, &m, 1);
        CHECK_EQ(shmb_acquire(p.c, name, SHMB_MODE_READ_WRITE, &regs[i]), 0);
        shmb_pb_request q;
        CHECK_EQ(recv_request(p.peer, &q, NULL, 0), 0);
    }
    /* Revoke 0, 2 and 4, then let the responder answer the releases. */
    for (int i = 0; i < N; i += 2) {
        shmb_pb_reply r = notice(100 + (uint64_t)i, "GRANT_REVOKED", 100);
        send_reply(p.peer, &r, NULL, 0);
    }
    responder rs = {p.peer, 0};
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, responder_main, &rs), 0);
    int released = 0;
    shmb_set_revocation_callback(p.c, release_cb, &released);
    CHECK_EQ(shmb_process_events(p.c), 3);
    CHECK_EQ(released, 3);
    CHECK_EQ(shmb_region_release(regs[1]), 0);
    CHECK_EQ(shmb_region_release(regs[3]), 0);
    shutdown(p.peer, SHUT_RDWR);
    pthread_join(th, NULL);
    CHECK_EQ(rs.releases, 5);
    close(m);
    close_pair(&p);
}

static void reenter_cb(shmb_client *c, shmb_region *r, const shmb_revocation *n, void *arg)
{
    (void)r;
    (void)n;
    *(int *)arg = shmb_process_events(c);
}

static void test_reentrant_process_events(void)
{
    pair p = open_pair();
    int m = make_memfd(4096);
    shmb_region *a = NULL;
    shmb_pb_reply r = acquire_reply(1, 10, "aaa", 4096, 2);
    send_reply(p.peer, &r, &m, 1);
    CHECK_EQ(shmb_acquire(p.c, "aaa", SHMB_MODE_READ_WRITE, &a), 0);
    r = notice(10, "GRANT_REVOKED", 0);
    send_reply(p.peer, &r, NULL, 0);
    int inner = 0;
    shmb_set_revocation_callback(p.c, reenter_cb, &inner);
    CHECK_EQ(shmb_process_events(p.c), 1);
    CHECK_EQ(inner, -EBUSY);
    r = release_reply(2, 10);
    send_reply(p.peer, &r, NULL, 0);
    CHECK_EQ(shmb_region_release(a), 0);
    close(m);
    close_pair(&p);
}

/* Random garbage and mutated replies with fds: never a crash or a leak. */
static uint64_t rng = 0x2545f4914f6cdd1dULL;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void test_random_replies(void)
{
    int m = make_memfd(4096);
    uint8_t valid[256], buf[256];
    shmb_pb_reply r = acquire_reply(1, 7, "frames", 4096, 1);
    long vn = shmb_pb_encode_reply(&r, valid, sizeof valid);
    int okc = 0;
    for (int iter = 0; iter < 1500; iter++) {
        pair p = open_pair();
        shmb_set_timeout(p.c, 200);
        size_t n = (size_t)vn;
        memcpy(buf, valid, n);
        int flips = 1 + (int)(rnd() % 3);
        for (int f = 0; f < flips; f++)
            buf[rnd() % n] ^= (uint8_t)(1u << (rnd() % 8));
        int nfds = (int)(rnd() % 3);
        int fds[2] = {m, m};
        CHECK_EQ(send_raw(p.peer, buf, n, fds, nfds), 0);
        shmb_pb_reply rr = release_reply(2, 7);
        send_reply(p.peer, &rr, NULL, 0);
        shmb_region *reg = NULL;
        int rc = shmb_acquire(p.c, "frames", SHMB_MODE_READ_ONLY, &reg);
        if (rc == 0) {
            okc++;
            volatile const char *d = shmb_region_data(reg);
            (void)d[shmb_region_size(reg) - 1];
            shmb_region_release(reg);
        } else {
            CHECK(reg == NULL);
            CHECK(rc == -EPROTO || rc < 0);
        }
        close_pair(&p);
    }
    CHECK(okc > 0);
    close(m);
}

static void test_socket_path(void)
{
    char buf[200];
    unsetenv("SHMBROKER_RUNTIME_DIR");
    CHECK_EQ(shmb_socket_path("/some/dir", buf, sizeof buf), (int)strlen("/some/dir/data.sock"));
    CHECK(strcmp(buf, "/some/dir/data.sock") == 0);
    CHECK(shmb_socket_path("/some/dir//", buf, sizeof buf) > 0);
    CHECK(strcmp(buf, "/some/dir/data.sock") == 0);
    CHECK(shmb_socket_path("/", buf, sizeof buf) > 0);
    CHECK(strcmp(buf, "/data.sock") == 0);
    CHECK_EQ(shmb_socket_path("/some/dir", buf, 10), -ENAMETOOLONG);
    char longdir[150];
    memset(longdir, 'd', sizeof longdir - 1);
    longdir[0] = '/';
    longdir[sizeof longdir - 1] = '\0';
    CHECK_EQ(shmb_socket_path(longdir, buf, sizeof buf), -ENAMETOOLONG);
    CHECK_EQ(shmb_socket_path("/x", NULL, 0), -EINVAL);

    setenv("SHMBROKER_RUNTIME_DIR", "/env/dir", 1);
    CHECK(shmb_socket_path(NULL, buf, sizeof buf) > 0);
    CHECK(strcmp(buf, "/env/dir/data.sock") == 0);
    CHECK(shmb_socket_path("/explicit", buf, sizeof buf) > 0);
    CHECK(strcmp(buf, "/explicit/data.sock") == 0);
    /* Every uid finds root's broker: no XDG or /tmp fallback another uid could squat. */
    setenv("SHMBROKER_RUNTIME_DIR", "", 1);
    setenv("XDG_RUNTIME_DIR", "/run/user/77", 1);
    CHECK(shmb_socket_path(NULL, buf, sizeof buf) > 0);
    CHECK(strcmp(buf, "/run/shmbroker/data.sock") == 0);
    if (geteuid() == 0) {
        pid_t pid = fork();
        if (pid == 0) {
            int bad = 0;
            if (setgid(65534) < 0 || setuid(65534) < 0)
                _exit(3);
            bad |= shmb_socket_path(NULL, buf, sizeof buf) < 0 || strcmp(buf, "/run/shmbroker/data.sock") != 0;
            unsetenv("XDG_RUNTIME_DIR");
            bad |= shmb_socket_path(NULL, buf, sizeof buf) < 0 || strcmp(buf, "/run/shmbroker/data.sock") != 0;
            _exit(bad);
        }
        int st = -1;
        waitpid(pid, &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    unsetenv("SHMBROKER_RUNTIME_DIR");
    unsetenv("XDG_RUNTIME_DIR");
}

static void test_connect(void)
{
    shmb_client *c = NULL;
    char dir[] = "/tmp/shmb-test-XXXXXX";
    char path[128], uidbuf[32];
    CHECK(mkdtemp(dir) != NULL);
    /* This process plays the broker: trust its uid when it is not root. */
    snprintf(uidbuf, sizeof uidbuf, "%lu", (unsigned long)geteuid());
    setenv("SHMBROKER_BROKER_UID", uidbuf, 1);
    snprintf(path, sizeof path, "%s/data.sock", dir);
    CHECK_EQ(shmb_connect(path, &c), -ENOENT);
    CHECK(c == NULL);
    CHECK_EQ(shmb_connect("", &c), -EINVAL);
    CHECK_EQ(shmb_connect(path, NULL), -EINVAL);

    int ls = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path, strlen(path) + 1);
    CHECK_EQ(bind(ls, (struct sockaddr *)&addr, sizeof addr), 0);
    CHECK_EQ(listen(ls, 4), 0);
    CHECK_EQ(shmb_connect(path, &c), 0);
    int as = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
    CHECK(as >= 0);
    CHECK(shmb_client_fd(c) >= 0);
    CHECK(fcntl(shmb_client_fd(c), F_GETFD) & FD_CLOEXEC);
    shmb_client_close(c);
    /* Discovery through SHMBROKER_RUNTIME_DIR. */
    setenv("SHMBROKER_RUNTIME_DIR", dir, 1);
    c = NULL;
    CHECK_EQ(shmb_connect(NULL, &c), 0);
    shmb_client_close(c);
    unsetenv("SHMBROKER_RUNTIME_DIR");
    int as2 = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
    close(as2);
    close(as);

    /* A runtime directory others can write is not the broker's: refused before connecting. */
    {
        char why[256] = "";
        CHECK_EQ(chmod(dir, 0777), 0);
        CHECK_EQ(shmb_connect_explain(path, &c, why, sizeof why), -EPERM);
        CHECK(c == NULL);
        CHECK(strstr(why, "writable by group or others") != NULL);
        CHECK_EQ(chmod(dir, 0700), 0);
        /* Neither is one reached through a symlink. */
        char link[40];
        snprintf(link, sizeof link, "%s-link", dir);
        CHECK_EQ(symlink(dir, link), 0);
        snprintf(path, sizeof path, "%s/data.sock", link);
        CHECK_EQ(shmb_connect_explain(path, &c, why, sizeof why), -EPERM);
        CHECK(strstr(why, "is a symbolic link") != NULL);
        unlink(link);
        snprintf(path, sizeof path, "%s/data.sock", dir);
        /* A broker uid that is not a number is a configuration error. */
        setenv("SHMBROKER_BROKER_UID", "nobody", 1);
        CHECK_EQ(shmb_connect_explain(path, &c, why, sizeof why), -EINVAL);
        CHECK(strstr(why, "SHMBROKER_BROKER_UID") != NULL);
        CHECK(strncmp(shmb_strerror(-EPERM), "BROKER_NOT_TRUSTED", 18) == 0);
    }
    unsetenv("SHMBROKER_BROKER_UID");
    close(ls);
    unlink(path);
    rmdir(dir);

    /* connect_fd checks the socket type and leaves the fd on failure. */
    int st[2], pp[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, st), 0);
    CHECK_EQ(shmb_connect_fd(st[0], &c), -EPROTOTYPE);
    CHECK_EQ(pipe(pp), 0);
    CHECK_EQ(shmb_connect_fd(pp[0], &c), -EBADF);
    CHECK_EQ(shmb_connect_fd(-1, &c), -EINVAL);
    CHECK(fcntl(st[0], F_GETFD) >= 0 && fcntl(pp[0], F_GETFD) >= 0);
    close(st[0]);
    close(st[1]);
    close(pp[0]);
    close(pp[1]);
    CHECK(strcmp(shmb_strerror(-EPROTO), "broker reply breaks the data-plane protocol") == 0);
    CHECK(strlen(shmb_strerror(-ENOENT)) > 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    RUN(test_acquire_rw_write_release);
    RUN(test_acquire_ro_cannot_write);
    RUN(test_broker_error);
    RUN(test_invalid_arguments);
    RUN(test_bad_acquire_replies);
    RUN(test_malformed_packets);
    RUN(test_too_many_fds);
    RUN(test_notice_between_request_and_reply);
    RUN(test_notice_in_process_events);
    RUN(test_peer_closes);
    RUN(test_timeout);
    RUN(test_close_with_live_region);
    RUN(test_offer_after_reconnect);
    RUN(test_callback_releases);
    RUN(test_reentrant_process_events);
    RUN(test_random_replies);
    RUN(test_socket_path);
    RUN(test_region_fd_checks);
    RUN(test_connect);
    return tu_summary("test_fakepeer");
}
