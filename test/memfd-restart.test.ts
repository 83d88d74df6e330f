// Restart survival on memfd, as far as it can go: region memory lives only in
// the broker and its clients, so after kill -9 a region comes back when a
// client still holding it offers its fd back (the SDK does so when it
// reconnects), and is reported LOST otherwise, never recreated empty. An fd
// that is not the region's own memory is refused.
import * as crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerProcess, NodeChild, runNode } from './support/broker-process';

const HOLDER = `
const { connect } = require(REPO + '/dist/clients/sdk/index.js');
(async () => {
  const client = await connect({ runtimeDir: process.argv[2] });
  const region = await client.acquire(process.argv[3], { mode: 'rw' });
  const view = new Uint8Array(region.buffer);
  client.on('reconnect', () => report({ event: 'reconnected', revoked: region.revoked, byteLength: region.buffer.byteLength }));
  client.on('disconnect', () => report({ event: 'disconnected' }));
  report({ event: 'acquired', lease: region.leaseId });
  process.stdin.on('data', (d) => {
    const cmd = d.toString().trim();
    if (cmd === 'touch') { view[1] = 0x77; report({ event: 'touched', b0: view[0], b1: view[1] }); }
    if (cmd === 'exit') { client.close(); process.exit(0); }
  });
})().catch((e) => { report({ event: 'error', message: e.message }); process.exit(3); });
`;

describe('memfd restart survival', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await BrokerProcess.start({ backend: 'memfd' });
  });
  afterAll(async () => {
    await broker?.cleanup();
  });

  it('a region a client still holds is re-adopted after kill -9; one nobody holds is LOST', async () => {
    const data = crypto.randomBytes(8192);
    await broker.json(['region', 'create', 'kept', '--size', '8KiB']);
    await broker.json(['region', 'create', 'orphan', '--size', '4KiB']);
    expect((await broker.cli(['region', 'write', 'kept'], { input: data })).code).toBe(0);
    await broker.json(['grant', 'create', 'kept', '--uid', '1001', '--mode', 'rw']);
    const holder = new NodeChild(HOLDER, { uid: 1001, args: [broker.runtimeDir, 'kept'] });
    try {
      await holder.next((o) => o.event === 'acquired');
      await broker.kill9();
      await holder.next((o) => o.event === 'disconnected');
      await broker.start();
      expect(await holder.next((o) => o.event === 'reconnected')).toEqual({ event: 'reconnected', revoked: false, byteLength: 8192 });
      const regions: any[] = (await broker.json(['region', 'list'])).regions;
      expect(Object.fromEntries(regions.map((r) => [r.name, r.state]))).toEqual({
        'regions/kept': 'REGION_STATE_ACTIVE',
        'regions/orphan': 'REGION_STATE_LOST',
      });
      // The bytes written before the crash are there, and both sides still share them.
      const read = await broker.cli(['region', 'read', 'kept']);
      expect(read.stdout.equals(data)).toBe(true);
      holder.send('touch');
      await holder.next((o) => o.event === 'touched');
      const again = await broker.cli(['region', 'read', 'kept', '--length', '2']);
      expect([...again.stdout]).toEqual([data[0], 0x77]);
      const orphan = await broker.cli(['region', 'read', 'orphan']);
      expect(orphan.stderr).toContain('(REGION_LOST)');
      const audit: any[] = (await broker.json(['audit', 'list', '--region', 'kept'])).events;
      expect(audit.some((e) => e.action === 'Offer' && e.result === 'AUDIT_RESULT_ALLOWED')).toBe(true);
      holder.send('exit');
      await holder.exited();
    } finally {
      holder.kill();
    }
  });

  it('an fd that is not the region is refused and audited', async () => {
    await broker.json(['region', 'create', 'victim', '--size', '4KiB']);
    await broker.json(['grant', 'create', 'victim', '--uid', '1002', '--mode', 'rw']);
    // uid 1002 acquires (so it has a lease), then offers a memfd of its own making under that lease.
    const script = `
      const native = require(REPO + '/dist/native/index.js');
      const { dataRequestCodec, dataReplyCodec } = require(REPO + '/dist/proto/load.js');
      const fs = require('node:fs');
      const sock = native.SeqpacketSocket.connect(process.argv[2] + '/data.sock');
      const replies = [];
      sock.on('message', (data, fds) => {
        const r = dataReplyCodec().decode(data);
        fds.forEach((fd) => fs.closeSync(fd));
        replies.push(r);
        if (r.acquire) {
          const fake = native.memfdCreate('fake', 4096);
          sock.send(dataRequestCodec().encode({ requestId: 2, offer: { region: 'victim', leaseId: r.acquire.leaseId, mode: 'ACCESS_MODE_READ_WRITE' } }), [fake]);
          fs.closeSync(fake);
        } else {
          process.stdout.write(JSON.stringify(r.offer));
          sock.close();
        }
      });
      sock.send(dataRequestCodec().encode({ requestId: 1, acquire: { region: 'victim', mode: 'ACCESS_MODE_READ_WRITE' } }));`;
    const r = await runNode(script, { uid: 1002, args: [broker.runtimeDir] });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout.toString())).toEqual({ accepted: false, leaseId: 0 });
    const audit: any[] = (await broker.json(['audit', 'list', '--region', 'victim'])).events;
    expect(audit.some((e) => e.action === 'Offer' && e.result === 'AUDIT_RESULT_DENIED' && e.reason === 'OFFER_REFUSED')).toBe(true);
  });

  it('hugepages on a host without free huge pages are refused clearly', async () => {
    const fs = await import('node:fs');
    const free = Number(/HugePages_Free:\s+(\d+)/.exec(fs.readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0);
    const r = await broker.cli(['region', 'create', 'huge', '--size', '2MiB', '--hugepages']);
    if (free >= 1) {
      expect(r.code).toBe(0);
    } else {
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/hugepages requested but this host has 0 bytes of free 2 MiB huge pages.*\(HUGEPAGES_UNAVAILABLE\)/);
    }
  });
});
