/*
 * Client-side authentication of the broker: see trust.h. The same rule is
 * implemented for the TypeScript clients in clients/sdk/broker-trust.ts;
 * keep the two in step (docs/ARCHITECTURE.md names both).
 */
#define _GNU_SOURCE /* O_PATH, F_GET_SEALS */

#include "trust.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef F_GET_SEALS
#define F_GET_SEALS 1034
#endif
#ifndef F_SEAL_SEAL
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#endif

static int fail(char *why, size_t len, int err, const char *fmt, ...)
{
    if (why && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, len, fmt, ap);
        va_end(ap);
    }
    return -err;
}

static int trusted(const shmb_trust_set *t, uid_t uid)
{
    for (int i = 0; i < t->n; i++)
        if (t->uids[i] == uid)
            return 1;
    return 0;
}

static const char *trusted_names(const shmb_trust_set *t, char *buf, size_t len)
{
    if (t->n > 1)
        snprintf(buf, len, "root or SHMBROKER_BROKER_UID=%lu", (unsigned long)t->uids[1]);
    else
        snprintf(buf, len, "root");
    return buf;
}

int shmb_trust_from_env(shmb_trust_set *t, char *why, size_t why_len)
{
    const char *env = getenv("SHMBROKER_BROKER_UID");
    t->uids[0] = 0;
    t->n = 1;
    if (env && env[0]) {
        char *end;
        unsigned long v;
        errno = 0;
        v = strtoul(env, &end, 10);
        if (errno || *end || env[0] == '-' || env[0] == '+' || v >= (unsigned long)(uid_t)-1)
            return fail(why, why_len, EINVAL, "SHMBROKER_BROKER_UID=%s is not a uid", env);
        if (v != 0)
            t->uids[t->n++] = (uid_t)v;
    }
    return 0;
}

/* One component's verdict. `last` is the runtime directory itself. */
static int check_dir(const shmb_trust_set *t, const struct stat *st, const char *path, int last, char *why,
                     size_t why_len)
{
    char names[64];
    if (S_ISLNK(st->st_mode))
        return fail(why, why_len, EPERM, "%s is a symbolic link", path);
    if (!S_ISDIR(st->st_mode))
        return fail(why, why_len, EPERM, "%s is not a directory", path);
    if (!trusted(t, st->st_uid))
        return fail(why, why_len, EPERM, "%s is owned by uid %lu, not by %s", path, (unsigned long)st->st_uid,
                    trusted_names(t, names, sizeof names));
    if (last && (st->st_mode & 022))
        return fail(why, why_len, EPERM, "runtime directory %s is writable by group or others (mode %o)", path,
                    (unsigned)(st->st_mode & 07777));
    /* A sticky directory (/tmp) lets others add entries but not rename or remove ours. */
    if (!last && (st->st_mode & 022) && !(st->st_mode & S_ISVTX))
        return fail(why, why_len, EPERM, "%s is writable by group or others without the sticky bit (mode %o)", path,
                    (unsigned)(st->st_mode & 07777));
    return 0;
}

int shmb_trust_check_path(const shmb_trust_set *t, const char *socket_path, char *why, size_t why_len)
{
    char abs[PATH_MAX], walked[PATH_MAX];
    char *comp[PATH_MAX / 2];
    int ncomp = 0, fd, rc = 0;
    size_t wlen = 0;
    struct stat st;
    const char *sock_name;

    /* Absolute and lexically normal: "." dropped, ".." pops (as path.resolve does). */
    if (socket_path[0] == '/') {
        if (snprintf(abs, sizeof abs, "%s", socket_path) >= (int)sizeof abs)
            return fail(why, why_len, ENAMETOOLONG, "socket path too long");
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd))
            return fail(why, why_len, errno, "getcwd: %s", strerror(errno));
        if (snprintf(abs, sizeof abs, "%s/%s", cwd, socket_path) >= (int)sizeof abs)
            return fail(why, why_len, ENAMETOOLONG, "socket path too long");
    }
    for (char *save = NULL, *c = strtok_r(abs, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0)
            continue;
        if (strcmp(c, "..") == 0) {
            if (ncomp > 0)
                ncomp--;
            continue;
        }
        comp[ncomp++] = c;
    }
    if (ncomp < 1)
        return fail(why, why_len, EINVAL, "%s names no socket", socket_path);
    sock_name = comp[--ncomp];

    fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return fail(why, why_len, errno, "open /: %s", strerror(errno));
    walked[0] = '/';
    walked[1] = '\0';
    wlen = 1;
    if (fstat(fd, &st) < 0) {
        rc = fail(why, why_len, errno, "fstat /: %s", strerror(errno));
        goto out;
    }
    rc = check_dir(t, &st, "/", ncomp == 0, why, why_len);
    for (int i = 0; rc == 0 && i < ncomp; i++) {
        /* O_PATH|O_NOFOLLOW opens a symlink itself, so fstat shows it for what it is. */
        int next = openat(fd, comp[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
        wlen += (size_t)snprintf(walked + wlen, sizeof walked - wlen, "%s%s", wlen > 1 ? "/" : "", comp[i]);
        if (wlen >= sizeof walked)
            wlen = sizeof walked - 1;
        if (next < 0) {
            rc = fail(why, why_len, errno, "%s: %s", walked, strerror(errno));
            break;
        }
        close(fd);
        fd = next;
        if (fstat(fd, &st) < 0) {
            rc = fail(why, why_len, errno, "fstat %s: %s", walked, strerror(errno));
            break;
        }
        rc = check_dir(t, &st, walked, i == ncomp - 1, why, why_len);
    }
    if (rc == 0) {
        char names[64];
        if (fstatat(fd, sock_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            rc = fail(why, why_len, errno, "%s%s%s: %s", walked, wlen > 1 ? "/" : "", sock_name, strerror(errno));
        else if (!S_ISSOCK(st.st_mode))
            rc = fail(why, why_len, EPERM, "%s%s%s is not a socket", walked, wlen > 1 ? "/" : "", sock_name);
        else if (!trusted(t, st.st_uid))
            rc = fail(why, why_len, EPERM, "socket %s%s%s is owned by uid %lu, not by %s", walked, wlen > 1 ? "/" : "",
                      sock_name, (unsigned long)st.st_uid, trusted_names(t, names, sizeof names));
    }
out:
    close(fd);
    return rc;
}

int shmb_trust_check_peer(const shmb_trust_set *t, int fd, uid_t *peer_uid, char *why, size_t why_len)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    char names[64];
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return fail(why, why_len, errno, "getsockopt(SO_PEERCRED): %s", strerror(errno));
    if (!trusted(t, cred.uid))
        return fail(why, why_len, EPERM, "the socket's peer (pid %ld) runs as uid %lu, not as %s", (long)cred.pid,
                    (unsigned long)cred.uid, trusted_names(t, names, sizeof names));
    if (peer_uid)
        *peer_uid = cred.uid;
    return 0;
}

int shmb_trust_check_region_fd(uid_t broker_uid, int fd, int memfd, char *why, size_t why_len)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return fail(why, why_len, errno, "fstat of the region fd: %s", strerror(errno));
    if (!S_ISREG(st.st_mode))
        return fail(why, why_len, EPERM, "the region fd is not a regular file (mode %o)", (unsigned)st.st_mode);
    if (st.st_uid != broker_uid)
        return fail(why, why_len, EPERM, "the region fd is owned by uid %lu, not by the broker (uid %lu)",
                    (unsigned long)st.st_uid, (unsigned long)broker_uid);
    if (st.st_mode & 077)
        return fail(why, why_len, EPERM, "the region fd's inode is accessible to group or others (mode %o)",
                    (unsigned)(st.st_mode & 07777));
    if (memfd) {
        int want = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
        int seals = fcntl(fd, F_GET_SEALS);
        if (seals < 0 || (seals & want) != want)
            return fail(why, why_len, EPERM, "the memfd region is not sealed against shrink, grow and reseal (seals %#x)",
                        seals < 0 ? 0 : seals);
    }
    return 0;
}
