import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import t from 'tap';
import { build } from '../../../cloud/src/app.js';
import { issueToken } from '../../../cloud/src/auth.js';
import { CloudStore } from '../../../cloud/src/store.js';
import { FakeClock } from '../../../common/clock.js';
import { FieldlinkError } from '../../../common/errors.js';
import { captureLog } from '../../helpers/hub.js';
import { bearer, companion, type Companion, NO_RATE_LIMIT, type ProblemJson, type AuditEntryJson } from './fixture.js';
import { FakeFleetHub } from './fake-hub.js';

// The fleet routes against the fake IoT Hub: the cached, paged, filtered fleet view, one
// gateway read fresh, and creating / deleting identities.

interface Summary {
  id: string;
  health: string;
  healthReasons: string[];
  connected: boolean;
  power: { state: string | null; lastCheckIn: string | null; checkInIntervalS: number; nextCheckIn: string | null };
  config: { status: string };
  sourcesWithErrors: string[];
  firmware: string | null;
}
interface FleetJson {
  gateways: Summary[];
  total: number;
  nextCursor: string | null;
  asOf: string;
  stale: boolean;
  refreshError?: string;
}

const rateLimit = NO_RATE_LIMIT;
const MIN = 60_000;

async function fleet(c: { app: Companion['app'] }, token: string, query = ''): Promise<FleetJson> {
  const res = await c.app.inject({ method: 'GET', url: `/v1/gateways${query}`, headers: bearer(token) });
  if (res.statusCode !== 200) throw new Error(`GET /v1/gateways${query}: ${res.statusCode} ${res.body}`);
  return res.json<FleetJson>();
}

/** A mixed fleet: one gateway per health state, plus `extra` plain ones. */
function populate(c: Companion, extra: number): void {
  const now = c.clock.now();
  const iso = (ms: number) => new Date(ms).toISOString();
  c.hub.addGateway('zeta-connected', { power: { state: 'online', lastCheckIn: iso(now - MIN), checkInIntervalS: 3600 } }, { connectionState: 'Connected' });
  c.hub.addGateway('alpha-asleep', { power: { state: 'standby', lastCheckIn: iso(now - 10 * MIN), checkInIntervalS: 3600 } });
  c.hub.addGateway('mid-late', { power: { state: 'standby', lastCheckIn: iso(now - 120 * MIN), checkInIntervalS: 3600 } });
  c.hub.addGateway('mid-silent', { power: { state: 'standby', lastCheckIn: iso(now - 300 * MIN), checkInIntervalS: 3600 } });
  c.hub.addGateway('beta-new');
  c.hub.addGateway('beta-degraded', {
    power: { state: 'standby', lastCheckIn: iso(now - 10 * MIN), checkInIntervalS: 3600 },
    sources: { 'ble:hr': { connected: false } },
  });
  // Added out of order on purpose.
  for (let i = extra - 1; i >= 0; i--) {
    c.hub.addGateway(`plain-${String(i).padStart(3, '0')}`, { power: { state: 'standby', lastCheckIn: iso(now - MIN), checkInIntervalS: 3600 } });
  }
}

t.test('the fleet: sorted by id, paged with a cursor that walks everything once', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const viewer = c.token('viewer');
  populate(c, 30);
  const all = await fleet(c, viewer, '?limit=500');
  t.equal(all.total, 36);
  t.equal(all.gateways.length, 36);
  const ids = all.gateways.map((g) => g.id);
  t.same(ids, [...ids].sort(), 'sorted by id');
  t.equal(all.nextCursor, null, 'one page holds them all');
  t.equal(all.stale, false);
  t.notOk('refreshError' in all);

  const walked: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const page: FleetJson = await fleet(c, viewer, `?limit=7${cursor === null ? '' : `&after=${encodeURIComponent(cursor)}`}`);
    t.ok(page.gateways.length <= 7);
    t.equal(page.total, 36, 'total counts all matches, not the page');
    walked.push(...page.gateways.map((g) => g.id));
    cursor = page.nextCursor;
    if (cursor !== null) t.equal(cursor, page.gateways.at(-1)?.id, 'the cursor is the last id of the page');
    pages++;
  } while (cursor !== null && pages < 20);
  t.equal(pages, 6, '36 gateways in pages of 7');
  t.same(walked, ids, 'every gateway once, in order');
  t.equal(new Set(walked).size, walked.length, 'no duplicates');

  const exact = await fleet(c, viewer, '?limit=6&after=plain-023');
  t.same(exact.gateways.map((g) => g.id), ['plain-024', 'plain-025', 'plain-026', 'plain-027', 'plain-028', 'plain-029']);
  t.equal(exact.nextCursor, 'plain-029', 'more follow (zeta-connected)');
  const end = await fleet(c, viewer, '?limit=6&after=plain-029');
  t.same(end.gateways.map((g) => g.id), ['zeta-connected']);
  t.equal(end.nextCursor, null, 'null at the end');
  const past = await fleet(c, viewer, '?after=zzz');
  t.same(past.gateways, []);
  t.equal(past.nextCursor, null);
  const between = await fleet(c, viewer, '?limit=1&after=beta-e');
  t.same(between.gateways.map((g) => g.id), ['beta-new'], 'a cursor need not be an existing id');
  for (const bad of ['?limit=0', '?limit=501', '?health=sleepy', '?colour=red']) {
    t.equal((await c.app.inject({ method: 'GET', url: `/v1/gateways${bad}`, headers: bearer(viewer) })).statusCode, 400, bad);
  }
});

t.test('filters: health (repeatable), power, q; health follows the clock', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const op = c.token('operator');
  populate(c, 3);
  const byHealth = async (q: string) => (await fleet(c, op, q)).gateways.map((g) => `${g.id}:${g.health}`);
  t.same(await byHealth('?health=ok&q=-'), ['alpha-asleep:ok', 'plain-000:ok', 'plain-001:ok', 'plain-002:ok', 'zeta-connected:ok'], 'asleep on time is ok');
  t.same(await byHealth('?health=late'), ['mid-late:late']);
  t.same(await byHealth('?health=silent'), ['mid-silent:silent']);
  t.same(await byHealth('?health=unknown'), ['beta-new:unknown']);
  t.same(await byHealth('?health=degraded'), ['beta-degraded:degraded']);
  const two = await fleet(c, op, '?health=late&health=silent');
  t.same(two.gateways.map((g) => g.id), ['mid-late', 'mid-silent'], 'repeated health is a union');
  t.equal(two.total, 2);
  const degraded = (await fleet(c, op, '?health=degraded')).gateways[0];
  t.same(degraded?.sourcesWithErrors, ['ble:hr']);
  t.match(degraded?.healthReasons, [/ble:hr/]);

  t.same((await fleet(c, op, '?power=online')).gateways.map((g) => g.id), ['zeta-connected']);
  t.equal((await fleet(c, op, '?power=standby')).total, 7);
  t.equal((await fleet(c, op, '?power=nonsense')).total, 0);
  t.same((await fleet(c, op, '?q=mid')).gateways.map((g) => g.id), ['mid-late', 'mid-silent']);
  t.same((await fleet(c, op, '?q=beta&health=unknown')).gateways.map((g) => g.id), ['beta-new'], 'filters combine');
  const paged = await fleet(c, op, '?q=plain&limit=2');
  t.same(paged.gateways.map((g) => g.id), ['plain-000', 'plain-001']);
  t.equal(paged.total, 3);
  t.equal(paged.nextCursor, 'plain-001');
  t.same((await fleet(c, op, `?q=plain&limit=2&after=${paged.nextCursor}`)).gateways.map((g) => g.id), ['plain-002']);

  // Two hours later, without a refresh, the gateways that were on time are late.
  const calls = c.hub.listCalls;
  await c.clock.advance(120 * MIN);
  t.same(await byHealth('?q=alpha'), ['alpha-asleep:late'], 'health is judged against the time now');
  t.equal(c.hub.listCalls, calls, 'without asking the hub');
});

t.test('served from the cache: asOf, one hub query, config patches update it in place; a failed refresh is stale', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const op = c.token('operator');
  populate(c, 2);
  const t0 = c.clock.now();
  const first = await fleet(c, op);
  t.equal(c.hub.listCalls, 1);
  t.equal(first.asOf, new Date(t0).toISOString());
  t.equal(first.stale, false);

  c.hub.addGateway('aaa-added-later');
  await c.clock.advance(5 * MIN);
  for (let i = 0; i < 5; i++) await fleet(c, op);
  const again = await fleet(c, op);
  t.equal(c.hub.listCalls, 1, 'later calls do not query the hub');
  t.equal(again.asOf, new Date(t0).toISOString(), 'asOf is the refresh time, not now');
  t.notOk(again.gateways.some((g) => g.id === 'aaa-added-later'), 'a gateway added since is not seen until a refresh');

  // Reading one gateway puts it in the cache.
  t.equal((await c.app.inject({ method: 'GET', url: '/v1/gateways/aaa-added-later', headers: bearer(op) })).statusCode, 200);
  t.equal((await fleet(c, op)).gateways[0]?.id, 'aaa-added-later', 'a gateway read fresh joins the view');

  t.equal((await fleet(c, op, '?q=alpha')).gateways[0]?.config.status, 'none');
  const patched = await c.app.inject({ method: 'PATCH', url: '/v1/gateways/alpha-asleep/config', headers: bearer(op), payload: { checkInIntervalS: 600 } });
  t.equal(patched.statusCode, 200);
  const after = (await fleet(c, op, '?q=alpha')).gateways[0];
  t.equal(after?.config.status, 'pending', 'the patch shows in the list without a refresh');
  t.equal(c.hub.listCalls, 1);

  // Hub down: a delete cannot reach it; the cached view is still served.
  c.hub.down = new FieldlinkError('HUB_UNREACHABLE', { message: 'IoT Hub is not reachable (test)' });
  const still = await fleet(c, op);
  t.equal(still.total, 9, 'the cached view still answers while the hub is down');
});

/** A companion with the scheduled refresh on, every `refreshMs` of real time. */
async function scheduled(teardown: (fn: () => Promise<void>) => void, refreshMs: number) {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-cloud-'));
  const store = CloudStore.open(dir);
  const clock = new FakeClock();
  const log = captureLog('trace');
  const hub = new FakeFleetHub();
  const app = await build({ store, log: log.logger, clock, hub, fleetRefreshMs: refreshMs, background: true, rateLimit, feedbackRetryMs: { min: 10_000, max: 10_000 } });
  teardown(async () => {
    await app.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { app, store, clock, log, hub, token: issueToken(store, { name: 'op', role: 'operator', now: clock.now() }).token };
}

async function until(what: string, cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await delay(5);
  }
}

t.test('scheduled refresh: new gateways appear; hub down after a fill → 200 stale with refreshError; back → fresh', async (t) => {
  const c = await scheduled((fn) => t.teardown(fn), 20);
  c.hub.addGateway('gw-1');
  await c.app.ready();
  await until('first refresh', () => c.hub.listCalls >= 1);
  const t0 = c.clock.now();
  t.same((await fleet(c, c.token)).gateways.map((g) => g.id), ['gw-1']);

  c.hub.addGateway('gw-2');
  await c.clock.advance(MIN);
  const before = c.hub.listCalls;
  await until('a scheduled refresh', () => c.hub.listCalls > before);
  await delay(5);
  const refreshed = await fleet(c, c.token);
  t.same(refreshed.gateways.map((g) => g.id), ['gw-1', 'gw-2'], 'the refresh picked up the new gateway');
  t.equal(refreshed.asOf, new Date(t0 + MIN).toISOString());

  c.hub.down = new FieldlinkError('HUB_UNREACHABLE', { message: 'IoT Hub is not reachable (test)' });
  await until('a failed refresh logged', () => c.log.lines.some((l) => l.msg === 'fleet refresh failed; serving the previous view'));
  await c.clock.advance(MIN);
  const stale = await fleet(c, c.token);
  t.equal(stale.stale, true);
  t.match(stale.refreshError, /not reachable/);
  t.same(stale.gateways.map((g) => g.id), ['gw-1', 'gw-2'], 'the previous view');
  t.equal(stale.asOf, new Date(t0 + MIN).toISOString(), 'asOf says how old it is');

  c.hub.down = undefined;
  const calls = c.hub.listCalls;
  await until('a good refresh', () => c.hub.listCalls > calls);
  await delay(5);
  const fresh = await fleet(c, c.token);
  t.equal(fresh.stale, false);
  t.notOk('refreshError' in fresh);
});

t.test('hub down and the cache never filled: 503', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  c.hub.addGateway('gw-1');
  c.hub.down = new FieldlinkError('HUB_UNREACHABLE', { message: 'IoT Hub is not reachable (test)' });
  const res = await c.app.inject({ method: 'GET', url: '/v1/gateways', headers: bearer(c.token('viewer')) });
  t.equal(res.statusCode, 503);
  t.same(res.json<ProblemJson>(), { code: 'HUB_UNREACHABLE', message: 'IoT Hub is not reachable (test)' });
  c.hub.down = undefined;
  const ok = await c.app.inject({ method: 'GET', url: '/v1/gateways', headers: bearer(c.token('viewer', 'v2')) });
  t.equal(ok.statusCode, 200, 'answers once the hub is back');
  t.equal(ok.json<FleetJson>().total, 1);
});

t.test('one gateway: summary, reported and tags read fresh; unknown → 404', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const viewer = c.token('viewer');
  const lastCheckIn = new Date(c.clock.now() - 5 * MIN).toISOString();
  c.hub.addGateway('gw-1', { power: { state: 'standby', lastCheckIn, checkInIntervalS: 900 }, firmware: { version: '1.2.3' } }, { tags: { site: 'north' } });
  const res = await c.app.inject({ method: 'GET', url: '/v1/gateways/gw-1', headers: bearer(viewer) });
  t.equal(res.statusCode, 200);
  const body = res.json<{ gateway: Summary; reported: Record<string, unknown>; tags: Record<string, unknown> }>();
  t.match(body.gateway, { id: 'gw-1', health: 'ok', connected: false, firmware: '1.2.3', power: { state: 'standby', lastCheckIn, checkInIntervalS: 900 } });
  t.equal(body.gateway.power.nextCheckIn, new Date(Date.parse(lastCheckIn) + 900_000).toISOString());
  t.same(body.reported, c.hub.twins.get('gw-1')?.reported);
  t.same(body.tags, { site: 'north' });
  t.equal(c.hub.listCalls, 0, 'read from the twin, not the fleet query');

  const missing = await c.app.inject({ method: 'GET', url: '/v1/gateways/gw-ghost', headers: bearer(viewer) });
  t.equal(missing.statusCode, 404);
  t.equal(missing.json<ProblemJson>().code, 'DEVICE_NOT_FOUND');
  const pairing = await c.app.inject({ method: 'GET', url: '/v1/gateways/gw-1', headers: bearer(c.token('pairing')) });
  t.equal(pairing.statusCode, 403);
  t.equal((await c.app.inject({ method: 'GET', url: '/v1/gateways/gw-1' })).statusCode, 401);
});

t.test('create and delete identities: the key is returned once, never stored, logged or audited', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const op = c.token('operator', 'alice');
  const viewer = c.token('viewer');
  await fleet(c, op); // fill the cache

  const res = await c.app.inject({ method: 'POST', url: '/v1/gateways', headers: bearer(op), payload: { id: 'gw-new' } });
  t.equal(res.statusCode, 201, res.body);
  const created = res.json<{ id: string; connectionString: string }>();
  t.equal(created.id, 'gw-new');
  t.match(created.connectionString, /^HostName=fake;DeviceId=gw-new;SharedAccessKey=.+/);
  t.equal(res.headers['cache-control'], 'no-store');
  t.ok(c.hub.twins.has('gw-new'));
  t.same(c.hub.twins.get('gw-new')?.tags, { fieldlink: { kind: 'gateway' } });
  const key = created.connectionString.split('SharedAccessKey=')[1] ?? 'missing';

  const entries = (await c.app.inject({ method: 'GET', url: '/v1/audit', headers: bearer(op) })).json<{ entries: AuditEntryJson[] }>().entries;
  t.match(entries[0], { tokenName: 'alice', action: 'gateway.create', target: 'gw-new', result: 'ok' });
  t.notOk(JSON.stringify(entries).includes('SharedAccessKey'), 'no connection string in the audit log');
  t.notOk(JSON.stringify(entries).includes(key), 'no key in the audit log');
  const logged = JSON.stringify(c.log.lines);
  t.notOk(logged.includes('SharedAccessKey='), 'no connection string in the log');
  t.notOk(logged.includes(key), 'no key in the log');

  await new Promise((r) => setImmediate(r));
  t.ok((await fleet(c, op)).gateways.some((g) => g.id === 'gw-new'), 'the new gateway joins the cached view');

  const dup = await c.app.inject({ method: 'POST', url: '/v1/gateways', headers: bearer(op), payload: { id: 'gw-new' } });
  t.equal(dup.statusCode, 409);
  t.equal(dup.json<ProblemJson>().code, 'DEVICE_ALREADY_EXISTS');
  t.notOk(JSON.stringify(dup.json()).includes('SharedAccessKey'));

  for (const id of ['a/b', 'a#b', 'x'.repeat(200), '', 'has space']) {
    const bad = await c.app.inject({ method: 'POST', url: '/v1/gateways', headers: bearer(op), payload: { id } });
    t.equal(bad.statusCode, 400, `id ${JSON.stringify(id.slice(0, 20))}`);
    t.equal(bad.json<ProblemJson>().code, 'REQUEST_INVALID');
  }
  t.equal((await c.app.inject({ method: 'POST', url: '/v1/gateways', headers: bearer(op), payload: { id: 'gw-x', key: 'mine' } })).statusCode, 400, 'extra field');
  t.notOk(c.hub.twins.has('gw-x'));

  t.equal((await c.app.inject({ method: 'POST', url: '/v1/gateways', headers: bearer(viewer), payload: { id: 'gw-v' } })).statusCode, 403);
  t.equal((await c.app.inject({ method: 'DELETE', url: '/v1/gateways/gw-new', headers: bearer(viewer) })).statusCode, 403);
  t.equal((await c.app.inject({ method: 'DELETE', url: '/v1/gateways/gw-new' })).statusCode, 401);
  t.notOk(c.hub.twins.has('gw-v'));
  t.ok(c.hub.twins.has('gw-new'), 'refused deletes delete nothing');

  const del = await c.app.inject({ method: 'DELETE', url: '/v1/gateways/gw-new', headers: bearer(op) });
  t.equal(del.statusCode, 204);
  t.equal(del.body, '');
  t.equal((await c.app.inject({ method: 'GET', url: '/v1/gateways/gw-new', headers: bearer(op) })).statusCode, 404);
  t.notOk((await fleet(c, op)).gateways.some((g) => g.id === 'gw-new'), 'gone from the cached view');
  const again = await c.app.inject({ method: 'DELETE', url: '/v1/gateways/gw-new', headers: bearer(op) });
  t.equal(again.statusCode, 404);
  c.hub.down = new FieldlinkError('HUB_UNREACHABLE', { message: 'IoT Hub is not reachable (test)' });
  const down = await c.app.inject({ method: 'POST', url: '/v1/gateways', headers: bearer(op), payload: { id: 'gw-later' } });
  t.equal(down.statusCode, 503);
  t.equal(down.json<ProblemJson>().message, 'IoT Hub is not reachable (test)');
  c.hub.down = undefined;
  const audit = (await c.app.inject({ method: 'GET', url: '/v1/audit', headers: bearer(op) })).json<{ entries: AuditEntryJson[] }>().entries;
  t.match(audit[0], { action: 'gateway.create', target: 'gw-later', result: 'HUB_UNREACHABLE' });
  t.match(audit.slice(1, 3), [
    { action: 'gateway.delete', target: 'gw-new', result: 'DEVICE_NOT_FOUND' },
    { action: 'gateway.delete', target: 'gw-new', result: 'ok', tokenName: 'alice' },
  ]);
});

t.test('a gateway deleted behind the companion leaves the fleet view on the first 404 about it, not at the next refresh', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const op = c.token('operator');
  for (const id of ['gw-a', 'gw-b', 'gw-c']) c.hub.addGateway(id);
  t.same((await fleet(c, op)).gateways.map((g) => g.id), ['gw-a', 'gw-b', 'gw-c']);
  const listed = c.hub.listCalls;

  // Deleted in IoT Hub directly (portal, az cli): the cache still has them.
  await c.hub.deleteGateway('gw-a');
  await c.hub.deleteGateway('gw-b');
  t.same((await fleet(c, op)).gateways.map((g) => g.id), ['gw-a', 'gw-b', 'gw-c'], 'until something asks the hub about them');

  const read = await c.app.inject({ method: 'GET', url: '/v1/gateways/gw-a', headers: bearer(op) });
  t.equal(read.statusCode, 404);
  const wake = await c.app.inject({ method: 'POST', url: '/v1/gateways/gw-b/commands', headers: bearer(op), payload: { type: 'wake', forS: 60 } });
  t.equal(wake.statusCode, 404, 'a command for a cached gateway gone from the hub');
  t.equal(wake.json<ProblemJson>().code, 'DEVICE_NOT_FOUND');
  t.same((await fleet(c, op)).gateways.map((g) => g.id), ['gw-c'], 'both forgotten');
  t.equal(c.hub.listCalls, listed, 'without another fleet query');
});
