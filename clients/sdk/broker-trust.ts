// How the TypeScript clients (SDK, CLI) decide that what listens at a socket
// path is the broker, before they send it anything (DESIGN contract:
// BROKER_NOT_TRUSTED; docs/ARCHITECTURE.md, "Clients authenticate the
// broker"). The C library implements the same rule in clients/c/src/trust.c;
// keep the two in step.
//
// Trusted uids: root and, when set, $SHMBROKER_BROKER_UID.
//  1. The path: every directory from "/" down is lstat'ed (never followed),
//     must be a real directory owned by a trusted uid, and writable by others
//     only with the sticky bit (/tmp); the runtime directory itself is not
//     writable by group or others; the socket is a socket of a trusted uid.
//     The walk starts at "/" and accepts a component only when no untrusted
//     uid can change it, so nothing it accepted can be swapped afterwards:
//     connecting by the same path reaches the socket that was checked.
//  2. The peer: SO_PEERCRED of the connected socket is a trusted uid.
//  3. Region fds: a regular file owned by that peer, no access for group or
//     others, and on memfd sealed against shrink, grow and reseal.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../../native';
import { ShmbrokerError } from './errors';

/** UNAUTHENTICATED / BROKER_NOT_TRUSTED: the socket or its peer is not the trusted broker's (docs/ARCHITECTURE.md, "Clients authenticate the broker"). */
export class BrokerNotTrustedError extends ShmbrokerError {
  /** @param message - what did not check out, for a person */
  constructor(message: string) {
    super('UNAUTHENTICATED', 'BROKER_NOT_TRUSTED', message);
  }
}

/** Root, plus $SHMBROKER_BROKER_UID when set. */
export function trustedUids(env: NodeJS.ProcessEnv = process.env): number[] {
  const raw = env.SHMBROKER_BROKER_UID;
  if (raw === undefined || raw === '') return [0];
  if (!/^\d+$/.test(raw) || Number(raw) > 0xfffffffe) {
    throw new BrokerNotTrustedError(`SHMBROKER_BROKER_UID=${raw} is not a uid`);
  }
  const uid = Number(raw);
  return uid === 0 ? [0] : [0, uid];
}

function describeUids(uids: number[]): string {
  return uids.length > 1 ? `root or SHMBROKER_BROKER_UID=${uids[1]}` : 'root';
}

function mode(st: fs.Stats): string {
  return (st.mode & 0o7777).toString(8);
}

/**
 * Checks the directories and the socket at `socketPath` (step 1). Throws
 * BrokerNotTrustedError naming what did not match; a path that does not
 * exist throws the fs error (ENOENT), so callers can say "is it running?".
 */
export function checkSocketPath(socketPath: string, uids: number[] = trustedUids()): void {
  const abs = path.resolve(socketPath);
  const dirs: string[] = [];
  for (let d = path.dirname(abs); ; d = path.dirname(d)) {
    dirs.unshift(d);
    if (path.dirname(d) === d) break;
  }
  dirs.forEach((dir, i) => {
    const st = fs.lstatSync(dir);
    const last = i === dirs.length - 1;
    if (st.isSymbolicLink()) throw new BrokerNotTrustedError(`${dir} is a symbolic link`);
    if (!st.isDirectory()) throw new BrokerNotTrustedError(`${dir} is not a directory`);
    if (!uids.includes(st.uid)) throw new BrokerNotTrustedError(`${dir} is owned by uid ${st.uid}, not by ${describeUids(uids)}`);
    if (last && (st.mode & 0o022) !== 0) {
      throw new BrokerNotTrustedError(`runtime directory ${dir} is writable by group or others (mode ${mode(st)})`);
    }
    if (!last && (st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) {
      throw new BrokerNotTrustedError(`${dir} is writable by group or others without the sticky bit (mode ${mode(st)})`);
    }
  });
  const st = fs.lstatSync(abs);
  if (!st.isSocket()) throw new BrokerNotTrustedError(`${abs} is not a socket`);
  if (!uids.includes(st.uid)) throw new BrokerNotTrustedError(`socket ${abs} is owned by uid ${st.uid}, not by ${describeUids(uids)}`);
}

/** Step 2: the connected peer runs as a trusted uid. Returns its uid. */
export function checkPeer(cred: native.PeerCred, socketPath: string, uids: number[] = trustedUids()): number {
  if (!uids.includes(cred.uid)) {
    throw new BrokerNotTrustedError(`the peer at ${socketPath} (pid ${cred.pid}) runs as uid ${cred.uid}, not as ${describeUids(uids)}`);
  }
  return cred.uid;
}

/** Step 3: a region fd from the broker (uid `brokerUid`), before it is mapped. */
export function checkRegionFd(fd: number, brokerUid: number, backend: string, stat?: fs.Stats): void {
  const st = stat ?? fs.fstatSync(fd);
  if (!st.isFile()) throw new BrokerNotTrustedError(`the region fd is not a regular file (mode ${st.mode.toString(8)})`);
  if (st.uid !== brokerUid) throw new BrokerNotTrustedError(`the region fd is owned by uid ${st.uid}, not by the broker (uid ${brokerUid})`);
  if ((st.mode & 0o077) !== 0) throw new BrokerNotTrustedError(`the region fd's inode is accessible to group or others (mode ${mode(st)})`);
  if (backend === 'memfd') {
    const want = native.SEAL.SHRINK | native.SEAL.GROW | native.SEAL.SEAL;
    let seals = 0;
    try {
      seals = native.getSeals(fd);
    } catch {
      // not a memfd at all: no seals
    }
    if ((seals & want) !== want) {
      throw new BrokerNotTrustedError(`the memfd region is not sealed against shrink, grow and reseal (seals 0x${seals.toString(16)})`);
    }
  }
}
