/**
 * The emulated fleet history, checked against the real DB-IP database: the ground truth the plan
 * claims must be what an analysis of the records alone finds.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import type { ConnectionLogProperties, ConnectionLogRecord } from '../../../cloud/hub/connection-log.js';
import { FLEET_SITES, generateFleetHistory, planFleet, strictlyDecreasing, type FleetHistoryOptions } from '../../../cloud/src/locations/fleet-history.js';
import { openIpGeolocator } from '../../../cloud/src/locations/ip-geolocation.js';

const CLI = fileURLToPath(new URL('../../../cli/fieldlink.js', import.meta.url));
const geolocator = await openIpGeolocator();
const NOW = Date.parse('2026-06-20T09:30:00Z');

function options(extra: Partial<FleetHistoryOptions> = {}): FleetHistoryOptions {
  return { devices: 200, months: 18, now: NOW, geolocator, ...extra };
}

/** What an analysis of the records alone finds: per database location, onboardings (first connects) per month. */
function onboardingsFromRecords(records: Iterable<ConnectionLogRecord>): Map<string, Map<string, number>> {
  const seen = new Set<string>();
  const byKey = new Map<string, Map<string, number>>();
  for (const r of records) {
    const p = JSON.parse(r.properties) as ConnectionLogProperties;
    if (r.operationName !== 'deviceConnect' || seen.has(p.deviceId)) continue;
    seen.add(p.deviceId);
    const loc = geolocator.locate(p.maskedIpAddress ?? '');
    const key = loc.kind === 'located' ? [loc.country, loc.region, loc.city].filter((x) => x !== null).join('/') : loc.kind;
    const months = byKey.get(key) ?? new Map<string, number>();
    months.set(r.time.slice(0, 7), (months.get(r.time.slice(0, 7)) ?? 0) + 1);
    byKey.set(key, months);
  }
  return byKey;
}

const decliningSiteKeys = FLEET_SITES.filter((s) => s.profile === 'declining').map((s) => `${s.country}/${s.region}/${s.city}`);

t.test('declining sites have strictly fewer onboardings in each of the last 3 complete months; no other location does', async (t) => {
  for (const [devices, seed] of [[200, undefined], [200, 1], [1000, 2], [500, 3], [5000, 4]] as const) {
    // One check-in a month: onboardings need only first connects, and it keeps this test quick.
    const opts = options({ devices, checkinsPerMonth: 1, ...(seed === undefined ? {} : { seed }) });
    const plan = planFleet(opts);
    t.same(plan.trendMonths, ['2026-02', '2026-03', '2026-04', '2026-05'], 'the 4 complete months before June 2026');
    t.same(plan.declining, [...decliningSiteKeys].sort(), `plan (${devices} devices, seed ${seed ?? 'default'}): Munich and Osaka decline`);
    const found = onboardingsFromRecords(generateFleetHistory(opts, plan));
    t.same([...found.keys()].sort(), Object.keys(plan.onboardings).sort(), 'the same locations');
    for (const [key, months] of found) {
      const lastThree = plan.trendMonths.slice(-3).map((m) => months.get(m) ?? 0);
      const trend = plan.trendMonths.map((m) => months.get(m) ?? 0);
      if (decliningSiteKeys.includes(key)) t.ok(strictlyDecreasing(trend), `${key} declines: ${trend.join(' > ')}`);
      else t.notOk(strictlyDecreasing(lastThree), `${key} does not decline over the last 3 complete months (${lastThree.join(', ')})`);
      t.same(Object.fromEntries(plan.months.map((m) => [m, months.get(m) ?? 0])), plan.onboardings[key], `${key}: the plan's monthly counts are what the records show`);
    }
  }
});

t.test('the same seed gives the same records; another seed does not', async (t) => {
  const a = [...generateFleetHistory(options({ devices: 60, months: 6 }))];
  const b = [...generateFleetHistory(options({ devices: 60, months: 6 }))];
  const c = [...generateFleetHistory(options({ devices: 60, months: 6, seed: 99 }))];
  t.ok(a.length > 500, `${a.length} records`);
  t.same(b, a, 'deterministic');
  t.not(JSON.stringify(c), JSON.stringify(a), 'a different seed');
});

t.test('every fixed-line gateway\'s masked address resolves to its city; private, CGNAT and mobile ones as planned', async (t) => {
  const plan = planFleet(options({ devices: 1000 }));
  const counts = { fixed: 0, private: 0, cgnat: 0, mobile: 0 };
  let wrong = 0;
  for (const d of plan.devices) {
    counts[d.network]++;
    const loc = geolocator.locate(d.maskedIpAddress);
    t.same(loc, d.expected);
    const site = FLEET_SITES.find((s) => s.name === d.site);
    if (d.network === 'fixed') {
      if (!(loc.kind === 'located' && loc.precision === 'city' && loc.country === site?.country && loc.region === site.region && loc.city === site.city)) wrong++;
    } else if (d.network === 'mobile') {
      t.match(loc, { kind: 'located', country: 'JP' }, `${d.maskedIpAddress}: a Japanese carrier`);
    } else {
      t.match(loc, { kind: 'private', reason: d.network === 'cgnat' ? /carrier-grade NAT/ : /RFC 1918/ });
    }
    t.match(d.maskedIpAddress, /^\d+\.\d+\.\d+\.XXX$/);
    t.equal(d.maskedIpAddress.replace('XXX', ''), d.address.slice(0, d.address.lastIndexOf('.') + 1), 'the masked form of the full address');
  }
  t.equal(wrong, 0, `all ${counts.fixed} fixed-line gateways resolve to their site city`);
  t.equal(counts.fixed + counts.private + counts.cgnat + counts.mobile, 1000);
  t.ok(counts.private > 0 && counts.cgnat > 0 && counts.mobile > 0, `private ${counts.private}, CGNAT ${counts.cgnat}, mobile ${counts.mobile}`);
  t.ok(
    plan.devices.filter((d) => d.network === 'mobile').every((d) => d.locationKey.startsWith('JP/Tokyo/')),
    'this database release places the carriers\' blocks in Tokyo, wherever the gateway is',
  );
  for (const site of FLEET_SITES) t.ok(plan.devices.some((d) => d.site === site.name && d.network === 'fixed'), `${site.name} has gateways`);
});

t.test('records: time order, inside the window, valid properties, connect/disconnect pairs per device, none after offboarding', async (t) => {
  const opts = options({ devices: 300, months: 12, checkinsPerMonth: 6 });
  const plan = planFleet(opts);
  t.ok(plan.from >= Date.parse('2025-06-20T09:30:00Z'), 'the window starts no earlier than now − 12 months');
  let previous = '';
  let n = 0;
  let disorder = 0;
  let bad = 0;
  const state = new Map<string, { connected: boolean; first: string; last: number }>();
  const results = new Set<string>();
  for (const r of generateFleetHistory(opts, plan)) {
    n++;
    if (r.time < previous) disorder++;
    previous = r.time;
    const time = Date.parse(r.time);
    const p = JSON.parse(r.properties) as ConnectionLogProperties;
    const auth = JSON.parse(p.authType) as unknown;
    const ok =
      time >= plan.from &&
      time <= NOW &&
      r.category === 'Connections' &&
      r.location === 'japaneast' &&
      /\/IOTHUBS\/FIELDLINK-FLEET$/.test(r.resourceId) &&
      typeof p.deviceId === 'string' &&
      /^(Mqtt|MqttWs|Amqp|AmqpWs)$/.test(p.protocol) &&
      typeof auth === 'object' && auth !== null && (auth as { type?: unknown }).type === 'sas' &&
      (r.operationName === 'deviceConnect' ? typeof p.sdkVersion === 'string' && r.level === 'Information' : p.sdkVersion === undefined) &&
      (r.level === 'Error') === (r.resultType !== undefined);
    if (!ok) bad++;
    if (r.resultType) results.add(`${r.resultType} ${r.resultDescription} ${p.statusCode}`);
    const s = state.get(p.deviceId) ?? { connected: false, first: r.time, last: 0 };
    if ((r.operationName === 'deviceConnect') === s.connected) bad++;
    s.connected = r.operationName === 'deviceConnect';
    s.last = time;
    state.set(p.deviceId, s);
  }
  t.ok(n > 10_000, `${n} records`);
  t.equal(disorder, 0, 'oldest first');
  t.equal(bad, 0, 'every record well formed, connects and disconnects alternate per device');
  t.same([...results].sort(), ['401003 IoTHubUnauthorized 401', '404104 DeviceConnectionClosedRemotely 404'], 'dropped and expired-token disconnects as IoT Hub logs them');
  t.equal(state.size, plan.devices.length, 'every device connects');
  for (const d of plan.devices) {
    const s = state.get(d.deviceId);
    t.equal(s?.first, new Date(d.onboardedAt).toISOString(), `${d.deviceId} first connects when onboarded`);
    if (d.offboardedAt !== null) t.ok((s?.last ?? Infinity) < d.offboardedAt + 30 * 60_000, `${d.deviceId} quiet after offboarding`);
  }
  t.ok(plan.devices.some((d) => d.offboardedAt !== null), 'some gateways leave');
});

t.test('generation is lazy: the first records of a big fleet come without making the rest', async (t) => {
  const plan = planFleet(options({ devices: 20_000 }));
  const started = performance.now();
  const it = generateFleetHistory(options({ devices: 20_000 }), plan);
  const first = [it.next(), it.next(), it.next()];
  t.ok(first.every((r) => !r.done));
  t.ok(performance.now() - started < 1000, 'three records in well under a second');
  it.return(undefined);
});

t.test('bad options are refused', async (t) => {
  t.throws(() => planFleet(options({ devices: -1 })), RangeError);
  t.throws(() => planFleet(options({ months: 0 })), RangeError);
  t.throws(() => planFleet(options({ checkinsPerMonth: 0 })), RangeError);
});

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

t.test('fieldlink emulate fleet writes {"records":[…]}, to a file or stdout, the same as the API', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-fleet-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'fleet.json');
  const args = ['emulate', 'fleet', '--devices', '20', '--months', '6', '--now', '2026-06-20T09:30:00Z'];
  const toFile = await run([...args, '--out', file]);
  t.equal(toFile.code, 0, toFile.stderr);
  t.match(toFile.stderr, /^\d+ records from 20 gateways over 6 months \(2026-01 to 2026-06\) to .*fleet\.json/);
  t.match(toFile.stderr, /IP Geolocation by DB-IP \(https:\/\/db-ip\.com\)/);
  const written = JSON.parse(readFileSync(file, 'utf8')) as { records: ConnectionLogRecord[] };
  const expected = [...generateFleetHistory(options({ devices: 20, months: 6 }))];
  t.ok(expected.length > 50);
  t.same(written.records, expected, 'the records the API makes for the same options');
  const toStdout = await run(args);
  t.equal(toStdout.code, 0);
  t.same(JSON.parse(toStdout.stdout), written, 'stdout gets the same JSON');
  const bad = await run(['emulate', 'fleet', '--devices', 'many']);
  t.not(bad.code, 0);
  t.match(bad.stderr, /--devices <n>.*a whole number from 0 to/);
  const badNow = await run(['emulate', 'fleet', '--now', 'yesterday']);
  t.not(badNow.code, 0);
  t.match(badNow.stderr, /ISO 8601/);
  const badOut = await run([...args, '--out', join(dir, 'no', 'such', 'dir', 'f.json')]);
  t.not(badOut.code, 0);
  t.match(badOut.stderr, /ENOENT/);
});
