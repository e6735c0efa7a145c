/**
 * The gateway's promise end to end: two thermostats on real ptys, the SQLite outbox on disk, the
 * local hub through the real SDK over AMQP. Across several standby → online → standby cycles,
 * every committed reading arrives, duplicates only under the same message id, and the twin's
 * reported state tells what happened.
 */
import t from 'tap';
import { registryFor } from '../helpers/hub.js';
import { eventually } from '../helpers/deadline.js';
import { seqAnalysis, seqGaps, startRig } from '../helpers/gateway-rig.js';
import type { PowerPhase } from '../../gateway/src/domain/power-state.js';

t.test('readings cross several standby cycles without loss; reported state follows', async (t) => {
  const rig = await startRig(t, { thermostats: 2 });
  const { rt } = await rig.startInProcess();

  // Watch the phases the gateway goes through.
  const phases: PowerPhase[] = [rt.powerState.phase];
  const watch = setInterval(() => {
    const p = rt.powerState.phase;
    if (phases.at(-1) !== p) phases.push(p);
  }, 20);
  t.teardown(() => clearInterval(watch));

  t.equal(rt.powerState.phase, 'standby', 'boots in standby: uplink closed');
  t.equal(rig.th.hub.amqpConnections, 0, 'no connection to the hub while in standby');

  // Two whole cycles on the check-in schedule (10 s), then one more on a local request.
  const cycles = (): number => phases.filter((p, i) => p === 'standby' && phases[i - 1] === 'closing').length;
  await eventually(40_000, 'two standby cycles', () => cycles() >= 2 || undefined);
  t.ok(rt.wakeNow(), 'local wake request accepted in standby');
  await eventually(20_000, 'third cycle after the local request', () => cycles() >= 3 || undefined);
  t.same(phases.slice(0, 5), ['standby', 'waking', 'online', 'closing', 'standby'], 'the phases in order');

  const status = rt.status();
  t.ok(status.readingsSent > 0, `readings were sent (${status.readingsSent})`);
  const twin = await registryFor(rig.th).getTwin(rig.deviceId);
  const reported = twin.responseBody.properties.reported as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- twin JSON
  t.equal(reported.firmware?.version, '0.0.0-test', 'firmware version reported');
  t.match(reported.power, { state: 'standby', lastWakeReason: 'local' }, 'last report before closing: going to standby, and why it woke');
  t.type(reported.power.lastCheckIn, 'string');
  t.ok(reported.outbox.appended > 0 && reported.outbox.sent > 0, 'outbox counters reported');
  t.match(reported.sources, { 'thermo-1': { connected: true }, 'thermo-2': { connected: true } }, 'per-source health reported');
  t.equal(reported.clock.trusted, true);
  t.equal(reported.config.status, 'applied');
  t.ok(JSON.stringify(reported).length < 4096, `reported state is compact (${JSON.stringify(reported).length} bytes)`);

  await rt.stop();
  const stats = await (async () => {
    const { SqliteOutbox } = await import('../../gateway/src/adapters/sqlite-outbox.js');
    const { join } = await import('node:path');
    const ob = await SqliteOutbox.open({ path: join(rig.dataDir, 'outbox.sqlite'), workerExecArgv: [] });
    try {
      return await ob.stats();
    } finally {
      await ob.close();
    }
  })();

  const readings = rig.hubReadings();
  const { perSource, foreignDuplicates } = seqAnalysis(readings);
  t.same(foreignDuplicates, [], 'a reading arrives twice only under the same message id');
  t.same(seqGaps(perSource), [], 'no committed reading missing at the hub (seq contiguous per source)');
  t.equal([...perSource.keys()].length, 8, 'four kinds from each of two thermostats');
  const unique = [...perSource.values()].reduce((n, l) => n + l.length, 0);
  t.equal(unique + stats.depth, stats.counters.appended, 'everything committed is either at the hub or still in the outbox');
  t.equal(stats.counters.sent, unique, 'rows acked = readings the hub accepted');

  // The values are the devices' own: match each hub reading to the emulator's log.
  const emitted = new Map(rig.emitted().map((e) => [`${e.source}#${e.deviceSeq}`, e.value]));
  const mismatched = readings.filter((r) => emitted.get(`${r.source}#${r.deviceSeq}`) !== r.value);
  t.same(mismatched.slice(0, 3), [], 'every reading at the hub carries the value the device sent');
});
