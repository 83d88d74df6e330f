#!/bin/sh
# Inside the test VM (cwd = repo root, /dev/shmbroker loaded, root): the C
# client library and the Python binding against a real broker on the kmod
# backend. The same scenarios as test/clients-c/c-client.test.ts (which runs
# them on memfd on the host): a C producer (uid 1001) and a Python consumer
# (uid 1002) share a frame buffer granted by the CLI, bytes both ways,
# read-only enforced by the kernel, revocation notices reach the clients,
# acquire latency. Needs clients/c built on the host (`make -C clients/c`,
# which `npm test` does before the VM runs). Also runs on the host with
# SHMBROKER_C_BACKEND=memfd, to check the script itself.
# Prints TAP-style ok/not ok lines and "N passed, N failed"; non-zero on failure.
set -u
BACKEND=${SHMBROKER_C_BACKEND:-kmod}
REPO=$(pwd)
BUILD=$REPO/clients/c/build
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
notok() { fail=$((fail + 1)); echo "not ok - $1"; [ $# -gt 1 ] && printf '%s\n' "$2" | sed 's/^/#   /'; }

# Use the host's build (npm test builds clients/c before the VM runs); if it
# is missing, build into /tmp (the repo is read-only in the guest).
if [ ! -x "$BUILD/shmb_e2e" ] || [ ! -x "$BUILD/producer" ] || [ ! -x "$BUILD/bench_acquire" ] \
  || [ ! -f "$BUILD/libshmbroker.so.0" ]; then
  BUILD=/tmp/shmb-c-build
  if ! make -s -C clients/c B="$BUILD" "$BUILD/shmb_e2e" "$BUILD/producer" "$BUILD/bench_acquire" \
    "$BUILD/libshmbroker.so.0" > /tmp/shmb-c-build.log 2>&1; then
    echo "not ok - build clients/c in the guest"
    sed 's/^/#   /' /tmp/shmb-c-build.log
    echo "0 passed, 1 failed"
    exit 1
  fi
  chmod -R a+rX "$BUILD"
fi
export SHMBROKER_LIB=$BUILD/libshmbroker.so.0

DIR=$(mktemp -d /tmp/shmb-c-client.XXXXXX)
chmod 0755 "$DIR"
RUN=$DIR/run
export SHMBROKER_RUNTIME_DIR=$RUN
printf 'dataPlane:\n  maxRequestsPerSecondPerUid: 1000000\n' > "$DIR/config.yaml"
start_broker() {
  node bin/shmbroker serve --backend "$BACKEND" --runtime-dir "$RUN" --state-dir "$DIR/state" \
    --config "$DIR/config.yaml" > "$DIR/broker.log" 2>&1 &
  BROKER=$!
  i=0
  while ! grep -q '"broker serving"' "$DIR/broker.log" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 600 ] || ! kill -0 $BROKER 2>/dev/null; then
      return 1
    fi
    sleep 0.1
  done
}
if ! start_broker; then
  notok "broker ($BACKEND) starts" "$(cat "$DIR/broker.log")"
  echo "$pass passed, $fail failed"
  exit 1
fi
ok "broker ($BACKEND) starts"

cli() { node bin/shmbroker --runtime-dir "$RUN" "$@" 2>> "$DIR/cli.err"; }
as() { u=$1; shift; setpriv --reuid="$u" --regid="$u" --clear-groups -- "$@"; }
grant_id() { cli grant create "$1" --uid "$2" --mode "$3" -o json | sed -n 's|.*"name": *"regions/[^/]*/grants/\([0-9]*\)".*|\1|p'; }
REGIONS="frames mailbox revoke-c revoke-py restart bench"
cleanup() {
  for r in $REGIONS; do cli region delete "$r" > /dev/null 2>&1; done
  kill $BROKER 2>/dev/null
  wait $BROKER 2>/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT

cli region create frames --size 1MiB > /dev/null && cli region create mailbox --size 64KiB > /dev/null \
  && [ -n "$(grant_id frames 1001 rw)" ] && [ -n "$(grant_id frames 1002 ro)" ] \
  && [ -n "$(grant_id mailbox 1001 ro)" ] && [ -n "$(grant_id mailbox 1002 rw)" ] \
  && ok "CLI creates regions and grants" || notok "CLI creates regions and grants" "$(cat "$DIR/cli.err")"

# 1. C producer (uid 1001) -> Python consumer (uid 1002), frame buffer.
as 1002 "$PY" clients/python/examples/consumer.py frames --until 60 --timeout 120 > "$DIR/consumer.out" 2>&1 &
CONS=$!
as 1001 "$BUILD/producer" frames 60 20 > "$DIR/producer.out" 2>&1
prc=$?
wait $CONS
crc=$?
if [ $prc -eq 0 ] && [ $crc -eq 0 ] && grep -q '"corrupt": 0, "last_frame": 60' "$DIR/consumer.out"; then
  ok "C producer uid 1001 -> Python consumer uid 1002: $(cat "$DIR/consumer.out")"
else
  notok "C producer -> Python consumer" "producer rc=$prc: $(cat "$DIR/producer.out")
consumer rc=$crc: $(cat "$DIR/consumer.out")"
fi

# 2. Bytes both ways.
MSG="from C on $BACKEND"
as 1001 "$BUILD/shmb_e2e" write frames 4096 "$MSG" > /dev/null 2>&1
GOT=$(as 1002 "$PY" -c "import sys; sys.path.insert(0, 'clients/python'); import shmbroker
with shmbroker.Client() as c, c.acquire('frames', 'ro') as r:
    v = r.buf; sys.stdout.write(bytes(v[4096:4096 + len(sys.argv[1])]).decode() + ' ' + r.backend); v.release()" "$MSG" 2>&1)
[ "$GOT" = "$MSG $BACKEND" ] && ok "C writes, Python of another uid reads" || notok "C writes, Python reads" "$GOT"
as 1002 "$PY" -c "import sys; sys.path.insert(0, 'clients/python'); import shmbroker
with shmbroker.Client() as c, c.acquire('mailbox', 'rw') as r:
    v = r.buf; v[100:108] = b'python->'; v.release()" > "$DIR/pyw.out" 2>&1
GOT=$(as 1001 "$BUILD/shmb_e2e" read mailbox 100 8 2>&1)
[ "$GOT" = "python->" ] && ok "Python writes, C of another uid reads" || notok "Python writes, C reads" "$GOT $(cat "$DIR/pyw.out")"

# 3. Read-only is enforced by the kernel.
OUT=$(as 1002 "$BUILD/shmb_e2e" ro-check frames 2>&1)
if echo "$OUT" | grep -q '^mprotect=EACCES' && echo "$OUT" | grep -q '^mmap_rw=EACCES' \
  && ! echo "$OUT" | grep -q '^reopen_rw=ok' && echo "$OUT" | grep -q '^acquire_rw=-13 reason=GRANT_READ_ONLY'; then
  ok "read-only grant: mprotect/mmap/reopen for write refused, rw acquire refused"
else
  notok "read-only grant refuses writes" "$OUT"
fi

# 4. Revocation notices, C then Python.
cli region create revoke-c --size 64KiB > /dev/null
ID=$(grant_id revoke-c 1001 rw)
as 1001 "$BUILD/shmb_e2e" wait-revoke revoke-c rw 120000 > "$DIR/wait.out" 2>&1 &
W=$!
i=0
while ! grep -q '^acquired' "$DIR/wait.out" && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
cli grant revoke "$ID" > /dev/null
wait $W
wrc=$?
if [ $wrc -eq 0 ] && grep -q 'GRANT_REVOKED' "$DIR/wait.out" && grep -q 'released rc=0' "$DIR/wait.out"; then
  ok "C client receives the revocation notice and releases"
else
  notok "C client revocation" "rc=$wrc $(cat "$DIR/wait.out")"
fi

cli region create revoke-py --size 64KiB > /dev/null
ID=$(grant_id revoke-py 1002 ro)
as 1002 "$PY" -c "import sys, select; sys.path.insert(0, 'clients/python'); import shmbroker
c = shmbroker.Client(); r = c.acquire('revoke-py', 'ro'); print('acquired', flush=True)
revs = []
while not revs:
    if not c.events_pending: select.select([c], [], [], 120)
    revs = c.process_events()
print('revoked', revs[0].reason, revs[0].region is r, flush=True); r.release(); c.close()" > "$DIR/pywait.out" 2>&1 &
W=$!
i=0
while ! grep -q '^acquired' "$DIR/pywait.out" && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
cli grant revoke "$ID" > /dev/null
wait $W
if grep -q 'revoked GRANT_REVOKED True' "$DIR/pywait.out"; then
  ok "Python client receives the revocation notice and releases"
else
  notok "Python client revocation" "$(cat "$DIR/pywait.out")"
fi

# 5. Broker killed and restarted: the C client reconnects and offers its
#    region back (OfferRequest); the bytes it wrote are still there.
cli region create restart --size 64KiB > /dev/null
grant_id restart 1001 rw > /dev/null
as 1001 "$BUILD/shmb_e2e" hold-offer restart "kept across restart" 240000 > "$DIR/hold.out" 2>&1 &
H=$!
i=0
while ! grep -q '^acquired' "$DIR/hold.out" && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
kill -9 $BROKER
wait $BROKER 2>/dev/null
if start_broker; then
  wait $H
  hrc=$?
  GOT=$(cli region read restart --length 19)
  if [ $hrc -eq 0 ] && grep -q '^offered rc=0' "$DIR/hold.out" && [ "$GOT" = "kept across restart" ]; then
    ok "after kill -9 and restart the C client offers its region back"
  else
    notok "offer after restart" "rc=$hrc read=$GOT $(cat "$DIR/hold.out")"
  fi
else
  notok "broker restarts after kill -9" "$(cat "$DIR/broker.log")"
  kill $H 2>/dev/null
fi

# 6. Latency (informational).
cli region create bench --size 1MiB > /dev/null
grant_id bench 1001 ro > /dev/null
OUT=$(as 1001 "$BUILD/bench_acquire" bench "${SHMBROKER_C_BENCH_ITER:-200}" ro 2>&1)
case "$OUT" in
  *acquire_us*) ok "C acquire latency ($BACKEND): $OUT" ;;
  *) notok "C acquire latency" "$OUT" ;;
esac

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
