// Attacks on a region fd a grantee received from the broker, run as the
// grantee's own uid: every way to write through a read-only grant, to grow a
// region, or to get at memory beyond it. The fd is inherited as fd 3 (the
// test's SDK client acquires the region and passes it down).
//
//   fdattack ro|rw SIZE   -> one JSON object on stdout: attack -> outcome
//
// An outcome is "ALLOWED", "SIGBUS" (the access faulted: no memory there) or
// the errno name the kernel refused with. Works on memfd and kmod grant fds.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#define F_GET_SEALS 1034
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#define F_SEAL_WRITE 0x0008
#endif

static int first = 1;
static void out(const char *name, const char *v)
{
	printf("%s\"%s\":\"%s\"", first ? "{" : ",", name, v);
	first = 0;
}
static void outn(const char *name, long long v)
{
	printf("%s\"%s\":%lld", first ? "{" : ",", name, v);
	first = 0;
}
static const char *en(int e)
{
	const char *n = strerrorname_np(e);
	return n ? n : "E?";
}
static void res(const char *name, int rc)
{
	out(name, rc < 0 ? en(errno) : "ALLOWED");
}

static sigjmp_buf jb;
static volatile sig_atomic_t armed;
static void on_fault(int sig)
{
	if (armed) {
		armed = 0;
		siglongjmp(jb, sig);
	}
	_exit(100 + sig);
}

/* 1 if the byte at p could be read (and written when w), 0 if it faulted. */
static int touch(volatile unsigned char *p, int w)
{
	int sig = sigsetjmp(jb, 1);
	if (sig == 0) {
		armed = 1;
		unsigned char c = *p;
		if (w)
			*p = c;
		armed = 0;
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: fdattack ro|rw SIZE\n");
		return 2;
	}
	const int fd = 3;
	const int ro = strcmp(argv[1], "ro") == 0;
	const size_t size = strtoull(argv[2], NULL, 0);
	const long pg = sysconf(_SC_PAGESIZE);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_fault;
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	struct stat st;
	if (fstat(fd, &st) < 0) {
		fprintf(stderr, "fd 3: %s\n", strerror(errno));
		return 2;
	}
	outn("sizeBefore", (long long)st.st_size);
	int acc = fcntl(fd, F_GETFL) & O_ACCMODE;
	out("accessMode", acc == O_RDONLY ? "O_RDONLY" : acc == O_RDWR ? "O_RDWR" : "O_WRONLY");

	/* Upgrading a read-only grant. */
	void *w = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	out("mmapWritableShared", w == MAP_FAILED ? en(errno) : "ALLOWED");
	if (w != MAP_FAILED)
		munmap(w, size);
	unsigned char *m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		out("mmapRead", en(errno));
		printf("}\n");
		return 0;
	}
	out("mmapRead", "ALLOWED");
	res("mprotectWrite", ro ? mprotect(m, size, PROT_READ | PROT_WRITE) : 0);
	/* A private writable mapping only ever writes a private copy, but is not
	 * a way into the region: report what the backend says. */
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	out("mmapPrivateWritable", p == MAP_FAILED ? en(errno) : "ALLOWED");
	if (p != MAP_FAILED)
		munmap(p, size);

	/* Writing through /proc/self/mem (FOLL_FORCE) into the read-only shared mapping. */
	int memfd = open("/proc/self/mem", O_RDWR);
	if (memfd >= 0) {
		unsigned char b = 0x5a;
		ssize_t n = pwrite(memfd, &b, 1, (off_t)(uintptr_t)m);
		out("procSelfMemWrite", n == 1 ? "ALLOWED" : en(errno));
		close(memfd);
	} else {
		out("procSelfMemWrite", en(errno));
	}

	/* Re-opening the object for writing. */
	char path[128];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int r = open(path, O_RDWR);
	out("reopenProcFdRdwr", r < 0 ? en(errno) : "ALLOWED");
	if (r >= 0)
		close(r);
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)(uintptr_t)m, (unsigned long)(uintptr_t)m + size);
	r = open(path, O_RDWR);
	out("reopenMapFilesRdwr", r < 0 ? en(errno) : "ALLOWED");
	if (r >= 0)
		close(r);

	/* Growing (or shrinking) the region, and reaching past its end. */
	res("ftruncateGrow", ftruncate(fd, (off_t)size * 2));
	res("ftruncateShrink", ftruncate(fd, (off_t)size / 2 / pg * pg));
	res("fallocateGrow", fallocate(fd, 0, (off_t)size, pg));
	unsigned char *g = mremap(m, size, size * 2, MREMAP_MAYMOVE);
	if (g == MAP_FAILED) {
		out("mremapGrow", en(errno));
		out("touchBeyondEnd", "NO_MAPPING");
		out("mprotectWriteAfterMremap", "NO_MAPPING");
	} else {
		out("mremapGrow", "ALLOWED");
		out("touchBeyondEnd", touch(g + size, 0) ? "ALLOWED" : "SIGBUS");
		res("mprotectWriteAfterMremap", ro ? mprotect(g, size * 2, PROT_READ | PROT_WRITE) : 0);
		m = mremap(g, size * 2, size, 0);
	}
	/* A mapping bigger than the region from the start. */
	unsigned char *big = mmap(NULL, size + pg, PROT_READ, MAP_SHARED, fd, 0);
	if (big == MAP_FAILED) {
		out("mmapBeyondEnd", en(errno));
	} else {
		out("mmapBeyondEnd", touch(big + size, 0) ? "ALLOWED" : "SIGBUS");
		munmap(big, size + pg);
	}
	unsigned char *off = mmap(NULL, pg, PROT_READ, MAP_SHARED, fd, (off_t)size);
	if (off == MAP_FAILED) {
		out("mmapAtOffsetEnd", en(errno));
	} else {
		out("mmapAtOffsetEnd", touch(off, 0) ? "ALLOWED" : "SIGBUS");
		munmap(off, pg);
	}

	/* Other ways to write or change the object. */
	unsigned char byte = 0x5a;
	ssize_t n = pwrite(fd, &byte, 1, 0);
	out("pwrite", n == 1 ? (ro ? "ALLOWED" : "ALLOWED") : en(errno));
	res("fchmod", fchmod(fd, 0666));
	res("fchown", fchown(fd, getuid(), getgid()));
	/* Seals: F_SEAL_SEAL means none can be added; no call removes one. */
	int seals = fcntl(fd, F_GET_SEALS);
	outn("sealsBefore", seals < 0 ? -errno : seals);
	res("addSealWrite", fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE));
	res("removeSealsByAddingZero", fcntl(fd, F_ADD_SEALS, 0));
	seals = fcntl(fd, F_GET_SEALS);
	outn("sealsAfter", seals < 0 ? -errno : seals);
	if (fstat(fd, &st) == 0)
		outn("sizeAfter", (long long)st.st_size);
	out("readableInsideStill", touch(m, 0) ? "ALLOWED" : "SIGBUS");
	printf("}\n");
	return 0;
}
