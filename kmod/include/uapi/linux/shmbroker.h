/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * shmbroker: kernel-backed shared-memory regions handed out by a broker.
 *
 * Only the broker opens /dev/shmbroker (mode 0600, root). It creates regions,
 * opens grant fds on them and passes those fds to clients. A grant fd is a
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
#define SHMBROKER_OPEN_FLAGS_ALL	(SHMBROKER_OPEN_RDONLY | SHMBROKER_OPEN_CLOEXEC)

/* Region and grant ids are never 0 and never reused while the module is loaded. */

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
 * Errors, besides the EINVAL/EFAULT/ENOTTY/ENOENT rules above:
 *   CREATE  EFBIG   size above the max_region_bytes module parameter
 *           ENOSPC  max_regions regions already exist
 *           ENOMEM  pages (2 MiB ones with HUGEPAGE, on the node asked for)
 *                   unavailable, or the caller's memory cgroup is full
 *   OPEN    ENOSPC  max_grants_per_region unrevoked grants already exist
 *   REVOKE  ENOENT  also for a grant already revoked or closed
 * On a grant fd: mmap without MAP_SHARED EINVAL, beyond the region ENXIO,
 * writable on a read-only grant EACCES, any mmap once revoked EACCES; ftruncate,
 * fchmod, fchown EPERM (EINVAL for ftruncate on a read-only grant); open
 * through /proc/PID/fd ENXIO; a touch of a revoked mapping raises SIGBUS.
 */

#define SHMBROKER_IOC_MAGIC		0xB5

#define SHMBROKER_IOC_CREATE	_IOWR(SHMBROKER_IOC_MAGIC, 0x00, struct shmbroker_create)
#define SHMBROKER_IOC_OPEN	_IOWR(SHMBROKER_IOC_MAGIC, 0x01, struct shmbroker_open)
#define SHMBROKER_IOC_REVOKE	_IOW(SHMBROKER_IOC_MAGIC, 0x02, struct shmbroker_revoke)
#define SHMBROKER_IOC_DESTROY	_IOW(SHMBROKER_IOC_MAGIC, 0x03, struct shmbroker_destroy)
#define SHMBROKER_IOC_INFO	_IOWR(SHMBROKER_IOC_MAGIC, 0x04, struct shmbroker_region_info)
#define SHMBROKER_IOC_LIST	_IOWR(SHMBROKER_IOC_MAGIC, 0x05, struct shmbroker_list)

#endif /* _UAPI_LINUX_SHMBROKER_H */
