/**
 * A full outbox (docs/outbox.md, "Bounds and eviction"), end to end: the gateway starts on an
 * outbox file already holding more than its byte bound. Its first commit evicts the oldest
 * non-alarm rows (by id) until the rows fit, keeping alarms; the high watermark wakes the uplink;
 * what is left reaches the hub, and the counters are reported in the twin.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { SqliteOutbox } from '../../gateway/src/adapters/sqlite-outbox.js';
import type { Sample } from '../../sensors/contract/reading.js';
import { registryFor } from '../helpers/hub.js';
import { eventually, within } from '../helpers/deadline.js';
import { seqAnalysis, seqGaps, startRig } from '../helpers/gateway-rig.js';

const PREFILL_SOURCE = 'serial:prefill/temperature';
const MAX_BYTES = 1_048_576;
const ROWS = 12_000;
/** Every ALARM_EVERY-th prefilled reading is an alarm (seq 1000, 2000, … 12000). */
const ALARM_EVERY = 1000;

type Reported = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- twin JSON

t.test('outbox full: oldest non-alarm evicted first, then oldest alarms; counters reported in the twin', async (t) => {
  const rig = await startRig(t, {
    thermostats: 1,
    settings: { outbox: { maxBytes: MAX_BYTES, minFreeBytes: 0, highWatermarkBytes: 4096 }, packer: { budgetUnits: 16 } },
  });

  // Pre-fill the gateway's outbox file past its bound (appended seqs 1..ROWS of one source).
  mkdirSync(rig.dataDir, { recursive: true, mode: 0o700 });
  const path = join(rig.dataDir, 'outbox.sqlite');
  const prefill = await SqliteOutbox.open({ path, maxBytes: 64 * MAX_BYTES, minFreeBytes: 0, workerExecArgv: [] });
  const base = Date.now() - ROWS * 1000;
  const alarmSeqs = new Set<number>();
  /** Stored size of each prefilled row (docs/outbox.md: UTF-8 length of the reading's JSON). */
  const sizes = new Map<number, number>();
  try {
    const appends: Promise<unknown>[] = [];
    for (let start = 1; start <= ROWS; start += 1000) {
      const chunk: Sample[] = [];
      for (let i = start; i < start + 1000 && i <= ROWS; i++) {
        const alarm = i % ALARM_EVERY === 0;
        if (alarm) alarmSeqs.add(i);
        const sample: Sample = { source: PREFILL_SOURCE, kind: 'temperature', value: alarm ? 85 : 20 + (i % 7) / 10, unit: 'Cel', ts: base + i * 1000, deviceSeq: i, flags: alarm ? { alarm: true } : {} };
        sizes.set(i, Buffer.byteLength(JSON.stringify({ ...sample, seq: i })));
        chunk.push(sample);
      }
      appends.push(prefill.append(chunk));
    }
    await Promise.all(appends);
    await prefill.flush();
    const stats = await prefill.stats();
    t.equal(stats.depth, ROWS, 'prefilled');
    t.ok(stats.bytes > MAX_BYTES * 1.1, `prefill exceeds the gateway's bound (${stats.bytes} > ${MAX_BYTES} bytes)`);
    t.equal(stats.counters.evicted, 0);
  } finally {
    await prefill.close();
  }
  t.equal(alarmSeqs.size, ROWS / ALARM_EVERY, 'alarms spread through the prefill');

  const { rt } = await rig.startInProcess();
  t.equal(rt.powerState.phase, 'standby', 'boots in standby');

  // The first commit evicts; the watermark (4 KiB) wakes the uplink; the drain sends the rest.
  const registry = registryFor(rig.th);
  const reported = async (): Promise<Reported> =>
    (await within(5000, 'getTwin', registry.getTwin(rig.deviceId))).responseBody.properties.reported as Reported;
  const prefillAtHub = (): Set<number> => new Set(rig.hubReadings().filter((r) => r.source === PREFILL_SOURCE).map((r) => r.seq));
  const final = await eventually(
    60_000,
    'every prefilled row either at the hub or counted as evicted (twin)',
    async () => {
      const atHub = prefillAtHub();
      if (!atHub.has(ROWS)) return undefined;
      const r = await reported();
      const evicted = r.outbox?.evicted;
      return typeof evicted === 'number' && evicted > 0 && atHub.size + evicted >= ROWS ? r : undefined;
    },
    500,
  );
  await eventually(20_000, 'back in standby', () => (rt.powerState.phase === 'standby' ? true : undefined));
  await rt.stop();

  const outbox = final.outbox as { evicted: number; evictedAlarms: number; appended: number; sent: number };
  t.ok(outbox.evicted > 0, `evictions reported in the twin (${outbox.evicted})`);
  t.equal(outbox.evictedAlarms, 0, 'no alarm evicted while non-alarms were there to evict');
  t.match(final.power, { lastWakeReason: 'outboxHighWatermark' }, 'the high watermark woke the uplink');

  const atHub = prefillAtHub();
  const missing = [];
  for (let s = 1; s <= ROWS; s++) if (!atHub.has(s)) missing.push(s);
  t.same([...alarmSeqs].filter((s) => !atHub.has(s)), [], 'every prefilled alarm reached the hub');
  t.equal(missing.length, outbox.evicted, 'the prefilled readings missing at the hub are exactly the evicted ones');
  const nonAlarmSeqs = Array.from({ length: ROWS }, (_, i) => i + 1).filter((s) => !alarmSeqs.has(s));
  t.same(missing, nonAlarmSeqs.slice(0, missing.length), 'the missing ones are the oldest non-alarms (lowest seqs); every newer one arrived');
  t.ok(missing.length > ALARM_EVERY, `evicted past alarms, which stayed (${missing.length} evicted)`);
  t.ok(missing.length < ROWS - alarmSeqs.size, 'not everything was evicted');
  t.ok(outbox.evicted > 0 && outbox.evicted === missing.length, 'evicted counter = prefilled readings missing (none of the gateway\'s own)');
  // Eviction stops once the rows fit: what was kept is within the bound, and close to it (the
  // gateway's own groups committed before the drain began account for the difference).
  let kept = 0;
  for (const [seq, size] of sizes) if (atHub.has(seq)) kept += size;
  t.ok(kept <= MAX_BYTES, `the prefill kept fits the bound (${kept} ≤ ${MAX_BYTES} bytes)`);
  t.ok(kept > MAX_BYTES - 32_768, `no more evicted than needed (${kept} bytes kept)`);

  // The gateway's own readings were never evicted (the prefill's oldest went first).
  const { perSource, foreignDuplicates } = seqAnalysis(rig.hubReadings().filter((r) => r.source !== PREFILL_SOURCE));
  t.ok(perSource.size > 0, 'the thermostat readings arrived too');
  t.same(foreignDuplicates, []);
  t.same(seqGaps(perSource), [], 'no thermostat reading evicted');
});

t.test('outbox full of alarms: the new non-alarm readings go first, then the oldest alarms', async (t) => {
  const rig = await startRig(t, {
    thermostats: 1,
    settings: { outbox: { maxBytes: MAX_BYTES, minFreeBytes: 0, highWatermarkBytes: 4096 }, packer: { budgetUnits: 16 } },
  });
  mkdirSync(rig.dataDir, { recursive: true, mode: 0o700 });
  const prefill = await SqliteOutbox.open({ path: join(rig.dataDir, 'outbox.sqlite'), maxBytes: 64 * MAX_BYTES, minFreeBytes: 0, workerExecArgv: [] });
  const rows = 10_000;
  const sizes = new Map<number, number>();
  try {
    const base = Date.now() - rows * 1000;
    const appends: Promise<unknown>[] = [];
    for (let start = 1; start <= rows; start += 1000) {
      const chunk: Sample[] = [];
      for (let i = start; i < start + 1000 && i <= rows; i++) {
        const sample: Sample = { source: PREFILL_SOURCE, kind: 'temperature', value: 85, unit: 'Cel', ts: base + i * 1000, deviceSeq: i, flags: { alarm: true } };
        sizes.set(i, Buffer.byteLength(JSON.stringify({ ...sample, seq: i })));
        chunk.push(sample);
      }
      appends.push(prefill.append(chunk));
    }
    await Promise.all(appends);
    await prefill.flush();
    const stats = await prefill.stats();
    t.ok(stats.bytes > MAX_BYTES * 1.05, `alarms alone exceed the gateway's bound (${stats.bytes} bytes)`);
  } finally {
    await prefill.close();
  }

  const { rt } = await rig.startInProcess();
  const registry = registryFor(rig.th);
  const reported = async (): Promise<Reported> =>
    (await within(5000, 'getTwin', registry.getTwin(rig.deviceId))).responseBody.properties.reported as Reported;
  const prefillAtHub = (): Set<number> => new Set(rig.hubReadings().filter((r) => r.source === PREFILL_SOURCE).map((r) => r.seq));
  await eventually(
    60_000,
    'every prefilled alarm either at the hub or counted as an evicted alarm (twin)',
    async () => {
      const atHub = prefillAtHub();
      if (!atHub.has(rows)) return undefined;
      const r = await reported();
      const evictedAlarms = r.outbox?.evictedAlarms;
      return typeof evictedAlarms === 'number' && evictedAlarms > 0 && atHub.size + evictedAlarms >= rows ? r : undefined;
    },
    500,
  );
  await eventually(20_000, 'back in standby', () => (rt.powerState.phase === 'standby' ? true : undefined));
  // One more check-in: the thermostat readings committed since there was room go out.
  const thermoAtHub = (): number => rig.hubReadings().filter((r) => r.source !== PREFILL_SOURCE).length;
  const before = thermoAtHub();
  t.ok(rt.wakeNow(), 'local wake');
  await eventually(20_000, 'thermostat readings at the hub', () => (thermoAtHub() > before ? true : undefined));
  await eventually(20_000, 'back in standby', () => (rt.powerState.phase === 'standby' ? true : undefined));
  const final = await reported();
  await rt.stop();

  // The counters as the file holds them after the stop (the twin's are from the last report).
  const ob = await SqliteOutbox.open({ path: join(rig.dataDir, 'outbox.sqlite'), workerExecArgv: [] });
  const stats = await ob.stats().finally(() => ob.close());
  t.ok(final.outbox?.evictedAlarms > 0, `evicted alarms reported in the twin (${final.outbox?.evictedAlarms})`);
  t.equal(final.outbox?.evictedAlarms, stats.counters.evictedAlarms, 'the twin has the final alarm count');

  const atHub = prefillAtHub();
  const missing = [];
  for (let s = 1; s <= rows; s++) if (!atHub.has(s)) missing.push(s);
  const { evicted, evictedAlarms } = stats.counters;
  t.ok(evictedAlarms > 0, `alarms evicted once no non-alarm was left (${evictedAlarms})`);
  t.equal(missing.length, evictedAlarms, 'the alarms missing at the hub are exactly the evicted alarms');
  t.same(missing, Array.from({ length: missing.length }, (_, i) => i + 1), 'the oldest alarms went (lowest seqs); every newer one arrived');
  let kept = 0;
  for (const [seq, size] of sizes) if (atHub.has(seq)) kept += size;
  t.ok(kept <= MAX_BYTES && kept > MAX_BYTES - 32_768, `alarms kept fit the bound, no more evicted than needed (${kept} bytes)`);

  // Non-alarm readings are evicted before any alarm, even the newest: while the alarms filled
  // the outbox, the gateway's own readings went as they were committed. They are the first seqs
  // of each source (a gap at the start, never after); what the hub lacks beyond is still stored.
  const thermo = seqAnalysis(rig.hubReadings().filter((r) => r.source !== PREFILL_SOURCE));
  t.same(thermo.foreignDuplicates, []);
  t.equal(thermo.perSource.size, 4, 'four kinds of the thermostat arrived');
  const evictedNonAlarms = evicted - evictedAlarms;
  t.ok(evictedNonAlarms > 0, `the gateway's own non-alarm readings were evicted first (${evictedNonAlarms})`);
  const gapped = [...thermo.perSource.values()].reduce((n, seqs) => n + (seqs[0] ?? 1) - 1, 0);
  t.equal(gapped, evictedNonAlarms, 'the evicted non-alarms are the first seqs of each source');
  const rebased = new Map([...thermo.perSource].map(([k, seqs]) => [k, seqs.map((s) => s - seqs[0]! + 1)]));
  t.same(seqGaps(rebased), [], 'after those, none missing');
  const thermoUnique = [...thermo.perSource.values()].reduce((n, l) => n + l.length, 0);
  t.equal(rows + gapped + thermoUnique + stats.depth, stats.counters.appended, 'everything appended is at the hub, evicted, or still stored');
});
