import { Readable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { gzipSync } from 'node:zlib';
import t from 'tap';
import { generateFleetHistory, planFleet, type FleetPlan } from '../../../cloud/src/locations/fleet-history.js';
import type { IngestResult } from '../../../cloud/src/locations/ingest.js';
import { openIpGeolocator } from '../../../cloud/src/locations/ip-geolocation.js';
import type { RegionAnalytics } from '../../../cloud/src/locations/region-analytics.js';
import type { ConnectionLogRecord } from '../../../cloud/hub/connection-log.js';
import { bearer, companion, NO_RATE_LIMIT, type Companion, type ProblemJson } from '../companion/fixture.js';

// Fleet locations through the companion's API (issue 9), against the real IP database and a
// fake IoT Hub: ingest (streamed, idempotent, per-record problems), analytics against a
// generated history's ground truth, CSV and map, overrides, and tags written only on change.

const geolocator = await openIpGeolocator();
const NOW = Date.UTC(2026, 10, 20, 12);
const DAY = 86_400_000;

type IngestJson = IngestResult;

/** `{"records":[…]}` as a stream of small chunks, built lazily from the records. */
function documentStream(records: Iterable<unknown>, extra = ''): Readable {
  function* chunks(): Generator<string> {
    yield `{"records":[`;
    let first = true;
    let buffered = '';
    for (const r of records) {
      buffered += `${first ? '' : ','}\n${typeof r === 'string' ? r : JSON.stringify(r)}`;
      first = false;
      if (buffered.length > 16_384) {
        yield buffered;
        buffered = '';
      }
    }
    yield `${buffered}]${extra}}`;
  }
  return Readable.from(chunks());
}

async function ingest(c: Companion, token: string, body: Readable | string | Buffer, headers: Record<string, string> = {}) {
  return c.app.inject({ method: 'POST', url: '/v1/ingest/connection-logs', headers: { ...bearer(token), 'content-type': 'application/json', ...headers }, payload: body });
}

async function regions(c: Companion, token: string, query = 'level=city&months=12'): Promise<RegionAnalytics> {
  const res = await c.app.inject({ method: 'GET', url: `/v1/analytics/regions?${query}`, headers: bearer(token) });
  if (res.statusCode !== 200) throw new Error(res.body);
  return res.json<RegionAnalytics>();
}

const record = (deviceId: string, time: number, maskedIpAddress: string | null, operationName = 'deviceConnect'): ConnectionLogRecord => ({
  time: new Date(time).toISOString(),
  resourceId: '/SUBSCRIPTIONS/X/RESOURCEGROUPS/Y/PROVIDERS/MICROSOFT.DEVICES/IOTHUBS/Z',
  operationName: operationName as ConnectionLogRecord['operationName'],
  category: 'Connections',
  level: 'Information',
  properties: JSON.stringify({ deviceId, protocol: 'Amqp', authType: '{"scope":"device","type":"sas"}', maskedIpAddress, statusCode: null, errorMessage: '' }),
  location: 'japaneast',
});

t.test('a generated history: ingested once, again idempotently; analytics match its ground truth', async (t) => {
  const c = await companion({ rateLimit: NO_RATE_LIMIT, geolocator, wallMs: NOW });
  t.teardown(c.cleanup);
  const op = c.token('operator');
  const feeder = c.token('ingest', 'event-hub-function');
  const opts = { devices: 400, months: 12, seed: 7, now: NOW, geolocator };
  const plan: FleetPlan = planFleet(opts);
  const records = [...generateFleetHistory(opts, plan)];

  const first = await ingest(c, feeder, documentStream(records));
  t.equal(first.statusCode, 200, first.body);
  const r1 = first.json<IngestJson>();
  t.match(r1, { received: records.length, accepted: records.length, duplicates: 0, rejected: 0, skipped: 0 });
  t.equal(r1.devicesUpdated, plan.devices.length, 'every planned device seen');
  const before = await regions(c, op);

  const again = (await ingest(c, feeder, documentStream(records))).json<IngestJson>();
  t.match(again, { received: records.length, accepted: 0, duplicates: records.length, locationsChanged: 0 }, 'the same records again count once');
  const after = await regions(c, op);
  t.same(after.regions, before.regions, 'analytics unchanged by the repeat');

  // Ground truth from the plan: onboardings per location and month, and which locations decline.
  const a = after;
  t.same(a.months, plan.months.slice(-12));
  const byKey = new Map(a.regions.map((r) => [r.key, r]));
  let compared = 0;
  for (const [key, perMonth] of Object.entries(plan.onboardings).filter(([k]) => k.includes('/'))) {
    const region = byKey.get(key);
    t.ok(region, `${key} is a region`);
    for (const m of region?.trend ?? []) {
      t.equal(m.onboarded, perMonth[m.month] ?? 0, `${key} ${m.month} onboardings`);
      compared++;
    }
  }
  t.ok(compared > 50, `${compared} region-months compared`);
  const declining = a.regions.filter((r) => r.declining).map((r) => r.key).sort();
  t.same(declining, [...plan.declining].sort(), `declining: ${declining.join(', ')}`);
  t.ok(declining.some((k) => k.startsWith('JP/Osaka')), 'Osaka declines, as planned');
  const osaka = a.regions.find((r) => r.key.startsWith('JP/Osaka/'));
  t.match(osaka, { declining: true, decliningSince: /^\d{4}-\d{2}$/ });

  // Devices now: not offboarded (a connect within 30 days); private and CGNAT addresses are never placed.
  const live = plan.devices.filter((d) => (d.offboardedAt ?? Infinity) > NOW - 30 * DAY);
  const unplaced = live.filter((d) => d.expected.kind === 'private' || d.expected.kind === 'reserved');
  t.equal(a.regions.reduce((s, r) => s + r.devices, 0), live.length - unplaced.length, 'placed devices = live devices with a public address');
  t.equal(a.unlocated.private + a.unlocated.reserved, unplaced.length, 'private / CGNAT counted apart, never guessed');
  t.ok(a.regions.every((r) => r.accuracyKm >= 50), 'every region says how rough its location is');

  // Coarser levels add up.
  const countries = await regions(c, op, 'level=country&months=12');
  t.equal(countries.regions.reduce((s, r) => s + r.devices, 0), a.regions.reduce((s, r) => s + r.devices, 0));
  t.ok(countries.regions.every((r) => /^[A-Z]{2}$/.test(r.key)));

  // CSV and the map come from the same numbers.
  const csv = await c.app.inject({ method: 'GET', url: '/v1/analytics/regions.csv?level=city&months=12', headers: bearer(op) });
  t.equal(csv.statusCode, 200);
  t.match(csv.headers['content-type'], /^text\/csv/);
  t.match(csv.headers['content-disposition'], /attachment; filename="fleet-regions-city-12m\.csv"/);
  const lines = csv.body.trim().split('\r\n');
  t.equal(lines.length, a.regions.length + 1, 'a header and a row per region');
  t.match(lines[0], /^key,country,region,city,latitude,longitude,accuracy_km,devices,active,overridden,declining,declining_since,onboarded_/);
  t.ok(lines.some((l) => l.startsWith(`${osaka?.key},JP,Osaka,`) && l.includes(',true,')), 'Osaka flagged in the CSV');
  const map = await c.app.inject({ method: 'GET', url: '/v1/analytics/map.svg?level=city&months=12&width=800', headers: bearer(op) });
  t.equal(map.statusCode, 200);
  t.match(map.headers['content-type'], /^image\/svg\+xml/);
  t.match(map.body, new RegExp(`class="[^"]*declining[^"]*"[^>]*data-key="${osaka?.key ?? 'none'}"`), 'Osaka marked declining on the map');
});

t.test('bad records are reported by index and reason; the good ones are kept; a broken document is a 400 that keeps what came before', async (t) => {
  const c = await companion({ rateLimit: NO_RATE_LIMIT, geolocator, wallMs: NOW });
  t.teardown(c.cleanup);
  const op = c.token('operator');
  const good = (i: number) => record(`gw-${i}`, NOW - i * 60_000, '81.2.69.XXX');
  const items: unknown[] = [
    good(1),
    '{"time": }',
    [1, 2],
    { ...good(2), category: 'DeviceTelemetry' },
    { ...good(3), time: 'yesterday' },
    { ...good(4), properties: JSON.stringify({ deviceId: 'bad id/with slash', maskedIpAddress: null }) },
    { ...good(5), properties: JSON.stringify({ deviceId: 'gw-5', maskedIpAddress: '1.2.XXX.4' }) },
    { ...good(6), properties: '{not json' },
    { ...good(7), time: new Date(NOW + 3 * DAY).toISOString() },
    good(8),
  ];
  const res = await ingest(c, op, documentStream(items));
  t.equal(res.statusCode, 200, res.body);
  const r = res.json<IngestJson>();
  t.match(r, { received: 10, accepted: 2, skipped: 1, rejected: 7 });
  t.same(
    r.rejections.map((x) => x.index),
    [1, 2, 4, 5, 6, 7, 8],
  );
  const reasons = r.rejections.map((x) => x.reason).join('\n');
  t.match(reasons, /not valid JSON/);
  t.match(reasons, /must be an object, not an array/);
  t.match(reasons, /time "yesterday" is not an ISO 8601 time/);
  t.match(reasons, /deviceId .* is not an IoT Hub device id/);
  t.match(reasons, /maskedIpAddress: .*masked/);
  t.match(reasons, /properties is not valid JSON/);
  t.match(reasons, /outside/);
  const view = await c.app.inject({ method: 'GET', url: '/v1/gateways/gw-8/location', headers: bearer(op) });
  t.match(view.json(), { gateway: 'gw-8', location: { status: 'located', source: 'ip', country: 'GB', city: 'London', maskedIp: '81.2.69.XXX' } }, 'good records were kept');

  const truncated = await ingest(c, op, `{"records":[${JSON.stringify(good(20))},{"time":"2026`);
  t.equal(truncated.statusCode, 400);
  t.match(truncated.json<ProblemJson>(), { code: 'REQUEST_INVALID', message: /resource-log document refused: .*records before that point were kept/ });
  t.equal((await c.app.inject({ method: 'GET', url: '/v1/gateways/gw-20/location', headers: bearer(op) })).json<{ lastIp: string }>().lastIp, '81.2.69.XXX', 'the record before the break was kept');
  t.equal((await ingest(c, op, '{"values":[]}')).statusCode, 400, 'no records array');

  const gz = await ingest(c, op, gzipSync(JSON.stringify({ records: [good(30)] })), { 'content-encoding': 'gzip' });
  t.equal(gz.json<IngestJson>().accepted, 1, 'gzip bodies are read');
  t.equal((await ingest(c, op, 'x', { 'content-encoding': 'br' })).statusCode, 400, 'an unknown encoding is refused');
});

t.test('a 100,000-record document is streamed with bounded memory', async (t) => {
  const c = await companion({ rateLimit: NO_RATE_LIMIT, geolocator, wallMs: NOW });
  t.teardown(c.cleanup);
  const op = c.token('operator');
  const ips = ['81.2.69.XXX', '8.8.8.XXX', '60.35.1.XXX', '10.1.2.XXX'];
  function* many(): Generator<ConnectionLogRecord> {
    for (let i = 0; i < 100_000; i++) yield record(`gw-${i % 2000}`, NOW - 90 * DAY + i * 60_000, ips[i % ips.length] ?? null, i % 2 === 0 ? 'deviceConnect' : 'deviceDisconnect');
  }
  // Live memory (after a collection), JS heap and buffers: what the ingest holds, not garbage
  // that happens not to be collected yet.
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const live = (): number => {
    gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  const base = live();
  let peak = base;
  const sampler = setInterval(() => (peak = Math.max(peak, live())), 50);
  const started = Date.now();
  const res = await ingest(c, op, documentStream(many()));
  clearInterval(sampler);
  t.equal(res.statusCode, 200, res.body.slice(0, 300));
  t.match(res.json<IngestJson>(), { received: 100_000, accepted: 100_000, rejected: 0, devicesUpdated: 2000 });
  const grewMb = (Math.max(peak, live()) - base) / 1e6;
  t.comment(`100,000 records in ${Date.now() - started} ms; live memory grew at most ${grewMb.toFixed(1)} MB`);
  // The whole document is ~40 MB of JSON and 100,000 parsed records several times that: a body
  // buffered whole would blow far past this.
  t.ok(grewMb < 30, `live memory growth ${grewMb.toFixed(1)} MB < 30 MB`);
  t.same(c.locations?.store.counts(), { events: 100_000, devices: 2000 });
});

t.test('tags are written only when a location changes; an override wins and is marked manual', async (t) => {
  const c = await companion({ rateLimit: NO_RATE_LIMIT, geolocator, wallMs: NOW });
  t.teardown(c.cleanup);
  const op = c.token('operator');
  c.hub.addGateway('gw-osaka');
  c.hub.addGateway('gw-london');
  const tags = c.locations?.tags;
  if (!tags) throw new Error('no locations');

  await ingest(c, op, documentStream([record('gw-osaka', NOW - 5 * DAY, '60.35.1.XXX'), record('gw-london', NOW - 5 * DAY, '81.2.69.XXX'), record('gw-ghost', NOW - 5 * DAY, '8.8.8.XXX')]));
  t.equal(await tags.flush(), 2, 'two tags written');
  t.equal(tags.counts.noDevice, 1, 'a device the hub does not have is not retried');
  t.match((await c.hub.getTwin('gw-osaka')).tags, { fieldlink: { location: { status: 'located', source: 'ip', country: 'JP', region: 'Osaka', maskedIp: '60.35.1.XXX', database: /^dbip-city-lite@/ } } });
  const ghost = await c.app.inject({ method: 'GET', url: '/v1/gateways/gw-ghost/location', headers: bearer(op) });
  t.equal(ghost.json<{ tag: string }>().tag, 'not written: no such device in IoT Hub');

  // More check-ins from the same address: nothing to write.
  const patches = c.hub.tagPatches.length;
  await ingest(c, op, documentStream([record('gw-osaka', NOW - 4 * DAY, '60.35.1.XXX'), record('gw-osaka', NOW - 3 * DAY, '60.35.1.XXX', 'deviceDisconnect')]));
  t.equal(await tags.flush(), 0);
  t.equal(c.hub.tagPatches.length, patches, 'no twin write for an unchanged location');

  // The London gateway is really in Manchester: an operator says so.
  const put = await c.app.inject({
    method: 'PUT',
    url: '/v1/gateways/gw-london/location',
    headers: bearer(op),
    payload: { country: 'GB', region: 'England', city: 'Manchester', latitude: 53.48, longitude: -2.24, note: 'installer report' },
  });
  t.equal(put.statusCode, 200, put.body);
  t.match(put.json(), { location: { source: 'manual', city: 'Manchester', precision: 'site', accuracyKm: 1 }, ip: { city: 'London' }, tag: 'written' });
  t.match((await c.hub.getTwin('gw-london')).tags, { fieldlink: { location: { source: 'manual', city: 'Manchester', note: 'installer report' } } }, 'written at once, marked manual');

  // A new address (moved to Tokyo by IP) does not beat the override, and writes no tag.
  const afterPut = c.hub.tagPatches.length;
  await ingest(c, op, documentStream([record('gw-london', NOW - DAY, '133.11.0.XXX')]));
  t.equal(await tags.flush(), 0);
  t.equal(c.hub.tagPatches.length, afterPut, 'the override holds; no tag write');
  const view = (await c.app.inject({ method: 'GET', url: '/v1/gateways/gw-london/location', headers: bearer(op) })).json<{ location: { city: string }; ip: { region: string } }>();
  t.equal(view.location.city, 'Manchester');
  t.equal(view.ip.region, 'Tokyo', 'the IP location is still tracked underneath');
  const a = await regions(c, op);
  t.match(a.regions.find((r) => r.key === 'GB/England/Manchester'), { devices: 1, overridden: 1 });

  const audit = (await c.app.inject({ method: 'GET', url: '/v1/audit?limit=10', headers: bearer(op) })).json<{ entries: { action: string; target: string }[] }>().entries;
  t.ok(audit.some((e) => e.action === 'location.override' && e.target === 'gw-london'), 'the override is audited');

  const del = await c.app.inject({ method: 'DELETE', url: '/v1/gateways/gw-london/location', headers: bearer(op) });
  t.equal(del.statusCode, 200);
  t.match(del.json(), { location: { source: 'ip', region: 'Tokyo' }, override: null });
  t.match((await c.hub.getTwin('gw-london')).tags, { fieldlink: { location: { source: 'ip', region: 'Tokyo' } } });
  t.equal((await c.app.inject({ method: 'DELETE', url: '/v1/gateways/gw-london/location', headers: bearer(op) })).statusCode, 404, 'no override left to remove');

  const unknown = await c.app.inject({ method: 'PUT', url: '/v1/gateways/gw-nope/location', headers: bearer(op), payload: { country: 'GB', latitude: 1, longitude: 1 } });
  t.equal(unknown.statusCode, 404, 'an unknown gateway');
  const bad = await c.app.inject({ method: 'PUT', url: '/v1/gateways/gw-osaka/location', headers: bearer(op), payload: { country: 'Japan', latitude: 100, longitude: 1 } });
  t.equal(bad.statusCode, 400);
});

t.test('roles: readers read analytics, only operators and ingest tokens ingest, only operators override', async (t) => {
  const c = await companion({ rateLimit: NO_RATE_LIMIT, geolocator, wallMs: NOW });
  t.teardown(c.cleanup);
  const viewer = c.token('viewer');
  const feeder = c.token('ingest');
  const phone = c.token('pairing');
  const doc = () => documentStream([record('gw-1', NOW - DAY, '81.2.69.XXX')]);
  t.equal((await ingest(c, viewer, doc())).statusCode, 403);
  t.equal((await ingest(c, phone, doc())).statusCode, 403);
  t.equal((await c.app.inject({ method: 'POST', url: '/v1/ingest/connection-logs', payload: '{"records":[]}' })).statusCode, 401);
  t.equal((await ingest(c, feeder, doc())).statusCode, 200);
  t.equal((await c.app.inject({ method: 'GET', url: '/v1/analytics/regions', headers: bearer(viewer) })).statusCode, 200);
  t.equal((await c.app.inject({ method: 'GET', url: '/v1/analytics/regions', headers: bearer(feeder) })).statusCode, 403, 'an ingest token reads nothing');
  t.equal((await c.app.inject({ method: 'GET', url: '/v1/gateways', headers: bearer(feeder) })).statusCode, 403);
  t.equal((await c.app.inject({ method: 'PUT', url: '/v1/gateways/gw-1/location', headers: bearer(viewer), payload: { country: 'GB', latitude: 1, longitude: 1 } })).statusCode, 403);
  t.equal((await c.app.inject({ method: 'GET', url: '/v1/analytics/regions?level=street', headers: bearer(viewer) })).statusCode, 400);
  const short = await c.app.inject({ method: 'GET', url: '/v1/analytics/regions?months=4&declineMonths=3', headers: bearer(viewer) });
  t.equal(short.statusCode, 400, 'too few months to judge a decline');
  t.match(short.json<ProblemJson>().message, /months \(4\) must be at least declineMonths \+ 2 \(5\)/);
});
