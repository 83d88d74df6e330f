'use strict';
// Shared by the plain-JS suites that run inside the test VM: TAP-style
// result lines, a child-process runner (optionally as another uid), the
// broker with its CLI, and child processes whose output a suite reads line
// by line.
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const REPO = path.resolve(__dirname, '..', '..');
const BIN = path.join(REPO, 'bin', 'shmbroker');

/**
 * TAP lines "ok N - name" / "not ok N - name # detail". With detailAlways the
 * detail is printed on passing lines too (figures worth keeping in the log).
 */
function createTap({ detailAlways = false } = {}) {
  let passed = 0;
  let failed = 0;
  let n = 0;
  function ok(cond, name, detail) {
    n++;
    if (cond) passed++;
    else failed++;
    const show = detail !== undefined && (detailAlways || !cond);
    const text = show ? ` # ${String(typeof detail === 'string' ? detail : JSON.stringify(detail)).split('\n').join(' | ').slice(0, 1500)}` : '';
    console.log(`${cond ? 'ok' : 'not ok'} ${n} - ${name}${text}`);
    return cond;
  }
  /** Prints "P passed, F failed" and exits 0 only if nothing failed. */
  function finish() {
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed === 0 ? 0 : 1);
  }
  return { ok, finish };
}

/** argv run as o's { uid, gid } (setpriv, no supplementary groups), or as it is. */
const asUid = (argv, o) => (o && o.uid !== undefined ? ['setpriv', `--reuid=${o.uid}`, `--regid=${o.gid ?? o.uid}`, '--clear-groups', '--', ...argv] : argv);

/** Runs argv to completion; { uid, gid } drops privileges with setpriv, input goes to stdin. */
function run(argv, o = {}) {
  return new Promise((resolve) => {
    argv = asUid(argv, o);
    const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    const out = [];
    let err = '';
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code, signal) => resolve({ code, signal, stdout: Buffer.concat(out), stderr: err }));
    child.stdin.on('error', () => {});
    child.stdin.end(o.input || '');
  });
}

/** The users the suites act as (the guest image has 1001 and 1002). */
const U1 = { uid: 1001, gid: 1001 };
const U2 = { uid: 1002, gid: 1002 };
const NOBODY = { uid: 65534, gid: 65534 };

/** A fresh work directory others may enter (the suites drop to other uids), with the broker's runtime and state paths in it. */
function workDirs(prefix) {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(work, 0o755);
  return { work, runtimeDir: path.join(work, 'run'), stateDir: path.join(work, 'state') };
}

/**
 * One broker of a suite and its CLI: cli(args, o) and json(args, o) on its
 * runtime directory; start(extraArgs) spawns `shmbroker serve` and resolves
 * with the ms from spawn to its "broker serving" line; kill9(). `proc` is the
 * running child, `log` what it printed since the last start.
 */
function brokerHarness({ runtimeDir, stateDir, backend }) {
  const h = {
    proc: undefined,
    log: '',
    cli: (args, o) => run([process.execPath, BIN, '--runtime-dir', runtimeDir, ...args], o),
    async json(args, o) {
      const r = await h.cli([...args, '-o', 'json'], o);
      if (r.code !== 0) throw new Error(`shmbroker ${args.join(' ')}: ${r.stderr}`);
      return JSON.parse(r.stdout.toString());
    },
    async start(extraArgs = []) {
      h.log = '';
      const t0 = process.hrtime.bigint();
      const p = spawn(process.execPath, [BIN, 'serve', '--runtime-dir', runtimeDir, '--state-dir', stateDir, '--backend', backend, ...extraArgs], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      h.proc = p;
      p.stdout.on('data', (d) => (h.log += d));
      p.stderr.on('data', (d) => (h.log += d));
      while (!h.log.includes('"broker serving"')) {
        if (p.exitCode !== null) throw new Error(`broker exited: ${h.log}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return Number(process.hrtime.bigint() - t0) / 1e6;
    },
    async kill9() {
      const exited = new Promise((r) => h.proc.once('exit', r));
      h.proc.kill('SIGKILL');
      await exited;
    },
  };
  return h;
}

const children = [];

/**
 * A child process whose stdout a suite reads: line(re) for text lines,
 * next(pred) for JSON lines (each consumed up to the match; undefined once
 * it exited or timed out), send(line) to its stdin, exited(). { uid, gid }
 * runs it as that user (setpriv). Killed by killChildren().
 */
function proc(argv, o = {}, env = process.env) {
  argv = asUid(argv, o);
  const p = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env });
  children.push(p);
  let out = '';
  p.stderrText = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (p.stderrText += d));
  p.stdin.on('error', () => {});
  p.out = () => out;
  p.send = (line) => p.stdin.write(`${line}\n`);
  const alive = () => p.exitCode === null && p.signalCode === null;
  p.line = async (re, timeoutMs = 120000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const lines = out.split('\n');
      const i = lines.slice(0, -1).findIndex((l) => re.test(l));
      if (i >= 0) {
        out = lines.slice(i + 1).join('\n');
        return lines[i];
      }
      if (!alive() || Date.now() > deadline) return undefined;
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  p.next = async (pred = () => true, timeoutMs = 120000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const lines = out.split('\n');
      for (let i = 0; i < lines.length - 1; i++) {
        let o;
        try {
          o = JSON.parse(lines[i]);
        } catch {
          continue;
        }
        if (pred(o)) {
          out = lines.slice(i + 1).join('\n');
          return o;
        }
      }
      if (!alive() || Date.now() > deadline) return undefined;
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  p.exited = () =>
    !alive() ? Promise.resolve({ code: p.exitCode, signal: p.signalCode }) : new Promise((r) => p.once('exit', (code, signal) => r({ code, signal })));
  return p;
}

/**
 * A node child running `script` (written into `dir`), which finds REPO and
 * report(o) (one JSON line on stdout) defined.
 */
function nodeChild(dir, script, args, o = {}, env = process.env) {
  const file = path.join(dir, `child-${crypto.randomBytes(4).toString('hex')}.js`);
  fs.writeFileSync(file, `const REPO = ${JSON.stringify(REPO)};\nconst report = (o) => process.stdout.write(JSON.stringify(o) + '\\n');\n${script}`);
  fs.chmodSync(file, 0o644);
  return proc([process.execPath, file, ...args], o, env);
}

/** SIGKILLs every child proc() started that is still running. */
function killChildren() {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

module.exports = { REPO, BIN, U1, U2, NOBODY, workDirs, createTap, run, brokerHarness, proc, nodeChild, killChildren };
