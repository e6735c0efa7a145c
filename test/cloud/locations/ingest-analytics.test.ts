import t from 'tap';
import { FakeClock } from '../../../common/clock.js';
import { computeRegionAnalytics, declineStart, monthWindow, regionAnalyticsCsv } from '../../../cloud/src/locations/analytics.js';
import { ConnectionLogIngest } from '../../../cloud/src/locations/ingest.js';
import { IP_GEOLOCATION_ATTRIBUTION, type IpGeolocator, type IpLocation } from '../../../cloud/src/locations/ip-geolocation.js';
import { LocationStore } from '../../../cloud/src/locations/location-store.js';
import { captureLog } from '../../helpers/hub.js';

// Unit checks of the ingest and analytics rules with a stub geolocator (the real database is
// exercised in locations-api.test.ts and ip-geolocation.test.ts).

const NOW = Date.UTC(2026, 10, 20);
const DAY = 86_400_000;

function stubGeolocator(source: string, city: (ip: string) => string): IpGeolocator {
  return {
    source,
    attribution: IP_GEOLOCATION_ATTRIBUTION,
    locate(address: string): IpLocation {
      if (address.startsWith('10.')) return { kind: 'private', address, reason: 'RFC 1918' };
      const c = city(address);
      return { kind: 'located', address, country: 'JP', region: c, city: c, latitude: 35, longitude: 135, accuracyKm: 50, precision: 'city', network: `${address}/24`, source };
    },
  };
}

const rec = (deviceId: string, time: number, ip: string | null, op = 'deviceConnect', extra: Record<string, unknown> = {}) => ({
  index: 0,
  value: { time: new Date(time).toISOString(), operationName: op, category: 'Connections', level: 'Information', properties: JSON.stringify({ deviceId, maskedIpAddress: ip, statusCode: null, ...extra }) },
});

t.test('declineStart: n month-on-month falls ending with the last complete month', async (t) => {
  t.equal(declineStart([5, 4, 3, 2], 3), 1, '4 → 3 → 2 after 5: declining since the second month');
  t.equal(declineStart([9, 5, 4, 3, 2], 3), 2, 'only the last n falls count');
  t.equal(declineStart([5, 4, 4, 2], 3), undefined, 'a flat month breaks the run');
  t.equal(declineStart([4, 3, 2, 3], 3), undefined, 'a rise at the end breaks it');
  t.equal(declineStart([3, 2, 1], 3), undefined, 'not enough months');
  t.equal(declineStart([0, 0, 0, 0], 3), undefined, 'nothing is not a decline');
  t.same(monthWindow(Date.UTC(2026, 1, 10), 3), [202512, 202601, 202602], 'the window crosses the year');
});

t.test('ingest: out-of-order and repeated records give the same aggregates; failed connects are not activity', async (t) => {
  const clock = new FakeClock({ wallMs: NOW });
  const store = LocationStore.open(':memory:');
  t.teardown(() => store.close());
  const geo = stubGeolocator('stub@1', (ip) => (ip.startsWith('1.') ? 'Osaka' : 'Tokyo'));
  const ingest = new ConnectionLogIngest({ store, geolocator: geo, clock, log: captureLog().logger });
  const late = rec('gw-1', NOW - 2 * DAY, '2.2.2.XXX');
  const early = rec('gw-1', NOW - 40 * DAY, '1.1.1.XXX');
  const failed = rec('gw-1', NOW - DAY, '3.3.3.XXX', 'deviceConnect', { statusCode: '401' });
  const r = await ingest.ingest([late, early, failed]);
  t.match(r, { accepted: 3, failedConnects: 1, devicesUpdated: 1, locationsChanged: 1 });
  const row = store.device('gw-1');
  t.equal(row?.firstConnect, NOW - 40 * DAY);
  t.equal(row?.lastConnect, NOW - 2 * DAY, 'the refused connect is not the last connect');
  t.equal(row?.lastIp, '2.2.2.XXX', 'the newest address by record time, not by arrival; a refused connect does not move it');
  t.match(row?.ipLocation, { city: 'Tokyo' });
  t.equal(row?.tagPending, true);
  const again = await ingest.ingest([early, late]);
  t.match(again, { accepted: 0, duplicates: 2, locationsChanged: 0 });
  t.same(store.device('gw-1'), row, 'the repeat changes nothing');

  // The same records in time order, into a fresh store: the same aggregates and location.
  const inOrder = LocationStore.open(':memory:');
  t.teardown(() => inOrder.close());
  await new ConnectionLogIngest({ store: inOrder, geolocator: geo, clock, log: captureLog().logger }).ingest([early, failed, late]);
  const pick = (r: ReturnType<LocationStore['device']>) => r && { firstConnect: r.firstConnect, lastConnect: r.lastConnect, lastIp: r.lastIp, lastIpTime: r.lastIpTime, ipLocation: r.ipLocation };
  t.same(pick(inOrder.device('gw-1')), pick(row), 'arrival order does not matter');
  t.same(inOrder.activeMonths(0), store.activeMonths(0), 'nor for the active months');
});

t.test('relocateAll: a new database release places devices again, once', async (t) => {
  const clock = new FakeClock({ wallMs: NOW });
  const store = LocationStore.open(':memory:');
  t.teardown(() => store.close());
  const log = captureLog().logger;
  const v1 = new ConnectionLogIngest({ store, geolocator: stubGeolocator('stub@1', () => 'Osaka'), clock, log });
  await v1.ingest([rec('gw-1', NOW - DAY, '1.1.1.XXX'), rec('gw-2', NOW - DAY, '10.0.0.XXX')]);
  t.equal(v1.relocateAll(), 0, 'same release: nothing to do');
  store.tagSettled('gw-1', store.device('gw-1')?.locatedAt ?? null, null);
  let kicked = 0;
  const v2 = new ConnectionLogIngest({ store, geolocator: stubGeolocator('stub@2', () => 'Kobe'), clock, log, onLocationsChanged: () => kicked++ });
  t.equal(v2.relocateAll(), 1, 'the located device moves; the private one stays unlocated');
  t.match(store.device('gw-1'), { ipLocation: { city: 'Kobe' }, tagPending: true });
  t.equal(kicked, 1, 'the tag writer is told');
  t.equal(v2.relocateAll(), 0, 'recorded: not again');
});

t.test('analytics: regions by level, unlocated by reason, offboarded devices leave the count but stay in the trend; CSV guards formulas', async (t) => {
  const store = LocationStore.open(':memory:');
  t.teardown(() => store.close());
  const ingest = new ConnectionLogIngest({ store, geolocator: stubGeolocator('stub@1', (ip) => (ip.startsWith('1.') ? '=Osaka' : 'Tokyo')), clock: new FakeClock({ wallMs: NOW }), log: captureLog().logger });
  await ingest.ingest([
    rec('gw-1', NOW - DAY, '1.1.1.XXX'),
    rec('gw-2', NOW - 100 * DAY, '1.1.2.XXX'), // offboarded: no connect for 100 days
    rec('gw-3', NOW - DAY, '2.2.2.XXX'),
    rec('gw-4', NOW - DAY, '10.0.0.XXX'),
    rec('gw-5', NOW - DAY, null),
  ]);
  const q = { level: 'city' as const, months: 6, offboardAfterDays: 30, activeWithinDays: 7, declineMonths: 3 };
  const a = computeRegionAnalytics(store.devices(), store.activeMonths(0), q, NOW, { text: 'x', url: 'https://db-ip.com' });
  t.same(
    a.regions.map((r) => [r.key, r.devices, r.active]),
    [
      ['JP/=Osaka/=Osaka', 1, 1],
      ['JP/Tokyo/Tokyo', 1, 1],
    ],
  );
  const osaka = a.regions[0];
  t.equal(osaka?.trend.find((m) => m.month === '2026-08')?.offboarded, 1, 'the offboarding is in the month of its last connect');
  t.same(a.unlocated, { private: 1, reserved: 0, unresolved: 0, unknown: 1 });
  const byCountry = computeRegionAnalytics(store.devices(), store.activeMonths(0), { ...q, level: 'country' }, NOW, a.attribution);
  t.same(byCountry.regions.map((r) => [r.key, r.devices]), [['JP', 2]]);
  const csv = regionAnalyticsCsv(a);
  t.match(csv, /\nJP\/=Osaka\/=Osaka,JP,"'=Osaka","'=Osaka",35,135,/, 'a name starting with = is quoted and defused; numbers stay numbers');
});
