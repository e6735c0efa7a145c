import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Clock } from '../../common/clock.js';
import { FieldlinkError } from '../../common/errors.js';
import { siteProblem } from '../../common/site.js';
import type { CloudStore, Role, TokenSummary } from './store.js';

/** Every companion token starts with this, so a leaked one is recognisable (secret scanners, logs). */
export const TOKEN_PREFIX = 'flc_';
const TOKEN_PATTERN = /^flc_[A-Za-z0-9_-]{43}$/;
/** Token names: they head audit entries and log lines, so short and printable. */
export const TOKEN_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

/** A new token: 32 random bytes, base64url, prefixed. Shown once; only its hash is stored. */
export function generateToken(): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url');
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Creates a token in the store and returns it in clear, the only time it is ever available. */
export function issueToken(store: CloudStore, opts: { name: string; role: Role; now: number; site?: string | null; expiresAt?: number | null }): { token: string; record: TokenSummary } {
  const badSite = opts.site == null ? undefined : siteProblem(opts.site);
  if (badSite !== undefined) throw new FieldlinkError('REQUEST_INVALID', { message: badSite, details: { field: 'site' } });
  if (opts.site != null && opts.role !== 'pairing') throw new FieldlinkError('REQUEST_INVALID', { message: `a site scope is for pairing tokens; a ${opts.role} token sees every site`, details: { field: 'site' } });
  if (opts.expiresAt != null && !(opts.expiresAt > opts.now)) throw new FieldlinkError('REQUEST_INVALID', { message: 'a token must expire in the future', details: { field: 'expiresAt' } });
  const token = generateToken();
  const record = store.insertToken({ name: opts.name, role: opts.role, hash: hashToken(token), created: opts.now, site: opts.site ?? null, expires: opts.expiresAt ?? null });
  return { token, record };
}

export interface Principal {
  readonly tokenId: number;
  readonly name: string;
  readonly role: Role;
  /** Pairing tokens scoped to one site's gateways; null: no site limit. */
  readonly site: string | null;
  /** Epoch ms the token stops working, or null. */
  readonly expires: number | null;
}

export interface RateLimitOptions {
  /** Tokens added per second. */
  perSecond: number;
  /** Bucket size: the most requests a quiet token can send at once. */
  burst: number;
}

export const DEFAULT_RATE_LIMIT: RateLimitOptions = { perSecond: 20, burst: 40 };

/** Per-key token buckets on monotonic time; `take` says whether a request may pass, and if not when. */
export class TokenBuckets {
  private readonly buckets = new Map<number, { level: number; at: number }>();

  constructor(
    private readonly opts: RateLimitOptions,
    private readonly clock: Clock,
  ) {
    if (!(opts.perSecond > 0) || !(opts.burst >= 1)) throw new RangeError('rate limit needs perSecond > 0 and burst >= 1');
  }

  /** Takes one unit for `key`: `{ ok: true }`, or `{ ok: false, retryAfterMs }` until one is available. */
  take(key: number): { ok: true } | { ok: false; retryAfterMs: number } {
    const now = this.clock.monotonicMs();
    const b = this.buckets.get(key) ?? { level: this.opts.burst, at: now };
    b.level = Math.min(this.opts.burst, b.level + ((now - b.at) / 1000) * this.opts.perSecond);
    b.at = now;
    this.buckets.set(key, b);
    if (b.level >= 1) {
      b.level -= 1;
      return { ok: true };
    }
    return { ok: false, retryAfterMs: ((1 - b.level) / this.opts.perSecond) * 1000 };
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set once the bearer token is checked; absent on public routes. */
    principal?: Principal;
  }
  interface FastifyContextConfig {
    /** Reachable without a token (health, readiness). */
    public?: boolean;
  }
}

function bearer(req: FastifyRequest): string | undefined {
  const header = req.headers.authorization;
  if (typeof header !== 'string') return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m?.[1];
}

// Messages avoid the word after which redactSecrets censors ("Bearer x"), so logs stay readable.
function unauthorized(message: string): FieldlinkError {
  return new FieldlinkError('AUTH_REQUIRED', { message });
}

export type RoleHook = (req: FastifyRequest, reply: FastifyReply) => Promise<void>;

export interface Auth {
  /** Checks the bearer token and the token's rate; sets `req.principal`. Idempotent per request. */
  authenticate(req: FastifyRequest): Principal;
  /**
   * A route hook: 401 without a valid token, 429 over the rate, 403 unless the token has one of
   * `roles` (none given: any role). Routes use it as `onRequest`, so a caller without the right
   * role learns nothing from validation errors and no body is parsed for it; it works as a
   * `preHandler` too.
   */
  requireRole(...roles: Role[]): RoleHook;
}

export function createAuth(opts: { store: CloudStore; clock: Clock; rateLimit?: RateLimitOptions }): Auth {
  const buckets = new TokenBuckets(opts.rateLimit ?? DEFAULT_RATE_LIMIT, opts.clock);

  function lookup(token: string | undefined): Principal {
    if (token === undefined) throw unauthorized('a token is required: send Authorization: Bearer <token>');
    if (!TOKEN_PATTERN.test(token)) throw unauthorized('the Authorization header does not carry a Fieldlink token (see fieldlink cloud token create)');
    const hash = hashToken(token);
    const record = opts.store.findTokenByHash(hash);
    // The lookup is by hash (an attacker cannot steer it); the constant-time compare guards
    // against a store that ever matches loosely (collation, prefix index).
    if (!record || !timingSafeEqual(Buffer.from(record.hash, 'hex'), Buffer.from(hash, 'hex'))) throw unauthorized('the token is not known');
    if (record.revoked !== null) throw unauthorized('the token was revoked');
    if (record.expires !== null && opts.clock.now() >= record.expires) throw unauthorized(`the token expired at ${new Date(record.expires).toISOString()}; ask for a new pairing link`);
    return { tokenId: record.id, name: record.name, role: record.role, site: record.site, expires: record.expires };
  }

  const auth: Auth = {
    authenticate(req) {
      if (req.principal) return req.principal;
      const principal = lookup(bearer(req));
      const taken = buckets.take(principal.tokenId);
      if (!taken.ok) {
        const retryAfterS = Math.max(1, Math.ceil(taken.retryAfterMs / 1000));
        throw new FieldlinkError('RATE_LIMITED', { message: `rate limit exceeded for token "${principal.name}"; retry after ${retryAfterS} s`, details: { retryAfterS } });
      }
      req.principal = principal;
      return principal;
    },
    requireRole(...roles) {
      return async (req) => {
        const principal = auth.authenticate(req);
        if (roles.length > 0 && !roles.includes(principal.role)) {
          throw new FieldlinkError('AUTH_FORBIDDEN', {
            message: `role "${principal.role}" may not ${req.method} ${req.routeOptions.url ?? ''}`,
            details: { role: principal.role, allowed: roles },
          });
        }
      };
    },
  };
  return auth;
}
