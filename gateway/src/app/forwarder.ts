/**
 * The forwarder (design §4, issue 4): drains the outbox through the uplink.
 *
 * - Rows are read oldest first, only those after the last row planned (`peek` with `afterId`),
 *   about as many as fill the packer's budget (estimated from the last full message, plus 10 %,
 *   at most `peekRows`; more are read when all of them fit). They are packed (app/packer.ts)
 *   and sent with up to `maxInFlight` messages outstanding (fewer after throttling, see
 *   #window). Rows are acked strictly in order, each message only after its send resolved and
 *   every earlier message's rows were acked: if message 2 is accepted before message 1, its ack
 *   waits for message 1's. Acks are chained, not awaited before the next message is packed,
 *   and the messages already accepted behind the head are acked in the same call.
 * - When a send fails, no new message is started; the messages already in flight settle (each
 *   has the uplink's deadline), the accepted prefix is acked, and the rest stays in the outbox to
 *   be re-peeked after the wait below (a later message accepted behind a failed one is sent
 *   again: IoT Hub does not deduplicate, downstream keys on `(source, seq)`).
 * - throttled: exponential backoff with jitter (`throttle`); quota: one sleep until the error's
 *   `retryAt` (next 00:00 UTC) plus `quotaSlackMs`, never polling; auth: slow backoff (`auth`,
 *   60 s doubling to 30 min) and an error log naming the cause; timeout/unreachable/other:
 *   backoff (`network`) then reopen the uplink.
 * - All waiting is on the injected Clock's monotonic time.
 * - Every batch is recorded in the outbox (`recordBatch`: message id, row range, plan) before it
 *   is sent: its send starts once the record committed, while the next batch is packed. Each
 *   pass (the start of a drain, and again after every failure or reopen) first resends the
 *   recorded batches that are still pending, rebuilt with `buildMessage` from their plan and
 *   rows, so the resend after a crash or a settings change (budget, encoding) is the identical
 *   message with the same id; only rows outside every recorded batch are planned anew with the
 *   current settings. The outbox drops a record with its rows (see ports/outbox.ts).
 */
import { isFieldlinkError } from '../../../common/errors.js';
import type { Clock } from '../../../common/clock.js';
import type { Logger } from '../../../common/log.js';
import type { BatchRecord, Outbox, OutboxRow } from '../ports/outbox.js';
import { isUplinkError, UplinkError, type Uplink, type UplinkErrorKind } from '../ports/uplink.js';
import { budgetBytes } from '../domain/packer.js';
import { buildMessage, planBatch, type BatchPlan, type PackerSettings, type TelemetryMessage } from './packer.js';

export interface Backoff {
  readonly baseMs: number;
  readonly maxMs: number;
}

export interface ForwarderOptions {
  readonly outbox: Outbox;
  readonly uplink: Uplink;
  readonly clock: Clock;
  readonly packer: PackerSettings;
  readonly log?: Logger;
  /** Messages sent but not yet answered (default 4). */
  readonly maxInFlight?: number;
  /**
   * At most this many rows are read for one new message (default 65,536). Fewer are read as a
   * rule: about as many as filled the budget last time, plus 10 %.
   */
  readonly peekRows?: number;
  readonly throttle?: Backoff;
  readonly auth?: Backoff;
  readonly network?: Backoff;
  /** Added to a quota's reset time, so a fleet does not hit midnight at once (default 5 s). */
  readonly quotaSlackMs?: number;
  /** In [0, 1); injectable for tests. */
  readonly random?: () => number;
  /** Told about every failure that makes the forwarder wait (for reporting, e.g. in the twin). */
  readonly onProblem?: (error: UplinkError, waitMs: number) => void;
}

export const forwarderDefaults = {
  maxInFlight: 4,
  peekRows: 65_536,
  throttle: { baseMs: 1000, maxMs: 60_000 },
  auth: { baseMs: 60_000, maxMs: 30 * 60_000 },
  network: { baseMs: 1000, maxMs: 60_000 },
  quotaSlackMs: 5000,
} as const;

/** Rows read per new message beyond the estimate that fills the budget. */
const PEEK_MARGIN = 1.1;

export interface DrainStats {
  /** True when the outbox was empty at the end; false when aborted. */
  completed: boolean;
  messagesSent: number;
  readingsSent: number;
  rowsAcked: number;
  /** Every `uplink.send` call, accepted or not. */
  sendAttempts: number;
  opens: number;
  /** Failed sends/opens by kind. */
  failures: Record<UplinkErrorKind, number>;
  /** Waits after failures, and their total length (monotonic ms). */
  waits: number;
  waitedMs: number;
  /** Rows dropped because one alone is over the message cap (READING_TOO_LARGE). */
  rowsDropped: number;
  /** Rows returned by the outbox's peek (against rowsAcked: how much is read more than once). */
  rowsRead: number;
  /** Time spent packing (planBatch and rebuilding recorded batches; synchronous CPU), ms. */
  packMs: number;
  lastError: UplinkError | undefined;
}

interface InFlight {
  readonly plan: BatchPlan;
  readonly readings: number;
  /**
   * Resolves with undefined when accepted, else the classified uplink error; rejects when the
   * batch could not be recorded (an outbox failure, thrown by drain).
   */
  readonly result: Promise<UplinkError | undefined>;
  /** Set once `result` resolved: undefined while in flight, null when accepted. */
  settled: UplinkError | null | undefined;
}

/** The plan of a batch record, if it is one this forwarder wrote. */
function recordedPlan(record: BatchRecord): BatchPlan | undefined {
  const p = record.plan as Partial<Record<keyof BatchPlan, unknown>> | null;
  if (typeof p !== 'object' || p === null) return undefined;
  if (typeof p.messageId !== 'string' || p.messageId !== record.messageId || typeof p.gatewayId !== 'string') return undefined;
  if (p.encoding !== 'json' && p.encoding !== 'json+gzip') return undefined;
  if (!Array.isArray(p.rowIds) || p.rowIds.length !== record.rowCount || !p.rowIds.every((id) => Number.isInteger(id))) return undefined;
  const rowIds = p.rowIds as number[];
  if (rowIds[0] !== record.firstId || rowIds.at(-1) !== record.lastId) return undefined;
  // The zlib level the body was compressed with (absent in plans recorded before it was).
  if (p.gzipLevel !== undefined && (!Number.isInteger(p.gzipLevel) || (p.gzipLevel as number) < 0 || (p.gzipLevel as number) > 9)) return undefined;
  return { messageId: p.messageId, gatewayId: p.gatewayId, encoding: p.encoding, rowIds, ...(p.gzipLevel === undefined ? {} : { gzipLevel: p.gzipLevel as number }) };
}

function asUplinkError(e: unknown): UplinkError {
  return isUplinkError(e) ? e : new UplinkError('other', { message: `uplink: ${(e as Error)?.message ?? String(e)}`, cause: e });
}

export class Forwarder {
  readonly #o: ForwarderOptions;
  readonly #maxInFlight: number;
  /** Consecutive failures per backoff family; reset by a success. */
  #attempts = { throttle: 0, auth: 0, network: 0 };
  /**
   * Messages allowed in flight now: back to one after throttling (each extra message in flight
   * would only be refused too), then one more per accepted message up to maxInFlight.
   */
  #window: number;
  /** Rows that filled the budget exactly, by the last message the budget limited (rows per budget). */
  #rowsPerBudget: number | undefined;

  constructor(opts: ForwarderOptions) {
    this.#o = opts;
    this.#maxInFlight = opts.maxInFlight ?? forwarderDefaults.maxInFlight;
    if (!Number.isInteger(this.#maxInFlight) || this.#maxInFlight < 1) throw new RangeError(`maxInFlight must be a positive integer, got ${this.#maxInFlight}`);
    this.#window = this.#maxInFlight;
  }

  /** Sends until the outbox is empty (or `signal` aborts); outbox failures are thrown. */
  async drain(signal?: AbortSignal): Promise<DrainStats> {
    const stats: DrainStats = {
      completed: false,
      messagesSent: 0,
      readingsSent: 0,
      rowsAcked: 0,
      sendAttempts: 0,
      opens: 0,
      failures: { throttled: 0, quota: 0, auth: 0, tooLarge: 0, unreachable: 0, timeout: 0, other: 0 },
      waits: 0,
      waitedMs: 0,
      rowsDropped: 0,
      rowsRead: 0,
      packMs: 0,
      lastError: undefined,
    };
    try {
      for (;;) {
        signal?.throwIfAborted();
        if (!this.#o.uplink.isOpen) {
          try {
            stats.opens++;
            await this.#o.uplink.open(signal);
          } catch (e) {
            signal?.throwIfAborted();
            const err = asUplinkError(e);
            stats.failures[err.kind]++;
            await this.#wait(err, stats, signal);
            continue;
          }
        }
        const failure = await this.#pass(stats);
        if (failure === undefined) {
          stats.completed = true;
          return stats;
        }
        await this.#wait(failure, stats, signal);
      }
    } catch (e) {
      if (signal?.aborted && e === signal.reason) return stats;
      throw e;
    }
  }

  /** Rows to read for the next new message: enough to fill the budget, by the last one's rows per byte. */
  #wantRows(): number {
    const cap = this.#o.peekRows ?? forwarderDefaults.peekRows;
    const budget = budgetBytes(this.#o.packer.budgetUnits ?? 1);
    // Before the first full message: a dense guess (plain JSON rows ~16 B, gzip ~4 B).
    const estimate = this.#rowsPerBudget ?? budget / (this.#o.packer.encoding === 'json' ? 12 : 3);
    return Math.max(1, Math.min(cap, Math.ceil(estimate * PEEK_MARGIN) + 16));
  }

  /**
   * One pipelined pass from the oldest row; undefined when the outbox ran empty. Recorded
   * batches are resent as recorded; rows outside them are planned, recorded, then sent.
   *
   * Each fill of the window reads only rows after the last one planned (`peek` with `afterId`),
   * about as many as the next message needs (#wantRows, more if they all fit), and plans from
   * rows read in that fill: rows read but not planned are read again next time (~10 %), so no
   * row is planned from a copy older than one message's packing (as before; see
   * Outbox.rebaseUnsynced). A message is sent once its record committed (the next one is packed
   * meanwhile); acks are chained in order and batched (every message already accepted behind
   * the head), and do not hold up packing or sending; the pass waits for them before it ends.
   */
  async #pass(stats: DrainStats): Promise<UplinkError | undefined> {
    const { outbox, uplink, log } = this.#o;
    const cap = this.#o.peekRows ?? forwarderDefaults.peekRows;
    const budget = budgetBytes(this.#o.packer.budgetUnits ?? 1);
    const window: InFlight[] = [];
    const recorded = [...(await outbox.pendingBatches())];
    let lastPlanned = 0;
    let failure: UplinkError | undefined;
    let drained = false;
    // Acks, chained so they run in order; a failed ack stops the chain and is thrown at the end.
    // Accepted messages wait in `toAck` until the next peek has been asked for (the outbox
    // worker answers in order: the rows for the next message first, then the deletes).
    let acking: Promise<void> = Promise.resolve();
    let toAck: InFlight[] = [];
    const flushAcks = (): void => {
      const entries = toAck;
      if (entries.length === 0) return;
      toAck = [];
      const ids = entries.length === 1 ? (entries[0] as InFlight).plan.rowIds : entries.flatMap((e) => e.plan.rowIds);
      const dropped = entries.reduce((n, e) => n + (e.readings === 0 ? e.plan.rowIds.length : 0), 0);
      acking = acking.then(async () => {
        stats.rowsAcked += await outbox.ack(ids);
        stats.rowsDropped += dropped;
      });
      acking.catch(() => undefined);
    };
    const track = (entry: InFlight): void => {
      window.push(entry);
      entry.result.then(
        (err) => void (entry.settled = err ?? null),
        () => undefined,
      );
    };
    // Sends start in order, each once its batch is recorded (the outbox worker commits records in order).
    const send = (plan: BatchPlan, message: TelemetryMessage, record?: BatchRecord): void => {
      lastPlanned = plan.rowIds.at(-1) ?? lastPlanned;
      const committed = record === undefined ? Promise.resolve() : outbox.recordBatch(record);
      const result = committed.then(() => {
        stats.sendAttempts++;
        return uplink.send(message).then(
          () => undefined,
          (e: unknown) => asUplinkError(e),
        );
      });
      track({ plan, readings: message.readingCount, result, settled: undefined });
    };
    try {
      for (;;) {
        // Fill the window while nothing has failed, from rows read in this fill.
        let rows: OutboxRow[] = [];
        let more = true;
        const read = async (n: number): Promise<void> => {
          const peeked = outbox.peek(n, { afterId: rows.at(-1)?.id ?? lastPlanned });
          flushAcks();
          const { rows: got } = await peeked;
          more = got.length >= n;
          stats.rowsRead += got.length;
          rows = rows.length === 0 ? [...got] : rows.concat(got);
        };
        while (failure === undefined && !drained && window.length < this.#window) {
          rows = rows.filter((r) => r.id > lastPlanned);
          const next = recorded[0];
          if (next !== undefined && (rows[0]?.id ?? lastPlanned + 1) >= next.firstId) {
            // A recorded batch is next: read up to its last row, resend it as recorded.
            while (more && (rows.at(-1)?.id ?? lastPlanned) < next.lastId) await read(Math.max(next.rowCount, 1));
            recorded.shift();
            const plan = recordedPlan(next);
            const batchRows = rows.filter((r) => r.id <= next.lastId);
            const first = batchRows[0];
            if (first === undefined) continue;
            if (plan === undefined || first.id !== next.firstId || batchRows.length !== plan.rowIds.length || batchRows.some((r, i) => r.id !== plan.rowIds[i])) {
              // Not rebuildable (the outbox drops such records with their rows): plan the rows anew.
              log?.warn({ messageId: next.messageId, firstId: next.firstId, lastId: next.lastId }, 'recorded batch does not match the outbox rows; planning its rows anew');
              continue;
            }
            const t0 = performance.now();
            const message = buildMessage(plan, batchRows);
            stats.packMs += performance.now() - t0;
            send(plan, message);
            continue;
          }
          // Rows outside every recorded batch: plan them with the current settings, below the next record.
          const want = this.#wantRows();
          if (rows.length < want && more) await read(want - rows.length);
          const bounded = (): OutboxRow[] => (next === undefined ? rows : rows.filter((r) => r.id < next.firstId));
          let candidates = bounded();
          const first = candidates[0];
          if (first === undefined) {
            // Nothing after the last planned row: drained, or the next record's rows are gone.
            if (rows.length === 0) {
              if (next === undefined) drained = true;
              else recorded.shift();
            }
            continue;
          }
          let batch = this.#plan(candidates, stats);
          // Every row read fits: read more (up to the cap) and plan again, so a message fills its budget.
          while (batch !== undefined && batch.plan.rowIds.length === candidates.length && more && candidates.length === rows.length && rows.length < cap) {
            await read(Math.min(cap - rows.length, Math.max(64, Math.ceil(rows.length / 4))));
            candidates = bounded();
            batch = this.#plan(candidates, stats);
          }
          if (batch === undefined) {
            // The first row alone can never be sent; drop it once everything before it is acked.
            lastPlanned = first.id;
            track({ plan: { messageId: `drop-${first.id}`, gatewayId: '', encoding: 'json', rowIds: [first.id] }, readings: 0, result: Promise.resolve(undefined), settled: undefined });
            continue;
          }
          const { plan, message } = batch;
          if (plan.rowIds.length < candidates.length) this.#rowsPerBudget = (plan.rowIds.length * budget) / message.size;
          send(plan, message, { messageId: plan.messageId, firstId: first.id, lastId: plan.rowIds.at(-1) ?? first.id, rowCount: plan.rowIds.length, plan });
        }
        flushAcks();
        const head = window.shift();
        if (head === undefined) return failure;
        const err = await head.result;
        if (err !== undefined || failure !== undefined) {
          // Rows from here on stay in the outbox; wait for the rest of the window to settle.
          failure ??= err;
          if (err !== undefined) stats.failures[err.kind]++;
          continue;
        }
        // Ack the head with every message accepted right behind it, in one call.
        const accepted = [head];
        while (window[0] !== undefined && window[0].settled === null) accepted.push(window.shift() as InFlight);
        toAck.push(...accepted);
        for (const e of accepted) {
          if (e.readings === 0) continue;
          stats.messagesSent++;
          stats.readingsSent += e.readings;
          this.#attempts = { throttle: 0, auth: 0, network: 0 };
          this.#window = Math.min(this.#maxInFlight, this.#window + 1);
        }
      }
    } finally {
      // Outbox failures (a record or an ack) are thrown; every started ack is waited for.
      flushAcks();
      await Promise.allSettled(window.map((e) => e.result));
      await acking;
    }
  }

  #plan(rows: readonly OutboxRow[], stats: DrainStats): ReturnType<typeof planBatch> | undefined {
    const t0 = performance.now();
    try {
      return planBatch(rows, this.#o.packer, this.#rowsPerBudget === undefined ? {} : { guessRows: this.#rowsPerBudget });
    } catch (e) {
      if (!isFieldlinkError(e, 'READING_TOO_LARGE')) throw e;
      this.#o.log?.error({ err: e }, 'outbox row too large to ever send; dropping it');
      return undefined;
    } finally {
      stats.packMs += performance.now() - t0;
    }
  }

  async #wait(err: UplinkError, stats: DrainStats, signal?: AbortSignal): Promise<void> {
    const { clock, log } = this.#o;
    stats.lastError = err;
    let ms: number;
    switch (err.kind) {
      case 'quota': {
        const at = err.retryAt ?? clock.now() + 3600_000;
        ms = Math.max(0, at - clock.now()) + (this.#o.quotaSlackMs ?? forwarderDefaults.quotaSlackMs);
        log?.warn({ err, retryAt: new Date(at).toISOString(), waitMs: ms }, 'IoT Hub daily quota used up; waiting for the reset');
        break;
      }
      case 'throttled':
        this.#window = 1;
        ms = this.#backoff('throttle', this.#o.throttle ?? forwarderDefaults.throttle);
        log?.warn({ err, waitMs: ms }, 'IoT Hub throttled the gateway; backing off');
        break;
      case 'auth':
        ms = this.#backoff('auth', this.#o.auth ?? forwarderDefaults.auth);
        log?.error({ err, waitMs: ms }, 'IoT Hub rejected the gateway credentials (key, device id or clock); retrying slowly');
        break;
      default:
        ms = this.#backoff('network', this.#o.network ?? forwarderDefaults.network);
        log?.warn({ err, waitMs: ms }, 'uplink failed; backing off before reopening');
        // A failed pass may leave the uplink half-open: reopen from scratch.
        if (err.kind === 'timeout' || err.kind === 'unreachable') await this.#o.uplink.close().catch(() => undefined);
    }
    stats.waits++;
    stats.waitedMs += ms;
    this.#o.onProblem?.(err, ms);
    await clock.sleep(ms, signal);
  }

  /** Equal jitter: half the exponential delay fixed (never a busy loop), half random. */
  #backoff(family: 'throttle' | 'auth' | 'network', b: Backoff): number {
    const n = this.#attempts[family]++;
    const exp = Math.min(b.maxMs, b.baseMs * 2 ** Math.min(n, 30));
    const random = this.#o.random ?? Math.random;
    return Math.round(exp / 2 + random() * (exp / 2));
  }
}
