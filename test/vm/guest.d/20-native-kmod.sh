#!/bin/sh
# Inside the test VM (cwd = repo root under /host, module loaded, root):
# the native addon's KmodDevice against the real /dev/shmbroker.
# Prints TAP-style ok/not ok lines and "N passed, N failed"; non-zero on failure.
set -u
if [ ! -f build/Release/shmbroker_native.node ]; then
  echo "not ok - native addon not built (build/Release/shmbroker_native.node): run npx node-gyp rebuild on the host"
  exit 1
fi
exec node native/kmod-device.vm-test.js --device /dev/shmbroker
