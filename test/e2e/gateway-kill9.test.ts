/**
 * kill -9 of the gateway process at random moments, ten times in a row, while two thermostats
 * report over real ptys and the gateway forwards to the local hub whenever its outbox passes
 * a tiny high watermark. Then one more gateway drains what is left.
 *
 * Nothing committed may be lost: per source, the seqs at the hub are 1..max with no gap (seq is
 * assigned in the commit transaction, so a reading lost after commit would leave a gap).
 * Readings the devices sent but the gateway never committed must all fall in the documented
 * window: received within one commit interval before a kill, or sent while no gateway held the
 * port (opening a tty flushes its input).
 */
import { join } from 'node:path';
import t from 'tap';
import { seededRandom } from '../../common/seeded-random.js';
import { SqliteOutbox } from '../../gateway/src/adapters/sqlite-outbox.js';
import { eventually } from '../helpers/deadline.js';
import { seqAnalysis, seqGaps, startRig, type GatewayChild } from '../helpers/gateway-rig.js';

const KILLS = 10;
const COMMIT_INTERVAL_MS = 200;
/** Scheduling slack on a shared 2-core machine: the emulator stamps a line before the gateway reads it. */
const SLACK_MS = 1000;

function portsOpen(child: GatewayChild): number {
  return child.lines.filter((l) => l.msg === 'serial port open').length;
}

t.test(`kill -9 ${KILLS} times: nothing committed is lost, the rest is within the commit window`, async (t) => {
  const rig = await startRig(t, {
    thermostats: 2,
    settings: { outbox: { commitIntervalMs: COMMIT_INTERVAL_MS, highWatermarkBytes: 4096 } },
  });
  const random = seededRandom(42);
  /** [from, to] wall-clock windows in which uncommitted readings may be lost. */
  const lossWindows: [number, number][] = [];
  let downSince = Date.now();
  let sentBeforeLastKill = 0;

  for (let i = 0; i < KILLS; i++) {
    const child = rig.spawnGateway();
    await eventually(20_000, `gateway ${i} ports open`, () => (portsOpen(child) >= 2 ? true : undefined));
    lossWindows.push([downSince, Date.now() + SLACK_MS]);
    // 1-4 s: long enough to commit, often long enough to wake and be mid-send.
    await new Promise((r) => setTimeout(r, 1000 + random() * 3000));
    const killAt = Date.now();
    child.process.kill('SIGKILL');
    t.equal(await child.exited, null, `gateway ${i} killed by a signal`);
    downSince = killAt - COMMIT_INTERVAL_MS - SLACK_MS;
    sentBeforeLastKill = rig.hubReadings().length;
  }
  t.ok(sentBeforeLastKill > 0, `some readings reached the hub between kills (${sentBeforeLastKill})`);

  // A last gateway, in this process, drains everything left (including recorded batches).
  const { rt } = await rig.startInProcess();
  lossWindows.push([downSince, Date.now() + SLACK_MS]);
  await eventually(10_000, 'ports open', () => (rig.emulators.every((e) => e.stats.readingLines > 0) ? true : undefined));
  await eventually(30_000, 'drained', async () => {
    if (rt.powerState.phase === 'standby') rt.wakeNow();
    const stats = await rt.outboxStats();
    return stats.depth === 0 && rt.powerState.phase !== 'waking' ? true : undefined;
  });
  await rt.stop();
  const stoppedAt = Date.now();

  const ob = await SqliteOutbox.open({ path: join(rig.dataDir, 'outbox.sqlite'), workerExecArgv: [] });
  const left = (await ob.peek(1_000_000)).rows.map((r) => r.reading);
  const stats = await ob.stats();
  await ob.close();

  const hub = rig.hubReadings();
  const { perSource, foreignDuplicates } = seqAnalysis([...hub, ...left.map((r) => ({ ...r, messageId: 'outbox' }))]);
  t.same(foreignDuplicates.filter((d) => !d.includes('outbox')), [], 'duplicates at the hub only under the same message id');
  t.same(seqGaps(perSource), [], 'no committed reading lost: seq 1..max per source across hub and outbox');
  const unique = [...perSource.values()].reduce((n, l) => n + l.length, 0);
  t.equal(unique, stats.counters.appended, 'every reading ever committed is at the hub or in the outbox');

  // What the devices sent and the gateway never committed: only inside the loss windows.
  const arrived = new Set([...hub, ...left].map((r) => `${r.source}#${r.deviceSeq}`));
  const missing = rig.emitted().filter((e) => !arrived.has(`${e.source}#${e.deviceSeq}`) && e.ts < stoppedAt - SLACK_MS);
  const outside = missing.filter((e) => !lossWindows.some(([from, to]) => e.ts >= from && e.ts <= to));
  t.same(outside.slice(0, 5), [], `all ${missing.length} readings not committed fall in a kill window or a down time`);
  t.ok(hub.length > 0 && unique > missing.length, `committed ${unique}, lost uncommitted ${missing.length}`);
});
