import type { FastifyInstance } from 'fastify';
import { SITE_PATTERN } from '../../common/site.js';
import { gatewayIdParams } from './api-schemas.js';
import { audited } from './audit.js';
import { HEALTH_STATES, summarize, type GatewaySummary, type Health } from './gateway-view.js';
import { authProblems } from './problem.js';
import type { CompanionServices } from './services.js';

const problem = { $ref: 'Problem#' } as const;
const summary = { $ref: 'GatewaySummary#' } as const;
export const MAX_FLEET_PAGE = 500;
/** Health depends on the time: a memoised fleet view is recomputed at least this often. */
const SUMMARY_TTL_MS = 1_000;
/** Tag the companion puts on identities it creates, so operators can tell them apart in the hub. */
export const GATEWAY_TAGS = { fieldlink: { kind: 'gateway' } } as const;

interface FleetQuery {
  limit: number;
  after?: string;
  health?: Health[];
  power?: string;
  q?: string;
}

export function registerGatewayRoutes(app: FastifyInstance, s: CompanionServices): void {
  let memo: { version: number; at: number; list: GatewaySummary[] } | undefined;
  const summaries = (): GatewaySummary[] => {
    const now = s.clock.now();
    if (!memo || memo.version !== s.cache.version || now - memo.at >= SUMMARY_TTL_MS) {
      memo = { version: s.cache.version, at: now, list: s.cache.list().map((t) => summarize(t, now)) };
    }
    return memo.list;
  };

  app.get<{ Querystring: FleetQuery }>(
    '/v1/gateways',
    {
      onRequest: s.auth.requireRole('operator', 'viewer'),
      schema: {
        tags: ['fleet'],
        summary: 'The fleet: power state, last check-in, outbox, sources with errors, health',
        description: `Served from a cache refreshed on a schedule (IoT Hub throttles device queries); \`asOf\` says when. Sorted by id; page with \`after\`.`,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            limit: { type: 'integer', minimum: 1, maximum: MAX_FLEET_PAGE, default: 100 },
            after: { type: 'string', description: 'Cursor: the nextCursor of the previous page' },
            health: { type: 'array', items: { type: 'string', enum: [...HEALTH_STATES] }, description: 'Only these health states (repeat or comma-free list)' },
            power: { type: 'string', description: 'Only gateways whose reported power state is this (standby, online, …)' },
            q: { type: 'string', maxLength: 128, description: 'Only ids containing this text' },
          },
        },
        response: {
          200: {
            type: 'object',
            required: ['gateways', 'total', 'nextCursor', 'asOf', 'stale'],
            properties: {
              gateways: { type: 'array', items: summary },
              total: { type: 'integer', description: 'Gateways matching the filters' },
              nextCursor: { type: 'string', nullable: true },
              asOf: { type: 'string', format: 'date-time', description: 'When the cached view was last refreshed from IoT Hub' },
              stale: { type: 'boolean', description: 'The last refresh failed; this is the view from asOf' },
              refreshError: { type: 'string' },
            },
          },
          503: problem,
          ...authProblems,
        },
      },
    },
    async (req) => {
      await s.cache.ready();
      const { limit, after, health, power, q } = req.query;
      const wanted = health && health.length > 0 ? new Set(health) : undefined;
      const matching = summaries().filter(
        (g) => (!wanted || wanted.has(g.health)) && (power === undefined || g.power.state === power) && (q === undefined || g.id.includes(q)),
      );
      const start = after === undefined ? 0 : matching.findIndex((g) => g.id > after);
      const page = start < 0 ? [] : matching.slice(start, start + limit);
      const last = page[page.length - 1];
      const more = start >= 0 && start + limit < matching.length;
      const error = s.cache.error;
      return {
        gateways: page,
        total: matching.length,
        nextCursor: more && last ? last.id : null,
        asOf: new Date(s.cache.asOf ?? s.clock.now()).toISOString(),
        stale: error !== undefined,
        ...(error ? { refreshError: error.message } : {}),
      };
    },
  );

  app.get<{ Params: { id: string } }>(
    '/v1/gateways/:id',
    {
      onRequest: s.auth.requireRole('operator', 'viewer'),
      schema: {
        tags: ['fleet'],
        summary: 'One gateway, read fresh from IoT Hub: its summary, reported state and tags',
        params: gatewayIdParams,
        response: {
          200: {
            type: 'object',
            required: ['gateway', 'reported', 'tags'],
            properties: { gateway: summary, reported: { type: 'object', additionalProperties: true }, tags: { type: 'object', additionalProperties: true } },
          },
          404: problem,
          503: problem,
          ...authProblems,
        },
      },
    },
    async (req) => {
      const twin = await s.cache.read(req.params.id);
      return { gateway: summarize(twin, s.clock.now()), reported: twin.reported, tags: twin.tags };
    },
  );

  app.post<{ Body: { id: string; site?: string } }>(
    '/v1/gateways',
    {
      onRequest: s.auth.requireRole('operator'),
      schema: {
        tags: ['fleet'],
        summary: 'Create a gateway identity in IoT Hub; its connection string is returned this once',
        description: 'For provisioning tools. The companion keeps no copy of the key: store the connection string on the gateway (mode 0600).',
        body: {
          type: 'object',
          required: ['id'],
          additionalProperties: false,
          properties: {
            id: gatewayIdParams.properties.id,
            site: { type: 'string', pattern: SITE_PATTERN.source, description: 'Where it is installed (tags.fieldlink.site): site-scoped pairing tokens pair only with their site' },
          },
        },
        response: {
          201: {
            type: 'object',
            required: ['id', 'connectionString'],
            properties: { id: { type: 'string' }, connectionString: { type: 'string', description: 'Secret: HostName=…;DeviceId=…;SharedAccessKey=…' } },
          },
          409: problem,
          503: problem,
          ...authProblems,
        },
      },
    },
    async (req, reply) => {
      const { id, site } = req.body;
      const tags = site === undefined ? GATEWAY_TAGS : { fieldlink: { ...GATEWAY_TAGS.fieldlink, site } };
      const created = await audited(s, req, 'gateway.create', id, site === undefined ? {} : { site }, () => s.hub.createGateway(id, tags));
      // Best effort: the next scheduled refresh adds it anyway.
      void s.hub.getTwin(id).then(
        (twin) => s.cache.put(twin),
        () => undefined,
      );
      void reply.code(201).header('cache-control', 'no-store');
      return { id: created.deviceId, connectionString: created.connectionString };
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/v1/gateways/:id',
    {
      onRequest: s.auth.requireRole('operator'),
      schema: {
        tags: ['fleet'],
        summary: "Delete a gateway identity from IoT Hub (its key stops working; queued commands are purged)",
        params: gatewayIdParams,
        response: { 204: { type: 'null' }, 404: problem, 503: problem, ...authProblems },
      },
    },
    async (req, reply) => {
      const id = req.params.id;
      await audited(s, req, 'gateway.delete', id, {}, () => s.hub.deleteGateway(id));
      s.cache.remove(id);
      void reply.code(204);
    },
  );
}
