import type { FastifyRequest } from 'fastify';
import { matchesDeviceQuery, parseDeviceQuery, type DeviceQuery } from './device-query.js';
import { HubError } from './hub-errors.js';
import type { RouteContext, RouteModule } from './rest-frontend.js';

// Header names as azure-iothub sends them (registry.js _executeQueryFunc) and reads the reply's
// (query.js next: response.headers['x-ms-continuation']; Node lower-cases incoming names).
const CONTINUATION = 'x-ms-continuation';
const MAX_ITEM_COUNT = 'x-ms-max-item-count';
const PAGE_SIZE = { fallback: 100, min: 1, max: 1000 };
// Device ids are 1-128 printable ASCII characters (registry.ts): a token decoding to other was not ours.
const TOKEN_DEVICE_ID = /^[\x21-\x7e]{1,128}$/;

export interface QueryPage {
  readonly twins: Record<string, unknown>[];
  /** The cursor for the next page; undefined when no further twin matches. */
  readonly continuation: string | undefined;
}

function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function queryText(body: unknown): string {
  const query = typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>).query : undefined;
  if (typeof query !== 'string') throw new HubError('ArgumentInvalid', 'the body must be a JSON object with a string "query"');
  return query;
}

function pageSize(value: string | undefined): number {
  if (value === undefined || value === '') return PAGE_SIZE.fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n < PAGE_SIZE.min || n > PAGE_SIZE.max) {
    throw new HubError('ArgumentInvalid', `${MAX_ITEM_COUNT} must be an integer from ${PAGE_SIZE.min} to ${PAGE_SIZE.max}`);
  }
  return n;
}

/** The continuation token for a page ending at `deviceId`: opaque to clients, base64url here. */
export function encodeContinuation(deviceId: string): string {
  return Buffer.from(deviceId, 'utf8').toString('base64url');
}

/** The deviceId a token resumes after; an ArgumentInvalid HubError for anything not from encodeContinuation. */
export function decodeContinuation(token: string): string {
  const deviceId = Buffer.from(token, 'base64url').toString('utf8');
  if (!TOKEN_DEVICE_ID.test(deviceId) || encodeContinuation(deviceId) !== token) {
    throw new HubError('ArgumentInvalid', `${CONTINUATION} is not a token this hub returned: send back the value of a previous reply, unchanged`);
  }
  return deviceId;
}

/**
 * One page of matching twins in deviceId order, after `after`. It reads one match past the
 * page, so a continuation is only handed out when another page really has something in it.
 */
export function queryPage(ctx: RouteContext, query: DeviceQuery, after: string | undefined, size: number): QueryPage {
  const twins: Record<string, unknown>[] = [];
  let last: string | undefined;
  // list() is ORDER BY device_id (byte order); for ASCII ids that is JS string order, so `<=` agrees.
  for (const { deviceId } of ctx.deps.registry.list()) {
    if (after !== undefined && deviceId <= after) continue;
    const twin = ctx.twinJson(deviceId);
    if (!matchesDeviceQuery(query, twin)) continue;
    if (twins.length === size) return { twins, continuation: last === undefined ? undefined : encodeContinuation(last) };
    twins.push(twin);
    last = deviceId;
  }
  return { twins, continuation: undefined };
}

/**
 * `POST /devices/query`: what `Registry.createQuery(sql, pageSize).next()` calls. Body
 * `{query}`; page size in `x-ms-max-item-count` (1-1000, default 100); the cursor travels in
 * `x-ms-continuation` both ways, present on a reply only while more remain. Needs RegistryRead
 * or ServiceConnect, as on IoT Hub, or RegistryWrite, which IoT Hub grants reading with.
 */
export function queryRoutes(): RouteModule {
  return (app, ctx) => {
    app.post('/devices/query', async (req, reply) => {
      ctx.principal(req, 'RegistryRead', 'RegistryWrite', 'ServiceConnect');
      const query = parseDeviceQuery(queryText(req.body));
      const size = pageSize(header(req, MAX_ITEM_COUNT));
      const token = header(req, CONTINUATION);
      const after = token === undefined || token === '' ? undefined : decodeContinuation(token);
      const page = queryPage(ctx, query, after, size);
      if (page.continuation !== undefined) void reply.header(CONTINUATION, page.continuation);
      return reply.type('application/json; charset=utf-8').send(page.twins);
    });
  };
}
