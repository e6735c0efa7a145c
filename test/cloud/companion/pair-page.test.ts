import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import t from 'tap';
import { CONTENT_SECURITY_POLICY, registerWebRoutes } from '../../../cloud/src/web-routes.js';
import { PHONE, launchBrowser, saveScreenshot } from '../../helpers/browser.js';
import { eventually } from '../../helpers/deadline.js';
import { qrClip } from '../../helpers/qr-clip.js';

// The phone pairing page (cloud/web/pair.*) in real headless Chromium against a stub of the
// companion's pairing API: the routes under test are the page's own; the API here only plays
// back in-test state.

type DeviceState = 'waiting-for-gateway' | 'connecting' | 'receiving' | 'error';

interface Device {
  address: string;
  profile: string;
  name: string | null;
  state: DeviceState;
  lastSeen?: string;
  battery?: number;
  rssi?: number;
  error?: string;
}

interface Gateway {
  id: string;
  online: boolean;
  nextCheckIn: string | null;
  devices: Map<string, Device>;
}

interface Session {
  id: string;
  gateway: Gateway;
  created: string;
  expiresAt: string;
}

const PAIRING = 'flc_pairing-token-for-the-pair-page-test-00000000';
const VIEWER = 'flc_viewer-token-for-the-pair-page-test-000000000';
const LINK = 'flc_short-lived-link-token-for-the-pair-page-0000';
const tokens = new Map<string, { name: string; role: string; site?: string; expiresAt?: string }>([
  [PAIRING, { name: 'pat', role: 'pairing' }],
  [VIEWER, { name: 'bob', role: 'viewer' }],
  [LINK, { name: 'osaka-link', role: 'pairing', site: 'Osaka plant', expiresAt: new Date(Date.now() + 3_600_000).toISOString() }],
]);

const iso = (ms: number) => new Date(ms).toISOString();
const gateway = (id: string, online: boolean, nextCheckIn: string | null): Gateway => ({ id, online, nextCheckIn, devices: new Map() });
const gateways = {
  north: gateway('gw-north-1', true, null),
  south: gateway('gw-south-2', false, iso(Date.UTC(2030, 0, 1, 14, 35))),
  short: gateway('gw-short-3', true, null),
};
/** Pairing code -> gateway; a code ending in -SHORT opens a 2-second session. */
const codes = new Map<string, Gateway>([
  ['7K3QX-M9P2D', gateways.north],
  ['4HF7T-22QWE', gateways.south],
  ['9ZZZZ-SHORT', gateways.short],
]);
const sessions = new Map<string, Session>();
const seen = {
  sessionPosts: [] as unknown[],
  devicePosts: [] as unknown[],
  deletes: [] as string[],
  gets: 0,
};
let rateLimited = false;

// Chromium keeps connections alive: close them with the server, or teardown waits for their timeout.
const app = Fastify({ forceCloseConnections: true });
registerWebRoutes(app);
const problem = (reply: FastifyReply, status: number, code: string, message: string, details?: Record<string, unknown>) =>
  reply.code(status).send({ code, message, ...(details ? { details } : {}) });
const principal = (req: FastifyRequest) => tokens.get((req.headers.authorization ?? '').replace(/^Bearer /, ''));
const view = (s: Session) => ({
  session: { id: s.id, gateway: s.gateway.id, created: s.created, expiresAt: s.expiresAt, devices: [...s.gateway.devices.values()] },
  gatewayOnline: s.gateway.online,
  nextCheckIn: s.gateway.nextCheckIn,
});
app.addHook('onRequest', async (req, reply) => {
  if (!req.url.startsWith('/v1/')) return;
  const who = principal(req);
  if (!who) return problem(reply, 401, 'AUTH_REQUIRED', 'no valid token');
  if (req.url.startsWith('/v1/pairing/') && who.role !== 'pairing') return problem(reply, 403, 'AUTH_FORBIDDEN', 'pairing tokens only');
});
app.get('/v1/whoami', async (req) => principal(req));
app.post<{ Body: { code: string } }>('/v1/pairing/sessions', async (req, reply) => {
  seen.sessionPosts.push(req.body);
  if (rateLimited) return problem(reply, 429, 'RATE_LIMITED', 'too many unknown codes; wait 10 minutes before trying again');
  const gw = codes.get(req.body.code);
  if (!gw) return problem(reply, 404, 'PAIRING_CODE_UNKNOWN', 'no gateway with this pairing code');
  const now = Date.now();
  const s: Session = { id: `ps-${sessions.size + 1}`, gateway: gw, created: iso(now), expiresAt: iso(now + (req.body.code.endsWith('-SHORT') ? 2000 : 1_800_000)) };
  sessions.set(s.id, s);
  return reply.code(201).send(view(s));
});
app.get<{ Params: { id: string } }>('/v1/pairing/sessions/:id', async (req, reply) => {
  seen.gets += 1;
  const s = sessions.get(req.params.id);
  return s ? view(s) : problem(reply, 404, 'PAIRING_SESSION_NOT_FOUND', 'no such session');
});
app.post<{ Params: { id: string }; Body: { address: string; profile: string; name?: string } }>('/v1/pairing/sessions/:id/devices', async (req, reply) => {
  seen.devicePosts.push(req.body);
  const s = sessions.get(req.params.id);
  if (!s) return problem(reply, 404, 'PAIRING_SESSION_NOT_FOUND', 'no such session');
  if (Date.parse(s.expiresAt) <= Date.now()) return problem(reply, 410, 'PAIRING_SESSION_EXPIRED', 'the session has expired');
  const address = req.body.address.toUpperCase();
  const elsewhere = Object.values(gateways).find((g) => g !== s.gateway && g.devices.has(address));
  if (elsewhere) {
    return problem(reply, 409, 'DEVICE_PAIRED_ELSEWHERE', `device ${address} is already paired with gateway "${elsewhere.id}"; unpair it there first`, {
      address,
      gateway: elsewhere.id,
    });
  }
  s.gateway.devices.set(address, { address, profile: req.body.profile, name: req.body.name ?? null, state: 'waiting-for-gateway' });
  return reply.code(201).send(view(s));
});
app.delete<{ Params: { id: string; address: string } }>('/v1/pairing/sessions/:id/devices/:address', async (req, reply) => {
  seen.deletes.push(`${req.params.id} ${req.params.address}`);
  const s = sessions.get(req.params.id);
  if (!s) return problem(reply, 404, 'PAIRING_SESSION_NOT_FOUND', 'no such session');
  s.gateway.devices.delete(req.params.address.toUpperCase());
  return reply.code(204).send();
});
await app.listen({ host: '127.0.0.1', port: 0 });
t.teardown(() => app.close());
const address = app.server.address();
if (address === null || typeof address === 'string') throw new Error('no TCP address');
const base = `http://127.0.0.1:${address.port}`;

const browser = await launchBrowser(t);

const textOf = async (page: import('playwright-core').Page, testId: string) => (await page.getByTestId(testId).textContent()) ?? '';
const until = (page: import('playwright-core').Page, testId: string, want: RegExp | string) =>
  eventually(5000, `${testId} shows ${String(want)}`, async () => {
    const text = await textOf(page, testId);
    return (typeof want === 'string' ? text === want : want.test(text)) ? true : undefined;
  });

async function openSession(page: import('playwright-core').Page, code: string) {
  await page.goto(`${base}/pair#token=${PAIRING}`);
  await page.getByLabel("Code on the gateway's label").fill(code);
  await page.getByRole('button', { name: 'Start pairing' }).click();
}

t.test('static routes: the page, its script and style, the vendored QR decoder, all with the CSP', async (t) => {
  const html = await fetch(`${base}/pair`);
  t.equal(html.status, 200);
  t.match(html.headers.get('content-type'), /^text\/html/);
  t.equal(html.headers.get('content-security-policy'), CONTENT_SECURITY_POLICY);
  t.equal(html.headers.get('cache-control'), 'no-store');
  t.notOk((await html.text()).match(/https?:\/\/(?!www\.w3\.org)/), 'the page loads nothing from elsewhere');
  for (const [path, type] of [
    ['/web/pair.js', /^text\/javascript/],
    ['/web/pair.css', /^text\/css/],
    ['/web/vendor/jsQR.js', /^text\/javascript/],
  ] as const) {
    const res = await fetch(`${base}${path}`);
    t.equal(res.status, 200, path);
    t.match(res.headers.get('content-type'), type, path);
    t.equal(res.headers.get('content-security-policy'), CONTENT_SECURITY_POLICY, path);
    t.equal(res.headers.get('x-content-type-options'), 'nosniff', path);
    await res.arrayBuffer(); // an unread body keeps the connection busy and app.close() waiting
  }
  t.match(await (await fetch(`${base}/web/vendor/jsQR.js`)).text(), /jsQR/, 'the decoder is jsQR');
});

t.test('phone: typed code → session; two typed devices → waiting → receiving; unpair one', async (t) => {
  const { page, errors } = await browser.open(PHONE);
  await page.goto(`${base}/pair#token=${PAIRING}`);
  await page.getByLabel("Code on the gateway's label").waitFor();
  t.equal(await textOf(page, 'whoami'), 'signed in as pat (pairing, all sites)');
  t.notOk(page.url().includes('#'), 'token fragment dropped');
  await saveScreenshot(page, 'pair-phone-1-code');

  await page.getByLabel("Code on the gateway's label").fill('7k3qx-m9p2d');
  await page.getByRole('button', { name: 'Start pairing' }).click();
  await until(page, 'session-info', 'Pairing with gw-north-1 — online');
  t.same(seen.sessionPosts.at(-1), { code: '7K3QX-M9P2D' }, 'the code is sent upper-cased');
  await saveScreenshot(page, 'pair-phone-2-session');

  await page.getByLabel('Bluetooth address').fill('aa:bb:cc:dd:ee:01');
  await page.getByLabel('Model').selectOption('heart_rate');
  await page.getByLabel('Name (optional)').fill('Wristband Ana');
  await page.getByRole('button', { name: 'Add device' }).click();
  await until(page, 'device-state-AA:BB:CC:DD:EE:01', 'waiting-for-gateway');
  t.same(seen.devicePosts.at(-1), { address: 'AA:BB:CC:DD:EE:01', profile: 'heart_rate', name: 'Wristband Ana' });
  t.match(await textOf(page, 'device-AA:BB:CC:DD:EE:01'), /Wristband Ana/);

  await page.getByLabel('Bluetooth address').fill('AA:BB:CC:DD:EE:02');
  await page.getByLabel('Model').selectOption('health_thermometer');
  await page.getByRole('button', { name: 'Add device' }).click();
  await until(page, 'device-state-AA:BB:CC:DD:EE:02', 'waiting-for-gateway');
  t.same(seen.devicePosts.at(-1), { address: 'AA:BB:CC:DD:EE:02', profile: 'health_thermometer' }, 'no name: none sent');
  t.match(await textOf(page, 'device-AA:BB:CC:DD:EE:02'), /Skin-temperature patch/);
  await saveScreenshot(page, 'pair-phone-3-waiting');

  const one = gateways.north.devices.get('AA:BB:CC:DD:EE:01');
  const two = gateways.north.devices.get('AA:BB:CC:DD:EE:02');
  if (!one || !two) throw new Error('the stub did not record the devices');
  one.state = 'connecting';
  await until(page, 'device-state-AA:BB:CC:DD:EE:01', 'connecting');
  Object.assign(one, { state: 'receiving', lastSeen: iso(Date.now() - 1000), battery: 81, rssi: -62, lastValue: 72, lastKind: 'heart_rate', lastUnit: '/min' });
  Object.assign(two, { state: 'receiving', lastSeen: iso(Date.now() - 1000), battery: 47 });
  await until(page, 'device-state-AA:BB:CC:DD:EE:01', 'receiving');
  await until(page, 'device-state-AA:BB:CC:DD:EE:02', 'receiving');
  t.match(await textOf(page, 'device-AA:BB:CC:DD:EE:01'), /battery 81 %/);
  t.match(await textOf(page, 'device-AA:BB:CC:DD:EE:01'), /72 \/min/, 'the last value the gateway reported');
  t.match(await textOf(page, 'device-AA:BB:CC:DD:EE:01'), /signal -62 dBm/);
  t.match(await textOf(page, 'device-AA:BB:CC:DD:EE:02'), /seen (just now|\d+ s ago)/);
  await saveScreenshot(page, 'pair-phone-4-receiving');

  const widths = await page.evaluate<number>('document.documentElement.scrollWidth');
  t.ok(widths <= PHONE.width, `page fits 390 px (scrollWidth ${widths})`);

  await page.getByRole('button', { name: 'Unpair Wristband Ana (AA:BB:CC:DD:EE:01)' }).click();
  await page.getByTestId('device-AA:BB:CC:DD:EE:01').waitFor({ state: 'detached' });
  t.same(seen.deletes.at(-1), 'ps-1 AA:BB:CC:DD:EE:01', 'the stub saw the DELETE');
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(await page.getByTestId('device-AA:BB:CC:DD:EE:01').count(), 0, 'stays gone across polls');
  t.equal(await textOf(page, 'device-state-AA:BB:CC:DD:EE:02'), 'receiving');
  await saveScreenshot(page, 'pair-phone-5-unpaired');
  t.same(errors, [], 'no console errors');
  await page.close();
});

t.test('an asleep gateway: the session says when it will pick the change up', async (t) => {
  const { page, errors } = await browser.open(PHONE);
  await openSession(page, '4HF7T-22QWE');
  // The browser runs in UTC (browser.ts), so the stub's 14:35Z is 14:35 on the page.
  await until(page, 'session-info', 'Pairing with gw-south-2 — asleep: it will pick this up at its next check-in around 14:35');
  t.same(errors, []);
  await page.close();
});

t.test('an unknown code, then too many: the page says so and stays on step 1', async (t) => {
  const { page, errors } = await browser.open(PHONE);
  await openSession(page, 'NOPE1-NOPE2');
  await until(page, 'status', 'No gateway has this code; check the label.');
  t.ok(await page.getByTestId('device-form').isHidden(), 'no device step without a session');
  t.equal(await page.getByLabel("Code on the gateway's label").getAttribute('aria-invalid'), 'true');
  await saveScreenshot(page, 'pair-phone-unknown-code');

  rateLimited = true;
  t.teardown(() => {
    rateLimited = false;
  });
  await page.getByRole('button', { name: 'Start pairing' }).click();
  await until(page, 'status', 'too many unknown codes; wait 10 minutes before trying again');
  t.same(errors.filter((e) => !/status of (404|429)/.test(e)), [], 'no console errors beyond the failed requests themselves');
  await page.close();
});

t.test('a malformed address: a client-side message, nothing posted', async (t) => {
  const { page, errors } = await browser.open(PHONE);
  await openSession(page, '7K3QX-M9P2D');
  await until(page, 'session-info', /gw-north-1/);
  const posts = seen.devicePosts.length;
  await page.getByLabel('Bluetooth address').fill('AA:BB:CC:DD:EE');
  await page.getByRole('button', { name: 'Add device' }).click();
  await until(page, 'address-error', /is not a Bluetooth address: use six pairs of 0–9 or A–F separated by colons/);
  t.equal(await page.getByLabel('Bluetooth address').getAttribute('aria-invalid'), 'true');
  t.equal(await page.getByTestId('status').getAttribute('aria-live'), 'polite');
  await saveScreenshot(page, 'pair-phone-bad-address');
  await page.getByLabel('Bluetooth address').fill('GG:BB:CC:DD:EE:FF');
  await page.keyboard.press('Enter');
  await until(page, 'address-error', /"GG:BB:CC:DD:EE:FF" is not a Bluetooth address/);
  t.equal(seen.devicePosts.length, posts, 'no POST');
  t.same(errors, []);
  await page.close();
});

t.test('a device paired with another gateway: 409 names that gateway', async (t) => {
  gateways.south.devices.set('AA:BB:CC:DD:EE:77', { address: 'AA:BB:CC:DD:EE:77', profile: 'heart_rate', name: null, state: 'receiving' });
  t.teardown(() => gateways.south.devices.delete('AA:BB:CC:DD:EE:77'));
  const { page } = await browser.open(PHONE);
  await openSession(page, '7K3QX-M9P2D');
  await until(page, 'session-info', /gw-north-1/);
  await page.getByLabel('Bluetooth address').fill('aa:bb:cc:dd:ee:77');
  await page.getByRole('button', { name: 'Add device' }).click();
  await until(page, 'status', 'AA:BB:CC:DD:EE:77 is already paired to gateway gw-south-2; unpair it there first.');
  t.match(await textOf(page, 'address-error'), /already paired to gateway gw-south-2/);
  t.equal(await page.getByTestId('device-AA:BB:CC:DD:EE:77').count(), 0);
  await saveScreenshot(page, 'pair-phone-409');
  await page.close();
});

t.test('polling stops when the session expires', async (t) => {
  const { page, errors } = await browser.open(PHONE);
  await openSession(page, '9ZZZZ-SHORT');
  await until(page, 'session-info', /has expired/);
  t.match(await textOf(page, 'status'), /expired; enter the code again/);
  t.ok(await page.getByTestId('device-form').isHidden(), 'no adding to an expired session');
  const gets = seen.gets;
  await new Promise((r) => setTimeout(r, 2500));
  t.equal(seen.gets, gets, 'no more polling');
  t.same(errors, []);
  await page.close();
});

t.test('a viewer token is told pairing needs another role; a stranger gets the sign-in form', async (t) => {
  const { page } = await browser.open(PHONE);
  await page.goto(`${base}/pair#token=${VIEWER}`);
  await until(page, 'status', 'Pairing needs a pairing or operator token; this one is viewer.');
  t.ok(await page.getByTestId('code-form').isHidden());
  await page.close();
  const { page: other } = await browser.open(PHONE);
  await other.goto(`${base}/pair#token=flc_unknown`);
  await other.getByTestId('token-form').waitFor();
  t.match(await textOf(other, 'status'), /no valid token/);
  await other.getByLabel('Token').fill(PAIRING);
  await other.getByRole('button', { name: 'Sign in' }).click();
  await other.getByTestId('code-form').waitFor();
  await other.close();
});

t.test('no camera API (an insecure origin): the page says so and keeps the typed field', async (t) => {
  const { page } = await browser.open(PHONE);
  // 127.0.0.1 is a secure context, so take the API away to act as plain HTTP would.
  await page.addInitScript('Object.defineProperty(navigator, "mediaDevices", { value: undefined })');
  await page.goto(`${base}/pair#token=${PAIRING}`);
  await page.getByTestId('scan-label').click();
  await until(page, 'status', /camera is not available here: it needs a secure connection \(HTTPS or localhost\).*Type the code instead/);
  t.ok(await page.getByTestId('scanner').isHidden());
  t.ok(await page.getByLabel("Code on the gateway's label").evaluate((e) => e === e.ownerDocument.activeElement), 'focus on the typed field');
  await page.close();
});

t.test('scanning through a (fake) camera: the label opens the session, the wearable is added', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-fake-camera-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const clip = join(dir, 'qr.y4m');
  // Two seconds of the gateway label as printed with --companion-url (a link), then two of a
  // wearable: each scan must skip the other's code.
  writeFileSync(clip, qrClip(['https://fieldlink.example.com/pair#gateway=gw-north-1&code=7K3QX-M9P2D', 'fieldlink:device?address=aa:bb:cc:dd:ee:31&profile=environmental_sensing'], 10));
  const camera = await launchBrowser(t, {
    args: ['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', `--use-file-for-fake-video-capture=${clip}`],
  });
  const { page, errors } = await camera.open(PHONE);
  await page.goto(`${base}/pair#token=${PAIRING}`);
  await page.getByTestId('scan-label').click();
  await page.getByTestId('scanner').waitFor();
  await saveScreenshot(page, 'pair-phone-scanning');
  await eventually(10_000, 'session opened from the scanned label', async () => (/^Pairing with gw-north-1 — online$/.test(await textOf(page, 'session-info')) ? true : undefined));
  t.same(seen.sessionPosts.at(-1), { code: '7K3QX-M9P2D' }, 'the code came from the QR');
  t.ok(await page.getByTestId('scanner').isHidden(), 'the camera closes after a hit');

  const posts = seen.devicePosts.length;
  await page.getByTestId('scan-device').click();
  await until(page, 'device-state-AA:BB:CC:DD:EE:31', 'waiting-for-gateway');
  t.same(seen.devicePosts.slice(posts), [{ address: 'AA:BB:CC:DD:EE:31', profile: 'environmental_sensing' }], 'one POST, from the QR');
  t.match(await textOf(page, 'device-AA:BB:CC:DD:EE:31'), /Environment sensor/);
  t.ok(await page.getByTestId('scanner').isHidden());
  await saveScreenshot(page, 'pair-phone-scanned');
  t.same(errors, []);
  await page.close();
});

t.test("a gateway label's link opened by the phone camera: sign in with a pairing link, the session opens by itself", async (t) => {
  const { page, errors } = await browser.open(PHONE);
  const posts = seen.sessionPosts.length;
  // What the label QR holds when provisioned with --companion-url.
  await page.goto(`${base}/pair#gateway=gw-north-1&code=7K3QX-M9P2D`);
  await until(page, 'status', /Label of gateway gw-north-1 scanned\. Sign in with your pairing link or token/);
  t.notOk(page.url().includes('#'), 'the code leaves the address bar at once');
  t.equal(seen.sessionPosts.length, posts, 'nothing is posted before signing in');
  await saveScreenshot(page, 'pair-phone-label-link');
  await page.getByLabel('Token').fill(LINK);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await until(page, 'session-info', /^Pairing with gw-north-1 — online$/);
  t.same(seen.sessionPosts.slice(posts), [{ code: '7K3QX-M9P2D' }], 'one session, from the label');
  t.match(await textOf(page, 'whoami'), /^signed in as osaka-link \(pairing, site Osaka plant, until \d\d:\d\d\)$/, 'the scope and expiry of the link are shown');
  // Reloading does not open another session from the (used) label code.
  await page.reload();
  await until(page, 'session-info', /^Pairing with gw-north-1/);
  t.equal(seen.sessionPosts.length, posts + 1, 'the label code is used once');
  t.same(errors, []);
  await page.close();
});

t.test('polling pauses while the page is hidden and resumes when it is shown', async (t) => {
  const { page, errors } = await browser.open(PHONE);
  await openSession(page, '7K3QX-M9P2D');
  await until(page, 'session-info', /gw-north-1/);
  const setVisibility = (state: string) =>
    page.evaluate(`(() => {
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => '${state}' });
      document.dispatchEvent(new Event('visibilitychange'));
    })()`);
  await setVisibility('hidden');
  await new Promise((r) => setTimeout(r, 300)); // a request already on its way may land
  const gets = seen.gets;
  await new Promise((r) => setTimeout(r, 2500));
  t.equal(seen.gets, gets, 'no polling while hidden');
  await setVisibility('visible');
  await eventually(5000, 'polling again', async () => (seen.gets > gets + 1 ? true : undefined));
  t.same(errors, []);
  await page.close();
});
