/*
 * A minimal data-plane server in C, to measure what libshmbroker itself adds
 * on top of the raw floor (clients/c/README.md, "raw floor": request, fd by SCM_RIGHTS, mmap, touch,
 * munmap, close): it answers every AcquireRequest with the same memfd and
 * every ReleaseRequest at once, with no policy, database or audit.
 *   bench_server SOCKET_PATH [SIZE]      (serves connections one at a time)
 * Not a broker: for benchmarks only (bench_acquire --socket SOCKET_PATH x).
 */
#define _GNU_SOURCE
#include "proto.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static void reply(int s, const shmb_pb_reply *r, int fd)
{
    uint8_t buf[SHMB_PROTO_MAX_PACKET];
    union {
        struct cmsghdr align;
        char b[CMSG_SPACE(sizeof(int))];
    } ctrl;
    long n = shmb_pb_encode_reply(r, buf, sizeof buf);
    struct iovec iov = {buf, (size_t)n};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (fd >= 0) {
        memset(&ctrl, 0, sizeof ctrl);
        msg.msg_control = ctrl.b;
        msg.msg_controllen = sizeof ctrl.b;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    }
    if (sendmsg(s, &msg, MSG_NOSIGNAL) < 0)
        perror("sendmsg");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_server SOCKET_PATH [SIZE]\n");
        return 1;
    }
    size_t size = argc > 2 ? strtoul(argv[2], NULL, 0) : 1 << 20;
    int mfd = memfd_create("bench", MFD_CLOEXEC);
    if (mfd < 0 || ftruncate(mfd, (off_t)size) < 0)
        return 2;
    int ls = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (strlen(argv[1]) >= sizeof addr.sun_path)
        return 1;
    memcpy(addr.sun_path, argv[1], strlen(argv[1]) + 1);
    unlink(argv[1]);
    if (bind(ls, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(ls, 8) < 0) {
        perror("bind/listen");
        return 2;
    }
    chmod(argv[1], 0666);
    printf("listening\n");
    fflush(stdout);
    uint64_t lease = 0;
    for (;;) {
        int s = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (s < 0)
            continue;
        uint8_t buf[SHMB_PROTO_MAX_PACKET];
        ssize_t n;
        while ((n = recv(s, buf, sizeof buf, 0)) > 0) {
            shmb_pb_request q;
            shmb_pb_reply r;
            memset(&r, 0, sizeof r);
            if (shmb_pb_decode_request(buf, (size_t)n, &q) < 0)
                break;
            r.request_id = q.request_id;
            if (q.kind == SHMB_PB_REQ_ACQUIRE) {
                r.kind = SHMB_PB_REPLY_ACQUIRE;
                r.u.acquire.lease_id = ++lease;
                r.u.acquire.region = q.u.acquire.region;
                r.u.acquire.size_bytes = size;
                r.u.acquire.mode = q.u.acquire.mode;
                r.u.acquire.backend.ptr = "memfd";
                r.u.acquire.backend.len = 5;
                reply(s, &r, mfd);
            } else {
                r.kind = SHMB_PB_REPLY_RELEASE;
                r.u.release.lease_id = q.u.release.lease_id;
                reply(s, &r, -1);
            }
        }
        close(s);
    }
    (void)tu_summary;
    (void)tu_count_fds;
}
