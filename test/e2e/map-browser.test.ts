/**
 * The fleet map page (/map) in real headless Chromium against the real companion (issue 9):
 * startCloudServer on a local hub, with the real IP database; a generated fleet history posted
 * over HTTP to the ingest route with an ingest token, as an Azure Function would. The page must
 * show what the history's plan says: every declining location marked on the map and in the
 * table, nothing else marked, the same device total as the API, a CSV, and a map drawn for the
 * screen's width (desktop and phone), all under the page's CSP.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import t from 'tap';
import { issueToken } from '../../cloud/src/auth.js';
import { generateFleetHistory, planFleet } from '../../cloud/src/locations/fleet-history.js';
import { openIpGeolocator } from '../../cloud/src/locations/ip-geolocation.js';
import type { RegionAnalytics } from '../../cloud/src/locations/region-analytics.js';
import { startCloudServer, type RunningCloud } from '../../cloud/src/server.js';
import { CloudStore } from '../../cloud/src/store.js';
import { CONTENT_SECURITY_POLICY } from '../../cloud/src/web-routes.js';
import { PHONE, launchBrowser, saveScreenshot, type TestBrowser } from '../helpers/browser.js';
import { eventually } from '../helpers/deadline.js';
import { captureLog, startTestHub, type TestHub } from '../helpers/hub.js';

t.setTimeout(600_000);

const DESKTOP_TALL = { width: 1280, height: 900 };
const FLEET = { devices: 600, months: 12, seed: 9 };
const timings: Record<string, number> = {};
const timed = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
  const started = Date.now();
  try {
    return await fn();
  } finally {
    timings[what] = Date.now() - started;
  }
};

/** `{"records":[…]}` as a stream of ~64 kB chunks, built lazily from the records. */
function documentStream(records: Iterable<unknown>): Readable {
  function* chunks(): Generator<string> {
    yield '{"records":[';
    let first = true;
    let buffered = '';
    for (const r of records) {
      buffered += `${first ? '' : ','}\n${JSON.stringify(r)}`;
      first = false;
      if (buffered.length > 65_536) {
        yield buffered;
        buffered = '';
      }
    }
    yield `${buffered}]}`;
  }
  return Readable.from(chunks());
}

/** The width map.js asks the companion for: the map box's CSS width, rounded to 10 px, 320..1600. */
const expectedMapWidth = (clientWidth: number) => Math.min(1600, Math.max(320, Math.round(clientWidth / 10) * 10));

// ---------------------------------------------------------------- the companion, for real

const dataDir = mkdtempSync(join(tmpdir(), 'fieldlink-map-e2e-'));
const running: { hub?: TestHub; cloud?: RunningCloud } = {};
// One teardown, in order: the server, then the hub it talks to, then the files (the browser has its own).
t.teardown(async () => {
  try {
    await running.cloud?.close();
  } finally {
    try {
      await running.hub?.cleanup();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }
});

const hub = (running.hub = await timed('hub start', () => startTestHub()));
// Tokens go into the store before the server opens it, as `fieldlink-cloud token create` does.
const store = CloudStore.open(dataDir);
const operator = issueToken(store, { name: 'map-operator', role: 'operator', now: Date.now() }).token;
const feeder = issueToken(store, { name: 'event-hub-function', role: 'ingest', now: Date.now() }).token;
store.close();
const serverLog = captureLog('warn');
const cloud = (running.cloud = await timed('companion start (IP database included)', () =>
  startCloudServer({ dataDir, port: 0, log: serverLog.logger, hub: { kind: 'file', hubJson: hub.hubJson }, locations: { pullEveryMs: 1000 } }),
));
const base = cloud.url;

async function getJson<T>(path: string): Promise<T> {
  const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${operator}` }, signal: AbortSignal.timeout(60_000) });
  if (res.status !== 200) throw new Error(`${path}: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

// The history ends now: the server's clock is the real one.
const geolocator = await timed('test geolocator open', () => openIpGeolocator());
const opts = { ...FLEET, now: Date.now(), geolocator };
const plan = await timed('plan fleet', async () => planFleet(opts));
const recordCount = [...generateFleetHistory(opts, plan)].length;

t.test('a generated history, posted over HTTP with an ingest token, is taken whole', async (t) => {
  const res = await timed('ingest POST', () =>
    fetch(`${base}/v1/ingest/connection-logs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${feeder}`, 'content-type': 'application/json' },
      body: Readable.toWeb(documentStream(generateFleetHistory(opts, plan))) as unknown as ReadableStream<Uint8Array>,
      duplex: 'half',
      signal: AbortSignal.timeout(300_000),
    }),
  );
  const body = (await res.json()) as Record<string, unknown>;
  t.equal(res.status, 200, JSON.stringify(body).slice(0, 300));
  t.match(body, { received: recordCount, accepted: recordCount, duplicates: 0, rejected: 0, skipped: 0 }, `${recordCount} records`);
  t.equal(body.devicesUpdated, plan.devices.length, 'every planned device seen');
  t.ok(plan.declining.length > 0, `the plan has declining locations: ${plan.declining.join(', ')}`);
  t.ok(plan.declining.some((k) => k.startsWith('JP/Osaka/')), 'Osaka among them');
  const city = await getJson<RegionAnalytics>('/v1/analytics/regions?level=city&months=12');
  t.same(city.regions.filter((r) => r.declining).map((r) => r.key).sort(), [...plan.declining].sort(), 'the API agrees with the plan');
});

// ---------------------------------------------------------------- the page

const browser: TestBrowser = await launchBrowser(t);

t.test('desktop: declining locations marked on the map and in the table, totals match, level switch, CSV, redraw on resize', async (t) => {
  const city = await getJson<RegionAnalytics>('/v1/analytics/regions?level=city&months=12');
  const country = await getJson<RegionAnalytics>('/v1/analytics/regions?level=country&months=12');
  const total = city.regions.reduce((s, r) => s + r.devices, 0);
  const countries = new Set(city.regions.map((r) => r.country)).size;
  t.ok(total > 300, `${total} located devices`);

  const { page, errors } = await browser.open(DESKTOP_TALL);
  const res = await timed('desktop page load (city level)', async () => {
    const r = await page.goto(`${base}/map?level=city#token=${operator}`);
    await page.locator('[data-testid="map"] svg path.country').first().waitFor({ timeout: 60_000 });
    await page.getByTestId(`region-row-${plan.declining[0] ?? ''}`).waitFor({ timeout: 60_000 });
    return r;
  });
  t.equal(res?.headers()['content-security-policy'], CONTENT_SECURITY_POLICY, 'served under the CSP');
  t.notOk(page.url().includes(operator), 'the token left the address bar');

  const svg = page.locator('[data-testid="map"] svg');
  t.equal(await svg.count(), 1, 'one inline SVG map');
  t.equal(await svg.getAttribute('data-level'), 'city');
  t.ok((await svg.locator('path.country').count()) > 150, 'country paths');
  t.equal(await svg.locator('g.bubble').count(), city.regions.filter((r) => r.devices > 0).length, 'a bubble per located city');
  t.equal(await page.locator('#regions-body tr').count(), city.regions.length, 'a row per city');

  // The map is drawn for the box it sits in, not at 960 px and scaled.
  const box = await page.evaluate<{ client: number; drawn: number }>(
    `(() => ({ client: document.getElementById('map').clientWidth, drawn: document.querySelector('#map svg').getBoundingClientRect().width }))()`,
  );
  const width = expectedMapWidth(box.client);
  t.equal(await svg.getAttribute('width'), String(width), `drawn at the box's width (${box.client} px → ${width})`);
  t.ok(Math.abs(box.drawn - width) / width < 0.02, `shown at about 1:1 (${box.drawn} px)`);

  for (const key of plan.declining) {
    const region = city.regions.find((r) => r.key === key);
    t.ok(region?.decliningSince, `${key} has a since`);
    t.ok((await svg.locator(`g.bubble.declining[data-key="${key}"]`).count()) === 1, `${key}: bubble marked declining`);
    t.equal(await svg.locator(`g.decline-marker[data-key="${key}"]`).count(), 1, `${key}: ▼ marker on the map`);
    t.match(await page.getByTestId(`region-row-${key}`).getAttribute('class'), /\bdeclining\b/, `${key}: row highlighted`);
    t.equal(await page.getByTestId(`declining-${key}`).textContent(), `▼ declining since ${region?.decliningSince ?? '?'}`, `${key}: badge in the table`);
  }
  t.equal(await svg.locator('.declining').count(), plan.declining.length, 'nothing else marked declining on the map');
  t.equal(await page.locator('#regions-body tr.declining').count(), plan.declining.length, 'nothing else highlighted in the table');
  const big = city.regions.filter((r) => !plan.declining.includes(r.key)).sort((a, b) => b.devices - a.devices).slice(0, 5);
  t.ok(big.length === 5 && (big[0]?.devices ?? 0) > 20, `big steady/growing cities: ${big.map((r) => `${r.key} (${r.devices})`).join(', ')}`);
  for (const r of big) {
    t.equal(await svg.locator(`.declining[data-key="${r.key}"]`).count(), 0, `${r.key}: not marked on the map`);
    t.equal(await svg.locator(`g.bubble[data-key="${r.key}"]`).count(), 1, `${r.key}: on the map`);
    t.notMatch(await page.getByTestId(`region-row-${r.key}`).getAttribute('class'), /declining/, `${r.key}: row not highlighted`);
    t.match(await page.getByTestId(`region-row-${r.key}`).textContent(), /steady or growing/);
  }

  const summary = (await page.getByTestId('map-summary').textContent()) ?? '';
  t.match(summary, new RegExp(`^${total} located devices in ${countries} countries; declining: `), `the page's total is the API's: ${summary}`);
  t.match(await svg.locator('desc').textContent(), new RegExp(`^${total} devices in ${countries} countries; declining: `), "and the map's");
  await saveScreenshot(page, 'map-e2e-desktop');

  // Country level, from the same data.
  await timed('switch to country level', async () => {
    await page.getByLabel('Group by').selectOption('country');
    await page.getByTestId('region-row-JP').waitFor({ timeout: 30_000 });
    await page.locator('[data-testid="map"] svg[data-level="country"]').waitFor({ timeout: 30_000 });
  });
  t.match(page.url(), /\/map\?level=country&months=12$/, 'the choice is kept in the address');
  t.equal(await page.locator('#regions-body tr').count(), country.regions.length, 'a row per country');
  t.equal(country.regions.reduce((s, r) => s + r.devices, 0), total, 'countries add up to the cities (API)');
  t.match(await page.getByTestId('map-summary').textContent(), new RegExp(`^${total} located devices in ${countries} countries`), 'same total on the page');
  const jp = country.regions.find((r) => r.key === 'JP');
  t.match(await page.getByTestId('region-row-JP').locator('td.num').first().textContent(), String(jp?.devices), 'Japan: devices as the API says');
  t.not(await page.locator('[data-testid="map"] svg path.country[data-country="JP"]').getAttribute('data-class'), '-1', 'Japan coloured');
  const decliningCountries = country.regions.filter((r) => r.declining).map((r) => r.key);
  t.equal(await page.locator('[data-testid="map"] svg .declining').count(), decliningCountries.length, `declining countries marked: ${decliningCountries.join(', ') || 'none'}`);
  t.equal(await page.locator('#regions-body tr.declining').count(), decliningCountries.length);

  // The CSV, downloaded through the page with the token.
  const [download] = await timed('CSV download', () =>
    Promise.all([page.waitForEvent('download', { timeout: 30_000 }), page.getByRole('button', { name: 'Download CSV' }).click()]),
  );
  t.equal(download.suggestedFilename(), 'fleet-regions-country-12m.csv');
  const csv = readFileSync(await download.path(), 'utf8');
  const lines = csv.trim().split('\r\n');
  t.match(lines[0], /^key,country,region,city,latitude,longitude,accuracy_km,devices,active,overridden,declining,declining_since,onboarded_/, 'the header');
  t.equal(lines.length, country.regions.length + 1, 'a row per country');
  t.ok(lines.some((l) => l.startsWith('JP,JP,')), 'Japan in it');
  await eventually(10_000, 'status says so', async () => ((await page.getByTestId('status').textContent()) === 'CSV downloaded.' ? true : undefined), 100);

  // A window halved: the map is drawn again for the new width (debounced), the table left alone.
  await timed('redraw after resize', async () => {
    await page.setViewportSize({ width: 640, height: 900 });
    const client = await page.evaluate<number>(`document.getElementById('map').clientWidth`);
    await eventually(30_000, 'map redrawn for the narrower box', async () =>
      (await page.locator('[data-testid="map"] svg').getAttribute('width')) === String(expectedMapWidth(client)) ? true : undefined, 100);
  });
  t.pass('redrawn at the new width after a resize');
  t.same(errors, [], 'no console errors (CSP violations would be)');
  await page.close();
});

t.test('phone: the map drawn for 390 px, legend at full size, declining still marked, no sideways scroll', async (t) => {
  const { page, errors } = await browser.open(PHONE);
  await timed('phone page load (city level)', async () => {
    await page.goto(`${base}/map?level=city#token=${operator}`);
    await page.locator('[data-testid="map"] svg .declining').first().waitFor({ timeout: 60_000 });
    await page.getByTestId(`region-row-${plan.declining[0] ?? ''}`).waitFor({ timeout: 60_000 });
  });
  const m = await page.evaluate<{ page: number; client: number; drawn: number; attr: string; legendFont: number }>(`(() => {
    const svg = document.querySelector('#map svg');
    const text = svg.querySelector('.legend text');
    return {
      page: document.documentElement.scrollWidth,
      client: document.getElementById('map').clientWidth,
      drawn: svg.getBoundingClientRect().width,
      attr: svg.getAttribute('width'),
      legendFont: text.getBoundingClientRect().height,
    };
  })()`);
  const width = expectedMapWidth(m.client);
  t.equal(m.attr, String(width), `drawn at the box's width (${m.client} px → ${width})`);
  t.ok(m.drawn <= PHONE.width && Math.abs(m.drawn - width) / width < 0.05, `shown at about 1:1 (${m.drawn} px), not 960 px scaled to a third`);
  t.ok(m.legendFont >= 11, `legend text about 12 px high on screen (${m.legendFont.toFixed(1)} px)`);
  t.ok(m.page <= PHONE.width, `page fits 390 px (scrollWidth ${m.page})`);
  for (const key of plan.declining) {
    t.equal(await page.locator(`[data-testid="map"] svg g.bubble.declining[data-key="${key}"]`).count(), 1, `${key}: marked on the phone's map`);
    t.match(await page.getByTestId(`declining-${key}`).textContent(), /^▼ declining since \d{4}-\d{2}$/, `${key}: badge`);
  }
  await saveScreenshot(page, 'map-e2e-phone');
  t.same(errors, [], 'no console errors');
  await page.close();
});

t.test('timings', async (t) => {
  t.comment(`fleet: ${FLEET.devices} devices, ${FLEET.months} months, ${recordCount} records, declining ${plan.declining.join(', ')}`);
  for (const [what, ms] of Object.entries(timings)) t.comment(`${what}: ${ms} ms`);
  t.same(serverLog.lines.filter((l) => Number(l.level) >= 50), [], 'no errors logged by the companion');
});
