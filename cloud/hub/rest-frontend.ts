import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from '../../common/log.js';
import { requireRight, type Authenticator, type Principal, type Right } from './access.js';
import type { C2dQueue } from './c2d-queue.js';
import type { Db } from './db.js';
import { readEvents, type EventStore, type StoredEvent } from './event-store.js';
import { HubError } from './hub-errors.js';
import type { DailyQuota } from './d2c-limits.js';
import type { Meter } from './meter.js';
import type { DeviceInput, DeviceRegistry, TwinServicePatch } from './registry.js';

export interface RestFrontendDeps {
  db: Db;
  registry: DeviceRegistry;
  c2d: C2dQueue;
  events: EventStore;
  meter: Meter;
  quota: DailyQuota;
  auth: Authenticator;
  log: Logger;
  now: () => number;
}

type IdParams = { Params: { id: string } };

/** What a route module gets: the hub's parts and the shared checks. */
export interface RouteContext {
  readonly deps: RestFrontendDeps;
  /** The caller's principal, if its token carries one of `rights`; else an Unauthorized HubError. */
  principal(req: FastifyRequest, ...rights: Right[]): Principal;
  /** The twin as the REST API returns it. */
  twinJson(deviceId: string): Record<string, unknown>;
}

/** A feature's routes, registered beside the registry's (one file per feature). */
export type RouteModule = (app: FastifyInstance, ctx: RouteContext) => void;

const MAX_EVENTS_PAGE = 1000;

function intQuery(value: unknown, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new HubError('ArgumentInvalid', `${name} must be an integer from ${min} to ${max}`);
  return n;
}

/**
 * IoT Hub's HTTPS API as `azure-iothub` calls it (registry, twins) plus the local hub's own
 * `/_local/*` endpoints (meter, stored events), all behind SAS tokens checked per route.
 */
export class RestFrontend {
  private readonly app: FastifyInstance;
  /** Open event streams, ended on close so shutdown does not wait for followers to leave. */
  private readonly streams = new Set<() => void>();

  constructor(
    private readonly deps: RestFrontendDeps,
    tls: { key: string; cert: string },
    private readonly modules: readonly RouteModule[] = [],
  ) {
    this.app = Fastify({ https: { key: tls.key, cert: tls.cert }, logger: false, bodyLimit: 1024 * 1024 }) as unknown as FastifyInstance;
    this.app.setErrorHandler((err, req, reply) => this.sendError(req, reply, err));
    this.app.setNotFoundHandler((req, reply) =>
      this.sendError(req, reply, new HubError('NotFound', `no such endpoint: ${req.method} ${req.url.split('?')[0] ?? ''}`)),
    );
    this.routes();
  }

  async listen(port: number, host: string): Promise<number> {
    await this.app.listen({ port, host });
    return (this.app.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const end of [...this.streams]) end();
    await this.app.close();
  }

  private sendError(req: FastifyRequest, reply: FastifyReply, err: unknown): void {
    let hubErr: HubError;
    if (err instanceof HubError) hubErr = err;
    else {
      const e = err as { statusCode?: number; message?: string };
      if (e.statusCode !== undefined && e.statusCode >= 400 && e.statusCode < 500) {
        hubErr = new HubError('ArgumentInvalid', `bad request: ${e.message ?? 'unreadable body'}`);
      } else {
        this.deps.log.error({ err, url: req.url }, 'rest handler failed');
        hubErr = new HubError('ServerError', 'internal error in the local hub');
      }
    }
    const trackingId = randomUUID().replace(/-/g, '');
    if (hubErr.status >= 500) this.deps.log.error({ code: hubErr.code, url: req.url }, hubErr.message);
    else this.deps.log.info({ code: hubErr.code, method: req.method, url: req.url.split('?')[0] }, hubErr.message);
    void reply
      .code(hubErr.status)
      .header('iothub-errorcode', hubErr.code)
      .type('application/json; charset=utf-8')
      .send(hubErr.restBody(trackingId, new Date(this.deps.now())));
  }

  private principal(req: FastifyRequest, ...rights: Right[]): Principal {
    const header = req.headers.authorization;
    const principal = this.deps.auth.authenticate(Array.isArray(header) ? header[0] : header);
    requireRight(principal, ...rights);
    return principal;
  }

  private requireApiVersion(req: FastifyRequest): void {
    const q = req.query as Record<string, unknown>;
    if (typeof q['api-version'] !== 'string' || q['api-version'] === '') {
      throw new HubError('ArgumentInvalid', 'the api-version query parameter is required (the SDKs send 2021-04-12)');
    }
  }

  private ifMatch(req: FastifyRequest): string | undefined {
    const v = req.headers['if-match'];
    return Array.isArray(v) ? v[0] : v;
  }

  private deviceJson(id: string): Record<string, unknown> {
    const { registry, c2d } = this.deps;
    return registry.deviceJson(registry.require(id), c2d.queuedCount(id));
  }

  private twinJson(id: string): Record<string, unknown> {
    const { registry, c2d } = this.deps;
    return registry.twinJson(registry.getTwin(id), c2d.queuedCount(id));
  }

  private routes(): void {
    const { registry, c2d, meter } = this.deps;
    const app = this.app;
    const json = 'application/json; charset=utf-8';

    app.addHook('onRequest', async (req) => {
      if (!req.url.startsWith('/_local/')) this.requireApiVersion(req);
    });

    const ctx: RouteContext = {
      deps: this.deps,
      principal: (req, ...rights) => this.principal(req, ...rights),
      twinJson: (id) => this.twinJson(id),
    };
    for (const register of this.modules) register(app, ctx);

    app.put<IdParams & { Body: DeviceInput }>('/devices/:id', async (req, reply) => {
      this.principal(req, 'RegistryWrite');
      const ifMatch = this.ifMatch(req);
      const body = (req.body ?? {}) as DeviceInput & { deviceId?: unknown };
      if (body.deviceId !== undefined && body.deviceId !== req.params.id) {
        throw new HubError('ArgumentInvalid', `deviceId in the body (${String(body.deviceId)}) differs from the one in the path (${req.params.id})`);
      }
      const device = ifMatch === undefined ? registry.create(req.params.id, body) : registry.update(req.params.id, body, ifMatch);
      if (device.status === 'disabled') this.deps.log.info({ deviceId: device.deviceId }, 'device disabled');
      return reply.type(json).send(this.deviceJson(device.deviceId));
    });

    const listDevices = async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
      this.principal(req, 'RegistryRead', 'RegistryWrite');
      const top = intQuery((req.query as Record<string, unknown>).top, 'top', 1000, 1, 1000);
      const list = registry.list().slice(0, top).map((d) => registry.deviceJson(d, c2d.queuedCount(d.deviceId)));
      return reply.type(json).send(list);
    };

    app.get<IdParams>('/devices/:id', async (req, reply) => {
      // Registry.list() asks for `/devices/` (endpoint.devicePath('')): an empty id is the list.
      if (req.params.id === '') return listDevices(req, reply);
      this.principal(req, 'RegistryRead', 'RegistryWrite');
      return reply.type(json).send(this.deviceJson(req.params.id));
    });

    app.get('/devices', listDevices);

    app.delete<IdParams>('/devices/:id', async (req, reply) => {
      this.principal(req, 'RegistryWrite');
      const ifMatch = this.ifMatch(req) ?? '*';
      // Purged only once the etag matched: a refused delete leaves the queue alone.
      registry.delete(req.params.id, ifMatch, () => c2d.purge(req.params.id));
      return reply.code(204).send();
    });

    app.get<IdParams>('/twins/:id', async (req, reply) => {
      this.principal(req, 'ServiceConnect', 'RegistryRead');
      return reply.type(json).send(this.twinJson(req.params.id));
    });

    app.patch<IdParams & { Body: TwinServicePatch }>('/twins/:id', async (req, reply) => {
      this.principal(req, 'ServiceConnect', 'RegistryWrite');
      registry.patchTwin(req.params.id, req.body, this.ifMatch(req) ?? '*');
      return reply.type(json).send(this.twinJson(req.params.id));
    });

    app.put<IdParams & { Body: TwinServicePatch }>('/twins/:id', async (req, reply) => {
      this.principal(req, 'ServiceConnect', 'RegistryWrite');
      registry.replaceTwin(req.params.id, req.body, this.ifMatch(req) ?? '*');
      return reply.type(json).send(this.twinJson(req.params.id));
    });

    app.get('/_local/health', async (_req, reply) => reply.type(json).send({ status: 'ok', devices: registry.count() }));

    app.get('/_local/meter', async (req, reply) => {
      this.principal(req, 'ServiceConnect');
      return reply.type(json).send({ at: new Date(this.deps.now()).toISOString(), quota: this.deps.quota.status(), ...meter.snapshot() });
    });

    app.get('/_local/events', async (req, reply) => {
      this.principal(req, 'ServiceConnect');
      const q = req.query as Record<string, unknown>;
      const deviceId = typeof q.deviceId === 'string' && q.deviceId !== '' ? q.deviceId : undefined;
      const events = readEvents(this.deps.db, {
        ...(deviceId === undefined ? {} : { deviceId }),
        fromSequence: intQuery(q.fromSequence, 'fromSequence', 0, 0, Number.MAX_SAFE_INTEGER),
        limit: intQuery(q.limit, 'limit', 100, 1, MAX_EVENTS_PAGE),
      });
      return reply.type(json).send(events);
    });

    // Newline-delimited JSON: the backlog from fromSequence, then every new event as it lands.
    app.get('/_local/events/stream', async (req, reply) => {
      this.principal(req, 'ServiceConnect');
      const q = req.query as Record<string, unknown>;
      const deviceId = typeof q.deviceId === 'string' && q.deviceId !== '' ? q.deviceId : undefined;
      let from = intQuery(q.fromSequence, 'fromSequence', 0, 0, Number.MAX_SAFE_INTEGER);
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
      // Headers now, not with the first event: a follower of a quiet hub must see it is connected.
      res.flushHeaders();
      const write = (e: StoredEvent): void => {
        if (deviceId === undefined || e.deviceId === deviceId) res.write(`${JSON.stringify(e)}\n`);
      };
      // The backlog read and the subscription happen in one synchronous run: nothing can slip between.
      for (;;) {
        const page = readEvents(this.deps.db, { ...(deviceId === undefined ? {} : { deviceId }), fromSequence: from, limit: MAX_EVENTS_PAGE });
        page.forEach(write);
        const last = page.at(-1);
        if (!last || page.length < MAX_EVENTS_PAGE) break;
        from = last.sequenceNumber + 1;
      }
      const onEvent = (e: StoredEvent): void => write(e);
      this.deps.events.on('event', onEvent);
      const heartbeat = setInterval(() => res.write('\n'), 15_000);
      const stop = (): void => {
        clearInterval(heartbeat);
        this.deps.events.off('event', onEvent);
        this.streams.delete(end);
      };
      const end = (): void => {
        stop();
        res.end();
      };
      this.streams.add(end);
      res.on('close', stop);
    });
  }
}
