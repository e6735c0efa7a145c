import t from 'tap';
import { bearer, companion, type Companion, NO_RATE_LIMIT, type ProblemJson, type AuditEntryJson } from './fixture.js';

// The config routes against the fake IoT Hub: the view of desired vs acknowledged, patches
// validated before they reach the hub, etags, auth and audit.

interface ConfigJson {
  etag: string;
  desired: Record<string, unknown>;
  desiredVersion: number;
  reported: { appliedVersion: number; desiredVersion: number; status: string; errors: unknown[] } | null;
  status: string;
  errors: unknown[];
}

const rateLimit = NO_RATE_LIMIT;

async function getConfig(c: Companion, token: string, id: string) {
  return c.app.inject({ method: 'GET', url: `/v1/gateways/${id}/config`, headers: bearer(token) });
}
async function patch(c: Companion, token: string, id: string, body: unknown, ifMatch?: string) {
  return c.app.inject({
    method: 'PATCH',
    url: `/v1/gateways/${id}/config`,
    headers: { ...bearer(token), ...(ifMatch === undefined ? {} : { 'if-match': ifMatch }) },
    payload: body as Record<string, unknown>,
  });
}
async function audit(c: Companion, token: string): Promise<AuditEntryJson[]> {
  return (await c.app.inject({ method: 'GET', url: '/v1/audit', headers: bearer(token) })).json<{ entries: AuditEntryJson[] }>().entries;
}

t.test('GET config: desired without $-keys, version, etag (body and quoted header), acknowledgement and status', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const op = c.token('operator');
  const viewer = c.token('viewer');

  const none = c.hub.addGateway('gw-none');
  const res = await getConfig(c, viewer, 'gw-none');
  t.equal(res.statusCode, 200, 'viewers may read');
  const v = res.json<ConfigJson>();
  t.same(v, { etag: none.etag, desired: {}, desiredVersion: 1, reported: null, status: 'none', errors: [] });
  t.equal(res.headers.etag, `"${none.etag}"`, 'ETag header, quoted');

  c.hub.addGateway('gw-pending', {}, { desired: { $version: 4, $metadata: { $lastUpdated: '2025-01-01T00:00:00Z' }, checkInIntervalS: 600 } });
  const pending = (await getConfig(c, op, 'gw-pending')).json<ConfigJson>();
  t.same(pending.desired, { checkInIntervalS: 600 }, 'no $version / $metadata');
  t.equal(pending.desiredVersion, 4);
  t.equal(pending.status, 'pending', 'never acknowledged');
  t.equal(pending.reported, null);

  c.hub.addGateway('gw-behind', { config: { appliedVersion: 3, desiredVersion: 3, status: 'applied', errors: [] } }, { desired: { $version: 4, checkInIntervalS: 600 } });
  const behind = (await getConfig(c, op, 'gw-behind')).json<ConfigJson>();
  t.equal(behind.status, 'pending', 'acknowledged an older version');
  t.same(behind.reported, { appliedVersion: 3, desiredVersion: 3, status: 'applied', errors: [] });

  c.hub.addGateway('gw-applied', {}, { desired: { $version: 4, checkInIntervalS: 600 } });
  c.hub.report('gw-applied', { config: { appliedVersion: 4, desiredVersion: 4, status: 'applied', errors: [] } });
  const applied = await getConfig(c, op, 'gw-applied');
  t.equal(applied.json<ConfigJson>().status, 'applied');
  t.same(applied.json<ConfigJson>().errors, []);
  t.equal(applied.json<ConfigJson>().etag, c.hub.twins.get('gw-applied')?.etag, 'the current etag');
  t.equal(applied.headers.etag, `"${c.hub.twins.get('gw-applied')?.etag}"`);

  const problems = [{ path: '/checkInIntervalS', message: 'too short for this board' }];
  c.hub.addGateway('gw-rejected', {}, { desired: { $version: 4, checkInIntervalS: 600 } });
  c.hub.report('gw-rejected', { config: { appliedVersion: 3, desiredVersion: 4, status: 'rejected', errors: problems } });
  const rejected = (await getConfig(c, op, 'gw-rejected')).json<ConfigJson>();
  t.equal(rejected.status, 'rejected');
  t.same(rejected.errors, problems, 'the gateway’s reasons');
  t.same(rejected.reported, { appliedVersion: 3, desiredVersion: 4, status: 'rejected', errors: problems });

  const missing = await getConfig(c, op, 'gw-ghost');
  t.equal(missing.statusCode, 404);
  t.equal(missing.json<ProblemJson>().code, 'DEVICE_NOT_FOUND');
});

t.test('PATCH: a valid patch reaches the hub; new etag; pending until acknowledged; If-Match quoted or bare', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const op = c.token('operator', 'alice');
  const before = c.hub.addGateway('gw-1', { config: { appliedVersion: 1, desiredVersion: 1, status: 'applied', errors: [] } });
  t.equal((await getConfig(c, op, 'gw-1')).json<ConfigJson>().status, 'applied');

  const res = await patch(c, op, 'gw-1', { checkInIntervalS: 600 });
  t.equal(res.statusCode, 200, res.body);
  const v = res.json<ConfigJson>();
  t.same(v.desired, { checkInIntervalS: 600 });
  t.equal(v.desiredVersion, 2);
  t.equal(v.status, 'pending');
  t.not(v.etag, before.etag, 'a new etag');
  t.equal(v.etag, c.hub.twins.get('gw-1')?.etag);
  t.equal(res.headers.etag, `"${v.etag}"`);
  t.same(c.hub.twins.get('gw-1')?.desired, { $version: 2, checkInIntervalS: 600 }, 'desired updated in the hub');

  const quoted = await patch(c, op, 'gw-1', { onlineWindowS: 300 }, `"${v.etag}"`);
  t.equal(quoted.statusCode, 200, `quoted If-Match: ${quoted.body}`);
  const etag2 = quoted.json<ConfigJson>().etag;
  const bare = await patch(c, op, 'gw-1', { sampling: { ble: { sampleIntervalS: 5, reportIntervalS: 30 } } }, etag2);
  t.equal(bare.statusCode, 200, `bare If-Match: ${bare.body}`);
  t.same(c.hub.twins.get('gw-1')?.desired, {
    $version: 4,
    checkInIntervalS: 600,
    onlineWindowS: 300,
    sampling: { ble: { sampleIntervalS: 5, reportIntervalS: 30 } },
  });

  // The gateway acknowledges; then null removes a key.
  c.hub.report('gw-1', { config: { appliedVersion: 4, desiredVersion: 4, status: 'applied', errors: [] } });
  t.equal((await getConfig(c, op, 'gw-1')).json<ConfigJson>().status, 'applied');
  t.equal((await patch(c, op, 'gw-1', { alarms: { temperature: { max: 30 } } })).statusCode, 200);
  t.same(c.hub.twins.get('gw-1')?.desired.alarms, { temperature: { max: 30 } });
  const removed = await patch(c, op, 'gw-1', { alarms: null });
  t.equal(removed.statusCode, 200, removed.body);
  t.notOk('alarms' in (c.hub.twins.get('gw-1')?.desired ?? {}), 'null removed the key in the hub');
  t.notOk('alarms' in removed.json<ConfigJson>().desired, 'and in the view');
  t.equal(removed.json<ConfigJson>().status, 'pending');

  const entries = (await audit(c, op)).filter((e) => e.action === 'config.patch');
  t.equal(entries.length, 5);
  t.match(entries[0], { tokenName: 'alice', action: 'config.patch', target: 'gw-1', result: 'ok', details: { patch: { alarms: null } } });
  t.match(entries.at(-2), { result: 'ok', details: { patch: { onlineWindowS: 300 }, ifMatch: v.etag } });
});

t.test('PATCH with a stale etag: 412 with the current etag, nothing changed', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const op = c.token('operator');
  const old = c.hub.addGateway('gw-1');
  c.hub.report('gw-1', { power: { state: 'online' } }); // the twin moves on
  const current = c.hub.twins.get('gw-1');
  t.not(current?.etag, old.etag);
  for (const stale of [old.etag, `"${old.etag}"`, '"nonsense"']) {
    const res = await patch(c, op, 'gw-1', { checkInIntervalS: 600 }, stale);
    t.equal(res.statusCode, 412, stale);
    const p = res.json<ProblemJson>();
    t.equal(p.code, 'PRECONDITION_FAILED');
    t.equal(p.details?.currentEtag, current?.etag, 'names the current etag');
  }
  t.same(c.hub.twins.get('gw-1')?.desired, { $version: 1 }, 'desired unchanged');
  t.equal(c.hub.twins.get('gw-1')?.etag, current?.etag, 'etag unchanged');
  const ok = await patch(c, op, 'gw-1', { checkInIntervalS: 600 }, `"${current?.etag}"`);
  t.equal(ok.statusCode, 200, 'the current etag works');
  const entries = (await audit(c, op)).filter((e) => e.action === 'config.patch');
  t.equal(entries.length, 4);
  t.match(entries.slice(1), [{ result: 'PRECONDITION_FAILED' }, { result: 'PRECONDITION_FAILED' }, { result: 'PRECONDITION_FAILED' }]);
  t.equal(entries[0]?.result, 'ok');
});

t.test('PATCH with a bad value: 400 CONFIG_INVALID naming the field, nothing sent to the hub', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const op = c.token('operator', 'alice');
  c.hub.addGateway('gw-1', {}, { desired: { $version: 3, checkInIntervalS: 900 } });
  const before = structuredClone(c.hub.twins.get('gw-1'));
  const cases: [unknown, string][] = [
    [{ checkInIntervalS: 5 }, '/checkInIntervalS'],
    [{ checkInIntervalS: 'often' }, '/checkInIntervalS'],
    [{ sampling: { ble: { sampleIntervalS: 0 } } }, '/sampling/ble/sampleIntervalS'],
    [{ pairings: ['AA:BB:CC:DD:EE:01'] }, '/pairings'],
    [{ pairings: { 'not-an-address': { profile: 'heart_rate' } } }, '/pairings'],
    [{ foo: 1 }, '/foo'],
    [{ sampling: { ble: { sampleIntervalS: 100, reportIntervalS: 50 } } }, '/sampling/ble/reportIntervalS'],
    [{ $version: 3 }, '/$version'],
    [{ checkInIntervalS: 600, $metadata: {} }, '/$metadata'],
  ];
  for (const [body, field] of cases) {
    const res = await patch(c, op, 'gw-1', body);
    const label = JSON.stringify(body);
    t.equal(res.statusCode, 400, label);
    const p = res.json<ProblemJson>();
    t.equal(p.code, 'CONFIG_INVALID', label);
    t.equal(typeof p.details?.field, 'string', `${label}: names a field`);
    t.ok(String(p.details?.field).startsWith(field), `${label}: field ${String(p.details?.field)} is under ${field}`);
  }
  // An unknown key must be named itself, not its parent.
  t.equal((await patch(c, op, 'gw-1', { foo: 1 })).json<ProblemJson>().details?.field, '/foo');
  t.equal((await patch(c, op, 'gw-1', { checkInIntervalS: 5 })).json<ProblemJson>().details?.field, '/checkInIntervalS');
  t.same(c.hub.twins.get('gw-1'), before, 'the hub twin is untouched');
  const empty = await patch(c, op, 'gw-1', {});
  t.equal(empty.statusCode, 400, 'an empty patch is refused');
  t.same(c.hub.twins.get('gw-1'), before);

  const entries = (await audit(c, op)).filter((e) => e.action === 'config.patch');
  t.ok(entries.length >= cases.length, 'refused patches are audited');
  t.ok(entries.every((e) => e.result === 'CONFIG_INVALID' && e.tokenName === 'alice' && e.target === 'gw-1'));
  t.match(entries.at(-1), { details: { patch: { checkInIntervalS: 5 } } });
});

t.test('PATCH: viewers and pairing tokens are refused, strangers 401, unknown gateways 404', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const op = c.token('operator');
  c.hub.addGateway('gw-1');
  for (const [token, status] of [
    [c.token('viewer'), 403],
    [c.token('pairing'), 403],
  ] as const) {
    const res = await patch(c, token, 'gw-1', { checkInIntervalS: 600 });
    t.equal(res.statusCode, status);
    t.equal(res.json<ProblemJson>().code, 'AUTH_FORBIDDEN');
  }
  t.equal((await getConfig(c, c.token('pairing', 'p2'), 'gw-1')).statusCode, 403, 'pairing tokens cannot read config');
  const anon = await c.app.inject({ method: 'PATCH', url: '/v1/gateways/gw-1/config', payload: { checkInIntervalS: 600 } });
  t.equal(anon.statusCode, 401);
  t.same(c.hub.twins.get('gw-1')?.desired, { $version: 1 }, 'nothing changed');
  t.equal((await audit(c, op)).filter((e) => e.action === 'config.patch').length, 0, 'refused roles leave no config.patch entry');
  const ghost = await patch(c, op, 'gw-ghost', { checkInIntervalS: 600 });
  t.equal(ghost.statusCode, 404);
  t.equal(ghost.json<ProblemJson>().code, 'DEVICE_NOT_FOUND');
  t.match((await audit(c, op))[0], { action: 'config.patch', target: 'gw-ghost', result: 'DEVICE_NOT_FOUND' });
});

t.test('removing every setting is a change the gateway must still apply: pending until acknowledged', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const op = c.token('operator');
  c.hub.addGateway('gw-1');
  const set = await patch(c, op, 'gw-1', { checkInIntervalS: 600 });
  t.equal(set.json<ConfigJson>().status, 'pending');
  const version = set.json<ConfigJson>().desiredVersion;
  c.hub.report('gw-1', { config: { appliedVersion: version, desiredVersion: version, status: 'applied', errors: [] } });
  t.equal((await getConfig(c, op, 'gw-1')).json<ConfigJson>().status, 'applied');

  // Back to the defaults: desired is empty at a newer version the gateway has not acknowledged.
  const cleared = await patch(c, op, 'gw-1', { checkInIntervalS: null });
  t.equal(cleared.statusCode, 200);
  const v = cleared.json<ConfigJson>();
  t.same(v.desired, {});
  t.equal(v.desiredVersion, version + 1);
  t.equal(v.status, 'pending', 'the gateway still runs checkInIntervalS 600 until it acknowledges the new version');
  c.hub.report('gw-1', { config: { appliedVersion: version + 1, desiredVersion: version + 1, status: 'applied', errors: [] } });
  t.equal((await getConfig(c, op, 'gw-1')).json<ConfigJson>().status, 'applied', 'and applied once it has');
});

t.test('PATCH accepts the merge-patch media type (RFC 7396) as well as application/json', async (t) => {
  const c = await companion();
  t.teardown(c.cleanup);
  c.hub.addGateway('gw-1');
  const res = await c.app.inject({
    method: 'PATCH',
    url: '/v1/gateways/gw-1/config',
    headers: { ...bearer(c.token('operator')), 'content-type': 'application/merge-patch+json' },
    payload: JSON.stringify({ checkInIntervalS: 900 }),
  });
  t.equal(res.statusCode, 200, res.body);
  t.equal(c.hub.twins.get('gw-1')?.desired.checkInIntervalS, 900);
  const bad = await c.app.inject({
    method: 'PATCH',
    url: '/v1/gateways/gw-1/config',
    headers: { ...bearer(c.token('operator', 'op2')), 'content-type': 'application/merge-patch+json' },
    payload: '{nope',
  });
  t.equal(bad.statusCode, 400, 'unparsable body is a 400');
});
