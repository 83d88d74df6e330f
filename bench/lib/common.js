'use strict';
// Shared helpers for the benchmarks: statistics, a real broker process,
// child processes that report JSON, and the C programs in bench/c.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync, execFileSync } = require('node:child_process');

const REPO = path.resolve(__dirname, '..', '..');
const BIN = path.join(REPO, 'bin', 'shmbroker');
const BUILD = path.join(REPO, 'bench', '.build');

// Every child this process starts, killed if it exits early (an exception,
// Ctrl-C), so that no broker or worker outlives a benchmark run.
const live = new Set();
function track(proc) {
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  return proc;
}
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => process.exit(130));

function sorted(xs) {
  return Float64Array.from(xs).sort();
}
function quantile(xs, q) {
  const s = sorted(xs);
  if (!s.length) return NaN;
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1));
  return s[i];
}
const median = (xs) => quantile(xs, 0.5);
const p99 = (xs) => quantile(xs, 0.99);

/** Summary of per-op latencies in ns: p50 and p99 in µs. */
function latency(ns) {
  return { p50_us: median(ns) / 1e3, p99_us: p99(ns) / 1e3, n: ns.length };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function loadAvg() {
  return os.loadavg().map((x) => Math.round(x * 100) / 100);
}

/** Compiles bench/c/NAME.c into bench/.build/NAME (once per run). */
function buildC(name, extra = []) {
  fs.mkdirSync(BUILD, { recursive: true });
  const out = path.join(BUILD, name);
  const src = path.join(REPO, 'bench', 'c', `${name}.c`);
  execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-o', out, src, ...extra], { stdio: ['ignore', 'inherit', 'inherit'] });
  return out;
}

function runJson(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 << 20, ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr}`);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]);
}

function makeTempDir(prefix = 'shmbroker-bench-', base = os.tmpdir()) {
  const dir = fs.mkdtempSync(path.join(base, prefix));
  fs.chmodSync(dir, 0o755);
  return dir;
}

const BENCH_CONFIG = `defaultQuota:
  uid: { bytes: unlimited, regions: unlimited }
maxGrantsPerRegion: 100000
dataPlane: { maxConnectionsPerUid: 1024, maxRequestsPerSecondPerUid: 1000000000 }
`;

/** A real broker: bin/shmbroker serve in a private directory (memfd backend). */
class Broker {
  constructor(o = {}) {
    // o.base: where the state lives, e.g. /dev/shm to take the disk out of the figures.
    this.dir = o.dir ?? makeTempDir('shmbroker-bench-', o.base);
    this.runtimeDir = path.join(this.dir, 'run');
    this.stateDir = path.join(this.dir, 'state');
    this.backend = o.backend ?? 'memfd';
    this.nofile = o.nofile; // raise RLIMIT_NOFILE for the broker child (prlimit)
    this.nodeArgs = o.nodeArgs ?? []; // e.g. --cpu-prof for a profile
    // The defaults cap a uid at 64 regions and 1,000 data-plane requests/s;
    // a benchmark measures the machinery, so it lifts those limits.
    this.config = o.config ?? BENCH_CONFIG;
    this.proc = undefined;
    this.log = '';
  }

  static async start(o) {
    const b = new Broker(o);
    await b.start();
    return b;
  }

  get pid() {
    return this.proc.pid;
  }

  /** Starts the broker; resolves with ms from spawn to its "broker serving" log line. */
  async start() {
    const args = [BIN, 'serve', '--runtime-dir', this.runtimeDir, '--state-dir', this.stateDir, '--backend', this.backend];
    if (this.config) {
      fs.mkdirSync(this.dir, { recursive: true });
      const cfg = path.join(this.dir, 'config.yaml');
      fs.writeFileSync(cfg, this.config);
      args.push('--config', cfg);
    }
    let argv = [process.execPath, ...this.nodeArgs, ...args];
    if (this.nofile) argv = ['prlimit', `--nofile=${this.nofile}:${this.nofile}`, '--', ...argv];
    // Logs at the broker's default level (info), as in production, into a file.
    fs.mkdirSync(this.dir, { recursive: true });
    const logFd = fs.openSync(path.join(this.dir, 'broker.log'), 'a');
    const t0 = process.hrtime.bigint();
    this.spawnedAt = t0;
    const proc = spawn(argv[0], argv.slice(1), { stdio: ['ignore', logFd, logFd], env: process.env });
    fs.closeSync(logFd);
    this.proc = track(proc);
    const deadline = Date.now() + 900_000;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`broker exited during start:\n${this.readLog()}`);
      if (fs.existsSync(path.join(this.runtimeDir, 'broker.sock')) && fs.existsSync(path.join(this.runtimeDir, 'data.sock')) && (await this.#answers())) break;
      if (Date.now() > deadline) throw new Error(`broker did not start:\n${this.readLog()}`);
      await sleep(2);
    }
    return Number(process.hrtime.bigint() - t0) / 1e6;
  }

  async #answers() {
    const { ControlClient } = sdk();
    const c = new ControlClient({ runtimeDir: this.runtimeDir, deadlineMs: 2000 });
    try {
      await c.call('BrokerService', 'GetStatus', {});
      return true;
    } catch {
      return false;
    } finally {
      c.close();
    }
  }

  readLog() {
    try {
      return fs.readFileSync(path.join(this.dir, 'broker.log'), 'utf8').slice(-4000);
    } catch {
      return '';
    }
  }

  /** Resident set size of the broker process, bytes. */
  rss() {
    const pid = this.nodePid();
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  }

  /** CPU time (user + system) the broker has used so far, ms. */
  cpuMs() {
    return procCpuMs(this.nodePid());
  }

  /** The node process (prlimit execs it, so it is the same pid). */
  nodePid() {
    return this.proc.pid;
  }

  async stop(signal = 'SIGTERM') {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill(signal);
    await exited;
  }

  async cleanup() {
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** CPU time (user + system) of a process so far, ms (clock-tick resolution). */
function procCpuMs(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const tick = 100; // sysconf(_SC_CLK_TCK) on Linux
  return ((Number(f[11]) + Number(f[12])) * 1000) / tick;
}

let sdkCache;
function sdk() {
  if (!sdkCache) {
    const entry = path.join(REPO, 'dist', 'clients', 'sdk', 'index.js');
    if (!fs.existsSync(entry)) throw new Error('dist/ not built: run `npm run build` first');
    sdkCache = require(entry);
  }
  return sdkCache;
}

/**
 * A node child process running bench/workers/NAME.js, optionally as another
 * uid (setpriv), that speaks JSON lines: it reports {ready:true}, waits for
 * "go" on stdin, and reports its result as the last line.
 */
class Worker {
  constructor(name, args = [], o = {}) {
    let argv = [process.execPath, ...(o.nodeArgs ?? []), path.join(REPO, 'bench', 'workers', `${name}.js`), ...args];
    if (o.uid !== undefined) argv = ['setpriv', `--reuid=${o.uid}`, `--regid=${o.gid ?? o.uid}`, '--clear-groups', '--', ...argv];
    // Pinned to one CPU (bench/c/bench_pin.h says why placement matters).
    if (o.cpu !== undefined) argv = ['taskset', '-c', String(o.cpu), ...argv];
    this.proc = track(spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...o.env } }));
    this.lines = [];
    this.stderr = '';
    this.waiters = [];
    let buf = '';
    this.proc.stdout.on('data', (d) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.trim()) this.lines.push(JSON.parse(line));
      }
      this.waiters.splice(0).forEach((w) => w());
    });
    this.proc.stderr.on('data', (d) => (this.stderr += d.toString()));
    this.proc.on('exit', () => this.waiters.splice(0).forEach((w) => w()));
  }

  async next(pred = () => true, timeoutMs = 600_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.lines.findIndex(pred);
      if (i >= 0) return this.lines.splice(0, i + 1)[i];
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
        throw new Error(`worker exited (${this.proc.exitCode ?? this.proc.signalCode}); stderr: ${this.stderr}`);
      }
      if (Date.now() > deadline) throw new Error(`worker timed out; stderr: ${this.stderr}`);
      await new Promise((r) => {
        const t = setTimeout(r, 200);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  send(line) {
    this.proc.stdin.write(`${line}\n`);
  }

  async done() {
    const res = await this.next((o) => o.result !== undefined);
    return res.result;
  }

  kill() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
  }
}

/** Picks an unprivileged uid for grantee processes when running as root. */
function granteeUid() {
  return process.getuid() === 0 ? 65534 : undefined;
}

/** Calls fn(0) .. fn(count - 1), `inflight` at a time (each lane takes the next index when its call ends). */
async function lanes(count, inflight, fn) {
  let next = 0;
  async function lane() {
    for (let i = next++; i < count; i = next++) await fn(i);
  }
  await Promise.all(Array.from({ length: inflight }, lane));
}

module.exports = { procCpuMs, REPO, BIN, BUILD, quantile, median, p99, latency, sleep, loadAvg, buildC, runJson, makeTempDir, Broker, Worker, sdk, granteeUid, lanes };
