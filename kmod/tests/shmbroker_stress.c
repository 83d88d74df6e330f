// SPDX-License-Identifier: GPL-2.0
/*
 * Multi-threaded, multi-process stress of the shmbroker module: OPEN, mmap,
 * page faults, munmap, close, fork+exit with live mappings, REVOKE and
 * DESTROY+CREATE all racing on a small set of regions, so that every path
 * meets every other one. Expected failures (ENOENT for a region or grant
 * that just went away, EACCES for mmap of a just-revoked grant, SIGBUS when
 * touching a just-revoked mapping) are counted; anything else fails the run.
 * At the end every counter in sysfs must be back to zero.
 *
 * Region events ride along: workers NOTIFY through each grant they open
 * (EPERM expected on read-only ones), and one "eventer" thread per process
 * sleeps in WAIT, poll and epoll on grants of its own that the revokers and
 * managers revoke and destroy under it, so the region wait queue meets
 * REVOKE, DESTROY, close and exit.
 *
 * Knobs (environment): SHMBROKER_STRESS_SECONDS (default 20),
 * SHMBROKER_STRESS_PROCS (default 3), SHMBROKER_STRESS_THREADS (workers per
 * process, default 4).
 *
 * Longer than the house's ~400 lines on purpose: one program, so that every
 * path races every other one in the same run.
 */
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <time.h>

#include "util.h"

#define NR_REGIONS	8
#define NR_GRANT_SLOTS	64

struct shared {
	_Atomic uint64_t regions[NR_REGIONS];
	_Atomic uint64_t grants[NR_GRANT_SLOTS];
	atomic_int stop;
	atomic_llong opens, open_gone, mmaps, mmap_revoked, pages_touched, sigbus;
	atomic_llong munmaps, splits, closes, forks, child_sigbus;
	atomic_llong revokes, revoke_gone, destroys, destroy_gone, creates, polls_hup;
	atomic_llong notifies, notify_eperm, notify_gone, waits_seq, waits_gone, waits_intr, ev_hup;
	atomic_llong unexpected;
};

static struct shared *S;
static __thread sigjmp_buf jb;
static __thread volatile sig_atomic_t armed;

#define UNEXPECTED(fmt, ...) do {					\
		printf("# unexpected: " fmt " (errno %d %s)\n", ##__VA_ARGS__, errno, strerror(errno)); \
		atomic_fetch_add(&S->unexpected, 1);			\
	} while (0)

static void on_sigbus(int sig)
{
	if (armed) {
		armed = 0;
		siglongjmp(jb, 1);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t region_size(uint64_t r, uint32_t *flags)
{
	static const uint64_t sizes[] = { 64 << 10, 256 << 10, 1 << 20 };

	*flags = 0;
	if (r % 8 == 0) {
		*flags = SHMBROKER_CREATE_HUGEPAGE;
		return HUGE_SZ;
	}
	return sizes[r % 3];
}

/* Touches every page; returns 1 if it got SIGBUS (revoked underneath). */
static int touch(volatile char *p, size_t len, int write)
{
	size_t off;

	if (sigsetjmp(jb, 1)) {
		atomic_fetch_add(&S->sigbus, 1);
		return 1;
	}
	armed = 1;
	for (off = 0; off < len; off += 4096) {
		if (write)
			p[off] = (char)off;
		else
			(void)p[off];
	}
	armed = 0;
	atomic_fetch_add(&S->pages_touched, len / 4096);
	return 0;
}

static void *worker(void *arg)
{
	uint64_t seed = (uintptr_t)arg * 0x9e3779b97f4a7c15ULL + getpid();

	while (!atomic_load(&S->stop)) {
		uint64_t r = rnd(&seed), id, gid = 0;
		struct shmbroker_region_info info;
		struct stat st;
		int rdonly = r & 1, fd, early_close = r & 2;
		size_t len;
		char *p;

		id = atomic_load(&S->regions[r % NR_REGIONS]);
		if (!id)
			continue;
		fd = sb_open(id, rdonly ? SHMBROKER_OPEN_RDONLY : 0, &gid);
		if (fd < 0) {
			if (errno == ENOENT)
				atomic_fetch_add(&S->open_gone, 1);
			else
				UNEXPECTED("OPEN %llu", (unsigned long long)id);
			continue;
		}
		atomic_fetch_add(&S->opens, 1);
		/* Hand the grant to the revokers. */
		atomic_store(&S->grants[(r >> 8) % NR_GRANT_SLOTS], gid);

		/* INFO may race with DESTROY; only its error code is checked. */
		if (sb_info(id, &info) && errno != ENOENT)
			UNEXPECTED("INFO");
		if (fstat(fd, &st))
			UNEXPECTED("fstat");
		len = st.st_size;
		p = mmap(NULL, len, rdonly ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED) {
			if (errno == EACCES)
				atomic_fetch_add(&S->mmap_revoked, 1);
			else
				UNEXPECTED("mmap len %zu", len);
			close(fd);
			atomic_fetch_add(&S->closes, 1);
			continue;
		}
		atomic_fetch_add(&S->mmaps, 1);
		if (!sb_notify(fd, NULL))
			atomic_fetch_add(&S->notifies, 1);
		else if (errno == EPERM && rdonly)
			atomic_fetch_add(&S->notify_eperm, 1);
		else if (errno == ENOENT)
			atomic_fetch_add(&S->notify_gone, 1);
		else
			UNEXPECTED("NOTIFY");
		if (early_close) {
			/* The VMA keeps the grant file alive. */
			close(fd);
			atomic_fetch_add(&S->closes, 1);
		}
		touch(p, len, !rdonly);

		if ((r >> 16) % 8 == 0) {
			/* A child that inherits the mapping, faults and exits without munmap. */
			pid_t pid = fork();
			int st;

			if (pid == 0) {
				signal(SIGBUS, SIG_DFL);
				for (size_t off = 0; off < len; off += 4096)
					(void)((volatile char *)p)[off];
				_exit(0);
			}
			if (pid > 0 && waitpid(pid, &st, 0) == pid) {
				atomic_fetch_add(&S->forks, 1);
				if (sb_killed_by(st, SIGBUS))
					atomic_fetch_add(&S->child_sigbus, 1);
				else if (!WIFEXITED(st) || WEXITSTATUS(st))
					UNEXPECTED("child status %#x", st);
			} else {
				UNEXPECTED("fork");
			}
		}
		if (len > 4096 && (r >> 20) % 4 == 0) {
			/* Split the VMA, touch again, then unmap both halves. */
			if (munmap(p + 4096, 4096))
				UNEXPECTED("munmap split");
			atomic_fetch_add(&S->splits, 1);
			touch(p, 4096, 0);
		}
		if (!early_close) {
			struct pollfd pfd = { .fd = fd };

			if (poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLHUP))
				atomic_fetch_add(&S->polls_hup, 1);
		}
		if (munmap(p, len))
			UNEXPECTED("munmap");
		atomic_fetch_add(&S->munmaps, 1);
		if (!early_close) {
			close(fd);
			atomic_fetch_add(&S->closes, 1);
		}
	}
	return NULL;
}

static void on_usr1(int sig)
{
	(void)sig;
}

/*
 * Waits on grants it opens (handed to the revokers) until a notify, a
 * revocation or a destroy ends the wait: blocking WAIT, poll and epoll in
 * turn. At the end run_process() interrupts a WAIT left asleep (SIGUSR1,
 * no SA_RESTART: EINTR).
 */
static void *eventer(void *arg)
{
	uint64_t seed = (uintptr_t)arg * 31 + getpid();

	while (!atomic_load(&S->stop)) {
		uint64_t r = rnd(&seed), id, gid = 0, seq, got;
		int fd, how = r % 3;

		id = atomic_load(&S->regions[r % NR_REGIONS]);
		if (!id)
			continue;
		fd = sb_open(id, SHMBROKER_OPEN_RDONLY, &gid);
		if (fd < 0) {
			if (errno != ENOENT)
				UNEXPECTED("OPEN (eventer)");
			continue;
		}
		atomic_store(&S->grants[(r >> 8) % NR_GRANT_SLOTS], gid);
		if (sb_wait(fd, 0, SHMBROKER_WAIT_NONBLOCK, &seq)) {
			if (errno == ENOENT)
				atomic_fetch_add(&S->waits_gone, 1);
			else
				UNEXPECTED("WAIT nonblock");
			close(fd);
			continue;
		}
		if (how == 0) {
			if (!sb_wait(fd, seq, 0, &got)) {
				if (got == seq)
					UNEXPECTED("WAIT woke with the same sequence");
				atomic_fetch_add(&S->waits_seq, 1);
			} else if (errno == ENOENT) {
				atomic_fetch_add(&S->waits_gone, 1);
			} else if (errno == EINTR) {
				atomic_fetch_add(&S->waits_intr, 1);
			} else {
				UNEXPECTED("WAIT");
			}
		} else {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
			int ep = -1, n, rev = 0;

			/* seen == seq now: only a later notify or an end is reported. */
			if (how == 1) {
				n = poll(&pfd, 1, 200);
				rev = pfd.revents;
			} else {
				ep = epoll_create1(EPOLL_CLOEXEC);
				if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev))
					UNEXPECTED("epoll");
				n = epoll_wait(ep, &ev, 1, 200);
				rev = n == 1 ? (int)ev.events : 0;
				close(ep);
			}
			if (n < 0 && errno != EINTR)
				UNEXPECTED("poll/epoll");
			if (rev & POLLHUP)
				atomic_fetch_add(&S->ev_hup, 1);
			else if (rev & POLLIN)
				atomic_fetch_add(&S->waits_seq, 1);
		}
		close(fd);
	}
	return NULL;
}

static void *revoker(void *arg)
{
	uint64_t seed = (uintptr_t)arg + 77 + getpid();

	while (!atomic_load(&S->stop)) {
		uint64_t gid = atomic_exchange(&S->grants[rnd(&seed) % NR_GRANT_SLOTS], 0);

		if (!gid) {
			usleep(100);
			continue;
		}
		if (!sb_revoke(gid))
			atomic_fetch_add(&S->revokes, 1);
		else if (errno == ENOENT)
			atomic_fetch_add(&S->revoke_gone, 1);
		else
			UNEXPECTED("REVOKE");
	}
	return NULL;
}

/* Two of these race: both may DESTROY the same id; exactly one wins. */
static void *manager(void *arg)
{
	uint64_t seed = (uintptr_t)arg + 4242;

	while (!atomic_load(&S->stop)) {
		uint64_t r = rnd(&seed), id, fresh;
		int slot = r % NR_REGIONS;
		uint32_t flags;
		uint64_t size = region_size(r >> 8, &flags);

		id = atomic_load(&S->regions[slot]);
		if (id) {
			if (!sb_destroy(id))
				atomic_fetch_add(&S->destroys, 1);
			else if (errno == ENOENT)
				atomic_fetch_add(&S->destroy_gone, 1);
			else
				UNEXPECTED("DESTROY");
		}
		fresh = sb_create(size, flags, SHMBROKER_NUMA_NO_NODE);
		if (!fresh) {
			UNEXPECTED("CREATE %llu", (unsigned long long)size);
			continue;
		}
		atomic_fetch_add(&S->creates, 1);
		if (!atomic_compare_exchange_strong(&S->regions[slot], &id, fresh)) {
			/* The other manager replaced it first. */
			if (sb_destroy(fresh))
				UNEXPECTED("DESTROY fresh");
			else
				atomic_fetch_add(&S->destroys, 1);
		}
		usleep(2000 + r % 3000);
	}
	return NULL;
}

static int env_int(const char *name, int def)
{
	const char *v = getenv(name);

	return v && *v ? atoi(v) : def;
}

static void run_process(int idx, int threads)
{
	struct sigaction sa = { .sa_handler = on_usr1 };
	pthread_t t[64], ev;
	int n = 0, have_ev;

	sigaction(SIGUSR1, &sa, NULL);
	for (int i = 0; i < threads && n < 63; i++)
		if (!pthread_create(&t[n], NULL, worker, (void *)(uintptr_t)(idx * 100 + i)))
			n++;
	if (!pthread_create(&t[n], NULL, revoker, (void *)(uintptr_t)idx))
		n++;
	have_ev = !pthread_create(&ev, NULL, eventer, (void *)(uintptr_t)idx);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	/* A WAIT still asleep when nothing notifies any more: interrupt it. */
	while (have_ev && pthread_tryjoin_np(ev, NULL)) {
		pthread_kill(ev, SIGUSR1);
		usleep(10000);
	}
}

int main(void)
{
	int seconds = env_int("SHMBROKER_STRESS_SECONDS", 20);
	int procs = env_int("SHMBROKER_STRESS_PROCS", 3);
	int threads = env_int("SHMBROKER_STRESS_THREADS", 4);
	struct sigaction sa = { .sa_handler = on_sigbus, .sa_flags = SA_NODEFER };
	pthread_t mgr[2];
	pid_t pids[32];
	int failed = 0, nproc = 0;
	long long ops;
	double t0, el;

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("TAP version 13\n1..1\n");
	if (procs > 32)
		procs = 32;
	S = mmap(NULL, sizeof(*S), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (S == MAP_FAILED)
		return 1;
	memset(S, 0, sizeof(*S));
	sigaction(SIGBUS, &sa, NULL);

	for (int i = 0; i < NR_REGIONS; i++) {
		uint32_t flags;
		uint64_t size = region_size(i, &flags);

		S->regions[i] = sb_create(size, flags, SHMBROKER_NUMA_NO_NODE);
		if (!S->regions[i])
			UNEXPECTED("initial CREATE");
	}
	t0 = now();
	for (int i = 0; i < procs; i++) {
		pid_t pid = fork();

		if (pid == 0) {
			/* Each process uses its own handle on the device. */
			sb_dev_close();
			run_process(i + 1, threads);
			_exit(0);
		}
		if (pid > 0)
			pids[nproc++] = pid;
	}
	pthread_create(&mgr[0], NULL, manager, (void *)1);
	pthread_create(&mgr[1], NULL, manager, (void *)2);

	while (now() - t0 < seconds)
		usleep(100 * 1000);
	atomic_store(&S->stop, 1);
	pthread_join(mgr[0], NULL);
	pthread_join(mgr[1], NULL);
	for (int i = 0; i < nproc; i++) {
		int st;

		if (waitpid(pids[i], &st, 0) != pids[i] || !WIFEXITED(st) || WEXITSTATUS(st)) {
			printf("# worker process %d ended with status %#x\n", pids[i], st);
			failed = 1;
		}
	}
	el = now() - t0;
	for (int i = 0; i < NR_REGIONS; i++)
		if (S->regions[i] && sb_destroy(S->regions[i]))
			UNEXPECTED("final DESTROY");
	sb_dev_close();

	ops = S->opens + S->open_gone + S->mmaps + S->mmap_revoked + S->munmaps + S->splits +
	      S->closes + S->forks + S->revokes + S->revoke_gone + S->destroys + S->destroy_gone +
	      S->creates;
	printf("# stress: processes=%d threads=%d (workers %d x %d, revokers %d, eventers %d, managers 2) "
	       "duration=%.1fs operations=%lld (%.0f/s) pages_faulted=%lld\n",
	       procs, procs * (threads + 2) + 2, procs, threads, procs, procs, el, ops, ops / el,
	       (long long)S->pages_touched);
	printf("# stress: opens=%lld open_enoent=%lld mmaps=%lld mmap_revoked=%lld munmaps=%lld "
	       "splits=%lld closes=%lld forks=%lld\n",
	       (long long)S->opens, (long long)S->open_gone, (long long)S->mmaps,
	       (long long)S->mmap_revoked, (long long)S->munmaps, (long long)S->splits,
	       (long long)S->closes, (long long)S->forks);
	printf("# stress: revokes=%lld revoke_enoent=%lld destroys=%lld destroy_enoent=%lld "
	       "creates=%lld sigbus=%lld child_sigbus=%lld poll_hup=%lld unexpected=%lld\n",
	       (long long)S->revokes, (long long)S->revoke_gone, (long long)S->destroys,
	       (long long)S->destroy_gone, (long long)S->creates, (long long)S->sigbus,
	       (long long)S->child_sigbus, (long long)S->polls_hup, (long long)S->unexpected);
	printf("# stress: events: notifies=%lld notify_eperm=%lld notify_enoent=%lld woke_seq=%lld "
	       "wait_enoent=%lld wait_eintr=%lld poll_hup=%lld\n",
	       (long long)S->notifies, (long long)S->notify_eperm, (long long)S->notify_gone,
	       (long long)S->waits_seq, (long long)S->waits_gone, (long long)S->waits_intr,
	       (long long)S->ev_hup);
	printf("# after: regions=%lld bytes=%lld grants=%lld mappings=%lld\n",
	       sb_stat("regions"), sb_stat("bytes"), sb_stat("grants"), sb_stat("mappings"));

	if (S->unexpected || sb_stat("regions") || sb_stat("bytes") || sb_stat("grants") ||
	    sb_stat("mappings"))
		failed = 1;
	if (!S->notifies || !S->waits_seq) {
		printf("# no notify reached a sleeping eventer: too short a run?\n");
		failed = 1;
	}
	/* A stress that never hit the interesting races proves little. */
	if (!S->sigbus && !S->child_sigbus && !S->mmap_revoked) {
		printf("# no revocation raced with a mapping: too short a run?\n");
		failed = 1;
	}
	printf("%s 1 stress_open_revoke_destroy_fault_munmap_exit\n", failed ? "not ok" : "ok");
	return failed;
}
