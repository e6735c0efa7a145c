import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { LogController, type FastifyInstance, type FastifyRequest } from 'fastify';
import { systemClock, type Clock } from '../../common/clock.js';
import { FieldlinkError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { sharedSchemas } from './api-schemas.js';
import { createAuth, type RateLimitOptions } from './auth.js';
import { CommandService } from './commands.js';
import { FeedbackWorker } from './feedback-worker.js';
import { FleetCache } from './fleet-cache.js';
import type { FleetHub } from './fleet-hub.js';
import { httpStatusOf, problemOf, problemSchema, toFieldlinkError } from './problem.js';
import { registerCommandRoutes } from './routes-commands.js';
import { registerConfigRoutes } from './routes-config.js';
import { registerLocationRoutes, type LocationServices } from './locations/routes-locations.js';
import { registerPairingRoutes } from './routes-pairing.js';
import { registerGatewayRoutes } from './routes-gateways.js';
import { registerV1Routes } from './routes-v1.js';
import type { CompanionServices } from './services.js';
import { registerWebRoutes } from './web-routes.js';
import type { CloudStore } from './store.js';

export interface BuildOptions {
  store: CloudStore;
  log: Logger;
  clock?: Clock;
  rateLimit?: RateLimitOptions;
  /** IoT Hub, through the official SDK (azure-fleet-hub.ts) or a fake in route tests. Not closed by the app. */
  hub: FleetHub;
  /** How often the fleet view is re-read from the hub (default 30 s). */
  fleetRefreshMs?: number;
  /**
   * Run the feedback receiver and the scheduled fleet refresh once the app is ready (default
   * true). Route tests that drive everything by hand turn them off.
   */
  background?: boolean;
  /** Feedback receiver retry bounds (tests shorten them). */
  feedbackRetryMs?: { min: number; max: number };
  /** The most commands pending per gateway (IoT Hub's queue holds 50). */
  maxPendingCommands?: number;
  /** Fleet locations (issue 9): connection-log ingest, analytics, the map; absent, those routes are not served. */
  locations?: LocationServices;
  /** How phones reach the companion (e.g. https://fieldlink.example.com), for pairing links; default: the request's own origin. */
  publicUrl?: string;
}

export const DOCS_PREFIX = '/docs';

/** Health, readiness and the OpenAPI document are reachable without a token; nothing else is. */
function isPublic(req: FastifyRequest): boolean {
  if (req.is404) return true;
  if (req.routeOptions.config.public === true) return true;
  const url = req.routeOptions.url ?? '';
  return url === DOCS_PREFIX || url.startsWith(`${DOCS_PREFIX}/`);
}

/**
 * The cloud companion's HTTP API, ready for `inject()` or for server.ts to listen on. Every
 * route has request and response schemas; every error is a problem body `{ code, message,
 * details? }` with a code from common/errors.ts.
 */
export async function build(opts: BuildOptions): Promise<FastifyInstance> {
  const clock = opts.clock ?? systemClock;
  const log = opts.log.child({ component: 'cloud-api' });
  const app = Fastify({
    loggerInstance: log,
    bodyLimit: 64 * 1024,
    // Our logger scrubs arguments before pino's serializers see them, which would empty
    // fastify's req/res lines; the onResponse hook below logs one line per request instead.
    logController: new LogController({ disableRequestLogging: true }),
    // A pino child per request costs ~10 µs with our redaction set (a tenth of a fleet-list
    // request); request lines carry reqId themselves instead.
    childLoggerFactory: (logger) => logger,
    ajv: { customOptions: { allErrors: true, removeAdditional: false, coerceTypes: 'array', useDefaults: true } },
  }) as unknown as FastifyInstance;

  // RFC 7396 merge patches (PATCH …/config) under their own media type too.
  app.addContentTypeParser('application/merge-patch+json', { parseAs: 'string' }, app.getDefaultJsonParser('error', 'error'));
  app.addSchema(problemSchema);
  for (const schema of sharedSchemas) app.addSchema(schema);

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'Fieldlink cloud companion', version: '1' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'flc_… token from `fieldlink cloud token create`' } } },
      security: [{ bearer: [] }],
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
  });
  await app.register(swaggerUi, { routePrefix: DOCS_PREFIX });

  app.setErrorHandler((err, req, reply) => {
    const fl = toFieldlinkError(err);
    const status = httpStatusOf(fl.code);
    // Every refusal for rate (the per-token limit, pairing-code guessing) says when to come back.
    const retryAfterS = fl.code === 'RATE_LIMITED' ? fl.details?.retryAfterS : undefined;
    if (typeof retryAfterS === 'number') void reply.header('retry-after', String(retryAfterS));
    if (status >= 500) req.log.error({ reqId: req.id, err, code: fl.code }, 'request failed');
    else req.log.info({ reqId: req.id, code: fl.code, status }, fl.message);
    void reply.code(status).type('application/json; charset=utf-8').send(problemOf(fl));
  });
  app.setNotFoundHandler((req, reply) => {
    const fl = new FieldlinkError('ROUTE_NOT_FOUND', { message: `no such route: ${req.method} ${req.url.split('?')[0] ?? ''}` });
    void reply.code(404).type('application/json; charset=utf-8').send(problemOf(fl));
  });

  const auth = createAuth({ store: opts.store, clock, ...(opts.rateLimit ? { rateLimit: opts.rateLimit } : {}) });
  // Default deny: a route that forgets requireRole still needs a valid token (any role). Checked
  // on request, before the body is parsed or validated, so strangers get 401 and nothing else.
  app.addHook('onRequest', async (req) => {
    if (!isPublic(req)) auth.authenticate(req);
  });

  // One line per request: never headers (the Authorization header stays out of logs
  // entirely), the path without its query, and the token's name once authenticated.
  app.addHook('onResponse', async (req, reply) => {
    req.log.info(
      {
        reqId: req.id,
        method: req.method,
        path: req.url.split('?')[0],
        route: req.routeOptions.url,
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 10) / 10,
        ...(req.principal ? { tokenName: req.principal.name } : {}),
      },
      'request completed',
    );
  });

  const status = (value: string) => ({ type: 'object', required: ['status'], properties: { status: { type: 'string', const: value } } }) as const;
  app.get(
    '/healthz',
    {
      config: { public: true },
      schema: { tags: ['health'], summary: 'Liveness: the process answers', security: [], response: { 200: status('ok') } },
    },
    async () => ({ status: 'ok' }),
  );
  app.get(
    '/readyz',
    {
      config: { public: true },
      schema: { tags: ['health'], summary: 'Readiness: the state store answers', security: [], response: { 200: status('ready'), 503: { $ref: 'Problem#' } } },
    },
    async () => {
      opts.store.ping();
      return { status: 'ready' };
    },
  );

  const cache = new FleetCache(opts.hub, clock, log, opts.fleetRefreshMs);
  const commands = new CommandService({
    store: opts.store,
    hub: opts.hub,
    clock,
    log,
    ...(opts.maxPendingCommands === undefined ? {} : { maxPending: opts.maxPendingCommands }),
  });
  const feedback = new FeedbackWorker({
    hub: opts.hub,
    commands,
    log,
    ...(opts.feedbackRetryMs ? { minRetryMs: opts.feedbackRetryMs.min, maxRetryMs: opts.feedbackRetryMs.max } : {}),
  });
  if (opts.background !== false) {
    app.addHook('onReady', async () => {
      cache.start();
      feedback.start();
      opts.locations?.tags.start();
    });
  }
  app.addHook('onClose', async () => {
    cache.stop();
    await feedback.stop();
    await opts.locations?.tags.stop();
  });

  const services: CompanionServices = { store: opts.store, clock, log, auth, hub: opts.hub, cache, commands };
  registerV1Routes(app, { store: opts.store, auth });
  registerGatewayRoutes(app, services);
  registerCommandRoutes(app, services);
  registerConfigRoutes(app, services);
  registerPairingRoutes(app, services, opts.publicUrl === undefined ? {} : { publicUrl: opts.publicUrl });
  if (opts.locations) registerLocationRoutes(app, services, opts.locations);
  registerWebRoutes(app);
  return app;
}
