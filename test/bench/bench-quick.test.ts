// `npm run bench -- --quick` end to end, so the benchmarks never rot: it must
// run every host section and write the three result files with every figure,
// its unit, its baseline and the ratio. No timing is asserted: a missed goal
// is a finding for the report, not a test failure.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const REPO = path.resolve(__dirname, '..', '..');
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'shmbroker-bench-quick-'));

afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

describe('bench --quick', () => {
  it('writes latest.json, latest.md and latest.svg with every section', { timeout: 600_000 }, () => {
    const r = spawnSync(process.execPath, [path.join(REPO, 'bench', 'run.js'), '--quick', '--out', out], { encoding: 'utf8', timeout: 590_000, maxBuffer: 64 << 20 });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);

    const j = JSON.parse(fs.readFileSync(path.join(out, 'latest.json'), 'utf8'));
    expect(j.quick).toBe(true);
    expect(j.errors).toEqual([]);
    expect(j.machine.cpus).toBeGreaterThan(0);
    expect(j.load.length).toBeGreaterThan(1);
    const groups = new Set(j.figures.map((f: { group: string }) => f.group));
    for (const g of ['1. Acquire', '2. Control plane', '3. Data plane', '4. Scale', '6. Region events']) expect(groups).toContain(g);
    expect(j.skipped.map((s: { group: string }) => s.group)).toContain('5. Inside the VM (kmod)');
    for (const f of j.figures) {
      expect(typeof f.value, f.id).toBe('number');
      expect(Number.isFinite(f.value), f.id).toBe(true);
      expect(f.unit, f.id).toBeTruthy();
      expect(f.baseline, f.id).toBeTruthy();
      expect(typeof f.ratio, f.id).toBe('number');
    }
    const ids = j.figures.map((f: { id: string }) => f.id);
    for (const id of ['acquire.4k.p50', 'acquire.64m.p50', 'acquire.4k.p99', 'control.disk.create.one.ops', 'control.tmpfs.create.eight.p99', 'dataplane.ring', 'dataplane.grpc', 'dataplane.sock', 'scale.rss', 'scale.list_regions.p50', 'scale.create.p50', 'scale.restart', 'scale.readopt', 'events.notify_wake.p50', 'events.notify_wake.p99', 'events.notify_wake_8.p50', 'events.sdk.p50', 'events.same_core.notify_wake.p50', 'events.same_core.sdk.p50',
      // Issue 19's figures, each with its baseline from the same run.
      'acquire.broker_cpu_per_cycle', 'control.disk.unary.one.ops', 'control.disk.unary.inflight16.ops', 'control.disk.create.one.vs_unary',
      'control.disk.create.inflight16.vs_unary', 'control.disk.create.clients8.scaling', 'control.broker_cpu_per_create', 'scale.regions_held',
      'scale.rss_per_record', 'scale.restart_per_region']) {
      expect(ids).toContain(id);
    }
    // Each goal is reported as met or not, whatever the machine.
    // acquire 4 KiB and 64 MiB, CreateRegion against the empty unary (one at a
    // time and 16 in flight), 8 clients against one, regions held, the ring (7);
    // region events, once per placement (cross-core, and one core where the
    // machine has two): the eventfd-floor goal, and the iceoryx one where
    // Debian's iceoryx is installed (.ci/run installs it).
    const iceoryx = fs.existsSync('/usr/include/iceoryx/v2.0.3/iceoryx_binding_c/wait_set.h');
    const placements = os.cpus().length >= 2 ? 2 : 1;
    expect(j.goals.map((g: { id: string }) => g.id).filter((id: string) => id.startsWith('events.same_core.')).length).toBe(placements === 2 ? 1 + (iceoryx ? 1 : 0) : 0);
    expect(j.goals.length).toBe(7 + placements * (1 + (iceoryx ? 1 : 0)));
    for (const g of j.goals) expect(typeof g.met).toBe('boolean');

    const md = fs.readFileSync(path.join(out, 'latest.md'), 'utf8');
    expect(md).toContain('## Goals');
    expect(md).toContain(j.machine.cpuModel);
    const svg = fs.readFileSync(path.join(out, 'latest.svg'), 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
  });
});
