// SPDX-License-Identifier: GPL-2.0
/* The runner behind TEST(): one forked child per case, TAP output, leak checks. */
#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "harness.h"
#include "util.h"

#define MAX_TESTS	256
#define MAX_PARAMS	16
#define CASE_TIMEOUT	120	/* seconds; TCG is slow */

static struct {
	const char *name;
	shmbroker_test_fn fn;
} tests[MAX_TESTS];
static int nr_tests;

static struct {
	char name[64];
	char value[64];
} params[MAX_PARAMS];
static int nr_params;

void shmbroker_register_test(const char *name, shmbroker_test_fn fn)
{
	if (nr_tests == MAX_TESTS)
		abort();
	tests[nr_tests].name = name;
	tests[nr_tests].fn = fn;
	nr_tests++;
}

static void save_params(void)
{
	DIR *d = opendir(SYSFS_PARAMS);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)) && nr_params < MAX_PARAMS) {
		char path[512];
		int fd;
		ssize_t n;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), SYSFS_PARAMS "%s", e->d_name);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		n = read(fd, params[nr_params].value, sizeof(params[0].value) - 1);
		close(fd);
		if (n <= 0)
			continue;
		params[nr_params].value[n] = 0;
		snprintf(params[nr_params].name, sizeof(params[0].name), "%s", e->d_name);
		nr_params++;
	}
	closedir(d);
}

static void restore_params(void)
{
	for (int i = 0; i < nr_params; i++) {
		char path[512];

		snprintf(path, sizeof(path), SYSFS_PARAMS "%s", params[i].name);
		sb_write_str(path, params[i].value);
	}
}

/* Destroys every region still alive; returns how many there were. */
static int destroy_leftovers(void)
{
	uint64_t ids[64];
	int n, total = 0;

	while ((n = sb_list(0, ids, 64)) > 0) {
		for (int i = 0; i < n; i++)
			sb_destroy(ids[i]);
		total += n;
	}
	/* The runner itself must not hold the module open between cases. */
	sb_dev_close();
	return total;
}

static const char *leak_check(void)
{
	static char msg[160];
	long long r = sb_stat("regions"), b = sb_stat("bytes");
	long long g = sb_stat("grants"), m = sb_stat("mappings");

	if (r == 0 && b == 0 && g == 0 && m == 0)
		return NULL;
	snprintf(msg, sizeof(msg), "left behind: regions=%lld bytes=%lld grants=%lld mappings=%lld",
		 r, b, g, m);
	return msg;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	int pass = 0, fail = 0, skip = 0, n = 0, selected = 0;
	double t0 = now();

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && !strcmp(argv[1], "--reload-races"))
		return shmbroker_reload_races(argv[2]);
	for (int i = 0; i < nr_tests; i++) {
		int want = argc < 2;

		for (int a = 1; a < argc; a++)
			want |= strstr(tests[i].name, argv[a]) != NULL;
		selected += want;
	}
	printf("TAP version 13\n1..%d\n", selected);
	save_params();
	if (leak_check()) {
		printf("# module not idle at start (%s): cleaning\n", leak_check());
		destroy_leftovers();
	}

	for (int i = 0; i < nr_tests; i++) {
		int want = argc < 2, status = 0;
		const char *leak;
		double t = now();
		pid_t pid;

		for (int a = 1; a < argc; a++)
			want |= strstr(tests[i].name, argv[a]) != NULL;
		if (!want)
			continue;
		n++;
		pid = fork();
		if (pid == 0) {
			alarm(CASE_TIMEOUT);
			tests[i].fn();
			fflush(stdout);
			_exit(0);
		}
		if (pid < 0 || waitpid(pid, &status, 0) != pid)
			status = -1;

		/* A case's grant fds died with its child; regions must be gone too. */
		leak = leak_check();
		if (leak) {
			printf("#   %s\n", leak);
			destroy_leftovers();
		}
		restore_params();

		if (WIFEXITED(status) && WEXITSTATUS(status) == KSFT_SKIP && !leak) {
			printf("ok %d %s # SKIP\n", n, tests[i].name);
			skip++;
		} else if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && !leak) {
			printf("ok %d %s # %.2fs\n", n, tests[i].name, now() - t);
			pass++;
		} else {
			if (WIFSIGNALED(status))
				printf("#   killed by signal %d%s\n", WTERMSIG(status),
				       WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
			printf("not ok %d %s\n", n, tests[i].name);
			fail++;
		}
	}
	printf("# Totals: pass:%d fail:%d skip:%d (%.1fs)\n", pass, fail, skip, now() - t0);
	return fail ? 1 : 0;
}
