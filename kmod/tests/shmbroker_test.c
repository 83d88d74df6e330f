// SPDX-License-Identifier: GPL-2.0
/*
 * Functional cases for the shmbroker module: one case per property of the
 * uAPI contract, including every invalid input. Run as root inside a kernel
 * with the module loaded (test/vm/run-kmod-tests.js does that under qemu).
 */
#include <linux/capability.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include "harness.h"
#include "util.h"

static long page_size(void)
{
	return sysconf(_SC_PAGESIZE);
}

static void *map_grant(int fd, size_t len, int prot, off_t off)
{
	return mmap(NULL, len, prot, MAP_SHARED, fd, off);
}

static int sigbus_on_read(void *p)
{
	return sb_killed_by(sb_in_child(sb_touch_read, p), SIGBUS);
}

static int sigbus_on_write(void *p)
{
	return sb_killed_by(sb_in_child(sb_touch_write, p), SIGBUS);
}

static int child_reads_ok(void *p)
{
	int st = sb_in_child(sb_touch_read, p);

	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* ------------------------------------------------------------- device */

TEST(device_is_root_only_0600)
{
	struct stat st;

	ASSERT_OK(stat(DEV_PATH, &st));
	ASSERT_TRUE(S_ISCHR(st.st_mode));
	ASSERT_EQ(st.st_mode & 07777, 0600);
	ASSERT_EQ(st.st_uid, 0);
}

TEST(device_open_denied_to_non_root)
{
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		if (setgid(65534) || setuid(65534))
			_exit(2);
		_exit(open(DEV_PATH, O_RDWR) == -1 && errno == EACCES ? 0 : 1);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
}

TEST(ioctl_unknown_command_enotty)
{
	char buf[64] = { 0 };
	uint64_t id = sb_create_simple(page_size());
	int fd;

	ASSERT_ERRNO(ioctl(sb_dev(), _IO(SHMBROKER_IOC_MAGIC, 0x42), buf), ENOTTY);
	/* A known number with the wrong size is a different command. */
	ASSERT_ERRNO(ioctl(sb_dev(), _IOWR(SHMBROKER_IOC_MAGIC, 0x00, char[8]), buf), ENOTTY);
	ASSERT_ERRNO(ioctl(sb_dev(), _IOWR('x', 0x00, struct shmbroker_create), buf), ENOTTY);
	/* Grant fds take only NOTIFY and WAIT (events.c): device commands are unknown there. */
	ASSERT_TRUE(id);
	fd = sb_open(id, 0, NULL);
	ASSERT_OK(fd);
	ASSERT_ERRNO(ioctl(fd, SHMBROKER_IOC_CREATE, buf), ENOTTY);
	ASSERT_OK(sb_destroy(id));
}

TEST(ioctl_bad_pointers_efault)
{
	static const unsigned long cmds[] = {
		SHMBROKER_IOC_CREATE, SHMBROKER_IOC_OPEN, SHMBROKER_IOC_REVOKE,
		SHMBROKER_IOC_DESTROY, SHMBROKER_IOC_INFO, SHMBROKER_IOC_LIST,
		SHMBROKER_IOC_LIST_GRANTS,
	};

	for (unsigned int i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		ASSERT_ERRNO(ioctl(sb_dev(), cmds[i], NULL), EFAULT);
		ASSERT_ERRNO(ioctl(sb_dev(), cmds[i], (void *)1), EFAULT);
		ASSERT_ERRNO(ioctl(sb_dev(), cmds[i], (void *)-4096L), EFAULT);
	}
}

/* Results that cannot be written back must not leave a region, grant or fd behind. */
TEST(ioctl_readonly_result_efault_no_leak)
{
	long ps = page_size();
	char *ro = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct shmbroker_create *c = (void *)ro;
	struct shmbroker_open *o = (void *)(ro + 256);
	uint64_t id = sb_create_simple(ps);
	int fd_before;

	ASSERT_TRUE(ro != MAP_FAILED && id);
	c->size = ps;
	c->numa_node = SHMBROKER_NUMA_NO_NODE;
	o->region_id = id;
	ASSERT_OK(mprotect(ro, ps, PROT_READ));

	ASSERT_ERRNO(ioctl(sb_dev(), SHMBROKER_IOC_CREATE, c), EFAULT);
	ASSERT_EQ(sb_stat("regions"), 1);

	fd_before = dup(0);
	close(fd_before);
	ASSERT_ERRNO(ioctl(sb_dev(), SHMBROKER_IOC_OPEN, o), EFAULT);
	ASSERT_EQ(sb_stat("grants"), 0);
	/* The fd number that OPEN reserved was given back. */
	ASSERT_EQ(dup(0), fd_before);
	ASSERT_OK(sb_destroy(id));
}

/* ------------------------------------------------------------- CREATE */

TEST(create_and_info)
{
	struct shmbroker_region_info info;
	uint64_t id = sb_create_simple(1 * MiB);

	ASSERT_TRUE(id);
	ASSERT_OK(sb_info(id, &info));
	ASSERT_EQ(info.region_id, id);
	ASSERT_EQ(info.size, 1 * MiB);
	ASSERT_EQ(info.flags, 0);
	ASSERT_EQ(info.numa_node, SHMBROKER_NUMA_NO_NODE);
	ASSERT_EQ(info.open_grants, 0);
	ASSERT_EQ(info.mappings, 0);
	ASSERT_OK(sb_destroy(id));
}

TEST(create_zero_size_einval)
{
	ASSERT_EQ(sb_create_simple(0), 0);
	ASSERT_EQ(errno, EINVAL);
}

TEST(create_unaligned_size_einval)
{
	ASSERT_EQ(sb_create_simple(page_size() + 1), 0);
	ASSERT_EQ(errno, EINVAL);
	ASSERT_EQ(sb_create_simple(page_size() / 2), 0);
	ASSERT_EQ(errno, EINVAL);
}

TEST(create_hugepage_unaligned_size_einval)
{
	ASSERT_EQ(sb_create(1 * MiB, SHMBROKER_CREATE_HUGEPAGE, SHMBROKER_NUMA_NO_NODE), 0);
	ASSERT_EQ(errno, EINVAL);
	ASSERT_EQ(sb_create(HUGE_SZ + page_size(), SHMBROKER_CREATE_HUGEPAGE,
			    SHMBROKER_NUMA_NO_NODE), 0);
	ASSERT_EQ(errno, EINVAL);
}

TEST(create_unknown_flags_einval)
{
	for (int bit = 1; bit < 32; bit++) {
		ASSERT_EQ(sb_create(HUGE_SZ, 1U << bit, SHMBROKER_NUMA_NO_NODE), 0);
		ASSERT_EQ(errno, EINVAL);
	}
}

TEST(create_reserved_nonzero_einval)
{
	for (int i = 0; i < 4; i++) {
		struct shmbroker_create c = { .size = page_size(),
					      .numa_node = SHMBROKER_NUMA_NO_NODE };

		c.reserved[i] = 1;
		ASSERT_ERRNO(ioctl(sb_dev(), SHMBROKER_IOC_CREATE, &c), EINVAL);
	}
}

TEST(create_bad_numa_node_einval)
{
	uint32_t nodes[] = { 1024, 65535, 0x7fffffff, 0xfffffffe };

	for (unsigned int i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
		ASSERT_EQ(sb_create(page_size(), 0, nodes[i]), 0);
		ASSERT_EQ(errno, EINVAL);
	}
	/* An offline node: the test VM has exactly one node. */
	if (access("/sys/devices/system/node/node1", F_OK) != 0) {
		ASSERT_EQ(sb_create(page_size(), 0, 1), 0);
		ASSERT_EQ(errno, EINVAL);
	}
}

TEST(create_numa_node_honoured)
{
	struct shmbroker_region_info info;
	uint64_t id = sb_create(4 * MiB, 0, 0);

	ASSERT_TRUE(id);
	ASSERT_OK(sb_info(id, &info));
	ASSERT_EQ(info.numa_node, 0);
	ASSERT_OK(sb_destroy(id));
}

TEST(create_limit_max_region_bytes_efbig)
{
	uint64_t id;

	ASSERT_OK(sb_set_param("max_region_bytes", 1 * MiB));
	ASSERT_EQ(sb_create_simple(2 * MiB), 0);
	ASSERT_EQ(errno, EFBIG);
	ASSERT_EQ(sb_stat("regions"), 0);
	id = sb_create_simple(1 * MiB);
	ASSERT_TRUE(id);
	ASSERT_OK(sb_destroy(id));
}

TEST(create_limit_max_regions_enospc)
{
	uint64_t a, b, c;

	ASSERT_OK(sb_set_param("max_regions", 2));
	a = sb_create_simple(page_size());
	b = sb_create_simple(page_size());
	ASSERT_TRUE(a && b);
	ASSERT_EQ(sb_create_simple(page_size()), 0);
	ASSERT_EQ(errno, ENOSPC);
	ASSERT_EQ(sb_stat("regions"), 2);
	ASSERT_OK(sb_destroy(a));
	c = sb_create_simple(page_size());
	ASSERT_TRUE(c);
	ASSERT_OK(sb_destroy(b));
	ASSERT_OK(sb_destroy(c));
}

TEST(ids_are_never_reused)
{
	uint64_t a = sb_create_simple(page_size()), b, g1, g2;
	int f1, f2;

	ASSERT_TRUE(a);
	f1 = sb_open(a, 0, &g1);
	ASSERT_OK(f1);
	ASSERT_OK(sb_destroy(a));
	b = sb_create_simple(page_size());
	ASSERT_TRUE(b > a);
	f2 = sb_open(b, 0, &g2);
	ASSERT_OK(f2);
	ASSERT_TRUE(g2 > g1 && g1 != 0);
	ASSERT_OK(sb_destroy(b));
}

/* ---------------------------------------------------- pages and memcg */

static char cg_path[256];

static int find_cgroup2(char *root, size_t len)
{
	FILE *f = fopen("/proc/mounts", "r");
	char dev[256], dir[256], type[64];
	int found = 0;

	if (!f)
		return 0;
	while (fscanf(f, "%255s %255s %63s %*s %*d %*d", dev, dir, type) == 3) {
		if (!strcmp(type, "cgroup2")) {
			snprintf(root, len, "%s", dir);
			found = 1;
			break;
		}
	}
	fclose(f);
	return found;
}

/* Moves this process into a fresh memory cgroup; SKIPs without cgroup2. */
static void enter_memcg(const char *max)
{
	char root[256], p[512], pid[32];

	if (!find_cgroup2(root, sizeof(root)))
		SKIP("no cgroup2 mount");
	snprintf(p, sizeof(p), "%s/cgroup.subtree_control", root);
	sb_write_str(p, "+memory");
	snprintf(cg_path, sizeof(cg_path), "%s/shmbroker-test-%d", root, getpid());
	ASSERT_OK(mkdir(cg_path, 0755));
	snprintf(p, sizeof(p), "%s/memory.current", cg_path);
	if (access(p, F_OK))
		SKIP("memory controller not available");
	if (max) {
		snprintf(p, sizeof(p), "%s/memory.max", cg_path);
		ASSERT_OK(sb_write_str(p, max));
	}
	snprintf(p, sizeof(p), "%s/cgroup.procs", cg_path);
	snprintf(pid, sizeof(pid), "%d", getpid());
	ASSERT_OK(sb_write_str(p, pid));
}

static long long memcg_current(void)
{
	char p[512];

	snprintf(p, sizeof(p), "%s/memory.current", cg_path);
	return sb_read_num(p);
}

static void leave_memcg(void)
{
	char root[256], p[512], pid[32];

	find_cgroup2(root, sizeof(root));
	snprintf(p, sizeof(p), "%s/cgroup.procs", root);
	snprintf(pid, sizeof(pid), "%d", getpid());
	sb_write_str(p, pid);
	rmdir(cg_path);
}

TEST(pages_charged_to_creator_memcg)
{
	const uint64_t size = 32 * MiB, slack = 2 * MiB;
	long long before, during, after;
	uint64_t id;

	enter_memcg(NULL);
	before = memcg_current();
	id = sb_create_simple(size);
	ASSERT_TRUE(id);
	during = memcg_current();
	ASSERT_OK(sb_destroy(id));
	after = memcg_current();
	leave_memcg();
	printf("#   memory.current: before=%lld with-region=%lld after-destroy=%lld\n",
	       before, during, after);
	ASSERT_GE(during - before, (long long)(size - slack));
	ASSERT_TRUE(after <= before + (long long)slack);
}

TEST(create_over_memcg_limit_enomem_cleanly)
{
	enter_memcg("16777216");
	ASSERT_EQ(sb_create_simple(64 * MiB), 0);
	ASSERT_EQ(errno, ENOMEM);
	ASSERT_EQ(sb_create(64 * MiB, SHMBROKER_CREATE_HUGEPAGE, SHMBROKER_NUMA_NO_NODE), 0);
	ASSERT_EQ(errno, ENOMEM);
	ASSERT_EQ(sb_stat("regions"), 0);
	ASSERT_EQ(sb_stat("bytes"), 0);
	ASSERT_TRUE(memcg_current() < 2 * (long long)MiB);
	leave_memcg();
}

TEST(pages_are_zeroed)
{
	const size_t size = 8 * MiB;
	uint64_t id = sb_create_simple(size), *p;
	int fd;

	ASSERT_TRUE(id);
	fd = sb_open(id, 0, NULL);
	ASSERT_OK(fd);
	p = map_grant(fd, size, PROT_READ | PROT_WRITE, 0);
	ASSERT_TRUE(p != MAP_FAILED);
	for (size_t i = 0; i < size / sizeof(*p); i++)
		if (p[i])
			FAIL("non-zero word at offset %zu", i * sizeof(*p));
	/* Dirty it, then a new region must again read as zero. */
	memset(p, 0xa5, size);
	ASSERT_OK(munmap(p, size));
	ASSERT_OK(sb_destroy(id));
	close(fd);

	id = sb_create_simple(size);
	fd = sb_open(id, SHMBROKER_OPEN_RDONLY, NULL);
	ASSERT_OK(fd);
	p = map_grant(fd, size, PROT_READ, 0);
	ASSERT_TRUE(p != MAP_FAILED);
	for (size_t i = 0; i < size / sizeof(*p); i++)
		if (p[i])
			FAIL("non-zero word at offset %zu in a fresh region", i * sizeof(*p));
	ASSERT_OK(sb_destroy(id));
}

static uint64_t pfn_of(void *addr)
{
	uint64_t ent = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY);

	if (fd < 0)
		return 0;
	if (pread(fd, &ent, sizeof(ent), (uintptr_t)addr / page_size() * 8) != sizeof(ent))
		ent = 0;
	close(fd);
	if (!(ent >> 63))
		return 0;
	return ent & ((1ULL << 55) - 1);
}

TEST(hugepage_region_backed_by_2mib_pages)
{
	const size_t size = 4 * HUGE_SZ;
	struct shmbroker_region_info info;
	uint64_t id = sb_create(size, SHMBROKER_CREATE_HUGEPAGE, SHMBROKER_NUMA_NO_NODE);
	char *p;
	int fd;

	ASSERT_TRUE(id);
	ASSERT_OK(sb_info(id, &info));
	ASSERT_EQ(info.flags, SHMBROKER_CREATE_HUGEPAGE);
	ASSERT_EQ(sb_stat("bytes"), size);
	fd = sb_open(id, 0, NULL);
	ASSERT_OK(fd);
	p = map_grant(fd, size, PROT_READ | PROT_WRITE, 0);
	ASSERT_TRUE(p != MAP_FAILED);
	for (size_t i = 0; i < size / sizeof(uint64_t); i++)
		if (((uint64_t *)p)[i])
			FAIL("non-zero word at offset %zu of a hugepage region", i * 8);
	for (size_t off = 0; off < size; off += page_size())
		p[off] = (char)(off >> 12);
	/* Each 2 MiB chunk is physically contiguous and 2 MiB aligned. */
	for (size_t c = 0; c < size; c += HUGE_SZ) {
		uint64_t first = pfn_of(p + c);

		ASSERT_TRUE(first != 0);
		ASSERT_EQ(first % (HUGE_SZ / page_size()), 0);
		for (size_t off = page_size(); off < HUGE_SZ; off += page_size())
			ASSERT_EQ(pfn_of(p + c + off), first + off / page_size());
	}
	for (size_t off = 0; off < size; off += page_size())
		ASSERT_EQ(p[off], (char)(off >> 12));
	ASSERT_OK(sb_destroy(id));
}

TEST(hugepage_region_mapped_at_unaligned_offsets)
{
	const size_t size = 2 * HUGE_SZ;
	long ps = page_size();
	uint64_t id = sb_create(size, SHMBROKER_CREATE_HUGEPAGE, SHMBROKER_NUMA_NO_NODE);
	int fd = sb_open(id, 0, NULL);
	char *whole = map_grant(fd, size, PROT_READ | PROT_WRITE, 0);
	char *part = map_grant(fd, 3 * ps, PROT_READ, HUGE_SZ - ps);

	ASSERT_TRUE(whole != MAP_FAILED && part != MAP_FAILED);
	/* A window straddling the boundary between the two 2 MiB pages. */
	whole[HUGE_SZ - ps] = 'a';
	whole[HUGE_SZ] = 'b';
	whole[HUGE_SZ + ps] = 'c';
	ASSERT_EQ(part[0], 'a');
	ASSERT_EQ(part[ps], 'b');
	ASSERT_EQ(part[2 * ps], 'c');
	ASSERT_OK(sb_destroy(id));
}

/* ------------------------------------------------------------- OPEN */

TEST(open_grant_fd_and_fstat_size)
{
	struct shmbroker_region_info info;
	uint64_t id = sb_create_simple(3 * page_size()), gid = 0;
	struct stat st;
	int fd;

	ASSERT_TRUE(id);
	fd = sb_open(id, 0, &gid);
	ASSERT_OK(fd);
	ASSERT_TRUE(gid != 0);
	ASSERT_OK(fstat(fd, &st));
	ASSERT_EQ(st.st_size, 3 * page_size());
	ASSERT_TRUE(S_ISREG(st.st_mode));
	ASSERT_EQ(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDWR);
	ASSERT_OK(sb_info(id, &info));
	ASSERT_EQ(info.open_grants, 1);
	ASSERT_EQ(sb_stat("grants"), 1);
	close(fd);
	ASSERT_OK(sb_info(id, &info));
	ASSERT_EQ(info.open_grants, 0);
	ASSERT_OK(sb_destroy(id));
}

TEST(open_unknown_region_enoent)
{
	uint64_t id = sb_create_simple(page_size());

	ASSERT_ERRNO(sb_open(0, 0, NULL), ENOENT);
	ASSERT_ERRNO(sb_open(id + 1000, 0, NULL), ENOENT);
	ASSERT_ERRNO(sb_open(~0ULL, 0, NULL), ENOENT);
	ASSERT_OK(sb_destroy(id));
	ASSERT_ERRNO(sb_open(id, 0, NULL), ENOENT);
}

TEST(open_unknown_flags_einval)
{
	uint64_t id = sb_create_simple(page_size());

	/* Bit 2 is SHMBROKER_OPEN_ALLOW_NOTIFY (events.c). */
	for (int bit = 3; bit < 32; bit++)
		ASSERT_ERRNO(sb_open(id, 1U << bit, NULL), EINVAL);
	ASSERT_EQ(sb_stat("grants"), 0);
	ASSERT_OK(sb_destroy(id));
}

TEST(open_reserved_nonzero_einval)
{
	uint64_t id = sb_create_simple(page_size());

	for (int i = 0; i < 4; i++) {
		struct shmbroker_open o = { .region_id = id };

		o.reserved[i] = 1;
		ASSERT_ERRNO(ioctl(sb_dev(), SHMBROKER_IOC_OPEN, &o), EINVAL);
	}
	ASSERT_OK(sb_destroy(id));
}

TEST(open_cloexec_flag)
{
	uint64_t id = sb_create_simple(page_size());
	int a = sb_open(id, 0, NULL), b = sb_open(id, SHMBROKER_OPEN_CLOEXEC, NULL);

	ASSERT_OK(a);
	ASSERT_OK(b);
	ASSERT_EQ(fcntl(a, F_GETFD) & FD_CLOEXEC, 0);
	ASSERT_EQ(fcntl(b, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	ASSERT_OK(sb_destroy(id));
}

TEST(open_limit_grants_per_region_enospc)
{
	uint64_t id = sb_create_simple(page_size()), other = sb_create_simple(page_size());
	uint64_t g1 = 0;
	int f;

	ASSERT_OK(sb_set_param("max_grants_per_region", 2));
	ASSERT_OK(sb_open(id, 0, &g1));
	ASSERT_OK(sb_open(id, 0, NULL));
	ASSERT_ERRNO(sb_open(id, 0, NULL), ENOSPC);
	/* The limit is per region. */
	ASSERT_OK(sb_open(other, 0, NULL));
	/* Revoked grants no longer count. */
	ASSERT_OK(sb_revoke(g1));
	f = sb_open(id, 0, NULL);
	ASSERT_OK(f);
	ASSERT_OK(sb_destroy(id));
	ASSERT_OK(sb_destroy(other));
}

TEST(grant_reopen_through_proc_fails)
{
	uint64_t id = sb_create_simple(page_size());
	int fd = sb_open(id, 0, NULL), rofd = sb_open(id, SHMBROKER_OPEN_RDONLY, NULL);
	char path[64];
	pid_t pid;
	int status, pathfd;

	ASSERT_OK(fd);
	ASSERT_OK(rofd);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ASSERT_ERRNO(open(path, O_RDWR), ENXIO);
	ASSERT_ERRNO(open(path, O_RDONLY), ENXIO);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", rofd);
	ASSERT_ERRNO(open(path, O_RDWR), ENXIO);
	ASSERT_ERRNO(open(path, O_RDONLY), ENXIO);
	/* Going through an O_PATH fd does not help either. */
	pathfd = open(path, O_PATH);
	if (pathfd >= 0) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", pathfd);
		ASSERT_ERRNO(open(path, O_RDWR), ENXIO);
	}
	/* Nor does another process's view. */
	pid = fork();
	if (pid == 0) {
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", getppid(), rofd);
		_exit(open(path, O_RDWR) == -1 && errno == ENXIO ? 0 : 1);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ASSERT_OK(sb_destroy(id));
}

TEST(grant_ftruncate_fails)
{
	uint64_t id = sb_create_simple(2 * page_size());
	int fd = sb_open(id, 0, NULL), rofd = sb_open(id, SHMBROKER_OPEN_RDONLY, NULL);
	struct stat st;

	ASSERT_ERRNO(ftruncate(fd, page_size()), EPERM);
	ASSERT_ERRNO(ftruncate(fd, 4 * page_size()), EPERM);
	ASSERT_ERRNO(ftruncate(rofd, page_size()), EINVAL);
	ASSERT_ERRNO(fallocate(fd, 0, 0, 8 * page_size()), EOPNOTSUPP);
	ASSERT_OK(fstat(fd, &st));
	ASSERT_EQ(st.st_size, 2 * page_size());
	ASSERT_OK(sb_destroy(id));
}

TEST(grant_fchmod_fails)
{
	uint64_t id = sb_create_simple(page_size());
	int fd = sb_open(id, SHMBROKER_OPEN_RDONLY, NULL);

	ASSERT_ERRNO(fchmod(fd, 0666), EPERM);
	ASSERT_ERRNO(fchown(fd, 1000, 1000), EPERM);
	ASSERT_OK(sb_destroy(id));
}

/* ------------------------------------------------------------- mmap */

TEST(mmap_private_fails)
{
	uint64_t id = sb_create_simple(page_size());
	int fd = sb_open(id, 0, NULL), rofd = sb_open(id, SHMBROKER_OPEN_RDONLY, NULL);

	ASSERT_TRUE(mmap(NULL, page_size(), PROT_READ, MAP_PRIVATE, fd, 0) == MAP_FAILED);
	ASSERT_EQ(errno, EINVAL);
	ASSERT_TRUE(mmap(NULL, page_size(), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0) == MAP_FAILED);
	ASSERT_EQ(errno, EINVAL);
	ASSERT_TRUE(mmap(NULL, page_size(), PROT_READ, MAP_PRIVATE, rofd, 0) == MAP_FAILED);
	ASSERT_EQ(errno, EINVAL);
	ASSERT_OK(sb_destroy(id));
}

TEST(mmap_bounds_checked)
{
	long ps = page_size();
	uint64_t id = sb_create_simple(4 * ps);
	int fd = sb_open(id, 0, NULL);
	void *p;

	ASSERT_TRUE(map_grant(fd, 5 * ps, PROT_READ, 0) == MAP_FAILED);
	ASSERT_EQ(errno, ENXIO);
	ASSERT_TRUE(map_grant(fd, 2 * ps, PROT_READ, 3 * ps) == MAP_FAILED);
	ASSERT_EQ(errno, ENXIO);
	ASSERT_TRUE(map_grant(fd, ps, PROT_READ, 4 * ps) == MAP_FAILED);
	ASSERT_EQ(errno, ENXIO);
	ASSERT_TRUE(map_grant(fd, ps, PROT_READ, (off_t)1 << 50) == MAP_FAILED);
#if UINTPTR_MAX == 0xffffffffU
	/* i386: mmap2 cannot even express that offset; the C library says EINVAL. */
	ASSERT_TRUE(errno == ENXIO || errno == EINVAL);
#else
	ASSERT_EQ(errno, ENXIO);
#endif
	p = map_grant(fd, 4 * ps, PROT_READ, 0);
	ASSERT_TRUE(p != MAP_FAILED);
	ASSERT_OK(munmap(p, 4 * ps));
	p = map_grant(fd, ps, PROT_READ | PROT_WRITE, 3 * ps);
	ASSERT_TRUE(p != MAP_FAILED);
	*(volatile char *)p = 1;
	ASSERT_OK(munmap(p, ps));
	ASSERT_OK(sb_destroy(id));
}

TEST(mremap_cannot_grow)
{
	long ps = page_size();
	uint64_t id = sb_create_simple(4 * ps);
	int fd = sb_open(id, 0, NULL);
	char *p = map_grant(fd, 2 * ps, PROT_READ | PROT_WRITE, 0);

	ASSERT_TRUE(p != MAP_FAILED);
	ASSERT_TRUE(mremap(p, 2 * ps, 4 * ps, MREMAP_MAYMOVE) == MAP_FAILED);
	ASSERT_EQ(errno, EFAULT);
	ASSERT_TRUE(mremap(p, 2 * ps, 4 * ps, 0) == MAP_FAILED);
	p[0] = 7;
	ASSERT_TRUE(mremap(p, 2 * ps, ps, 0) == p);
	ASSERT_EQ(p[0], 7);
	ASSERT_OK(munmap(p, ps));
	ASSERT_OK(sb_destroy(id));
}

TEST(mmap_shared_between_grants_and_processes)
{
	const size_t size = 1 * MiB;
	uint64_t id = sb_create_simple(size);
	int a = sb_open(id, 0, NULL), b = sb_open(id, SHMBROKER_OPEN_RDONLY, NULL);
	char *pa = map_grant(a, size, PROT_READ | PROT_WRITE, 0);
	char *pb = map_grant(b, size, PROT_READ, 0);
	pid_t pid;
	int status;

	ASSERT_TRUE(pa != MAP_FAILED && pb != MAP_FAILED);
	for (size_t i = 0; i < size; i += 4096)
		pa[i] = (char)(i / 4096 + 1);
	for (size_t i = 0; i < size; i += 4096)
		ASSERT_EQ(pb[i], (char)(i / 4096 + 1));
	pid = fork();
	if (pid == 0) {
		pa[size - 1] = 'c';
		_exit(pb[0] == 1 ? 0 : 1);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ASSERT_EQ(pb[size - 1], 'c');
	ASSERT_OK(sb_destroy(id));
}

TEST(rdonly_grant_writable_mmap_fails)
{
	uint64_t id = sb_create_simple(page_size());
	int fd = sb_open(id, SHMBROKER_OPEN_RDONLY, NULL);

	ASSERT_EQ(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	ASSERT_TRUE(map_grant(fd, page_size(), PROT_READ | PROT_WRITE, 0) == MAP_FAILED);
	ASSERT_EQ(errno, EACCES);
	ASSERT_TRUE(map_grant(fd, page_size(), PROT_WRITE, 0) == MAP_FAILED);
	ASSERT_EQ(errno, EACCES);
	ASSERT_OK(sb_destroy(id));
}

TEST(rdonly_grant_mprotect_write_fails)
{
	uint64_t id = sb_create_simple(page_size());
	int fd = sb_open(id, SHMBROKER_OPEN_RDONLY, NULL);
	char *p = map_grant(fd, page_size(), PROT_READ, 0);

	ASSERT_TRUE(p != MAP_FAILED);
	ASSERT_ERRNO(mprotect(p, page_size(), PROT_READ | PROT_WRITE), EACCES);
	ASSERT_TRUE(sb_killed_by(sb_in_child(sb_touch_write, p), SIGSEGV));
	ASSERT_TRUE(child_reads_ok(p));
	ASSERT_OK(sb_destroy(id));
}

TEST(rw_grant_mprotect_roundtrip)
{
	uint64_t id = sb_create_simple(page_size());
	int fd = sb_open(id, 0, NULL);
	char *p = map_grant(fd, page_size(), PROT_READ, 0);

	ASSERT_TRUE(p != MAP_FAILED);
	ASSERT_OK(mprotect(p, page_size(), PROT_READ | PROT_WRITE));
	p[0] = 3;
	ASSERT_EQ(p[0], 3);
	ASSERT_OK(sb_destroy(id));
}

/* No page reference can be taken on a mapping, so none can outlive REVOKE. */
TEST(mapping_cannot_be_pinned)
{
	long ps = page_size();
	uint64_t id = sb_create_simple(ps);
	int fd = sb_open(id, 0, NULL), pfd[2];
	char *p = map_grant(fd, ps, PROT_READ | PROT_WRITE, 0), buf[64];
	struct iovec local = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct iovec remote;

	ASSERT_TRUE(p != MAP_FAILED);
	p[0] = 'x';
	remote = (struct iovec){ .iov_base = p, .iov_len = sizeof(buf) };
	ASSERT_ERRNO(process_vm_readv(getpid(), &local, 1, &remote, 1, 0), EFAULT);
	ASSERT_OK(pipe(pfd));
	/* GUP reports "PTE but no struct page" as EEXIST on this path. */
	errno = 0;
	ASSERT_EQ(vmsplice(pfd[1], &remote, 1, 0), -1);
	ASSERT_TRUE(errno == EFAULT || errno == EEXIST);
	/* Plain copies through the page tables work. */
	ASSERT_EQ(write(pfd[1], p, 1), 1);
	ASSERT_EQ(read(pfd[0], buf, 1), 1);
	ASSERT_EQ(buf[0], 'x');
	ASSERT_OK(sb_destroy(id));
}

/* ------------------------------------------------------------- poll */

static void *poll_forever(void *arg)
{
	struct pollfd pfd = { .fd = *(int *)arg, .events = POLLIN };

	if (poll(&pfd, 1, 30000) != 1)
		return (void *)0L;
	return (void *)(long)pfd.revents;
}

TEST(poll_hup_after_revoke)
{
	uint64_t id = sb_create_simple(page_size()), gid = 0, gid2 = 0;
	int fd = sb_open(id, 0, &gid), fd2 = sb_open(id, 0, &gid2);
	struct pollfd pfd = { .fd = fd, .events = POLLIN | POLLOUT };
	pthread_t t;
	void *rev;

	ASSERT_EQ(poll(&pfd, 1, 0), 0);
	/* A poller sleeping in the kernel is woken by the revocation. */
	ASSERT_EQ(pthread_create(&t, NULL, poll_forever, &fd), 0);
	usleep(200 * 1000);
	ASSERT_OK(sb_revoke(gid));
	ASSERT_EQ(pthread_join(t, &rev), 0);
	ASSERT_TRUE((long)rev & POLLHUP);
	ASSERT_EQ(poll(&pfd, 1, 0), 1);
	ASSERT_TRUE(pfd.revents & POLLHUP);
	/* The other grant is not revoked. */
	pfd.fd = fd2;
	ASSERT_EQ(poll(&pfd, 1, 0), 0);
	ASSERT_OK(sb_destroy(id));
	ASSERT_EQ(poll(&pfd, 1, 0), 1);
	ASSERT_TRUE(pfd.revents & POLLHUP);
}

/* ------------------------------------------------------------- REVOKE */

TEST(revoke_sigbus_in_mapping_process)
{
	uint64_t id = sb_create_simple(4 * page_size()), gid = 0;
	int fd = sb_open(id, 0, &gid), go[2], ready[2], status;
	char *p = map_grant(fd, 4 * page_size(), PROT_READ | PROT_WRITE, 0);
	pid_t pid;
	char c;

	ASSERT_TRUE(p != MAP_FAILED);
	p[0] = 1;
	ASSERT_OK(pipe(go));
	ASSERT_OK(pipe(ready));
	pid = fork();
	if (pid == 0) {
		/* Faulted in before the revocation: the PTE must be zapped. */
		(void)*(volatile char *)p;
		if (write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(3);
		(void)*(volatile char *)p;
		_exit(0);
	}
	ASSERT_EQ(read(ready[0], &c, 1), 1);
	ASSERT_OK(sb_revoke(gid));
	ASSERT_EQ(write(go[1], "g", 1), 1);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(sb_killed_by(status, SIGBUS));
	/* Same for pages that were and were not faulted in here. */
	ASSERT_TRUE(sigbus_on_read(p));
	ASSERT_TRUE(sigbus_on_write(p));
	ASSERT_TRUE(sigbus_on_read(p + 3 * page_size()));
	ASSERT_OK(sb_destroy(id));
}

TEST(revoke_hits_only_that_grant)
{
	uint64_t id = sb_create_simple(2 * page_size()), other = sb_create_simple(page_size());
	uint64_t g1 = 0, g2 = 0, g3 = 0;
	int f1 = sb_open(id, 0, &g1), f2 = sb_open(id, 0, &g2), f3 = sb_open(other, 0, &g3);
	char *p1 = map_grant(f1, 2 * page_size(), PROT_READ | PROT_WRITE, 0);
	char *p2 = map_grant(f2, 2 * page_size(), PROT_READ | PROT_WRITE, 0);
	char *p3 = map_grant(f3, page_size(), PROT_READ | PROT_WRITE, 0);
	struct shmbroker_region_info info;

	ASSERT_TRUE(p1 != MAP_FAILED && p2 != MAP_FAILED && p3 != MAP_FAILED);
	p1[0] = 42;
	p3[0] = 43;
	ASSERT_OK(sb_revoke(g1));
	ASSERT_TRUE(sigbus_on_read(p1));
	ASSERT_EQ(p2[0], 42);
	p2[page_size()] = 44;
	ASSERT_EQ(p2[page_size()], 44);
	ASSERT_TRUE(child_reads_ok(p2));
	ASSERT_EQ(p3[0], 43);
	ASSERT_OK(sb_info(id, &info));
	ASSERT_EQ(info.open_grants, 1);
	/* The revoked VMA still exists until unmapped. */
	ASSERT_EQ(info.mappings, 2);
	ASSERT_OK(munmap(p1, 2 * page_size()));
	ASSERT_OK(sb_info(id, &info));
	ASSERT_EQ(info.mappings, 1);
	ASSERT_OK(sb_destroy(id));
	ASSERT_OK(sb_destroy(other));
}

TEST(revoke_then_mmap_fails)
{
	uint64_t id = sb_create_simple(page_size()), gid = 0;
	int fd = sb_open(id, 0, &gid);

	ASSERT_OK(sb_revoke(gid));
	ASSERT_TRUE(map_grant(fd, page_size(), PROT_READ, 0) == MAP_FAILED);
	ASSERT_EQ(errno, EACCES);
	ASSERT_OK(sb_destroy(id));
}

TEST(revoke_unknown_grant_enoent)
{
	uint64_t id = sb_create_simple(page_size()), gid = 0;
	int fd = sb_open(id, 0, &gid);

	ASSERT_ERRNO(sb_revoke(0), ENOENT);
	ASSERT_ERRNO(sb_revoke(gid + 1000), ENOENT);
	ASSERT_OK(sb_revoke(gid));
	ASSERT_ERRNO(sb_revoke(gid), ENOENT);
	close(fd);
	ASSERT_ERRNO(sb_revoke(gid), ENOENT);
	fd = sb_open(id, 0, &gid);
	close(fd);
	/* A closed grant is gone. */
	ASSERT_ERRNO(sb_revoke(gid), ENOENT);
	ASSERT_OK(sb_destroy(id));
}

TEST(revoke_nonzero_flags_pad_reserved_einval)
{
	uint64_t id = sb_create_simple(page_size()), gid = 0;
	struct shmbroker_revoke r;

	ASSERT_OK(sb_open(id, 0, &gid));
	for (int bit = 0; bit < 32; bit++) {
		r = (struct shmbroker_revoke){ .grant_id = gid, .flags = 1U << bit };
		ASSERT_ERRNO(ioctl(sb_dev(), SHMBROKER_IOC_REVOKE, &r), EINVAL);
	}
	r = (struct shmbroker_revoke){ .grant_id = gid, .pad = 1 };
	ASSERT_ERRNO(ioctl(sb_dev(), SHMBROKER_IOC_REVOKE, &r), EINVAL);
	for (int i = 0; i < 2; i++) {
		r = (struct shmbroker_revoke){ .grant_id = gid };
		r.reserved[i] = 1;
		ASSERT_ERRNO(ioctl(sb_dev(), SHMBROKER_IOC_REVOKE, &r), EINVAL);
	}
	ASSERT_EQ(sb_stat("grants"), 1);
	ASSERT_OK(sb_destroy(id));
}

/* ------------------------------------------------------------- DESTROY */

TEST(destroy_revokes_every_grant_and_frees_pages)
{
	const size_t size = 4 * MiB;
	uint64_t id = sb_create_simple(size);
	int a = sb_open(id, 0, NULL), b = sb_open(id, SHMBROKER_OPEN_RDONLY, NULL);
	char *pa = map_grant(a, size, PROT_READ | PROT_WRITE, 0);
	char *pb = map_grant(b, size, PROT_READ, 0);
	struct pollfd pfd[2] = { { .fd = a }, { .fd = b } };
	struct shmbroker_region_info info;
	struct stat st;

	ASSERT_TRUE(pa != MAP_FAILED && pb != MAP_FAILED);
	memset(pa, 1, size);
	ASSERT_EQ(sb_stat("bytes"), size);
	ASSERT_OK(sb_destroy(id));
	ASSERT_EQ(sb_stat("bytes"), 0);
	ASSERT_EQ(sb_stat("regions"), 0);
	ASSERT_EQ(sb_stat("grants"), 0);
	ASSERT_TRUE(sigbus_on_read(pa));
	ASSERT_TRUE(sigbus_on_write(pa + size - 1));
	ASSERT_TRUE(sigbus_on_read(pb));
	ASSERT_EQ(poll(pfd, 2, 0), 2);
	ASSERT_TRUE(pfd[0].revents & POLLHUP);
	ASSERT_TRUE(pfd[1].revents & POLLHUP);
	ASSERT_TRUE(map_grant(a, size, PROT_READ, 0) == MAP_FAILED);
	ASSERT_ERRNO(sb_info(id, &info), ENOENT);
	/* The dead fds stay usable for fstat and close. */
	ASSERT_OK(fstat(a, &st));
	ASSERT_EQ(st.st_size, size);
	ASSERT_OK(munmap(pa, size));
	ASSERT_OK(munmap(pb, size));
	ASSERT_OK(close(a));
	ASSERT_OK(close(b));
}

TEST(destroy_unknown_region_enoent)
{
	uint64_t id = sb_create_simple(page_size());

	ASSERT_ERRNO(sb_destroy(0), ENOENT);
	ASSERT_ERRNO(sb_destroy(id + 1000), ENOENT);
	ASSERT_OK(sb_destroy(id));
	ASSERT_ERRNO(sb_destroy(id), ENOENT);
}

TEST(destroy_nonzero_flags_pad_reserved_einval)
{
	uint64_t id = sb_create_simple(page_size());
	struct shmbroker_destroy d;

	for (int bit = 0; bit < 32; bit++) {
		d = (struct shmbroker_destroy){ .region_id = id, .flags = 1U << bit };
		ASSERT_ERRNO(ioctl(sb_dev(), SHMBROKER_IOC_DESTROY, &d), EINVAL);
	}
	d = (struct shmbroker_destroy){ .region_id = id, .pad = 1 };
	ASSERT_ERRNO(ioctl(sb_dev(), SHMBROKER_IOC_DESTROY, &d), EINVAL);
	for (int i = 0; i < 2; i++) {
		d = (struct shmbroker_destroy){ .region_id = id };
		d.reserved[i] = 1;
		ASSERT_ERRNO(ioctl(sb_dev(), SHMBROKER_IOC_DESTROY, &d), EINVAL);
	}
	ASSERT_EQ(sb_stat("regions"), 1);
	ASSERT_OK(sb_destroy(id));
}

/* ---------------------------------------------------------- INFO, LIST */

TEST(info_unknown_region_enoent)
{
	struct shmbroker_region_info info;

	ASSERT_ERRNO(sb_info(0, &info), ENOENT);
	ASSERT_ERRNO(sb_info(~0ULL, &info), ENOENT);
}

TEST(info_reserved_nonzero_einval)
{
	uint64_t id = sb_create_simple(page_size());

	for (int i = 0; i < 4; i++) {
		struct shmbroker_region_info info = { .region_id = id };

		info.reserved[i] = 1;
		ASSERT_ERRNO(ioctl(sb_dev(), SHMBROKER_IOC_INFO, &info), EINVAL);
	}
	ASSERT_OK(sb_destroy(id));
}

TEST(info_counts_mappings_across_split_fork_exit)
{
	long ps = page_size();
	uint64_t id = sb_create_simple(4 * ps);
	int fd = sb_open(id, 0, NULL), go[2], status;
	struct shmbroker_region_info info;
	char *p = map_grant(fd, 4 * ps, PROT_READ | PROT_WRITE, 0);
	char *q = map_grant(fd, ps, PROT_READ, 0);
	pid_t pid;
	char c;

	ASSERT_TRUE(p != MAP_FAILED && q != MAP_FAILED);
	ASSERT_OK(sb_info(id, &info));
	ASSERT_EQ(info.mappings, 2);
	ASSERT_EQ(sb_stat("mappings"), 2);
	ASSERT_OK(munmap(p + ps, ps));		/* splits p in two */
	ASSERT_OK(sb_info(id, &info));
	ASSERT_EQ(info.mappings, 3);
	ASSERT_OK(pipe(go));
	pid = fork();
	if (pid == 0) {
		/* Exits with its mappings in place: exit must drop them. */
		p[0] = 1;
		if (read(go[0], &c, 1) != 1)
			_exit(1);
		_exit(0);
	}
	usleep(100 * 1000);
	ASSERT_OK(sb_info(id, &info));
	ASSERT_EQ(info.mappings, 6);
	ASSERT_EQ(write(go[1], "x", 1), 1);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_OK(sb_info(id, &info));
	ASSERT_EQ(info.mappings, 3);
	ASSERT_OK(munmap(p, 4 * ps));
	ASSERT_OK(munmap(q, ps));
	ASSERT_OK(sb_info(id, &info));
	ASSERT_EQ(info.mappings, 0);
	ASSERT_EQ(sb_stat("mappings"), 0);
	ASSERT_OK(sb_destroy(id));
}

TEST(list_regions_ascending_and_paged)
{
	uint64_t a = sb_create_simple(page_size()), b = sb_create_simple(page_size());
	uint64_t c = sb_create_simple(page_size()), ids[8];

	ASSERT_TRUE(a < b && b < c);
	ASSERT_EQ(sb_list(0, ids, 8), 3);
	ASSERT_EQ(ids[0], a);
	ASSERT_EQ(ids[1], b);
	ASSERT_EQ(ids[2], c);
	ASSERT_EQ(sb_list(b, ids, 8), 2);
	ASSERT_EQ(ids[0], b);
	ASSERT_EQ(ids[1], c);
	ASSERT_EQ(sb_list(0, ids, 1), 1);
	ASSERT_EQ(ids[0], a);
	ASSERT_EQ(sb_list(c + 1, ids, 8), 0);
	ASSERT_EQ(sb_list(0, NULL, 0), 0);
	/* Paging with start_id = last + 1 visits each region once. */
	{
		uint64_t next = 0, seen[3];
		int n = 0;

		while (sb_list(next, ids, 1) == 1 && n < 3) {
			seen[n++] = ids[0];
			next = ids[0] + 1;
		}
		ASSERT_EQ(n, 3);
		ASSERT_TRUE(seen[0] == a && seen[1] == b && seen[2] == c);
	}
	ASSERT_OK(sb_destroy(b));
	ASSERT_EQ(sb_list(0, ids, 8), 2);
	ASSERT_EQ(ids[1], c);
	ASSERT_OK(sb_destroy(a));
	ASSERT_OK(sb_destroy(c));
}

TEST(list_invalid_input)
{
	uint64_t id = sb_create_simple(page_size()), ids[4];
	struct shmbroker_list l;

	l = (struct shmbroker_list){ .ids_ptr = (uintptr_t)ids, .count = 4, .flags = 1 };
	ASSERT_ERRNO(ioctl(sb_dev(), SHMBROKER_IOC_LIST, &l), EINVAL);
	for (int i = 0; i < 2; i++) {
		l = (struct shmbroker_list){ .ids_ptr = (uintptr_t)ids, .count = 4 };
		l.reserved[i] = 1;
		ASSERT_ERRNO(ioctl(sb_dev(), SHMBROKER_IOC_LIST, &l), EINVAL);
	}
	l = (struct shmbroker_list){ .ids_ptr = 8, .count = 4 };
	ASSERT_ERRNO(ioctl(sb_dev(), SHMBROKER_IOC_LIST, &l), EFAULT);
	ASSERT_OK(sb_destroy(id));
}

/* -------------------------------------------------- lifetime, module */

TEST(regions_outlive_device_close_and_creator_exit)
{
	int p[2], status;
	uint64_t id = 0;
	struct shmbroker_region_info info;
	pid_t pid;

	ASSERT_OK(pipe(p));
	pid = fork();
	if (pid == 0) {
		uint64_t rid = sb_create_simple(2 * page_size());

		_exit(write(p[1], &rid, sizeof(rid)) == sizeof(rid) ? 0 : 1);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_EQ(read(p[0], &id, sizeof(id)), sizeof(id));
	ASSERT_TRUE(id);
	ASSERT_OK(sb_info(id, &info));
	ASSERT_EQ(info.size, 2 * page_size());
	ASSERT_EQ(sb_stat("regions"), 1);
	ASSERT_OK(sb_destroy(id));
}

static int try_unload(void)
{
	return (int)syscall(SYS_delete_module, "shmbroker", O_NONBLOCK);
}

static int unload_refused(void)
{
	errno = 0;
	/* EBUSY in newer kernels, EWOULDBLOCK (EAGAIN) in 6.1. */
	return try_unload() == -1 && (errno == EBUSY || errno == EWOULDBLOCK);
}

TEST(module_pinned_by_regions_and_grant_fds)
{
	uint64_t id;
	int fd;

	/* Each case runs in its own child, so only this case's fds are open. */
	id = sb_create_simple(page_size());
	ASSERT_TRUE(id);
	fd = sb_open(id, 0, NULL);
	ASSERT_OK(fd);
	sb_dev_close();
	ASSERT_TRUE(unload_refused());		/* region and grant alive */
	ASSERT_OK(sb_destroy(id));
	sb_dev_close();
	ASSERT_TRUE(unload_refused());		/* the (dead) grant fd still pins it */
	close(fd);
	/* The actual rmmod is done by the runner once every case is over. */
}

TEST(module_pinned_by_region_alone)
{
	uint64_t id = sb_create_simple(page_size());

	ASSERT_TRUE(id);
	sb_dev_close();
	ASSERT_TRUE(unload_refused());
	ASSERT_OK(sb_destroy(id));
}

TEST(sysfs_statistics)
{
	const size_t size = 2 * MiB;
	uint64_t id = sb_create_simple(size), g = 0;
	int fd;
	void *p;

	ASSERT_EQ(sb_stat("regions"), 1);
	ASSERT_EQ(sb_stat("bytes"), size);
	ASSERT_EQ(sb_stat("grants"), 0);
	fd = sb_open(id, 0, &g);
	ASSERT_EQ(sb_stat("grants"), 1);
	p = map_grant(fd, size, PROT_READ, 0);
	ASSERT_TRUE(p != MAP_FAILED);
	ASSERT_EQ(sb_stat("mappings"), 1);
	ASSERT_OK(sb_revoke(g));
	ASSERT_EQ(sb_stat("grants"), 0);
	ASSERT_OK(munmap(p, size));
	ASSERT_EQ(sb_stat("mappings"), 0);
	ASSERT_OK(sb_destroy(id));
	ASSERT_EQ(sb_stat("regions"), 0);
	ASSERT_EQ(sb_stat("bytes"), 0);
}

TEST(module_parameters_exposed)
{
	ASSERT_TRUE(sb_read_num(SYSFS_PARAMS "max_region_bytes") > 0);
	ASSERT_TRUE(sb_read_num(SYSFS_PARAMS "max_regions") > 0);
	ASSERT_TRUE(sb_read_num(SYSFS_PARAMS "max_grants_per_region") > 0);
}

TEST(module_parameter_max_total_bytes_exposed)
{
	ASSERT_TRUE(sb_read_num(SYSFS_PARAMS "max_total_bytes") > 0);
}

/* ------------------------------------------------ capability at open */

/* Raises or lowers one capability in this process's effective set (it stays permitted). */
static int set_effective_cap(int cap, int on)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d))
		return -1;
	if (on)
		d[cap / 32].effective |= 1U << (cap % 32);
	else
		d[cap / 32].effective &= ~(1U << (cap % 32));
	return (int)syscall(SYS_capset, &h, d);
}

/* Root without CAP_IPC_LOCK (a container's default set) gets EPERM. */
TEST(device_open_needs_cap_ipc_lock)
{
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		int fd;

		if (set_effective_cap(CAP_IPC_LOCK, 0))
			_exit(2);
		if (open(DEV_PATH, O_RDWR) != -1 || errno != EPERM)
			_exit(3);
		/* Same root, same owner: with only that capability back it opens. */
		if (set_effective_cap(CAP_IPC_LOCK, 1))
			_exit(4);
		fd = open(DEV_PATH, O_RDWR);
		_exit(fd >= 0 ? 0 : 5);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
	/* And the runner itself (root, every capability) can. */
	ASSERT_OK(sb_dev());
}

/* ------------------------------------------------------------ fsync */

/* memfd accepts these; portable clients call them. */
TEST(grant_fsync_and_msync_succeed)
{
	const size_t size = 4 * page_size();
	uint64_t id = sb_create_simple(size), gid = 0;
	int fd = sb_open(id, 0, &gid), rofd = sb_open(id, SHMBROKER_OPEN_RDONLY, NULL);
	char *p = map_grant(fd, size, PROT_READ | PROT_WRITE, 0);
	char *q = map_grant(rofd, size, PROT_READ, 0);

	ASSERT_TRUE(p != MAP_FAILED && q != MAP_FAILED);
	memset(p, 3, size);
	ASSERT_OK(msync(p, size, MS_SYNC));
	ASSERT_OK(msync(p, size, MS_ASYNC));
	ASSERT_OK(msync(p, size, MS_SYNC | MS_INVALIDATE));
	ASSERT_OK(msync(q, size, MS_SYNC));
	ASSERT_OK(fsync(fd));
	ASSERT_OK(fdatasync(fd));
	ASSERT_OK(fsync(rofd));
	ASSERT_EQ(q[size - 1], 3);
	ASSERT_OK(sb_revoke(gid));
	ASSERT_OK(fsync(fd));
	ASSERT_OK(sb_destroy(id));
}

/* ------------------------------------------------------------ ids */

/* Ids start at a random point per load; the load's generation is in sysfs. */
TEST(ids_from_random_base_and_generation_in_sysfs)
{
	char buf[64] = "";
	int fd = open(SYSFS_STATS "generation", O_RDONLY);
	uint64_t r1, r2, g;
	ssize_t n;

	ASSERT_OK(fd);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	ASSERT_EQ(n, 17);
	ASSERT_EQ(buf[16], '\n');
	for (int i = 0; i < 16; i++)
		ASSERT_TRUE((buf[i] >= '0' && buf[i] <= '9') || (buf[i] >= 'a' && buf[i] <= 'f'));
	ASSERT_TRUE(strtoull(buf, NULL, 16) != 0);
	r1 = sb_create_simple(page_size());
	ASSERT_TRUE(r1 >= (1ULL << 32) && r1 < (1ULL << 62));
	ASSERT_OK(sb_open(r1, 0, &g));
	r2 = sb_create_simple(page_size());
	/* One counter for regions and grants: an id names one object. */
	ASSERT_TRUE(r1 < g && g < r2);
	ASSERT_ERRNO(sb_info(g, &(struct shmbroker_region_info){ 0 }), ENOENT);
	printf("#   generation %.16s, ids %llu %llu %llu\n", buf, (unsigned long long)r1,
	       (unsigned long long)g, (unsigned long long)r2);
	ASSERT_OK(sb_destroy(r1));
	ASSERT_OK(sb_destroy(r2));
}

/* ------------------------------------------------------- LIST_GRANTS */

static int sb_list_grants(uint64_t region, uint64_t start, uint64_t *ids, uint32_t cap)
{
	struct shmbroker_list_grants l = { .region_id = region, .start_id = start,
					   .ids_ptr = (uintptr_t)ids, .count = cap };

	if (ioctl(sb_dev(), SHMBROKER_IOC_LIST_GRANTS, &l))
		return -1;
	return (int)l.count;
}

/* What a restarted broker needs: the live grants of a region, none of another's. */
TEST(list_grants_of_a_region)
{
	uint64_t a = sb_create_simple(page_size()), b = sb_create_simple(page_size());
	uint64_t ga[4], gb = 0, ids[8];
	struct shmbroker_list_grants l;
	int fd;

	for (int i = 0; i < 4; i++)
		ASSERT_OK(sb_open(a, i & 1 ? SHMBROKER_OPEN_RDONLY : 0, &ga[i]));
	ASSERT_OK(sb_open(b, 0, &gb));
	ASSERT_EQ(sb_list_grants(a, 0, ids, 8), 4);
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(ids[i], ga[i]);
	ASSERT_EQ(sb_list_grants(b, 0, ids, 8), 1);
	ASSERT_EQ(ids[0], gb);
	/* Paging, and revoked or closed grants are not listed. */
	ASSERT_EQ(sb_list_grants(a, ga[1] + 1, ids, 1), 1);
	ASSERT_EQ(ids[0], ga[2]);
	ASSERT_OK(sb_revoke(ga[2]));
	fd = sb_open(a, 0, &ga[2]);
	ASSERT_OK(fd);
	close(fd);
	ASSERT_EQ(sb_list_grants(a, 0, ids, 8), 3);
	ASSERT_TRUE(ids[0] == ga[0] && ids[1] == ga[1] && ids[2] == ga[3]);
	ASSERT_EQ(sb_list_grants(a, 0, NULL, 0), 0);
	ASSERT_ERRNO(sb_list_grants(a + 1000, 0, ids, 8), ENOENT);
	ASSERT_ERRNO(sb_list_grants(0, 0, ids, 8), ENOENT);
	l = (struct shmbroker_list_grants){ .region_id = a, .ids_ptr = (uintptr_t)ids, .count = 8, .flags = 1 };
	ASSERT_ERRNO(ioctl(sb_dev(), SHMBROKER_IOC_LIST_GRANTS, &l), EINVAL);
	for (int i = 0; i < 2; i++) {
		l = (struct shmbroker_list_grants){ .region_id = a, .ids_ptr = (uintptr_t)ids, .count = 8 };
		l.reserved[i] = 1;
		ASSERT_ERRNO(ioctl(sb_dev(), SHMBROKER_IOC_LIST_GRANTS, &l), EINVAL);
	}
	l = (struct shmbroker_list_grants){ .region_id = a, .ids_ptr = 8, .count = 8 };
	ASSERT_ERRNO(ioctl(sb_dev(), SHMBROKER_IOC_LIST_GRANTS, &l), EFAULT);
	ASSERT_OK(sb_destroy(a));
	ASSERT_ERRNO(sb_list_grants(a, 0, ids, 8), ENOENT);
	ASSERT_OK(sb_destroy(b));
}
