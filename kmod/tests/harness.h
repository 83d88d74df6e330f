/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A small kselftest-style harness: TEST(name) registers a case, each case
 * runs in its own forked child (so a crash, SIGBUS or exit fails only that
 * case), and the runner prints TAP ("ok N name" / "not ok N name").
 *
 * After every case the runner checks the module's sysfs counters are back to
 * zero (regions, bytes, grants, mappings), destroys anything left behind and
 * restores the module parameters, so a failing case cannot poison the next.
 */
#ifndef SHMBROKER_HARNESS_H
#define SHMBROKER_HARNESS_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KSFT_SKIP 4

typedef void (*shmbroker_test_fn)(void);
/* reload.c: `shmbroker_test --reload-races MODULE.ko`, a mode of its own. */
int shmbroker_reload_races(const char *ko);
void shmbroker_register_test(const char *name, shmbroker_test_fn fn);

#define TEST(name)							\
	static void name(void);						\
	__attribute__((constructor)) static void register_##name(void)	\
	{								\
		shmbroker_register_test(#name, name);			\
	}								\
	static void name(void)

#define FAIL(fmt, ...) do {						\
		printf("#   %s:%d: " fmt "\n", __FILE__, __LINE__, ##__VA_ARGS__); \
		fflush(stdout);						\
		_exit(1);						\
	} while (0)

#define SKIP(fmt, ...) do {						\
		printf("#   SKIP: " fmt "\n", ##__VA_ARGS__);		\
		fflush(stdout);						\
		_exit(KSFT_SKIP);					\
	} while (0)

#define ASSERT_TRUE(c) do {						\
		if (!(c))						\
			FAIL("expected %s (errno %d %s)", #c, errno, strerror(errno)); \
	} while (0)

#define ASSERT_EQ(a, b) do {						\
		long long _a = (long long)(a), _b = (long long)(b);	\
		if (_a != _b)						\
			FAIL("%s == %lld, expected %s == %lld (errno %d %s)", \
			     #a, _a, #b, _b, errno, strerror(errno));	\
	} while (0)

#define ASSERT_GE(a, b) do {						\
		long long _a = (long long)(a), _b = (long long)(b);	\
		if (_a < _b)						\
			FAIL("%s == %lld, expected >= %s == %lld (errno %d %s)", \
			     #a, _a, #b, _b, errno, strerror(errno));	\
	} while (0)

/* A call that returns -1 must fail with exactly this errno. */
#define ASSERT_ERRNO(call, err) do {					\
		errno = 0;						\
		long long _r = (long long)(call);			\
		if (_r != -1 || errno != (err))				\
			FAIL("%s returned %lld errno %d (%s), expected -1 errno %d (%s)", \
			     #call, _r, errno, strerror(errno), err, strerror(err)); \
	} while (0)

#define ASSERT_OK(call) do {						\
		errno = 0;						\
		long long _r = (long long)(call);			\
		if (_r < 0)						\
			FAIL("%s failed: %lld errno %d (%s)", #call, _r, errno, strerror(errno)); \
	} while (0)

#endif
