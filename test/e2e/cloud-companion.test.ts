/**
 * The cloud companion against the local hub through the official SDK, with a real gateway
 * process: commands tracked from the API to the gateway's answer, coalescing measured at the
 * hub's device queue, config through the twin, an unreachable hub, and secrets kept out of logs.
 */
import t, { type Test } from 'tap';
import { eventually, within } from '../helpers/deadline.js';
import { startCompanion, type RunningCompanion } from '../helpers/companion.js';
import { startRig, type GatewayChild, type Rig } from '../helpers/gateway-rig.js';
import { registryFor } from '../helpers/hub.js';

t.setTimeout(240_000);

const FINAL = new Set(['delivered', 'rejected', 'expired', 'undeliverable', 'failed']);

async function settled(c: RunningCompanion, token: string, id: string, ms: number): Promise<{ status: string; statusReason: string | null }> {
  return eventually(ms, `command ${id} settled`, async () => {
    const r = await c.api(token, 'GET', `/v1/commands/${id}`);
    return FINAL.has(r.body.status) ? r.body : undefined;
  }, 200);
}

/** Gateway log lines with this message, in order. */
function logged(gw: GatewayChild, msg: string): Record<string, unknown>[] {
  return gw.lines.filter((l) => l.msg === msg);
}

async function withCompanion(t: Test, rig: Rig): Promise<RunningCompanion> {
  const c = await startCompanion(rig.th.hubJson);
  t.teardown(() => c.close());
  return c;
}

async function queuedAtHub(rig: Rig, deviceId: string): Promise<number> {
  const registry = registryFor(rig.th);
  const device = (await within(5000, 'registry.get', registry.get(deviceId))).responseBody as unknown as { cloudToDeviceMessageCount: number };
  return device.cloudToDeviceMessageCount;
}

t.test('wake a gateway in standby: queued, then delivered at its check-in, and it stays online forS; a bad measure is rejected; a silent gateway expires', async (t) => {
  const rig = await startRig(t, { thermostats: 1 });
  const c = await withCompanion(t, rig);
  const ops = c.token('operator');
  // Queued before the gateway runs, so its first check-in (10 s after start) cannot race the count below.
  const wake = await c.api(ops, 'POST', `/v1/gateways/${rig.deviceId}/commands`, { type: 'wake', forS: 6 });
  t.equal(wake.status, 202, JSON.stringify(wake.body));
  t.equal(wake.body.coalesced, false);
  t.equal(wake.body.command.status, 'queued', 'queued while the gateway is away');
  const badMeasure = await c.api(ops, 'POST', `/v1/gateways/${rig.deviceId}/commands`, { type: 'measure', sources: ['thermo-9'] });
  t.equal(badMeasure.status, 202, 'valid by the schema; only the gateway knows its sources');
  t.equal(await queuedAtHub(rig, rig.deviceId), 2, 'both waiting in the hub');
  const gw = rig.spawnGateway();
  await eventually(15_000, 'gateway started in standby', () => logged(gw, 'gateway started')[0]);

  const done = await settled(c, ops, wake.body.command.id, 30_000);
  t.equal(done.status, 'delivered', 'delivered once the gateway checked in');
  t.match(done.statusReason, /^Success/);
  const rejected = await settled(c, ops, badMeasure.body.command.id, 10_000);
  t.equal(rejected.status, 'rejected', 'the gateway rejected the unknown source');

  const held = await eventually(5000, 'hold logged', () => logged(gw, 'held online by C2D wake')[0]);
  t.equal(held.reason, 'forS=6');
  const online = logged(gw, 'online').at(-1);
  const standby = await eventually(20_000, 'back to standby', () => logged(gw, 'going to standby').find((l) => (l.time as number) > (online?.time as number)));
  const heldMs = (standby.time as number) - (online?.time as number);
  t.ok(heldMs >= 5_900, `online for ${heldMs} ms for a 6 s wake (its window alone is 2 s)`);

  // A gateway that never checks in: its command ends expired (IoT Hub's feedback, not a guess).
  const absent = 'gw-never';
  rig.th.hub.createDevice(absent);
  const lost = await c.api(ops, 'POST', `/v1/gateways/${absent}/commands`, { type: 'wake', forS: 60, expiresInS: 10 });
  t.equal(lost.status, 202);
  t.equal(new Date(lost.body.command.expiresAt).getTime() - new Date(lost.body.command.created).getTime(), 10_000);
  const expired = await settled(c, ops, lost.body.command.id, 20_000);
  t.equal(expired.status, 'expired');
  t.match(expired.statusReason, /^Expired/, 'from the hub feedback');

  const list = await c.api(ops, 'GET', `/v1/gateways/${rig.deviceId}/commands`);
  t.same(
    list.body.commands.map((x: { status: string }) => x.status),
    ['rejected', 'delivered'],
    'the gateway history, newest first',
  );
});

t.test('coalescing: 100 wakes in a row (and 20 at once) for a sleeping gateway put one message in its device queue', async (t) => {
  const rig = await startRig(t, { thermostats: 1 });
  const c = await withCompanion(t, rig);
  const ops = c.token('operator');
  const ids = new Set<string>();
  let coalesced = 0;
  for (let i = 0; i < 100; i++) {
    const r = await c.api(ops, 'POST', `/v1/gateways/${rig.deviceId}/commands`, { type: 'wake', forS: 30 + (i % 3) });
    t.equal(r.status, 202);
    ids.add(r.body.command.id);
    if (r.body.coalesced) coalesced++;
  }
  const burst = await Promise.all(Array.from({ length: 20 }, () => c.api(ops, 'POST', `/v1/gateways/${rig.deviceId}/commands`, { type: 'wake', forS: 10 })));
  for (const r of burst) ids.add(r.body.command.id);
  t.equal(ids.size, 1, 'one command for all 120 requests');
  t.equal(coalesced, 99);
  t.equal(await queuedAtHub(rig, rig.deviceId), 1, 'one message in the device queue (IoT Hub holds 50)');
  const cmd = await c.api(ops, 'GET', `/v1/commands/${[...ids][0]}`);
  t.equal(cmd.body.stayForS, 32, 'the longest stay asked is remembered for the follow-up wake');
});

t.test('config: a patch is applied and acknowledged by the gateway; a bad value is a 400 naming the field with nothing sent; a stale etag is a 412', async (t) => {
  const rig = await startRig(t, { thermostats: 1 });
  const c = await withCompanion(t, rig);
  const ops = c.token('operator');
  const gw = rig.spawnGateway();
  await eventually(15_000, 'gateway started', () => logged(gw, 'gateway started')[0]);

  const before = await c.api(ops, 'GET', `/v1/gateways/${rig.deviceId}/config`);
  t.equal(before.status, 200);
  t.equal(before.headers.get('etag'), `"${before.body.etag}"`);

  const bad = await c.api(ops, 'PATCH', `/v1/gateways/${rig.deviceId}/config`, { sampling: { serial: { sampleIntervalS: 0 } } }, { 'if-match': before.headers.get('etag') ?? '' });
  t.equal(bad.status, 400);
  t.equal(bad.body.code, 'CONFIG_INVALID');
  t.equal(bad.body.details.field, '/sampling/serial/sampleIntervalS');
  const unchanged = await c.api(ops, 'GET', `/v1/gateways/${rig.deviceId}/config`);
  t.equal(unchanged.body.etag, before.body.etag, 'nothing reached the hub');
  t.equal(unchanged.body.desiredVersion, before.body.desiredVersion);

  const ok = await c.api(ops, 'PATCH', `/v1/gateways/${rig.deviceId}/config`, { alarms: { temperature: { max: 45 } } }, { 'if-match': before.headers.get('etag') ?? '' });
  t.equal(ok.status, 200, JSON.stringify(ok.body));
  t.equal(ok.body.status, 'pending', 'not yet acknowledged: the gateway sleeps');
  t.same(ok.body.desired.alarms, { temperature: { max: 45 } });

  const stale = await c.api(ops, 'PATCH', `/v1/gateways/${rig.deviceId}/config`, { alarms: { temperature: { max: 40 } } }, { 'if-match': before.headers.get('etag') ?? '' });
  t.equal(stale.status, 412);
  t.equal(stale.body.code, 'PRECONDITION_FAILED');
  t.equal(stale.body.details.currentEtag, ok.body.etag);

  gw.process.kill('SIGUSR1');
  const applied = await eventually(30_000, 'gateway acknowledged the config', async () => {
    const r = await c.api(ops, 'GET', `/v1/gateways/${rig.deviceId}/config`);
    return r.body.status === 'applied' ? r.body : undefined;
  }, 250);
  t.equal(applied.reported.appliedVersion, ok.body.desiredVersion, 'the gateway runs the desired version');
  t.ok(logged(gw, 'desired properties applied').length >= 1);
  const audit = await c.api(ops, 'GET', '/v1/audit?limit=10');
  t.match(
    audit.body.entries.filter((e: { action: string }) => e.action === 'config.patch').map((e: { result: string }) => e.result),
    ['PRECONDITION_FAILED', 'ok', 'CONFIG_INVALID'],
    'every config change attempt audited with its result',
  );
});

t.test('hub unreachable: a prompt 503 with the reason; the companion recovers, feedback included, when the hub returns', async (t) => {
  const rig = await startRig(t, { thermostats: 1 });
  const c = await withCompanion(t, rig);
  const ops = c.token('operator');
  const first = await c.api(ops, 'GET', '/v1/gateways');
  t.equal(first.body.total, 1);

  await rig.th.hub.stop();
  const started = Date.now();
  const down = await c.api(ops, 'POST', `/v1/gateways/${rig.deviceId}/commands`, { type: 'wake', forS: 5 });
  t.equal(down.status, 503);
  t.equal(down.body.code, 'HUB_UNREACHABLE');
  t.match(down.body.message, /IoT Hub/);
  t.ok(Date.now() - started < 10_000, `answered in ${Date.now() - started} ms (deadline 3 s per call), not after the SDK's 240 s`);
  t.equal((await c.api(ops, 'GET', `/v1/gateways/${rig.deviceId}/config`)).status, 503);
  const stale = await eventually(10_000, 'fleet view marked stale', async () => {
    const r = await c.api(ops, 'GET', '/v1/gateways');
    return r.body.stale ? r.body : undefined;
  }, 250);
  t.equal(stale.total, 1, 'the cached fleet is still served');
  t.match(stale.refreshError, /IoT Hub/);

  await rig.th.restart();
  const back = await eventually(20_000, 'commands accepted again', async () => {
    const r = await c.api(ops, 'POST', `/v1/gateways/${rig.deviceId}/commands`, { type: 'wake', forS: 5, expiresInS: 10 });
    return r.status === 202 ? r.body : undefined;
  }, 250);
  t.equal(back.command.status, 'queued');
  const expired = await settled(c, ops, back.command.id, 25_000);
  t.equal(expired.status, 'expired', 'the feedback receiver resubscribed after the outage');
  await eventually(10_000, 'fleet view fresh again', async () => ((await c.api(ops, 'GET', '/v1/gateways')).body.stale === false ? true : undefined), 250);
});

t.test('secrets stay out of logs: bearer tokens and the connection string of a created gateway', async (t) => {
  const rig = await startRig(t, { thermostats: 1 });
  const c = await withCompanion(t, rig);
  const ops = c.token('operator');
  const viewer = c.token('viewer');
  t.equal((await c.api(viewer, 'POST', `/v1/gateways/${rig.deviceId}/commands`, { type: 'sleep' })).status, 403);
  const created = await c.api(ops, 'POST', '/v1/gateways', { id: 'gw-new' });
  t.equal(created.status, 201);
  const key = /SharedAccessKey=([^;]+)/.exec(created.body.connectionString)?.[1] ?? '';
  t.ok(key.length > 20);
  t.equal(created.headers.get('cache-control'), 'no-store');
  const twin = await c.api(ops, 'GET', '/v1/gateways/gw-new');
  t.same(twin.body.tags, { fieldlink: { kind: 'gateway' } });
  t.equal((await c.api(ops, 'DELETE', '/v1/gateways/gw-new')).status, 204);
  t.equal((await c.api(ops, 'GET', '/v1/gateways/gw-new')).status, 404);

  const text = c.log.lines.map((l) => JSON.stringify(l)).join('\n');
  t.ok(c.log.lines.length > 5, 'requests were logged');
  for (const secret of [ops, viewer, key]) t.notOk(text.includes(secret), 'secret absent from the log');
  const audit = JSON.stringify((await c.api(ops, 'GET', '/v1/audit')).body);
  t.notOk(audit.includes(key), 'nor in the audit log');
});
