#!/bin/sh
# Inside the test VM: the broker's kmod backend end to end (CLI scenario,
# revocation with SIGBUS for a client that ignores the notice, TTL, kill -9
# restart survival with a live mapped client).
set -u
if [ ! -f dist/clients/cli/main.js ]; then
  echo "not ok - the TypeScript is not built (dist/): run npm run build on the host"
  exit 1
fi
exec node test/vm/kmod-broker.vm-test.js
