// The example client Pod's script (deploy/kubernetes/examples/client-pod.yaml),
// run for real: the exact program the Pod runs, as the Pod's uid, against a
// real broker, with the image path of the SDK pointed at this checkout and
// the socket directory at the broker's.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as YAML from 'yaml';
import { BrokerProcess, REPO, hasSetpriv, run } from '../support/broker-process';

const docs = YAML.parseAllDocuments(fs.readFileSync(path.join(REPO, 'deploy/kubernetes/examples/client-pod.yaml'), 'utf8')).map((d) => d.toJS());
const pod = docs.find((d) => d?.kind === 'Pod');
const container = pod.spec.containers[0];
const uid: number = pod.spec.securityContext.runAsUser;
const runnable = process.getuid?.() === 0 && hasSetpriv() && fs.existsSync(path.join(REPO, 'dist/clients/sdk/index.js'));

describe.skipIf(!runnable)('the example client Pod maps a region with the SDK', () => {
  let broker: BrokerProcess;

  beforeAll(async () => {
    broker = await BrokerProcess.start({ backend: 'memfd' });
    const created = await broker.cli(['region', 'create', 'demo', '--size', '4KiB']);
    expect(created.code, created.stderr).toBe(0);
    const written = await broker.cli(['region', 'write', 'demo'], { input: Buffer.from('0123456789abcdef-and-more') });
    expect(written.code, written.stderr).toBe(0);
  }, 60_000);

  afterAll(async () => {
    await broker?.cleanup();
  });

  function podScript(): string[] {
    expect(container.command).toEqual(['node', '-e']);
    const script = (container.args[0] as string)
      .replaceAll('/opt/shmbroker/dist/clients/sdk', path.join(REPO, 'dist/clients/sdk'))
      .replaceAll("'/run/shmbroker'", JSON.stringify(broker.runtimeDir));
    return ['-e', script];
  }

  it('without a grant it is refused and exits non-zero with a one-line reason', async () => {
    const r = await run(process.execPath, podScript(), { uid, gid: pod.spec.securityContext.runAsGroup });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^shmbroker client: .+/);
  });

  it('with the README\'s grant (uid 1000, read-only) it maps the region and prints its first bytes', async () => {
    const g = await broker.cli(['grant', 'create', 'demo', '--uid', String(uid), '--mode', 'ro']);
    expect(g.code, g.stderr).toBe(0);
    const r = await run(process.execPath, podScript(), { uid, gid: pod.spec.securityContext.runAsGroup });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toBe(`mapped demo: 4096 bytes, first 16: ${Buffer.from('0123456789abcdef').toString('hex')}\n`);
  });
});
