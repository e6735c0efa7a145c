/**
 * Local pairing mode on the real `fieldlink gateway` process: online for `pairingMode.onBootS`
 * after boot, again for `pairingMode.forS` on SIGUSR2 (what `systemctl kill -s USR2` or a
 * button's script sends), and while it is held online readings reach the hub within seconds
 * instead of waiting for the next trigger.
 */
import t from 'tap';
import { eventually } from '../helpers/deadline.js';
import { startRig, type GatewayChild } from '../helpers/gateway-rig.js';

const msgs = (gw: GatewayChild): string[] => gw.lines.map((l) => String(l.msg));
const timeOf = (gw: GatewayChild, msg: string, from = 0): number | undefined => {
  const l = gw.lines.slice(from).find((x) => x.msg === msg);
  return typeof l?.time === 'number' ? l.time : undefined;
};

t.test('pairing mode: online after boot and on SIGUSR2, readings forwarded while held', async (t) => {
  const rig = await startRig(t, {
    thermostats: 1,
    // Asleep for an hour between check-ins, a short window, and a watermark it never reaches:
    // only pairing mode can explain being online, and only the online forward the readings.
    settings: { checkInIntervalS: 3600, onlineWindowS: 2, outbox: { highWatermarkBytes: 10_000_000 } },
    configExtra: { pairingMode: { onBootS: 6, forS: 10 } },
  });
  const gw = rig.spawnGateway();

  const online = await eventually(20_000, 'online after boot', () => timeOf(gw, 'online'));
  t.ok(msgs(gw).includes('pairing mode: online for pairings'), 'pairing mode at boot');
  const standby = await eventually(20_000, 'standby after the boot pairing window', () => timeOf(gw, 'going to standby'));
  t.ok(standby - online >= 5_900, `online for the boot window (${standby - online} ms, onBootS 6, window alone 2 s)`);

  // Readings taken while online reached the hub before it closed: no trigger but the online forward.
  const atHubAfterBoot = rig.hubReadings().length;
  t.ok(atHubAfterBoot >= 3, `readings forwarded during the boot window (${atHubAfterBoot})`);

  // Asleep now: readings wait in the outbox.
  await new Promise((r) => setTimeout(r, 3000));
  t.equal(rig.hubReadings().length, atHubAfterBoot, 'asleep: nothing reaches the hub');

  const from = gw.lines.length;
  gw.process.kill('SIGUSR2');
  const reopened = await eventually(20_000, 'online after SIGUSR2', () => timeOf(gw, 'online', from));
  t.ok(gw.lines.slice(from).some((l) => l.msg === 'pairing mode requested (SIGUSR2)' && l.forS === 10), 'the signal is logged with forS');
  const backToStandby = await eventually(30_000, 'standby after forS', () => timeOf(gw, 'going to standby', from));
  t.ok(backToStandby - reopened >= 9_900, `held for forS (${backToStandby - reopened} ms, forS 10)`);
  const during = rig.hubReadings().filter((r) => r.ts >= reopened && r.ts <= backToStandby - 6_000);
  t.ok(during.length >= 3, `readings taken while held reached the hub before it slept (${during.length})`);
});
