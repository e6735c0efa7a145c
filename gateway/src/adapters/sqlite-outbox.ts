/**
 * The outbox on SQLite (design §4, docs/outbox.md). Appends are serialised and buffered here, on
 * the event-loop thread, and committed as one transaction every `commitIntervalMs` of the
 * injected clock (or sooner when `maxBatchRows` are waiting); the SQLite work itself runs in a
 * worker thread, which receives each group as one string (sqlite-outbox-protocol.ts).
 */
import { statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import { Worker } from 'node:worker_threads';
import { systemClock, type Clock } from '../../../common/clock.js';
import { FieldlinkError } from '../../../common/errors.js';
import type { Logger } from '../../../common/log.js';
import type { Reading, Sample } from '../../../sensors/contract/reading.js';
import type { BatchRecord, Outbox, OutboxLimits, OutboxPeekOptions, OutboxRow, OutboxStats } from '../ports/outbox.js';
import { AppendGroupBuilder, type RequestEnvelope, type ResponseEnvelope, type StoreOptions, type StoreRequest, type StoreResults } from './sqlite-outbox-protocol.js';

/** Free space of the file system holding `path`, as `fs.statfsSync` reports it. */
export type Statfs = (path: string) => { bavail: number; bsize: number };

export interface SqliteOutboxOptions {
  /** The SQLite file; its directory must exist. */
  readonly path: string;
  readonly clock?: Clock;
  readonly log?: Logger;
  /** Group-commit interval (default 500 ms; docs/outbox.md explains the choice). */
  readonly commitIntervalMs?: number;
  /** Commit early once this many readings are waiting (default 1,000). */
  readonly maxBatchRows?: number;
  /** Bound on the stored size of the rows (default 64 MiB). */
  readonly maxBytes?: number;
  /** Keep at least this much disk free (default 128 MiB); 0 disables the watermark. */
  readonly minFreeBytes?: number;
  /** Drop rows older than this on the outbox clock (default 30 days; Infinity keeps them). */
  readonly ttlMs?: number;
  /** FULL (default) survives power cuts; NORMAL may lose the last commits on one. */
  readonly synchronous?: 'FULL' | 'NORMAL';
  /** Disk free space source (default `fs.statfsSync`); tests inject a fake. */
  readonly statfs?: Statfs;
  readonly journalSizeLimitBytes?: number;
  readonly walAutocheckpointPages?: number;
  readonly vacuumThresholdPages?: number;
  /**
   * Node options for the worker thread; by default it inherits the parent's. Preloads that only
   * the parent needs (a test runner's loaders cost ~1.4 s per worker) can be dropped with [].
   */
  readonly workerExecArgv?: readonly string[];
}

export const outboxDefaults = {
  commitIntervalMs: 500,
  maxBatchRows: 1000,
  maxBytes: 64 * 1024 * 1024,
  minFreeBytes: 128 * 1024 * 1024,
  ttlMs: 30 * 24 * 3600 * 1000,
  synchronous: 'FULL',
  journalSizeLimitBytes: 4 * 1024 * 1024,
  walAutocheckpointPages: 1000,
  vacuumThresholdPages: 256,
} as const;

interface PendingAppend {
  readonly samples: readonly Sample[];
  readonly resolve: (readings: readonly Reading[]) => void;
  readonly reject: (e: unknown) => void;
}

interface InFlight {
  readonly resolve: (result: unknown) => void;
  readonly reject: (e: unknown) => void;
}

const WORKER_URL = new URL('./sqlite-outbox-worker.js', import.meta.url);

export class SqliteOutbox implements Outbox {
  readonly #worker: Worker;
  readonly #clock: Clock;
  readonly #log: Logger | undefined;
  readonly #dir: string;
  readonly #statfs: Statfs;
  #interval: number;
  readonly #maxBatchRows: number;
  #minFreeBytes: number;
  readonly #inFlight = new Map<number, InFlight>();
  #nextId = 1;
  #pending: PendingAppend[] = [];
  /** The pending samples, already serialised (same order as #pending). */
  #group = new AppendGroupBuilder();
  #timer: AbortController | undefined;
  #lastCommit: Promise<void> = Promise.resolve();
  #closed = false;
  #closing: Promise<void> | undefined;
  #failure: FieldlinkError | undefined;
  readonly #exited: Promise<void>;

  /** Opens (creating if needed) the outbox file in a new worker thread. */
  static async open(opts: SqliteOutboxOptions): Promise<SqliteOutbox> {
    const outbox = new SqliteOutbox(opts);
    const storeOptions: StoreOptions = {
      path: opts.path,
      maxBytes: opts.maxBytes ?? outboxDefaults.maxBytes,
      minFreeBytes: opts.minFreeBytes ?? outboxDefaults.minFreeBytes,
      ttlMs: opts.ttlMs ?? outboxDefaults.ttlMs,
      synchronous: opts.synchronous ?? outboxDefaults.synchronous,
      journalSizeLimitBytes: opts.journalSizeLimitBytes ?? outboxDefaults.journalSizeLimitBytes,
      walAutocheckpointPages: opts.walAutocheckpointPages ?? outboxDefaults.walAutocheckpointPages,
      vacuumThresholdPages: opts.vacuumThresholdPages ?? outboxDefaults.vacuumThresholdPages,
    };
    try {
      await outbox.#request({ op: 'open', options: storeOptions, monoMs: outbox.#clock.monotonicMs() });
    } catch (e) {
      outbox.#closed = true;
      await outbox.#worker.terminate();
      throw e;
    }
    return outbox;
  }

  private constructor(opts: SqliteOutboxOptions) {
    this.#clock = opts.clock ?? systemClock;
    this.#log = opts.log?.child({ component: 'outbox' });
    this.#dir = dirname(opts.path);
    this.#statfs = opts.statfs ?? statfsSync;
    this.#interval = opts.commitIntervalMs ?? outboxDefaults.commitIntervalMs;
    this.#maxBatchRows = opts.maxBatchRows ?? outboxDefaults.maxBatchRows;
    this.#minFreeBytes = opts.minFreeBytes ?? outboxDefaults.minFreeBytes;
    if (!(this.#interval >= 0) || !(this.#maxBatchRows >= 1)) {
      throw new RangeError(`commitIntervalMs must be >= 0 and maxBatchRows >= 1, got ${this.#interval} and ${this.#maxBatchRows}`);
    }
    this.#worker = new Worker(WORKER_URL, opts.workerExecArgv === undefined ? {} : { execArgv: [...opts.workerExecArgv] });
    this.#worker.on('message', (msg: ResponseEnvelope) => this.#onResponse(msg));
    this.#worker.on('error', (e) => this.#fail(e));
    this.#exited = new Promise((resolve) => {
      this.#worker.once('exit', (code) => {
        if (!this.#closed || this.#inFlight.size > 0) this.#fail(new Error(`outbox worker exited with code ${code}`));
        resolve();
      });
    });
  }

  append(samples: readonly Sample[]): Promise<readonly Reading[]> {
    const refused = this.#refusal();
    if (refused !== undefined) return Promise.reject(refused);
    if (samples.length === 0) return Promise.resolve([]);
    try {
      this.#group.add(samples);
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise((resolve, reject) => {
      this.#pending.push({ samples: [...samples], resolve, reject });
      if (this.#group.rows >= this.#maxBatchRows) void this.#commit();
      else if (this.#timer === undefined) this.#arm();
    });
  }

  async peek(limit: number, opts: OutboxPeekOptions = {}): Promise<{ readonly rows: readonly OutboxRow[] }> {
    this.#throwIfRefused();
    const text = await this.#request({ op: 'peek', limit, maxBytes: opts.maxBytes, afterId: opts.afterId, monoMs: this.#clock.monotonicMs() });
    const pairs = JSON.parse(text) as [number, Reading][];
    const rows = new Array<OutboxRow>(pairs.length);
    for (let i = 0; i < pairs.length; i++) {
      const [id, reading] = pairs[i] as [number, Reading];
      rows[i] = { id, reading };
    }
    return { rows };
  }

  async ack(ids: readonly number[]): Promise<number> {
    this.#throwIfRefused();
    if (ids.length === 0) return 0;
    return this.#request({ op: 'ack', ids: [...ids], monoMs: this.#clock.monotonicMs() });
  }

  async stats(): Promise<OutboxStats> {
    this.#throwIfRefused();
    const s = await this.#request({ op: 'stats', monoMs: this.#clock.monotonicMs() });
    return { ...s, pending: this.#group.rows };
  }

  /** Commits at once (its own transaction, not the append group commit). */
  async recordBatch(batch: BatchRecord): Promise<void> {
    this.#throwIfRefused();
    const plan = JSON.stringify(batch.plan);
    if (plan === undefined) throw new TypeError('a batch plan must be JSON-serialisable');
    await this.#request({ op: 'recordBatch', batch: { messageId: batch.messageId, firstId: batch.firstId, lastId: batch.lastId, rowCount: batch.rowCount, plan } });
  }

  async pendingBatches(): Promise<readonly BatchRecord[]> {
    this.#throwIfRefused();
    const records = await this.#request({ op: 'pendingBatches' });
    return records.map((r) => ({ ...r, plan: JSON.parse(r.plan) as unknown }));
  }

  /**
   * Commits what is pending first (without waiting for it: the worker handles requests in
   * order), so readings handed to `append` before this call are re-based too.
   */
  async rebaseUnsynced(bootId: string, offsetMs: number): Promise<number> {
    this.#throwIfRefused();
    if (!Number.isFinite(offsetMs)) throw new RangeError(`offsetMs must be finite, got ${offsetMs}`);
    void this.#commit();
    return this.#request({ op: 'rebaseUnsynced', bootId, offsetMs });
  }

  async setLimits(limits: OutboxLimits): Promise<void> {
    this.#throwIfRefused();
    const { maxBytes, minFreeBytes, ttlMs, commitIntervalMs } = limits;
    if (!(maxBytes > 0) || !(minFreeBytes >= 0) || !(ttlMs > 0) || !(commitIntervalMs >= 0)) {
      throw new RangeError(`outbox limits out of range: ${JSON.stringify(limits)}`);
    }
    await this.#request({ op: 'setLimits', maxBytes, minFreeBytes, ttlMs });
    // Main-thread halves: the free-disk check before each group, and the group interval.
    this.#minFreeBytes = minFreeBytes;
    this.#interval = commitIntervalMs;
  }

  async flush(): Promise<void> {
    this.#throwIfRefused();
    await this.#commit();
  }

  /** Commits what is pending, closes the store (final checkpoint) and ends the worker. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true; // refuse new calls; what is already pending still commits
    try {
      await this.#commit();
      if (this.#failure === undefined) await this.#request({ op: 'close', monoMs: this.#clock.monotonicMs() });
    } finally {
      // The worker exits by itself after closing the store; terminate only a failed one.
      if (this.#failure !== undefined) await this.#worker.terminate();
      await this.#exited;
    }
  }

  #refusal(): FieldlinkError | undefined {
    if (this.#closed) return new FieldlinkError('OUTBOX_CLOSED');
    return this.#failure;
  }

  #throwIfRefused(): void {
    const refused = this.#refusal();
    if (refused !== undefined) throw refused;
  }

  #arm(): void {
    const timer = new AbortController();
    this.#timer = timer;
    this.#clock.sleep(this.#interval, timer.signal).then(
      () => {
        if (this.#timer === timer) void this.#commit();
      },
      () => undefined, // aborted: a flush or an early commit took the batch
    );
  }

  /** Sends everything pending as one transaction; resolves when it (and every earlier one) committed. */
  #commit(): Promise<void> {
    this.#timer?.abort();
    this.#timer = undefined;
    const group = this.#pending;
    if (group.length === 0) return this.#lastCommit;
    this.#pending = [];
    const rows = this.#group.take();
    const commit = this.#request({ op: 'append', group: rows, monoMs: this.#clock.monotonicMs(), freeBytes: this.#freeBytes() }).then(
      (seqs) => {
        let at = 0;
        for (const g of group) g.resolve(g.samples.map((sample) => ({ ...sample, seq: seqs[at++] ?? Number.NaN })));
      },
      (e: unknown) => {
        for (const g of group) g.reject(e);
      },
    );
    this.#lastCommit = commit;
    return commit;
  }

  #freeBytes(): number | undefined {
    if (this.#minFreeBytes <= 0) return undefined;
    try {
      const s = this.#statfs(this.#dir);
      return Number(s.bavail) * Number(s.bsize);
    } catch (e) {
      // Without a reading the byte bound still applies; the watermark resumes with the next one.
      this.#log?.warn({ err: e, dir: this.#dir }, 'cannot read free disk space; free-disk watermark skipped for this commit');
      return undefined;
    }
  }

  /** Public methods check for OUTBOX_CLOSED first; here only a dead worker refuses. */
  #request<Op extends StoreRequest['op']>(request: Extract<StoreRequest, { op: Op }>): Promise<StoreResults[Op]> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    const id = this.#nextId++;
    return new Promise<StoreResults[Op]>((resolve, reject) => {
      this.#inFlight.set(id, { resolve: resolve as (r: unknown) => void, reject });
      const envelope: RequestEnvelope = { id, request };
      this.#worker.postMessage(envelope);
    });
  }

  #onResponse(msg: ResponseEnvelope): void {
    const waiter = this.#inFlight.get(msg.id);
    if (waiter === undefined) return;
    this.#inFlight.delete(msg.id);
    if (msg.ok) waiter.resolve(msg.result);
    else {
      const cause = Object.assign(new Error(msg.error.message), msg.error.sqliteCode === undefined ? {} : { code: msg.error.sqliteCode });
      waiter.reject(new FieldlinkError('OUTBOX_STORE_FAILED', { message: `outbox: ${msg.error.message}`, cause, details: { sqliteCode: msg.error.sqliteCode } }));
    }
  }

  /** The worker is gone: everything waiting on it fails, and so does every later call. */
  #fail(cause: unknown): void {
    this.#failure ??= new FieldlinkError('OUTBOX_STORE_FAILED', { message: 'outbox worker stopped', cause, retryable: false });
    this.#log?.error({ err: cause }, 'outbox worker stopped');
    for (const w of this.#inFlight.values()) w.reject(this.#failure);
    this.#inFlight.clear();
    for (const g of this.#pending) g.reject(this.#failure);
    this.#pending = [];
    this.#group = new AppendGroupBuilder();
  }
}
