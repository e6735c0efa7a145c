/**
 * Phone pairing (issue 8) end to end through the companion's pairing-session API: the local hub,
 * the companion on the official SDK, a real gateway (in this process) with a BLE source on
 * node-ble over a private D-Bus against the emulated BlueZ, and wearables that start unpaired.
 * The code is found from the hash in the gateway's twin tags, devices are added and removed
 * through the session, and what the session says is checked against what the hub receives.
 */
import t, { type Test } from 'tap';
import { generatePairingCode, hashPairingCode } from '../../common/pairing-code.js';
import { startPrivateBus } from '../../sensors/dbus/private-bus.js';
import { startFakeBluez } from '../../sensors/ble/emulator/fake-bluez.js';
import { eventually, within } from '../helpers/deadline.js';
import { startCompanion, type ApiReply, type RunningCompanion } from '../helpers/companion.js';
import { startRig, type Rig } from '../helpers/gateway-rig.js';
import { registryFor } from '../helpers/hub.js';
import { useSystemBus } from '../helpers/system-bus.js';

t.setTimeout(180_000);

const WEARER_1 = 'AA:BB:CC:DD:EE:11';
const WEARER_2 = 'AA:BB:CC:DD:EE:12';
const ELSEWHERE = 'AA:BB:CC:DD:EE:13';

type Reported = { sources?: Record<string, { devices?: Record<string, { state?: string }> }> };
type DeviceView = { address: string; state: string; lastSeen?: string; lastValue?: number; lastKind?: string; lastUnit?: string };

async function withCompanion(t: Test, rig: Rig): Promise<RunningCompanion> {
  const c = await startCompanion(rig.th.hubJson);
  t.teardown(() => c.close());
  return c;
}

/** Writes a fresh pairing code's hash into the gateway's twin tags, as provisioning does; returns the code. */
async function labelGateway(rig: Rig, deviceId = rig.deviceId): Promise<string> {
  const code = generatePairingCode();
  const registry = registryFor(rig.th);
  await within(5000, 'updateTwin tags', registry.updateTwin(deviceId, { tags: { fieldlink: { kind: 'gateway', pairing: hashPairingCode(code) } } }, '*'));
  return code;
}

/**
 * Starts a session with `code` once the companion's fleet cache (refreshed every second) has the
 * tag (and, with `online`, the gateway connected). Retries use a throwaway token of their own so the caller's failure count stays clean.
 */
async function sessionWhenCached(c: RunningCompanion, code: string, online = false): Promise<void> {
  const probe = c.token('pairing', `probe-${Math.random().toString(36).slice(2)}`);
  await eventually(
    8_000,
    'the companion sees the pairing tag',
    async () => {
      const r = await c.api(probe, 'POST', '/v1/pairing/sessions', { code });
      return r.status === 201 && (!online || r.body.gatewayOnline === true) ? true : undefined;
    },
    900,
  );
}

function devicesOf(r: ApiReply): Map<string, DeviceView> {
  return new Map(((r.body?.session?.devices ?? []) as DeviceView[]).map((d) => [d.address, d]));
}

t.test('a phone pairs two wearables with an online gateway through a session; unpairing one stops it at the hub', async (t) => {
  const bus = await startPrivateBus();
  t.teardown(() => bus.stop());
  const bluez = await startFakeBluez({ address: bus.address });
  t.teardown(() => bluez.stop());
  for (const address of [WEARER_1, WEARER_2]) bluez.addWearable({ address, services: ['heart_rate', 'battery'], rateHz: 2 });
  useSystemBus(t, bus.address);

  const rig = await startRig(t, {
    thermostats: 0,
    extraSources: [{ id: 'wearables', family: 'ble', adapter: 'hci0' }],
    // A long online window: once woken, the gateway stays online for the whole test.
    settings: { sampling: { ble: { sampleIntervalS: 1, reportIntervalS: 1 } }, onlineWindowS: 600 },
  });
  const c = await withCompanion(t, rig);
  const registry = registryFor(rig.th);
  const code = await labelGateway(rig);
  // Production cadences: reported state refreshed every 60 s (a device's change at once),
  // readings forwarded 5 s after they are taken while online.
  const { rt } = await rig.startInProcess({ runtime: { reportEveryMs: 60_000, onlineForwardDelayMs: 5_000 } });
  await eventually(20_000, 'gateway online', () => (rt.powerState.phase === 'online' ? true : rt.wakeNow() && undefined), 100);
  await sessionWhenCached(c, code, true);
  t.notOk(
    bluez.calls.some((call) => call.member === 'Connect'),
    'no wearable connected before pairing',
  );

  const phone = c.token('pairing', 'phone-1');
  const t0 = Date.now();
  // Lower case with the dash dropped: as someone might type it from the label.
  const start = await c.api(phone, 'POST', '/v1/pairing/sessions', { code: code.replace('-', '').toLowerCase() });
  t.equal(start.status, 201, JSON.stringify(start.body));
  t.equal(start.body.session.gateway, rig.deviceId, 'the session is for the labelled gateway');
  t.equal(start.body.gatewayOnline, true, 'the companion sees the gateway online');
  t.same(start.body.session.devices, [], 'no devices yet');
  const id = start.body.session.id as string;
  t.notMatch(JSON.stringify(c.log.lines), code.replace('-', ''), 'the code is not in the companion log');

  for (const [address, name] of [
    [WEARER_1, 'wearer 1'],
    [WEARER_2, undefined],
  ] as const) {
    const add = await c.api(phone, 'POST', `/v1/pairing/sessions/${id}/devices`, { address: address.toLowerCase(), profile: 'heart_rate', ...(name ? { name } : {}) });
    t.equal(add.status, 201, `add ${address}: ${JSON.stringify(add.body)}`);
    t.ok(devicesOf(add).has(address), `${address} in the session, upper-cased`);
  }

  const seen: string[] = [];
  const receiving = await eventually(
    30_000,
    'both wearables receiving in the session view',
    async () => {
      const r = await c.api(phone, 'GET', `/v1/pairing/sessions/${id}`);
      if (r.status !== 200) throw new Error(`GET session: ${r.status} ${JSON.stringify(r.body)}`);
      const d = devicesOf(r);
      const states = `${d.get(WEARER_1)?.state}/${d.get(WEARER_2)?.state}`;
      if (seen.at(-1) !== states) seen.push(states);
      return d.get(WEARER_1)?.state === 'receiving' && d.get(WEARER_2)?.state === 'receiving' ? r : undefined;
    },
    200,
  );
  const pairingMs = Date.now() - t0;
  t.comment(`pairing time, session start to both receiving (gateway online): ${pairingMs} ms; states seen: ${seen.join(' -> ')}`);
  t.ok(pairingMs < 30_000, `both receiving within 30 s (${pairingMs} ms; the issue's target is < 10 s)`);
  for (const d of devicesOf(receiving).values()) t.ok(typeof d.lastSeen === 'string', `${d.address} has lastSeen`);
  t.equal(devicesOf(receiving).get(WEARER_1)?.state, 'receiving');
  // The session also shows a value: the last heart rate the gateway reported for each wearable.
  const valued = await eventually(30_000, 'a last value reported for both', async () => {
    const r = await c.api(phone, 'GET', `/v1/pairing/sessions/${id}`);
    const d = devicesOf(r);
    return [WEARER_1, WEARER_2].every((a) => typeof d.get(a)?.lastValue === 'number') ? d : undefined;
  }, 250);
  for (const a of [WEARER_1, WEARER_2]) t.match(valued.get(a), { lastKind: 'heart_rate', lastUnit: '/min' }, `${a}: last value ${valued.get(a)?.lastValue} /min`);

  await eventually(30_000, 'heart rates from both wearables at the hub', () => {
    const sources = new Set(rig.hubReadings().map((r) => r.source));
    return sources.has(`ble:${WEARER_1}/heart_rate`) && sources.has(`ble:${WEARER_2}/heart_rate`) ? true : undefined;
  }, 200);
  const emitted = new Set(bluez.emitted.filter((e) => e.source.endsWith('/heart_rate')).map((e) => `${e.source}=${e.value}`));
  const hr = rig.hubReadings().filter((r) => r.source.endsWith('/heart_rate'));
  t.ok(hr.length >= 2 && hr.every((r) => r.kind === 'heart_rate' && r.unit === '/min'), `${hr.length} heart-rate readings at the hub`);
  t.ok(hr.every((r) => emitted.has(`${r.source}=${r.value}`)), 'every heart rate at the hub is one its wearable sent');

  // Unpair wearer 2 through the session: the gateway disconnects it, its readings stop.
  const disconnectsBefore = bluez.calls.filter((call) => call.member === 'Disconnect' && call.path.endsWith('EE_12')).length;
  const del = await c.api(phone, 'DELETE', `/v1/pairing/sessions/${id}/devices/${WEARER_2.toLowerCase()}`);
  t.equal(del.status, 204, JSON.stringify(del.body));
  const tDel = Date.now();
  await eventually(20_000, 'the gateway disconnects the unpaired wearable', () =>
    bluez.calls.filter((call) => call.member === 'Disconnect' && call.path.endsWith('EE_12')).length > disconnectsBefore ? true : undefined,
  );
  const tDisconnected = Date.now();
  t.comment(`emulator saw the disconnect ${tDisconnected - tDel} ms after the DELETE`);
  await eventually(20_000, 'reported unpaired in the twin', async () => {
    const r = (await registry.getTwin(rig.deviceId)).responseBody.properties.reported as Reported;
    const devices = r.sources?.wearables?.devices;
    return devices?.[WEARER_2]?.state === 'unpaired' && devices[WEARER_1]?.state === 'receiving' ? true : undefined;
  }, 200);
  t.comment(`reported unpaired ${Date.now() - tDel} ms after the DELETE`);
  const after = await c.api(phone, 'GET', `/v1/pairing/sessions/${id}`);
  t.same([...devicesOf(after).keys()], [WEARER_1], 'the session lists only the remaining wearable');
  t.equal(devicesOf(after).get(WEARER_1)?.state, 'receiving');

  // Readings are stamped when taken; the hub gets them in batches (at the outbox watermark). Wait
  // until wearer 1's readings taken 5 s after the disconnect are at the hub: by then anything
  // wearer 2 sent after it would be there too.
  const hubFrom = (address: string) => rig.hubReadings().filter((r) => r.source.startsWith(`ble:${address}/`));
  await eventually(40_000, 'wearer 1 readings from 5 s after the disconnect at the hub', () =>
    hubFrom(WEARER_1).some((r) => r.ts > tDisconnected + 5_000) ? true : undefined,
  200);
  const late = hubFrom(WEARER_2).filter((r) => r.ts > tDisconnected + 1_000);
  t.same(late.map((r) => `${r.source}@${new Date(r.ts).toISOString()}`), [], `nothing from the unpaired wearable taken after its disconnect (${hubFrom(WEARER_2).length} before)`);
  t.ok(hubFrom(WEARER_1).filter((r) => r.ts > tDisconnected).length >= 5, 'the other keeps arriving');
  const emittedLate = bluez.emitted.filter((e) => e.source.startsWith(`ble:${WEARER_2}/`) && e.ts > tDisconnected + 1_000);
  t.equal(emittedLate.length, 0, 'the emulated wearable sent nothing after the disconnect');
  t.equal(rt.powerState.phase, 'online', 'the gateway stayed online throughout');
});

t.test('bad paths through the real stack: unknown code, a device paired elsewhere, a pairing token on an operator route', async (t) => {
  const rig = await startRig(t, { thermostats: 0 });
  const c = await withCompanion(t, rig);
  const registry = registryFor(rig.th);
  const other = 'gw-other';
  rig.th.hub.createDevice(other);
  await within(5000, 'updateTwin other', registry.updateTwin(other, { properties: { desired: { pairings: { [ELSEWHERE]: { profile: 'heart_rate' } } } } }, '*'));
  // Tagged after the other gateway's pairings are written: once the tag is in the cache, they are too.
  const code = await labelGateway(rig);
  await sessionWhenCached(c, code);

  const phone = c.token('pairing', 'phone-bad');
  let unknownCode = generatePairingCode();
  while (unknownCode === code) unknownCode = generatePairingCode();
  const unknown = await c.api(phone, 'POST', '/v1/pairing/sessions', { code: unknownCode });
  t.equal(unknown.status, 404, JSON.stringify(unknown.body));
  t.equal(unknown.body.code, 'PAIRING_CODE_UNKNOWN');
  const malformed = await c.api(phone, 'POST', '/v1/pairing/sessions', { code: 'not-a-code' });
  t.equal(malformed.status, 404);
  t.equal(malformed.body.code, 'PAIRING_CODE_UNKNOWN');

  const start = await c.api(phone, 'POST', '/v1/pairing/sessions', { code });
  t.equal(start.status, 201, JSON.stringify(start.body));
  const id = start.body.session.id as string;
  const taken = await c.api(phone, 'POST', `/v1/pairing/sessions/${id}/devices`, { address: ELSEWHERE, profile: 'heart_rate' });
  t.equal(taken.status, 409, JSON.stringify(taken.body));
  t.equal(taken.body.code, 'DEVICE_PAIRED_ELSEWHERE');
  t.match(taken.body.message, other, 'names the gateway that has it');
  const twin = (await within(5000, 'getTwin', registry.getTwin(rig.deviceId))).responseBody;
  t.equal((twin.properties.desired as { pairings?: Record<string, unknown> }).pairings?.[ELSEWHERE], undefined, 'not added to this gateway');
  const view = await c.api(phone, 'GET', `/v1/pairing/sessions/${id}`);
  t.same(view.body.session.devices, [], 'not in the session');

  const gateways = await c.api(phone, 'GET', '/v1/gateways');
  t.equal(gateways.status, 403, 'a pairing token cannot list the fleet');
  t.equal(gateways.body.code, 'AUTH_FORBIDDEN');
  const otherPhone = c.token('pairing', 'phone-other');
  const foreign = await c.api(otherPhone, 'GET', `/v1/pairing/sessions/${id}`);
  t.equal(foreign.status, 403, "another token's session is refused");
});

/*
 * The 201 that starts a session says whether the gateway is online now: it reads the twin fresh
 * (it once answered from the fleet cache, up to a refresh old, and told a phone "offline" just
 * after the gateway woke). The companion here refreshes its cache only every 60 s.
 */
t.test('session start reports the gateway as it is now, like the session view', async (t) => {
  const rig = await startRig(t, { thermostats: 1, settings: { onlineWindowS: 600 } });
  const code = await labelGateway(rig);
  // The cache's first load sees the tag and a disconnected gateway; the next refresh is a minute away.
  const c = await startCompanion(rig.th.hubJson, { fleetRefreshMs: 60_000 });
  t.teardown(() => c.close());
  const registry = registryFor(rig.th);
  const { rt } = await rig.startInProcess();
  await eventually(20_000, 'gateway online', () => (rt.powerState.phase === 'online' ? true : rt.wakeNow() && undefined), 100);
  await eventually(10_000, 'the hub sees it connected', async () => {
    const d = (await registry.get(rig.deviceId)).responseBody as unknown as { connectionState?: string };
    return d.connectionState === 'Connected' ? true : undefined;
  }, 200);
  const phone = c.token('pairing', 'phone-stale');
  const start = await c.api(phone, 'POST', '/v1/pairing/sessions', { code });
  t.equal(start.status, 201, JSON.stringify(start.body));
  const view = await c.api(phone, 'GET', `/v1/pairing/sessions/${start.body.session.id as string}`);
  t.equal(view.body.gatewayOnline, true, 'the session view (fresh twin) says online');
  t.equal(start.body.gatewayOnline, view.body.gatewayOnline, `the 201 agrees with it (201 said gatewayOnline=${String(start.body.gatewayOnline)})`);
});
