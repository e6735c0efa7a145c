/**
 * The uplink's bad days, end to end against the local hub's switches: the hub down then up,
 * throttling, and an exhausted daily quota. Nothing is lost, nothing spins, the backlog drains.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { SqliteOutbox } from '../../gateway/src/adapters/sqlite-outbox.js';
import { eventually } from '../helpers/deadline.js';
import { registryFor } from '../helpers/hub.js';
import { seqAnalysis, seqGaps, startRig, type Rig } from '../helpers/gateway-rig.js';
import type { GatewayRuntime } from '../../gateway/src/app/gateway.js';

async function drainFully(rt: GatewayRuntime, ms: number): Promise<void> {
  await eventually(ms, 'outbox drained', async () => {
    if (rt.powerState.phase === 'standby') rt.wakeNow();
    const stats = await rt.outboxStats();
    return stats.depth === 0 && rt.powerState.phase === 'online' ? true : undefined;
  });
}

/** A backlog of `n` readings, as if the gateway had slept through them. */
async function prefill(rig: Rig, n: number): Promise<void> {
  mkdirSync(rig.dataDir, { recursive: true });
  const ob = await SqliteOutbox.open({ path: join(rig.dataDir, 'outbox.sqlite'), minFreeBytes: 0, workerExecArgv: [] });
  const now = Date.now();
  const samples = Array.from({ length: n }, (_, i) => ({ source: 'serial:backlog/temperature', kind: 'temperature' as const, value: 20 + (i % 50) / 10, unit: 'Cel', ts: now - (n - i) * 1000, flags: {} }));
  await ob.append(samples);
  await ob.close();
}

/** Until every reading of the prefilled backlog is at the hub (live readings keep coming). */
async function backlogArrived(rt: GatewayRuntime, rig: Rig, n: number, ms: number): Promise<void> {
  await eventually(ms, 'backlog at the hub', () => {
    if (rt.powerState.phase === 'standby') rt.wakeNow();
    const seqs = new Set(rig.hubReadings().filter((r) => r.source === 'serial:backlog/temperature').map((r) => r.seq));
    return seqs.size === n ? true : undefined;
  }, 250);
}

function assertNothingLost(t: Test, rig: Rig): void {
  const { perSource, foreignDuplicates } = seqAnalysis(rig.hubReadings());
  t.same(foreignDuplicates, [], 'duplicates only under the same message id');
  t.same(seqGaps(perSource), [], 'no gap in seq at the hub: nothing committed was lost');
}

t.test('hub down, then up: opens back off (no storm), nothing lost, backlog drained', async (t) => {
  const rig = await startRig(t, { thermostats: 2 });
  const { rt, log } = await rig.startInProcess();
  await drainFully(rt, 20_000);
  await eventually(15_000, 'standby', () => (rt.powerState.phase === 'standby' ? true : undefined));

  await rig.th.hub.stop();
  const committedAtOutage = rt.status().readingsCommitted;
  t.ok(rt.wakeNow(), 'wake while the hub is down');
  await new Promise((r) => setTimeout(r, 6000));
  const failedOpens = log.lines.filter((l) => l.msg === 'uplink open failed').length;
  // Backoff 0.5 s doubling to 2 s: about 5 attempts in 6 s; a storm would be hundreds.
  t.ok(failedOpens >= 2 && failedOpens <= 8, `opens retried on a backoff schedule (${failedOpens} in 6 s)`);
  t.equal(rt.powerState.phase === 'online', false, 'not online while the hub is down');
  t.ok(rt.status().readingsCommitted > committedAtOutage, 'readings keep being committed during the outage');

  await rig.th.restart();
  await drainFully(rt, 30_000);
  t.ok(rt.status().readingsSent > 0);
  assertNothingLost(t, rig);
});

t.test('throttled: kept in the outbox, backs off, everything drained after', async (t) => {
  const rig = await startRig(t, { thermostats: 2, hub: { d2cPerDevicePerSecond: 1 }, settings: { checkInIntervalS: 600, packer: { encoding: 'json', budgetUnits: 1 } } });
  await prefill(rig, 3000);
  const { rt, log } = await rig.startInProcess();
  const started = Date.now();
  await backlogArrived(rt, rig, 3000, 60_000);
  const seconds = (Date.now() - started) / 1000;
  const refused = rig.th.hub.meter.snapshot().devices[rig.deviceId]?.['refused.d2c.ThrottlingException'] ?? 0;
  const messages = rig.th.hub.meter.snapshot().devices[rig.deviceId]?.['d2c.messages'] ?? 0;
  t.ok(refused > 0, `the hub throttled the gateway (${refused} refusals for ${messages} messages)`);
  t.ok(refused <= 4 * seconds + 8, `refusals stay near the backoff rate, no busy loop (${refused} in ${seconds.toFixed(1)} s)`);
  t.ok(log.lines.some((l) => l.msg === 'IoT Hub throttled the gateway; backing off'), 'throttling logged as such');
  assertNothingLost(t, rig);
});

t.test('daily quota used up: nothing sent or dropped, no spinning, reported; drained once the quota is back', async (t) => {
  const rig = await startRig(t, { thermostats: 1, hub: { dailyQuotaUnits: 2 }, settings: { checkInIntervalS: 600, packer: { encoding: 'json', budgetUnits: 1 } } });
  await prefill(rig, 3000);
  const { rt, log } = await rig.startInProcess();
  rt.wakeNow();
  await eventually(20_000, 'quota hit', () => (log.lines.some((l) => l.msg === 'IoT Hub daily quota used up; waiting for the reset') ? true : undefined));
  const depthAtQuota = (await rt.outboxStats()).depth;
  await new Promise((r) => setTimeout(r, 3000));
  const refused = rig.th.hub.meter.snapshot().devices[rig.deviceId]?.['refused.d2c.IotHubQuotaExceeded'] ?? 0;
  t.ok(refused >= 1 && refused <= 4, `one failed send per message in flight, then it waits for 00:00 UTC (${refused} refusals)`);
  const waitLine = log.lines.find((l) => l.msg === 'IoT Hub daily quota used up; waiting for the reset');
  t.match(String(waitLine?.retryAt), /T00:00:00\.000Z$/, 'waits for the reset at 00:00 UTC');
  t.ok((await rt.outboxStats()).depth >= depthAtQuota, 'everything kept in the outbox');
  // Reported: the operator can see why the gateway is not sending.
  await eventually(10_000, 'quota reported', async () => {
    const tw = (await registryFor(rig.th).getTwin(rig.deviceId)).responseBody as unknown as { properties: { reported: { uplink?: { lastError?: { kind?: string } } } } };
    return tw.properties.reported.uplink?.lastError?.kind === 'quota' ? true : undefined;
  });
  await rt.stop();

  // The quota is back (a new day, here: a bigger quota): a restarted gateway drains it all.
  await rig.th.restart({ dailyQuotaUnits: 10_000 });
  const again = await rig.startInProcess();
  await backlogArrived(again.rt, rig, 3000, 30_000);
  assertNothingLost(t, rig);
});
