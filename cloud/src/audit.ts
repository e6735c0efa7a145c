import type { FastifyRequest } from 'fastify';
import type { Clock } from '../../common/clock.js';
import { isFieldlinkError } from '../../common/errors.js';
import type { CloudStore } from './store.js';

export interface AuditContext {
  store: CloudStore;
  clock: Clock;
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
    ctx.store.appendAudit({ ts: ctx.clock.now(), tokenName, action, target, result: 'ok', details: { ...details, ...resultDetails?.(value) } });
    return value;
  } catch (err) {
    const code = isFieldlinkError(err) ? err.code : 'INTERNAL_ERROR';
    ctx.store.appendAudit({ ts: ctx.clock.now(), tokenName, action, target, result: code, details });
    throw err;
  }
}
