// ReleaseRequest.no_reply (issue 19): the broker ends the lease exactly as
// for an answered release but sends nothing back on success; a refusal is
// still answered. The SDK's release() uses it, so a released lease must end
// while its holder stays connected and alive (no holder-exit rescue).
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as native from '../native';
import { dataReplyCodec, dataRequestCodec } from '../proto/load';
import { BrokerProcess, NodeChild } from './support/broker-process';

function nextReply(sock: native.SeqpacketSocket): Promise<{ reply: any; fds: number[] }> {
  return new Promise((resolve, reject) => {
    sock.once('message', (data, fds) => resolve({ reply: dataReplyCodec().decode(data), fds }));
    sock.once('close', () => reject(new Error('closed')));
  });
}

describe('one-way release (ReleaseRequest.no_reply)', () => {
  let broker: BrokerProcess;
  const leaseCount = async (name: string): Promise<number> => (await broker.json(['region', 'show', name])).leaseCount ?? 0;

  beforeAll(async () => {
    broker = await BrokerProcess.start({ backend: 'memfd' });
    await broker.json(['region', 'create', 'oneway', '--size', '4096']);
    await broker.json(['grant', 'create', 'oneway', '--uid', '1001', '--mode', 'rw']);
  });
  afterAll(async () => {
    await broker?.cleanup();
  });

  it('ends the lease, sends no reply on success, and still answers a refusal, in order', async () => {
    const sock = native.SeqpacketSocket.connect(`${broker.runtimeDir}/data.sock`);
    try {
      const got = nextReply(sock);
      sock.send(dataRequestCodec().encode({ requestId: 1, acquire: { region: 'oneway', mode: 'ACCESS_MODE_READ_ONLY' } }));
      const { reply, fds } = await got;
      fds.forEach((fd) => fs.closeSync(fd));
      const leaseId = reply.acquire.leaseId;
      expect(leaseId).toBeGreaterThan(0);
      expect(await leaseCount('oneway')).toBe(1);
      const replies: any[] = [];
      sock.on('message', (data, more) => {
        more.forEach((fd) => fs.closeSync(fd));
        replies.push(dataReplyCodec().decode(data));
      });
      // Released one-way (no reply), then released again one-way (refused:
      // the lease is gone, so that one is answered), then a plain release of
      // nothing (answered), whose reply proves the first two were handled.
      sock.send(dataRequestCodec().encode({ requestId: 2, release: { leaseId, noReply: true } }));
      sock.send(dataRequestCodec().encode({ requestId: 3, release: { leaseId, noReply: true } }));
      sock.send(dataRequestCodec().encode({ requestId: 4, release: { leaseId: 999_999 } }));
      for (let i = 0; i < 100 && replies.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 100));
      expect(replies.map((r) => `${r.requestId} ${r.reply} ${r.error?.reason ?? ''}`)).toEqual(['3 error LEASE_NOT_FOUND', '4 error LEASE_NOT_FOUND']);
      // The lease ended while this connection (and process) is still there.
      expect(await leaseCount('oneway')).toBe(0);
    } finally {
      sock.close();
    }
  });

  it("the SDK's release ends the lease of a holder that stays connected and alive (uid 1001)", async () => {
    const holder = new NodeChild(
      `const { connect } = require(REPO + '/dist/clients/sdk/index.js');
       (async () => {
         const c = await connect({ runtimeDir: process.argv[2], reconnect: false });
         const warnings = [];
         c.on('warning', (e) => warnings.push(e.reason));
         for (let i = 0; i < 50; i++) {
           const r = await c.acquire('oneway', { mode: 'rw' });
           new Uint8Array(r.buffer)[0] = i;
           await r.release();
         }
         const last = await c.acquire('oneway', { mode: 'ro' });
         await last.release();
         await c.drain();
         report({ done: true, warnings, byte: 0 });
         process.stdin.on('data', () => { c.close(); process.exit(0); });
       })().catch((e) => { report({ error: String(e && e.stack || e) }); });`,
      { args: [broker.runtimeDir], uid: 1001, gid: 1001 },
    );
    try {
      const r = await holder.next((o: any) => o.done || o.error);
      expect(r).toEqual({ done: true, warnings: [], byte: 0 });
      // Still connected and alive: only the releases can have ended the leases.
      let n = await leaseCount('oneway');
      for (let i = 0; i < 100 && n !== 0; i++) {
        await new Promise((res) => setTimeout(res, 20));
        n = await leaseCount('oneway');
      }
      expect(n).toBe(0);
      const events: Array<{ action: string; result: string }> = (await broker.json(['audit', 'list', '--region', 'oneway', '--limit', '1000'])).events ?? [];
      const ok = (action: string) => events.filter((e) => e.action === action && e.result === 'AUDIT_RESULT_ALLOWED').length;
      expect(ok('Release')).toBe(ok('Acquire'));
      holder.proc.stdin!.write('bye\n');
    } finally {
      holder.kill();
    }
  });
});
