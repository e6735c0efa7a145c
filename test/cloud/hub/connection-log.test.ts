/*
 * The Connections resource log: what an SDK device's connect and disconnect leave in
 * GET /_local/logs/connections, field for field as Azure Monitor writes IoT Hub's records.
 */
import { spawn } from 'node:child_process';
import type { IncomingHttpHeaders } from 'node:http';
import { request } from 'node:https';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { deviceClientFor, registryFor, startTestHub, type TestHub } from '../../helpers/hub.js';
import { eventually, within } from '../../helpers/deadline.js';
import { RawAmqp } from '../../helpers/raw-amqp.js';
import type { ConnectionLogProperties, ConnectionLogRecord } from '../../../cloud/hub/connection-log.js';
import { openDb } from '../../../cloud/hub/db.js';
import { DeviceRegistry } from '../../../cloud/hub/registry.js';
import { mintSasToken } from '../../../cloud/hub/sas.js';

type Test = Parameters<Parameters<typeof t.test>[0]>[0];

// dist/test/cloud/hub/connection-log.test.js → repository root.
const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const CLI = join(ROOT, 'dist', 'cli', 'fieldlink.js');
const RESOURCE_ID = '/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/FIELDLINK-LOCAL/PROVIDERS/MICROSOFT.DEVICES/IOTHUBS/LOCALHOST';
const WAIT = 5000;

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Record<string, unknown>;
}

// The hub clock's lead over the real one; moved only by the token-expiry test.
let offsetMs = 0;

function policyKey(th: TestHub, policy: string): string {
  const p = th.hub.hub.policies.find((x) => x.keyName === policy);
  if (!p) throw new Error(`no policy ${policy}`);
  return p.primaryKey;
}

function get(th: TestHub, path: string, policy = 'service', headers: Record<string, string> = {}): Promise<Reply> {
  const token = mintSasToken('localhost', policyKey(th, policy), policy, Math.floor((Date.now() + offsetMs) / 1000) + 600);
  const reply = new Promise<Reply>((resolve, reject) => {
    request({ host: 'localhost', port: th.hub.hub.httpsPort, path, ca: th.hub.ca, headers: { authorization: token, ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown> }));
      res.on('error', reject);
    })
      .on('error', reject)
      .end();
  });
  return within(WAIT, `GET ${path}`, reply);
}

async function records(th: TestHub, query = ''): Promise<ConnectionLogRecord[]> {
  const r = await get(th, `/_local/logs/connections${query}`);
  if (r.status !== 200) throw new Error(`connection log: HTTP ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.records as ConnectionLogRecord[];
}

const props = (r: ConnectionLogRecord): ConnectionLogProperties => JSON.parse(r.properties) as ConnectionLogProperties;

function forDevice(all: ConnectionLogRecord[], deviceId: string, operation?: string): ConnectionLogRecord[] {
  return all.filter((r) => props(r).deviceId === deviceId && (operation === undefined || r.operationName === operation));
}

/** Waits for the `n`th record of `operation` for `deviceId` (1-based). */
function waitForRecord(th: TestHub, deviceId: string, operation: string, n = 1): Promise<ConnectionLogRecord> {
  return eventually(WAIT, `${operation} record ${n} for ${deviceId}`, async () => forDevice(await records(th), deviceId, operation)[n - 1]);
}

async function runCli(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    const code = await within(20_000, `fieldlink ${args.join(' ')}`, exited);
    return { code, stdout, stderr };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

async function connectSdk(t: Test, th: TestHub, deviceId: string): Promise<{ close(): Promise<void> }> {
  const client = await deviceClientFor(th, th.hub.deviceConnectionString(deviceId));
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await within(WAIT, `close ${deviceId}`, client.close()).catch(() => undefined);
  };
  t.teardown(close);
  await within(WAIT, `open ${deviceId}`, client.open());
  return { close };
}

t.test('connection log', async (t) => {
  const th = await startTestHub({ now: () => Date.now() + offsetMs });
  t.teardown(() => th.cleanup());

  t.test('an SDK device connecting and closing leaves deviceConnect and deviceDisconnect records', async (t) => {
    th.hub.createDevice('sdk-dev');
    const before = Date.now();
    const device = await connectSdk(t, th, 'sdk-dev');
    const connect = await waitForRecord(th, 'sdk-dev', 'deviceConnect');
    t.same(Object.keys(connect), ['time', 'resourceId', 'operationName', 'category', 'level', 'properties', 'location'], 'the fields IoT Hub writes, in its order');
    t.match(connect, { resourceId: RESOURCE_ID, operationName: 'deviceConnect', category: 'Connections', level: 'Information', location: 'local' });
    t.match(connect.time, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/, 'time is ISO 8601 UTC');
    t.ok(Date.parse(connect.time) >= before - 1000 && Date.parse(connect.time) <= Date.now() + 1000, 'time is the connect time');
    t.type(connect.properties, 'string', 'properties is a JSON string, as in IoT Hub records');
    const p = props(connect);
    t.same(Object.keys(p), ['deviceId', 'sdkVersion', 'protocol', 'authType', 'maskedIpAddress', 'statusCode', 'errorMessage']);
    t.match(p, { deviceId: 'sdk-dev', protocol: 'Amqp', maskedIpAddress: '127.0.0.XXX', statusCode: null, errorMessage: '' });
    t.match(p.sdkVersion, /^azure-iot-device\/1\.\d+/, "the SDK's com.microsoft:client-version");
    t.type(p.authType, 'string', 'authType is itself a JSON string');
    t.same(JSON.parse(p.authType), { scope: 'device', type: 'sas', issuer: 'iothub', acceptingIpFilterRule: null });

    await device.close();
    const gone = await waitForRecord(th, 'sdk-dev', 'deviceDisconnect');
    t.same(Object.keys(gone), ['time', 'resourceId', 'operationName', 'category', 'level', 'properties', 'location']);
    t.match(gone, { resourceId: RESOURCE_ID, operationName: 'deviceDisconnect', category: 'Connections', level: 'Information', location: 'local' });
    const q = props(gone);
    t.same(Object.keys(q), ['deviceId', 'protocol', 'authType', 'maskedIpAddress', 'statusCode', 'errorMessage'], 'no sdkVersion on disconnect, as IoT Hub');
    t.match(q, { deviceId: 'sdk-dev', protocol: 'Amqp', maskedIpAddress: '127.0.0.XXX', statusCode: null, errorMessage: '' });
    t.same(JSON.parse(q.authType), { scope: 'device', type: 'sas', issuer: 'iothub', acceptingIpFilterRule: null });
    t.ok(Date.parse(gone.time) >= Date.parse(connect.time), 'after the connect');
    t.equal(forDevice(await records(th), 'sdk-dev').length, 2, 'one record each: nothing for token renewals or links');
  });

  t.test('a device tagged with a public IPv4 is logged with that address, masked', async (t) => {
    th.hub.createDevice('tagged-dev');
    await within(WAIT, 'tag twin', registryFor(th).updateTwin('tagged-dev', { tags: { fieldlink: { publicIp: '203.0.113.45' } } }, '*'));
    await connectSdk(t, th, 'tagged-dev');
    const connect = await waitForRecord(th, 'tagged-dev', 'deviceConnect');
    t.equal(props(connect).maskedIpAddress, '203.0.113.XXX');

    // A connection that goes without a close is what IoT Hub logs as 404104.
    th.hub.dropAmqpConnections();
    const gone = await waitForRecord(th, 'tagged-dev', 'deviceDisconnect');
    t.same(Object.keys(gone), ['time', 'resourceId', 'operationName', 'category', 'level', 'resultType', 'resultDescription', 'properties', 'location']);
    t.match(gone, { level: 'Error', resultType: '404104', resultDescription: 'DeviceConnectionClosedRemotely' });
    t.match(props(gone), { maskedIpAddress: '203.0.113.XXX', statusCode: '404', errorMessage: /aka\.ms\/iothub404104/ });
  });

  t.test('a tag that is not a dotted IPv4 is ignored, with a warning', async (t) => {
    th.hub.createDevice('bad-tag-dev');
    await within(WAIT, 'tag twin', registryFor(th).updateTwin('bad-tag-dev', { tags: { fieldlink: { publicIp: '203.0.113.999' } } }, '*'));
    const device = await connectSdk(t, th, 'bad-tag-dev');
    t.equal(props(await waitForRecord(th, 'bad-tag-dev', 'deviceConnect')).maskedIpAddress, '127.0.0.XXX', 'the socket address');
    t.ok(th.log.lines.some((l) => l.deviceId === 'bad-tag-dev' && /public-ip tag is not a dotted IPv4/.test(String(l.msg))), 'warned');
    await device.close();
    await waitForRecord(th, 'bad-tag-dev', 'deviceDisconnect');
  });

  t.test('since, limit and x-ms-continuation select and page records, oldest first', async (t) => {
    const all = await records(th);
    t.ok(all.length >= 6, 'the records of the tests above');
    const times = all.map((r) => Date.parse(r.time));
    t.same(times, [...times].sort((a, b) => a - b), 'oldest first');
    const pivot = all[2] as ConnectionLogRecord;
    const pivotMs = Date.parse(pivot.time);
    const expected = all.filter((r) => Date.parse(r.time) >= pivotMs);
    t.same(await records(th, `?since=${pivotMs}`), expected, 'since in ms is inclusive');
    t.same(await records(th, `?since=${encodeURIComponent(pivot.time)}`), expected, 'since as ISO 8601');
    t.same(await records(th, `?since=${Date.now() + 60_000}`), [], 'nothing after now');

    const first = await get(th, '/_local/logs/connections?limit=2');
    t.equal((first.body.records as unknown[]).length, 2);
    const cursor = first.headers['x-ms-continuation'];
    t.type(cursor, 'string', 'a continuation when more records match');
    const second = await get(th, '/_local/logs/connections?limit=2', 'service', { 'x-ms-continuation': String(cursor) });
    t.same(second.body.records, all.slice(2, 4), 'the next page continues where the first ended');
    const whole = await get(th, `/_local/logs/connections?limit=${all.length}`);
    t.equal(whole.headers['x-ms-continuation'], undefined, 'no continuation on the last page');

    for (const bad of ['yesterday', '2024-05-01T12:00:00', '-5', '1e3']) {
      const r = await get(th, `/_local/logs/connections?since=${encodeURIComponent(bad)}`);
      t.equal(r.status, 400, `since=${bad} is refused`);
      t.equal(r.headers['iothub-errorcode'], 'ArgumentInvalid');
    }
    t.equal((await get(th, '/_local/logs/connections?limit=0')).status, 400, 'limit 0 is refused');
    t.equal((await get(th, '/_local/logs/connections?limit=1001')).status, 400, 'limit over 1000 is refused');
  });

  t.test('the route needs ServiceConnect', async (t) => {
    for (const policy of ['registryRead', 'registryReadWrite', 'device']) {
      const r = await get(th, '/_local/logs/connections', policy);
      t.equal(r.status, 401, `${policy} is refused`);
      t.equal(r.headers['iothub-errorcode'], 'Unauthorized');
    }
    t.equal((await get(th, '/_local/logs/connections', 'iothubowner')).status, 200, 'iothubowner may read');
  });

  t.test('a policy token acting as a device is scope hub; its expiry is logged as 401003', async (t) => {
    th.hub.createDevice('policy-dev');
    t.teardown(() => {
      offsetMs = 0;
    });
    const raw = await RawAmqp.connect(th);
    t.teardown(() => raw.close());
    const hubNowSec = Math.floor((Date.now() + offsetMs) / 1000);
    const token = mintSasToken('localhost/devices/policy-dev', policyKey(th, 'device'), 'device', hubNowSec + 3600);
    const reply = await raw.putToken(token, encodeURIComponent('localhost/devices/policy-dev'));
    t.equal(reply.status, 200);
    const connect = await waitForRecord(th, 'policy-dev', 'deviceConnect');
    const p = props(connect);
    t.notOk('sdkVersion' in p, 'no sdkVersion when the client names none');
    t.same(JSON.parse(p.authType), { scope: 'hub', type: 'sas', issuer: 'iothub', acceptingIpFilterRule: null });

    offsetMs += 2 * 3600_000; // past the token's expiry on the hub clock
    th.hub.sweep();
    const gone = await waitForRecord(th, 'policy-dev', 'deviceDisconnect');
    t.match(gone, { level: 'Error', resultType: '401003', resultDescription: 'IoTHubUnauthorized' });
    t.match(props(gone), { statusCode: '401', maskedIpAddress: '127.0.0.XXX' });
    t.equal(Date.parse(gone.time) - Date.now() > 3600_000, true, 'stamped with the hub clock');
    offsetMs = 0; // later SDK clients mint tokens on the real clock
    await raw.close();
    t.equal(forDevice(await records(th), 'policy-dev', 'deviceDisconnect').length, 1, 'the connection closing later logs no second disconnect');
  });

  t.test('fieldlink hub device create --public-ip against the running hub', async (t) => {
    const dataDir = join(th.dir, 'hub');
    const bad = await runCli('hub', 'device', 'create', 'cli-bad', '--public-ip', '203.0.113', '--data', dataDir);
    t.not(bad.code, 0, 'a malformed address is refused');
    t.match(bad.stderr, /dotted IPv4/);
    t.equal(th.hub.registry.get('cli-bad'), undefined, 'and no device is created');

    const made = await runCli('hub', 'device', 'create', 'cli-dev', '--public-ip', '198.51.100.7', '--data', dataDir);
    t.equal(made.code, 0, made.stderr);
    t.match(made.stdout, /DeviceId=cli-dev;/);
    t.same(th.hub.registry.getTwin('cli-dev').tags, { fieldlink: { publicIp: '198.51.100.7' } });
    const device = await connectSdk(t, th, 'cli-dev');
    t.equal(props(await waitForRecord(th, 'cli-dev', 'deviceConnect')).maskedIpAddress, '198.51.100.XXX');
    await device.close();
    await waitForRecord(th, 'cli-dev', 'deviceDisconnect');

    const listed = await runCli('hub', 'logs', 'connections', '--json', '--data', dataDir);
    t.equal(listed.code, 0, listed.stderr);
    const printed = (JSON.parse(listed.stdout) as { records: ConnectionLogRecord[] }).records;
    t.same(forDevice(printed, 'cli-dev').map((r) => r.operationName), ['deviceConnect', 'deviceDisconnect'], 'hub logs connections --json prints them');
    const text = await runCli('hub', 'logs', 'connections', '--since', '1h', '--data', dataDir);
    t.equal(text.code, 0, text.stderr);
    t.match(text.stdout, /deviceConnect\s+cli-dev\s+Amqp\s+198\.51\.100\.XXX/);
  });
});

t.test('fieldlink hub device create --public-ip on a stopped hub writes the tag to its data dir', async (t) => {
  const th = await startTestHub();
  t.teardown(() => th.cleanup());
  await th.hub.stop();
  const dataDir = join(th.dir, 'hub');
  const made = await runCli('hub', 'device', 'create', 'd1', '--public-ip', '198.51.100.7', '--data', dataDir);
  t.equal(made.code, 0, made.stderr);
  const db = openDb(th.hub.hub.dbFile);
  t.teardown(() => db.close());
  t.same(new DeviceRegistry(db, Date.now).getTwin('d1').tags, { fieldlink: { publicIp: '198.51.100.7' } });
  const listed = await runCli('hub', 'logs', 'connections', '--json', '--data', dataDir);
  t.equal(listed.code, 0, listed.stderr);
  t.same(JSON.parse(listed.stdout), { records: [] }, 'the offline log reads the data dir');
});
