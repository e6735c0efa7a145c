import t from 'tap';
import {
  ConnectionLog,
  localResourceId,
  maskIpAddress,
  parseSince,
  publicIpFromTags,
  publicIpTagPatch,
  readConnectionLog,
  type ConnectionInfo,
  type ConnectionLogProperties,
  type ConnectionLogRecord,
} from '../../../../cloud/hub/connection-log.js';
import type { Logger } from '../../../../common/log.js';
import { DeviceRegistry } from '../../../../cloud/hub/registry.js';
import { FakeClock, memoryDb, throwsHub, type Test } from './temp-db.js';

const T0 = Date.UTC(2030, 0, 1);

const info = (over: Partial<ConnectionInfo> = {}): ConnectionInfo => ({ deviceId: 'd1', protocol: 'Amqp', remoteAddress: '::ffff:192.0.2.33', authScope: 'device', ...over });
const props = (r: ConnectionLogRecord | undefined): ConnectionLogProperties => JSON.parse(r?.properties ?? '{}') as ConnectionLogProperties;

function setup(t: Test, retention?: { maxAgeMs: number; maxRecords: number }): { log: ConnectionLog; clock: FakeClock; registry: DeviceRegistry; db: ReturnType<typeof memoryDb> } {
  const db = memoryDb(t);
  const clock = new FakeClock(T0);
  const registry = new DeviceRegistry(db, clock.now);
  const log = new ConnectionLog(db, clock.now, { hostName: 'myhub.local', registry, ...(retention ? { retention } : {}) });
  return { log, clock, registry, db };
}

t.test('maskIpAddress', async (t) => {
  const cases: [string | undefined, string | null, string][] = [
    ['67.182.231.17', '67.182.231.XXX', 'IPv4: the last octet hidden, as IoT Hub does'],
    ['127.0.0.1', '127.0.0.XXX', 'loopback'],
    ['::ffff:127.0.0.1', '127.0.0.XXX', 'IPv4-mapped IPv6 (dual-stack listeners) shown as its IPv4'],
    ['::FFFF:203.0.113.9', '203.0.113.XXX', 'mapped, upper case'],
    ['::ffff:cb00:7109', '203.0.113.XXX', 'mapped, hex form'],
    ['2001:db8:85a3:8d3:1319:8a2e:370:7348', '2001:db8:85a3:8d3:XXXX:XXXX:XXXX:XXXX', 'IPv6: /64 prefix kept, interface id hidden'],
    ['2001:0DB8::1', '2001:db8:0:0:XXXX:XXXX:XXXX:XXXX', 'IPv6 compressed, leading zeros and case normalised'],
    ['::1', '0:0:0:0:XXXX:XXXX:XXXX:XXXX', 'IPv6 loopback'],
    ['fe80::1%eth0', 'fe80:0:0:0:XXXX:XXXX:XXXX:XXXX', 'zone id dropped'],
    ['64:ff9b::192.0.2.1', '64:ff9b:0:0:XXXX:XXXX:XXXX:XXXX', 'NAT64 (embedded IPv4) is IPv6, not mapped'],
    [undefined, null, 'no address'],
    ['', null, 'empty'],
    ['localhost', null, 'not an address'],
    ['1.2.3', null, 'not a dotted quad'],
  ];
  for (const [input, expected, what] of cases) t.equal(maskIpAddress(input), expected, `${String(input)}: ${what}`);
});

t.test('public-ip tag', async (t) => {
  t.same(publicIpTagPatch('198.51.100.7'), { fieldlink: { publicIp: '198.51.100.7' } });
  t.same(publicIpTagPatch(null), { fieldlink: { publicIp: null } }, 'null removes it (merge patch)');
  t.equal(publicIpFromTags({ fieldlink: { publicIp: '198.51.100.7' } }), '198.51.100.7');
  t.equal(publicIpFromTags({}), undefined);
  t.equal(publicIpFromTags({ fieldlink: 'x' }), undefined);
  for (const bad of ['198.51.100', '198.51.100.256', '2001:db8::1', ' 198.51.100.7', 7]) {
    t.equal(publicIpFromTags({ fieldlink: { publicIp: bad } }), undefined, `${JSON.stringify(bad)} is not used`);
  }
});

t.test('parseSince', async (t) => {
  t.equal(parseSince('0'), 0);
  t.equal(parseSince('1714564800000'), 1714564800000);
  t.equal(parseSince('2024-05-01T12:00:00Z'), Date.UTC(2024, 4, 1, 12));
  t.equal(parseSince('2024-05-01T12:00:00.250Z'), Date.UTC(2024, 4, 1, 12, 0, 0, 250));
  t.equal(parseSince('2024-05-01T14:00:00+02:00'), Date.UTC(2024, 4, 1, 12));
  t.equal(parseSince('2024-05-01'), Date.UTC(2024, 4, 1), 'a date is midnight UTC');
  for (const bad of ['', 'yesterday', '2024-05-01T12:00:00', '-1', '1.5', '1e3', '2024-13-45T00:00:00Z', 'May 1 2024']) {
    throwsHub(t, () => parseSince(bad), 'ArgumentInvalid', /since must be/, `"${bad}" is refused`);
  }
});

t.test('localResourceId', async (t) => {
  t.equal(localResourceId('localhost'), '/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/FIELDLINK-LOCAL/PROVIDERS/MICROSOFT.DEVICES/IOTHUBS/LOCALHOST');
});

t.test('records: connect, and each disconnect reason', async (t) => {
  const { log, clock } = setup(t);
  const connect = log.record('deviceConnect', info({ sdkVersion: 'azure-iot-device/1.18.4 (node v20)' }));
  t.strictSame(connect, {
    time: '2030-01-01T00:00:00.000Z',
    resourceId: '/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/FIELDLINK-LOCAL/PROVIDERS/MICROSOFT.DEVICES/IOTHUBS/MYHUB.LOCAL',
    operationName: 'deviceConnect',
    category: 'Connections',
    level: 'Information',
    properties: JSON.stringify({
      deviceId: 'd1',
      sdkVersion: 'azure-iot-device/1.18.4 (node v20)',
      protocol: 'Amqp',
      authType: '{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}',
      maskedIpAddress: '192.0.2.XXX',
      statusCode: null,
      errorMessage: '',
    }),
    location: 'local',
  });
  clock.advance(1000);
  const closed = log.record('deviceDisconnect', info({ reason: 'closed', sdkVersion: 'ignored on disconnect' }));
  t.equal(closed?.level, 'Information');
  t.notOk(closed && 'resultType' in closed, 'a clean close is no error');
  t.same(Object.keys(props(closed)), ['deviceId', 'protocol', 'authType', 'maskedIpAddress', 'statusCode', 'errorMessage']);

  const dropped = log.record('deviceDisconnect', info({ authScope: 'hub' }));
  t.match(dropped, { level: 'Error', resultType: '404104', resultDescription: 'DeviceConnectionClosedRemotely' }, 'no reason means dropped');
  t.match(props(dropped), { statusCode: '404' });
  t.same(JSON.parse(props(dropped).authType), { scope: 'hub', type: 'sas', issuer: 'iothub', acceptingIpFilterRule: null });

  const expired = log.record('deviceDisconnect', info({ reason: 'tokenExpired' }));
  t.match(expired, { level: 'Error', resultType: '401003', resultDescription: 'IoTHubUnauthorized' });
  t.match(props(expired), { statusCode: '401' });

  t.same(log.since(0), [connect, closed, dropped, expired], 'stored and read back, oldest first');
  t.same(log.since(T0 + 1000), [closed, dropped, expired], 'since is inclusive');
});

t.test('the public-ip tag replaces the socket address; deleted devices fall back', async (t) => {
  const { log, registry } = setup(t);
  registry.create('d1');
  registry.patchTwin('d1', { tags: publicIpTagPatch('203.0.113.200') }, '*');
  t.equal(props(log.record('deviceConnect', info())).maskedIpAddress, '203.0.113.XXX');
  registry.patchTwin('d1', { tags: publicIpTagPatch(null) }, '*');
  t.equal(props(log.record('deviceConnect', info())).maskedIpAddress, '192.0.2.XXX', 'removing the tag restores the socket address');
  t.equal(props(log.record('deviceDisconnect', info({ deviceId: 'never-registered' }))).maskedIpAddress, '192.0.2.XXX');
  t.equal(props(log.record('deviceConnect', info({ remoteAddress: undefined }))).maskedIpAddress, null, 'unknown address is null');
});

t.test('retention: age and count', async (t) => {
  const { log, clock, db } = setup(t, { maxAgeMs: 30_000, maxRecords: 3 });
  for (let i = 0; i < 5; i++) {
    log.record('deviceConnect', info({ deviceId: `d${i}` }));
    clock.advance(4000);
  }
  log.prune();
  t.same(log.since(0).map((r) => props(r).deviceId), ['d2', 'd3', 'd4'], 'the newest maxRecords kept');
  clock.advance(23_000); // d3 was stored 31 s ago, d4 27 s ago
  log.prune();
  t.same(log.since(0).map((r) => props(r).deviceId), ['d4'], 'older than maxAgeMs dropped');
  t.equal(readConnectionLog(db, { sinceMs: 0, limit: 10 }).records.length, 1);
});

t.test('retention prunes by itself every 1000 records', async (t) => {
  const { log } = setup(t, { maxAgeMs: 86400_000, maxRecords: 10 });
  for (let i = 0; i < 999; i++) log.record('deviceConnect', info());
  t.equal(log.since(0).length, 999, 'not yet');
  log.record('deviceConnect', info());
  t.equal(log.since(0).length, 10, 'pruned on the 1000th insert');
});

t.test('paging with the continuation', async (t) => {
  const { log, db } = setup(t);
  for (let i = 0; i < 5; i++) log.record('deviceConnect', info({ deviceId: `d${i}` }));
  const ids = (rs: ConnectionLogRecord[]): string[] => rs.map((r) => props(r).deviceId);
  const p1 = readConnectionLog(db, { sinceMs: 0, limit: 2 });
  t.same(ids(p1.records), ['d0', 'd1']);
  t.type(p1.continuation, 'number');
  const p2 = readConnectionLog(db, { sinceMs: 0, limit: 2, ...(p1.continuation === undefined ? {} : { afterSeq: p1.continuation }) });
  t.same(ids(p2.records), ['d2', 'd3']);
  const p3 = readConnectionLog(db, { sinceMs: 0, limit: 2, ...(p2.continuation === undefined ? {} : { afterSeq: p2.continuation }) });
  t.same(ids(p3.records), ['d4']);
  t.equal(p3.continuation, undefined, 'none on the last page');
  t.same(readConnectionLog(db, { sinceMs: 0, limit: 5 }).continuation, undefined, 'an exactly full page has none');
});

t.test('a record that cannot be stored is logged, not thrown', async (t) => {
  const { log, db } = setup(t);
  const errors: unknown[] = [];
  // Only error() is called on this path; a pino instance would be more than the test needs.
  const logger = { error: (o: unknown) => errors.push(o) } as unknown as Logger;
  const failing = new ConnectionLog(db, () => T0, { hostName: 'h', log: logger });
  db.close();
  t.equal(failing.record('deviceConnect', info()), undefined);
  t.equal(errors.length, 1, 'reported on the hub log');
  t.equal(log.record('deviceConnect', info()), undefined, 'without a logger, still no throw');
});
