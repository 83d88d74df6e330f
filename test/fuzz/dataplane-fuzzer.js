#!/usr/bin/env node
'use strict';
// Data-plane protocol fuzzer: random, mutated, oversized and fd-carrying
// packets, plus half-open, abandoned and idle (slow) connections, against a
// running broker's RUNTIME_DIR/data.sock. Plain JS on the compiled build, so
// the same file runs on the host (test/fuzz/data-plane.fuzz.test.ts, as an
// unprivileged uid) and inside the kmod VM (test/vm/guest.d/50-reliability.sh).
//
//   node test/fuzz/dataplane-fuzzer.js RUNTIME_DIR CASES SEED [REGION]
//
// Every case is sent and then waited for: it ends with a reply or with the
// broker closing that connection (protocol errors close it; the lane then
// reconnects). A case that gets neither within 10 s is a hang. Prints one
// JSON summary line; exits 0 when there was no hang and no unexpected error.
const fs = require('node:fs');
const path = require('node:path');

const REPO = path.resolve(__dirname, '..', '..');
const native = require(path.join(REPO, 'dist', 'native', 'index.js'));
const { dataRequestCodec, dataReplyCodec, MAX_DATA_PACKET_BYTES } = require(path.join(REPO, 'dist', 'proto', 'load.js'));

const [runtimeDir, casesArg, seedArg, regionArg] = process.argv.slice(2);
if (!runtimeDir) {
  console.error('usage: dataplane-fuzzer.js RUNTIME_DIR CASES SEED [REGION]');
  process.exit(2);
}
const CASES = Number(casesArg || 100000);
const SEED = Number(seedArg || 1) >>> 0;
const REGION = regionArg || 'fuzz';
const SOCK = path.join(runtimeDir, 'data.sock');
const LANES = 8;
const IDLE = 16;
const CASE_TIMEOUT_MS = 10_000;

// splitmix32: small, seeded, reproducible.
let state = SEED || 1;
function rnd() {
  state = (state + 0x9e3779b9) >>> 0;
  let z = state;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}
const below = (n) => rnd() % n;
const pick = (a) => a[below(a.length)];
function bytes(n) {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = rnd() & 0xff;
  return b;
}
function u64() {
  const r = below(6);
  if (r === 0) return 0;
  if (r === 1) return '18446744073709551615';
  if (r === 2) return '9223372036854775808';
  if (r === 3) return below(1000);
  return `${rnd()}${rnd()}`.slice(0, 1 + below(19));
}
const NAMES = [REGION, REGION, '', 'a', 'x'.repeat(63), 'x'.repeat(64), 'x'.repeat(3000), 'A', '..', '../etc/passwd', 'a/b', 'régión', 'a\u0000b', '\u202e', '\ud800', 'fuzz\n', '-', '0'];
function name() {
  if (below(4) === 0) return bytes(1 + below(40)).toString('latin1');
  return pick(NAMES);
}
const MODES = ['ACCESS_MODE_READ_ONLY', 'ACCESS_MODE_READ_WRITE', 'ACCESS_MODE_UNSPECIFIED', 0, 1, 2, 3, 99, -1, 2147483647];
function request() {
  const requestId = below(8) === 0 ? u64() : below(1 << 30);
  switch (below(4)) {
    case 0:
      return { requestId, acquire: { region: name(), mode: pick(MODES) } };
    case 1:
      return { requestId, release: { leaseId: u64() } };
    case 2:
      return { requestId, offer: { region: name(), leaseId: u64(), mode: pick(MODES) } };
    default:
      return { requestId };
  }
}
function encode(req) {
  try {
    return Buffer.from(dataRequestCodec().encode(req));
  } catch {
    return bytes(1 + below(32));
  }
}
function mutate(buf) {
  const b = Buffer.from(buf);
  const n = 1 + below(4);
  let out = b;
  for (let i = 0; i < n; i++) {
    switch (below(7)) {
      case 0: if (out.length) out[below(out.length)] ^= 1 << below(8); break;
      case 1: if (out.length) out[below(out.length)] = pick([0, 0xff, 0x7f, 0x80, 0x08, 0x12, 0x1a, 0x22]); break;
      case 2: { const at = below(out.length + 1); out = Buffer.concat([out.subarray(0, at), bytes(1 + below(8)), out.subarray(at)]); break; }
      case 3: if (out.length > 1) { const at = below(out.length); out = Buffer.concat([out.subarray(0, at), out.subarray(at + 1 + below(4))]); } break;
      case 4: out = out.subarray(0, below(out.length + 1)); break;
      case 5: out = Buffer.concat([out, out]); break;
      default: { // a varint that never ends, or a length prefix that lies
        const at = below(out.length + 1);
        out = Buffer.concat([out.subarray(0, at), Buffer.from(pick([[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], [0x12, 0xff, 0xff, 0xff, 0x0f], [0x1a, 0x7f], [0x0a, 0x80, 0x80, 0x80, 0x80, 0x10]]))]);
      }
    }
  }
  return out.length ? out : Buffer.from([0]);
}
function fdsFor() {
  const n = 1 + below(6);
  const fds = [];
  for (let i = 0; i < n; i++) {
    const k = below(4);
    try {
      if (k === 0) fds.push(fs.openSync('/dev/null', 'r'));
      else if (k === 1) fds.push(native.memfdCreate('fuzz', 4096 * (1 + below(4))));
      else if (k === 2) fds.push(fs.openSync('/proc/self/status', 'r'));
      else fds.push(fs.openSync(runtimeDir, 'r'));
    } catch {
      /* a kind that is not available: fewer fds */
    }
  }
  return fds;
}

/** One case: [kind, packet, fds] or a connection-level action. */
function makeCase() {
  const r = below(100);
  if (r < 20) return ['random-small', bytes(1 + below(64))];
  if (r < 25) return ['random-large', bytes(64 + below(MAX_DATA_PACKET_BYTES + 200))];
  if (r < 28) return ['oversized', bytes(MAX_DATA_PACKET_BYTES + 1 + below(70000))];
  if (r < 55) return ['mutated', mutate(encode(request()))];
  if (r < 78) return ['structured', encode(request())];
  if (r < 88) return ['with-fds', below(2) ? encode(request()) : mutate(encode(request())), fdsFor()];
  if (r < 94) return ['connect-close'];
  return ['send-and-abandon', below(2) ? encode(request()) : bytes(1 + below(64))];
}

const summary = { seed: SEED, cases: 0, replies: 0, closedByBroker: 0, reconnects: 0, connectRefused: 0, hangs: 0, sendErrors: 0, fdsReceived: 0, releases: 0, byKind: {}, errors: [] };

class Lane {
  constructor() {
    this.sock = undefined;
    this.waiter = undefined;
  }
  async connect() {
    for (let attempt = 0; ; attempt++) {
      try {
        const s = native.SeqpacketSocket.connect(SOCK, { maxPacket: 65536, maxFds: 8 });
        s.on('message', (data, fds) => {
          for (const fd of fds) fs.closeSync(fd);
          summary.fdsReceived += fds.length;
          let reply;
          try { reply = dataReplyCodec().decode(data); } catch (e) { summary.errors.push(`undecodable reply: ${e.message}`); }
          const w = this.waiter;
          this.waiter = undefined;
          if (w) w({ reply });
        });
        s.on('error', () => {});
        s.on('close', () => {
          if (this.sock === s) this.sock = undefined;
          const w = this.waiter;
          this.waiter = undefined;
          if (w) w({ closed: true });
        });
        this.sock = s;
        return;
      } catch (e) {
        summary.connectRefused++;
        if (attempt > 200) throw e;
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  }
  async exchange(packet, fds) {
    if (!this.sock) {
      summary.reconnects++;
      await this.connect();
    }
    const s = this.sock;
    const done = new Promise((resolve) => {
      const t = setTimeout(() => resolve({ hang: true }), CASE_TIMEOUT_MS);
      this.waiter = (v) => { clearTimeout(t); resolve(v); };
    });
    try {
      s.send(packet, fds);
    } catch (e) {
      summary.sendErrors++;
    }
    return done;
  }
}

async function lane(l, quota) {
  for (let i = 0; i < quota; i++) {
    const [kind, packet, fds] = makeCase();
    summary.byKind[kind] = (summary.byKind[kind] || 0) + 1;
    summary.cases++;
    if (kind === 'connect-close') {
      try { native.SeqpacketSocket.connect(SOCK).close(); } catch { summary.connectRefused++; }
      continue;
    }
    if (kind === 'send-and-abandon') {
      try { const s = native.SeqpacketSocket.connect(SOCK); s.on('error', () => {}); s.send(packet); s.close(); } catch { summary.connectRefused++; }
      continue;
    }
    const r = await l.exchange(packet, fds);
    for (const fd of fds || []) fs.closeSync(fd);
    if (r.hang) {
      summary.hangs++;
      summary.errors.push(`hang on a ${kind} case (${packet.length} bytes, ${packet.subarray(0, 32).toString('hex')})`);
      l.sock?.close();
      l.sock = undefined;
    } else if (r.closed) summary.closedByBroker++;
    else {
      summary.replies++;
      const a = r.reply?.acquire;
      if (a && Number(a.leaseId) > 0) {
        summary.releases++;
        await l.exchange(Buffer.from(dataRequestCodec().encode({ requestId: 1, release: { leaseId: a.leaseId } })), undefined);
      }
    }
  }
}

(async () => {
  const t0 = Date.now();
  // Slow peers: connections that are opened and then say nothing for the whole run.
  const idle = [];
  for (let i = 0; i < IDLE; i++) {
    const s = native.SeqpacketSocket.connect(SOCK);
    s.on('error', () => {});
    s.closedByBroker = false;
    s.on('close', () => { s.closedByBroker = true; });
    idle.push(s);
  }
  const lanes = Array.from({ length: LANES }, () => new Lane());
  const per = Math.ceil(CASES / LANES);
  await Promise.all(lanes.map((l, i) => lane(l, Math.min(per, CASES - i * per))));
  summary.idleStillOpen = idle.filter((s) => !s.closedByBroker).length;
  for (const s of idle) s.close();
  for (const l of lanes) l.sock?.close();
  summary.seconds = Math.round((Date.now() - t0) / 100) / 10;
  summary.errors = summary.errors.slice(0, 20);
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  process.exit(summary.hangs === 0 && summary.errors.length === 0 ? 0 : 1);
})().catch((e) => {
  console.error(e);
  process.exit(3);
});
