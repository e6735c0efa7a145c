import type { FastifyRequest } from 'fastify';
import type { Clock } from '../../common/clock.js';
import { isFieldlinkError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { AuditEntry, CloudStore } from './store.js';

export interface AuditContext {
  store: CloudStore;
  clock: Clock;
  log: Logger;
}

/**
 * The change has happened (or failed) whatever the audit store says: a failing audit write is
 * logged with the entry, never thrown over the result (a created gateway's key would be lost).
 */
export function recordAudit(ctx: AuditContext, entry: AuditEntry): void {
  try {
    ctx.store.appendAudit(entry);
  } catch (err) {
    ctx.log.error({ err, audit: entry }, 'audit entry not stored');
  }
}

/**
 * Runs a change and records it in the audit log whatever happens: who (the token's name), what
 * (`action` on `target`, with `details`), when, and the result (`ok`, or the error code). The
 * details never hold secrets; callers pass only what an auditor needs.
 */
export async function audited<T>(
  ctx: AuditContext,
  req: FastifyRequest,
  action: string,
  target: string,
  details: Record<string, unknown>,
  work: () => Promise<T>,
  resultDetails?: (value: T) => Record<string, unknown>,
): Promise<T> {
  const tokenName = req.principal?.name ?? 'anonymous';
  try {
    const value = await work();
    recordAudit(ctx, { ts: ctx.clock.now(), tokenName, action, target, result: 'ok', details: { ...details, ...resultDetails?.(value) } });
    return value;
  } catch (err) {
    const code = isFieldlinkError(err) ? err.code : 'INTERNAL_ERROR';
    recordAudit(ctx, { ts: ctx.clock.now(), tokenName, action, target, result: code, details });
    throw err;
  }
}
