// SPDX-License-Identifier: GPL-2.0
/*
 * `shmbroker_test --reload-races MODULE.ko`: unload and reload the module,
 * so it runs as a step of its own after every other user of the module is
 * done (test/vm/run-kmod-tests.js), and leaves the module loaded.
 *
 * Each round: a region with grants (one mapped and touched), DESTROY, then
 * one thread closes the grant fds, the last one last, while this thread
 * calls delete_module() in a loop. The module must refuse to go while any
 * grant file exists (EBUSY/EAGAIN), then go, with no kernel warning (the
 * runner checks dmesg). Then it is loaded again, and everything the old
 * load handed out must be unknown to the new one: its generation differs,
 * and every id of the previous load (regions and grants) is ENOENT.
 */
#include <pthread.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>

#include "harness.h"
#include "util.h"

#define ROUNDS	5
#define GRANTS	8

static int load(const char *ko)
{
	int fd = open(ko, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0)
		return -1;
	rc = (int)syscall(SYS_finit_module, fd, "", 0);
	close(fd);
	return rc;
}

static int loaded(void)
{
	return access("/sys/module/shmbroker", F_OK) == 0;
}

static int read_generation(char *buf, size_t len)
{
	int fd = open(SYSFS_STATS "generation", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	return 0;
}

struct closer {
	int fds[GRANTS];
	volatile int go;
};

static void *close_all(void *p)
{
	struct closer *c = p;

	while (!c->go)
		;
	for (int i = 0; i < GRANTS; i++) {
		close(c->fds[i]);
		usleep(1000);
	}
	return NULL;
}

#define CHECK(cond, ...) do {						\
		if (!(cond)) {						\
			printf("not ok 0 - " __VA_ARGS__);		\
			printf(" (errno %d %s)\n", errno, strerror(errno)); \
			return 1;					\
		}							\
	} while (0)

int shmbroker_reload_races(const char *ko)
{
	uint64_t old_ids[ROUNDS * (GRANTS + 1)];
	char gen[ROUNDS + 1][32];
	int nold = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	CHECK(loaded(), "module loaded at start");
	CHECK(read_generation(gen[0], sizeof(gen[0])) == 0, "read generation");
	for (int round = 0; round < ROUNDS; round++) {
		struct closer c = { .go = 0 };
		pthread_t t;
		long busy = 0;
		uint64_t region;
		time_t deadline = time(NULL) + 60;
		char *p;
		int rc;

		region = sb_create_simple(64 * 1024);
		CHECK(region, "round %d: create", round);
		old_ids[nold++] = region;
		for (int i = 0; i < GRANTS; i++) {
			c.fds[i] = sb_open(region, i & 1 ? SHMBROKER_OPEN_RDONLY : 0, &old_ids[nold]);
			CHECK(c.fds[i] >= 0, "round %d: open", round);
			nold++;
		}
		p = mmap(NULL, 64 * 1024, PROT_READ | PROT_WRITE, MAP_SHARED, c.fds[0], 0);
		CHECK(p != MAP_FAILED, "round %d: mmap", round);
		p[0] = 1;
		CHECK(munmap(p, 64 * 1024) == 0, "munmap");
		CHECK(sb_destroy(region) == 0, "round %d: destroy", round);
		sb_dev_close();

		CHECK(pthread_create(&t, NULL, close_all, &c) == 0, "thread");
		c.go = 1;
		for (;;) {
			rc = (int)syscall(SYS_delete_module, "shmbroker", O_NONBLOCK);
			if (rc == 0)
				break;
			CHECK(errno == EBUSY || errno == EAGAIN, "round %d: delete_module", round);
			busy++;
			if (!(busy & 1023) && time(NULL) > deadline)
				break;
		}
		pthread_join(t, NULL);
		CHECK(rc == 0, "round %d: module never unloaded", round);
		CHECK(!loaded(), "round %d: /sys/module/shmbroker gone", round);
		printf("ok %d - unload raced the last grant close: refused %ld times, then unloaded\n",
		       round + 1, busy);

		CHECK(load(ko) == 0, "round %d: reload %s", round, ko);
		CHECK(read_generation(gen[round + 1], sizeof(gen[0])) == 0, "generation after reload");
		for (int k = 0; k <= round; k++)
			CHECK(strcmp(gen[k], gen[round + 1]) != 0, "round %d: generation repeated", round);
		/* Nothing of an earlier load means anything to this one. */
		for (int i = 0; i < nold; i++) {
			struct shmbroker_region_info info;

			errno = 0;
			CHECK(sb_info(old_ids[i], &info) == -1 && errno == ENOENT, "old id %llu known",
			      (unsigned long long)old_ids[i]);
			errno = 0;
			CHECK(sb_revoke(old_ids[i]) == -1 && errno == ENOENT, "old id %llu revocable",
			      (unsigned long long)old_ids[i]);
		}
		region = sb_create_simple(4096);
		CHECK(region, "create after reload");
		for (int i = 0; i < nold; i++)
			CHECK(region != old_ids[i], "new region id %llu equals one of an earlier load",
			      (unsigned long long)region);
		CHECK(sb_destroy(region) == 0, "destroy");
		sb_dev_close();
		printf("ok %d - reloaded: generation %.16s, none of %d earlier ids known\n", round + 1 + ROUNDS,
		       gen[round + 1], nold);
	}
	return 0;
}
