import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { FakeClock, systemClock, type Clock } from '../../../common/clock.js';
import { readEvents } from '../../../cloud/hub/event-store.js';
import { AmqpUplink } from '../../../gateway/src/adapters/amqp-uplink.js';
import { SqliteOutbox } from '../../../gateway/src/adapters/sqlite-outbox.js';
import { Forwarder, type DrainStats, type ForwarderOptions } from '../../../gateway/src/app/forwarder.js';
import { packMessage, planBatch, type PackerSettings } from '../../../gateway/src/app/packer.js';
import { decodeTelemetry, parseTelemetryMessageId } from '../../../gateway/src/contract/telemetry.js';
import type { Outbox, OutboxPeekOptions } from '../../../gateway/src/ports/outbox.js';
import { UplinkError as UplinkErrorClass, type OutgoingMessage, type Uplink, type UplinkError } from '../../../gateway/src/ports/uplink.js';
import type { Sample } from '../../../sensors/contract/reading.js';
import { eventually, within } from '../../helpers/deadline.js';
import { startTestHub, type TestHub } from '../../helpers/hub.js';
import { MemoryOutbox } from '../../helpers/memory-outbox.js';
import { noisyReadings } from '../../helpers/readings.js';
import { appendNow, sample } from '../ports/outbox-contract.js';

const WAIT = 15_000;
const GATEWAY = 'gw-1';
const LONG_TOKENS = { tokenValidTimeInSeconds: 2 * 86400, tokenRenewalMarginInSeconds: 3600 };

function samples(n: number): Sample[] {
  return Array.from({ length: n }, (_, i) => sample(`serial:thermo-${i % 5}/temperature`, i));
}

interface Rig {
  th: TestHub;
  outbox: SqliteOutbox;
  uplink: AmqpUplink;
  keys: string[];
}

/** A hub, an outbox holding `n` readings, and an uplink for GATEWAY; all cleaned up. */
async function rig(t: Test, n: number, hubOpts: Parameters<typeof startTestHub>[0] = {}, wall?: () => number): Promise<Rig> {
  const th = await startTestHub(hubOpts);
  t.teardown(() => th.cleanup());
  th.hub.createDevice(GATEWAY);
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-fwd-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const outbox = await within(WAIT, 'outbox open', SqliteOutbox.open({ path: join(dir, 'outbox.db'), clock: new FakeClock(), minFreeBytes: 0, workerExecArgv: ['--enable-source-maps'] }));
  t.teardown(() => outbox.close());
  const readings = await appendNow(outbox, samples(n));
  const clock: Clock = wall === undefined ? systemClock : { ...systemClock, now: wall };
  const uplink = new AmqpUplink({ connectionString: th.hub.deviceConnectionString(GATEWAY), ca: th.hub.ca, tokenRenewal: LONG_TOKENS, deadlineMs: 5000, clock });
  t.teardown(() => uplink.close());
  return { th, outbox, uplink, keys: readings.map((r) => `${r.source}#${r.seq}`).sort() };
}

/** (source, seq) of every reading the hub stored for GATEWAY. */
function arrived(th: TestHub): string[] {
  return readEvents(th.hub.db, { deviceId: GATEWAY, limit: 10_000 })
    .flatMap((e) => decodeTelemetry(Buffer.from(e.body, e.bodyEncoding === 'base64' ? 'base64' : 'utf8'), e.contentEncoding))
    .map((r) => `${r.source}#${r.seq}`)
    .sort();
}

/** A property of `target`, methods bound to it (its private fields do not exist on a proxy). */
function bound(target: object, prop: string | symbol): unknown {
  const v = Reflect.get(target, prop, target) as unknown;
  return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
}

/** Checks every ack against the messages already accepted, and records the order of acks. */
class AckWitness {
  readonly accepted: Array<[number, number]> = [];
  readonly acks: number[][] = [];
  readonly violations: string[] = [];
  inFlight = 0;
  maxInFlight = 0;

  /**
   * With `holdUntil`, the first sends are held (not passed on) until that many are in flight at
   * once, so the window is seen full however slow the machine; then nothing more is held.
   */
  uplink(inner: Uplink, delayFirstMs = 0, holdUntil = 0): Uplink {
    let sends = 0;
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    if (holdUntil <= 1) release();
    const send = async (m: OutgoingMessage): Promise<void> => {
      const n = sends++;
      this.inFlight++;
      this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
      if (this.inFlight >= holdUntil) release();
      try {
        await gate;
        await inner.send(m);
        if (n === 0 && delayFirstMs > 0) await new Promise((r) => setTimeout(r, delayFirstMs));
        const id = parseTelemetryMessageId(m.messageId);
        if (id) this.accepted.push([id.firstRowId, id.lastRowId]);
      } finally {
        this.inFlight--;
      }
    };
    return new Proxy(inner, { get: (target, prop) => (prop === 'send' ? send : bound(target, prop)) }) as Uplink;
  }

  outbox(inner: Outbox): Outbox {
    const ack = async (ids: readonly number[]): Promise<number> => {
      for (const id of ids) if (!this.accepted.some(([a, b]) => id >= a && id <= b)) this.violations.push(`row ${id} acked before acceptance`);
      this.acks.push([...ids]);
      return inner.ack(ids);
    };
    return new Proxy(inner, { get: (target, prop) => (prop === 'ack' ? ack : bound(target, prop)) }) as Outbox;
  }
}

/** Runs a drain on a FakeClock, advancing it by `stepMs` whenever the forwarder sleeps. */
async function driveDrain(clock: FakeClock, drain: Promise<DrainStats>, stepMs: number, onSleep: () => Promise<void> = async () => undefined): Promise<{ stats: DrainStats; sleeps: number }> {
  let done = false;
  const result = drain.finally(() => {
    done = true;
  });
  let sleeps = 0;
  while (!done) {
    await eventually(WAIT, 'forwarder sleeps or finishes', () => (done || clock.pendingSleeps > 0 ? true : undefined), 5);
    if (done) break;
    sleeps++;
    await onSleep();
    await clock.advance(stepMs);
  }
  return { stats: await within(WAIT, 'drain', result), sleeps };
}

const packer: PackerSettings = { gatewayId: GATEWAY, encoding: 'json' };

/** How many messages the packer makes of the outbox's rows (pure dry run). */
async function messageCount(outbox: Outbox): Promise<number> {
  let { rows } = await outbox.peek(100_000);
  let count = 0;
  while (rows.length > 0) {
    const { plan } = planBatch(rows, packer);
    rows = rows.slice(plan.rowIds.length);
    count++;
  }
  return count;
}

t.test('a drain delivers every reading, acks only accepted rows, in order, with several in flight', async (t) => {
  const r = await rig(t, 1500);
  const w = new AckWitness();
  const forwarder = new Forwarder({ outbox: w.outbox(r.outbox), uplink: w.uplink(r.uplink, 300, 4), clock: systemClock, packer, maxInFlight: 4 });
  const expected = await messageCount(r.outbox);
  const stats = await within(WAIT, 'drain', forwarder.drain());
  t.equal(stats.completed, true);
  t.equal(stats.readingsSent, 1500);
  t.equal(stats.rowsAcked, 1500);
  t.equal(stats.sendAttempts, stats.messagesSent, 'no failures, no resends');
  t.equal(stats.messagesSent, expected, 'as many messages as the packer makes');
  t.ok(stats.messagesSent >= 5, `${stats.messagesSent} messages`);
  t.same(w.violations, [], 'no row acked before its message was accepted');
  const order = w.acks.flat();
  t.same(order, [...order].sort((a, b) => a - b), 'rows acked in ascending order');
  t.equal(w.maxInFlight, 4, 'the window fills to 4 in flight, never more (sends held until it is full)');
  t.ok(
    w.accepted.findIndex(([a]) => a === 1) > 0,
    'message 1 (delayed) was accepted after a later one, yet acked first',
  );
  t.equal((await r.outbox.stats()).depth, 0);
  t.same(await eventually(WAIT, 'all stored', () => (arrived(r.th).length >= 1500 ? arrived(r.th) : undefined)), r.keys, 'every (source, seq) arrived exactly once');
});

t.test('throttling leaves rows in the outbox; the drain completes after backing off, without a busy loop', async (t) => {
  const clock = new FakeClock({ wallMs: Date.now() });
  const r = await rig(t, 2400, { d2cPerDevicePerSecond: 2, now: () => clock.now() }, () => clock.now());
  const messages = await messageCount(r.outbox);
  t.ok(messages >= 4, `${messages} messages, more than the 2/s allowance`);
  const problems: UplinkError[] = [];
  const waits: number[] = [];
  const opts: ForwarderOptions = {
    outbox: r.outbox,
    uplink: r.uplink,
    clock,
    packer,
    maxInFlight: 4,
    throttle: { baseMs: 1000, maxMs: 8000 },
    random: () => 0.5,
    onProblem: (e, ms) => {
      problems.push(e);
      waits.push(ms);
    },
  };
  const depths: number[] = [];
  const { stats, sleeps } = await driveDrain(clock, new Forwarder(opts).drain(), 10_000, async () => {
    depths.push((await r.outbox.stats()).depth);
  });
  t.equal(stats.completed, true);
  t.ok(stats.failures.throttled >= 1, `${stats.failures.throttled} throttled sends`);
  t.ok(problems.every((p) => p.kind === 'throttled'));
  t.ok(depths.every((d) => d > 0), 'while backing off, the unsent rows are still in the outbox');
  t.equal(stats.waits, sleeps, 'every failure waited on the clock');
  t.ok(waits.every((ms) => ms >= 500), `each wait is half the backoff plus jitter, never zero (${waits.join(', ')} ms)`);
  // Each wait lets 2 sends through and refuses at most the rest of a 4-message window.
  t.ok(stats.sendAttempts <= messages + 4 * stats.waits, `${stats.sendAttempts} send attempts for ${messages} messages and ${stats.waits} waits`);
  t.ok(stats.waits <= messages, 'no more waits than messages');
  t.equal(stats.messagesSent, messages);
  t.equal((await r.outbox.stats()).depth, 0);
  t.same(await eventually(WAIT, 'all stored', () => (arrived(r.th).length >= 2400 ? arrived(r.th) : undefined)), r.keys);
});

t.test('an exhausted quota stops the drain until 00:00 UTC (one sleep), then it completes', async (t) => {
  const now = Date.now();
  const midnight = Date.UTC(new Date(now).getUTCFullYear(), new Date(now).getUTCMonth(), new Date(now).getUTCDate() + 1);
  const clock = new FakeClock({ wallMs: midnight - 30_000 });
  const r = await rig(t, 1600, { dailyQuotaUnits: 1000, now: () => clock.now() }, () => clock.now());
  const messages = await messageCount(r.outbox);
  t.ok(messages >= 3, `${messages} messages`);
  // Today's quota covers about half the messages: restart the hub with it (same data, same ports).
  await r.th.restart({ dailyQuotaUnits: Math.ceil(messages / 2), now: () => clock.now() });
  const waits: Array<{ kind: string; ms: number; retryAt: number | undefined }> = [];
  const forwarder = new Forwarder({
    outbox: r.outbox,
    uplink: r.uplink,
    clock,
    packer,
    maxInFlight: 4,
    quotaSlackMs: 5000,
    onProblem: (e, ms) => waits.push({ kind: e.kind, ms, retryAt: e.retryAt }),
  });
  const depths: number[] = [];
  const { stats, sleeps } = await driveDrain(clock, forwarder.drain(), 35_000, async () => {
    depths.push((await r.outbox.stats()).depth);
  });
  t.equal(stats.completed, true);
  t.equal(sleeps, 1, 'one sleep, no polling');
  t.same(waits, [{ kind: 'quota', ms: 35_000, retryAt: midnight }], 'slept until midnight (+5 s slack) on the clock');
  t.ok(stats.failures.quota >= 1 && stats.failures.quota <= 4, `${stats.failures.quota} refused sends (at most one window)`);
  t.equal(depths[0], 1600 - readingsBefore(midnight), 'while waiting, every row not accepted before midnight is still in the outbox');
  t.equal(stats.messagesSent, messages);
  t.equal((await r.outbox.stats()).depth, 0);
  t.same(await eventually(WAIT, 'all stored', () => (arrived(r.th).length >= 1600 ? arrived(r.th) : undefined)), r.keys);

  function readingsBefore(at: number): number {
    return readEvents(r.th.hub.db, { deviceId: GATEWAY, limit: 10_000 })
      .filter((e) => Date.parse(e.enqueuedTimeUtc) < at)
      .reduce((n, e) => n + decodeTelemetry(Buffer.from(e.body, e.bodyEncoding === 'base64' ? 'base64' : 'utf8'), e.contentEncoding).length, 0);
  }
});

/** An uplink whose open fails with `kind` `failures` times, then accepts everything. */
function flakyUplink(kind: 'auth' | 'timeout', failures: number): Uplink & { opens: number; sent: string[] } {
  let open = false;
  const state = {
    opens: 0,
    sent: [] as string[],
    get isOpen() {
      return open;
    },
    async open() {
      state.opens++;
      if (state.opens <= failures) throw new UplinkErrorClass(kind, { message: `${kind} #${state.opens}` });
      open = true;
    },
    async send(m: OutgoingMessage) {
      state.sent.push(m.messageId);
    },
    async close() {
      open = false;
    },
    getTwin: () => Promise.resolve({ desired: {}, reported: {} }),
    reportProperties: () => Promise.resolve(),
    onCommand: () => () => undefined,
    onDesiredPatch: () => () => undefined,
    onDisconnect: () => () => undefined,
  };
  return state;
}

t.test('auth failures back off slowly (60 s doubling, capped at 30 min) and are reported', async (t) => {
  const clock = new FakeClock();
  const outbox = new MemoryOutbox();
  await appendNow(outbox, samples(10));
  const uplink = flakyUplink('auth', 8);
  const waits: Array<[string, number]> = [];
  const forwarder = new Forwarder({ outbox, uplink, clock, packer, random: () => 1 - Number.EPSILON, onProblem: (e, ms) => waits.push([e.code, ms]) });
  const { stats } = await driveDrain(clock, forwarder.drain(), 30 * 60_000);
  t.equal(stats.completed, true);
  t.equal(stats.failures.auth, 8, 'failed opens are counted');
  t.same(
    waits.map(([, ms]) => Math.round(ms / 1000)),
    [60, 120, 240, 480, 960, 1800, 1800, 1800],
    'seconds waited: doubling from 60 s to the 30 min cap',
  );
  t.ok(waits.every(([code]) => code === 'HUB_AUTH_FAILED'));
  t.equal(stats.lastError?.kind, 'auth', 'the last problem is kept for reporting');
  t.equal(uplink.sent.length, 1);
  t.equal((await outbox.stats()).depth, 0);
});

t.test('timeouts back off quickly and reopen the uplink', async (t) => {
  const clock = new FakeClock();
  const outbox = new MemoryOutbox();
  await appendNow(outbox, samples(10));
  const uplink = flakyUplink('timeout', 2);
  const waits: number[] = [];
  const forwarder = new Forwarder({ outbox, uplink, clock, packer, random: () => 0, onProblem: (_e, ms) => waits.push(ms) });
  const { stats } = await driveDrain(clock, forwarder.drain(), 60_000);
  t.equal(stats.completed, true);
  t.same(waits, [500, 1000], 'network backoff: 1 s doubling, equal jitter');
  t.equal(uplink.opens, 3);
  t.equal(stats.opens, 3);
});

t.test('an aborted drain returns its stats instead of throwing', async (t) => {
  const clock = new FakeClock();
  const outbox = new MemoryOutbox();
  await appendNow(outbox, samples(3));
  const ac = new AbortController();
  const forwarder = new Forwarder({ outbox, uplink: flakyUplink('auth', 100), clock, packer });
  const drain = forwarder.drain(ac.signal);
  await eventually(WAIT, 'sleeping', () => (clock.pendingSleeps > 0 ? true : undefined));
  ac.abort(new Error('shutdown'));
  const stats = await within(WAIT, 'aborted drain', drain);
  t.equal(stats.completed, false);
  t.equal((await outbox.stats()).depth, 3, 'nothing acked');
});

/** An open uplink that keeps every message it is given; with `hang`, no send ever resolves. */
function capturingUplink(hang: boolean): Uplink & { sent: OutgoingMessage[] } {
  const state = {
    ...flakyUplink('timeout', 0),
    isOpen: true,
    sent: [] as OutgoingMessage[],
    async open() {
      state.isOpen = true;
    },
    send(m: OutgoingMessage): Promise<void> {
      state.sent.push({ ...m, body: Buffer.from(m.body) });
      return hang ? new Promise<void>(() => undefined) : Promise.resolve();
    },
  };
  return state;
}

/** What must be identical in a resend. */
function wire(m: OutgoingMessage) {
  return { messageId: m.messageId, body: m.body.toString('base64'), contentType: m.contentType, contentEncoding: m.contentEncoding, properties: m.properties };
}

t.test('batches recorded before a crash are resent identically (same id, same bytes) after a restart with new settings, before any new batch', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-fwd-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const open = async () => {
    const outbox = await within(WAIT, 'outbox open', SqliteOutbox.open({ path: join(dir, 'outbox.db'), clock: new FakeClock(), minFreeBytes: 0, workerExecArgv: ['--enable-source-maps'] }));
    t.teardown(() => outbox.close());
    return outbox;
  };
  const clock = new FakeClock();

  // Run 1: two batches are recorded and sent; neither send ever resolves. Then the "crash".
  const first = await open();
  const readings = await appendNow(first, samples(1500));
  const hung = capturingUplink(true);
  void new Forwarder({ outbox: first, uplink: hung, clock, packer: { gatewayId: GATEWAY, encoding: 'json' }, maxInFlight: 2 })
    .drain()
    .catch(() => undefined);
  await eventually(WAIT, 'two sends in flight', () => (hung.sent.length >= 2 ? true : undefined));
  const recorded = await first.pendingBatches();
  t.same(recorded.map((b) => b.messageId), hung.sent.map((m) => m.messageId), 'each batch was recorded before it was sent');
  await first.close();

  // Run 2: the same file, other settings (gzip, a bigger budget).
  const second = await open();
  t.same(await second.pendingBatches(), recorded, 'the records survived the restart');
  const ok = capturingUplink(false);
  const newPacker: PackerSettings = { gatewayId: GATEWAY, encoding: 'json+gzip', budgetUnits: 4 };
  const stats = await within(WAIT, 'second drain', new Forwarder({ outbox: second, uplink: ok, clock, packer: newPacker }).drain());
  t.equal(stats.completed, true);
  t.ok(ok.sent.length > 2, `${ok.sent.length} messages`);
  t.same(ok.sent.slice(0, 2).map(wire), hung.sent.map(wire), 'the recorded batches went first, byte-identical with the same ids');
  t.ok(ok.sent.slice(2).every((m) => m.contentEncoding === 'gzip'), 'later batches use the new settings');
  const firstNew = parseTelemetryMessageId(ok.sent[2]?.messageId ?? '');
  const lastOld = parseTelemetryMessageId(ok.sent[1]?.messageId ?? '');
  t.ok(firstNew !== undefined && lastOld !== undefined && firstNew.firstRowId > lastOld.lastRowId, 'new batches start after the last recorded one');
  const delivered = ok.sent.flatMap((m) => decodeTelemetry(m.body, m.contentEncoding === 'gzip' ? 'gzip' : 'utf-8')).map((r) => `${r.source}#${r.seq}`);
  t.same(delivered.sort(), readings.map((r) => `${r.source}#${r.seq}`).sort(), 'every reading exactly once');
  t.equal(stats.rowsAcked, 1500);
  t.equal((await second.stats()).depth, 0);
  t.same(await second.pendingBatches(), [], 'acked batches left no record');
});

t.test('after a failed send the next pass resends the recorded batches unchanged', async (t) => {
  const clock = new FakeClock();
  const outbox = new MemoryOutbox();
  await appendNow(outbox, samples(1500));
  const sent: OutgoingMessage[] = [];
  let calls = 0;
  const uplink: Uplink = {
    ...capturingUplink(false),
    async send(m: OutgoingMessage) {
      sent.push(m);
      if (calls++ === 0) throw new UplinkErrorClass('throttled', { message: 'slow down' });
    },
  };
  const { stats } = await driveDrain(clock, new Forwarder({ outbox, uplink, clock, packer, maxInFlight: 2, random: () => 0 }).drain(), 60_000);
  t.equal(stats.completed, true);
  t.equal(stats.failures.throttled, 1);
  t.same(sent.slice(2, 4).map(wire), sent.slice(0, 2).map(wire), 'the failed window was resent identically');
  t.equal((await outbox.stats()).depth, 0);
  t.same(await outbox.pendingBatches(), []);
});

t.test('a drain reads each row about once and fills a big budget: the messages a planner makes of the whole outbox', async (t) => {
  const outbox = new MemoryOutbox();
  await appendNow(
    outbox,
    noisyReadings(60_000, 11).map(({ seq: _seq, ...s }) => s),
  );
  const all = (await outbox.peek(100_000)).rows;
  const settings: PackerSettings = { gatewayId: GATEWAY, encoding: 'json+gzip', budgetUnits: 16 };
  // What the packer makes of the outbox, each message planned from every row left.
  const expected: string[] = [];
  for (let at = 0; at < all.length; ) {
    const { plan } = planBatch(all.slice(at), settings);
    expected.push(plan.messageId);
    at += plan.rowIds.length;
  }
  t.ok(expected.length >= 4, `${expected.length} messages`);
  const peeks: Array<number | undefined> = [];
  const spy = new Proxy(outbox, {
    get: (target, prop) =>
      prop === 'peek'
        ? (limit: number, opts?: OutboxPeekOptions) => {
            peeks.push(opts?.afterId);
            return target.peek(limit, opts);
          }
        : bound(target, prop),
  }) as Outbox;
  const uplink = capturingUplink(false);
  const stats = await within(WAIT, 'drain', new Forwarder({ outbox: spy, uplink, clock: new FakeClock(), packer: settings }).drain());
  t.equal(stats.completed, true);
  t.same(uplink.sent.map((m) => m.messageId), expected, 'every message fills the 16-unit budget (as many rows as fit, not a peek window)');
  t.equal(stats.rowsAcked, all.length);
  t.ok(stats.rowsRead <= all.length * 1.5, `${stats.rowsRead} rows read for ${all.length} (each about once, never the rows in flight again)`);
  t.ok(peeks.slice(1).every((id) => id !== undefined && id > 0), 'every peek after the first continues after the rows already read');
  t.ok(stats.packMs > 0);
  t.equal((await outbox.stats()).depth, 0);
});

t.test('a batch recorded by an older version (no gzip level in its plan) is resent byte-identically, at level 9', async (t) => {
  const outbox = new MemoryOutbox();
  const readings = await appendNow(outbox, samples(300));
  const rows = (await outbox.peek(1000)).rows.slice(0, 200);
  const old = packMessage(GATEWAY, 'json+gzip', rows, 9);
  const plan = { messageId: old.messageId, gatewayId: GATEWAY, encoding: 'json+gzip', rowIds: rows.map((r) => r.id) };
  await outbox.recordBatch({ messageId: plan.messageId, firstId: rows[0]?.id ?? 0, lastId: rows.at(-1)?.id ?? 0, rowCount: rows.length, plan });
  const uplink = capturingUplink(false);
  const stats = await within(WAIT, 'drain', new Forwarder({ outbox, uplink, clock: new FakeClock(), packer: { gatewayId: GATEWAY, encoding: 'json+gzip', budgetUnits: 8 } }).drain());
  t.equal(stats.completed, true);
  t.equal(uplink.sent[0]?.messageId, old.messageId);
  t.ok(uplink.sent[0]?.body.equals(old.body), 'the same bytes as the level-9 original');
  t.equal(stats.rowsAcked, readings.length);
});
