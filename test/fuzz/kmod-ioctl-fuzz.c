// SPDX-License-Identifier: Apache-2.0
/*
 * Fuzzer for the shmbroker.ko ioctls (run as root inside the test VM, see
 * test/vm/guest.d/50-reliability.sh): several threads issue random CREATE,
 * OPEN, REVOKE, DESTROY, INFO and LIST calls with random and mutated structs
 * (flags, reserved fields, sizes, ids, pointers: NULL, unaligned, unmapped,
 * read-only, kernel addresses), plus unknown command numbers, and use what
 * they get (mmap with random lengths/offsets/protections, touch, munmap,
 * close) while other threads revoke and destroy the same regions. Each grant
 * fd also gets random NOTIFY and WAIT calls (region events: WAIT always with
 * NONBLOCK, so a valid one never sleeps) and unknown commands.
 *
 *   kmod-ioctl-fuzz [CALLS] [THREADS] [SEED]
 *
 * While it runs, max_region_bytes is lowered to 1 MiB (restored after) so
 * that random valid sizes cannot exhaust the VM's memory. At the end every
 * region it created is destroyed and the module's sysfs counters must be
 * back where they were. An errno outside the documented set is a failure;
 * the caller checks dmesg for kernel warnings. Prints one JSON line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../kmod/include/uapi/linux/shmbroker.h"

#define POOL 64
#define PARAM "/sys/module/shmbroker/parameters/max_region_bytes"
#define SYSFS "/sys/class/misc/shmbroker/"

static int dev;
static _Atomic uint64_t regions[POOL];
static _Atomic uint64_t grants[POOL];
static atomic_long calls, ok, unexpected, enotty, einval, efault, enoent, efbig, enospc, enomem, other_expected;
static atomic_long creates, opens, revokes, destroys, mmaps, touches, sigbus, unknown_cmds;
static atomic_long grant_ioctls, grant_ok, grant_eperm;
static long total_calls;
static __thread sigjmp_buf jb;
static __thread volatile sig_atomic_t armed;
static void *ro_page, *unmapped;

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void on_fault(int sig)
{
	if (armed) {
		armed = 0;
		siglongjmp(jb, 1);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static uint64_t pick_u64(uint64_t *s, _Atomic uint64_t *pool)
{
	switch (rnd(s) % 8) {
	case 0: return 0;
	case 1: return ~0ULL;
	case 2: return rnd(s);
	case 3: return rnd(s) % 64;
	default: return atomic_load(&pool[rnd(s) % POOL]);
	}
}

static uint64_t pick_size(uint64_t *s)
{
	static const uint64_t edge[] = { 0, 1, 4095, 4096, 4097, 8192, 65536, 1 << 20, (1 << 20) + 4096, 2 << 20, 1ULL << 63,
					 ~0ULL, ~0ULL - 4095, 1ULL << 32, (1ULL << 32) + 4096, 16ULL << 30, (16ULL << 30) + 4096 };
	switch (rnd(s) % 4) {
	case 0: return edge[rnd(s) % (sizeof(edge) / sizeof(edge[0]))];
	case 1: return rnd(s);
	case 2: return (rnd(s) & ~4095ULL);
	default: return 4096 * (1 + rnd(s) % 16);
	}
}

/* A user pointer for the ioctl argument: mostly the real struct. */
static void *pick_ptr(uint64_t *s, void *good)
{
	switch (rnd(s) % 16) {
	case 0: return NULL;
	case 1: return (char *)good + 1 + rnd(s) % 7;
	case 2: return unmapped;
	case 3: return ro_page;
	case 4: return (void *)0xffff888000000000ULL;
	case 5: return (void *)(uintptr_t)rnd(s);
	default: return good;
	}
}

static void count_errno(int e, int cmd_known)
{
	switch (e) {
	case ENOTTY: atomic_fetch_add(&enotty, 1); if (cmd_known) goto bad; return;
	case EINVAL: atomic_fetch_add(&einval, 1); return;
	case EFAULT: atomic_fetch_add(&efault, 1); return;
	case ENOENT: atomic_fetch_add(&enoent, 1); return;
	case EFBIG: atomic_fetch_add(&efbig, 1); return;
	case ENOSPC: atomic_fetch_add(&enospc, 1); return;
	case ENOMEM: atomic_fetch_add(&enomem, 1); return;
	case EMFILE: case ENFILE: case E2BIG: case EOVERFLOW: atomic_fetch_add(&other_expected, 1); return;
	}
bad:
	if (atomic_fetch_add(&unexpected, 1) < 10)
		printf("# unexpected errno %d (%s) cmd_known=%d\n", e, strerror(e), cmd_known);
}

/* Region-event ioctls on a grant fd: documented errnos are EINVAL, EFAULT, EPERM, ENOENT, ENOTTY. */
static void grant_ioctl(uint64_t *s, int fd)
{
	union {
		struct shmbroker_notify n;
		struct shmbroker_wait w;
		unsigned char bytes[64];
	} u;
	unsigned long cmd;
	int known = 1;

	if (rnd(s) % 4 == 0)
		for (size_t k = 0; k < sizeof(u); k++)
			u.bytes[k] = (unsigned char)rnd(s);
	else
		memset(&u, 0, sizeof(u));
	switch (rnd(s) % 5) {
	case 0: case 1:
		cmd = SHMBROKER_IOC_NOTIFY;
		if (rnd(s) % 5 == 0) u.n.flags = (uint32_t)rnd(s);
		if (rnd(s) % 6 == 0) u.n.reserved[rnd(s) % 2] = rnd(s);
		break;
	case 2: case 3:
		cmd = SHMBROKER_IOC_WAIT;
		u.w.last_seq = rnd(s) % 2 ? 0 : rnd(s);
		if (rnd(s) % 5 == 0) u.w.flags = (uint32_t)rnd(s);
		u.w.flags |= SHMBROKER_WAIT_NONBLOCK; /* never sleeps */
		if (rnd(s) % 6 == 0) u.w.pad = (uint32_t)rnd(s);
		if (rnd(s) % 6 == 0) u.w.reserved[rnd(s) % 2] = rnd(s);
		break;
	default: {
		/* Device commands, and others of the magic, mean nothing on a grant fd. */
		static const unsigned long dev_cmds[] = { SHMBROKER_IOC_CREATE, SHMBROKER_IOC_OPEN, SHMBROKER_IOC_REVOKE,
							  SHMBROKER_IOC_DESTROY, SHMBROKER_IOC_INFO, SHMBROKER_IOC_LIST,
							  SHMBROKER_IOC_LIST_GRANTS };
		known = 0;
		cmd = rnd(s) % 2 ? dev_cmds[rnd(s) % 7] : (unsigned long)_IOC(rnd(s) % 4, SHMBROKER_IOC_MAGIC, 9 + rnd(s) % 247, rnd(s) % 512);
		break;
	}
	}
	atomic_fetch_add(&grant_ioctls, 1);
	void *argp = pick_ptr(s, &u);
	/*
	 * A WAIT read from anywhere but u could be a valid blocking one that
	 * nothing ever ends: shifted into u, the zeroed read-only page, or
	 * "unmapped", whose address a later mmap (a grant's zeroed page) may
	 * reuse: seen hanging a run. So only u, NULL or a kernel address.
	 */
	if (cmd == SHMBROKER_IOC_WAIT && argp != (void *)&u)
		argp = rnd(s) % 2 ? NULL : (void *)0xffff888000000000ULL;
	if (ioctl(fd, cmd, argp) == 0) {
		atomic_fetch_add(&grant_ok, 1);
		if (!known && atomic_fetch_add(&unexpected, 1) < 10)
			printf("# command %#lx succeeded on a grant fd\n", cmd);
		return;
	}
	if (errno == EPERM && cmd == SHMBROKER_IOC_NOTIFY) {
		atomic_fetch_add(&grant_eperm, 1); /* a read-only grant without ALLOW_NOTIFY */
		return;
	}
	count_errno(errno, known);
}

static void use_grant(uint64_t *s, int fd, uint64_t size)
{
	size_t len = rnd(s) % 3 ? size : (rnd(s) % 4 + 1) * 4096;
	off_t off = rnd(s) % 4 ? 0 : (off_t)(rnd(s) % 4) * 4096;
	int prot = rnd(s) % 2 ? PROT_READ : PROT_READ | PROT_WRITE;
	int flags = rnd(s) % 8 ? MAP_SHARED : MAP_PRIVATE;
	if (len == 0 || len > (8u << 20))
		len = 4096;
	unsigned char *m = mmap(NULL, len, prot, flags, fd, off);
	if (m == MAP_FAILED)
		return;
	atomic_fetch_add(&mmaps, 1);
	for (size_t i = 0; i < len; i += 4096 * (1 + rnd(s) % 3)) {
		if (sigsetjmp(jb, 1) == 0) {
			armed = 1;
			if (prot & PROT_WRITE)
				m[i] = (unsigned char)i;
			else
				(void)*(volatile unsigned char *)&m[i];
			armed = 0;
			atomic_fetch_add(&touches, 1);
		} else {
			atomic_fetch_add(&sigbus, 1); /* revoked or destroyed by another thread meanwhile */
		}
	}
	if (rnd(s) % 4 == 0)
		mremap(m, len, len * 2, MREMAP_MAYMOVE) == MAP_FAILED ? (void)0 : (void)0;
	if (rnd(s) % 4 == 0)
		mprotect(m, len, PROT_READ | PROT_WRITE);
	munmap(m, len);
}

static void *worker(void *arg)
{
	uint64_t s = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ULL + 1;
	uint64_t *ids = calloc(65536, sizeof(uint64_t));
	int ring[8] = { -1, -1, -1, -1, -1, -1, -1, -1 }; /* grant fds kept open a while, so revokes meet live grants */
	unsigned char raw[512];
	for (;;) {
		long n = atomic_fetch_add(&calls, 1);
		if (n >= total_calls)
			break;
		unsigned long cmd;
		int known = 1;
		union {
			struct shmbroker_create c;
			struct shmbroker_open o;
			struct shmbroker_revoke r;
			struct shmbroker_destroy d;
			struct shmbroker_region_info i;
			struct shmbroker_list l;
			unsigned char bytes[256];
		} u;
		/* Start from random bytes (mutated struct) or zeros (valid-looking). */
		if (rnd(&s) % 4 == 0)
			for (size_t k = 0; k < sizeof(u); k++)
				u.bytes[k] = (unsigned char)rnd(&s);
		else
			memset(&u, 0, sizeof(u));
		int op = rnd(&s) % 20;
		switch (op) {
		case 0: case 1: case 2:
			cmd = SHMBROKER_IOC_CREATE;
			u.c.size = pick_size(&s);
			if (rnd(&s) % 3 == 0) u.c.flags = (uint32_t)rnd(&s) & (rnd(&s) % 2 ? SHMBROKER_CREATE_FLAGS_ALL : ~0u);
			u.c.numa_node = rnd(&s) % 3 ? SHMBROKER_NUMA_NO_NODE : (uint32_t)rnd(&s) % 4;
			if (rnd(&s) % 6 == 0) u.c.reserved[rnd(&s) % 4] = rnd(&s);
			break;
		case 3: case 4: case 5: case 6:
			cmd = SHMBROKER_IOC_OPEN;
			u.o.region_id = pick_u64(&s, regions);
			u.o.flags = rnd(&s) % 5 ? (uint32_t)(rnd(&s) % 4) : (uint32_t)rnd(&s);
			if (rnd(&s) % 6 == 0) u.o.reserved[rnd(&s) % 4] = rnd(&s);
			if (rnd(&s) % 8 == 0) u.o.fd = (uint32_t)rnd(&s);
			break;
		case 7: case 8:
			cmd = SHMBROKER_IOC_REVOKE;
			u.r.grant_id = pick_u64(&s, grants);
			if (rnd(&s) % 5 == 0) u.r.flags = (uint32_t)rnd(&s);
			if (rnd(&s) % 5 == 0) u.r.pad = (uint32_t)rnd(&s);
			if (rnd(&s) % 6 == 0) u.r.reserved[rnd(&s) % 2] = rnd(&s);
			break;
		case 9: case 10:
			cmd = SHMBROKER_IOC_DESTROY;
			u.d.region_id = pick_u64(&s, regions);
			if (rnd(&s) % 5 == 0) u.d.flags = (uint32_t)rnd(&s);
			if (rnd(&s) % 5 == 0) u.d.pad = (uint32_t)rnd(&s);
			if (rnd(&s) % 6 == 0) u.d.reserved[rnd(&s) % 2] = rnd(&s);
			break;
		case 11: case 12: case 13:
			cmd = SHMBROKER_IOC_INFO;
			u.i.region_id = pick_u64(&s, regions);
			if (rnd(&s) % 6 == 0) u.i.reserved[rnd(&s) % 4] = rnd(&s);
			break;
		case 14: case 15: case 16:
			cmd = SHMBROKER_IOC_LIST;
			u.l.start_id = rnd(&s) % 3 ? 0 : pick_u64(&s, regions);
			u.l.count = rnd(&s) % 4 ? (uint32_t)(rnd(&s) % 65537) : (uint32_t)rnd(&s) % 65537;
			switch (rnd(&s) % 6) {
			case 0: u.l.ids_ptr = 0; break;
			case 1: u.l.ids_ptr = (uint64_t)(uintptr_t)ro_page; u.l.count = 1 + rnd(&s) % 512; break;
			case 2: u.l.ids_ptr = (uint64_t)(uintptr_t)unmapped; break;
			case 3: u.l.ids_ptr = 0xffff888000000000ULL; break;
			default: u.l.ids_ptr = (uint64_t)(uintptr_t)ids; break;
			}
			if (rnd(&s) % 5 == 0) u.l.flags = (uint32_t)rnd(&s);
			if (rnd(&s) % 6 == 0) u.l.reserved[rnd(&s) % 2] = rnd(&s);
			break;
		default: {
			/* An unknown or malformed command: wrong magic, nr, size or direction. */
			known = 0;
			atomic_fetch_add(&unknown_cmds, 1);
			static const unsigned long valid[] = { SHMBROKER_IOC_CREATE, SHMBROKER_IOC_OPEN, SHMBROKER_IOC_REVOKE,
							       SHMBROKER_IOC_DESTROY, SHMBROKER_IOC_INFO, SHMBROKER_IOC_LIST };
			switch (rnd(&s) % 4) {
			case 0: cmd = _IOC(rnd(&s) % 4, SHMBROKER_IOC_MAGIC, 6 + rnd(&s) % 250, rnd(&s) % 512); break;
			case 1: cmd = valid[rnd(&s) % 6] ^ (1UL << (16 + rnd(&s) % 14)); break; /* size or direction bits changed */
			case 2: cmd = _IOC(_IOC_NONE, SHMBROKER_IOC_MAGIC, rnd(&s) % 6, 0); break;
			default: cmd = (unsigned long)(uint32_t)rnd(&s); break;
			}
			for (int k = 0; k < 6; k++)
				if (cmd == valid[k])
					known = 1;
			for (size_t k = 0; k < sizeof(raw); k++)
				raw[k] = (unsigned char)rnd(&s);
			long rc = ioctl(dev, cmd, rnd(&s) % 2 ? (void *)raw : pick_ptr(&s, raw));
			if (rc >= 0) {
				atomic_fetch_add(&ok, 1);
				if (!known && atomic_fetch_add(&unexpected, 1) < 10)
					printf("# unknown command %#lx succeeded\n", cmd);
			} else {
				count_errno(errno, 1 /* ENOTTY is right here, anything else also documented */ && 0);
			}
			continue;
		}
		}
		void *argp = pick_ptr(&s, &u);
		long rc = ioctl(dev, cmd, argp);
		if (rc < 0) {
			count_errno(errno, known);
			continue;
		}
		atomic_fetch_add(&ok, 1);
		if (argp != (void *)&u)
			continue; /* a misaligned pointer that happened to work: its output is not in u */
		if (cmd == SHMBROKER_IOC_CREATE) {
			atomic_fetch_add(&creates, 1);
			uint64_t old = atomic_exchange(&regions[rnd(&s) % POOL], u.c.region_id);
			if (old && rnd(&s) % 2) {
				struct shmbroker_destroy d = { .region_id = old };
				ioctl(dev, SHMBROKER_IOC_DESTROY, &d);
			}
		} else if (cmd == SHMBROKER_IOC_OPEN) {
			atomic_fetch_add(&opens, 1);
			atomic_store(&grants[rnd(&s) % POOL], u.o.grant_id);
			struct shmbroker_region_info inf = { .region_id = u.o.region_id };
			uint64_t size = ioctl(dev, SHMBROKER_IOC_INFO, &inf) == 0 ? inf.size : 4096;
			for (int k = rnd(&s) % 4; k > 0; k--)
				grant_ioctl(&s, (int)u.o.fd);
			use_grant(&s, (int)u.o.fd, size);
			if (rnd(&s) % 2) {
				close((int)u.o.fd);
			} else {
				int slot = (int)(rnd(&s) % 8);
				if (ring[slot] >= 0) {
					grant_ioctl(&s, ring[slot]); /* maybe revoked meanwhile: ENOENT */
					use_grant(&s, ring[slot], size); /* maybe revoked meanwhile: mmap fails or touches SIGBUS */
					close(ring[slot]);
				}
				ring[slot] = (int)u.o.fd;
			}
		} else if (cmd == SHMBROKER_IOC_REVOKE) {
			atomic_fetch_add(&revokes, 1);
		} else if (cmd == SHMBROKER_IOC_DESTROY) {
			atomic_fetch_add(&destroys, 1);
		}
	}
	for (int k = 0; k < 8; k++)
		if (ring[k] >= 0)
			close(ring[k]);
	free(ids);
	return NULL;
}

static long sysfs_counter(const char *name)
{
	char path[128], buf[64];
	snprintf(path, sizeof(path), SYSFS "%s", name);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	long v = -1;
	if (fgets(buf, sizeof(buf), f))
		v = strtol(buf, NULL, 10);
	fclose(f);
	return v;
}

static int list_ids(uint64_t *out, uint32_t cap)
{
	uint32_t n = 0;
	uint64_t start = 0;
	for (;;) {
		struct shmbroker_list l = { .start_id = start, .ids_ptr = (uint64_t)(uintptr_t)(out + n), .count = cap - n };
		if (l.count == 0 || ioctl(dev, SHMBROKER_IOC_LIST, &l) < 0 || l.count == 0)
			return (int)n;
		n += l.count;
		start = out[n - 1] + 1;
	}
}

int main(int argc, char **argv)
{
	total_calls = argc > 1 ? atol(argv[1]) : 100000;
	int threads = argc > 2 ? atoi(argv[2]) : 4;
	uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 0) : 1;
	dev = open("/dev/shmbroker", O_RDWR | O_CLOEXEC);
	if (dev < 0) {
		perror("/dev/shmbroker");
		return 2;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fault;
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	ro_page = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unmapped = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(unmapped, 4096);

	static uint64_t before[8192], after[8192];
	int nbefore = list_ids(before, 8192);
	long regions0 = sysfs_counter("regions"), grants0 = sysfs_counter("grants"), mappings0 = sysfs_counter("mappings"), bytes0 = sysfs_counter("bytes");
	char saved[64] = "";
	FILE *p = fopen(PARAM, "r");
	if (p) {
		if (!fgets(saved, sizeof(saved), p))
			saved[0] = 0;
		fclose(p);
	}
	p = fopen(PARAM, "w");
	if (!p || fprintf(p, "1048576\n") < 0 || fclose(p) != 0) {
		fprintf(stderr, "cannot lower %s\n", PARAM);
		return 2;
	}

	pthread_t *t = calloc((size_t)threads, sizeof(*t));
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(seed * 1000 + (uint64_t)i + 1));
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);

	/* Destroy every region this run left, then the counters must be back. */
	int nafter = list_ids(after, 8192);
	int leftover = 0;
	for (int i = 0; i < nafter; i++) {
		int known = 0;
		for (int j = 0; j < nbefore; j++)
			known |= after[i] == before[j];
		if (known)
			continue;
		struct shmbroker_destroy d = { .region_id = after[i] };
		if (ioctl(dev, SHMBROKER_IOC_DESTROY, &d) == 0)
			leftover++;
	}
	p = fopen(PARAM, "w");
	if (p) {
		fputs(saved[0] ? saved : "17179869184\n", p);
		fclose(p);
	}
	close(dev);
	/* Grant fds are all closed; destroyed regions free their pages when the last grant goes. */
	long regions1 = -1, grants1 = -1, mappings1 = -1, bytes1 = -1;
	for (int tries = 0; tries < 50; tries++) {
		regions1 = sysfs_counter("regions");
		grants1 = sysfs_counter("grants");
		mappings1 = sysfs_counter("mappings");
		bytes1 = sysfs_counter("bytes");
		if (regions1 == regions0 && grants1 == grants0 && mappings1 == mappings0 && bytes1 == bytes0)
			break;
		usleep(100000);
	}
	int counters_ok = regions1 == regions0 && grants1 == grants0 && mappings1 == mappings0 && bytes1 == bytes0;
	printf("{\"calls\":%ld,\"threads\":%d,\"seed\":%llu,\"ok\":%ld,\"unexpected\":%ld,\"errno\":{\"ENOTTY\":%ld,\"EINVAL\":%ld,\"EFAULT\":%ld,\"ENOENT\":%ld,\"EFBIG\":%ld,\"ENOSPC\":%ld,\"ENOMEM\":%ld,\"other\":%ld},"
	       "\"grantIoctls\":%ld,\"grantOk\":%ld,\"grantEperm\":%ld,"
	       "\"creates\":%ld,\"opens\":%ld,\"revokes\":%ld,\"destroys\":%ld,\"unknownCmds\":%ld,\"mmaps\":%ld,\"touches\":%ld,\"sigbus\":%ld,\"leftoverDestroyed\":%d,"
	       "\"counters\":{\"regions\":[%ld,%ld],\"grants\":[%ld,%ld],\"mappings\":[%ld,%ld],\"bytes\":[%ld,%ld]},\"countersBack\":%s}\n",
	       total_calls, threads, (unsigned long long)seed, atomic_load(&ok), atomic_load(&unexpected), atomic_load(&enotty), atomic_load(&einval),
	       atomic_load(&efault), atomic_load(&enoent), atomic_load(&efbig), atomic_load(&enospc), atomic_load(&enomem), atomic_load(&other_expected),
	       atomic_load(&grant_ioctls), atomic_load(&grant_ok), atomic_load(&grant_eperm),
	       atomic_load(&creates), atomic_load(&opens), atomic_load(&revokes), atomic_load(&destroys), atomic_load(&unknown_cmds), atomic_load(&mmaps),
	       atomic_load(&touches), atomic_load(&sigbus), leftover, regions0, regions1, grants0, grants1, mappings0, mappings1, bytes0, bytes1,
	       counters_ok ? "true" : "false");
	return atomic_load(&unexpected) == 0 && counters_ok ? 0 : 1;
}
