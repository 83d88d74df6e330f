/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * shmbroker: kernel-backed shared-memory regions handed out by a broker.
 *
 * Only the broker opens /dev/shmbroker (mode 0600, root). It creates regions,
 * opens grant fds on them and passes those fds to clients.
 *
 * Opening /dev/shmbroker also needs CAP_IPC_LOCK in the initial user
 * namespace (EPERM otherwise), checked once at open as /dev/mem checks
 * CAP_SYS_RAWIO: region pages are unswappable memory outside any
 * RLIMIT_MEMLOCK, which is what CAP_IPC_LOCK gates for mlock() and
 * SHM_HUGETLB. So root in a container, or in a user namespace, that can see
 * the device node still cannot use it. An open fd carries the full power of
 * the device: whoever holds one controls every region. A grant fd is a
 * file on its own anonymous inode: a client can mmap it (MAP_SHARED only) but
 * cannot re-open it, resize it or upgrade a read-only grant to writable.
 * Revoking a grant tears down every mapping made through it.
 *
 * Every struct is a multiple of 8 bytes with no implicit padding. Unknown flag
 * bits and non-zero reserved or padding fields are rejected with EINVAL, so
 * that they can be given a meaning later.
 */
#ifndef _UAPI_LINUX_SHMBROKER_H
#define _UAPI_LINUX_SHMBROKER_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define SHMBROKER_DEVICE_NAME		"shmbroker"

/* shmbroker_create.flags */
#define SHMBROKER_CREATE_HUGEPAGE	(1U << 0)	/* back with 2 MiB pages */
#define SHMBROKER_CREATE_FLAGS_ALL	(SHMBROKER_CREATE_HUGEPAGE)

/* shmbroker_create.numa_node when no node is asked for */
#define SHMBROKER_NUMA_NO_NODE		0xffffffffU

/* shmbroker_open.flags */
#define SHMBROKER_OPEN_RDONLY		(1U << 0)	/* grant cannot be mapped writable */
#define SHMBROKER_OPEN_CLOEXEC		(1U << 1)	/* O_CLOEXEC on the returned fd */
/*
 * A read-only grant may also NOTIFY (region events, below). Meaningless but
 * accepted on a read-write grant, which may always notify. Since 0.3.0; a
 * 0.2 module refuses the bit with EINVAL, which is how a caller detects it.
 */
#define SHMBROKER_OPEN_ALLOW_NOTIFY	(1U << 2)
#define SHMBROKER_OPEN_FLAGS_ALL	(SHMBROKER_OPEN_RDONLY | SHMBROKER_OPEN_CLOEXEC | \
					 SHMBROKER_OPEN_ALLOW_NOTIFY)

/*
 * Ids. Region and grant ids come from one counter: an id names at most one
 * object, is never 0 and never reused while the module is loaded. The
 * counter starts at a random point (at least 2^32, below 2^62) drawn at each
 * module load, so an id kept from before an unload or a reboot is, with
 * overwhelming probability, unknown (ENOENT) to the new module instead of
 * naming some other region or grant. The module's load generation, a random
 * 64-bit value drawn at load, is /sys/class/misc/shmbroker/generation (16 hex
 * digits): equal values mean the same load, for callers that persist ids.
 */

struct shmbroker_create {
	__u64 size;		/* in: bytes; PAGE_SIZE multiple (2 MiB with HUGEPAGE) */
	__u32 flags;		/* in: SHMBROKER_CREATE_* */
	__u32 numa_node;	/* in: node id or SHMBROKER_NUMA_NO_NODE */
	__u64 region_id;	/* out */
	__u64 reserved[4];	/* must be zero */
};

struct shmbroker_open {
	__u64 region_id;	/* in */
	__u32 flags;		/* in: SHMBROKER_OPEN_* */
	__u32 fd;		/* out: the new grant fd */
	__u64 grant_id;		/* out */
	__u64 reserved[4];	/* must be zero */
};

struct shmbroker_revoke {
	__u64 grant_id;		/* in */
	__u32 flags;		/* in: must be zero */
	__u32 pad;		/* must be zero */
	__u64 reserved[2];	/* must be zero */
};

struct shmbroker_destroy {
	__u64 region_id;	/* in */
	__u32 flags;		/* in: must be zero */
	__u32 pad;		/* must be zero */
	__u64 reserved[2];	/* must be zero */
};

struct shmbroker_region_info {
	__u64 region_id;	/* in */
	__u64 size;		/* out: bytes */
	__u32 flags;		/* out: SHMBROKER_CREATE_* given at creation */
	__u32 numa_node;	/* out: as given at creation */
	__u32 open_grants;	/* out: grants not yet revoked */
	__u32 mappings;		/* out: live VMAs over all grants */
	__u64 reserved[4];	/* must be zero on input */
};

struct shmbroker_list {
	__u64 start_id;		/* in: report ids >= start_id, ascending */
	__u64 ids_ptr;		/* in: user pointer to __u64[count] */
	__u32 count;		/* in: capacity of ids_ptr; out: ids written */
	__u32 flags;		/* in: must be zero */
	__u64 reserved[2];	/* must be zero */
};

/*
 * The live (unrevoked) grants of one region, for a broker that restarted and
 * must find grants it has no record of (it crashed before writing one down)
 * to revoke them. ENOENT for an unknown region.
 */
struct shmbroker_list_grants {
	__u64 region_id;	/* in */
	__u64 start_id;		/* in: report grant ids >= start_id, ascending */
	__u64 ids_ptr;		/* in: user pointer to __u64[count] */
	__u32 count;		/* in: capacity of ids_ptr; out: ids written */
	__u32 flags;		/* in: must be zero */
	__u64 reserved[2];	/* must be zero */
};

/*
 * Region events (since 0.3.0): ioctls on a GRANT fd, not on /dev/shmbroker.
 *
 * Each region has a 64-bit event sequence, 0 at CREATE, and one wait queue.
 * NOTIFY adds one to the sequence and wakes every waiter of the region, on
 * every grant, in every process (broadcast, EPOLLEXCLUSIVE included: the
 * queue is shared by all grants of the region, so "wake one" would be
 * meaningless across them). Notifies coalesce: N of them before a waiter
 * runs may wake it once; the sequence tells it how many there were.
 *
 * NOTIFY needs a read-write grant, or a read-only one opened with
 * SHMBROKER_OPEN_ALLOW_NOTIFY (EPERM otherwise). Any grant may wait.
 *
 * Each grant file keeps the last sequence its holder acknowledged ("seen";
 * at OPEN, the region's sequence then). poll/select/epoll on the grant fd
 * report:
 *   EPOLLIN | EPOLLRDNORM   the region's sequence differs from seen
 *   EPOLLHUP                the grant is revoked or its region destroyed
 *                           (then only EPOLLHUP); REVOKE and DESTROY wake
 *                           every waiter, after the mappings are torn down
 * No EPOLLERR: nothing is pending to be collected, and HUP is final.
 * The state flips before the zap, so a waiter woken at that moment for
 * another reason (a NOTIFY) may see the revocation while the zap still
 * runs: revocation is complete when the REVOKE or DESTROY ioctl returns.
 * Permission comes first: NOTIFY on a revoked read-only grant without
 * ALLOW_NOTIFY is EPERM, not ENOENT.
 *
 * WAIT sets seen to last_seq, then, unless SHMBROKER_WAIT_NONBLOCK, sleeps
 * until the sequence differs from last_seq; it returns the sequence then
 * current in seq. With NONBLOCK it returns at once (seq == last_seq means
 * nothing new). No lost wake-up: a waiter reads the sequence, then the
 * shared memory, then waits with last_seq = what it read, so a notify that
 * lands after the read makes the wait return at once, and makes poll
 * report EPOLLIN, since seen is last_seq from then on. "seen" belongs to the
 * open file: processes sharing one grant file (fork, SCM_RIGHTS) share it;
 * blocking WAITs do not depend on it (each passes its own last_seq).
 *
 * A blocking WAIT is interruptible (EINTR, or restarted under SA_RESTART;
 * a fatal signal ends it). Closing the fd in another thread does not end it
 * (the ioctl holds the file); a NOTIFY, REVOKE or DESTROY does.
 *
 * Errors: EINVAL unknown flags or non-zero pad/reserved, EFAULT unreadable
 * or unwritable argument, EPERM NOTIFY not allowed on this grant, ENOENT the
 * grant is revoked (REVOKE, or DESTROY of its region), also for a WAIT
 * asleep when that happens. On /dev/shmbroker these numbers are ENOTTY.
 */
struct shmbroker_notify {
	__u64 seq;		/* out: the region's sequence after this notify */
	__u32 flags;		/* in: must be zero */
	__u32 pad;		/* must be zero */
	__u64 reserved[2];	/* must be zero */
};

/* shmbroker_wait.flags */
#define SHMBROKER_WAIT_NONBLOCK		(1U << 0)	/* acknowledge and read, never sleep */
#define SHMBROKER_WAIT_FLAGS_ALL	(SHMBROKER_WAIT_NONBLOCK)

struct shmbroker_wait {
	__u64 last_seq;		/* in: the last sequence the caller has seen */
	__u64 seq;		/* out: the region's sequence on return */
	__u32 flags;		/* in: SHMBROKER_WAIT_* */
	__u32 pad;		/* must be zero */
	__u64 reserved[2];	/* must be zero */
};

/*
 * Results. CREATE and OPEN write their results before the new region or grant
 * becomes visible to any other ioctl; when that write fails (EFAULT) nothing
 * was created, and no other caller could have seen or used the new id.
 *
 * Errors, besides the EINVAL/EFAULT/ENOTTY/ENOENT rules above:
 *   open    EPERM   no CAP_IPC_LOCK (see above)
 *   CREATE  EFBIG   size above the max_region_bytes module parameter
 *           ENOSPC  max_regions regions already exist, or the region would
 *                   take the bytes of all regions past max_total_bytes
 *           ENOMEM  pages (2 MiB ones with HUGEPAGE, on the node asked for)
 *                   unavailable, or the caller's memory cgroup is full; never
 *                   the OOM killer
 *           EINVAL  also for a numa_node that is offline or has no memory
 *   OPEN    ENOSPC  max_grants_per_region unrevoked grants already exist
 *           ENOENT  also when the region is destroyed while OPEN runs
 *   REVOKE  ENOENT  also for a grant already revoked or closed
 * On a grant fd: mmap without MAP_SHARED EINVAL, beyond the region ENXIO,
 * writable on a read-only grant EACCES, any mmap once revoked EACCES; fsync,
 * fdatasync and msync(MS_SYNC) succeed and do nothing (the pages are memory,
 * there is nothing to write back); ftruncate,
 * fchmod, fchown EPERM (EINVAL for ftruncate on a read-only grant); open
 * through /proc/PID/fd ENXIO; a touch of a revoked mapping raises SIGBUS.
 */

/*
 * 0xBD is unassigned in Documentation/userspace-api/ioctl/ioctl-number.rst
 * (checked against 6.12 and linux-next). Until 0.2 the magic was 0xB5, which
 * is rpmsg's: a shmbroker ioctl sent to the wrong fd must not mean something.
 */
#define SHMBROKER_IOC_MAGIC		0xBD

#define SHMBROKER_IOC_CREATE	_IOWR(SHMBROKER_IOC_MAGIC, 0x00, struct shmbroker_create)
#define SHMBROKER_IOC_OPEN	_IOWR(SHMBROKER_IOC_MAGIC, 0x01, struct shmbroker_open)
#define SHMBROKER_IOC_REVOKE	_IOW(SHMBROKER_IOC_MAGIC, 0x02, struct shmbroker_revoke)
#define SHMBROKER_IOC_DESTROY	_IOW(SHMBROKER_IOC_MAGIC, 0x03, struct shmbroker_destroy)
#define SHMBROKER_IOC_INFO	_IOWR(SHMBROKER_IOC_MAGIC, 0x04, struct shmbroker_region_info)
#define SHMBROKER_IOC_LIST	_IOWR(SHMBROKER_IOC_MAGIC, 0x05, struct shmbroker_list)
#define SHMBROKER_IOC_LIST_GRANTS	_IOWR(SHMBROKER_IOC_MAGIC, 0x06, struct shmbroker_list_grants)
/* On a grant fd (region events, see above). */
#define SHMBROKER_IOC_NOTIFY	_IOWR(SHMBROKER_IOC_MAGIC, 0x07, struct shmbroker_notify)
#define SHMBROKER_IOC_WAIT	_IOWR(SHMBROKER_IOC_MAGIC, 0x08, struct shmbroker_wait)

#endif /* _UAPI_LINUX_SHMBROKER_H */
