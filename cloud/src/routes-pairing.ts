/** Phone pairing sessions (issue 8) for `pairing` and `operator` tokens; the logic is in pairing.ts. */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { pairPageUrl } from '../../common/companion-url.js';
import { FieldlinkError } from '../../common/errors.js';
import { SITE_PATTERN } from '../../common/site.js';
import { pairingProfiles } from '../../gateway/src/contract/gateway-config.js';
import { issueToken, TOKEN_NAME_PATTERN, type Principal } from './auth.js';
import { audited, recordAudit } from './audit.js';
import { PAIRING_DEVICE_STATES, PairingService } from './pairing.js';
import { authProblems } from './problem.js';
import type { CompanionServices } from './services.js';

const problem = { $ref: 'Problem#' } as const;
const isoTime = { type: 'string', format: 'date-time' } as const;
/** DEVICE_ADDRESS_PATTERN in either case; normalised to upper case before use. */
const ADDRESS_ANY_CASE = '^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$';

const sessionIdParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', minLength: 1, maxLength: 64, description: 'The pairing session id' } },
} as const;

const deviceViewSchema = {
  type: 'object',
  required: ['address', 'profile', 'name', 'state'],
  properties: {
    address: { type: 'string', description: 'Bluetooth address, upper case' },
    profile: { type: 'string', enum: [...pairingProfiles] },
    name: { type: 'string', nullable: true },
    state: {
      type: 'string',
      enum: [...PAIRING_DEVICE_STATES],
      description: 'waiting-for-gateway: the gateway has not yet applied the change (asleep until its next check-in); then connecting, receiving or error as the gateway reports',
    },
    lastSeen: { ...isoTime, description: 'When the gateway last had a value from the device' },
    lastValue: { type: 'number' },
    lastKind: { type: 'string' },
    lastUnit: { type: 'string' },
    battery: { type: 'number', description: 'Battery level, %' },
    rssi: { type: 'number' },
    error: { type: 'string' },
  },
} as const;

const sessionViewSchema = {
  type: 'object',
  required: ['session', 'gatewayOnline', 'nextCheckIn'],
  properties: {
    session: {
      type: 'object',
      required: ['id', 'gateway', 'created', 'expiresAt', 'devices'],
      properties: {
        id: { type: 'string' },
        gateway: { type: 'string' },
        created: isoTime,
        expiresAt: isoTime,
        devices: { type: 'array', items: deviceViewSchema },
      },
    },
    gatewayOnline: { type: 'boolean', description: 'Connected to IoT Hub now; a sleeping gateway applies changes at its next check-in' },
    nextCheckIn: { ...isoTime, nullable: true },
  },
} as const;

function principalOf(req: FastifyRequest): Principal {
  if (!req.principal) throw new FieldlinkError('AUTH_REQUIRED', { message: 'a token is required' });
  return req.principal;
}

/** Pairing links last 8 hours unless asked otherwise: a working day on site. */
export const PAIRING_LINK_DEFAULT_S = 8 * 3600;
export const PAIRING_LINK_MAX_S = 7 * 86_400;

/** The pairing page with the token in its fragment (never sent to a server): the link a phone opens. */
export function pairingLink(base: string, token: string): string {
  return pairPageUrl(base, `token=${token}`);
}

/** Where the companion is reached from a phone: the configured public URL, else what the request came to. */
function publicOrigin(req: FastifyRequest, configured: string | undefined): string {
  return configured ?? `${req.protocol}://${req.host}`;
}

export function registerPairingRoutes(app: FastifyInstance, s: CompanionServices, opts: { publicUrl?: string } = {}): void {
  const pairing = new PairingService(s);
  const roles = s.auth.requireRole('pairing', 'operator');

  app.post<{ Body: { site?: string; expiresInS?: number; name?: string } }>(
    '/v1/pairing/links',
    {
      onRequest: s.auth.requireRole('operator'),
      schema: {
        tags: ['pairing'],
        summary: 'Create a short-lived pairing link: a pairing token, limited to one site, that expires',
        description:
          'For whoever unpacks wearables on site: open the link on a phone, scan the gateway label, scan the devices. ' +
          'The token in the link can run pairing sessions (for the site\'s gateways only, when a site is given) and nothing else; it stops working at expiresAt or when revoked (`fieldlink cloud token revoke NAME`). ' +
          'The token rides in the URL fragment, which browsers never send to a server.',
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            site: { type: 'string', pattern: SITE_PATTERN.source, description: "The site (gateways' tags.fieldlink.site); omitted: any site" },
            expiresInS: { type: 'integer', minimum: 300, maximum: PAIRING_LINK_MAX_S, default: PAIRING_LINK_DEFAULT_S },
            name: { type: 'string', pattern: TOKEN_NAME_PATTERN.source, description: 'Token name for the audit log (default: generated)' },
          },
        },
        response: {
          201: {
            type: 'object',
            required: ['name', 'token', 'url', 'site', 'expiresAt'],
            properties: {
              name: { type: 'string' },
              token: { type: 'string', description: 'Secret: shown this once' },
              url: { type: 'string', description: 'Secret: the pairing page with the token in its fragment' },
              site: { type: 'string', nullable: true },
              expiresAt: isoTime,
            },
          },
          409: problem,
          ...authProblems,
        },
      },
    },
    async (req, reply) => {
      const now = s.clock.now();
      const expiresAt = now + (req.body.expiresInS ?? PAIRING_LINK_DEFAULT_S) * 1000;
      const name = req.body.name ?? `pairing-link-${new Date(now).toISOString().slice(0, 16).replace(/[-:T]/g, '')}-${randomBytes(3).toString('hex')}`;
      const site = req.body.site ?? null;
      const issued = await audited(s, req, 'pairing.link', name, { site, expiresAt: new Date(expiresAt).toISOString() }, async () =>
        issueToken(s.store, { name, role: 'pairing', now, site, expiresAt }),
      );
      void reply.code(201).header('cache-control', 'no-store');
      return {
        name: issued.record.name,
        token: issued.token,
        url: pairingLink(publicOrigin(req, opts.publicUrl), issued.token),
        site,
        expiresAt: new Date(expiresAt).toISOString(),
      };
    },
  );

  app.post<{ Body: { code: string } }>(
    '/v1/pairing/sessions',
    {
      onRequest: roles,
      schema: {
        tags: ['pairing'],
        summary: "Start a pairing session with the code on the gateway's label",
        description: 'More than 10 unknown codes per token in 10 minutes are refused with 429 (Retry-After). The session lasts 30 minutes.',
        body: {
          type: 'object',
          required: ['code'],
          additionalProperties: false,
          properties: { code: { type: 'string', minLength: 1, maxLength: 64, description: 'The pairing code, e.g. ABCDE-12345' } },
        },
        response: { 201: sessionViewSchema, 404: problem, 503: problem, ...authProblems },
      },
    },
    async (req, reply) => {
      const principal = principalOf(req);
      const view = await pairing.start(principal, req.body.code);
      // Not audited(): the target is known only once the code matched, and never the code itself.
      recordAudit(s, { ts: s.clock.now(), tokenName: principal.name, action: 'pairing.start', target: view.session.gateway, result: 'ok', details: { session: view.session.id } });
      void reply.code(201);
      return view;
    },
  );

  app.get<{ Params: { id: string } }>(
    '/v1/pairing/sessions/:id',
    {
      onRequest: roles,
      schema: {
        tags: ['pairing'],
        summary: "The session's devices and where each is, read fresh from the gateway",
        params: sessionIdParams,
        response: { 200: sessionViewSchema, 404: problem, 503: problem, ...authProblems },
      },
    },
    async (req) => pairing.fresh(pairing.session(principalOf(req), req.params.id, false)),
  );

  app.post<{ Params: { id: string }; Body: { address: string; profile: string; name?: string } }>(
    '/v1/pairing/sessions/:id/devices',
    {
      onRequest: roles,
      schema: {
        tags: ['pairing'],
        summary: 'Pair a Bluetooth device with the session\'s gateway',
        description:
          "Sets the gateway's desired pairings and sends a wake (coalesced with any pending wake): a sleeping gateway applies it at its next check-in. " +
          'A device already paired with another gateway is refused (409).',
        params: sessionIdParams,
        body: {
          type: 'object',
          required: ['address', 'profile'],
          additionalProperties: false,
          properties: {
            address: { type: 'string', pattern: ADDRESS_ANY_CASE, description: 'Bluetooth address AA:BB:CC:DD:EE:FF (either case)' },
            profile: { type: 'string', enum: [...pairingProfiles] },
            name: { type: 'string', minLength: 1, maxLength: 64 },
          },
        },
        response: { 201: sessionViewSchema, 404: problem, 409: problem, 410: problem, 503: problem, 504: problem, ...authProblems },
      },
    },
    async (req, reply) => {
      const principal = principalOf(req);
      const session = pairing.session(principal, req.params.id, true);
      const address = req.body.address.toUpperCase();
      const { profile, name } = req.body;
      const view = await audited(s, req, 'pairing.add', session.gateway, { session: session.id, address, profile, ...(name === undefined ? {} : { name }) }, () =>
        pairing.addDevice(principal, session, address, profile, name),
      );
      void reply.code(201);
      return view;
    },
  );

  app.delete<{ Params: { id: string; address: string } }>(
    '/v1/pairing/sessions/:id/devices/:address',
    {
      onRequest: roles,
      schema: {
        tags: ['pairing'],
        summary: 'Unpair a device added in this session',
        params: {
          type: 'object',
          required: ['id', 'address'],
          properties: { ...sessionIdParams.properties, address: { type: 'string', pattern: ADDRESS_ANY_CASE } },
        },
        response: { 204: { type: 'null', description: 'Unpaired' }, 404: problem, 410: problem, 503: problem, ...authProblems },
      },
    },
    async (req, reply) => {
      const session = pairing.session(principalOf(req), req.params.id, true);
      const address = req.params.address.toUpperCase();
      await audited(s, req, 'pairing.remove', session.gateway, { session: session.id, address }, () => pairing.removeDevice(session, address));
      return reply.code(204).send();
    },
  );
}
