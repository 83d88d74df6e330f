// The anchor file: the newest synced head (seq, hash, signed), kept outside
// the database so that verify() also catches a database wiped or rolled back
// to an older copy (audit-trail.ts's header). Moved out of audit-trail.ts
// unchanged (issue 14).
import * as fs from 'node:fs';
import type { ChainPoint, ChainSigner } from './audit-chain';
import type { AuditStatements } from './audit-store';

export class AuditAnchor {
  private writtenAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private anchoredSeq = -1;
  /**
   * Set when the anchor file contradicted the database at start (wiped or
   * rolled back, history rewritten, file forged or unreadable). The file is
   * then kept as evidence and not updated; the broker should log this loudly.
   */
  problem: string | undefined;

  constructor(
    readonly file: string,
    private readonly intervalMs: number,
    private readonly signer: ChainSigner,
    private readonly stmt: AuditStatements,
  ) {}

  /**
   * Checks an existing file against the database. Returns false (and sets
   * `problem`) if the database contradicts it; the caller writes it otherwise.
   */
  init(): boolean {
    // A missing file is created from the database as it is: the anchor
    // guards against someone who can edit the database but not this file.
    // An existing one that the database contradicts (behind it, or a
    // different event at its seq, or unreadable, or not signed by our key)
    // is left as it is, as evidence, and no longer advanced: verify() keeps
    // failing until an operator has looked and deleted the file.
    if (fs.existsSync(this.file)) {
      const problems: Array<{ seq: number; problem: string }> = [];
      this.verify(problems, this.stmt.head.get());
      if (problems.length > 0) {
        this.problem = problems[0]!.problem;
        return false;
      }
    }
    return true;
  }

  /** Writes the file now if the synced head moved (never ahead of what is on disk). */
  write(durable: ChainPoint): void {
    if (this.problem !== undefined) return;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    // Never ahead of what is on disk: the synced head, not the table's.
    const { seq, hash } = durable;
    if (seq === this.anchoredSeq) return;
    const text = `${JSON.stringify({ seq, hash, mac: this.signer.mac(`anchor\n${seq}\n${hash}`) })}\n`;
    const tmp = `${this.file}.tmp`;
    fs.writeFileSync(tmp, text, { mode: 0o600 });
    fs.renameSync(tmp, this.file);
    this.anchoredSeq = seq;
    this.writtenAt = Date.now();
  }

  /** Runs `writeSafely` now, or once intervalMs has passed since the last write. */
  schedule(writeSafely: () => void): void {
    if (this.timer) return;
    const wait = this.writtenAt + this.intervalMs - Date.now();
    if (wait <= 0) {
      writeSafely();
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      writeSafely();
    }, wait);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  verify(problems: Array<{ seq: number; problem: string }>, head: { seq: number; hash: string } | undefined): void {
    let anchor: { seq: number; hash: string; mac: string };
    try {
      anchor = JSON.parse(fs.readFileSync(this.file, 'utf8')) as typeof anchor;
    } catch (err) {
      problems.push({ seq: 0, problem: `the anchor file ${this.file} is unreadable: ${(err as Error).message}` });
      return;
    }
    if (anchor.mac !== this.signer.mac(`anchor\n${anchor.seq}\n${anchor.hash}`)) {
      problems.push({ seq: 0, problem: `the anchor file ${this.file} does not match its signature` });
      return;
    }
    const headSeq = head?.seq ?? 0;
    if (anchor.seq > headSeq) {
      problems.push({
        seq: anchor.seq,
        problem: `the anchor file records seq ${anchor.seq} but the trail ends at ${headSeq}: the database was wiped or rolled back`,
      });
      return;
    }
    const at = anchor.seq === 0 ? undefined : this.stmt.hashAt.get(anchor.seq);
    if (at && at.hash !== anchor.hash) {
      problems.push({ seq: anchor.seq, problem: `event ${anchor.seq} is not the one the anchor file records: history was rewritten` });
    }
  }
}
