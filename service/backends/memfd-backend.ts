// The embedded default backend: each region is a sealed memfd owned by the
// broker. Sealed against growing and shrinking (F_SEAL_SHRINK|F_SEAL_GROW|
// F_SEAL_SEAL) so a mapping never faults on truncation, and mode 0600 owned
// by root so a grantee of another uid holding an O_RDONLY fd cannot re-open
// /proc/PID/fd/N for writing. What it cannot do is stated in `guarantees`.
import * as fs from 'node:fs';
import * as native from '../../native';
import { checkAlignment, type Backend, type BackendGuarantees, type CreateOptions, type OpenedRegion, type RegionCeiling } from './backend';
import { FailedPreconditionError, InvalidArgumentError, ResourceExhaustedError } from '../errors';
import type { GrantMode } from '../store/grant-store';
import type { RegionRecord } from '../store/region-store';

const REQUIRED_SEALS = native.SEAL.SHRINK | native.SEAL.GROW | native.SEAL.SEAL;

/** What the broker records about a memfd, to recognise it when a client offers it back. */
export interface MemfdIdentity {
  dev: string;
  ino: string;
  size: number;
  seals: number;
  /** Owner and permission bits: only the broker's own uid can have made a 0600 memfd it owns. */
  uid: number;
  mode: number;
}

export function memfdIdentity(fd: number): MemfdIdentity {
  const st = fs.fstatSync(fd, { bigint: true });
  return {
    dev: st.dev.toString(),
    ino: st.ino.toString(),
    size: Number(st.size),
    seals: native.getSeals(fd),
    uid: Number(st.uid),
    mode: Number(st.mode & 0o7777n),
  };
}


function freeHugepageBytes(): number {
  try {
    const info = fs.readFileSync('/proc/meminfo', 'utf8');
    const free = /HugePages_Free:\s+(\d+)/.exec(info);
    const size = /Hugepagesize:\s+(\d+) kB/.exec(info);
    return free && size ? Number(free[1]) * Number(size[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export class MemfdBackend implements Backend {
  readonly kind = 'memfd' as const;
  readonly kernelEvents = false;
  readonly guarantees: BackendGuarantees = {
    revocationEnforced: false,
    restartSurvival: false,
    readOnlyEnforced: true,
    limitations: [
      'revocation stops new acquires and notifies SDK clients, but a client that ignores the notice keeps its existing mapping',
      'region memory lives in the broker and its clients: after a broker restart a region comes back only if a client still holding it offers its fd back; otherwise it is reported LOST',
    ],
  };

  /** Keyed by the recorded identity, not the name: a deleted region's memory may linger through its grace period while a new region takes the name. */
  private readonly fds = new Map<string, number>();
  /** One fd per region: RLIMIT_NOFILE (raised to its hard limit at start) less what connections and the database need. */
  private readonly ceiling = memfdCeiling(native.nofileLimit(true).soft);

  regionCeiling(): RegionCeiling & { fdLimit: number; reserved: number } {
    return this.ceiling;
  }

  create(name: string, sizeBytes: number, options: CreateOptions): string {
    if (options.numaNode >= 0) {
      throw new InvalidArgumentError('NUMA_UNSUPPORTED', 'the memfd backend cannot place a region on a NUMA node; use the kmod backend');
    }
    if (options.hugepages) {
      checkAlignment(sizeBytes, true);
      const free = freeHugepageBytes();
      if (free < sizeBytes) {
        throw new FailedPreconditionError(
          'HUGEPAGES_UNAVAILABLE',
          `hugepages requested but this host has ${free} bytes of free 2 MiB huge pages (see /proc/sys/vm/nr_hugepages)`,
        );
      }
    }
    if (this.fds.size >= this.ceiling.regions) throw this.fdLimitError();
    let fd: number;
    try {
      fd = native.memfdCreate(`shmbroker:${name}`, sizeBytes, { hugetlb: options.hugepages });
    } catch (err) {
      const code = (err as native.NativeError).code;
      if (code === 'EMFILE' || code === 'ENFILE') throw this.fdLimitError(code);
      if (code === 'ENOMEM' || code === 'ENOSPC') {
        throw new ResourceExhaustedError('BACKEND_EXHAUSTED', `cannot allocate ${sizeBytes} bytes: ${(err as Error).message}`);
      }
      throw err;
    }
    let ref: string;
    try {
      ref = JSON.stringify(memfdIdentity(fd));
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    this.fds.set(ref, fd);
    return ref;
  }

  private fdLimitError(code?: string): ResourceExhaustedError {
    const { regions, fdLimit, reserved } = this.ceiling;
    return new ResourceExhaustedError(
      'FD_LIMIT_REACHED',
      `the memfd backend holds one file descriptor per region and is at its ceiling of ${regions} regions ` +
        `(RLIMIT_NOFILE ${fdLimit}, less ${reserved} kept for connections${code ? `; ${code}` : ''}): ` +
        'raise LimitNOFILE (systemd) or the container nofile ulimit, or use the kmod backend',
    );
  }

  adopt(regions: RegionRecord[]): { lost: string[]; adopted: string[] } {
    const lost: string[] = [];
    const adopted: string[] = [];
    for (const r of regions) (this.fds.has(r.backendRef) ? adopted : lost).push(r.name);
    return { lost, adopted };
  }

  open(region: RegionRecord, mode: GrantMode, _options?: { mayNotify?: boolean }): OpenedRegion {
    const fd = this.fds.get(region.backendRef);
    if (fd === undefined) {
      throw new FailedPreconditionError('REGION_LOST', `region ${region.name} has no memory (lost in a broker restart)`);
    }
    // A fresh open file description, so a read-only grantee's fd is O_RDONLY
    // down to the kernel: it can neither map it writable nor mprotect it so.
    return { fd: fs.openSync(`/proc/self/fd/${fd}`, mode === 'rw' ? fs.constants.O_RDWR : fs.constants.O_RDONLY) };
  }

  revoke(): void {
    // Nothing to do: a memfd mapping cannot be taken back from its holder.
  }

  destroy(region: RegionRecord): void {
    const fd = this.fds.get(region.backendRef);
    if (fd === undefined) return;
    this.fds.delete(region.backendRef);
    fs.closeSync(fd);
  }

  offer(region: RegionRecord, fd: number): boolean {
    if (this.fds.has(region.backendRef)) return this.sameInode(region.backendRef, fd);
    let recorded: MemfdIdentity;
    try {
      recorded = JSON.parse(region.backendRef) as MemfdIdentity;
    } catch {
      return false;
    }
    let offered: MemfdIdentity;
    try {
      offered = memfdIdentity(fd);
    } catch {
      return false;
    }
    const matches =
      offered.dev === recorded.dev &&
      offered.ino === recorded.ino &&
      offered.size === recorded.size &&
      offered.size === region.sizeBytes &&
      offered.uid === recorded.uid &&
      offered.mode === recorded.mode &&
      (offered.seals & REQUIRED_SEALS) === REQUIRED_SEALS;
    if (!matches) return false;
    // Re-open read-write through /proc: the offered fd may be read-only, but
    // the broker (root, the inode's owner) may open the inode itself.
    const own = fs.openSync(`/proc/self/fd/${fd}`, fs.constants.O_RDWR);
    this.fds.set(region.backendRef, own);
    return true;
  }

  private sameInode(ref: string, fd: number): boolean {
    try {
      const held = memfdIdentity(this.fds.get(ref)!);
      const offered = memfdIdentity(fd);
      return held.dev === offered.dev && held.ino === offered.ino;
    } catch {
      return false;
    }
  }

  close(): void {
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
  }
}

/** fds kept free of regions: connections, the database, the acquire path's own short-lived fds. */
export function memfdCeiling(fdLimit: number): RegionCeiling & { fdLimit: number; reserved: number } {
  const limit = fdLimit < 0 ? 1 << 30 : fdLimit;
  const reserved = Math.min(limit - 1, Math.max(256, Math.floor(limit * 0.05)));
  return { regions: limit - reserved, source: `one fd per region; RLIMIT_NOFILE ${limit}`, fdLimit: limit, reserved };
}
