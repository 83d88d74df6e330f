// The C client's hand-written data-plane codec (clients/c/src/proto.c) against
// protobufjs, which the broker uses: replies encoded by protobufjs decode to
// the same values in C, requests encoded in C decode to the same values in
// protobufjs, and protobufjs-encoded requests decode in C too. Random messages
// from fast-check, run through clients/c/build/proto_tool in one batch each.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import fc from 'fast-check';
import * as protobuf from 'protobufjs';
import { beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(__dirname, '..', '..');
const cdir = path.join(root, 'clients', 'c');
// A build directory of its own: c-client.test.ts may run make in build/ at
// the same time (vitest runs files in parallel).
const buildDir = path.join('build', 'proto-compat');
const tool = path.join(cdir, buildDir, 'proto_tool');
const U64_MAX = (1n << 64n) - 1n;

let DataReply: protobuf.Type;
let DataRequest: protobuf.Type;

beforeAll(() => {
  execFileSync('make', ['-s', '-C', cdir, `B=${buildDir}`, `${buildDir}/proto_tool`], { stdio: ['ignore', 'ignore', 'inherit'] });
  const rootNs = protobuf.loadSync(path.join(root, 'proto', 'shmbroker', 'v1', 'dataplane.proto'));
  DataReply = rootNs.lookupType('shmbroker.v1.DataReply');
  DataRequest = rootNs.lookupType('shmbroker.v1.DataRequest');
}, 120_000);

function runTool(lines: string[]): string[] {
  const out = execFileSync(tool, [], { input: lines.join('\n') + '\n', maxBuffer: 64 << 20 }).toString();
  const result = out.split('\n');
  result.pop();
  expect(result.length).toBe(lines.length);
  return result;
}

const hex = (s: string): string => Buffer.from(s, 'utf8').toString('hex');
const u64 = fc.bigInt({ min: 0n, max: U64_MAX });
const str = fc.string({ unit: 'grapheme', maxLength: 40 });
const i32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
const u32 = fc.integer({ min: 0, max: 2 ** 32 - 1 });
const mode = fc.integer({ min: 0, max: 5 });

// protobufjs takes 64-bit values as decimal strings (Long.fromString).
const replyArb = fc.record({
  requestId: u64,
  reply: fc.oneof(
    fc.record({
      acquire: fc.record({ leaseId: u64, region: str, sizeBytes: u64, mode, grant: str, backend: str }),
    }),
    fc.record({ release: fc.record({ leaseId: u64 }) }),
    fc.record({ error: fc.record({ code: i32, reason: str, message: str }) }),
    fc.record({ revocation: fc.record({ leaseId: u64, region: str, reason: str, graceMs: u32 }) }),
    fc.record({ offer: fc.record({ accepted: fc.boolean(), leaseId: u64 }) }),
    fc.constant({}),
  ),
});

type Reply = typeof replyArb extends fc.Arbitrary<infer T> ? T : never;

function stringifyLongs(v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, stringifyLongs(x)]));
  }
  return v;
}

function expectedC(r: Reply): Record<string, unknown> {
  const e: Record<string, unknown> = { request_id: r.requestId.toString() };
  const b = r.reply as Record<string, Record<string, unknown>>;
  if (b.acquire) {
    const a = b.acquire as { leaseId: bigint; region: string; sizeBytes: bigint; mode: number; grant: string; backend: string };
    Object.assign(e, {
      kind: 'acquire',
      lease_id: a.leaseId.toString(),
      region: hex(a.region),
      size_bytes: a.sizeBytes.toString(),
      mode: a.mode,
      grant: hex(a.grant),
      backend: hex(a.backend),
    });
  } else if (b.release) {
    Object.assign(e, { kind: 'release', lease_id: (b.release.leaseId as bigint).toString() });
  } else if (b.error) {
    const x = b.error as { code: number; reason: string; message: string };
    Object.assign(e, { kind: 'error', code: x.code, reason: hex(x.reason), message: hex(x.message) });
  } else if (b.revocation) {
    const x = b.revocation as { leaseId: bigint; region: string; reason: string; graceMs: number };
    Object.assign(e, {
      kind: 'revocation',
      lease_id: x.leaseId.toString(),
      region: hex(x.region),
      reason: hex(x.reason),
      grace_ms: x.graceMs,
    });
  } else if (b.offer) {
    const x = b.offer as { accepted: boolean; leaseId: bigint };
    Object.assign(e, { kind: 'offer', accepted: x.accepted ? 1 : 0, lease_id: x.leaseId.toString() });
  } else {
    e.kind = 'none';
  }
  return e;
}

describe('C data-plane codec vs protobufjs', () => {
  it('decodes protobufjs-encoded DataReply messages to the same values', () => {
    const samples = fc.sample(replyArb, { numRuns: 600, seed: 9 });
    const lines = samples.map((r) => {
      const msg = DataReply.fromObject({ requestId: r.requestId.toString(), ...(stringifyLongs(r.reply) as object) });
      return `decode-reply ${Buffer.from(DataReply.encode(msg).finish()).toString('hex')}`;
    });
    const out = runTool(lines);
    samples.forEach((r, i) => {
      expect(JSON.parse(out[i]!), lines[i]).toEqual(expectedC(r));
    });
  });

  it('encodes DataRequest messages that protobufjs decodes to the same values', () => {
    const reqArb = fc.record({
      id: u64,
      body: fc.oneof(
        fc.record({ kind: fc.constant('acquire' as const), region: str, mode }),
        fc.record({ kind: fc.constant('release' as const), lease: u64 }),
        fc.record({ kind: fc.constant('offer' as const), region: str, lease: u64, mode }),
      ),
    });
    const samples = fc.sample(reqArb, { numRuns: 600, seed: 11 });
    const lines = samples.map(({ id, body }) => {
      const h = (s: string): string => (s === '' ? '-' : hex(s));
      if (body.kind === 'acquire') return `acquire ${id} ${h(body.region)} ${body.mode}`;
      if (body.kind === 'release') return `release ${id} ${body.lease}`;
      return `offer ${id} ${h(body.region)} ${body.lease} ${body.mode}`;
    });
    const out = runTool(lines);
    samples.forEach(({ id, body }, i) => {
      const decoded = DataRequest.toObject(DataRequest.decode(Buffer.from(out[i]!, 'hex')), {
        longs: String,
        enums: Number,
        defaults: true,
        oneofs: true,
      });
      expect(decoded.requestId).toBe(id.toString());
      expect(decoded.request).toBe(body.kind);
      if (body.kind === 'acquire') {
        expect(decoded.acquire).toEqual({ region: body.region, mode: body.mode, wantEvents: false });
      } else if (body.kind === 'release') {
        // The C client's release waits for the broker's answer: it never sets no_reply.
        expect(decoded.release).toEqual({ leaseId: body.lease.toString(), noReply: false });
      } else {
        expect(decoded.offer).toEqual({ region: body.region, leaseId: body.lease.toString(), mode: body.mode });
      }
    });
  });

  it('encodes byte-for-byte like protobufjs when defaults are left out', () => {
    const obj = { requestId: '300', acquire: { region: 'frames', mode: 2 } };
    const js = Buffer.from(DataRequest.encode(DataRequest.fromObject(obj)).finish()).toString('hex');
    expect(runTool([`acquire 300 ${hex('frames')} 2`])[0]).toBe(js);
    const rel = Buffer.from(
      DataRequest.encode(DataRequest.fromObject({ requestId: '18446744073709551615', release: { leaseId: '7' } })).finish(),
    ).toString('hex');
    expect(runTool(['release 18446744073709551615 7'])[0]).toBe(rel);
  });

  it('decodes protobufjs-encoded requests (the fake peer side)', () => {
    const msg = DataRequest.fromObject({ requestId: '42', offer: { region: 'r', leaseId: '9', mode: 1 } });
    const out = runTool([`decode-request ${Buffer.from(DataRequest.encode(msg).finish()).toString('hex')}`]);
    expect(JSON.parse(out[0]!)).toEqual({ request_id: '42', kind: 'offer', region: hex('r'), lease_id: '9', mode: 1 });
  });

  it('rejects truncations of protobufjs-encoded replies without crashing', () => {
    const msg = DataReply.fromObject({
      requestId: '5',
      acquire: { leaseId: '77', region: 'frames', sizeBytes: '1048576', mode: 2, backend: 'memfd' },
    });
    const bytes = Buffer.from(DataReply.encode(msg).finish());
    const lines: string[] = [];
    for (let n = 0; n < bytes.length; n++) lines.push(`decode-reply ${bytes.subarray(0, n).toString('hex')}`);
    const out = runTool(lines).map((l) => JSON.parse(l) as Record<string, unknown>);
    for (let n = 0; n < out.length; n++) {
      // protobufjs agrees on which prefixes are malformed.
      let jsOk = true;
      try {
        DataReply.decode(bytes.subarray(0, n));
      } catch {
        jsOk = false;
      }
      expect(out[n]!.error === undefined, `prefix ${n}`).toBe(jsOk);
    }
  });
});
