/**
 * Fleet locations end to end (issue 9): real devices connect to the local hub through the
 * official device SDK (the hub logs the address their twin tag names, masked as IoT Hub does),
 * the companion as it runs (`startCloudServer`: official service SDK, the real IP database)
 * pulls the hub's connection log, locates each gateway and writes `tags.fieldlink.location`
 * through the registry; an operator's override wins over a later address and is marked manual.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { issueToken } from '../../cloud/src/auth.js';
import { startCloudServer, type RunningCloud } from '../../cloud/src/server.js';
import { CloudStore } from '../../cloud/src/store.js';
import { eventually, within } from '../helpers/deadline.js';
import { captureLog, deviceClientFor, registryFor, startTestHub, type TestHub } from '../helpers/hub.js';

type Location = { status: string; source: string; country?: string; region?: string; city?: string; maskedIp?: string; updated?: string };

async function connectOnce(th: TestHub, deviceId: string): Promise<void> {
  const client = await deviceClientFor(th, th.hub.deviceConnectionString(deviceId));
  await within(10_000, `open ${deviceId}`, client.open());
  await within(10_000, `close ${deviceId}`, client.close());
}

async function tagLocation(th: TestHub, deviceId: string): Promise<Location | undefined> {
  const twin = (await within(5000, 'getTwin', registryFor(th).getTwin(deviceId))).responseBody as unknown as { tags?: { fieldlink?: { location?: Location } } };
  return twin.tags?.fieldlink?.location ?? undefined;
}

async function setPublicIp(th: TestHub, deviceId: string, ip: string): Promise<void> {
  await within(5000, 'tag publicIp', registryFor(th).updateTwin(deviceId, { tags: { fieldlink: { publicIp: ip } } }, '*'));
}

t.test('connection log → location in the twin tags through the official SDK; an override wins', async (t) => {
  const th = await startTestHub();
  t.teardown(() => th.cleanup());
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-locations-e2e-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // A token made before the server opens the store (same file, WAL: both may hold it).
  const store = CloudStore.open(dir);
  const op = issueToken(store, { name: 'ops', role: 'operator', now: Date.now() }).token;
  store.close();
  const log = captureLog('info');
  const cloud: RunningCloud = await startCloudServer({ dataDir: dir, port: 0, log: log.logger, hub: { kind: 'file', hubJson: th.hubJson }, locations: { pullEveryMs: 300, tagsPerSecond: 50 } });
  t.teardown(() => cloud.close());
  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${cloud.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${op}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(15_000),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  // Two gateways on loopback, logged with public addresses (Osaka and London in this database).
  th.hub.createDevice('gw-osaka');
  th.hub.createDevice('gw-london');
  await setPublicIp(th, 'gw-osaka', '60.35.1.23');
  await setPublicIp(th, 'gw-london', '81.2.69.160');
  await connectOnce(th, 'gw-osaka');
  await connectOnce(th, 'gw-london');

  const osaka = await eventually(20_000, 'Osaka location tag', async () => {
    const l = await tagLocation(th, 'gw-osaka');
    return l?.status === 'located' ? l : undefined;
  });
  t.match(osaka, { source: 'ip', country: 'JP', region: 'Osaka', maskedIp: '60.35.1.XXX' }, 'written through the registry');
  const london = await eventually(20_000, 'London location tag', () => tagLocation(th, 'gw-london'));
  t.match(london, { source: 'ip', country: 'GB', city: 'London', maskedIp: '81.2.69.XXX' });

  // Reconnecting from the same address changes nothing, so the tag is not rewritten.
  await connectOnce(th, 'gw-osaka');
  await new Promise((r) => setTimeout(r, 1500));
  t.equal((await tagLocation(th, 'gw-osaka'))?.updated, osaka.updated, 'same place: the tag is not written again');

  // The operator knows better for London; then the gateway reconnects from a Tokyo address.
  const put = await api('PUT', '/v1/gateways/gw-london/location', { country: 'GB', region: 'England', city: 'Manchester', latitude: 53.48, longitude: -2.24, note: 'site survey' });
  t.equal(put.status, 200, JSON.stringify(put.body));
  t.match(await tagLocation(th, 'gw-london'), { source: 'manual', city: 'Manchester', note: 'site survey' }, 'the override is in the twin at once');
  await setPublicIp(th, 'gw-london', '133.11.0.1');
  await connectOnce(th, 'gw-london');
  await eventually(20_000, 'the new address ingested', async () => {
    const view = await api('GET', '/v1/gateways/gw-london/location');
    return (view.body.ip as Location | null)?.region === 'Tokyo' ? true : undefined;
  });
  t.match(await tagLocation(th, 'gw-london'), { source: 'manual', city: 'Manchester' }, 'the override still wins');

  const regions = await api('GET', '/v1/analytics/regions?level=city&months=6');
  t.equal(regions.status, 200);
  const keys = (regions.body.regions as { key: string; devices: number; overridden: number }[]).map((r) => `${r.key}:${r.devices}:${r.overridden}`);
  t.ok(keys.includes('GB/England/Manchester:1:1'), `analytics place the override (${keys.join(', ')})`);
  t.ok(keys.some((k) => k.startsWith('JP/Osaka/') && k.endsWith(':1:0')), 'and Osaka by IP');

  // Removing the override puts the IP location back, in the twin too.
  const del = await api('DELETE', '/v1/gateways/gw-london/location');
  t.equal(del.status, 200);
  t.match(await tagLocation(th, 'gw-london'), { source: 'ip', region: 'Tokyo' });
  t.notOk(JSON.stringify(log.lines).includes(op), 'the operator token never reaches the log');
});
