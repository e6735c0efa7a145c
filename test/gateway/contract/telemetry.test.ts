import { readFileSync } from 'node:fs';
import { gunzipSync, gzipSync } from 'node:zlib';
import t from 'tap';
import { isFieldlinkError } from '../../../common/errors.js';
import type { Reading } from '../../../sensors/contract/reading.js';
import {
  buildTelemetryDocument,
  decodeTelemetry,
  encodeTelemetry,
  parseTelemetryMessageId,
  TELEMETRY_SCHEMA,
  telemetryMessageId,
  telemetryMessageSize,
  telemetryProperties,
  type TelemetryInvalidReason,
} from '../../../gateway/src/contract/telemetry.js';
import { noisyReadings } from '../../helpers/readings.js';

// Compiled to dist/test/gateway/contract/; the fixtures stay in the source tree.
const FIXTURES = new URL('../../../../test/gateway/contract/fixtures/telemetry-v1/', import.meta.url);
const fixture = (name: string): Buffer => readFileSync(new URL(name, FIXTURES));
const readings = JSON.parse(fixture('readings.json').toString('utf8')) as Reading[];

t.test('fixed vector: the fixture readings encode to the committed JSON body, byte for byte', async (t) => {
  const body = encodeTelemetry('gw-01', readings, 'json');
  t.equal(body.toString('utf8'), fixture('body.json').toString('utf8'));
  t.ok(body.equals(fixture('body.json')));
});

t.test('fixed vector: the committed bodies (json and gzip) decode to the fixture readings', async (t) => {
  t.same(decodeTelemetry(fixture('body.json'), 'utf-8'), readings);
  t.same(decodeTelemetry(fixture('body.json'), undefined), readings, 'no contentEncoding means plain JSON');
  t.same(decodeTelemetry(fixture('body.json.gz'), 'gzip'), readings);
  t.same(decodeTelemetry(fixture('body.json.gz'), 'GZIP'), readings, 'encoding names are case-insensitive');
});

t.test('gzip: the same bytes every time, mtime 0, and it inflates to the JSON body', async (t) => {
  const a = encodeTelemetry('gw-01', readings, 'json+gzip');
  const b = encodeTelemetry('gw-01', readings, 'json+gzip');
  t.ok(a.equals(b), 'deterministic');
  t.equal(a[0], 0x1f);
  t.equal(a[1], 0x8b);
  t.equal(a.readUInt32LE(4), 0, 'gzip header mtime is 0');
  t.ok(gunzipSync(a).equals(fixture('body.json')));
});

t.test('round trip of a noisy seeded set, with the rows the format specialises', async (t) => {
  const set = noisyReadings(2000, 7);
  t.same(decodeTelemetry(encodeTelemetry('gw-x', set, 'json'), 'utf-8'), set);
  t.same(decodeTelemetry(encodeTelemetry('gw-x', set, 'json+gzip'), 'gzip'), set);
  const odd: Reading[] = [
    { source: 's/a', kind: 'mode', value: 0, unit: '', ts: 10, seq: 0, flags: {} },
    { source: 's/a', kind: 'mode', value: 1e-7, unit: '', ts: 5, seq: 3, deviceSeq: 0, flags: {} },
    { source: 's/a', kind: 'mode', value: -1.5e300, unit: '', ts: 5, seq: 4, flags: { clockUnsynced: true }, bootId: 'b1' },
    { source: 's/a', kind: 'mode', value: 2, unit: '', ts: 6, seq: 5, flags: {}, bootId: 'b2' },
    { source: 's/a', kind: 'uv_index', value: 2, unit: '', ts: 6, seq: 6, flags: {} },
  ];
  t.same(decodeTelemetry(encodeTelemetry('gw', odd, 'json'), 'utf-8'), odd, 'backwards ts, seq gaps, bootId without flag, same source two kinds');
});

t.test('rows: trailing absent fields are dropped, so a plain reading is 4 numbers', async (t) => {
  const doc = buildTelemetryDocument('gw-01', readings);
  t.same(doc.r[0], [0, 0, 21.5, 0]);
  t.same(doc.r[4], [2, 250, 181, 1, 1, 4]);
  t.same(doc.r[6], [3, 5000 - 1764000003000, 19, 0, 2, null, 0]);
  t.equal(doc.v, TELEMETRY_SCHEMA);
  t.notOk('boot' in buildTelemetryDocument('gw', readings.slice(0, 2)), 'no boot table when no reading has a bootId');
});

t.test('properties carry the routing keys', async (t) => {
  t.same(telemetryProperties('gw-01', readings), {
    flSchema: 'fieldlink.readings/1',
    flGateway: 'gw-01',
    flKinds: ',heart_rate,humidity,temperature,',
    flAlarm: 'true',
    flCount: '8',
  });
  t.equal(telemetryProperties('gw-01', readings.slice(0, 2)).flAlarm, 'false');
  for (const v of Object.values(telemetryProperties('gw-01', readings))) t.type(v, 'string');
});

t.test('message id and size', async (t) => {
  t.equal(telemetryMessageId('gw-01', 17, 342), 'gw-01:17-342');
  t.same(parseTelemetryMessageId('site:gw:1:17-342'), { gatewayId: 'site:gw:1', firstRowId: 17, lastRowId: 342 }, 'device ids may contain colons');
  t.equal(parseTelemetryMessageId('nope'), undefined);
  const body = Buffer.from('{}');
  t.equal(
    telemetryMessageSize({ deviceId: 'g', body, messageId: 'g:1-2', contentType: 'application/json', contentEncoding: 'gzip', properties: { ab: 'cd' } }),
    2 + 'to/devices/g/messages/events'.length + 'message_id'.length + 5 + 'content_type'.length + 16 + 'content_encoding'.length + 4 + 4,
  );
});

type Test = Parameters<Parameters<typeof t.test>[0]>[0];

function rejects(t: Test, body: Buffer | string, encoding: string | undefined, reason: TelemetryInvalidReason, match: RegExp): void {
  try {
    decodeTelemetry(typeof body === 'string' ? Buffer.from(body) : body, encoding);
    t.fail(`decoded ${String(body).slice(0, 60)}`);
  } catch (err) {
    t.ok(isFieldlinkError(err, 'TELEMETRY_INVALID'), 'TELEMETRY_INVALID');
    if (isFieldlinkError(err)) {
      t.equal(err.details?.reason, reason, `reason ${reason}`);
      t.match(err.message, match);
      t.equal(err.retryable, false);
    }
  }
}

t.test('decoder errors name the reason', async (t) => {
  const ok = JSON.parse(fixture('body.json').toString('utf8')) as Record<string, unknown>;
  const withField = (k: string, v: unknown): string => JSON.stringify({ ...ok, [k]: v });
  const withRow = (row: unknown): string => withField('r', [row]);
  rejects(t, fixture('body.json'), 'br', 'encoding', /"br" is not supported/);
  rejects(t, fixture('body.json'), 'gzip', 'gzip', /not valid gzip/);
  rejects(t, fixture('body.json.gz').subarray(0, 40), 'gzip', 'gzip', /not valid gzip/);
  rejects(t, gzipSync(Buffer.alloc(17 * 1024 * 1024, 0x20)), 'gzip', 'gzip', /16 MiB/);
  rejects(t, fixture('body.json.gz'), 'utf-8', 'json', /not valid JSON/);
  rejects(t, '{"v":', undefined, 'json', /not valid JSON/);
  rejects(t, '[]', undefined, 'shape', /not a JSON object/);
  rejects(t, 'null', undefined, 'shape', /not a JSON object/);
  rejects(t, '{}', undefined, 'shape', /no schema id/);
  rejects(t, withField('v', 'fieldlink.readings/2'), undefined, 'version', /"fieldlink.readings\/2" is not supported/);
  rejects(t, withField('gw', ''), undefined, 'shape', /"gw"/);
  rejects(t, withField('t0', 1.5), undefined, 'shape', /"t0"/);
  rejects(t, withField('src', []), undefined, 'shape', /"src"/);
  rejects(t, withField('src', [['a', 'temperature', 'Cel']]), undefined, 'shape', /src\[0\] must be/);
  rejects(t, withField('src', [['', 'temperature', 'Cel', 1]]), undefined, 'shape', /src\[0\] source/);
  rejects(t, withField('src', [['a', 'smell', 'Cel', 1]]), undefined, 'shape', /kind "smell" is unknown/);
  rejects(t, withField('src', [['a', 'temperature', 3, 1]]), undefined, 'shape', /unit/);
  rejects(t, withField('src', [['a', 'temperature', 'Cel', -1]]), undefined, 'shape', /seq0/);
  rejects(t, withField('boot', [1]), undefined, 'shape', /"boot"/);
  rejects(t, withField('r', []), undefined, 'shape', /"r"/);
  rejects(t, withRow([0, 0, 1]), undefined, 'shape', /4 to 7 fields/);
  rejects(t, withRow([0, 0, 1, 0, 0, null, 0, 9]), undefined, 'shape', /4 to 7 fields/);
  rejects(t, withRow([9, 0, 1, 0]), undefined, 'shape', /source index 9/);
  rejects(t, withRow([0, 0.5, 1, 0]), undefined, 'shape', /dt/);
  rejects(t, withRow([0, 0, '1', 0]), undefined, 'shape', /value/);
  rejects(t, withRow([0, 0, 1, 0.5]), undefined, 'shape', /dq/);
  rejects(t, withRow([0, 0, 1, 0, 4]), undefined, 'shape', /flags/);
  rejects(t, withRow([0, 0, 1, 0, 0, -1]), undefined, 'shape', /deviceSeq/);
  rejects(t, withRow([0, 0, 1, 0, 0, null, 5]), undefined, 'shape', /boot index 5/);
});

t.test('the encoder refuses what JSON or the format cannot carry', async (t) => {
  const base = readings[0] as Reading;
  const bad: [Partial<Reading>, RegExp][] = [
    [{ value: Number.NaN }, /finite/],
    [{ value: Infinity }, /finite/],
    [{ ts: 1.5 }, /ts/],
    [{ seq: -1 }, /seq/],
    [{ deviceSeq: 1.5 }, /deviceSeq/],
    [{ source: '' }, /source/],
    [{ kind: 'smell' as Reading['kind'] }, /kind/],
  ];
  for (const [patch, re] of bad) {
    t.throws(() => encodeTelemetry('gw', [{ ...base, ...patch }], 'json'), re);
  }
  t.throws(() => encodeTelemetry('gw', [], 'json'), /at least one reading/);
});
