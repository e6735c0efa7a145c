/**
 * The operator's fleet page in real headless Chromium against the whole chain: the companion
 * (official SDK) on the local hub and a gateway process in standby. Clicking Wake must show the
 * command reach "delivered" once the gateway checks in, from IoT Hub's own feedback.
 */
import t from 'tap';
import { DESKTOP, PHONE, launchBrowser, saveScreenshot } from '../helpers/browser.js';
import { startCompanion } from '../helpers/companion.js';
import { eventually } from '../helpers/deadline.js';
import { startRig } from '../helpers/gateway-rig.js';

t.setTimeout(180_000);

t.test('fleet page: lists the gateway with its reported state; Wake goes queued → delivered; the gateway holds online', async (t) => {
  const rig = await startRig(t, { thermostats: 1, deviceId: 'demo-gateway' });
  const companion = await startCompanion(rig.th.hubJson);
  t.teardown(() => companion.close());
  const gw = rig.spawnGateway();
  // The first check-in writes the reported state the page shows (power, outbox, sources).
  // SIGUSR1 only once the handler is installed: before that it would end the process.
  await eventually(15_000, 'gateway started', () => gw.lines.find((l) => l.msg === 'gateway started'));
  gw.process.kill('SIGUSR1');
  const viewer = companion.token('viewer');
  await eventually(30_000, 'first check-in reported', async () => {
    const r = await companion.api(viewer, 'GET', `/v1/gateways/${rig.deviceId}`);
    return r.body?.gateway?.power?.lastCheckIn ? true : undefined;
  }, 500);

  const browser = await launchBrowser(t);
  const { page, errors } = await browser.open(DESKTOP);
  const token = companion.token('operator', 'alice');
  await page.goto(`${companion.url}/fleet#token=${token}`);
  const row = page.getByTestId(`gateway-row-${rig.deviceId}`);
  await row.waitFor({ timeout: 15_000 });
  t.notOk(page.url().includes(token), 'the token left the address bar');
  await eventually(15_000, 'health shown', async () => ((await page.getByTestId(`health-${rig.deviceId}`).textContent()) === 'ok' ? true : undefined), 250);
  // After its online window the gateway reports standby and disconnects: shown asleep, health ok.
  const asleep = await eventually(20_000, 'shown asleep', async () => {
    const text = (await row.textContent()) ?? '';
    return /asleep/.test(text) ? text : undefined;
  }, 250);
  t.match(asleep, /standby/, 'the reported power state is shown');
  t.equal(await page.getByTestId(`health-${rig.deviceId}`).textContent(), 'ok', 'a sleeping gateway is not a fault');
  await saveScreenshot(page, 'fleet-e2e-listed');

  await page.getByTestId(`for-s-${rig.deviceId}`).fill('5');
  await page.getByTestId(`wake-${rig.deviceId}`).click();
  const status = page.getByTestId(`command-status-${rig.deviceId}`);
  await eventually(10_000, 'queued shown', async () => ((await status.textContent()) === 'queued' ? true : undefined), 100);
  await saveScreenshot(page, 'fleet-e2e-queued');
  // The gateway checks in every 10 s (rig settings); the page polls the command every second.
  await eventually(40_000, 'delivered shown', async () => ((await status.textContent()) === 'delivered' ? true : undefined), 250);
  await saveScreenshot(page, 'fleet-e2e-delivered');
  const held = await eventually(5_000, 'hold logged by the gateway', () => gw.lines.find((l) => l.msg === 'held online by C2D wake'));
  t.equal(held.reason, 'forS=5', 'the gateway held online for what was typed');

  const commands = await companion.api(token, 'GET', `/v1/gateways/${rig.deviceId}/commands`);
  t.match(commands.body.commands, [{ type: 'wake', payload: { forS: 5 }, status: 'delivered', requestedBy: 'alice' }]);

  const phone = await browser.open(PHONE);
  await phone.page.goto(`${companion.url}/fleet#token=${token}`);
  await phone.page.getByTestId(`gateway-row-${rig.deviceId}`).waitFor({ timeout: 15_000 });
  await saveScreenshot(phone.page, 'fleet-e2e-phone');
  t.same([...errors, ...phone.errors], [], 'no console errors');
});
