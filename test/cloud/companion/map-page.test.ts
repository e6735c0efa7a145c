import { readFileSync } from 'node:fs';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import t from 'tap';
import { REGION_LEVELS, type RegionLevel } from '../../../cloud/src/locations/region-analytics.js';
import { renderRegionMap } from '../../../cloud/src/locations/world-map.js';
import { CONTENT_SECURITY_POLICY, registerWebRoutes } from '../../../cloud/src/web-routes.js';
import { PHONE, launchBrowser, saveScreenshot } from '../../helpers/browser.js';
import { eventually } from '../../helpers/deadline.js';
import { regionFixture } from '../locations/world-map-fixture.js';

// The map page (cloud/web/map.*) in real headless Chromium against a stub of the companion's
// analytics API: the regions JSON and the CSV are played back from the fixture, the SVG is the
// real renderRegionMap() output for it.

const TOKEN = 'flc_viewer-token-for-the-map-page-test-0000000000';
const CSV = 'key,country,devices\nJP/Osaka,JP,60\n';

interface Seen {
  path: string;
  level: string | undefined;
  months: string | undefined;
  authorization: string;
}
const seen: Seen[] = [];
let failMap: { status: number; code: string; message: string } | undefined;

// Chromium keeps connections alive: close them with the server, or teardown waits for their timeout.
const app = Fastify({ forceCloseConnections: true });
registerWebRoutes(app);
const problem = (reply: FastifyReply, status: number, code: string, message: string) => reply.code(status).send({ code, message });
const levelOf = (req: FastifyRequest): RegionLevel => {
  const level = (req.query as { level?: string }).level;
  return REGION_LEVELS.find((l) => l === level) ?? 'country';
};
app.addHook('onRequest', async (req, reply) => {
  if (!req.url.startsWith('/v1/')) return;
  const query = req.query as { level?: string; months?: string };
  const authorization = req.headers.authorization ?? '';
  seen.push({ path: req.url.split('?')[0] ?? '', level: query.level, months: query.months, authorization });
  if (authorization !== `Bearer ${TOKEN}`) return problem(reply, 401, 'AUTH_REQUIRED', 'no valid token');
});
app.get('/v1/whoami', async () => ({ name: 'carol', role: 'viewer' }));
app.get('/v1/gateways', async () => ({ gateways: [], total: 0, nextCursor: null, asOf: new Date().toISOString(), stale: false }));
app.get('/v1/analytics/regions', async (req) => regionFixture(levelOf(req)));
app.get('/v1/analytics/map.svg', async (req, reply) => {
  if (failMap) return problem(reply, failMap.status, failMap.code, failMap.message);
  return reply.type('image/svg+xml').send(renderRegionMap(regionFixture(levelOf(req))));
});
app.get('/v1/analytics/regions.csv', async (_req, reply) => reply.type('text/csv; charset=utf-8').send(CSV));
await app.listen({ host: '127.0.0.1', port: 0 });
t.teardown(() => app.close());
const address = app.server.address();
if (address === null || typeof address === 'string') throw new Error('no TCP address');
const base = `http://127.0.0.1:${address.port}`;

const browser = await launchBrowser(t);

const requests = (path: string, from: number) => seen.slice(from).filter((s) => s.path === path);

t.test('static routes: the page and its assets, with the security headers', async (t) => {
  const html = await fetch(`${base}/map`);
  t.equal(html.status, 200);
  t.match(html.headers.get('content-type'), /^text\/html/);
  t.equal(html.headers.get('content-security-policy'), CONTENT_SECURITY_POLICY);
  t.equal(html.headers.get('cache-control'), 'no-store');
  const js = await fetch(`${base}/web/map.js`);
  t.match(js.headers.get('content-type'), /^text\/javascript/);
  const css = await fetch(`${base}/web/map.css`);
  t.match(css.headers.get('content-type'), /^text\/css/);
  const text = await html.text();
  t.same(text.match(/https?:\/\/[^"\s<]+/g), ['https://db-ip.com'], 'nothing from elsewhere; only the licence link');
  t.notMatch(text, /style=|<style|<script>/, 'no inline styles or scripts');
  t.match(await (await fetch(`${base}/fleet`)).text(), '<a href="/map">', 'the fleet page links to the map');
});

t.test('map and table render; switching level re-fetches; declining highlighted in map and table', async (t) => {
  const { page, errors } = await browser.open();
  const before = seen.length;
  const res = await page.goto(`${base}/map#token=${TOKEN}`);
  t.equal(res?.headers()['content-security-policy'], CONTENT_SECURITY_POLICY);
  await page.locator('[data-testid="map"] svg path.country').first().waitFor();
  await page.getByTestId('region-row-JP').waitFor();
  t.notOk(page.url().includes('#'), 'token fragment dropped');

  t.equal(await page.locator('[data-testid="map"] svg').count(), 1, 'one inline SVG map');
  t.equal(await page.locator('[data-testid="map"] svg path.country').count(), 176, 'a path per country');
  t.equal(await page.locator('[data-testid="map"] svg path[data-country="JP"]').getAttribute('data-class'), '4');
  t.equal(await page.locator('[data-testid="map"] svg').getAttribute('role'), 'img');
  t.match(await page.locator('[data-testid="map"] svg desc').textContent(), /^395 devices in 6 countries; none declining$/);
  t.equal(await page.locator('#regions-body tr').count(), 6, 'a row per country');
  const jp = (await page.getByTestId('region-row-JP').textContent()) ?? '';
  t.match(jp, /^Japan240211± 50 km/, 'name, devices, active, accuracy');
  t.match(jp, /steady or growing/);
  t.equal(await page.getByTestId('region-row-JP').locator('svg.sparkline polyline').count(), 2, 'a sparkline: complete months, and the current one dashed');
  t.match(await page.getByTestId('region-row-JP').locator('svg.sparkline').getAttribute('aria-label'), /^Onboarded per month: 2026-06: 34, 2026-07: 37/);
  t.equal(await page.locator('tr.declining').count(), 0, 'nothing declining per country');
  t.match(await page.getByTestId('unlocated').textContent(), /^Not on the map: 10 devices without a location: 4 behind a private address .*; 1 on a reserved address; 2 at an address the database does not know; 3 never seen connecting\.$/);
  t.match(await page.getByTestId('attribution').textContent(), /IP geolocation by DB-IP/);
  t.equal(await page.getByTestId('attribution').getByRole('link', { name: 'DB-IP' }).getAttribute('href'), 'https://db-ip.com');
  t.same(
    requests('/v1/analytics/regions', before).map((s) => [s.level, s.months, s.authorization]),
    [['country', '12', `Bearer ${TOKEN}`]],
  );
  t.same(requests('/v1/analytics/map.svg', before).map((s) => [s.level, s.months, s.authorization]), [['country', '12', `Bearer ${TOKEN}`]]);

  const beforeSwitch = seen.length;
  await page.getByLabel('Group by').selectOption('region');
  await page.getByTestId('region-row-JP/Osaka').waitFor();
  await page.locator('[data-testid="map"] svg .declining[data-key="JP/Osaka"]').waitFor();
  t.same(requests('/v1/analytics/regions', beforeSwitch).map((s) => s.level), ['region'], 'regions re-fetched with the new level');
  t.same(requests('/v1/analytics/map.svg', beforeSwitch).map((s) => s.level), ['region'], 'map re-fetched with the new level');
  t.equal(await page.locator('[data-testid="map"] svg .declining').count(), 1, 'one declining region on the map');
  t.match(await page.locator('[data-testid="map"] svg .declining circle').getAttribute('stroke-dasharray'), /\d/, 'dashed outline');
  t.equal(await page.getByTestId('declining-JP/Osaka').textContent(), '▼ declining since 2026-08', 'badge text in the table');
  t.match(await page.getByTestId('region-row-JP/Osaka').getAttribute('class'), /declining/, 'row highlighted');
  t.match(await page.getByTestId('map-summary').textContent(), /declining: Osaka, Japan/);
  t.match(page.url(), /\/map\?level=region&months=12$/, 'the choice is kept in the address');

  const beforeMonths = seen.length;
  await page.getByLabel('History').selectOption('24');
  await eventually(5000, 'months re-fetched', async () => (requests('/v1/analytics/map.svg', beforeMonths).length ? true : undefined));
  t.same(requests('/v1/analytics/regions', beforeMonths).map((s) => [s.level, s.months]), [['region', '24']]);

  await page.getByLabel('Group by').selectOption('city');
  const paris = page.getByTestId('region-row-FR/Île-de-France/<Paris & "Co">');
  await paris.waitFor();
  t.match(await paris.locator('th').textContent(), /^<Paris & "Co">, Île-de-France, France$/, 'a database name shown as text');
  t.equal(await page.locator('#regions-body b, #regions-body script').count(), 0, 'never as HTML');
  await page.locator('[data-testid="map"] svg .declining[data-key="JP/Osaka/Osaka"]').waitFor();
  t.equal(await page.locator('[data-testid="map"] svg g.bubble').count(), 7, 'a bubble per city');
  t.same(errors, [], 'no console errors (CSP violations would be)');
  await saveScreenshot(page, 'map-desktop-city');
  await page.close();
});

t.test('Download CSV: fetched with the token, saved through a blob link', async (t) => {
  const { page, errors } = await browser.open();
  await page.goto(`${base}/map?level=region&months=6#token=${TOKEN}`);
  await page.getByTestId('region-row-JP/Osaka').waitFor();
  t.equal(await page.getByLabel('Group by').inputValue(), 'region', 'level from the address');
  const before = seen.length;
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download CSV' }).click()]);
  t.equal(download.suggestedFilename(), 'fleet-regions-region-6m.csv');
  t.match(download.url(), /^blob:/);
  const file = await download.path();
  t.equal(readFileSync(file, 'utf8'), CSV, 'the CSV as served');
  t.same(requests('/v1/analytics/regions.csv', before), [{ path: '/v1/analytics/regions.csv', level: 'region', months: '6', authorization: `Bearer ${TOKEN}` }]);
  await eventually(5000, 'status says so', async () => ((await page.getByTestId('status').textContent()) === 'CSV downloaded.' ? true : undefined));
  t.same(errors, []);
  await page.close();
});

t.test('phone width: usable, no page-level sideways scroll, keyboard reaches every control', async (t) => {
  const { page, errors } = await browser.open(PHONE);
  await page.goto(`${base}/map?level=region#token=${TOKEN}`);
  await page.locator('[data-testid="map"] svg .declining').waitFor();
  await page.getByTestId('region-row-JP/Osaka').waitFor();
  const widths = await page.evaluate<{ page: number; map: number; wrapScroll: number; wrapClient: number }>(`(() => {
    const wrap = document.getElementById('table-wrap');
    return {
      page: document.documentElement.scrollWidth,
      map: document.querySelector('#map svg').getBoundingClientRect().width,
      wrapScroll: wrap.scrollWidth,
      wrapClient: wrap.clientWidth,
    };
  })()`);
  t.ok(widths.page <= PHONE.width, `page fits 390 px (scrollWidth ${widths.page})`);
  t.ok(widths.map <= PHONE.width && widths.map > 300, `the map scales to the screen (${widths.map} px)`);
  t.ok(widths.wrapScroll > widths.wrapClient, 'the table scrolls inside its box');

  const focused: string[] = [];
  for (let i = 0; i < 12 && !focused.includes('download-csv'); i++) {
    await page.keyboard.press('Tab');
    focused.push(await page.evaluate<string>('document.activeElement.id || document.activeElement.textContent'));
  }
  t.ok(['level', 'months', 'refresh', 'download-csv'].every((id) => focused.includes(id)), `tab order: ${focused.join(' → ')}`);
  const before = seen.length;
  await page.keyboard.press('Enter');
  await eventually(5000, 'CSV requested from the keyboard', async () => (requests('/v1/analytics/regions.csv', before).length ? true : undefined));
  t.pass('Download CSV works from the keyboard');
  await saveScreenshot(page, 'map-phone-region');
  t.same(errors, []);
  await page.close();
});

t.test('navigation: fleet → map → fleet keeps the sign-in of the tab', async (t) => {
  const { page } = await browser.open();
  await page.goto(`${base}/fleet#token=${TOKEN}`);
  await page.getByTestId('whoami').filter({ hasText: 'carol' }).waitFor();
  await page.getByRole('link', { name: /^Map/ }).click();
  await page.locator('[data-testid="map"] svg path.country').first().waitFor();
  t.match(page.url(), /\/map$/);
  t.equal(await page.getByRole('link', { name: 'Map' }).getAttribute('aria-current'), 'page');
  await page.getByRole('link', { name: 'Fleet' }).click();
  await page.getByTestId('empty').waitFor();
  t.match(page.url(), /\/fleet$/);
  await page.close();
});

t.test('a failing map still leaves the table; a refused token asks for a new one', async (t) => {
  failMap = { status: 503, code: 'GEO_UNAVAILABLE', message: 'the location database is not loaded' };
  t.teardown(() => {
    failMap = undefined;
  });
  const { page } = await browser.open();
  await page.goto(`${base}/map#token=${TOKEN}`);
  await page.getByTestId('region-row-JP').waitFor();
  await eventually(5000, 'problem shown', async () =>
    /Could not load the map: the location database is not loaded/.test((await page.getByTestId('status').textContent()) ?? '') ? true : undefined,
  );
  t.equal(await page.locator('[data-testid="map"] svg').count(), 0, 'no stale map');
  failMap = undefined;
  await page.getByRole('button', { name: 'Refresh' }).click();
  await page.locator('[data-testid="map"] svg').waitFor();
  t.equal(await page.getByTestId('status').textContent(), '', 'problem cleared');
  await page.close();

  const other = await browser.open();
  await other.page.goto(`${base}/map#token=flc_not-a-known-token`);
  await other.page.getByTestId('token-form').waitFor();
  t.match(await other.page.getByTestId('status').textContent(), /no valid token/);
  t.equal(await other.page.evaluate<number>('sessionStorage.length'), 0, 'the refused token is not kept');
  await other.page.getByLabel('Token').fill(TOKEN);
  await other.page.getByRole('button', { name: 'Sign in' }).click();
  await other.page.locator('[data-testid="map"] svg path.country').first().waitFor();
  t.pass('signed in from the form');
  await other.page.close();
});
