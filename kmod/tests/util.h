/* SPDX-License-Identifier: GPL-2.0 */
/* Thin wrappers over the shmbroker uAPI, shared by the cases and the stress test. */
#ifndef SHMBROKER_UTIL_H
#define SHMBROKER_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../include/uapi/linux/shmbroker.h"

#define DEV_PATH	"/dev/shmbroker"
#define SYSFS_STATS	"/sys/class/misc/shmbroker/"
#define SYSFS_PARAMS	"/sys/module/shmbroker/parameters/"
#define MiB		(1024ULL * 1024)
#define HUGE_SZ		(2 * MiB)

static int sb_dev_fd = -1;

/* The broker's handle on the device, opened on first use. */
static inline int sb_dev(void)
{
	if (sb_dev_fd < 0)
		sb_dev_fd = open(DEV_PATH, O_RDWR | O_CLOEXEC);
	if (sb_dev_fd < 0) {
		printf("# cannot open %s: %s\n", DEV_PATH, strerror(errno));
		exit(1);
	}
	return sb_dev_fd;
}

/* Closing the device must not affect regions (the broker may crash). */
static inline void sb_dev_close(void)
{
	if (sb_dev_fd >= 0)
		close(sb_dev_fd);
	sb_dev_fd = -1;
}

/* Returns the region id, or 0 with errno set. */
static inline uint64_t sb_create(uint64_t size, uint32_t flags, uint32_t node)
{
	struct shmbroker_create c = { .size = size, .flags = flags, .numa_node = node };

	if (ioctl(sb_dev(), SHMBROKER_IOC_CREATE, &c))
		return 0;
	return c.region_id;
}

static inline uint64_t sb_create_simple(uint64_t size)
{
	return sb_create(size, 0, SHMBROKER_NUMA_NO_NODE);
}

/* Returns the grant fd, or -1 with errno set. */
static inline int sb_open(uint64_t region, uint32_t flags, uint64_t *grant_id)
{
	struct shmbroker_open o = { .region_id = region, .flags = flags };

	if (ioctl(sb_dev(), SHMBROKER_IOC_OPEN, &o))
		return -1;
	if (grant_id)
		*grant_id = o.grant_id;
	return (int)o.fd;
}

static inline int sb_revoke(uint64_t grant)
{
	struct shmbroker_revoke r = { .grant_id = grant };

	return ioctl(sb_dev(), SHMBROKER_IOC_REVOKE, &r);
}

static inline int sb_destroy(uint64_t region)
{
	struct shmbroker_destroy d = { .region_id = region };

	return ioctl(sb_dev(), SHMBROKER_IOC_DESTROY, &d);
}

static inline int sb_info(uint64_t region, struct shmbroker_region_info *info)
{
	memset(info, 0, sizeof(*info));
	info->region_id = region;
	return ioctl(sb_dev(), SHMBROKER_IOC_INFO, info);
}

/* Returns the number of ids written, or -1. */
static inline int sb_list(uint64_t start, uint64_t *ids, uint32_t cap)
{
	struct shmbroker_list l = { .start_id = start, .ids_ptr = (uintptr_t)ids, .count = cap };

	if (ioctl(sb_dev(), SHMBROKER_IOC_LIST, &l))
		return -1;
	return (int)l.count;
}

/* Region events, on a grant fd. Return 0 and the sequence, or -1 with errno. */
static inline int sb_notify(int grant_fd, uint64_t *seq)
{
	struct shmbroker_notify n = { 0 };

	if (ioctl(grant_fd, SHMBROKER_IOC_NOTIFY, &n))
		return -1;
	if (seq)
		*seq = n.seq;
	return 0;
}

static inline int sb_wait(int grant_fd, uint64_t last, uint32_t flags, uint64_t *seq)
{
	struct shmbroker_wait w = { .last_seq = last, .flags = flags };

	if (ioctl(grant_fd, SHMBROKER_IOC_WAIT, &w))
		return -1;
	if (seq)
		*seq = w.seq;
	return 0;
}

static inline long long sb_read_num(const char *path)
{
	char buf[64] = "";
	long long v = -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		if (read(fd, buf, sizeof(buf) - 1) > 0)
			v = strtoll(buf, NULL, 0);
		close(fd);
	}
	return v;
}

static inline long long sb_stat(const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), SYSFS_STATS "%s", name);
	return sb_read_num(path);
}

static inline int sb_write_str(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, val, strlen(val));
	close(fd);
	return n == (ssize_t)strlen(val) ? 0 : -1;
}

static inline int sb_set_param(const char *name, unsigned long long v)
{
	char path[256], val[32];

	snprintf(path, sizeof(path), SYSFS_PARAMS "%s", name);
	snprintf(val, sizeof(val), "%llu", v);
	return sb_write_str(path, val);
}

/*
 * Runs fn(arg) in a child and returns its wait status, so a SIGBUS is
 * observed without taking the caller down.
 */
static inline int sb_in_child(void (*fn)(void *), void *arg)
{
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		fn(arg);
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	return status;
}

static inline void sb_touch_read(void *p)
{
	(void)*(volatile char *)p;
}

static inline void sb_touch_write(void *p)
{
	*(volatile char *)p = 1;
}

static inline int sb_killed_by(int status, int sig)
{
	return WIFSIGNALED(status) && WTERMSIG(status) == sig;
}

#endif
