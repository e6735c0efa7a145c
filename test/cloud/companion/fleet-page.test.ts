import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import t from 'tap';
import { CONTENT_SECURITY_POLICY, registerWebRoutes } from '../../../cloud/src/web-routes.js';
import { PHONE, launchBrowser, saveScreenshot } from '../../helpers/browser.js';
import { eventually } from '../../helpers/deadline.js';

// The fleet page (cloud/web/) in real headless Chromium against a stub of the companion's JSON
// API: the routes under test are the page's own; the API here only plays back in-test state.

type Role = 'operator' | 'viewer' | 'pairing';
type CommandStatus = 'sending' | 'queued' | 'delivered' | 'rejected' | 'expired' | 'undeliverable' | 'failed';

interface Command {
  id: string;
  gateway: string;
  type: 'wake' | 'measure' | 'sleep';
  payload: Record<string, unknown>;
  status: CommandStatus;
  statusReason: string | null;
  created: string;
  updated: string;
  expiresAt: string;
}

const OPERATOR = 'flc_operator-token-for-the-fleet-page-test-0000000';
const VIEWER = 'flc_viewer-token-for-the-fleet-page-test-00000000';
const tokens = new Map<string, { name: string; role: Role }>([
  [OPERATOR, { name: 'alice', role: 'operator' }],
  [VIEWER, { name: 'bob', role: 'viewer' }],
]);

const now = Date.now();
const iso = (ms: number) => new Date(ms).toISOString();
const gateways = [
  {
    id: 'gw-north-1',
    health: 'ok',
    healthReasons: [],
    connected: false,
    power: { state: 'standby', lastCheckIn: iso(now - 120_000), lastWakeReason: 'schedule', checkInIntervalS: 900, nextCheckIn: iso(now + 780_000) },
    outbox: { depth: 3, oldestAgeS: 95 },
    sourcesWithErrors: [],
    config: { status: 'applied' },
    firmware: '0.1.0',
  },
  {
    id: 'gw-south-2',
    health: 'late',
    healthReasons: ['missed its check-in by 4 min'],
    connected: false,
    power: { state: 'standby', lastCheckIn: iso(now - 1_140_000), lastWakeReason: null, checkInIntervalS: 900, nextCheckIn: null },
    outbox: null,
    sourcesWithErrors: ['thermostat-2'],
    config: { status: 'pending' },
    firmware: null,
  },
];

const seen = { authorization: [] as string[], posts: [] as { gateway: string; body: unknown }[], commandGets: 0 };
const commands = new Map<string, Command>();
let failCommands: { status: number; code: string; message: string } | undefined;
let staleFleet: string | undefined;

// Chromium keeps connections alive: close them with the server, or teardown waits for their timeout.
const app = Fastify({ forceCloseConnections: true });
registerWebRoutes(app);
const problem = (reply: FastifyReply, status: number, code: string, message: string) => reply.code(status).send({ code, message });
const principal = (req: FastifyRequest) => {
  const header = req.headers.authorization ?? '';
  seen.authorization.push(header);
  return tokens.get(header.replace(/^Bearer /, ''));
};
app.addHook('onRequest', async (req, reply) => {
  if (!req.url.startsWith('/v1/')) return;
  if (!principal(req)) return problem(reply, 401, 'AUTH_REQUIRED', 'no valid token');
});
app.get('/v1/whoami', async (req) => principal(req));
app.get('/v1/gateways', async () => ({
  gateways,
  total: gateways.length,
  nextCursor: null,
  asOf: new Date().toISOString(),
  stale: staleFleet !== undefined,
  ...(staleFleet === undefined ? {} : { refreshError: staleFleet }),
}));
app.post<{ Params: { id: string }; Body: { type: Command['type']; forS?: number } }>('/v1/gateways/:id/commands', async (req, reply) => {
  if (principal(req)?.role !== 'operator') return problem(reply, 403, 'AUTH_FORBIDDEN', 'operators only');
  seen.posts.push({ gateway: req.params.id, body: req.body });
  if (failCommands) return problem(reply, failCommands.status, failCommands.code, failCommands.message);
  const queued = [...commands.values()].find((c) => c.gateway === req.params.id && c.type === req.body.type && c.status === 'queued');
  if (queued) return reply.code(202).send({ command: queued, coalesced: true, note: 'the queued wake keeps its stay-online time' });
  const created = new Date().toISOString();
  const { type, ...payload } = req.body;
  const command: Command = {
    id: `cmd-${commands.size + 1}`,
    gateway: req.params.id,
    type,
    payload,
    status: 'queued',
    statusReason: null,
    created,
    updated: created,
    expiresAt: iso(Date.now() + 3_600_000),
  };
  commands.set(command.id, command);
  return reply.code(202).send({ command, coalesced: false });
});
app.get<{ Params: { id: string } }>('/v1/commands/:id', async (req, reply) => {
  seen.commandGets += 1;
  return commands.get(req.params.id) ?? problem(reply, 404, 'COMMAND_NOT_FOUND', 'no such command');
});
await app.listen({ host: '127.0.0.1', port: 0 });
t.teardown(() => app.close());
const address = app.server.address();
if (address === null || typeof address === 'string') throw new Error('no TCP address');
const base = `http://127.0.0.1:${address.port}`;

const browser = await launchBrowser(t);

t.test('static routes: redirect, security headers, content types', async (t) => {
  const root = await fetch(`${base}/`, { redirect: 'manual' });
  t.equal(root.status, 302);
  t.equal(root.headers.get('location'), '/fleet');
  const html = await fetch(`${base}/fleet`);
  t.equal(html.status, 200);
  t.match(html.headers.get('content-type'), /^text\/html/);
  t.equal(html.headers.get('content-security-policy'), CONTENT_SECURITY_POLICY);
  t.equal(html.headers.get('x-content-type-options'), 'nosniff');
  t.equal(html.headers.get('referrer-policy'), 'no-referrer');
  t.equal(html.headers.get('cache-control'), 'no-store');
  const js = await fetch(`${base}/web/fleet.js`);
  t.match(js.headers.get('content-type'), /^text\/javascript/);
  t.equal(js.headers.get('content-security-policy'), CONTENT_SECURITY_POLICY);
  const css = await fetch(`${base}/web/fleet.css`);
  t.match(css.headers.get('content-type'), /^text\/css/);
  t.notOk((await html.text()).match(/https?:\/\/(?!www\.w3\.org)/), 'the page loads nothing from elsewhere');
});

t.test('a token in the fragment: fleet listed, fragment dropped, CSP set, no console errors', async (t) => {
  const { page, errors } = await browser.open();
  const before = seen.authorization.length;
  const res = await page.goto(`${base}/fleet#token=${OPERATOR}`);
  t.equal(res?.headers()['content-security-policy'], CONTENT_SECURITY_POLICY);

  await page.getByTestId('gateway-row-gw-north-1').waitFor();
  await page.getByTestId('gateway-row-gw-south-2').waitFor();
  t.equal(await page.getByTestId('health-gw-north-1').textContent(), 'ok');
  t.equal(await page.getByTestId('health-gw-south-2').textContent(), 'late');
  t.match(await page.getByTestId('gateway-row-gw-south-2').textContent(), /missed its check-in by 4 min/);
  t.match(await page.getByTestId('gateway-row-gw-south-2').textContent(), /thermostat-2/);
  const north = (await page.getByTestId('gateway-row-gw-north-1').textContent()) ?? '';
  t.match(north, /asleep, next check-in \d\d:\d\d:\d\d/);
  t.match(north, /2 min ago/);
  t.match(north, /3 queued, oldest 1 min/);
  t.equal(await page.getByTestId('whoami').textContent(), 'signed in as alice (operator)');
  t.equal(await page.getByTestId('counts').textContent(), 'showing 2 of 2');
  t.match(await page.getByTestId('as-of').textContent(), /^as of \d\d:\d\d:\d\d$/);

  t.notOk(page.url().includes('#'), `fragment gone: ${page.url()}`);
  t.equal(await page.evaluate<string>('location.hash'), '');
  t.ok(seen.authorization.slice(before).includes(`Bearer ${OPERATOR}`), 'the API saw the token as a bearer header');
  t.same(errors, [], 'no console errors');
  await saveScreenshot(page, 'fleet-desktop');
  await page.close();
});

t.test('wake: posts the typed duration, status follows queued → delivered', async (t) => {
  const { page, errors } = await browser.open();
  await page.goto(`${base}/fleet#token=${OPERATOR}`);
  await page.getByTestId('wake-gw-north-1').waitFor();
  await page.getByTestId('gateway-row-gw-north-1').getByLabel('stay online (s)').fill('900');
  const posts = seen.posts.length;
  await page.getByTestId('wake-gw-north-1').click();

  const status = page.getByTestId('command-status-gw-north-1');
  await eventually(5000, 'queued shown', async () => ((await status.textContent()) === 'queued' ? true : undefined));
  t.same(seen.posts.slice(posts), [{ gateway: 'gw-north-1', body: { type: 'wake', forS: 900 } }]);
  const cmd = [...commands.values()].at(-1);
  if (!cmd) throw new Error('no command recorded');

  await page.getByTestId('wake-gw-north-1').click();
  await eventually(5000, 'coalesced shown', async () =>
    /\(joined the wake already queued\) the queued wake keeps its stay-online time/.test((await page.getByTestId('command-note-gw-north-1').textContent()) ?? '') ? true : undefined,
  );
  t.equal(await status.textContent(), 'queued', 'still queued after joining');

  const gets = seen.commandGets;
  cmd.status = 'delivered';
  cmd.updated = new Date().toISOString();
  await eventually(5000, 'delivered shown', async () => ((await status.textContent()) === 'delivered' ? true : undefined));
  t.ok(seen.commandGets > gets, 'the page polled the command');
  const settled = seen.commandGets;
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(seen.commandGets, settled, 'polling stops at a final status');
  t.same(errors, []);
  await page.close();
});

t.test('a viewer sees disabled command buttons saying why', async (t) => {
  const { page } = await browser.open();
  await page.goto(`${base}/fleet#token=${VIEWER}`);
  const wake = page.getByTestId('wake-gw-north-1');
  await wake.waitFor();
  t.equal(await page.getByTestId('whoami').textContent(), 'signed in as bob (viewer)');
  t.ok(await wake.isDisabled(), 'wake disabled');
  t.ok(await page.getByTestId('measure-gw-south-2').isDisabled(), 'measure disabled');
  t.match(await wake.getAttribute('title'), /Only operators/);
  await page.close();
});

t.test('401: the token form appears; signing in with a good token works; sign out clears it', async (t) => {
  const { page } = await browser.open();
  await page.goto(`${base}/fleet#token=flc_not-a-known-token`);
  const form = page.getByTestId('token-form');
  await form.waitFor();
  t.match(await page.getByTestId('status').textContent(), /no valid token/);
  t.equal(await page.evaluate<number>('sessionStorage.length'), 0, 'the refused token is not kept');

  await page.getByLabel('Token').fill(OPERATOR);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('gateway-row-gw-north-1').waitFor();
  t.ok(await form.isHidden(), 'form hidden once signed in');

  await page.reload();
  await page.getByTestId('gateway-row-gw-north-1').waitFor();
  t.pass('the token survives a reload in the same tab (sessionStorage)');

  await page.getByRole('button', { name: 'Sign out' }).click();
  await form.waitFor();
  t.equal(await page.evaluate<number>('sessionStorage.length'), 0, 'signed out: nothing kept');
  t.equal(await page.getByTestId('gateway-row-gw-north-1').count(), 0, 'table cleared');
  await page.close();
});

t.test('phone width: no page-level sideways scroll, the table scrolls, commands work', async (t) => {
  const { page, errors } = await browser.open(PHONE);
  await page.goto(`${base}/fleet#token=${OPERATOR}`);
  await page.getByTestId('gateway-row-gw-south-2').waitFor();
  // A string expression: tsconfig has no DOM lib, and this runs in the page.
  const widths = await page.evaluate<{ page: number; wrapScroll: number; wrapClient: number }>(`(() => {
    const wrap = document.getElementById('table-wrap');
    return { page: document.documentElement.scrollWidth, wrapScroll: wrap.scrollWidth, wrapClient: wrap.clientWidth };
  })()`);
  t.ok(widths.page <= PHONE.width, `page fits 390 px (scrollWidth ${widths.page})`);
  t.ok(widths.wrapScroll > widths.wrapClient, 'the table scrolls inside its box');
  await saveScreenshot(page, 'fleet-phone');

  await page.getByTestId('measure-gw-south-2').click();
  const status = page.getByTestId('command-status-gw-south-2');
  await eventually(5000, 'measure queued', async () => ((await status.textContent()) === 'queued' ? true : undefined));
  t.same(seen.posts.at(-1), { gateway: 'gw-south-2', body: { type: 'measure' } });
  await saveScreenshot(page, 'fleet-phone-command');
  t.same(errors, []);
  await page.close();
});

t.test('empty fleet: a friendly empty state; a failing command: the problem message', async (t) => {
  const saved = gateways.splice(0, gateways.length);
  t.teardown(() => {
    gateways.push(...saved);
  });
  const { page } = await browser.open();
  await page.goto(`${base}/fleet#token=${OPERATOR}`);
  const empty = page.getByTestId('empty');
  await empty.waitFor();
  t.match(await empty.textContent(), /No gateways have reported yet/);
  t.equal(await page.getByTestId('counts').textContent(), 'showing 0 of 0');
  t.ok(await page.getByTestId('fleet-table').isHidden(), 'no empty table');

  gateways.push(...saved.splice(0, saved.length));
  await page.getByRole('button', { name: 'Refresh' }).click();
  await page.getByTestId('gateway-row-gw-north-1').waitFor();
  t.ok(await empty.isHidden(), 'empty state gone once gateways exist');

  failCommands = { status: 503, code: 'HUB_UNAVAILABLE', message: 'IoT Hub did not answer; try again shortly' };
  t.teardown(() => {
    failCommands = undefined;
  });
  await page.getByTestId('wake-gw-south-2').click();
  await eventually(5000, 'problem message shown', async () =>
    /IoT Hub did not answer; try again shortly/.test((await page.getByTestId('status').textContent()) ?? '') ? true : undefined,
  );
  t.equal(await page.getByTestId('status').getAttribute('aria-live'), 'polite');
  t.match(await page.getByTestId('command-note-gw-south-2').textContent(), /IoT Hub did not answer/);
  t.equal(await page.getByTestId('command-status-gw-south-2').textContent(), '');
  await page.close();
});

t.test('a stale fleet view (IoT Hub unreachable) says so, with the reason on hover', async (t) => {
  const { page } = await browser.open();
  await page.goto(`${base}/fleet#token=${OPERATOR}`);
  await page.getByTestId('gateway-row-gw-north-1').waitFor();
  t.notMatch((await page.getByTestId('as-of').textContent()) ?? '', /stale/);
  staleFleet = 'refresh the fleet view: IoT Hub cannot be reached (ECONNREFUSED)';
  t.teardown(() => {
    staleFleet = undefined;
  });
  await page.getByRole('button', { name: 'Refresh' }).click();
  await eventually(5000, 'stale shown', async () => (/stale: IoT Hub not reachable/.test((await page.getByTestId('as-of').textContent()) ?? '') ? true : undefined));
  t.match(await page.getByTestId('as-of').getAttribute('title'), /ECONNREFUSED/);
  await page.close();
});
