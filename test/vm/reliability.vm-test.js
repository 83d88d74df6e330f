#!/usr/bin/env node
'use strict';
// Inside the test VM, against the real shmbroker.ko (run by
// test/vm/guest.d/50-reliability.sh): the kmod rows of SECURITY.md.
// Plain JS on the compiled build (vitest is slow under emulation); the C
// programs are compiled here into /tmp (the repo is read-only in the guest).
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { createTap, run, workDirs } = require('./guest-lib');

const REPO = path.resolve(__dirname, '..', '..');
const BIN = path.join(REPO, 'bin', 'shmbroker');
const native = require(path.join(REPO, 'dist', 'native', 'index.js'));
const { ControlClient } = require(path.join(REPO, 'dist', 'clients', 'sdk', 'control-client.js'));
const { work, runtimeDir, stateDir } = workDirs('kmod-reliability-');
const FUZZ_CALLS = Number(process.env.SHMBROKER_KMOD_FUZZ_CALLS || 100000);
const DP_CASES = Number(process.env.SHMBROKER_VM_DP_FUZZ_CASES || 1000);
const KILLS = Number(process.env.SHMBROKER_VM_KILLS || 3);

const { ok, finish } = createTap({ detailAlways: true });

const cli = (args, o) => run([process.execPath, BIN, '--runtime-dir', runtimeDir, ...args], o);
function cc(src, extra = []) {
  const out = path.join(work, path.basename(src, '.c'));
  const r = spawnSync('cc', ['-O1', '-g', '-Wall', '-o', out, path.join(REPO, src), ...extra], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cc ${src}: ${r.stdout}${r.stderr}`);
  fs.chmodSync(out, 0o755);
  return out;
}
const BAD = /WARNING:|BUG:|Oops|KASAN|UBSAN|refcount_t|list_del corruption|general protection|Call Trace/;
function kernelLog() {
  const r = spawnSync('dmesg', [], { encoding: 'utf8' });
  return r.stdout || '';
}

let broker;
let brokerLog = '';
async function startBroker() {
  brokerLog = '';
  const t0 = Date.now();
  broker = spawn(process.execPath, [BIN, 'serve', '--runtime-dir', runtimeDir, '--state-dir', stateDir, '--backend', 'kmod'], { stdio: ['ignore', 'pipe', 'pipe'] });
  broker.stdout.on('data', (d) => { brokerLog = (brokerLog + d).slice(-65536); });
  broker.stderr.on('data', (d) => { brokerLog = (brokerLog + d).slice(-65536); });
  while (!brokerLog.includes('"broker serving"')) {
    if (broker.exitCode !== null) throw new Error(`broker exited: ${brokerLog}`);
    if (Date.now() - t0 > 180_000) throw new Error(`broker did not start: ${brokerLog}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now() - t0;
}
async function kill9() {
  if (!broker || broker.exitCode !== null || broker.signalCode !== null) return;
  const exited = new Promise((r) => broker.once('exit', r));
  broker.kill('SIGKILL');
  await exited;
}
const fdCount = () => fs.readdirSync(`/proc/${broker.pid}/fd`).length;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A node child as another uid, reporting JSON lines. */
function child(script, args, who) {
  const file = path.join(work, `child-${Math.random().toString(36).slice(2)}.js`);
  fs.writeFileSync(file, `const REPO = ${JSON.stringify(REPO)};\nconst report = (o) => process.stdout.write(JSON.stringify(o) + '\\n');\n${script}`);
  fs.chmodSync(file, 0o644);
  const p = spawn('setpriv', [`--reuid=${who.uid}`, `--regid=${who.gid ?? who.uid}`, '--clear-groups', '--', process.execPath, file, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  p.lines = [];
  p.err = '';
  let buf = '';
  p.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.trim()) p.lines.push(JSON.parse(line));
    }
  });
  p.stderr.on('data', (d) => (p.err += d));
  p.next = async (pred, ms = 300_000) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = p.lines.findIndex(pred);
      if (i >= 0) return p.lines.splice(0, i + 1)[i];
      if (p.exitCode !== null) throw new Error(`child exited ${p.exitCode}: ${p.err}`);
      if (Date.now() > deadline) throw new Error(`child silent: ${p.err}`);
      await sleep(50);
    }
  };
  return p;
}

(async () => {
  const device = native.KmodDevice.open('/dev/shmbroker');
  const before = new Set(device.list().map(String));
  try {
    // 1. The ioctl fuzzer, then no kernel warning.
    const fuzzer = cc('test/fuzz/kmod-ioctl-fuzz.c', ['-pthread']);
    const dmesg0 = kernelLog().split('\n').length;
    const t0 = Date.now();
    const f = spawnSync(fuzzer, [String(FUZZ_CALLS), '4', String(Date.now() % 100000)], { encoding: 'utf8', timeout: 1800_000 });
    const summary = (f.stdout || '').trim().split('\n').pop();
    ok(f.status === 0, `kmod ioctl fuzzer: ${FUZZ_CALLS} calls from 4 threads (${((Date.now() - t0) / 1000).toFixed(1)} s)`, summary + (f.status === 0 ? '' : ` ${f.stderr} ${f.stdout}`));
    const newLog = kernelLog().split('\n').slice(dmesg0 - 1);
    const bad = newLog.filter((l) => BAD.test(l));
    ok(bad.length === 0, 'no kernel warning, BUG or Oops during the ioctl fuzz', bad.slice(0, 10).join('\n') || undefined);

    // 2. A grantee of another uid attacks its grant fd (through the broker and the SDK).
    await startBroker();
    const fdattack = cc('test/reliability/fdattack.c');
    // Set-up through the control client in this process: every CLI call is a Node start, slow under emulation.
    const ctl = new ControlClient({ runtimeDir });
    const grant = (region, uid, mode) =>
      ctl.call('BrokerService', 'CreateGrant', { parent: `regions/${region}`, grant: { uid, mode: mode === 'rw' ? 'ACCESS_MODE_READ_WRITE' : 'ACCESS_MODE_READ_ONLY' } });
    for (const mode of ['ro', 'rw']) {
      await ctl.call('BrokerService', 'CreateRegion', { regionId: `fd-${mode}`, region: { sizeBytes: 16384 } });
      await grant(`fd-${mode}`, 1001, mode);
    }
    await cli(['region', 'write', 'fd-ro'], { input: Buffer.from('intact') });
    for (const mode of ['ro', 'rw']) {
      const r = await run([process.execPath, '-e', `
        const { connect } = require(${JSON.stringify(path.join(REPO, 'dist/clients/sdk/index.js'))});
        // The fd is this process's either way (/proc/self/fd/N); the SDK keeps it out of its API, its internal module has it.
        const { sdkRegionAccess } = require(${JSON.stringify(path.join(REPO, 'dist/clients/sdk/mapped-region.js'))});
        const { spawnSync } = require('node:child_process');
        (async () => {
          const c = await connect({ runtimeDir: process.argv[1], reconnect: false });
          const region = await c.acquire(process.argv[2], { mode: process.argv[3] });
          const r = spawnSync(process.argv[4], [process.argv[3], String(region.size)], { stdio: ['ignore', 'pipe', 'pipe', sdkRegionAccess.fd(region)], encoding: 'utf8' });
          await region.release(); c.close();
          process.stdout.write(r.stdout || ('fdattack failed: ' + r.status + ' ' + r.signal + ' ' + r.stderr));
        })().catch((e) => { console.error(e); process.exit(3); });`, runtimeDir, `fd-${mode}`, mode, fdattack], { uid: 1001 });
      let out;
      try { out = JSON.parse(r.stdout.toString()); } catch { out = { parseError: r.stdout.toString() + r.stderr }; }
      // What must never be ALLOWED for this mode (writes for ro; growth and out-of-bounds for both).
      const forbidden = ['reopenProcFdRdwr', 'reopenMapFilesRdwr', 'ftruncateGrow', 'ftruncateShrink', 'fallocateGrow', 'mremapGrow', 'touchBeyondEnd', 'mmapBeyondEnd', 'mmapAtOffsetEnd', 'fchmod', 'fchown', 'addSealWrite'];
      if (mode === 'ro') forbidden.push('mmapWritableShared', 'mprotectWrite', 'procSelfMemWrite', 'mprotectWriteAfterMremap', 'pwrite');
      const allowed = forbidden.filter((k) => out[k] === 'ALLOWED' || out[k] === undefined);
      ok(allowed.length === 0 && out.sizeAfter === 16384 && out.readableInsideStill === 'ALLOWED', `kmod ${mode} grantee (uid 1001): every write, growth and out-of-bounds attack refused`, { allowed, out });
    }
    const still = await cli(['region', 'read', 'fd-ro', '--length', '6']);
    ok(still.stdout.toString() === 'intact', 'kmod: the read-only region is unchanged', still.stdout.toString());

    // 3. The data-plane fuzzer against the kmod broker.
    await ctl.call('BrokerService', 'CreateRegion', { regionId: 'fuzz', region: { sizeBytes: 16384 } });
    await grant('fuzz', 1001, 'rw');
    ctl.close();
    const fds0 = fdCount();
    const fz = await run([process.execPath, path.join(REPO, 'test/fuzz/dataplane-fuzzer.js'), runtimeDir, String(DP_CASES), String(Date.now() % 100000), 'fuzz'], { uid: 1001 });
    let fds1 = fdCount();
    for (let i = 0; i < 100 && fds1 > fds0; i++) { await sleep(100); fds1 = fdCount(); }
    // <= : the set-up client's connection may still have been counted in the baseline.
    ok(fz.code === 0 && broker.exitCode === null && fds1 <= fds0, `kmod data-plane fuzzer: ${DP_CASES} cases, broker up, fds ${fds0} -> ${fds1}`, fz.stdout.toString().trim() + fz.stderr);

    // 4. kill -9 of the broker under load: acknowledged creates survive, regions re-adopted, audit verifies.
    const workers = [0, 1, 2, 3].map((i) => child(`
      const { ControlClient } = require(REPO + '/dist/clients/sdk/control-client.js');
      let stop = false; process.stdin.on('data', () => { stop = true; });
      (async () => {
        const c = new ControlClient({ runtimeDir: process.argv[2], deadlineMs: 20000 });
        report({ ready: true });
        let n = 0;
        while (!stop) {
          const name = process.argv[3] + '-' + n++;
          try { await c.call('BrokerService', 'CreateRegion', { regionId: name, region: { sizeBytes: 4096 } }); report({ ack: name }); }
          catch (e) { await new Promise((r) => setTimeout(r, 100)); }
        }
        report({ done: true }); c.close(); process.exit(0);
      })();`, [runtimeDir, `k${i}`], { uid: 1001 + i }));
    for (const w of workers) await w.next((o) => o.ready);
    for (let k = 0; k < KILLS; k++) {
      await sleep(4000 + Math.random() * 3000); // emulation: creates take a while to land
      await kill9();
      await startBroker();
    }
    await sleep(2000);
    const acked = [];
    for (const w of workers) {
      w.stdin.write('stop\n');
      for (;;) {
        const o = await w.next(() => true);
        if (o.ack) acked.push(o.ack);
        if (o.done) break;
      }
    }
    const ctl2 = new ControlClient({ runtimeDir });
    const list = [];
    let token = '';
    do {
      const page = await ctl2.call('BrokerService', 'ListRegions', { pageSize: 500, pageToken: token });
      list.push(...page.regions);
      token = page.nextPageToken;
    } while (token);
    ctl2.close();
    const rows = new Map(list.map((r) => [r.name.replace(/^regions\//, ''), r]));
    const missing = acked.filter((a) => !rows.has(a));
    const lost = acked.filter((a) => rows.get(a) && rows.get(a).state !== 'REGION_STATE_ACTIVE' && rows.get(a).state !== 'ACTIVE');
    const verify = await cli(['audit', 'verify', '-o', 'json']);
    ok(missing.length === 0 && lost.length === 0 && verify.code === 0 && acked.length > 0,
      `kmod kill -9 x${KILLS} under load from 4 clients: ${acked.length} acknowledged creates all present and ACTIVE (re-adopted), audit verifies`,
      missing.length || lost.length || verify.code ? { missing: missing.slice(0, 10), lost: lost.slice(0, 10), verify: verify.stdout.toString() + verify.stderr } : undefined);
  } catch (err) {
    ok(false, 'reliability suite ran to the end', `${err.stack || err}\n${brokerLog.slice(-2000)}`);
  } finally {
    await kill9().catch(() => {});
    // Leave the module idle: destroy every region this script made (the broker's included).
    for (const id of device.list()) if (!before.has(String(id))) try { device.destroy(id); } catch {}
    device.close();
    fs.rmSync(work, { recursive: true, force: true });
  }
  finish();
})();
