/**
 * Operators reach a sleeping gateway: C2D commands and desired properties sent while it is in
 * standby take effect at its next check-in (real hub, real SDKs, real ptys).
 */
import t from 'tap';
import common from 'azure-iot-common';
import { collectFeedback, registryFor, serviceClientFor } from '../helpers/hub.js';
import { eventually, within } from '../helpers/deadline.js';
import { phaseLog, startRig } from '../helpers/gateway-rig.js';

type Twin = { properties: { desired: Record<string, unknown>; reported: Record<string, any> }; etag: string }; // eslint-disable-line @typescript-eslint/no-explicit-any -- twin JSON

function c2d(body: string, id: string): InstanceType<typeof common.Message> {
  const m = new common.Message(body);
  m.messageId = id;
  m.ack = 'full';
  return m;
}

t.test('C2D sent during standby: received at the next check-in; wake holds, invalid ones are rejected, measure samples now', async (t) => {
  const rig = await startRig(t, { thermostats: 2 });
  const service = serviceClientFor(rig.th);
  await within(5000, 'service open', service.open());
  t.teardown(() => service.close());
  const feedback = await within(5000, 'feedback receiver', collectFeedback(service));

  const { rt, log } = await rig.startInProcess();
  const phases = phaseLog(rt);
  t.teardown(() => phases.stop());
  t.equal(rt.powerState.phase, 'standby');

  // Queued at the hub while the gateway sleeps (its first check-in is 10 s away).
  await within(5000, 'send bad json', service.send(rig.deviceId, c2d('{not json', 'bad-json')));
  await within(5000, 'send unknown', service.send(rig.deviceId, c2d('{"type":"reboot"}', 'unknown-type')));
  await within(5000, 'send bad source', service.send(rig.deviceId, c2d('{"type":"measure","sources":["thermo-9"]}', 'bad-source')));
  await within(5000, 'send measure', service.send(rig.deviceId, c2d('{"type":"measure","sources":["thermo-1"]}', 'measure-1')));
  await within(5000, 'send wake', service.send(rig.deviceId, c2d('{"type":"wake","forS":6}', 'wake-6')));
  await eventually(5000, 'sampling applied', () => rig.emulators.every((e) => e.stats.acks >= 1) || undefined);
  const acksBefore = rig.emulators.map((e) => e.stats.acks);
  t.equal(rt.powerState.phase, 'standby', 'still asleep when the commands were sent');

  const wake = await feedback.waitFor((r) => r.originalMessageId === 'wake-6', 20_000);
  t.equal(wake.statusCode, 'Success', 'wake completed');
  for (const id of ['bad-json', 'unknown-type', 'bad-source']) {
    const r = await feedback.waitFor((f) => f.originalMessageId === id, 5000);
    t.equal(r.statusCode, 'Rejected', `${id} rejected`);
  }
  t.equal((await feedback.waitFor((r) => r.originalMessageId === 'measure-1', 5000)).statusCode, 'Success', 'measure completed');
  const reasons = log.lines.filter((l) => l.msg === 'C2D command rejected').map((l) => l.reason ?? l.detail);
  t.match(reasons, ['not-json', 'unknown-type', /no such source: thermo-9/], 'each rejection logged with its reason');
  await eventually(3000, 'READ answered by thermo-1', () => (rig.emulators[0]!.stats.acks > acksBefore[0]! ? true : undefined));
  t.equal(rig.emulators[1]!.stats.acks, acksBefore[1], 'thermo-2 was not asked to measure');

  // The wake holds the uplink for forS (6 s), well past the 2 s online window.
  await eventually(20_000, 'back in standby', () => (phases.log.some((p, i) => i > 0 && p.phase === 'standby') ? true : undefined));
  const online = phases.log.find((p) => p.phase === 'online');
  const closing = phases.log.find((p) => p.phase === 'closing');
  t.ok(online && closing, 'went online and closed');
  const heldMs = closing!.at - online!.at;
  t.ok(heldMs >= 5_900, `held online ${heldMs} ms for a 6 s wake (window alone: 2 s)`);
  t.equal(rt.status().commandsRejected, 3);
  t.equal(rt.status().commandsCompleted, 2);
});

t.test('desired properties changed while asleep apply at the next open; deleted keys go; invalid ones are rejected and reported', async (t) => {
  const rig = await startRig(t, { thermostats: 1 });
  const registry = registryFor(rig.th);
  const { rt, log } = await rig.startInProcess();
  const getTwin = async (): Promise<Twin> => (await within(5000, 'getTwin', registry.getTwin(rig.deviceId))).responseBody as unknown as Twin;
  const update = async (desired: Record<string, unknown>): Promise<number> => {
    const current = await getTwin();
    const { responseBody } = await within(5000, 'updateTwin', registry.updateTwin(rig.deviceId, { properties: { desired } }, current.etag));
    return (responseBody as unknown as Twin).properties.desired.$version as number;
  };

  // While in standby: an alarm threshold and a packer change.
  t.equal(rt.powerState.phase, 'standby');
  const v1 = await update({ alarms: { humidity: { max: 99 }, temperature: { min: -40 } }, packer: { encoding: 'json' } });
  t.same(rt.settings.alarms, {}, 'nothing applied while asleep');
  t.ok(rt.wakeNow());
  await eventually(15_000, 'applied after the open', () => (rt.settings.packer.encoding === 'json' ? true : undefined));
  t.same(rt.settings.alarms, { humidity: { max: 99 }, temperature: { min: -40 } }, 'thresholds in effect');
  await eventually(10_000, 'acknowledged', async () => ((await getTwin()).properties.reported.config?.appliedVersion === v1 ? true : undefined));

  // Back to sleep, then delete a key and send an invalid value in one go… then fix it.
  await eventually(15_000, 'standby again', () => (rt.powerState.phase === 'standby' ? true : undefined));
  const v2 = await update({ alarms: { temperature: null } });
  t.ok(rt.wakeNow());
  await eventually(15_000, 'deletion applied', () => (rt.settings.alarms.temperature === undefined ? true : undefined)).catch(async (e: unknown) => {
    console.error(JSON.stringify(rt.settings.alarms), JSON.stringify((await getTwin()).properties.desired), log.lines.filter((l) => /twin|desired|waking|online|standby/.test(String(l.msg))).map((l) => `${l.msg} ${JSON.stringify(l.reason ?? l.version ?? '')}`).join('\n'));
    throw e;
  });
  t.same(rt.settings.alarms, { humidity: { max: 99 } }, 'a key deleted in desired is removed from the effective config');
  await eventually(10_000, 'v2 acknowledged', async () => ((await getTwin()).properties.reported.config?.appliedVersion === v2 ? true : undefined));

  await eventually(15_000, 'standby again', () => (rt.powerState.phase === 'standby' ? true : undefined));
  const v3 = await update({ packer: { budgetUnits: 0 } });
  t.ok(rt.wakeNow());
  const rejected = await eventually(15_000, 'rejection reported', async () => {
    const r = (await getTwin()).properties.reported.config;
    return r?.desiredVersion === v3 ? r : undefined;
  });
  t.equal(rejected.status, 'rejected');
  t.equal(rejected.appliedVersion, v2, 'previous config still in effect');
  t.match(rejected.errors, [{ path: '/packer/budgetUnits' }], 'the bad field is named');
  t.equal(rt.settings.packer.budgetUnits, 1, 'previous budget kept');

  // Live patch while online: applied at once (no reopen needed).
  await eventually(15_000, 'online for the live patch', () => (rt.powerState.phase === 'online' ? true : rt.wakeNow() && undefined));
  const v4 = await update({ packer: { budgetUnits: 2 } });
  await eventually(10_000, 'live patch applied', () => (rt.settings.packer.budgetUnits === 2 ? true : undefined));
  await eventually(10_000, 'v4 acknowledged', async () => ((await getTwin()).properties.reported.config?.appliedVersion === v4 ? true : undefined));
  await rt.stop();

  // A reboot in standby (no uplink) uses the last applied config from disk.
  const again = await rig.startInProcess();
  t.equal(again.rt.settings.packer.budgetUnits, 2, 'applied config survives a restart');
  t.same(again.rt.settings.alarms, { humidity: { max: 99 } });
  await within(10_000, 'second stop', again.rt.stop()).catch((e: unknown) => {
    console.error(again.log.lines.slice(-15).map((l) => JSON.stringify(l)).join('\n'));
    throw e;
  });
});
