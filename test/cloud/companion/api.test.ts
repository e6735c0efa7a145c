import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { build } from '../../../cloud/src/app.js';
import { issueToken } from '../../../cloud/src/auth.js';
import { CloudStore } from '../../../cloud/src/store.js';
import { captureLog } from '../../helpers/hub.js';
import { bearer, companion } from './fixture.js';
import { FakeFleetHub } from './fake-hub.js';

interface OpenApiDoc {
  openapi: string;
  info: { title: string; version: string };
  paths: Record<string, Record<string, { responses?: Record<string, unknown>; security?: unknown[] }>>;
  components?: { schemas?: Record<string, unknown>; securitySchemes?: Record<string, unknown> };
}

t.test('health and readiness need no token; readiness follows the store', async (t) => {
  const c = await companion();
  t.teardown(c.cleanup);
  const health = await c.app.inject({ method: 'GET', url: '/healthz' });
  t.equal(health.statusCode, 200);
  t.same(health.json(), { status: 'ok' });
  const ready = await c.app.inject({ method: 'GET', url: '/readyz' });
  t.equal(ready.statusCode, 200);
  t.same(ready.json(), { status: 'ready' });

  c.store.close();
  const notReady = await c.app.inject({ method: 'GET', url: '/readyz' });
  t.equal(notReady.statusCode, 503);
  t.match(notReady.json(), { code: 'CLOUD_STORE_FAILED', message: /not reachable/ });
  t.equal((await c.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, 'liveness does not depend on the store');
});

t.test('unknown route: 404 problem', async (t) => {
  const c = await companion();
  t.teardown(c.cleanup);
  const res = await c.app.inject({ method: 'GET', url: '/v2/gateways?x=1' });
  t.equal(res.statusCode, 404);
  t.same(res.json(), { code: 'ROUTE_NOT_FOUND', message: 'no such route: GET /v2/gateways' });
  const wrongMethod = await c.app.inject({ method: 'DELETE', url: '/v1/whoami', headers: bearer(c.token('operator')) });
  t.equal(wrongMethod.statusCode, 404);
  t.equal(wrongMethod.json<{ code: string }>().code, 'ROUTE_NOT_FOUND');
});

t.test('schema violations: 400 problem naming the field', async (t) => {
  const c = await companion();
  t.teardown(c.cleanup);
  const headers = bearer(c.token('operator'));
  for (const [url, field] of [
    ['/v1/audit?limit=0', 'querystring/limit'],
    ['/v1/audit?limit=abc', 'querystring/limit'],
    ['/v1/audit?limit=5000', 'querystring/limit'],
    ['/v1/audit?colour=red', 'querystring/colour'],
  ] as const) {
    const res = await c.app.inject({ method: 'GET', url, headers });
    t.equal(res.statusCode, 400, url);
    const body = res.json<{ code: string; message: string; details: { field: string; errors: { field: string; message: string }[] } }>();
    t.equal(body.code, 'REQUEST_INVALID', url);
    t.equal(body.details.field, field, url);
    t.ok(body.message.startsWith(`${field}: `), body.message);
    t.ok(body.details.errors.length >= 1);
  }
  t.equal((await c.app.inject({ method: 'GET', url: '/v1/audit?limit=1', headers })).statusCode, 200);
});

t.test('a failing store is a 503 problem; a handler bug a 500 INTERNAL_ERROR with the stack logged, not sent', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-cloud-'));
  const store = CloudStore.open(dir);
  const log = captureLog();
  const app = await build({ store, log: log.logger, hub: new FakeFleetHub(), background: false });
  app.get('/v1/boom', { schema: { response: { 200: { type: 'object' } } } }, async () => {
    throw new TypeError('undefined is not a function');
  });
  t.teardown(async () => {
    await app.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const headers = bearer(issueToken(store, { name: 'ops', role: 'operator', now: 0 }).token);

  const boom = await app.inject({ method: 'GET', url: '/v1/boom', headers });
  t.equal(boom.statusCode, 500);
  t.same(boom.json(), { code: 'INTERNAL_ERROR', message: 'unexpected error inside the cloud companion' });
  t.notOk(boom.body.includes('undefined is not a function'), 'the cause stays in the log');
  t.ok(log.lines.some((l) => l['level'] === 50 && JSON.stringify(l).includes('undefined is not a function')));

  store.close();
  const res = await app.inject({ method: 'GET', url: '/v1/audit', headers });
  t.equal(res.statusCode, 503, 'the token lookup fails: a 503 the client may retry');
  t.equal(res.json<{ code: string }>().code, 'CLOUD_STORE_FAILED');
});

t.test('authentication comes before validation: strangers and wrong roles learn nothing from the schema', async (t) => {
  const c = await companion();
  t.teardown(c.cleanup);
  t.equal((await c.app.inject({ method: 'GET', url: '/v1/audit?limit=abc' })).statusCode, 401);
  t.equal((await c.app.inject({ method: 'GET', url: '/v1/audit?limit=abc', headers: bearer(c.token('viewer')) })).statusCode, 403);
});

t.test('/docs/json: an OpenAPI 3 document listing every route with request and response schemas', async (t) => {
  const c = await companion();
  t.teardown(c.cleanup);
  const res = await c.app.inject({ method: 'GET', url: '/docs/json' });
  t.equal(res.statusCode, 200, 'no token needed');
  const doc = res.json<OpenApiDoc>();
  t.match(doc.openapi, /^3\.\d+\.\d+$/);
  t.equal(doc.info.title, 'Fieldlink cloud companion');
  t.same(Object.keys(doc.paths).sort(), [
    '/',
    '/fleet',
    '/healthz',
    '/readyz',
    '/v1/audit',
    '/v1/commands/{id}',
    '/v1/gateways',
    '/v1/gateways/{id}',
    '/v1/gateways/{id}/commands',
    '/v1/gateways/{id}/config',
    '/v1/pairing/links',
    '/v1/pairing/sessions',
    '/v1/pairing/sessions/{id}',
    '/v1/pairing/sessions/{id}/devices',
    '/v1/pairing/sessions/{id}/devices/{address}',
    '/v1/whoami',
    '/web/fleet.css',
    '/web/fleet.js',
  ].filter((p) => !p.startsWith('/fleet') && !p.startsWith('/web') && p !== '/'), 'every API route, and not the web page routes');
  t.ok(doc.components?.securitySchemes?.['bearer'], 'bearer scheme declared');
  t.ok(doc.components?.schemas?.['Problem'], 'Problem schema is a shared component');
  t.same(doc.paths['/healthz']?.['get']?.security, [], 'health is declared public');

  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      t.ok(Object.keys(op.responses ?? {}).some((s) => /^2\d\d$/.test(s)), `${method} ${path} documents its success response`);
    }
  }
  const audit = doc.paths['/v1/audit']?.['get'] as { parameters?: { name: string; in: string }[]; responses: Record<string, unknown> };
  t.match(audit.parameters, [{ name: 'limit', in: 'query' }]);
  for (const status of ['401', '403', '429']) t.ok(audit.responses[status], `audit documents ${status}`);

  // Every $ref points at something the document defines.
  const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"([^"]+)"/g)].map((m) => m[1] ?? '');
  t.ok(refs.length > 0);
  for (const ref of refs) {
    const name = /^#\/components\/schemas\/(.+)$/.exec(ref)?.[1];
    t.ok(name !== undefined && doc.components?.schemas?.[name], `$ref ${ref} resolves`);
  }

  const ui = await c.app.inject({ method: 'GET', url: '/docs/' });
  t.equal(ui.statusCode, 200, 'the UI is served too');
  t.match(ui.headers['content-type'], /text\/html/);
});
