// Every committed audit event also becomes one log line, so an operator
// reading the journal sees grants, quota changes, revocations and denials
// with who did them (peer.uid, peer.pid), and the requestId that joins the
// line to the other lines of the same request and to the audit row.
//
// Levels: a change someone made (create, delete, grant, revoke, set quota)
// is info; a denial is info too (the aggregated refusal counter keeps a
// flood from one uid out of the log as it keeps it out of the trail); an
// ERROR result is warn; reads and the data-plane traffic (acquire, release,
// connect) are debug, since they are the hot path.
import type { Logger } from '../logger';
import { peerFields } from '../logger';
import type { AuditEvent } from './audit-trail';

const QUIET_ACTIONS = /^(Get|List|Verify|Watch|Acquire|Release|Offer|DataPlaneConnect|LeaseEnded)/;

export function levelOf(ev: Pick<AuditEvent, 'action' | 'result'>): 'debug' | 'info' | 'warn' {
  if (ev.result === 'ERROR') return 'warn';
  if (ev.result === 'DENIED') return 'info';
  return QUIET_ACTIONS.test(ev.action) ? 'debug' : 'info';
}

/** Logs each committed event; returns the unsubscribe function. */
export function logAuditEvents(
  trail: { on(e: 'event', l: (ev: AuditEvent) => void): unknown; off(e: 'event', l: (ev: AuditEvent) => void): unknown },
  log: Logger,
): () => void {
  const listener = (ev: AuditEvent): void => {
    const level = levelOf(ev);
    if (!log.isLevelEnabled(level)) return;
    const { requestId, ...details } = (ev.details ?? {}) as Record<string, unknown>;
    const fields: Record<string, unknown> = {
      audit: { seq: ev.seq, action: ev.action, resource: ev.resource, result: ev.result },
      ...peerFields(ev.actor),
    };
    if (ev.reason) (fields.audit as Record<string, unknown>).reason = ev.reason;
    if (Object.keys(details).length) (fields.audit as Record<string, unknown>).details = details;
    if (ev.actor.pod) fields['peer.pod'] = `${ev.actor.pod.namespace}/${ev.actor.pod.name}`;
    // The event is published after commit, outside the request's async
    // context: its id comes from the event itself.
    if (typeof requestId === 'string') fields.requestId = requestId;
    log[level](fields, `${ev.action} ${ev.resource}: ${ev.result}${ev.reason ? ` (${ev.reason})` : ''}`);
  };
  trail.on('event', listener);
  return () => trail.off('event', listener);
}
