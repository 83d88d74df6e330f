// Starts a real broker (bin/shmbroker serve, the compiled build) in a
// private temp directory, and runs CLI commands and client scripts against
// it as real processes of any uid.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const REPO = path.resolve(__dirname, '..', '..');
export const BIN = path.join(REPO, 'bin', 'shmbroker');

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

export interface RunOptions {
  uid?: number;
  gid?: number;
  groups?: number[];
  input?: Buffer | string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

/** Runs a command to completion (asynchronously, so the broker in this process keeps serving). */
export function run(cmd: string, args: string[], o: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    let argv = [cmd, ...args];
    if (o.uid !== undefined) {
      // setpriv sets supplementary groups exactly, which spawn({uid}) cannot.
      const groups = o.groups && o.groups.length ? [`--groups=${o.groups.join(',')}`] : ['--clear-groups'];
      argv = ['setpriv', `--reuid=${o.uid}`, `--regid=${o.gid ?? o.uid}`, ...groups, '--', ...argv];
    }
    const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...o.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: err });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(o.input ?? '');
  });
}

export function makeTempDir(prefix = 'shmbroker-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(dir, 0o755); // other uids must reach the runtime dir inside
  return dir;
}

export class BrokerProcess {
  readonly dir: string;
  readonly runtimeDir: string;
  readonly stateDir: string;
  proc: ChildProcess | undefined;
  log = '';

  constructor(
    readonly options: { backend?: string; config?: string; dir?: string; extraArgs?: string[]; env?: NodeJS.ProcessEnv } = {},
  ) {
    this.dir = options.dir ?? makeTempDir();
    this.runtimeDir = path.join(this.dir, 'run');
    this.stateDir = path.join(this.dir, 'state');
  }

  static async start(options: ConstructorParameters<typeof BrokerProcess>[0] = {}): Promise<BrokerProcess> {
    const b = new BrokerProcess(options);
    await b.start();
    return b;
  }

  get pid(): number {
    return this.proc!.pid!;
  }

  async start(): Promise<void> {
    const args = ['serve', '--runtime-dir', this.runtimeDir, '--state-dir', this.stateDir, '--backend', this.options.backend ?? 'memfd'];
    if (this.options.config) args.push('--config', this.options.config);
    args.push(...(this.options.extraArgs ?? []));
    this.log = '';
    const proc = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SHMBROKER_LOG_LEVEL: 'info', ...this.options.env } });
    this.proc = proc;
    proc.stdout!.on('data', (d: Buffer) => (this.log += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (this.log += d.toString()));
    const deadline = Date.now() + 20_000;
    while (!this.log.includes('"broker serving"')) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`broker exited during start:\n${this.log}`);
      if (Date.now() > deadline) throw new Error(`broker did not start:\n${this.log}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Runs `bin/shmbroker --runtime-dir RUNTIME ...args`, as root or another uid. */
  cli(args: string[], o: RunOptions = {}): Promise<RunResult> {
    return run(process.execPath, [BIN, '--runtime-dir', this.runtimeDir, ...args], o);
  }

  /** Like cli, but parses -o json output and fails loudly on a non-zero exit. */
  async json<T = any>(args: string[], o: RunOptions = {}): Promise<T> {
    const r = await this.cli([...args, '-o', 'json'], o);
    if (r.code !== 0) throw new Error(`shmbroker ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout.toString()) as T;
  }

  /** Open fds of the broker process. */
  fdCount(): number {
    return fs.readdirSync(`/proc/${this.pid}/fd`).length;
  }

  async stop(): Promise<number | null> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return p?.exitCode ?? null;
    const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
    p.kill('SIGTERM');
    return exited;
  }

  async kill9(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGKILL');
    await exited;
  }

  async cleanup(): Promise<void> {
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Runs a JS snippet in a child node process as another uid; the snippet can `require(sdk)`. */
export function runNode(script: string, o: RunOptions & { args?: string[] } = {}): Promise<RunResult> {
  const file = path.join(makeTempDir('shmbroker-script-'), 'script.js');
  fs.writeFileSync(file, `const REPO = ${JSON.stringify(REPO)};\n${script}`);
  fs.chmodSync(file, 0o644);
  return run(process.execPath, [file, ...(o.args ?? [])], o).finally(() => fs.rmSync(path.dirname(file), { recursive: true, force: true }));
}

export function hasSetpriv(): boolean {
  return spawnSync('setpriv', ['--version']).status === 0;
}

/** A long-running node child (as any uid) that reports JSON lines on stdout. */
export class NodeChild {
  readonly proc: ChildProcess;
  private buffered = '';
  private readonly lines: any[] = [];
  private waiters: Array<() => void> = [];
  stderr = '';
  private readonly dir: string;

  constructor(script: string, o: RunOptions & { args?: string[] } = {}) {
    this.dir = makeTempDir('shmbroker-child-');
    const file = path.join(this.dir, 'child.js');
    fs.writeFileSync(file, `const REPO = ${JSON.stringify(REPO)};\nconst report = (o) => process.stdout.write(JSON.stringify(o) + '\\n');\n${script}`);
    fs.chmodSync(file, 0o644);
    let argv = [process.execPath, file, ...(o.args ?? [])];
    if (o.uid !== undefined) argv = ['setpriv', `--reuid=${o.uid}`, `--regid=${o.gid ?? o.uid}`, '--clear-groups', '--', ...argv];
    this.proc = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...o.env } });
    this.proc.stdout!.on('data', (d: Buffer) => {
      this.buffered += d.toString();
      let i: number;
      while ((i = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, i);
        this.buffered = this.buffered.slice(i + 1);
        if (line.trim()) this.lines.push(JSON.parse(line));
      }
      for (const w of this.waiters.splice(0)) w();
    });
    this.proc.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.proc.on('exit', () => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** Waits for the next reported object matching pred (consuming those before it). */
  async next(pred: (o: any) => boolean = () => true, timeoutMs = 20_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.lines.findIndex(pred);
      if (i >= 0) return this.lines.splice(0, i + 1)[i];
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
        throw new Error(`child exited (${this.proc.exitCode ?? this.proc.signalCode}) before reporting; stderr: ${this.stderr}`);
      }
      if (Date.now() > deadline) throw new Error(`child did not report in time; stderr: ${this.stderr}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 200);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  send(line: string): void {
    this.proc.stdin!.write(`${line}\n`);
  }

  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return Promise.resolve({ code: this.proc.exitCode, signal: this.proc.signalCode });
    return new Promise((r) => this.proc.once('exit', (code, signal) => r({ code, signal })));
  }

  kill(): void {
    this.proc.kill('SIGKILL');
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A broker whose state directory is a tmpfs of `size` (e.g. '32m'): a state
 * disk small enough for a test to fill. `config` is the broker's YAML.
 * cleanup() stops the broker, unmounts and removes everything.
 */
export async function startOnSmallStateDisk(
  prefix: string,
  size: string,
  config: string,
  extraArgs: string[] = [],
): Promise<{ broker: BrokerProcess; stateMount: string; cleanup: () => Promise<void> }> {
  const dir = makeTempDir(prefix);
  const stateMount = path.join(dir, 'state');
  fs.mkdirSync(stateMount, { mode: 0o700 });
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', stateMount], { encoding: 'utf8' });
  if (mounted.status !== 0) throw new Error(`mount tmpfs on ${stateMount}: ${mounted.stderr}`);
  const configPath = path.join(dir, 'broker.yaml');
  fs.writeFileSync(configPath, config);
  const broker = new BrokerProcess({ dir, config: configPath, extraArgs });
  const cleanup = async (): Promise<void> => {
    await broker.stop();
    spawnSync('umount', [stateMount]);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await broker.start();
  } catch (err) {
    await cleanup();
    throw err;
  }
  return { broker, stateMount, cleanup };
}
