import t from 'tap';
import { generateToken, hashToken, TOKEN_PREFIX } from '../../../cloud/src/auth.js';
import { bearer, companion } from './fixture.js';

t.test('tokens: prefixed 32 random bytes, base64url, distinct', async (t) => {
  const a = generateToken();
  const b = generateToken();
  t.ok(a.startsWith(TOKEN_PREFIX));
  t.equal(Buffer.from(a.slice(TOKEN_PREFIX.length), 'base64url').length, 32);
  t.match(a, /^flc_[A-Za-z0-9_-]{43}$/);
  t.not(a, b);
});

t.test('401 without a token, with a bad one, with an unknown one, with a revoked one', async (t) => {
  const c = await companion();
  t.teardown(c.cleanup);
  const viewer = c.token('viewer', 'v1');

  for (const [label, headers] of [
    ['no header', {}],
    ['not bearer', { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` }],
    ['malformed token', bearer('nonsense')],
    ['unknown token', bearer(`${viewer.slice(0, -4)}AAAA`)],
  ] as const) {
    const res = await c.app.inject({ method: 'GET', url: '/v1/whoami', headers });
    t.equal(res.statusCode, 401, label);
    t.equal(res.json<{ code: string }>().code, 'AUTH_REQUIRED', label);
    t.match(res.headers['content-type'], /application\/json/);
  }

  const ok = await c.app.inject({ method: 'GET', url: '/v1/whoami', headers: bearer(viewer) });
  t.equal(ok.statusCode, 200);
  t.same(ok.json(), { name: 'v1', role: 'viewer', site: null, expiresAt: null });

  c.store.revokeToken('v1', c.clock.now());
  const revoked = await c.app.inject({ method: 'GET', url: '/v1/whoami', headers: bearer(viewer) });
  t.equal(revoked.statusCode, 401);
  t.match(revoked.json(), { code: 'AUTH_REQUIRED', message: /revoked/ });
});

t.test('roles: viewer and pairing get 403 on /v1/audit, operator 200; whoami for any role', async (t) => {
  const c = await companion();
  t.teardown(c.cleanup);
  const tokens = { operator: c.token('operator'), viewer: c.token('viewer'), pairing: c.token('pairing') };
  c.store.appendAudit({ ts: c.clock.now(), tokenName: 'cli', action: 'token.create', target: 'viewer', result: 'ok', details: { role: 'viewer' } });

  for (const role of ['viewer', 'pairing'] as const) {
    const res = await c.app.inject({ method: 'GET', url: '/v1/audit', headers: bearer(tokens[role]) });
    t.equal(res.statusCode, 403, role);
    t.match(res.json(), { code: 'AUTH_FORBIDDEN', details: { role, allowed: ['operator'] } });
  }
  const res = await c.app.inject({ method: 'GET', url: '/v1/audit?limit=5', headers: bearer(tokens.operator) });
  t.equal(res.statusCode, 200);
  t.same(res.json(), {
    entries: [{ ts: new Date(c.clock.now()).toISOString(), tokenName: 'cli', action: 'token.create', target: 'viewer', result: 'ok', details: { role: 'viewer' } }],
  });

  for (const role of ['operator', 'viewer', 'pairing'] as const) {
    const who = await c.app.inject({ method: 'GET', url: '/v1/whoami', headers: bearer(tokens[role]) });
    t.same(who.json(), { name: role, role, site: null, expiresAt: null }, `whoami as ${role}`);
  }
});

t.test('rate limit per token: 429 with Retry-After past the burst, OK after refill, other tokens unaffected', async (t) => {
  const c = await companion({ rateLimit: { perSecond: 2, burst: 3 } });
  t.teardown(c.cleanup);
  const busy = c.token('viewer', 'busy');
  const quiet = c.token('viewer', 'quiet');
  const get = (token: string) => c.app.inject({ method: 'GET', url: '/v1/whoami', headers: bearer(token) });

  for (let i = 0; i < 3; i++) t.equal((await get(busy)).statusCode, 200, `burst request ${i + 1}`);
  const limited = await get(busy);
  t.equal(limited.statusCode, 429);
  t.equal(limited.headers['retry-after'], '1');
  t.match(limited.json(), { code: 'RATE_LIMITED', details: { retryAfterS: 1 } });
  t.equal((await get(quiet)).statusCode, 200, 'another token has its own bucket');

  await c.clock.advance(400);
  t.equal((await get(busy)).statusCode, 429, 'not yet refilled (0.8 of a request)');
  await c.clock.advance(200);
  t.equal((await get(busy)).statusCode, 200, 'one request refilled after 500 ms');
  t.equal((await get(busy)).statusCode, 429);
  await c.clock.advance(10_000);
  for (let i = 0; i < 3; i++) t.equal((await get(busy)).statusCode, 200, 'refilled to the burst, not beyond');
  t.equal((await get(busy)).statusCode, 429);
});

t.test('only hashes are stored; tokens never reach the log', async (t) => {
  const c = await companion({ rateLimit: { perSecond: 1, burst: 1 } });
  t.teardown(c.cleanup);
  const operator = c.token('operator', 'ops');
  const viewer = c.token('viewer', 'view');
  const revoked = c.token('viewer', 'old');
  c.store.revokeToken('old', c.clock.now());

  t.equal(c.store.findTokenByName('ops')?.hash, hashToken(operator));
  t.equal(c.store.findTokenByHash(hashToken(operator))?.name, 'ops');
  t.equal(c.store.findTokenByHash(operator), undefined, 'nothing is keyed by the clear token');

  const statuses: number[] = [];
  for (const [url, token] of [
    ['/v1/whoami', operator],
    ['/v1/whoami', operator], // rate-limited
    ['/v1/audit', viewer], // forbidden
    ['/v1/whoami', revoked],
    ['/v1/nope', operator],
    ['/v1/audit?limit=abc', operator],
  ] as const) {
    statuses.push((await c.app.inject({ method: 'GET', url, headers: { ...bearer(token), 'x-forwarded-for': '10.0.0.1' } })).statusCode);
  }
  t.same(statuses, [200, 429, 403, 401, 404, 429]);
  await c.clock.advance(1000);
  t.equal((await c.app.inject({ method: 'GET', url: '/v1/audit?limit=abc', headers: bearer(operator) })).statusCode, 400);
  t.ok(c.log.lines.length > 0, 'requests were logged');
  t.match(
    c.log.lines.filter((l) => l['msg'] === 'request completed'),
    [
      { method: 'GET', path: '/v1/whoami', route: '/v1/whoami', status: 200, tokenName: 'ops', reqId: String },
      { path: '/v1/whoami', status: 429 },
      { path: '/v1/audit', status: 403, tokenName: 'view' },
      { path: '/v1/whoami', status: 401 },
      { path: '/v1/nope', status: 404 },
      { path: '/v1/audit', status: 429 },
    ],
    'one pino line per request',
  );
  t.notOk(
    c.log.lines.some((l) => JSON.stringify(l).includes('[REDACTED]')),
    'nothing needed redacting: tokens are never handed to the logger',
  );
  const text = c.log.lines.map((l) => JSON.stringify(l)).join('\n');
  for (const token of [operator, viewer, revoked]) {
    t.notOk(text.includes(token), 'token absent from logs');
    t.notOk(text.includes(token.slice(TOKEN_PREFIX.length, TOKEN_PREFIX.length + 16)), 'no part of the token either');
  }
  t.notOk(/flc_/.test(text), 'no token prefix at all');
});
