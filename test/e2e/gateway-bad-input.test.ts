/**
 * Bad input end to end: a serial line with garbage and corrupted checksums (the emulator's fault
 * schedule, on real ptys) and a desired property of the wrong type. Bad input is counted, skipped
 * and reported; good input is not lost and the config in effect is kept.
 */
import t from 'tap';
import { registryFor } from '../helpers/hub.js';
import { eventually, within } from '../helpers/deadline.js';
import { seqAnalysis, seqGaps, startRig, phaseLog } from '../helpers/gateway-rig.js';

type Twin = { properties: { desired: Record<string, unknown>; reported: Record<string, any> }; etag: string }; // eslint-disable-line @typescript-eslint/no-explicit-any -- twin JSON

t.test('garbage and bad checksums on the serial line are counted and skipped; good readings all arrive', async (t) => {
  // Check-in far away: the one cycle is the local request below.
  const rig = await startRig(t, { thermostats: 2, faults: { garbageEvery: 3, badChecksumEvery: 4 }, settings: { checkInIntervalS: 120 } });
  const { rt } = await rig.startInProcess();
  const phases = phaseLog(rt);
  t.teardown(() => phases.stop());

  // Some faulty lines first (a checksum fault every 4th line, garbage before every 3rd).
  await eventually(20_000, 'readings committed', () => (rt.status().readingsCommitted >= 64 ? true : undefined));
  t.same(phases.log.map((p) => p.phase), ['standby'], 'asleep so far');
  t.ok(rt.wakeNow(), 'local wake');
  await eventually(30_000, 'one cycle done', () => (phases.log.some((p, i) => p.phase === 'standby' && phases.log[i - 1]?.phase === 'closing') ? true : undefined));
  const onlineAt = phases.log.find((p) => p.phase === 'online')!.at;
  const twin = (await within(5000, 'getTwin', registryFor(rig.th).getTwin(rig.deviceId))).responseBody as unknown as Twin;
  await rt.stop();

  const reported = twin.properties.reported;
  const readings = rig.hubReadings();
  const atHub = new Set(readings.map((r) => `${r.source}#${r.deviceSeq}`));
  const emitted = rig.emitted();
  // Lines written before the gateway opened the port may be gone; count from the first one it got.
  const firstSeen = new Map<string, number>();
  for (const r of readings) firstSeen.set(r.source, Math.min(firstSeen.get(r.source) ?? Infinity, r.deviceSeq ?? Infinity));
  t.equal(firstSeen.size, 8, 'four kinds from each of two thermostats arrived');
  // Emitted well before the drain started: committed before it, so it must have been sent.
  const window = emitted.filter((e) => e.ts < onlineAt - 1000 && e.deviceSeq >= (firstSeen.get(e.source) ?? Infinity));
  const good = window.filter((e) => e.fault === undefined);
  const bad = window.filter((e) => e.fault === 'checksum');
  t.ok(good.length >= 32, `good readings in the window (${good.length})`);
  t.ok(bad.length > 0, `corrupted readings in the window (${bad.length})`);
  t.same(good.filter((e) => !atHub.has(`${e.source}#${e.deviceSeq}`)).map((e) => `${e.source}#${e.deviceSeq}`).slice(0, 5), [], 'every good reading reached the hub');
  t.same(emitted.filter((e) => e.fault !== undefined && atHub.has(`${e.source}#${e.deviceSeq}`)).map((e) => `${e.source}#${e.deviceSeq}`).slice(0, 5), [], 'no reading from a corrupted line reached the hub');
  const values = new Map(emitted.filter((e) => e.fault === undefined).map((e) => [`${e.source}#${e.deviceSeq}`, e.value]));
  t.same(readings.filter((r) => values.get(`${r.source}#${r.deviceSeq}`) !== r.value).slice(0, 3), [], 'every hub reading carries the value the device sent');

  const { perSource, foreignDuplicates } = seqAnalysis(readings);
  t.same(foreignDuplicates, []);
  t.same(seqGaps(perSource), [], 'skipped lines leave no seq gap (seq is assigned to committed readings only)');

  // Each corrupted or garbage line is one error of its source; one checksum fault = one line
  // (four readings).
  for (const id of ['thermo-1', 'thermo-2']) {
    const s = reported.sources?.[id];
    const badLines = new Set(bad.filter((e) => e.source.startsWith(`serial:${id}/`)).map((e) => e.deviceSeq)).size;
    t.ok(typeof s?.errors === 'number' && s.errors >= badLines, `${id}: errors reported (${s?.errors}) ≥ corrupted lines seen (${badLines})`);
    t.ok(s?.errors > 0, `${id}: errors > 0`);
    t.equal(s?.connected, true, `${id}: still connected`);
  }
});

t.test('a desired patch with a wrong type while online is rejected and reported; config kept', async (t) => {
  const rig = await startRig(t, { thermostats: 1 });
  const registry = registryFor(rig.th);
  const { rt, log } = await rig.startInProcess();
  const getTwin = async (): Promise<Twin> => (await within(5000, 'getTwin', registry.getTwin(rig.deviceId))).responseBody as unknown as Twin;

  // Keep it online meanwhile: a local request while online restarts the online window.
  const hold = setInterval(() => rt.wakeNow(), 300);
  t.teardown(() => clearInterval(hold));
  await eventually(15_000, 'online', () => (rt.powerState.phase === 'online' ? true : undefined));
  await eventually(10_000, 'first twin reconcile reported', async () => ((await getTwin()).properties.reported.config?.status === 'applied' ? true : undefined));

  const current = await getTwin();
  const { responseBody } = await within(5000, 'updateTwin', registry.updateTwin(rig.deviceId, { properties: { desired: { checkInIntervalS: 'soon' } } }, current.etag));
  const version = (responseBody as unknown as Twin).properties.desired.$version as number;
  const rejected = await eventually(10_000, 'rejection reported', async () => {
    const c = (await getTwin()).properties.reported.config;
    return c?.desiredVersion === version ? c : undefined;
  });
  t.equal(rt.powerState.phase, 'online', 'handled live, as a patch');
  t.equal(rejected.status, 'rejected');
  t.match(rejected.errors, [{ path: '/checkInIntervalS' }], 'the bad field is named');
  t.not(rejected.appliedVersion, version, 'the rejected version is not the applied one');
  t.equal(rt.settings.checkInIntervalS, 10, 'previous check-in interval kept');
  t.ok(log.lines.some((l) => l.msg === 'desired properties rejected; previous config kept' && l.from === 'patch'), 'rejection logged (from the patch)');
  t.equal(rt.status().configStatus, 'rejected');
  clearInterval(hold);
  await rt.stop();
});
