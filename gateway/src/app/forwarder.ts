/**
 * The forwarder (design §4, issue 4): drains the outbox through the uplink.
 *
 * - Rows are peeked oldest first, packed (app/packer.ts) and sent with up to `maxInFlight`
 *   messages outstanding. Rows are acked strictly in order, each message only after its send
 *   resolved and every earlier message's rows were acked: if message 2 is accepted before
 *   message 1, its ack waits for message 1's.
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
 *   is sent. Each pass (the start of a drain, and again after every failure or reopen) first
 *   resends the recorded batches that are still pending, rebuilt with `buildMessage` from their
 *   plan and rows, so the resend after a crash or a settings change (budget, encoding) is the
 *   identical message with the same id; only rows outside every recorded batch are planned anew
 *   with the current settings. The outbox drops a record with its rows (see ports/outbox.ts).
 */
import { isFieldlinkError } from '../../../common/errors.js';
import type { Clock } from '../../../common/clock.js';
import type { Logger } from '../../../common/log.js';
import type { BatchRecord, Outbox, OutboxRow } from '../ports/outbox.js';
import { isUplinkError, UplinkError, type Uplink, type UplinkErrorKind } from '../ports/uplink.js';
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
  /** Rows peeked per refill beyond those in flight (default 1,000). */
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
  peekRows: 1000,
  throttle: { baseMs: 1000, maxMs: 60_000 },
  auth: { baseMs: 60_000, maxMs: 30 * 60_000 },
  network: { baseMs: 1000, maxMs: 60_000 },
  quotaSlackMs: 5000,
} as const;

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
  lastError: UplinkError | undefined;
}

interface InFlight {
  readonly plan: BatchPlan;
  readonly readings: number;
  /** Resolves with undefined when accepted, else the classified error. */
  readonly result: Promise<UplinkError | undefined>;
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
  return { messageId: p.messageId, gatewayId: p.gatewayId, encoding: p.encoding, rowIds };
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

  /**
   * One pipelined pass from the oldest row; undefined when the outbox ran empty. Recorded
   * batches are resent as recorded; rows outside them are planned, recorded, then sent.
   */
  async #pass(stats: DrainStats): Promise<UplinkError | undefined> {
    const { outbox, uplink, log } = this.#o;
    const peekRows = this.#o.peekRows ?? forwarderDefaults.peekRows;
    const window: InFlight[] = [];
    const recorded = [...(await outbox.pendingBatches())];
    let lastPlanned = 0;
    let inFlightRows = 0;
    let failure: UplinkError | undefined;
    let drained = false;
    const send = (plan: BatchPlan, message: TelemetryMessage): void => {
      lastPlanned = plan.rowIds.at(-1) ?? lastPlanned;
      inFlightRows += plan.rowIds.length;
      stats.sendAttempts++;
      const result = uplink.send(message).then(
        () => undefined,
        (e: unknown) => asUplinkError(e),
      );
      window.push({ plan, readings: message.readingCount, result });
    };
    for (;;) {
      // Fill the window while nothing has failed.
      while (failure === undefined && !drained && window.length < this.#window) {
        const next = recorded[0];
        const limit = inFlightRows + Math.max(peekRows, next?.rowCount ?? 0);
        const { rows } = await outbox.peek(limit);
        const fresh = rows.filter((r) => r.id > lastPlanned);
        const first = fresh[0];
        if (first === undefined) {
          drained = true;
          break;
        }
        if (next !== undefined && first.id >= next.firstId) {
          recorded.shift();
          const plan = recordedPlan(next);
          const batchRows = fresh.filter((r) => r.id <= next.lastId);
          const ids = batchRows.map((r) => r.id);
          if (plan === undefined || first.id !== next.firstId || ids.length !== plan.rowIds.length || ids.some((id, i) => id !== plan.rowIds[i])) {
            // Not rebuildable (the outbox drops such records with their rows): plan the rows anew.
            log?.warn({ messageId: next.messageId, firstId: next.firstId, lastId: next.lastId }, 'recorded batch does not match the outbox rows; planning its rows anew');
            continue;
          }
          send(plan, buildMessage(plan, batchRows));
          continue;
        }
        // Rows outside every recorded batch: plan them with the current settings, below the next record.
        const candidates = next === undefined ? fresh : fresh.filter((r) => r.id < next.firstId);
        const batch = this.#plan(candidates);
        if (batch === undefined) {
          // The first row alone can never be sent; drop it once everything before it is acked.
          lastPlanned = first.id;
          inFlightRows += 1;
          window.push({ plan: { messageId: `drop-${first.id}`, gatewayId: '', encoding: 'json', rowIds: [first.id] }, readings: 0, result: Promise.resolve(undefined) });
          continue;
        }
        const { plan, message } = batch;
        await outbox.recordBatch({ messageId: plan.messageId, firstId: first.id, lastId: plan.rowIds.at(-1) ?? first.id, rowCount: plan.rowIds.length, plan });
        send(plan, message);
      }
      const head = window.shift();
      if (head === undefined) return failure;
      inFlightRows -= head.plan.rowIds.length;
      const err = await head.result;
      if (err !== undefined || failure !== undefined) {
        // Rows from here on stay in the outbox; wait for the rest of the window to settle.
        failure ??= err;
        if (err !== undefined) stats.failures[err.kind]++;
        continue;
      }
      const dropped = head.readings === 0;
      stats.rowsAcked += await outbox.ack(head.plan.rowIds);
      if (dropped) {
        stats.rowsDropped += head.plan.rowIds.length;
        continue;
      }
      stats.messagesSent++;
      stats.readingsSent += head.readings;
      this.#attempts = { throttle: 0, auth: 0, network: 0 };
      this.#window = Math.min(this.#maxInFlight, this.#window + 1);
    }
  }

  #plan(rows: readonly OutboxRow[]): ReturnType<typeof planBatch> | undefined {
    try {
      return planBatch(rows, this.#o.packer);
    } catch (e) {
      if (!isFieldlinkError(e, 'READING_TOO_LARGE')) throw e;
      this.#o.log?.error({ err: e }, 'outbox row too large to ever send; dropping it');
      return undefined;
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
