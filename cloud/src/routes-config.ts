import type { FastifyInstance, FastifyReply } from 'fastify';
import { FieldlinkError } from '../../common/errors.js';
import { validateDesiredPatch } from '../../gateway/src/contract/settings-validation.js';
import { gatewayIdParams } from './api-schemas.js';
import { audited } from './audit.js';
import type { HubTwin, JsonObject } from './fleet-hub.js';
import { configView } from './gateway-view.js';
import { authProblems } from './problem.js';
import type { CompanionServices } from './services.js';

const problem = { $ref: 'Problem#' } as const;
const view = { $ref: 'ConfigView#' } as const;
/** Without If-Match the change is applied over whatever is current; a race with another writer is retried this often. */
const UNCONDITIONAL_ATTEMPTS = 3;

/** ETags travel quoted in HTTP; IoT Hub's are bare strings. Accept either. */
function unquote(etag: string): string {
  const t = etag.trim().replace(/^W\//, '');
  return t.startsWith('"') && t.endsWith('"') ? t.slice(1, -1) : t;
}

function sendView(reply: FastifyReply, twin: HubTwin): ReturnType<typeof configView> {
  const v = configView(twin);
  void reply.header('etag', `"${v.etag}"`);
  return v;
}

function checkPatch(current: HubTwin, patch: JsonObject): void {
  const dollar = Object.keys(patch).find((k) => k.startsWith('$'));
  if (dollar) throw new FieldlinkError('CONFIG_INVALID', { message: `${dollar}: $-properties belong to IoT Hub and cannot be set`, details: { field: `/${dollar}` } });
  const { validation } = validateDesiredPatch(current.desired, patch);
  if (!validation.ok) {
    const first = validation.problems[0];
    throw new FieldlinkError('CONFIG_INVALID', {
      message: `config patch refused, nothing was sent to the gateway: ${validation.problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`,
      details: { field: first?.path, problems: validation.problems },
    });
  }
}

export function registerConfigRoutes(app: FastifyInstance, s: CompanionServices): void {
  app.get<{ Params: { id: string } }>(
    '/v1/gateways/:id/config',
    {
      onRequest: s.auth.requireRole('operator', 'viewer'),
      schema: {
        tags: ['config'],
        summary: "The gateway's desired config, what it reported, and whether it applied the desired version",
        params: gatewayIdParams,
        response: { 200: view, 404: problem, 503: problem, ...authProblems },
      },
    },
    async (req, reply) => {
      return sendView(reply, await s.cache.read(req.params.id));
    },
  );

  app.patch<{ Params: { id: string }; Body: JsonObject; Headers: { 'if-match'?: string } }>(
    '/v1/gateways/:id/config',
    {
      onRequest: s.auth.requireRole('operator'),
      schema: {
        tags: ['config'],
        summary: 'Change the gateway config (JSON merge patch on its desired properties; null removes a key)',
        description:
          'Validated against the gateway settings schema before anything reaches IoT Hub (400 names the field). ' +
          'Send the etag from GET …/config in If-Match; a stale one gets 412 with the current etag. Without If-Match the patch applies over the current config.',
        params: gatewayIdParams,
        headers: { type: 'object', properties: { 'if-match': { type: 'string', minLength: 1 } } },
        body: { type: 'object', minProperties: 1, additionalProperties: true },
        response: { 200: view, 404: problem, 412: problem, 503: problem, ...authProblems },
      },
    },
    async (req, reply) => {
      const id = req.params.id;
      const ifMatch = req.headers['if-match'] === undefined || req.headers['if-match'] === '*' ? undefined : unquote(req.headers['if-match']);
      const twin = await audited(s, req, 'config.patch', id, { patch: req.body, ...(ifMatch ? { ifMatch } : {}) }, async () => {
        for (let attempt = 1; ; attempt++) {
          const current = await s.cache.read(id);
          if (ifMatch !== undefined && ifMatch !== current.etag) {
            throw new FieldlinkError('PRECONDITION_FAILED', {
              message: `the gateway's config changed since etag ${ifMatch}; read it again and retry with If-Match: ${current.etag}`,
              details: { gateway: id, currentEtag: current.etag },
            });
          }
          checkPatch(current, req.body);
          try {
            // Written against the etag just validated against, so the check holds for what is replaced.
            return await s.cache.about(id, s.hub.patchDesired(id, req.body, current.etag));
          } catch (err) {
            const raced = err instanceof FieldlinkError && err.code === 'PRECONDITION_FAILED';
            if (!raced || ifMatch !== undefined || attempt >= UNCONDITIONAL_ATTEMPTS) throw err;
          }
        }
      });
      s.cache.put(twin);
      return sendView(reply, twin);
    },
  );
}
