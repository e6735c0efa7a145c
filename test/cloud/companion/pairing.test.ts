import t from 'tap';
import { generatePairingCode, hashPairingCode } from '../../../common/pairing-code.js';
import { bearer, companion, type AuditEntryJson, type Companion, NO_RATE_LIMIT, type ProblemJson } from './fixture.js';

// Phone pairing sessions (issue 8) against the fake IoT Hub: code lookup and its guessing
// defence, desired pairings and the coalesced wake, device states read from the gateway twin,
// ownership, expiry, audit, and the code kept out of logs.

const rateLimit = NO_RATE_LIMIT;
const A1 = 'AA:BB:CC:DD:EE:01';
const A2 = 'AA:BB:CC:DD:EE:02';

interface DeviceJson {
  address: string;
  profile: string;
  name: string | null;
  state: string;
  lastSeen?: string;
  battery?: number;
  error?: string;
}
interface SessionJson {
  session: { id: string; gateway: string; created: string; expiresAt: string; devices: DeviceJson[] };
  gatewayOnline: boolean;
  nextCheckIn: string | null;
}

function addCodedGateway(c: Companion, id: string, code: string, desired: Record<string, unknown> = {}): void {
  c.hub.addGateway(id, {}, { tags: { fieldlink: { kind: 'gateway', pairing: hashPairingCode(code) } }, desired: { $version: 1, ...desired } });
}
async function start(c: Companion, token: string, code: string) {
  return c.app.inject({ method: 'POST', url: '/v1/pairing/sessions', headers: bearer(token), payload: { code } });
}
async function add(c: Companion, token: string, id: string, body: Record<string, unknown>) {
  return c.app.inject({ method: 'POST', url: `/v1/pairing/sessions/${id}/devices`, headers: bearer(token), payload: body });
}
async function view(c: Companion, token: string, id: string) {
  return c.app.inject({ method: 'GET', url: `/v1/pairing/sessions/${id}`, headers: bearer(token) });
}
async function remove(c: Companion, token: string, id: string, address: string) {
  return c.app.inject({ method: 'DELETE', url: `/v1/pairing/sessions/${id}/devices/${address}`, headers: bearer(token) });
}
async function audit(c: Companion, token: string): Promise<AuditEntryJson[]> {
  return (await c.app.inject({ method: 'GET', url: '/v1/audit?limit=100', headers: bearer(token) })).json<{ entries: AuditEntryJson[] }>().entries;
}

t.test('happy path: start, add two devices (one wake), waiting → receiving, unpair', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const code = generatePairingCode();
  addCodedGateway(c, 'gw-1', code);
  addCodedGateway(c, 'gw-other', generatePairingCode());
  c.hub.report('gw-1', { power: { lastCheckIn: new Date(c.clock.now()).toISOString(), checkInIntervalS: 900, onlineWindowS: 120 } });
  const phone = c.token('pairing', 'phone-1');
  const op = c.token('operator');

  // Typed sloppily: lower case, no dash.
  const started = await start(c, phone, code.toLowerCase().replace('-', ''));
  t.equal(started.statusCode, 201, started.body);
  const s = started.json<SessionJson>();
  t.equal(s.session.gateway, 'gw-1');
  t.same(s.session.devices, []);
  t.equal(s.gatewayOnline, false);
  t.equal(s.nextCheckIn, new Date(c.clock.now() + 900_000).toISOString());
  t.equal(Date.parse(s.session.expiresAt) - Date.parse(s.session.created), 30 * 60_000, 'lasts 30 minutes');
  const id = s.session.id;

  const first = await add(c, phone, id, { address: A1.toLowerCase(), profile: 'heart_rate', name: 'Chest strap' });
  t.equal(first.statusCode, 201, first.body);
  t.match(first.json<SessionJson>().session.devices, [{ address: A1, profile: 'heart_rate', name: 'Chest strap', state: 'waiting-for-gateway' }]);
  const second = await add(c, phone, id, { address: A2, profile: 'health_thermometer' });
  t.equal(second.statusCode, 201, second.body);

  const desired = c.hub.twins.get('gw-1')?.desired ?? {};
  t.same(desired.pairings, { [A1]: { profile: 'heart_rate', name: 'Chest strap' }, [A2]: { profile: 'health_thermometer' } }, 'both in desired pairings, normalised');
  const wakes = c.hub.sent.filter((m) => m.deviceId === 'gw-1');
  t.equal(wakes.length, 1, 'one wake for both adds (coalesced)');
  t.match(wakes[0]?.body, { type: 'wake', forS: 120 });

  const waiting = await view(c, phone, id);
  t.equal(waiting.statusCode, 200, waiting.body);
  t.same(waiting.json<SessionJson>().session.devices.map((d) => d.state), ['waiting-for-gateway', 'waiting-for-gateway']);

  // The gateway checks in, applies the desired version and reports its devices.
  const v = desired.$version as number;
  const lastSeen = new Date(c.clock.now()).toISOString();
  c.hub.report('gw-1', {
    config: { appliedVersion: v, desiredVersion: v, status: 'applied', errors: [] },
    sources: {
      wearables: {
        connected: true,
        devices: {
          [A1]: { state: 'receiving', reason: null, rssi: -61, battery: 87, lastSeen, decodeErrors: 0 },
          [A2]: { state: 'error', reason: 'le-connection-abort-by-local', rssi: null, battery: null, lastSeen: null, decodeErrors: 0 },
        },
      },
    },
  });
  const live = await view(c, phone, id);
  t.equal(live.statusCode, 200, live.body);
  t.match(live.json<SessionJson>().session.devices, [
    { address: A1, state: 'receiving', lastSeen, battery: 87 },
    { address: A2, state: 'error', error: 'le-connection-abort-by-local' },
  ]);

  const gone = await remove(c, phone, id, A2.toLowerCase());
  t.equal(gone.statusCode, 204, gone.body);
  t.equal(gone.body, '');
  t.same(c.hub.twins.get('gw-1')?.desired.pairings, { [A1]: { profile: 'heart_rate', name: 'Chest strap' } }, 'removed by a null merge');
  t.same((await view(c, phone, id)).json<SessionJson>().session.devices.map((d) => d.address), [A1]);
  t.equal((await remove(c, phone, id, A2)).json<ProblemJson>().code, 'PAIRING_DEVICE_NOT_FOUND', 'only devices of the session');

  const entries = await audit(c, op);
  const adds = entries.filter((e) => e.action === 'pairing.add');
  t.equal(adds.length, 2);
  t.match(adds[0], { tokenName: 'phone-1', target: 'gw-1', result: 'ok', details: { session: id, address: A2, profile: 'health_thermometer' } });
  const removes = entries.filter((e) => e.action === 'pairing.remove');
  t.match(removes, [
    { tokenName: 'phone-1', target: 'gw-1', result: 'PAIRING_DEVICE_NOT_FOUND', details: { session: id, address: A2 } },
    { tokenName: 'phone-1', target: 'gw-1', result: 'ok', details: { session: id, address: A2 } },
  ]);
  t.match(entries.find((e) => e.action === 'pairing.start'), { tokenName: 'phone-1', target: 'gw-1', result: 'ok' });

  const everything = JSON.stringify(c.log.lines) + JSON.stringify(entries);
  t.notOk(everything.includes(code) || everything.includes(code.replace('-', '')) || everything.toLowerCase().includes(code.toLowerCase().replace('-', '')), 'the code is in no log line or audit entry');
});

t.test('unknown codes: 404, and more than 10 failures in 10 minutes get 429 until the window passes', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const code = generatePairingCode();
  addCodedGateway(c, 'gw-1', code);
  const phone = c.token('pairing', 'phone-1');
  const other = c.token('pairing', 'phone-2');

  const malformed = await start(c, phone, 'hello');
  t.equal(malformed.statusCode, 404);
  t.match(malformed.json<ProblemJson>(), { code: 'PAIRING_CODE_UNKNOWN', message: 'no gateway has this pairing code; check the label' });
  for (let i = 2; i <= 10; i++) {
    const res = await start(c, phone, generatePairingCode());
    t.equal(res.statusCode, 404, `failure ${i}`);
    await c.clock.advance(1_000);
  }
  const limited = await start(c, phone, code);
  t.equal(limited.statusCode, 429, 'the 11th lookup is refused, even with the right code');
  t.equal(limited.json<ProblemJson>().code, 'RATE_LIMITED');
  const retryAfter = Number(limited.headers['retry-after']);
  t.ok(retryAfter > 0 && retryAfter <= 600, `retry-after ${retryAfter}`);
  t.equal((await start(c, other, code)).statusCode, 201, 'per token: another token is not affected');

  await c.clock.advance(retryAfter * 1000);
  const after = await start(c, phone, code);
  t.equal(after.statusCode, 201, after.body);
  t.equal(after.json<SessionJson>().session.gateway, 'gw-1');
});

t.test('refusals: paired elsewhere, bad address or profile, expiry, other tokens, roles', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const code = generatePairingCode();
  addCodedGateway(c, 'gw-1', code);
  addCodedGateway(c, 'gw-2', generatePairingCode(), { pairings: { [A2]: { profile: 'heart_rate' } } });
  const phone = c.token('pairing', 'phone-1');
  const phone2 = c.token('pairing', 'phone-2');
  const op = c.token('operator');
  const viewer = c.token('viewer');

  const id = (await start(c, phone, code)).json<SessionJson>().session.id;

  const elsewhere = await add(c, phone, id, { address: A2.toLowerCase(), profile: 'heart_rate' });
  t.equal(elsewhere.statusCode, 409);
  t.match(elsewhere.json<ProblemJson>(), { code: 'DEVICE_PAIRED_ELSEWHERE', message: /gw-2/, details: { gateway: 'gw-2', address: A2 } });
  t.notOk((c.hub.twins.get('gw-1')?.desired.pairings as Record<string, unknown> | undefined)?.[A2], 'nothing written');
  t.equal(c.hub.sent.length, 0, 'no wake sent');
  t.match((await audit(c, op)).find((e) => e.action === 'pairing.add'), { result: 'DEVICE_PAIRED_ELSEWHERE' });

  for (const address of ['AA:BB:CC:DD:EE', 'AA-BB-CC-DD-EE-01', 'GG:BB:CC:DD:EE:01', '']) {
    const res = await add(c, phone, id, { address, profile: 'heart_rate' });
    t.equal(res.statusCode, 400, `address ${JSON.stringify(address)}`);
    t.equal(res.json<ProblemJson>().code, 'REQUEST_INVALID');
  }
  t.equal((await add(c, phone, id, { address: A1, profile: 'toaster' })).statusCode, 400, 'unknown profile');
  t.equal((await remove(c, phone, id, 'not-an-address')).statusCode, 400);

  t.equal((await view(c, phone, 'no-such-session')).json<ProblemJson>().code, 'PAIRING_SESSION_NOT_FOUND');

  const theirs = await add(c, phone2, id, { address: A1, profile: 'heart_rate' });
  t.equal(theirs.statusCode, 403, "another pairing token's session");
  t.equal((await view(c, phone2, id)).statusCode, 403);
  t.equal((await add(c, op, id, { address: A1, profile: 'heart_rate' })).statusCode, 201, 'an operator may use any session');

  t.equal((await c.app.inject({ method: 'POST', url: '/v1/pairing/sessions', headers: bearer(viewer), payload: { code } })).statusCode, 403, 'viewer may not start');
  t.equal((await add(c, viewer, id, { address: A1, profile: 'heart_rate' })).statusCode, 403, 'viewer may not add');
  t.equal((await c.app.inject({ method: 'GET', url: '/v1/gateways', headers: bearer(phone) })).statusCode, 403, 'pairing token stays out of the rest');

  await c.clock.advance(31 * 60_000);
  const expired = await add(c, phone, id, { address: 'AA:BB:CC:DD:EE:03', profile: 'heart_rate' });
  t.equal(expired.statusCode, 410);
  t.equal(expired.json<ProblemJson>().code, 'PAIRING_SESSION_EXPIRED');
  t.equal((await remove(c, phone, id, A1)).statusCode, 410);
  t.equal((await view(c, phone, id)).statusCode, 200, 'an expired session can still be looked at');
});
