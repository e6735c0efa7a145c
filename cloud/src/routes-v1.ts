import type { FastifyInstance } from 'fastify';
import type { Auth } from './auth.js';
import { authProblems } from './problem.js';
import { ROLES, type CloudStore } from './store.js';

export interface V1Deps {
  store: CloudStore;
  auth: Auth;
}

export const MAX_AUDIT_PAGE = 1000;

const whoamiSchema = {
  tags: ['auth'],
  summary: "The calling token's name, role, and for pairing tokens their site and expiry",
  response: {
    200: {
      type: 'object',
      required: ['name', 'role', 'site', 'expiresAt'],
      additionalProperties: false,
      properties: {
        name: { type: 'string' },
        role: { type: 'string', enum: [...ROLES] },
        site: { type: 'string', nullable: true, description: "Pairing tokens: the only site whose gateways they pair with; null: any" },
        expiresAt: { type: 'string', format: 'date-time', nullable: true, description: 'When the token stops working (pairing links); null: until revoked' },
      },
    },
    ...authProblems,
  },
} as const;

const auditSchema = {
  tags: ['audit'],
  summary: 'The newest audit entries, newest first (operator only)',
  querystring: {
    type: 'object',
    additionalProperties: false,
    properties: { limit: { type: 'integer', minimum: 1, maximum: MAX_AUDIT_PAGE, default: 100 } },
  },
  response: {
    200: {
      type: 'object',
      required: ['entries'],
      properties: {
        entries: {
          type: 'array',
          items: {
            type: 'object',
            required: ['ts', 'tokenName', 'action', 'target', 'result'],
            properties: {
              ts: { type: 'string', format: 'date-time' },
              tokenName: { type: 'string' },
              action: { type: 'string' },
              target: { type: 'string' },
              result: { type: 'string' },
              details: { type: 'object', additionalProperties: true },
            },
          },
        },
      },
    },
    ...authProblems,
  },
} as const;

export function registerV1Routes(app: FastifyInstance, deps: V1Deps): void {
  app.get('/v1/whoami', { schema: whoamiSchema, onRequest: deps.auth.requireRole() }, async (req) => {
    // requireRole has set the principal; the guard satisfies the type, not a real path.
    const p = req.principal;
    if (!p) throw new Error('principal missing after requireRole');
    return { name: p.name, role: p.role, site: p.site, expiresAt: p.expires === null ? null : new Date(p.expires).toISOString() };
  });

  app.get<{ Querystring: { limit: number } }>('/v1/audit', { schema: auditSchema, onRequest: deps.auth.requireRole('operator') }, async (req) => ({
    entries: deps.store.listAudit(req.query.limit).map((e) => ({ ...e, ts: new Date(e.ts).toISOString() })),
  }));
}
