import type { Reading, Sample } from '../../../sensors/contract/reading.js';

/** A committed reading and the outbox row that holds it; `id` is what `ack` takes. */
export interface OutboxRow {
  readonly id: number;
  readonly reading: Reading;
}

export interface OutboxPeekOptions {
  /**
   * Stop before the stored size of the rows returned would exceed this many bytes. The first
   * row is always returned, however large, so one oversized row cannot stall the uplink.
   */
  readonly maxBytes?: number;
  /**
   * Only rows with an id greater than this, oldest first (a reader that already holds the rows
   * up to some id continues after it, instead of reading them again).
   */
  readonly afterId?: number;
}

/** Persisted totals since the outbox file was created (they survive restarts). */
export interface OutboxCounters {
  /** Readings committed by `append`. */
  readonly appended: number;
  /** Rows deleted by `ack` (IoT Hub accepted them). */
  readonly sent: number;
  /** Rows deleted to stay within the byte bound or the free-disk watermark. */
  readonly evicted: number;
  /** Of `evicted`, how many were alarms. */
  readonly evictedAlarms: number;
  /** Rows deleted because they outlived the TTL. */
  readonly expired: number;
}

/**
 * A batch recorded before it is sent (design §4, issue 4): the message id, the id range of its
 * rows, and the plan that rebuilds the identical message. The outbox does not interpret `plan`;
 * it must be JSON-serialisable and is returned as a JSON round trip of what was recorded.
 */
export interface BatchRecord {
  readonly messageId: string;
  /** Lowest and highest row id of the batch. */
  readonly firstId: number;
  readonly lastId: number;
  /** How many rows the batch holds: every row stored with an id in [firstId, lastId] when recorded. */
  readonly rowCount: number;
  readonly plan: unknown;
}

/** The bounds the twin may change while running (design §4: outbox limits applied live). */
export interface OutboxLimits {
  readonly maxBytes: number;
  readonly minFreeBytes: number;
  readonly ttlMs: number;
  readonly commitIntervalMs: number;
}

export interface OutboxStats {
  /** Rows waiting to be sent. */
  readonly depth: number;
  /** Stored size of those rows. */
  readonly bytes: number;
  /** Age of the oldest row on the outbox's own clock (see the adapter), undefined when empty. */
  readonly oldestAgeMs: number | undefined;
  /** Readings handed to `append` whose group commit has not happened yet. */
  readonly pending: number;
  /** Group commits since this instance opened (diagnosis: readings per commit). */
  readonly commits: number;
  readonly counters: OutboxCounters;
}

/**
 * Store-and-forward buffer between the sensors and the uplink (design §4, §6).
 *
 * - `append` assigns each sample its per-source `seq` (strictly increasing, never reused, also
 *   across restarts) and resolves with the readings only once they are durably committed. Appends
 *   are grouped: a reading handed to `append` whose group has not committed yet is the only thing
 *   a crash can lose.
 * - `peek` returns committed rows oldest first without removing them; `ack` deletes rows by id
 *   and is called only after IoT Hub accepted the message that carried them. Acking an id that
 *   is no longer stored (evicted, expired, acked twice) is not an error. Row ids never repeat.
 * - The outbox is bounded; when full it evicts the oldest non-alarm readings first, then the
 *   oldest alarms, and drops readings older than its TTL; every eviction and expiry is counted.
 * - `recordBatch` stores a batch record durably (resolves once its own transaction committed,
 *   without waiting for the append group commit); recording a `messageId` again replaces the
 *   record. `pendingBatches` lists the records, lowest `firstId` first.
 * - A batch record lives exactly as long as all its rows: the transaction that deletes any row
 *   with an id in [firstId, lastId] (ack, eviction or expiry) also deletes the record, once
 *   fewer than `rowCount` such rows remain; acking all of a batch's rows therefore removes it
 *   in the same transaction. A record whose rows are already short when recorded is not kept.
 *   So every listed record can be rebuilt from the rows it names.
 * - `rebaseUnsynced` turns boot-relative timestamps into wall-clock ones once the clock is
 *   trusted within the same boot (design §4, clock); see its own comment.
 * - `flush` commits whatever is pending now; `close` flushes and releases the store. Every call
 *   after `close` rejects with OUTBOX_CLOSED.
 */
export interface Outbox {
  append(samples: readonly Sample[]): Promise<readonly Reading[]>;
  peek(limit: number, opts?: OutboxPeekOptions): Promise<{ readonly rows: readonly OutboxRow[] }>;
  /** Resolves with the number of rows actually deleted. */
  ack(ids: readonly number[]): Promise<number>;
  stats(): Promise<OutboxStats>;
  recordBatch(batch: BatchRecord): Promise<void>;
  pendingBatches(): Promise<readonly BatchRecord[]>;
  /**
   * The wall clock became trusted during boot `bootId`, and wall time = boot-relative time +
   * `offsetMs`. Every stored reading with `flags.clockUnsynced` and this `bootId` gets
   * `ts += offsetMs`, loses the `clockUnsynced` flag (the key is removed; `alarm` stays) and
   * loses `bootId`; its stored size follows the new body. Resolves with how many rows changed,
   * once that change has committed (one transaction, which survives a crash like a commit).
   *
   * - Readings handed to `append` before this call are covered: their group is committed first
   *   (their `append` promises resolve with the readings as appended, still unsynced).
   * - Rows of a recorded batch (an id in [firstId, lastId] of a record `pendingBatches` lists)
   *   are left as they are: a resend must be byte-identical to the message that may already
   *   have reached IoT Hub, so those readings go out with their boot-relative `ts` and flag.
   * - Readings of other boots are not touched (their offset is unknown: they stay flagged).
   * - `seq`, row ids and the order of rows do not change.
   */
  rebaseUnsynced(bootId: string, offsetMs: number): Promise<number>;
  /**
   * Changes the bounds; they apply from the next commit (a smaller `maxBytes` evicts then,
   * in the usual order, counted as usual). Resolves once the store has them.
   */
  setLimits(limits: OutboxLimits): Promise<void>;
  flush(): Promise<void>;
  close(): Promise<void>;
}
