// SPDX-License-Identifier: GPL-2.0
/*
 * Region events (issue 20): NOTIFY and WAIT on grant fds, poll/epoll on
 * them, and the wake-ups of REVOKE and DESTROY. The uAPI header's "Region
 * events" comment is the contract these cases check, one property each.
 *
 * Waiters are real sleepers: before a case notifies or revokes, it waits
 * until every waiter task is in state S (in epoll_wait, poll or WAIT), so
 * the wake-up path is what is tested, not the early return. No timed
 * assertion: a lost wake-up shows as the case's alarm (harness.c).
 *
 * Longer than the house's ~400 lines: one file for the whole feature, so the
 * waiter helpers are shared by every case instead of copied into three files.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <grp.h>
#include <sys/syscall.h>

#include "harness.h"
#include "util.h"

#define NONBLOCK	SHMBROKER_WAIT_NONBLOCK

static long page_size(void)
{
	return sysconf(_SC_PAGESIZE);
}

static uint64_t region(void)
{
	uint64_t id = sb_create_simple(page_size());

	ASSERT_TRUE(id);
	return id;
}

static int grant(uint64_t id, uint32_t flags, uint64_t *gid)
{
	int fd = sb_open(id, flags | SHMBROKER_OPEN_CLOEXEC, gid);

	ASSERT_OK(fd);
	return fd;
}

static short poll_now(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	ASSERT_OK(poll(&p, 1, 0));
	return p.revents;
}

static uint64_t seq_of(int fd, uint64_t last)
{
	uint64_t s;

	ASSERT_OK(sb_wait(fd, last, NONBLOCK, &s));
	return s;
}

/* Until /proc/<path>/stat says S (asleep): polled, bounded by the case alarm. */
static void wait_asleep(const char *stat_path)
{
	for (;;) {
		char buf[512], *p;
		int fd = open(stat_path, O_RDONLY | O_CLOEXEC);
		ssize_t n;

		ASSERT_OK(fd);
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		ASSERT_TRUE(n > 0);
		buf[n] = 0;
		p = strrchr(buf, ')');
		if (p && p[1] == ' ' && p[2] == 'S')
			return;
		usleep(2000);
	}
}

static void wait_pid_asleep(pid_t pid)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	wait_asleep(path);
}

static void wait_tid_asleep(pid_t tid)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	wait_asleep(path);
}

/* ----------------------------------------------------------- waiters */

/*
 * How a child waits on its grant fd, reporting one line to @report: the
 * sequence it woke with, or -errno / -POLL flags for an end.
 */
enum how { BY_EPOLL_ET, BY_POLL, BY_WAIT, BY_EPOLL_EXCLUSIVE };

static void child_wait(int fd, enum how how, uint64_t last, int report)
{
	long long out;

	if (how == BY_WAIT) {
		uint64_t s;

		out = sb_wait(fd, last, 0, &s) ? -errno : (long long)s;
	} else {
		short rev;

		if (how == BY_EPOLL_ET || how == BY_EPOLL_EXCLUSIVE) {
			struct epoll_event ev = {
				.events = EPOLLIN | EPOLLET | (how == BY_EPOLL_EXCLUSIVE ? EPOLLEXCLUSIVE : 0),
			};
			int ep = epoll_create1(EPOLL_CLOEXEC);

			if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) || epoll_wait(ep, &ev, 1, -1) != 1)
				_exit(3);
			rev = (short)ev.events;
		} else {
			struct pollfd p = { .fd = fd, .events = POLLIN };

			if (poll(&p, 1, -1) != 1)
				_exit(3);
			rev = p.revents;
		}
		/* HUP is reported alone, and is final. */
		if (rev & POLLHUP)
			out = (rev & ~POLLHUP) ? -9999 : -1000 - POLLHUP;
		else
			out = (long long)seq_of(fd, last);
	}
	if (dprintf(report, "%lld\n", out) < 0)
		_exit(4);
	_exit(0);
}

static pid_t spawn_waiter(int fd, enum how how, uint64_t last, int report)
{
	pid_t pid = fork();

	ASSERT_OK(pid);
	if (pid == 0)
		child_wait(fd, how, last, report);
	return pid;
}

/* Reads @n lines of results and checks each one is @want; reaps the children. */
static void collect(FILE *in, int n, long long want, pid_t *pids)
{
	for (int i = 0; i < n; i++) {
		long long v;

		ASSERT_EQ(fscanf(in, "%lld", &v), 1);
		ASSERT_EQ(v, want);
	}
	for (int i = 0; i < n; i++) {
		int st;

		ASSERT_EQ(waitpid(pids[i], &st, 0), pids[i]);
		ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
}

static FILE *report_pipe(int *wfd)
{
	int p[2];
	FILE *f;

	ASSERT_OK(pipe2(p, O_CLOEXEC));
	f = fdopen(p[0], "r");
	ASSERT_TRUE(f);
	*wfd = p[1];
	return f;
}

/* ----------------------------------------------------------- basics */

TEST(events_notify_wait_poll_sequence)
{
	uint64_t id = region(), s;
	int a = grant(id, 0, NULL), b;

	ASSERT_EQ(seq_of(a, 0), 0);
	ASSERT_EQ(poll_now(a), 0);
	ASSERT_OK(sb_notify(a, &s));
	ASSERT_EQ(s, 1);
	/* The notifier's own fd is readable too: every holder is a waiter. */
	ASSERT_EQ(poll_now(a), POLLIN);
	/* A NONBLOCK WAIT with an old last_seq reports, and acknowledges only that. */
	ASSERT_EQ(seq_of(a, 0), 1);
	ASSERT_EQ(poll_now(a), POLLIN);
	ASSERT_EQ(seq_of(a, 1), 1);
	ASSERT_EQ(poll_now(a), 0);
	/* A blocking WAIT whose last_seq is already behind returns at once. */
	ASSERT_OK(sb_wait(a, 0, 0, &s));
	ASSERT_EQ(s, 1);
	ASSERT_OK(sb_wait(a, 1, NONBLOCK, NULL));

	/* A grant opened now starts caught up, and sees the next notify. */
	b = grant(id, SHMBROKER_OPEN_RDONLY, NULL);
	ASSERT_EQ(poll_now(b), 0);
	ASSERT_EQ(seq_of(b, 1), 1);
	ASSERT_OK(sb_notify(a, &s));
	ASSERT_EQ(s, 2);
	ASSERT_EQ(poll_now(b), POLLIN);
	ASSERT_EQ(poll_now(a), POLLIN);

	/* The commands belong to grant fds; device commands do not. */
	ASSERT_ERRNO(ioctl(sb_dev(), SHMBROKER_IOC_NOTIFY, &(struct shmbroker_notify){ 0 }), ENOTTY);
	ASSERT_ERRNO(ioctl(sb_dev(), SHMBROKER_IOC_WAIT, &(struct shmbroker_wait){ 0 }), ENOTTY);
	ASSERT_ERRNO(ioctl(a, SHMBROKER_IOC_INFO, &(struct shmbroker_region_info){ 0 }), ENOTTY);
	ASSERT_OK(sb_destroy(id));
}

TEST(events_sequence_is_per_region)
{
	uint64_t x = region(), y = region(), s;
	int gx = grant(x, 0, NULL), gy = grant(y, 0, NULL);

	for (int i = 0; i < 5; i++)
		ASSERT_OK(sb_notify(gx, NULL));
	ASSERT_OK(sb_notify(gy, &s));
	ASSERT_EQ(s, 1);
	ASSERT_EQ(seq_of(gx, 0), 5);
	ASSERT_OK(sb_destroy(x));
	ASSERT_OK(sb_destroy(y));
}

TEST(events_ro_grant_notify_needs_allow_notify)
{
	uint64_t id = region(), s;
	int ro = grant(id, SHMBROKER_OPEN_RDONLY, NULL);
	int ron = grant(id, SHMBROKER_OPEN_RDONLY | SHMBROKER_OPEN_ALLOW_NOTIFY, NULL);
	int rwn = grant(id, SHMBROKER_OPEN_ALLOW_NOTIFY, NULL);

	ASSERT_ERRNO(sb_notify(ro, NULL), EPERM);
	ASSERT_EQ(seq_of(ro, 0), 0);
	/* Allowed to notify, still read-only for the memory. */
	ASSERT_OK(sb_notify(ron, &s));
	ASSERT_EQ(s, 1);
	ASSERT_ERRNO((long)mmap(NULL, page_size(), PROT_READ | PROT_WRITE, MAP_SHARED, ron, 0), EACCES);
	ASSERT_OK(sb_notify(rwn, &s));
	ASSERT_EQ(s, 2);
	/* Waiting is every holder's right. */
	ASSERT_EQ(poll_now(ro), POLLIN);
	ASSERT_OK(sb_wait(ro, 0, 0, &s));
	ASSERT_EQ(s, 2);
	ASSERT_ERRNO(sb_notify(ro, NULL), EPERM);
	ASSERT_EQ(seq_of(ro, 2), 2);
	ASSERT_OK(sb_destroy(id));
}

TEST(events_reserved_and_flags_nonzero_einval)
{
	uint64_t id = region();
	int fd = grant(id, 0, NULL);
	struct shmbroker_notify n;
	struct shmbroker_wait w;

	for (int i = 0; i < 4; i++) {
		memset(&n, 0, sizeof(n));
		if (i == 0)
			n.flags = 1;
		if (i == 1)
			n.pad = 1;
		if (i >= 2)
			n.reserved[i - 2] = 1;
		ASSERT_ERRNO(ioctl(fd, SHMBROKER_IOC_NOTIFY, &n), EINVAL);
	}
	for (int bit = 1; bit < 32; bit++) {
		memset(&w, 0, sizeof(w));
		w.flags = NONBLOCK | (1U << bit);
		ASSERT_ERRNO(ioctl(fd, SHMBROKER_IOC_WAIT, &w), EINVAL);
	}
	for (int i = 0; i < 3; i++) {
		memset(&w, 0, sizeof(w));
		w.flags = NONBLOCK;
		w.last_seq = 7;
		if (i == 0)
			w.pad = 1;
		else
			w.reserved[i - 1] = 1;
		ASSERT_ERRNO(ioctl(fd, SHMBROKER_IOC_WAIT, &w), EINVAL);
	}
	/* Nothing was notified, and no refused WAIT moved "seen" (to 7). */
	ASSERT_EQ(poll_now(fd), 0);
	ASSERT_EQ(seq_of(fd, 0), 0);
	ASSERT_ERRNO(ioctl(fd, SHMBROKER_IOC_NOTIFY, NULL), EFAULT);
	ASSERT_ERRNO(ioctl(fd, SHMBROKER_IOC_WAIT, NULL), EFAULT);
	ASSERT_ERRNO(ioctl(fd, SHMBROKER_IOC_WAIT, (void *)-4096L), EFAULT);
	ASSERT_OK(sb_destroy(id));
}

/* N notifies with nobody running wake an edge-triggered waiter once; the sequence counts them. */
TEST(events_coalescing_counted_by_sequence)
{
	uint64_t id = region();
	int n = grant(id, 0, NULL), w = grant(id, SHMBROKER_OPEN_RDONLY, NULL);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
	int ep = epoll_create1(EPOLL_CLOEXEC);

	ASSERT_OK(ep);
	ASSERT_OK(epoll_ctl(ep, EPOLL_CTL_ADD, w, &ev));
	ASSERT_EQ(epoll_wait(ep, &ev, 1, 0), 0);
	for (int i = 0; i < 100; i++)
		ASSERT_OK(sb_notify(n, NULL));
	ASSERT_EQ(epoll_wait(ep, &ev, 1, 0), 1);
	ASSERT_EQ(ev.events, EPOLLIN);
	ASSERT_EQ(epoll_wait(ep, &ev, 1, 0), 0);
	ASSERT_EQ(seq_of(w, 0), 100);
	ASSERT_EQ(seq_of(w, 100), 100);
	ASSERT_EQ(poll_now(w), 0);
	ASSERT_OK(sb_destroy(id));
}

/* ----------------------------------------------------------- many waiters */

#define NR_WAITERS	64

/*
 * 64 processes asleep on one region, a quarter each in epoll (ET), poll,
 * WAIT and epoll with EPOLLEXCLUSIVE, each on its own grant: one notify
 * wakes all. The exclusive ones are on different grants (files), so "wake
 * one" must not apply across them: the queue is the region's.
 */
TEST(events_broadcast_64_waiters)
{
	uint64_t id = region(), s;
	pid_t pids[NR_WAITERS];
	int fds[NR_WAITERS], wfd, n;
	FILE *in = report_pipe(&wfd);

	n = grant(id, 0, NULL);
	for (int i = 0; i < NR_WAITERS; i++) {
		fds[i] = grant(id, SHMBROKER_OPEN_RDONLY, NULL);
		pids[i] = spawn_waiter(fds[i], (enum how)(i % 4), 0, wfd);
	}
	for (int i = 0; i < NR_WAITERS; i++)
		wait_pid_asleep(pids[i]);
	ASSERT_OK(sb_notify(n, &s));
	ASSERT_EQ(s, 1);
	collect(in, NR_WAITERS, 1, pids);

	/* Again with every waiter on ONE shared grant file (fork shares it), caught up first. */
	ASSERT_EQ(seq_of(fds[0], 1), 1);
	for (int i = 0; i < NR_WAITERS; i++)
		pids[i] = spawn_waiter(fds[0], (enum how)(i % 3), 1, wfd);
	for (int i = 0; i < NR_WAITERS; i++)
		wait_pid_asleep(pids[i]);
	ASSERT_OK(sb_notify(n, &s));
	ASSERT_EQ(s, 2);
	collect(in, NR_WAITERS, 2, pids);
	ASSERT_OK(sb_destroy(id));
}

/* ----------------------------------------------------------- storm */

#define STORM_NOTIFIERS	4
#define STORM_EACH	2000
#define STORM_TOTAL	(STORM_NOTIFIERS * STORM_EACH)
#define STORM_WAITERS	4

static struct {
	int fd[STORM_NOTIFIERS + STORM_WAITERS];
	_Atomic unsigned char got[STORM_TOTAL + 1];
	atomic_int bad;
	long wakes[STORM_WAITERS];
} storm;

static void *storm_notifier(void *arg)
{
	int fd = storm.fd[(long)arg];
	uint64_t s = 0, prev = 0;

	for (int i = 0; i < STORM_EACH; i++) {
		if (sb_notify(fd, &s) || s <= prev || s > STORM_TOTAL ||
		    atomic_exchange(&storm.got[s], 1))
			atomic_fetch_add(&storm.bad, 1);
		prev = s;
	}
	return NULL;
}

static void *storm_waiter(void *arg)
{
	long w = (long)arg;
	int fd = storm.fd[STORM_NOTIFIERS + w];
	uint64_t last = 0, s = 0;

	while (last < STORM_TOTAL) {
		if (sb_wait(fd, last, 0, &s) || s <= last || s > STORM_TOTAL) {
			atomic_fetch_add(&storm.bad, 1);
			break;
		}
		storm.wakes[w]++;
		last = s;
	}
	return NULL;
}

/* Notifiers racing on four grants: every sequence value is handed out exactly once, waiters see it end at the total. */
TEST(events_notify_storm_exact_sequence)
{
	pthread_t t[STORM_NOTIFIERS + STORM_WAITERS];
	uint64_t id = region();
	long wakes = 0;

	for (int i = 0; i < STORM_NOTIFIERS + STORM_WAITERS; i++)
		storm.fd[i] = grant(id, i < STORM_NOTIFIERS ? 0 : SHMBROKER_OPEN_RDONLY, NULL);
	for (long i = 0; i < STORM_WAITERS; i++)
		ASSERT_EQ(pthread_create(&t[STORM_NOTIFIERS + i], NULL, storm_waiter, (void *)i), 0);
	for (long i = 0; i < STORM_NOTIFIERS; i++)
		ASSERT_EQ(pthread_create(&t[i], NULL, storm_notifier, (void *)i), 0);
	for (int i = 0; i < STORM_NOTIFIERS + STORM_WAITERS; i++)
		ASSERT_EQ(pthread_join(t[i], NULL), 0);
	ASSERT_EQ(atomic_load(&storm.bad), 0);
	for (int s = 1; s <= STORM_TOTAL; s++)
		ASSERT_EQ(storm.got[s], 1);
	ASSERT_EQ(seq_of(storm.fd[0], STORM_TOTAL), STORM_TOTAL);
	for (int w = 0; w < STORM_WAITERS; w++) {
		ASSERT_TRUE(storm.wakes[w] >= 1 && storm.wakes[w] <= STORM_TOTAL);
		wakes += storm.wakes[w];
	}
	printf("# %d notifies, %d waiters woke %ld times in all (coalescing)\n",
	       STORM_TOTAL, STORM_WAITERS, wakes);
	ASSERT_OK(sb_destroy(id));
}

/* ----------------------------------------------------------- endings */

#define NR_ENDS	9	/* three of each way to wait */

/* REVOKE wakes every waiter of that grant with HUP/ENOENT, after the zap; other grants keep waiting. */
TEST(events_revoke_and_destroy_wake_all_waiters)
{
	uint64_t id = region(), ga, gb, s;
	pid_t pa[NR_ENDS], pb[NR_ENDS];
	int a, b, n, wfd;
	FILE *in = report_pipe(&wfd);
	char *m;

	a = grant(id, SHMBROKER_OPEN_RDONLY, &ga);
	b = grant(id, SHMBROKER_OPEN_RDONLY, &gb);
	n = grant(id, 0, NULL);
	m = mmap(NULL, page_size(), PROT_READ, MAP_SHARED, a, 0);
	ASSERT_TRUE(m != MAP_FAILED);
	sb_touch_read(m);
	for (int i = 0; i < NR_ENDS; i++)
		pa[i] = spawn_waiter(a, (enum how)(i % 3), 0, wfd);
	for (int i = 0; i < NR_ENDS; i++)
		wait_pid_asleep(pa[i]);
	ASSERT_OK(sb_revoke(ga));
	/* Every A waiter ends the same way whatever it waited with: -ENOENT or -(1000+POLLHUP). */
	for (int i = 0; i < NR_ENDS; i++) {
		long long v;
		int st;

		ASSERT_EQ(fscanf(in, "%lld", &v), 1);
		ASSERT_TRUE(v == -ENOENT || v == -1000 - POLLHUP);
		ASSERT_EQ(waitpid(pa[i], &st, 0), pa[i]);
		ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	/* The zap came before the wake-up: the mapping is already dead. */
	ASSERT_TRUE(sb_killed_by(sb_in_child(sb_touch_read, m), SIGBUS));
	ASSERT_EQ(poll_now(a), POLLHUP);
	ASSERT_ERRNO(sb_notify(a, NULL), EPERM);
	ASSERT_ERRNO(sb_wait(a, 0, NONBLOCK, NULL), ENOENT);
	/* B was not revoked: still caught up, and a notify still reaches it. */
	ASSERT_EQ(poll_now(b), 0);
	ASSERT_OK(sb_notify(n, &s));
	ASSERT_EQ(seq_of(b, 0), 1);

	/* DESTROY ends every waiter of every grant of the region (caught up first). */
	ASSERT_EQ(seq_of(b, 1), 1);
	ASSERT_EQ(seq_of(n, 1), 1);
	for (int i = 0; i < NR_ENDS; i++)
		pb[i] = spawn_waiter(i < NR_ENDS / 2 ? b : n, (enum how)(i % 3), 1, wfd);
	for (int i = 0; i < NR_ENDS; i++)
		wait_pid_asleep(pb[i]);
	ASSERT_OK(sb_destroy(id));
	for (int i = 0; i < NR_ENDS; i++) {
		long long v;
		int st;

		ASSERT_EQ(fscanf(in, "%lld", &v), 1);
		ASSERT_TRUE(v == -ENOENT || v == -1000 - POLLHUP);
		ASSERT_EQ(waitpid(pb[i], &st, 0), pb[i]);
		ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	ASSERT_ERRNO(sb_notify(n, NULL), ENOENT);
	ASSERT_EQ(poll_now(n), POLLHUP);
}

struct closer {
	int fd;
	uint64_t last;
	pid_t tid;
	int rc, err;
	uint64_t seq;
};

static void *blocked_wait(void *arg)
{
	struct closer *c = arg;

	__atomic_store_n(&c->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
	c->rc = sb_wait(c->fd, c->last, 0, &c->seq);
	c->err = errno;
	return NULL;
}

/*
 * Closing the fd does not end a WAIT asleep on it (the ioctl holds the
 * file), a REVOKE does, and then the file is released. A closed fd leaves
 * its epoll set before the region struct can go: epoll must not touch it.
 */
TEST(events_close_while_waiting)
{
	struct closer c = { .last = 0 };
	struct epoll_event ev = { .events = EPOLLIN };
	uint64_t id = region(), gid, s;
	int n, ep, e;
	pthread_t t;

	n = grant(id, 0, NULL);
	c.fd = grant(id, SHMBROKER_OPEN_RDONLY, &gid);
	ASSERT_EQ(pthread_create(&t, NULL, blocked_wait, &c), 0);
	while (!__atomic_load_n(&c.tid, __ATOMIC_ACQUIRE))
		usleep(1000);
	wait_tid_asleep(c.tid);
	ASSERT_OK(close(c.fd));
	/* The grant is still live (the sleeping ioctl holds its file): a notify ends the wait. */
	ASSERT_EQ(sb_stat("grants"), 2);
	ASSERT_OK(sb_notify(n, &s));
	ASSERT_EQ(pthread_join(t, NULL), 0);
	ASSERT_EQ(c.rc, 0);
	ASSERT_EQ(c.seq, 1);
	/* Its last reference went with the ioctl: released, no longer revocable. */
	ASSERT_EQ(sb_stat("grants"), 1);
	ASSERT_ERRNO(sb_revoke(gid), ENOENT);

	/* Same, ended by REVOKE of the closed fd's grant instead. */
	memset(&c, 0, sizeof(c));
	c.fd = grant(id, SHMBROKER_OPEN_RDONLY, &gid);
	c.last = 1;
	ASSERT_EQ(pthread_create(&t, NULL, blocked_wait, &c), 0);
	while (!__atomic_load_n(&c.tid, __ATOMIC_ACQUIRE))
		usleep(1000);
	wait_tid_asleep(c.tid);
	ASSERT_OK(close(c.fd));
	ASSERT_OK(sb_revoke(gid));
	ASSERT_EQ(pthread_join(t, NULL), 0);
	ASSERT_EQ(c.rc, -1);
	ASSERT_EQ(c.err, ENOENT);

	/* epoll: the closed grant leaves the set; DESTROY then frees the region under it. */
	e = grant(id, SHMBROKER_OPEN_RDONLY, NULL);
	ep = epoll_create1(EPOLL_CLOEXEC);
	ASSERT_OK(ep);
	ASSERT_OK(epoll_ctl(ep, EPOLL_CTL_ADD, e, &ev));
	ASSERT_OK(sb_notify(n, NULL));
	ASSERT_EQ(epoll_wait(ep, &ev, 1, 0), 1);
	ASSERT_OK(close(e));
	ASSERT_OK(close(n));
	ASSERT_OK(sb_destroy(id));
	/* The region struct is gone (no grant file left): nothing of it may be reached. */
	ASSERT_EQ(epoll_wait(ep, &ev, 1, 0), 0);
	ASSERT_OK(close(ep));
}

/* Waiters killed in WAIT, poll and epoll_wait: nothing left behind, the region still works. */
TEST(events_waiter_killed_while_waiting)
{
	uint64_t id = region(), s;
	pid_t pids[NR_ENDS];
	int n = grant(id, 0, NULL), w = grant(id, SHMBROKER_OPEN_RDONLY, NULL), wfd;
	FILE *in = report_pipe(&wfd);

	for (int i = 0; i < NR_ENDS; i++) {
		/* Each with a grant of its own too, so its exit releases a grant file. */
		int own = grant(id, SHMBROKER_OPEN_RDONLY, NULL);

		pids[i] = spawn_waiter(i % 2 ? own : w, (enum how)(i % 3), 0, wfd);
		ASSERT_OK(close(own));
	}
	for (int i = 0; i < NR_ENDS; i++)
		wait_pid_asleep(pids[i]);
	for (int i = 0; i < NR_ENDS; i++) {
		int st;

		ASSERT_OK(kill(pids[i], SIGKILL));
		ASSERT_EQ(waitpid(pids[i], &st, 0), pids[i]);
		ASSERT_TRUE(sb_killed_by(st, SIGKILL));
	}
	/* Only the parent's two grants are left. */
	ASSERT_EQ(sb_stat("grants"), 2);
	ASSERT_OK(sb_notify(n, &s));
	ASSERT_EQ(s, 1);
	ASSERT_EQ(poll_now(w), POLLIN);
	ASSERT_EQ(seq_of(w, 1), 1);
	fclose(in);
	ASSERT_OK(sb_destroy(id));
}

static void on_usr1(int sig)
{
	(void)sig;
}

/* A signal ends a blocking WAIT with EINTR (no SA_RESTART), and nothing changes. */
TEST(events_wait_interrupted_by_signal)
{
	struct sigaction sa = { .sa_handler = on_usr1 };
	struct closer c = { .last = 0 };
	uint64_t id = region();
	pthread_t t;

	ASSERT_OK(sigaction(SIGUSR1, &sa, NULL));
	c.fd = grant(id, 0, NULL);
	ASSERT_EQ(pthread_create(&t, NULL, blocked_wait, &c), 0);
	while (!__atomic_load_n(&c.tid, __ATOMIC_ACQUIRE))
		usleep(1000);
	wait_tid_asleep(c.tid);
	ASSERT_EQ(pthread_kill(t, SIGUSR1), 0);
	ASSERT_EQ(pthread_join(t, NULL), 0);
	ASSERT_EQ(c.rc, -1);
	ASSERT_EQ(c.err, EINTR);
	ASSERT_EQ(seq_of(c.fd, 0), 0);
	ASSERT_OK(sb_destroy(id));
}

/* ----------------------------------------------------------- a ring across uids */

#define RING_SLOTS	16
#define RING_FRAMES	3000

struct ring {
	_Atomic uint64_t head;		/* frames written (producer) */
	_Atomic uint64_t tail;		/* frames consumed (consumer) */
	uint64_t slot[RING_SLOTS][8];	/* 64-byte frames: index, then a pattern */
};

/*
 * Waits until cond() holds, the doorbell way: read the sequence, check the
 * memory, wait with the sequence read before the check. A notify between
 * the check and the WAIT makes the WAIT return at once: nothing is lost.
 */
static int ring_wait(int fd, struct ring *r, int (*cond)(struct ring *), uint64_t *last)
{
	for (;;) {
		uint64_t s;

		if (sb_wait(fd, *last, NONBLOCK, &s))
			return -1;
		*last = s;
		if (cond(r))
			return 0;
		if (sb_wait(fd, s, 0, NULL))
			return -1;
	}
}

static int ring_has_space(struct ring *r)
{
	return atomic_load(&r->head) - atomic_load(&r->tail) < RING_SLOTS;
}

static int ring_has_data(struct ring *r)
{
	return atomic_load(&r->head) != atomic_load(&r->tail);
}

static void ring_side(int fd, uid_t uid, int producer)
{
	struct ring *r;
	uint64_t last = 0;

	if (setgroups(0, NULL) || setgid(uid) || setuid(uid) || getuid() != uid)
		_exit(10);
	r = mmap(NULL, page_size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (r == MAP_FAILED)
		_exit(11);
	for (uint64_t i = 0; i < RING_FRAMES; i++) {
		uint64_t *f;

		if (ring_wait(fd, r, producer ? ring_has_space : ring_has_data, &last))
			_exit(12);
		f = r->slot[i % RING_SLOTS];
		if (producer) {
			for (int w = 0; w < 8; w++)
				f[w] = i * 8 + w;
			atomic_store(&r->head, i + 1);
		} else {
			for (int w = 0; w < 8; w++)
				if (f[w] != i * 8 + w)
					_exit(13);
			atomic_store(&r->tail, i + 1);
		}
		if (sb_notify(fd, NULL))
			_exit(14);
	}
	_exit(0);
}

/*
 * Two processes of different uids (1001 producer, 1002 consumer) pass 3,000
 * frames through a 16-slot ring in a region, each holding only its own
 * grant fd; the kernel doorbell is the only wake-up (both sides block in
 * WAIT; each notify wakes the other side, which re-checks its condition).
 */
TEST(events_ring_between_two_uids)
{
	uint64_t id = region(), s;
	int p = grant(id, 0, NULL), c = grant(id, 0, NULL);
	pid_t pp, pc;
	int st;

	ASSERT_TRUE(sizeof(struct ring) <= (size_t)page_size());
	pc = fork();
	ASSERT_OK(pc);
	if (pc == 0) {
		close(p);
		ring_side(c, 1002, 0);
	}
	pp = fork();
	ASSERT_OK(pp);
	if (pp == 0) {
		close(c);
		ring_side(p, 1001, 1);
	}
	ASSERT_EQ(waitpid(pp, &st, 0), pp);
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 0);
	ASSERT_EQ(waitpid(pc, &st, 0), pc);
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 0);
	/* One notify per frame from each side, each counted once. */
	ASSERT_OK(sb_wait(p, 0, NONBLOCK, &s));
	ASSERT_EQ(s, 2 * RING_FRAMES);
	ASSERT_OK(sb_destroy(id));
}
