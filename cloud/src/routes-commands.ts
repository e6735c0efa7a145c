import type { FastifyInstance } from 'fastify';
import { FieldlinkError } from '../../common/errors.js';
import { parseCommand } from '../../gateway/src/contract/commands.js';
import { commandBodySchema, gatewayIdParams } from './api-schemas.js';
import { audited } from './audit.js';
import { checkInIntervalS } from './gateway-view.js';
import { authProblems } from './problem.js';
import type { CommandRecord } from './store.js';
import type { CompanionServices } from './services.js';

const problem = { $ref: 'Problem#' } as const;
const command = { $ref: 'Command#' } as const;
export const MAX_COMMAND_PAGE = 200;

export function commandJson(c: CommandRecord): Record<string, unknown> {
  return {
    ...c,
    created: new Date(c.created).toISOString(),
    updated: new Date(c.updated).toISOString(),
    expiresAt: new Date(c.expiresAt).toISOString(),
  };
}

type CommandBody = { type: string; forS?: number; sources?: string[]; expiresInS?: number };

export function registerCommandRoutes(app: FastifyInstance, s: CompanionServices): void {
  app.post<{ Params: { id: string }; Body: CommandBody }>(
    '/v1/gateways/:id/commands',
    {
      onRequest: s.auth.requireRole('operator'),
      schema: {
        tags: ['commands'],
        summary: 'Send a wake, measure or sleep command (cloud-to-device, tracked to delivery)',
        description:
          'Queued in IoT Hub with an expiry and full acknowledgement; a sleeping gateway takes it at its next check-in. ' +
          'A command identical to one still pending, or any wake while a wake is pending, returns the pending one (coalesced: true).',
        params: gatewayIdParams,
        body: commandBodySchema,
        response: {
          202: {
            type: 'object',
            required: ['command', 'coalesced'],
            properties: { command, coalesced: { type: 'boolean' }, note: { type: 'string' } },
          },
          404: problem,
          409: problem,
          503: problem,
          504: problem,
          ...authProblems,
        },
      },
    },
    async (req, reply) => {
      const gateway = req.params.id;
      const { expiresInS, ...body } = req.body;
      const result = await audited(
        s,
        req,
        `command.${body.type}`,
        gateway,
        { command: body, ...(expiresInS === undefined ? {} : { expiresInS }) },
        async () => {
          const parsed = parseCommand(body);
          if (!parsed.ok) throw new FieldlinkError('COMMAND_INVALID', { message: parsed.message, details: { reason: parsed.reason }, cause: parsed.error });
          // Known gateway first (404 before anything is stored); the twin also gives its schedule.
          const twin = s.cache.get(gateway) ?? (await s.cache.read(gateway));
          return s.cache.about(gateway, s.commands.issue(gateway, parsed.command, req.principal?.name ?? 'unknown', expiresInS, checkInIntervalS(twin)));
        },
        (r) => ({ commandId: r.command.id, coalesced: r.coalesced }),
      );
      void reply.code(202);
      return { command: commandJson(result.command), coalesced: result.coalesced, ...(result.note ? { note: result.note } : {}) };
    },
  );

  app.get<{ Params: { id: string } }>(
    '/v1/commands/:id',
    {
      onRequest: s.auth.requireRole('operator', 'viewer'),
      schema: {
        tags: ['commands'],
        summary: "A command and where it is: sending, queued, delivered, rejected, expired, undeliverable or failed",
        params: { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } },
        response: { 200: command, 404: problem, ...authProblems },
      },
    },
    async (req) => commandJson(s.commands.get(req.params.id)),
  );

  app.get<{ Params: { id: string }; Querystring: { limit: number } }>(
    '/v1/gateways/:id/commands',
    {
      onRequest: s.auth.requireRole('operator', 'viewer'),
      schema: {
        tags: ['commands'],
        summary: "The gateway's commands, newest first",
        params: gatewayIdParams,
        querystring: { type: 'object', additionalProperties: false, properties: { limit: { type: 'integer', minimum: 1, maximum: MAX_COMMAND_PAGE, default: 50 } } },
        response: { 200: { type: 'object', required: ['commands'], properties: { commands: { type: 'array', items: command } } }, ...authProblems },
      },
    },
    async (req) => ({ commands: s.commands.list(req.params.id, req.query.limit).map(commandJson) }),
  );
}
