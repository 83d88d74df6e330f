#!/bin/sh
# Inside the test VM (cwd = repo root, /dev/shmbroker loaded, root): the
# kmod rows of the reliability suite (SECURITY.md): the ioctl fuzzer
# (test/fuzz/kmod-ioctl-fuzz.c, 100,000 calls from 4 threads, no kernel
# warning), a grantee of another uid attacking its grant fd
# (test/reliability/fdattack.c: mremap growth, mprotect, ftruncate,
# /proc/self/fd and /proc/self/mem, map_files, mapping past the end), the
# data-plane fuzzer against a kmod broker, and kill -9 of the broker under
# load. Prints TAP-style lines and "N passed, N failed"; non-zero on failure.
# SHMBROKER_KMOD_FUZZ_CALLS, SHMBROKER_VM_DP_FUZZ_CASES and SHMBROKER_VM_KILLS scale it.
set -u
if [ ! -f dist/clients/cli/main.js ]; then
  echo "not ok - the TypeScript is not built (dist/): run npm run build on the host"
  exit 1
fi
exec node test/vm/reliability.vm-test.js
