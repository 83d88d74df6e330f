/*
 * How libshmbroker decides that what listens at a socket path is the broker
 * (docs/ARCHITECTURE.md, "Clients authenticate the broker"). Every check
 * fails with -EPERM ("BROKER_NOT_TRUSTED") and writes what did not match
 * into `why`; a missing path fails with its own errno.
 *
 * The trusted uids are root and, when set, $SHMBROKER_BROKER_UID.
 */
#ifndef SHMBROKER_TRUST_H
#define SHMBROKER_TRUST_H

#include <stddef.h>
#include <sys/types.h>

typedef struct {
    uid_t uids[2];
    int n;
} shmb_trust_set;

/* Root plus $SHMBROKER_BROKER_UID (a decimal uid) when set; -EINVAL when it is not a uid. */
int shmb_trust_from_env(shmb_trust_set *t, char *why, size_t why_len);

/*
 * Walk the directory of @p socket_path from "/" one component at a time
 * (openat with O_NOFOLLOW, checked by fd, never by path): every component
 * a real directory owned by a trusted uid; ancestors writable by others
 * only with the sticky bit; the runtime directory itself not writable by
 * group or others; the socket a socket owned by a trusted uid. Since no
 * untrusted uid can change any component that passed, connecting by the
 * same path afterwards reaches the checked socket.
 */
int shmb_trust_check_path(const shmb_trust_set *t, const char *socket_path, char *why, size_t why_len);

/* SO_PEERCRED of the connected @p fd is a trusted uid; its uid in *peer_uid. */
int shmb_trust_check_peer(const shmb_trust_set *t, int fd, uid_t *peer_uid, char *why, size_t why_len);

/*
 * A region fd the broker (uid @p broker_uid) sent, before it is mapped:
 * a regular file owned by the broker, no access for group or others, and,
 * when @p memfd, sealed against shrinking, growing and further sealing as
 * the broker promises.
 */
int shmb_trust_check_region_fd(uid_t broker_uid, int fd, int memfd, char *why, size_t why_len);

#endif
