// Shared helpers for the reliability, attack, fault and load suites
// (test/reliability, test/fuzz). Quick mode by default; SHMBROKER_SOAK=1
// (npm run soak) runs the long versions.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { BIN, BrokerProcess, makeTempDir, REPO } from '../support/broker-process';

export const SOAK = process.env.SHMBROKER_SOAK === '1' || process.env.SHMBROKER_SOAK === 'true';

/** quick value, or the soak value under SHMBROKER_SOAK=1 */
export function scale<T>(quick: T, soak: T): T {
  return SOAK ? soak : quick;
}

/** Prints a figure for the closing report (visible with vitest's default reporter). */
export function figure(name: string, value: unknown): void {
  process.stderr.write(`[figure] ${name}: ${typeof value === 'string' ? value : JSON.stringify(value)}\n`);
}

/**
 * A broker whose log is kept to a bounded tail after start (the fuzzers make
 * it log hundreds of thousands of warnings), optionally with a config file.
 */
export class QuietBroker extends BrokerProcess {
  static async launch(o: { backend?: string; config?: string; dir?: string } = {}): Promise<QuietBroker> {
    const dir = o.dir ?? makeTempDir();
    let configPath: string | undefined;
    if (o.config !== undefined) {
      configPath = path.join(dir, 'config.yaml');
      fs.writeFileSync(configPath, o.config);
    }
    const b = new QuietBroker({ backend: o.backend ?? 'memfd', dir, ...(configPath ? { config: configPath } : {}) });
    await b.start();
    return b;
  }

  /** Like BrokerProcess.start, with a longer deadline (a loaded 2-core machine) and a bounded log. */
  override async start(): Promise<void> {
    const args = ['serve', '--runtime-dir', this.runtimeDir, '--state-dir', this.stateDir, '--backend', this.options.backend ?? 'memfd'];
    if (this.options.config) args.push('--config', this.options.config);
    this.log = '';
    const proc = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SHMBROKER_LOG_LEVEL: 'info', ...this.options.env } });
    this.proc = proc;
    const keep = (d: Buffer): void => {
      this.log += d.toString();
      if (this.log.length > 256 * 1024) this.log = this.log.slice(-128 * 1024);
    };
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    const deadline = Date.now() + 90_000;
    while (!this.log.includes('"broker serving"')) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`broker exited during start:\n${this.log}`);
      if (Date.now() > deadline) throw new Error(`broker did not start:\n${this.log}`);
      await sleep(25);
    }
  }

  get alive(): boolean {
    const p = this.proc;
    return !!p && p.exitCode === null && p.signalCode === null;
  }

  /** Resident set size of the broker, bytes. */
  rss(): number {
    const status = fs.readFileSync(`/proc/${this.pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
  }

  /** Waits until the broker's fd count is `expected` (or returns what it settled at). */
  async settleFds(expected: number, ms = 5000): Promise<number> {
    const deadline = Date.now() + ms;
    while (this.fdCount() !== expected && Date.now() < deadline) await sleep(25);
    return this.fdCount();
  }

  /** Read-only SQL against the live state database (WAL: readers do not block the broker). */
  query<T = any>(sql: string, ...params: unknown[]): T[] {
    const db = new Database(path.join(this.stateDir, 'shmbroker.db'), { readonly: true, fileMustExist: true });
    try {
      return db.prepare(sql).all(...params) as T[];
    } finally {
      db.close();
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Compiles a C file next to nothing in the repo (into a temp dir); returns the binary path. */
export function compileC(source: string, extra: string[] = []): string {
  const out = path.join(makeTempDir('shmbroker-cc-'), path.basename(source, '.c'));
  const cc = ['cc', 'gcc', 'clang-14', 'clang'].find((c) => spawnSync(c, ['--version']).status === 0);
  if (!cc) throw new Error('no C compiler (cc/gcc/clang) found');
  const r = spawnSync(cc, ['-O1', '-g', '-Wall', '-Werror', '-o', out, source, ...extra], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cc} ${source} failed:\n${r.stdout}${r.stderr}`);
  fs.chmodSync(path.dirname(out), 0o755);
  fs.chmodSync(out, 0o755);
  return out;
}

export { REPO };
