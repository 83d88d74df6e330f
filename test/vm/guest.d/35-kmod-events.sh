#!/bin/sh
# Inside the test VM: region events on the kmod backend, where the region fd
# itself is the doorbell (SDK, C client, Python binding; two uids; revoke
# while waiting; the broker SIGSTOPped while notifies flow).
# Needs dist/ and clients/c built on the host (npm run build, make -C clients/c).
set -u
if [ ! -f dist/clients/sdk/index.js ]; then
  echo "not ok - the TypeScript is not built (dist/): run npm run build on the host"
  exit 1
fi
BUILD=$(pwd)/clients/c/build
if [ ! -x "$BUILD/shmb_events" ] || [ ! -f "$BUILD/libshmbroker.so.0" ]; then
  BUILD=/tmp/shmb-c-build-events
  if ! make -s -C clients/c B="$BUILD" "$BUILD/shmb_events" "$BUILD/libshmbroker.so.0" > /tmp/shmb-c-build-events.log 2>&1; then
    echo "not ok - build clients/c in the guest"
    sed 's/^/#   /' /tmp/shmb-c-build-events.log
    echo "0 passed, 1 failed"
    exit 1
  fi
  chmod -R a+rX "$BUILD"
fi
SHMB_C_BUILD=$BUILD exec node test/vm/kmod-events.vm-test.js
