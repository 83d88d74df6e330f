/* Tiny test harness shared by the C tests (no dependencies). */
#ifndef SHMB_TESTUTIL_H
#define SHMB_TESTUTIL_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

static int tu_failures;
static int tu_checks;

#define CHECK(cond)                                                            \
    do {                                                                       \
        tu_checks++;                                                           \
        if (!(cond)) {                                                         \
            tu_failures++;                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
        }                                                                      \
    } while (0)

#define CHECK_EQ(a, b)                                                         \
    do {                                                                       \
        long long tu_a = (long long)(a), tu_b = (long long)(b);                \
        tu_checks++;                                                           \
        if (tu_a != tu_b) {                                                    \
            tu_failures++;                                                     \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n", \
                    __FILE__, __LINE__, #a, tu_a, #b, tu_b);                   \
        }                                                                      \
    } while (0)

/* Number of open fds of this process (to catch fd leaks). */
static int tu_count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    if (!d)
        return -1;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own fd */
}

#define RUN(test)                                                              \
    do {                                                                       \
        int tu_fds_before = tu_count_fds();                                    \
        int tu_fail_before = tu_failures;                                      \
        test();                                                                \
        int tu_fds_after = tu_count_fds();                                     \
        if (tu_fds_after != tu_fds_before) {                                   \
            tu_failures++;                                                     \
            fprintf(stderr, "%s: fd leak: %d open before, %d after\n", #test,  \
                    tu_fds_before, tu_fds_after);                              \
        }                                                                      \
        printf("%s %s\n", tu_failures == tu_fail_before ? "ok  " : "FAIL",     \
               #test);                                                         \
    } while (0)

static int tu_summary(const char *name)
{
    printf("%s: %d checks, %d failures\n", name, tu_checks, tu_failures);
    return tu_failures ? 1 : 0;
}

#endif
