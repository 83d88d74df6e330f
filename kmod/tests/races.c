// SPDX-License-Identifier: GPL-2.0
/*
 * Cases that attack the module the way the review of issue 15 found it
 * broken, each really attempting the failure:
 *
 *  - CREATE and OPEN whose result copy to user memory is stalled (the
 *    result page is write-protected with userfaultfd) while this thread
 *    plays every other thread of the broker: LIST, DESTROY, OPEN, REVOKE
 *    of the ids it can guess, CREATE of an unrelated region that may reuse
 *    freed memory. Then the copy is made to fail, or let through. Canary
 *    regions with mapped, patterned grants must come out untouched.
 *  - allocations sized by the caller inside a small memory cgroup: ENOMEM,
 *    never the OOM killer;
 *  - module parameters at and beyond their bounds;
 *  - DESTROY of a region with 1,024 mapped grants while clients close
 *    them, with the latency of other ioctls meanwhile (figures only).
 */
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>

#include "harness.h"
#include "util.h"

#define CANARY_SIZE	(64 * 1024)

static long ps(void)
{
	return sysconf(_SC_PAGESIZE);
}

/* ------------------------------------------------------------ canaries */

struct canary {
	uint64_t id, grant;
	int fd;
	unsigned char *p;
	unsigned char seed;
};

/* Mapped at @at (MAP_FIXED, over a reservation of the caller's) or anywhere. */
static void canary_make_at(struct canary *c, unsigned char seed, void *at)
{
	c->seed = seed;
	c->id = sb_create_simple(CANARY_SIZE);
	ASSERT_TRUE(c->id);
	c->fd = sb_open(c->id, 0, &c->grant);
	ASSERT_OK(c->fd);
	c->p = mmap(at, CANARY_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | (at ? MAP_FIXED : 0), c->fd, 0);
	ASSERT_TRUE(c->p != MAP_FAILED);
	for (size_t i = 0; i < CANARY_SIZE; i++)
		c->p[i] = (unsigned char)(seed + i * 7);
}

static void canary_make(struct canary *c, unsigned char seed)
{
	canary_make_at(c, seed, NULL);
}

static void canary_read_in_child(void *arg)
{
	struct canary *c = arg;

	for (size_t i = 0; i < CANARY_SIZE; i++)
		if (c->p[i] != (unsigned char)(c->seed + i * 7))
			_exit(2);
}

/* The region, its grant, its mapping and its bytes are all intact. */
static void canary_check(struct canary *c)
{
	struct shmbroker_region_info info;
	int st;

	ASSERT_OK(sb_info(c->id, &info));
	ASSERT_EQ(info.open_grants, 1);
	ASSERT_EQ(info.mappings, 1);
	/* In a child: a destroyed canary would SIGBUS. */
	st = sb_in_child(canary_read_in_child, c);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		FAIL("canary region %llu damaged (child status %#x)", (unsigned long long)c->id, st);
	struct pollfd pfd = { .fd = c->fd };
	ASSERT_EQ(poll(&pfd, 1, 0), 0);
}

static void canary_drop(struct canary *c)
{
	ASSERT_OK(munmap(c->p, CANARY_SIZE));
	ASSERT_OK(close(c->fd));
	ASSERT_OK(sb_destroy(c->id));
}

/* ------------------------------------------------- userfaultfd stalls */

/* One write-protected page: a kernel write to it waits until released. */
struct stall {
	int uffd;
	char *page;
	size_t len;
};

/* Maps the page and registers it; stall_arm() then protects it. */
static void stall_setup(struct stall *s)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_PAGEFAULT_FLAG_WP };
	struct uffdio_register reg;

	s->len = ps();
	s->page = mmap(NULL, s->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(s->page != MAP_FAILED);
	memset(s->page, 0, s->len);	/* populated: write-protect needs present PTEs */
	s->uffd = (int)syscall(__NR_userfaultfd, O_CLOEXEC);
	if (s->uffd < 0)
		SKIP("userfaultfd: %s", strerror(errno));
	if (ioctl(s->uffd, UFFDIO_API, &api) || !(api.features & UFFD_FEATURE_PAGEFAULT_FLAG_WP))
		SKIP("userfaultfd write-protect not supported");
	reg = (struct uffdio_register){
		.range = { .start = (uintptr_t)s->page, .len = s->len },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	ASSERT_OK(ioctl(s->uffd, UFFDIO_REGISTER, &reg));
}

/* From now on a write to the page (the kernel's included) waits for us. */
static void stall_arm(struct stall *s)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = (uintptr_t)s->page, .len = s->len },
		.mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};

	ASSERT_OK(ioctl(s->uffd, UFFDIO_WRITEPROTECT, &wp));
}

/* Waits until a write to the page is stalled; returns the faulting address. */
static uint64_t stall_wait(struct stall *s)
{
	struct pollfd pfd = { .fd = s->uffd, .events = POLLIN };
	struct uffd_msg msg;

	ASSERT_EQ(poll(&pfd, 1, 30000), 1);
	ASSERT_EQ(read(s->uffd, &msg, sizeof(msg)), sizeof(msg));
	ASSERT_EQ(msg.event, UFFD_EVENT_PAGEFAULT);
	ASSERT_TRUE(msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP);
	return msg.arg.pagefault.address;
}

/* Lets the stalled write through. */
static void stall_release(struct stall *s)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = (uintptr_t)s->page, .len = s->len },
		.mode = 0,
	};

	ASSERT_OK(ioctl(s->uffd, UFFDIO_WRITEPROTECT, &wp));
}

/* Makes the stalled write fail: the page goes away, then the writer is woken. */
static void stall_fail(struct stall *s)
{
	struct uffdio_range r = { .start = (uintptr_t)s->page, .len = s->len };

	ASSERT_OK(munmap(s->page, s->len));
	ASSERT_OK(ioctl(s->uffd, UFFDIO_WAKE, &r));
}

struct stalled_ioctl {
	pthread_t t;
	unsigned long cmd;
	void *arg;
	int rc, err;
};

static void *stalled_ioctl_fn(void *p)
{
	struct stalled_ioctl *si = p;

	si->rc = ioctl(sb_dev(), si->cmd, si->arg);
	si->err = errno;
	return NULL;
}

static void stalled_start(struct stalled_ioctl *si, unsigned long cmd, void *arg)
{
	si->cmd = cmd;
	si->arg = arg;
	ASSERT_EQ(pthread_create(&si->t, NULL, stalled_ioctl_fn, si), 0);
}

static void stalled_join(struct stalled_ioctl *si)
{
	ASSERT_EQ(pthread_join(si->t, NULL), 0);
}

/* Highest id the module has handed out, as far as this case knows. */
static uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

/*
 * Everything another thread of the broker could do while a CREATE is stalled
 * in its result copy: LIST and DESTROY whatever is not a canary, DESTROY,
 * OPEN and INFO the ids that come next. Returns how many regions it found
 * that it did not know (there must be none: the new region is not
 * published yet).
 */
static int attack_during_create(const uint64_t *known, int nknown, uint64_t last_id)
{
	uint64_t ids[64];
	struct shmbroker_region_info info;
	int n = sb_list(0, ids, 64), strangers = 0;

	ASSERT_GE(n, 0);
	for (int i = 0; i < n; i++) {
		int mine = 0;

		for (int k = 0; k < nknown; k++)
			mine |= ids[i] == known[k];
		if (mine)
			continue;
		strangers++;
		printf("#   LIST shows region %llu while its CREATE is stalled: destroying it\n",
		       (unsigned long long)ids[i]);
		sb_destroy(ids[i]);
	}
	for (uint64_t id = last_id + 1; id <= last_id + 8; id++) {
		ASSERT_ERRNO(sb_info(id, &info), ENOENT);
		ASSERT_ERRNO(sb_open(id, 0, NULL), ENOENT);
		ASSERT_ERRNO(sb_destroy(id), ENOENT);
	}
	return strangers;
}

/*
 * A CREATE stalled in its result copy, then made to fail. Before the fix the
 * region was published first: LIST found it, DESTROY freed it, the next
 * CREATE reused its memory, and the failing CREATE's cleanup destroyed that
 * unrelated region (canary b) and revoked its grants.
 */
TEST(race_create_copy_stalled_then_failed)
{
	struct canary a, b;
	struct stall s;
	struct stalled_ioctl si;
	struct shmbroker_create *c;
	int strangers;

	canary_make(&a, 0x11);
	stall_setup(&s);
	c = (void *)(s.page + 64);
	*c = (struct shmbroker_create){ .size = CANARY_SIZE, .numa_node = SHMBROKER_NUMA_NO_NODE };
	stall_arm(&s);

	stalled_start(&si, SHMBROKER_IOC_CREATE, c);
	ASSERT_EQ(stall_wait(&s) & ~(uint64_t)(ps() - 1), (uintptr_t)s.page);
	/* Stalled in the copy of region_id: the region must not be findable. */
	strangers = attack_during_create(&a.id, 1, max_u64(a.id, a.grant));
	/* An unrelated region, created meanwhile: it would reuse freed memory. */
	canary_make(&b, 0x77);
	stall_fail(&s);
	stalled_join(&si);
	/* First what the bug did: the failed CREATE took an unrelated region down. */
	canary_check(&a);
	canary_check(&b);
	ASSERT_EQ(strangers, 0);
	ASSERT_EQ(si.rc, -1);
	ASSERT_EQ(si.err, EFAULT);
	ASSERT_EQ(sb_stat("regions"), 2);
	ASSERT_EQ(sb_stat("bytes"), 2 * CANARY_SIZE);
	ASSERT_EQ(sb_stat("grants"), 2);
	canary_drop(&a);
	canary_drop(&b);
}

/* Stalled, then let through: the region appears with the id written back. */
TEST(race_create_copy_stalled_then_completed)
{
	struct canary a;
	struct stall s;
	struct stalled_ioctl si;
	struct shmbroker_create *c;
	struct shmbroker_region_info info;
	uint64_t ids[8];

	canary_make(&a, 0x22);
	stall_setup(&s);
	c = (void *)(s.page + s.len - sizeof(*c));
	*c = (struct shmbroker_create){ .size = 2 * CANARY_SIZE, .numa_node = SHMBROKER_NUMA_NO_NODE };
	stall_arm(&s);

	stalled_start(&si, SHMBROKER_IOC_CREATE, c);
	stall_wait(&s);
	ASSERT_EQ(attack_during_create(&a.id, 1, max_u64(a.id, a.grant)), 0);
	ASSERT_EQ(sb_list(0, ids, 8), 1);
	stall_release(&s);
	stalled_join(&si);
	ASSERT_EQ(si.rc, 0);
	ASSERT_TRUE(c->region_id > max_u64(a.id, a.grant));
	ASSERT_OK(sb_info(c->region_id, &info));
	ASSERT_EQ(info.size, 2 * CANARY_SIZE);
	ASSERT_EQ(sb_list(0, ids, 8), 2);
	canary_check(&a);
	ASSERT_OK(sb_destroy(c->region_id));
	canary_drop(&a);
}

/* Another thread REVOKEs the grant ids that come next; none may exist yet. */
static void attack_during_open(uint64_t last_id)
{
	for (uint64_t id = last_id + 1; id <= last_id + 8; id++)
		ASSERT_ERRNO(sb_revoke(id), ENOENT);
}

static int fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

/*
 * An OPEN stalled in its result copy while the region is destroyed: the
 * grant was never live (its id cannot be revoked meanwhile), OPEN fails with
 * ENOENT and installs no fd. Before the fix the grant was live during the
 * stall, so another thread could revoke it before its caller knew it.
 */
TEST(race_open_copy_stalled_region_destroyed)
{
	struct canary a;
	struct stall s;
	struct stalled_ioctl si;
	struct shmbroker_open *o;
	uint64_t r = sb_create_simple(CANARY_SIZE);

	ASSERT_TRUE(r);
	canary_make(&a, 0x33);
	stall_setup(&s);
	o = (void *)(s.page + 128);
	*o = (struct shmbroker_open){ .region_id = r };
	stall_arm(&s);

	stalled_start(&si, SHMBROKER_IOC_OPEN, o);
	stall_wait(&s);
	attack_during_open(max_u64(max_u64(a.id, a.grant), r));
	ASSERT_EQ(sb_stat("grants"), 1);
	ASSERT_OK(sb_destroy(r));
	stall_release(&s);
	stalled_join(&si);
	ASSERT_EQ(si.rc, -1);
	ASSERT_EQ(si.err, ENOENT);
	/* The fd number it wrote back was never installed. */
	ASSERT_TRUE(!fd_is_open((int)o->fd));
	ASSERT_EQ(sb_stat("grants"), 1);
	canary_check(&a);
	canary_drop(&a);
}

/* Stalled, then the copy fails: EFAULT, no fd, no grant, canary intact. */
TEST(race_open_copy_stalled_then_failed)
{
	struct canary a;
	struct stall s;
	struct stalled_ioctl si;
	struct shmbroker_open *o;
	uint64_t r = sb_create_simple(CANARY_SIZE);
	int probe;

	ASSERT_TRUE(r);
	canary_make(&a, 0x44);
	stall_setup(&s);
	o = (void *)(s.page + 256);
	*o = (struct shmbroker_open){ .region_id = r };
	stall_arm(&s);
	probe = dup(0);
	close(probe);

	stalled_start(&si, SHMBROKER_IOC_OPEN, o);
	stall_wait(&s);
	attack_during_open(max_u64(max_u64(a.id, a.grant), r));
	stall_fail(&s);
	stalled_join(&si);
	ASSERT_EQ(si.rc, -1);
	ASSERT_EQ(si.err, EFAULT);
	ASSERT_EQ(sb_stat("grants"), 1);
	/* The fd number OPEN reserved is free again. */
	ASSERT_EQ(dup(0), probe);
	close(probe);
	canary_check(&a);
	ASSERT_OK(sb_destroy(r));
	canary_drop(&a);
}

/* Stalled, then let through: a working grant. */
TEST(race_open_copy_stalled_then_completed)
{
	struct stall s;
	struct stalled_ioctl si;
	struct shmbroker_open *o;
	uint64_t r = sb_create_simple(CANARY_SIZE);
	char *p;

	ASSERT_TRUE(r);
	stall_setup(&s);
	o = (void *)(s.page + 512);
	*o = (struct shmbroker_open){ .region_id = r };
	stall_arm(&s);
	stalled_start(&si, SHMBROKER_IOC_OPEN, o);
	stall_wait(&s);
	attack_during_open(r);
	ASSERT_EQ(sb_stat("grants"), 0);
	stall_release(&s);
	stalled_join(&si);
	ASSERT_EQ(si.rc, 0);
	ASSERT_EQ(sb_stat("grants"), 1);
	p = mmap(NULL, CANARY_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, (int)o->fd, 0);
	ASSERT_TRUE(p != MAP_FAILED);
	p[0] = 1;
	ASSERT_OK(sb_revoke(o->grant_id));
	ASSERT_EQ(sb_stat("grants"), 0);
	ASSERT_OK(sb_destroy(r));
}

/* ---------------------------------------------------- memory cgroups */

static char cg[256];

static void memcg_enter(const char *max)
{
	FILE *f = fopen("/proc/mounts", "r");
	char dev[256], dir[256], type[64], root[256] = "", p[512], pid[32];

	ASSERT_TRUE(f);
	while (fscanf(f, "%255s %255s %63s %*s %*d %*d", dev, dir, type) == 3)
		if (!strcmp(type, "cgroup2")) {
			snprintf(root, sizeof(root), "%s", dir);
			break;
		}
	fclose(f);
	if (!root[0])
		SKIP("no cgroup2 mount");
	snprintf(p, sizeof(p), "%s/cgroup.subtree_control", root);
	sb_write_str(p, "+memory");
	snprintf(cg, sizeof(cg), "%s/shmbroker-race-%d", root, getpid());
	ASSERT_OK(mkdir(cg, 0755));
	snprintf(p, sizeof(p), "%s/memory.max", cg);
	if (access(p, F_OK))
		SKIP("memory controller not available");
	ASSERT_OK(sb_write_str(p, max));
	snprintf(p, sizeof(p), "%s/cgroup.procs", cg);
	snprintf(pid, sizeof(pid), "%d", getpid());
	ASSERT_OK(sb_write_str(p, pid));
}

static long long memcg_event(const char *name)
{
	char p[512], key[64];
	long long v, found = -1;
	FILE *f;

	snprintf(p, sizeof(p), "%s/memory.events", cg);
	f = fopen(p, "r");
	if (!f)
		return -1;
	while (fscanf(f, "%63s %lld", key, &v) == 2)
		if (!strcmp(key, name))
			found = v;
	fclose(f);
	return found;
}

static unsigned long long ram_bytes(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	unsigned long long kb = 0;

	if (f) {
		if (fscanf(f, "MemTotal: %llu kB", &kb) != 1)
			kb = 0;
		fclose(f);
	}
	return kb * 1024;
}

/*
 * A region far bigger than the creator's memory cgroup: ENOMEM, and the
 * OOM killer never runs. The first size needs a chunk array (one pointer
 * per page) bigger than the whole cgroup, which was allocated without
 * __GFP_RETRY_MAYFAIL and got the caller SIGKILLed by the memcg OOM killer;
 * the second fails on its pages.
 */
TEST(create_huge_in_small_memcg_enomem_no_oom_kill)
{
	unsigned long long ram = ram_bytes(), big;

	ASSERT_TRUE(ram > 256 * MiB);
	ASSERT_OK(sb_set_param("max_total_bytes", ram));
	big = (ram / 2) & ~(2 * MiB - 1);	/* chunk array: big / 512 bytes */
	memcg_enter("1048576");
	ASSERT_EQ(sb_create_simple(big), 0);
	ASSERT_EQ(errno, ENOMEM);
	ASSERT_EQ(sb_create_simple(64 * MiB), 0);
	ASSERT_EQ(errno, ENOMEM);
	ASSERT_EQ(sb_create(64 * MiB, SHMBROKER_CREATE_HUGEPAGE, SHMBROKER_NUMA_NO_NODE), 0);
	ASSERT_EQ(errno, ENOMEM);
	printf("#   %llu-byte CREATE in a 1 MiB memcg: ENOMEM; memory.events max=%lld oom=%lld oom_kill=%lld\n",
	       big, memcg_event("max"), memcg_event("oom"), memcg_event("oom_kill"));
	ASSERT_EQ(memcg_event("oom_kill"), 0);
	ASSERT_EQ(sb_stat("regions"), 0);
	ASSERT_EQ(sb_stat("bytes"), 0);
}

/* ---------------------------------------------------- module parameters */

static int param_write(const char *name, const char *val)
{
	char path[256];

	snprintf(path, sizeof(path), SYSFS_PARAMS "%s", name);
	return sb_write_str(path, val);
}

static long long param_read(const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), SYSFS_PARAMS "%s", name);
	return sb_read_num(path);
}

/* Each refused write fails and leaves the value as it was. */
static void param_refused(const char *name, const char *val)
{
	long long before = param_read(name);

	errno = 0;
	if (param_write(name, val) == 0)
		FAIL("%s=%s accepted", name, val);
	/* ERANGE: kstrtoul's word for a number that does not fit. */
	ASSERT_TRUE(errno == EINVAL || errno == ERANGE);
	ASSERT_EQ(param_read(name), before);
}

static void param_accepted(const char *name, unsigned long long v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%llu", v);
	ASSERT_OK(param_write(name, buf));
	ASSERT_EQ((unsigned long long)param_read(name), v);
}

TEST(module_parameters_bounded)
{
	/* (An empty write never reaches the module: write(2) of 0 bytes.) */
	static const char *const junk[] = { "abc", "-1", "1x", "18446744073709551616", " " };
	static const char *const names[] = { "max_region_bytes", "max_total_bytes",
					     "max_regions", "max_grants_per_region" };
	unsigned long long ram = ram_bytes();
	char buf[32];

	for (unsigned int n = 0; n < 4; n++) {
		for (unsigned int j = 0; j < sizeof(junk) / sizeof(junk[0]); j++)
			param_refused(names[n], junk[j]);
		param_refused(names[n], "0");
		param_refused(names[n], "18446744073709551615");
	}
	param_refused("max_region_bytes", "4095");
	snprintf(buf, sizeof(buf), "%llu", (512ULL << 30) + 1);
	param_refused("max_region_bytes", buf);
	snprintf(buf, sizeof(buf), "%llu", 2ULL << 40);	/* the one that WARNed in kvmalloc */
	param_refused("max_region_bytes", buf);
	param_accepted("max_region_bytes", 512ULL << 30);
	param_accepted("max_region_bytes", 4096);

	snprintf(buf, sizeof(buf), "%llu", ram + 4096);
	param_refused("max_total_bytes", buf);
	param_accepted("max_total_bytes", ram);
	param_accepted("max_total_bytes", 4096);

	param_refused("max_regions", "1048577");
	param_accepted("max_regions", 1048576);
	param_accepted("max_regions", 1);
	param_refused("max_grants_per_region", "65537");
	param_accepted("max_grants_per_region", 65536);
	param_accepted("max_grants_per_region", 1);

	/* At the largest region and total allowed, a region too big for RAM is refused cleanly. */
	param_accepted("max_region_bytes", 512ULL << 30);
	param_accepted("max_total_bytes", ram);
	param_accepted("max_regions", 4096);
	ASSERT_EQ(sb_create_simple(512ULL << 30), 0);
	ASSERT_EQ(errno, ENOSPC);
	ASSERT_EQ(sb_stat("regions"), 0);
	ASSERT_EQ(sb_stat("bytes"), 0);
}

TEST(create_limit_max_total_bytes_enospc)
{
	uint64_t a, b, c;

	ASSERT_OK(sb_set_param("max_total_bytes", 4 * MiB));
	a = sb_create_simple(2 * MiB);
	b = sb_create_simple(2 * MiB);
	ASSERT_TRUE(a && b);
	ASSERT_EQ(sb_create_simple(ps()), 0);
	ASSERT_EQ(errno, ENOSPC);
	ASSERT_EQ(sb_stat("regions"), 2);
	ASSERT_EQ(sb_stat("bytes"), 4 * MiB);
	ASSERT_OK(sb_destroy(a));
	c = sb_create_simple(1 * MiB);
	ASSERT_TRUE(c);
	ASSERT_OK(sb_destroy(b));
	ASSERT_OK(sb_destroy(c));
}

/* --------------------------------------------- DESTROY with 1024 grants */

struct prober {
	pthread_t t;
	uint64_t region;
	atomic_int stop;
	long long n, max_ns, total_ns;
};

static long long mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *probe_fn(void *p)
{
	struct prober *pr = p;
	struct shmbroker_region_info info;

	while (!atomic_load(&pr->stop)) {
		long long t = mono_ns(), d;

		if (sb_info(pr->region, &info))
			break;
		d = mono_ns() - t;
		pr->n++;
		pr->total_ns += d;
		if (d > pr->max_ns)
			pr->max_ns = d;
	}
	return NULL;
}

/*
 * As in production: the broker (this process) DESTROYs while a client (a
 * child, its own mm) holds 1,024 mapped grants and closes half of them
 * meanwhile, and another broker thread keeps calling INFO. Figures only
 * (the machine is shared and emulated): how long DESTROY took, and how long
 * INFO waited at most while it ran. Before 0.2.0 every INFO waited for the
 * whole DESTROY (the global mutex was held across every zap).
 */
TEST(destroy_1024_grants_while_clients_close_latency)
{
	const int n = 1024;
	const size_t len = 64 * 1024;
	struct rlimit rl = { 4096, 4096 };
	struct prober pr = { 0 };
	int *fds = calloc(n, sizeof(int)), ready[2], go[2], st;
	uint64_t id = sb_create_simple(len), other = sb_create_simple(ps());
	long long t0, t1;
	pid_t client;
	char c;

	ASSERT_OK(setrlimit(RLIMIT_NOFILE, &rl));
	ASSERT_TRUE(id && other && fds);
	for (int i = 0; i < n; i++) {
		fds[i] = sb_open(id, 0, NULL);
		ASSERT_OK(fds[i]);
	}
	ASSERT_EQ(sb_stat("grants"), n);
	ASSERT_OK(pipe(ready));
	ASSERT_OK(pipe(go));
	client = fork();
	if (client == 0) {
		char **maps = calloc(n, sizeof(char *));

		for (int i = 0; i < n; i++) {
			maps[i] = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i], 0);
			if (maps[i] == MAP_FAILED)
				_exit(2);
			for (size_t off = 0; off < len; off += 4096)
				maps[i][off] = (char)i;
		}
		if (write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(3);
		/* The client goes away piecemeal while its grants are being zapped. */
		for (int i = 0; i < n; i += 2) {
			munmap(maps[i], len);
			close(fds[i]);
		}
		if (read(go[0], &c, 1) != 1)
			_exit(4);
		/* The rest is dead: a touch is SIGBUS. */
		for (int i = 1; i < n; i += 2) {
			int s = sb_in_child(sb_touch_read, maps[i]);

			if (!sb_killed_by(s, SIGBUS))
				_exit(5);
			if (i > 16)
				break;
		}
		_exit(0);
	}
	ASSERT_TRUE(client > 0);
	/* The client's are the last references. */
	for (int i = 0; i < n; i++)
		close(fds[i]);
	ASSERT_EQ(read(ready[0], &c, 1), 1);
	ASSERT_EQ(sb_stat("mappings"), n);

	pr.region = other;
	ASSERT_EQ(pthread_create(&pr.t, NULL, probe_fn, &pr), 0);
	usleep(200 * 1000);
	atomic_store(&pr.stop, 1);
	ASSERT_EQ(pthread_join(pr.t, NULL), 0);
	printf("#   INFO idle: %lld calls, mean %lld us, max %lld us\n", pr.n,
	       pr.n ? pr.total_ns / pr.n / 1000 : 0, pr.max_ns / 1000);

	pr = (struct prober){ .region = other };
	ASSERT_EQ(pthread_create(&pr.t, NULL, probe_fn, &pr), 0);
	usleep(50 * 1000);
	ASSERT_EQ(write(go[1], "g", 1), 1);
	t0 = mono_ns();
	ASSERT_OK(sb_destroy(id));
	t1 = mono_ns();
	atomic_store(&pr.stop, 1);
	ASSERT_EQ(pthread_join(pr.t, NULL), 0);
	ASSERT_EQ(write(go[1], "g", 1), 1);
	ASSERT_EQ(waitpid(client, &st, 0), client);
	printf("#   DESTROY of a region with %d grants x %zu KiB mapped by a client closing half of them: "
	       "%lld ms; INFO meanwhile: %lld calls, mean %lld us, max %lld us\n",
	       n, len / 1024, (t1 - t0) / 1000000, pr.n, pr.n ? pr.total_ns / pr.n / 1000 : 0,
	       pr.max_ns / 1000);
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 0);
	ASSERT_EQ(sb_stat("grants"), 0);
	ASSERT_EQ(sb_stat("mappings"), 0);
	ASSERT_OK(sb_destroy(other));
}

/* ------------------------------------- address-space changes vs REVOKE */

/*
 * A thread keeps changing and touching a grant's mapping (mremap moves,
 * mprotect splits, fork with the mapping, MAP_POPULATE maps, mlock) while
 * the grant is revoked, or its region destroyed. Afterwards the mapping must
 * be dead wherever it moved to, another grant of the same region (REVOKE) or
 * a region created on the freed pages (DESTROY) must hold exactly what was
 * written through its own mapping, and an unrelated canary region must be
 * untouched. The churner writes the same pattern the checks expect, so a
 * write that got through a stale PTE shows up as a wrong byte only where it
 * must not be (the region allocated on the freed pages).
 */
enum churn_op { CHURN_MREMAP, CHURN_MPROTECT, CHURN_FORK, CHURN_POPULATE, CHURN_MLOCK };

#define CHURN_LEN	(64 * 1024)

struct churn {
	pthread_t t;
	enum churn_op op;
	int fd;
	char *volatile cur;	/* where the mapping is now */
	char *slots[2];		/* mremap bounces between these */
	atomic_int stop;
	atomic_long iters, touches, sigbus, child_sigbus, unexpected;
};

static __thread sigjmp_buf churn_jb;
static __thread volatile sig_atomic_t churn_armed;

static void churn_sigbus(int sig)
{
	if (churn_armed) {
		churn_armed = 0;
		siglongjmp(churn_jb, 1);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static unsigned char churn_byte(size_t off)
{
	return (unsigned char)(0xc3 ^ (off >> 12));
}

/* Writes the pattern into every page; a revoked page ends the pass with SIGBUS. */
static void churn_touch(struct churn *c)
{
	char *p = c->cur;

	if (sigsetjmp(churn_jb, 1)) {
		atomic_fetch_add(&c->sigbus, 1);
		return;
	}
	churn_armed = 1;
	for (size_t off = 0; off < CHURN_LEN; off += 4096) {
		p[off] = (char)churn_byte(off);
		atomic_fetch_add(&c->touches, 1);
	}
	churn_armed = 0;
}

static void *churn_fn(void *arg)
{
	struct churn *c = arg;
	int slot = 0;

	while (!atomic_load(&c->stop)) {
		switch (c->op) {
		case CHURN_MREMAP: {
			char *n = mremap(c->cur, CHURN_LEN, CHURN_LEN, MREMAP_MAYMOVE | MREMAP_FIXED,
					 c->slots[slot ^ 1]);

			if (n == MAP_FAILED)
				atomic_fetch_add(&c->unexpected, 1);
			else {
				c->cur = n;
				slot ^= 1;
			}
			break;
		}
		case CHURN_MPROTECT:
			if (mprotect(c->cur, CHURN_LEN / 2, PROT_READ) ||
			    mprotect(c->cur + CHURN_LEN / 4, CHURN_LEN / 2, PROT_READ | PROT_WRITE) ||
			    mprotect(c->cur, CHURN_LEN, PROT_READ | PROT_WRITE))
				atomic_fetch_add(&c->unexpected, 1);
			break;
		case CHURN_FORK: {
			int st;
			pid_t pid = fork();

			if (pid == 0) {
				for (size_t off = 0; off < CHURN_LEN; off += 4096)
					c->cur[off] = (char)churn_byte(off);
				_exit(0);
			}
			if (pid < 0 || waitpid(pid, &st, 0) != pid)
				atomic_fetch_add(&c->unexpected, 1);
			else if (sb_killed_by(st, SIGBUS))
				atomic_fetch_add(&c->child_sigbus, 1);
			else if (!WIFEXITED(st) || WEXITSTATUS(st))
				atomic_fetch_add(&c->unexpected, 1);
			break;
		}
		case CHURN_POPULATE: {
			char *q = mmap(NULL, CHURN_LEN, PROT_READ | PROT_WRITE,
				       MAP_SHARED | MAP_POPULATE, c->fd, 0);

			if (q != MAP_FAILED)
				munmap(q, CHURN_LEN);
			else if (errno != EACCES)
				atomic_fetch_add(&c->unexpected, 1);
			break;
		}
		case CHURN_MLOCK:
			/* Special mappings are never VM_LOCKED; mlock must still not fail or pin. */
			if (mlock(c->cur, CHURN_LEN) && errno != ENOMEM && errno != EAGAIN)
				atomic_fetch_add(&c->unexpected, 1);
			munlock(c->cur, CHURN_LEN);
			break;
		}
		churn_touch(c);
		atomic_fetch_add(&c->iters, 1);
	}
	return NULL;
}

static void churn_read_child(void *p)
{
	(void)*(volatile char *)p;
}

static void check_pattern(const unsigned char *p, const char *what)
{
	for (size_t off = 0; off < CHURN_LEN; off += 4096)
		if (p[off] != churn_byte(off))
			FAIL("%s: byte at %zu is %#x, expected %#x", what, off, p[off], churn_byte(off));
}

static void churn_race(enum churn_op op, int destroy)
{
	static const char *const names[] = { "mremap", "mprotect", "fork", "MAP_POPULATE", "mlock" };
	struct canary other;
	struct churn c = { .op = op };
	struct sigaction sa = { .sa_handler = churn_sigbus };
	uint64_t r = sb_create_simple(CHURN_LEN), g = 0;
	int fd2, st;
	unsigned char *p2;
	char *area, *fresh_at;

	ASSERT_TRUE(r);
	canary_make(&other, 0x5e);
	/*
	 * Where the DESTROY case maps its new region: reserved now, because a
	 * mapping placed anywhere later could land in the hole an mremap move
	 * just left, and the next move would unmap it.
	 */
	fresh_at = mmap(NULL, CANARY_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(fresh_at != MAP_FAILED);
	sigemptyset(&sa.sa_mask);
	ASSERT_OK(sigaction(SIGBUS, &sa, NULL));
	c.fd = sb_open(r, 0, &g);
	fd2 = sb_open(r, SHMBROKER_OPEN_RDONLY, NULL);
	ASSERT_OK(c.fd);
	ASSERT_OK(fd2);
	/* Two slots for mremap to bounce between, reserved so nothing else lands there. */
	area = mmap(NULL, 2 * CHURN_LEN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(area != MAP_FAILED);
	c.slots[0] = area;
	c.slots[1] = area + CHURN_LEN;
	c.cur = mmap(c.slots[0], CHURN_LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, c.fd, 0);
	ASSERT_TRUE(c.cur == c.slots[0]);
	p2 = mmap(NULL, CHURN_LEN, PROT_READ, MAP_SHARED, fd2, 0);
	ASSERT_TRUE(p2 != MAP_FAILED);

	ASSERT_EQ(pthread_create(&c.t, NULL, churn_fn, &c), 0);
	while (atomic_load(&c.iters) < 20)
		usleep(1000);
	if (destroy) {
		struct canary fresh;

		ASSERT_OK(sb_destroy(r));
		/* Likely on the pages DESTROY just freed: a stale PTE would write here. */
		canary_make_at(&fresh, 0x99, fresh_at);
		usleep(100 * 1000);
		atomic_store(&c.stop, 1);
		ASSERT_EQ(pthread_join(c.t, NULL), 0);
		canary_check(&fresh);
		canary_drop(&fresh);
	} else {
		ASSERT_OK(sb_revoke(g));
		usleep(100 * 1000);
		atomic_store(&c.stop, 1);
		ASSERT_EQ(pthread_join(c.t, NULL), 0);
		/* The region lives on: the read-only grant sees what was written, nothing else. */
		check_pattern(p2, "other grant of the revoked grant's region");
		ASSERT_EQ(sb_stat("grants"), 2);	/* fd2 and the canary's */
	}
	printf("#   %s %s: %ld rounds, %ld page writes, %ld SIGBUS in the thread, %ld in children\n",
	       names[op], destroy ? "vs DESTROY" : "vs REVOKE", atomic_load(&c.iters),
	       atomic_load(&c.touches), atomic_load(&c.sigbus), atomic_load(&c.child_sigbus));
	ASSERT_EQ(atomic_load(&c.unexpected), 0);
	ASSERT_GE(atomic_load(&c.sigbus), 1);	/* the revocation was seen */
	/* Wherever the mapping ended up, it is dead now. */
	st = sb_in_child(churn_read_child, c.cur);
	ASSERT_TRUE(sb_killed_by(st, SIGBUS));
	ASSERT_TRUE(mmap(NULL, CHURN_LEN, PROT_READ, MAP_SHARED, c.fd, 0) == MAP_FAILED);
	ASSERT_EQ(errno, EACCES);
	canary_check(&other);
	munmap(area, 2 * CHURN_LEN);
	munmap(fresh_at, CANARY_SIZE);
	munmap(p2, CHURN_LEN);
	close(c.fd);
	close(fd2);
	if (!destroy)
		ASSERT_OK(sb_destroy(r));
	canary_drop(&other);
}

TEST(race_revoke_vs_mremap_move)	{ churn_race(CHURN_MREMAP, 0); }
TEST(race_revoke_vs_mprotect)		{ churn_race(CHURN_MPROTECT, 0); }
TEST(race_revoke_vs_fork)		{ churn_race(CHURN_FORK, 0); }
TEST(race_revoke_vs_map_populate)	{ churn_race(CHURN_POPULATE, 0); }
TEST(race_revoke_vs_mlock)		{ churn_race(CHURN_MLOCK, 0); }
TEST(race_destroy_vs_mremap_move)	{ churn_race(CHURN_MREMAP, 1); }
TEST(race_destroy_vs_fork)		{ churn_race(CHURN_FORK, 1); }
TEST(race_destroy_vs_mlock)		{ churn_race(CHURN_MLOCK, 1); }

/* ------------------------------- ptrace, O_DIRECT, io_uring on a grant */

/* A tracer cannot read or write a tracee's grant mapping, revoked or not. */
TEST(ptrace_pokedata_into_grant_mapping_fails)
{
	struct canary a;
	uint64_t g = 0, id = sb_create_simple(CANARY_SIZE);
	int fd = sb_open(id, 0, &g), st;
	char *p = mmap(NULL, CANARY_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	pid_t pid;

	ASSERT_TRUE(p != MAP_FAILED);
	canary_make(&a, 0x61);
	memset(p, 0x42, CANARY_SIZE);
	pid = fork();
	if (pid == 0) {
		if (ptrace(PTRACE_TRACEME, 0, NULL, NULL))
			_exit(2);
		raise(SIGSTOP);
		_exit(0);
	}
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT_TRUE(WIFSTOPPED(st));
	for (int round = 0; round < 2; round++) {
		errno = 0;
		ASSERT_EQ(ptrace(PTRACE_POKEDATA, pid, p, (void *)0x4141414141414141ULL), -1);
		ASSERT_EQ(errno, EIO);
		errno = 0;
		ASSERT_EQ(ptrace(PTRACE_PEEKDATA, pid, p, NULL), -1);
		ASSERT_EQ(errno, EIO);
		errno = 0;
		ASSERT_EQ(ptrace(PTRACE_POKEDATA, pid, a.p, (void *)0x4141414141414141ULL), -1);
		ASSERT_EQ(errno, EIO);
		if (!round)
			ASSERT_OK(sb_revoke(g));
	}
	ASSERT_OK(ptrace(PTRACE_CONT, pid, NULL, NULL));
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	canary_check(&a);
	ASSERT_OK(sb_destroy(id));
	canary_drop(&a);
}

/*
 * O_DIRECT to and from a grant mapping: pinning its pages fails (EFAULT),
 * before and after REVOKE, and nothing lands in a canary. Whichever file
 * accepts O_DIRECT here: the test binary on the host's 9p mount, else a
 * tmpfs file (6.6+).
 */
TEST(o_direct_with_grant_mapping_buffer)
{
	struct canary a;
	uint64_t g = 0, id = sb_create_simple(CANARY_SIZE);
	int fd = sb_open(id, 0, &g), dfd;
	char *p = mmap(NULL, CANARY_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	char tmp[] = "/tmp/shmbroker-odirect-XXXXXX";
	ssize_t n;

	ASSERT_TRUE(p != MAP_FAILED);
	canary_make(&a, 0x62);
	dfd = open("/proc/self/exe", O_RDONLY | O_DIRECT);
	if (dfd < 0) {
		int t = mkstemp(tmp);

		ASSERT_OK(t);
		ASSERT_OK(ftruncate(t, CANARY_SIZE));
		close(t);
		dfd = open(tmp, O_RDWR | O_DIRECT);
		unlink(tmp);
	}
	if (dfd < 0)
		SKIP("no file here takes O_DIRECT: %s", strerror(errno));
	memset(p, 0x17, CANARY_SIZE);
	errno = 0;
	n = pread(dfd, p, 4096, 0);
	printf("#   O_DIRECT read into a live grant mapping: %zd (%s)\n", n, n < 0 ? strerror(errno) : "copied");
	/* GUP reports "PTE but no struct page" as EEXIST on some paths (see mapping_cannot_be_pinned). */
	ASSERT_TRUE(n == 4096 || (n == -1 && (errno == EFAULT || errno == EEXIST)));
	ASSERT_OK(sb_revoke(g));
	errno = 0;
	ASSERT_EQ(pread(dfd, p, 4096, 0), -1);
	ASSERT_TRUE(errno == EFAULT || errno == EEXIST);
	errno = 0;
	ASSERT_EQ(pwrite(dfd, p, 4096, 0), -1);
	ASSERT_TRUE(errno == EFAULT || errno == EEXIST || errno == EBADF);
	close(dfd);
	canary_check(&a);
	ASSERT_OK(sb_destroy(id));
	canary_drop(&a);
}

/* io_uring fixed buffers pin pages: a grant mapping cannot be registered. */
TEST(io_uring_register_grant_mapping_fails)
{
	struct {
		uint32_t sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle, features, wq_fd,
			resv[3];
		uint32_t sq_off[10], cq_off[10];
	} params;
	uint64_t g = 0, id = sb_create_simple(CANARY_SIZE);
	int fd = sb_open(id, 0, &g), ring;
	char *p = mmap(NULL, CANARY_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	struct iovec iov = { .iov_base = p, .iov_len = CANARY_SIZE };

	ASSERT_TRUE(p != MAP_FAILED);
	p[0] = 1;
	memset(&params, 0, sizeof(params));
	ring = (int)syscall(__NR_io_uring_setup, 4, &params);
	if (ring < 0)
		SKIP("io_uring_setup: %s", strerror(errno));
	for (int round = 0; round < 2; round++) {
		errno = 0;
		/* 0 = IORING_REGISTER_BUFFERS */
		ASSERT_EQ(syscall(__NR_io_uring_register, ring, 0, &iov, 1), -1);
		ASSERT_TRUE(errno == EFAULT || errno == EEXIST || errno == EOPNOTSUPP);
		if (!round)
			ASSERT_OK(sb_revoke(g));
	}
	close(ring);
	ASSERT_OK(sb_destroy(id));
}
