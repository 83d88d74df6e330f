// verify(): walks the whole chain, the checkpoint, the head and the anchor
// file; audit-trail.ts's header says what it can and cannot detect. Moved out
// of audit-trail.ts unchanged (issue 14).
import type { Database } from 'better-sqlite3';
import { checkpointMaterial, GENESIS, type ChainSigner, type Row } from './audit-chain';
import type { AuditAnchor } from './audit-anchor';
import type { AuditStatements } from './audit-store';
import type { AuditVerifyResult } from './audit-types';

export function verifyAuditChain(db: Database, stmt: AuditStatements, signer: ChainSigner, anchor: AuditAnchor | undefined): AuditVerifyResult {
  const problems: Array<{ seq: number; problem: string }> = [];
  const read = db.transaction(() => {
    const keyId = stmt.meta.get('key_id')?.value ?? '';
    const algorithm = stmt.meta.get('algorithm')?.value ?? '';
    if (algorithm !== signer.algorithm() || keyId !== signer.keyId()) {
      problems.push({
        seq: 0,
        problem: `trail metadata says ${algorithm || 'nothing'} with key ${keyId || 'none'}, but the broker uses ${signer.algorithm()} with key ${signer.keyId() || 'none'}`,
      });
    }
    const cp = stmt.checkpoint.get();
    let expectedSeq = 1;
    let prev = GENESIS;
    if (cp) {
      if (cp.mac !== signer.mac(checkpointMaterial(cp))) {
        problems.push({ seq: 0, problem: `the retention checkpoint (through seq ${cp.seq}) does not match its signature` });
      }
      expectedSeq = cp.seq + 1;
      prev = cp.hash;
    }
    let checked = 0;
    let last: { seq: number; hash: string } | undefined;
    for (const row of db.prepare<[], Row>('SELECT * FROM audit_events ORDER BY seq').iterate()) {
      checked++;
      if (row.seq < expectedSeq) {
        problems.push({ seq: row.seq, problem: `event ${row.seq} is at or before the retention checkpoint (seq ${expectedSeq - 1}): inserted` });
      } else if (row.seq > expectedSeq) {
        problems.push({
          seq: row.seq,
          problem: `event${row.seq - expectedSeq > 1 ? 's' : ''} ${rangeText(expectedSeq, row.seq - 1)} missing before event ${row.seq}: deleted`,
        });
      }
      if (row.prev_hash !== prev) {
        problems.push({
          seq: row.seq,
          problem: `event ${row.seq} does not chain to the event before it (an event was deleted, inserted or reordered)`,
        });
      }
      if (signer.hashRow(row) !== row.hash) {
        problems.push({ seq: row.seq, problem: `event ${row.seq} does not match its hash (its content or position was altered)` });
      }
      prev = row.hash;
      expectedSeq = row.seq + 1;
      last = row;
    }
    const head = stmt.head.get();
    const tail = last ?? (cp ? { seq: cp.seq, hash: cp.hash } : undefined);
    if (!head) {
      if (tail) problems.push({ seq: 0, problem: 'the head anchor is missing' });
    } else {
      if (head.mac !== signer.mac(`head\n${head.seq}\n${head.hash}`)) {
        problems.push({ seq: 0, problem: `the head anchor (seq ${head.seq}) does not match its signature` });
      }
      const tailSeq = tail?.seq ?? 0;
      if (head.seq > tailSeq) {
        problems.push({
          seq: head.seq,
          problem: `the newest event${head.seq - tailSeq > 1 ? 's' : ''} ${rangeText(tailSeq + 1, head.seq)} ${head.seq - tailSeq > 1 ? 'are' : 'is'} missing: deleted`,
        });
      } else if (head.seq < tailSeq) {
        problems.push({ seq: tailSeq, problem: `events after the head anchor (seq ${head.seq}) were inserted` });
      } else if (tail && head.hash !== tail.hash) {
        problems.push({ seq: head.seq, problem: `the newest event ${head.seq} is not the one the head anchor records` });
      }
    }
    anchor?.verify(problems, head);
    return checked;
  });
  const checked = read.deferred();
  return { ok: problems.length === 0, checked, problems };
}

function rangeText(a: number, b: number): string {
  return a === b ? String(a) : `${a}..${b}`;
}
