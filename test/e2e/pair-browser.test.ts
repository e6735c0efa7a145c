/**
 * Phone pairing (issue 8) acceptance test in a real headless Chromium at a phone viewport against
 * the real stack: the local hub, the companion on the official SDK (serving /pair itself), a real
 * gateway in this process with a BLE source on node-ble over a private D-Bus against the emulated
 * BlueZ, and wearables that start unpaired. Two wearables are added by typing their address, one
 * by scanning its QR code through Chromium's fake camera; one is unpaired and its readings are
 * checked to stop at the hub. The stack setup follows cloud-pairing.test.ts, the page driving
 * follows pair-page.test.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import t, { type Test } from 'tap';
import { generatePairingCode, hashPairingCode } from '../../common/pairing-code.js';
import { startPrivateBus } from '../../sensors/dbus/private-bus.js';
import { devicePairingPayload } from '../../sensors/ble/device-label.js';
import { startFakeBluez } from '../../sensors/ble/emulator/fake-bluez.js';
import { PHONE, launchBrowser, saveScreenshot, type TestBrowser } from '../helpers/browser.js';
import { eventually, within } from '../helpers/deadline.js';
import { startCompanion, type RunningCompanion } from '../helpers/companion.js';
import { startRig, type Rig } from '../helpers/gateway-rig.js';
import { registryFor } from '../helpers/hub.js';
import { useSystemBus } from '../helpers/system-bus.js';
import { qrClip } from '../helpers/qr-clip.js';

t.setTimeout(240_000);

const DEV_1 = 'AA:BB:CC:DD:EE:01';
const DEV_2 = 'AA:BB:CC:DD:EE:02';
const DEV_3 = 'AA:BB:CC:DD:EE:03';
const DEV_4 = 'AA:BB:CC:DD:EE:04';
const qrText = (address: string) => devicePairingPayload({ address, profile: 'heart_rate' });
/** The emulator's object path ends in the address with underscores (…/dev_AA_BB_CC_DD_EE_01). */
const pathSuffix = (address: string) => address.slice(-5).replace(':', '_');


/** Chromium with a fake camera showing `texts` as QR codes; the clip is removed at teardown. */
async function cameraBrowser(t: Test, texts: string[]): Promise<TestBrowser> {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-fake-camera-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const clip = join(dir, 'qr.y4m');
  writeFileSync(clip, qrClip(texts, 10));
  return launchBrowser(t, {
    args: ['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', `--use-file-for-fake-video-capture=${clip}`],
  });
}

async function withCompanion(t: Test, rig: Rig): Promise<RunningCompanion> {
  const c = await startCompanion(rig.th.hubJson);
  t.teardown(() => c.close());
  return c;
}

/** Writes a fresh pairing code's hash into the gateway's twin tags, as provisioning does; returns the code. */
async function labelGateway(rig: Rig): Promise<string> {
  const code = generatePairingCode();
  await within(5000, 'updateTwin tags', registryFor(rig.th).updateTwin(rig.deviceId, { tags: { fieldlink: { kind: 'gateway', pairing: hashPairingCode(code) } } }, '*'));
  return code;
}

/** Waits until the companion's fleet cache has the tag (and, with `online`, sees the gateway connected), with a throwaway token. */
async function sessionWhenCached(c: RunningCompanion, code: string, online: boolean): Promise<void> {
  const probe = c.token('pairing', `probe-${Math.random().toString(36).slice(2)}`);
  await eventually(
    15_000,
    `the companion sees the pairing tag${online ? ' and the gateway online' : ' and the gateway offline'}`,
    async () => {
      const r = await c.api(probe, 'POST', '/v1/pairing/sessions', { code });
      return r.status === 201 && r.body.gatewayOnline === online ? true : undefined;
    },
    500,
  );
}

async function startBle(t: Test, addresses: string[]) {
  const bus = await startPrivateBus();
  t.teardown(() => bus.stop());
  const bluez = await startFakeBluez({ address: bus.address });
  t.teardown(() => bluez.stop());
  for (const address of addresses) bluez.addWearable({ address, services: ['heart_rate', 'battery'], rateHz: 2 });
  useSystemBus(t, bus.address);
  return bluez;
}

const textOf = async (page: Page, testId: string) => (await page.getByTestId(testId).textContent()) ?? '';
const until = (page: Page, testId: string, want: RegExp | string, ms = 10_000) =>
  eventually(
    ms,
    `${testId} shows ${String(want)}`,
    async () => {
      const text = await textOf(page, testId).catch(() => '');
      return (typeof want === 'string' ? text === want : want.test(text)) ? true : undefined;
    },
    100,
  );

/** Signs in with `#token=`, types the code and starts the session. */
async function openSession(page: Page, c: RunningCompanion, token: string, code: string, shot: string): Promise<void> {
  await page.goto(`${c.url}/pair#token=${token}`);
  await page.getByLabel("Code on the gateway's label").waitFor();
  await saveScreenshot(page, `${shot}-1-signed-in`);
  await page.getByLabel("Code on the gateway's label").fill(code);
  await page.getByRole('button', { name: 'Start pairing' }).click();
}

async function typeDevice(page: Page, address: string): Promise<void> {
  await page.getByLabel('Bluetooth address').fill(address.toLowerCase());
  await page.getByLabel('Model').selectOption('heart_rate');
  await page.getByRole('button', { name: 'Add device' }).click();
}

t.test('phone in Chromium: two typed wearables and one scanned reach receiving with an online gateway; unpairing one stops it at the hub', async (t) => {
  const bluez = await startBle(t, [DEV_1, DEV_2, DEV_3]);
  const rig = await startRig(t, {
    thermostats: 0,
    extraSources: [{ id: 'wearables', family: 'ble', adapter: 'hci0' }],
    settings: { sampling: { ble: { sampleIntervalS: 1, reportIntervalS: 1 } }, onlineWindowS: 600 },
  });
  const c = await withCompanion(t, rig);
  const code = await labelGateway(rig);
  // The production cadences: reported state refreshed every 60 s (device changes promptly),
  // readings forwarded 5 s after they are taken while online.
  const { rt } = await rig.startInProcess({ runtime: { reportEveryMs: 60_000, onlineForwardDelayMs: 5_000 } });
  await eventually(20_000, 'gateway online', () => (rt.powerState.phase === 'online' ? true : rt.wakeNow() && undefined), 100);
  await sessionWhenCached(c, code, true);
  t.notOk(
    bluez.calls.some((call) => call.member === 'Connect'),
    'no wearable connected before pairing',
  );

  const browser = await cameraBrowser(t, [qrText(DEV_3)]);
  const { page, errors } = await browser.open(PHONE);
  const token = c.token('pairing', 'phone-browser');
  await openSession(page, c, token, code.toLowerCase(), 'pair-e2e');
  await until(page, 'session-info', `Pairing with ${rig.deviceId} — online`);
  t.notOk(page.url().includes('#'), 'token fragment dropped from the address bar');
  await saveScreenshot(page, 'pair-e2e-2-online');

  // The timer starts at the first tap on "Add device".
  await page.getByLabel('Bluetooth address').fill(DEV_1.toLowerCase());
  await page.getByLabel('Model').selectOption('heart_rate');
  const t0 = Date.now();
  await page.getByRole('button', { name: 'Add device' }).click();
  await page.getByTestId(`device-state-${DEV_1}`).waitFor();
  await typeDevice(page, DEV_2);
  await page.getByTestId(`device-state-${DEV_2}`).waitFor();
  await saveScreenshot(page, 'pair-e2e-3-added');
  const seen: string[] = [];
  await eventually(
    30_000,
    'both typed wearables receiving on the page',
    async () => {
      const states = `${await textOf(page, `device-state-${DEV_1}`)}/${await textOf(page, `device-state-${DEV_2}`)}`;
      if (seen.at(-1) !== states) seen.push(states);
      return states === 'receiving/receiving' ? true : undefined;
    },
    50,
  );
  const pairingMs = Date.now() - t0;
  t.comment(`pairing time in the browser, first tap to both receiving (gateway online): ${pairingMs} ms (target < 10 s); states seen: ${seen.join(' -> ')}`);
  t.ok(pairingMs < 30_000, `both receiving within 30 s of the first tap (${pairingMs} ms)`);
  await saveScreenshot(page, 'pair-e2e-4-receiving');
  // "Receiving" comes with the value the wearable sent, within seconds (not at the 60 s refresh).
  const valueRe = /(\d+) \/min/;
  const values = await eventually(15_000, 'a heart rate shown for both', async () => {
    const v = [await textOf(page, `device-detail-${DEV_1}`), await textOf(page, `device-detail-${DEV_2}`)].map((x) => valueRe.exec(x)?.[1]);
    return v.every((x) => x !== undefined) ? v.map(Number) : undefined;
  }, 100);
  const valueMs = Date.now() - t0;
  t.comment(`first tap to both showing a heart rate: ${valueMs} ms`);
  const sent = new Set(bluez.emitted.filter((e) => e.source.endsWith('/heart_rate')).map((e) => e.value));
  t.ok(values.every((v) => sent.has(v)), `the values shown (${values.join(', ')} /min) are heart rates the wearables sent`);
  await saveScreenshot(page, 'pair-e2e-4b-values');

  // Device 3 through the fake camera.
  await page.getByTestId('scan-device').click();
  await until(page, `device-state-${DEV_3}`, /./, 15_000);
  t.ok(await page.getByTestId('scanner').isHidden(), 'the camera closes after a hit');
  await saveScreenshot(page, 'pair-e2e-5-scanned');
  await until(page, `device-state-${DEV_3}`, 'receiving', 30_000);
  t.pass('the scanned wearable reaches receiving');
  await saveScreenshot(page, 'pair-e2e-6-scanned-receiving');

  await eventually(30_000, 'heart rates from all three wearables at the hub', () => {
    const sources = new Set(rig.hubReadings().map((r) => r.source));
    return [DEV_1, DEV_2, DEV_3].every((a) => sources.has(`ble:${a}/heart_rate`)) ? true : undefined;
  }, 200);
  const emitted = new Set(bluez.emitted.filter((e) => e.source.endsWith('/heart_rate')).map((e) => `${e.source}=${e.value}`));
  const hr = rig.hubReadings().filter((r) => r.source.endsWith('/heart_rate'));
  t.ok(hr.every((r) => r.kind === 'heart_rate' && r.unit === '/min' && emitted.has(`${r.source}=${r.value}`)), `every one of ${hr.length} heart rates at the hub is one its wearable sent`);
  const widths = await page.evaluate<number>('document.documentElement.scrollWidth');
  t.ok(widths <= PHONE.width, `page fits ${PHONE.width} px (scrollWidth ${widths})`);

  // Unpair device 1 from the page.
  const disconnects = () => bluez.calls.filter((call) => call.member === 'Disconnect' && call.path.endsWith(pathSuffix(DEV_1))).length;
  const disconnectsBefore = disconnects();
  await page.getByTestId(`unpair-${DEV_1}`).click();
  const tUnpair = Date.now();
  await page.getByTestId(`device-${DEV_1}`).waitFor({ state: 'detached' });
  await eventually(20_000, 'the gateway disconnects the unpaired wearable', () => (disconnects() > disconnectsBefore ? true : undefined), 100);
  const tDisconnected = Date.now();
  t.comment(`emulator saw the disconnect ${tDisconnected - tUnpair} ms after the unpair tap`);
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(await page.getByTestId(`device-${DEV_1}`).count(), 0, 'the unpaired wearable stays gone across polls');
  t.equal(await textOf(page, `device-state-${DEV_2}`), 'receiving', 'device 2 still receiving');
  t.equal(await textOf(page, `device-state-${DEV_3}`), 'receiving', 'device 3 still receiving');
  await saveScreenshot(page, 'pair-e2e-7-unpaired');

  // Readings are stamped when taken and reach the hub in batches: once device 2's readings taken
  // 5 s after the disconnect are there, anything device 1 sent after it would be too.
  const hubFrom = (address: string) => rig.hubReadings().filter((r) => r.source.startsWith(`ble:${address}/`));
  await eventually(40_000, 'device 2 readings from 5 s after the disconnect at the hub', () =>
    hubFrom(DEV_2).some((r) => r.ts > tDisconnected + 5_000) ? true : undefined,
  200);
  const late = hubFrom(DEV_1).filter((r) => r.ts > tUnpair + 1_000);
  t.same(late.map((r) => `${r.source}@${new Date(r.ts).toISOString()}`), [], `nothing from the unpaired wearable taken > 1 s after the unpair tap (${hubFrom(DEV_1).length} before)`);
  t.ok(hubFrom(DEV_2).filter((r) => r.ts > tDisconnected).length >= 5, 'device 2 keeps arriving');
  t.equal(rt.powerState.phase, 'online', 'the gateway stayed online throughout');
  t.same(errors, [], 'no console errors');
  await page.close();
});

t.test('phone in Chromium with the gateway asleep: the page says when it checks in; the device waits, then receives after a wake', async (t) => {
  await startBle(t, [DEV_4]);
  const rig = await startRig(t, {
    thermostats: 0,
    extraSources: [{ id: 'wearables', family: 'ble', adapter: 'hci0' }],
    settings: { sampling: { ble: { sampleIntervalS: 1, reportIntervalS: 1 } }, checkInIntervalS: 3_600, onlineWindowS: 2, outbox: { highWatermarkBytes: 4_096 } },
  });
  const c = await withCompanion(t, rig);
  const code = await labelGateway(rig);
  const { rt } = await rig.startInProcess();
  // It boots in standby; one check-in (woken locally) reports its power state, then it sleeps for an hour.
  t.equal(rt.powerState.phase, 'standby', 'boots in standby');
  await eventually(20_000, 'gateway online once', () => (rt.powerState.phase === 'online' ? true : rt.wakeNow() && undefined), 100);
  await eventually(20_000, 'gateway checked in and back in standby', () => (rt.status().lastCheckInMs !== undefined && rt.powerState.phase === 'standby' ? true : undefined), 100);
  await sessionWhenCached(c, code, false);

  const browser = await launchBrowser(t);
  const { page, errors } = await browser.open(PHONE);
  await openSession(page, c, c.token('pairing', 'phone-asleep'), code, 'pair-e2e-asleep');
  await until(page, 'session-info', new RegExp(`^Pairing with ${rig.deviceId} — asleep: it will pick this up at its next check-in`));
  // The page shows the time as hh:mm in the browser's zone (UTC here): the check-in an hour after the last.
  const last = rt.status().lastCheckInMs ?? 0;
  const hhmm = (ms: number) => new Date(ms).toISOString().slice(11, 16);
  const around = (await textOf(page, 'session-info')).match(/around (\d\d:\d\d)$/)?.[1];
  t.ok(around !== undefined && [-60_000, 0, 60_000].some((d) => hhmm(last + 3_600_000 + d) === around), `says when: around ${around} (last check-in ${hhmm(last)})`);
  await typeDevice(page, DEV_4);
  await until(page, `device-state-${DEV_4}`, 'waiting-for-gateway');
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(await textOf(page, `device-state-${DEV_4}`), 'waiting-for-gateway', 'still waiting while the gateway sleeps');
  t.equal(rt.powerState.phase, 'standby', 'the gateway is still asleep');
  await saveScreenshot(page, 'pair-e2e-asleep-2-waiting');

  const tWake = Date.now();
  t.ok(rt.wakeNow(), 'wake accepted');
  await until(page, `device-state-${DEV_4}`, 'receiving', 40_000);
  t.comment(`receiving ${Date.now() - tWake} ms after the wake`);
  await eventually(30_000, 'its heart rates at the hub', () => (rig.hubReadings().some((r) => r.source === `ble:${DEV_4}/heart_rate`) ? true : undefined), 200);
  t.pass('its heart rates reach the hub');
  await saveScreenshot(page, 'pair-e2e-asleep-3-receiving');
  t.same(errors, [], 'no console errors');
  await page.close();
});
