/**
 * The wall clock and the uplink (design §4, clock), end to end: real ptys, the SQLite outbox on
 * disk, the local hub over AMQP. While the clock is not trusted the gateway keeps sampling with
 * boot-relative time and does not connect (no SAS token from a wrong clock); once trusted it
 * re-bases what it holds and checks in. Readings of a boot that never synced keep their flag.
 */
import t from 'tap';
import { systemClock } from '../../common/clock.js';
import type { Logger } from '../../common/log.js';
import { readConnectionLog } from '../../cloud/hub/connection-log.js';
import { startPrivateBus } from '../../sensors/dbus/private-bus.js';
import { startFakeTimedate1 } from '../../sensors/dbus/fake-timedate1.js';
import { Timedate1ClockTrust } from '../../gateway/src/adapters/timedate1-clock-trust.js';
import { ManualClockTrust, type BootClock } from '../../gateway/src/ports/clock-trust.js';
import type { PowerPhase } from '../../gateway/src/domain/power-state.js';
import { captureLog, registryFor } from '../helpers/hub.js';
import { eventually } from '../helpers/deadline.js';
import { seqAnalysis, seqGaps, startRig, type Rig } from '../helpers/gateway-rig.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** deviceConnect records the hub logged for the gateway since the start of the test. */
function connects(rig: Rig): number {
  return readConnectionLog(rig.th.hub.db, { sinceMs: 0, limit: 1000 }).records.filter((r) => r.operationName === 'deviceConnect' && r.properties.includes(`"deviceId":"${rig.deviceId}"`)).length;
}

t.test('clock untrusted at start: no connection until trusted; readings re-based', async (t) => {
  const bus = await startPrivateBus();
  t.teardown(() => bus.stop());
  const timedate = await startFakeTimedate1({ address: bus.address, synchronized: false });
  t.teardown(() => timedate.stop());

  const rig = await startRig(t, { thermostats: 1 });
  const trustLog = captureLog('debug');
  const clockTrust = new Timedate1ClockTrust({ busAddress: bus.address, pollIntervalMs: 200, clock: systemClock, log: trustLog.logger as Logger });
  // The runtime closes it at stop; closing twice is harmless and covers a failed start.
  t.teardown(() => clockTrust.close());
  const { rt, log } = await rig.startInProcess({ clockTrust });

  const phases: PowerPhase[] = [rt.powerState.phase];
  const watch = setInterval(() => {
    const p = rt.powerState.phase;
    if (phases.at(-1) !== p) phases.push(p);
  }, 10);
  t.teardown(() => clearInterval(watch));

  t.equal(clockTrust.trusted, false, 'timedate1 says not synchronised');
  t.equal(rt.status().clockTrusted, false);
  t.equal(rt.wakeNow(), true, 'the local wake request is taken (and deferred)');
  t.equal(rt.powerState.wakePending, 'local', 'the wake waits for the clock');

  await sleep(4000);
  t.same(phases, ['standby'], 'stayed in standby while the clock was untrusted');
  t.equal(rig.th.hub.amqpConnections, 0, 'no AMQP connection open');
  t.equal(connects(rig), 0, 'the hub logged no device connect');
  await eventually(5000, 'readings committed while untrusted', () => (rt.status().readingsCommitted > 0 ? true : undefined));
  const committedUntrusted = rt.status().readingsCommitted;
  t.ok(committedUntrusted > 0, `readings committed meanwhile (${committedUntrusted})`);
  t.same(rig.hubReadings(), [], 'nothing at the hub yet');

  // Synchronised, without PropertiesChanged (as real timedated): polling must notice.
  const trustedAt = Date.now();
  timedate.setSynchronized(true);
  await eventually(5000, 'clock trusted', () => (clockTrust.trusted ? true : undefined));
  await eventually(15_000, 'online after the clock is trusted', () => (phases.includes('online') ? true : undefined));
  t.ok(connects(rig) >= 1, 'connected once trusted');
  t.ok(
    log.lines.some((l) => l.msg === 'wall clock trusted; boot-relative readings re-based' && typeof l.rebased === 'number' && l.rebased > 0),
    'the held readings were re-based',
  );
  await eventually(20_000, 'back in standby after the drain', () => (phases.lastIndexOf('standby') > phases.indexOf('online') ? true : undefined));
  const reported = (await registryFor(rig.th).getTwin(rig.deviceId)).responseBody.properties.reported as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- twin JSON
  t.equal(reported.clock?.trusted, true, 'the twin says the clock is trusted');
  await rt.stop();

  const readings = rig.hubReadings();
  t.ok(readings.length >= committedUntrusted, `at least the untrusted-time readings arrived (${readings.length} ≥ ${committedUntrusted})`);
  t.same(readings.filter((r) => r.flags.clockUnsynced !== undefined).slice(0, 3), [], 'no reading flagged clockUnsynced');
  t.same(readings.filter((r) => r.bootId !== undefined).slice(0, 3), [], 'no reading carries a boot id');
  const { perSource, foreignDuplicates } = seqAnalysis(readings);
  t.same(foreignDuplicates, []);
  t.same(seqGaps(perSource), [], 'seq contiguous per source');

  // Each reading's ts is wall-clock time: close to when the device logged the same deviceSeq.
  const emitted = new Map(rig.emitted().map((e) => [`${e.source}#${e.deviceSeq}`, e]));
  let matched = 0;
  let beforeTrust = 0;
  const off: string[] = [];
  for (const r of readings) {
    const e = emitted.get(`${r.source}#${r.deviceSeq}`);
    if (e === undefined) continue;
    matched++;
    if (e.ts < trustedAt) beforeTrust++;
    if (Math.abs(r.ts - e.ts) > 3000) off.push(`${r.source}#${r.deviceSeq}: hub ts ${r.ts}, device ts ${e.ts}`);
  }
  t.equal(matched, readings.length, 'every hub reading matches one the device sent');
  t.ok(beforeTrust > 0, `some readings were taken before the clock was trusted (${beforeTrust})`);
  t.same(off.slice(0, 3), [], 'ts re-based to wall-clock time (within 3 s of the device log)');
});

t.test('readings from an earlier boot that never synced arrive flagged', async (t) => {
  const rig = await startRig(t, { thermostats: 1 });
  const bootA: BootClock = { bootId: 'boot-A', sinceBootMs: () => performance.now() };
  const first = await rig.startInProcess({ bootClock: bootA, clockTrust: new ManualClockTrust(false) });
  t.equal(first.rt.wakeNow(), true);
  await eventually(10_000, 'boot-A readings committed', () => (first.rt.status().readingsCommitted >= 8 ? true : undefined));
  t.equal(first.rt.powerState.phase, 'standby', 'never went online untrusted');
  await first.rt.stop();
  const committedA = first.rt.status().readingsCommitted;
  t.equal(rig.th.hub.amqpConnections, 0);
  t.equal(connects(rig), 0, 'boot A never connected');

  // "Reboot": a new boot id, and this time the clock is good from the start.
  const bootB: BootClock = { bootId: 'boot-B', sinceBootMs: () => performance.now() };
  const startedB = Date.now();
  const second = await rig.startInProcess({ bootClock: bootB, clockTrust: new ManualClockTrust(true) });
  // Some boot-B readings committed first, so that one drain carries both boots.
  await eventually(10_000, 'boot-B readings committed', () => (second.rt.status().readingsCommitted >= 4 ? true : undefined));
  t.equal(second.rt.wakeNow(), true);
  const flagged = (): ReturnType<Rig['hubReadings']> => rig.hubReadings().filter((r) => r.flags.clockUnsynced === true);
  await eventually(20_000, 'boot-A readings at the hub', () => (new Set(flagged().map((r) => `${r.source}#${r.seq}`)).size >= committedA ? true : undefined));
  await eventually(20_000, 'boot-B readings at the hub', () => (rig.hubReadings().some((r) => r.flags.clockUnsynced !== true) ? true : undefined));
  await second.rt.stop();

  const readings = rig.hubReadings();
  const a = readings.filter((r) => r.flags.clockUnsynced === true);
  const b = readings.filter((r) => r.flags.clockUnsynced !== true);
  t.equal(new Set(a.map((r) => `${r.source}#${r.seq}`)).size, committedA, 'every boot-A reading arrived, flagged');
  t.same(a.filter((r) => r.bootId !== 'boot-A').slice(0, 3), [], 'flagged readings name boot A');
  const now = performance.now();
  t.same(a.filter((r) => !(r.ts >= 0 && r.ts <= now)).slice(0, 3), [], 'boot-A ts is boot-relative (ms since that boot), not wall clock');
  t.ok(b.length > 0, `boot-B readings arrived (${b.length})`);
  t.same(b.filter((r) => r.bootId !== undefined).slice(0, 3), [], 'boot-B readings carry no boot id');
  t.same(b.filter((r) => r.ts < startedB - 1000 || r.ts > Date.now()).slice(0, 3), [], 'boot-B ts is wall-clock time');
  // Boot-A readings come first per source (oldest rows first), seq continues across the restart.
  const { perSource, foreignDuplicates } = seqAnalysis(readings);
  t.same(foreignDuplicates, []);
  t.same(seqGaps(perSource), [], 'seq contiguous per source across the reboot');
  const maxA = new Map<string, number>();
  for (const r of a) maxA.set(r.source, Math.max(maxA.get(r.source) ?? 0, r.seq));
  t.same(b.filter((r) => r.seq <= (maxA.get(r.source) ?? 0)).slice(0, 3), [], 'boot-B seqs follow boot-A seqs');
});
