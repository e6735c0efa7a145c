import { FieldlinkError } from '../../common/errors.js';
import type { Reading, Sample } from '../../sensors/contract/reading.js';
import type { BatchRecord, Outbox, OutboxCounters, OutboxLimits, OutboxPeekOptions, OutboxRow, OutboxStats } from '../../gateway/src/ports/outbox.js';

/** What survives a `reopen` (the "file"). */
interface MemoryState {
  readonly rows: { id: number; reading: Reading; size: number }[];
  readonly seqs: Map<string, number>;
  readonly counters: { -readonly [K in keyof OutboxCounters]: number };
  readonly batches: Map<string, BatchRecord>;
  lastId: number;
}

/**
 * An in-memory Outbox for use-case tests: commits at once, never evicts or expires (no bounds),
 * forgets everything with the process (`reopen` simulates a restart of the same store). It
 * passes the same contract suite as SqliteOutbox.
 */
export class MemoryOutbox implements Outbox {
  readonly #state: MemoryState;
  readonly #rows: MemoryState['rows'];
  readonly #seqs: MemoryState['seqs'];
  readonly #counters: MemoryState['counters'];
  #commits = 0;
  #closed = false;

  constructor(state?: MemoryState) {
    this.#state = state ?? { rows: [], seqs: new Map(), counters: { appended: 0, sent: 0, evicted: 0, evictedAlarms: 0, expired: 0 }, batches: new Map(), lastId: 0 };
    this.#rows = this.#state.rows;
    this.#seqs = this.#state.seqs;
    this.#counters = this.#state.counters;
  }

  /** A new instance over this one's data, as if the process restarted (close this one first). */
  reopen(): MemoryOutbox {
    return new MemoryOutbox(this.#state);
  }

  #check(): void {
    if (this.#closed) throw new FieldlinkError('OUTBOX_CLOSED');
  }

  async append(samples: readonly Sample[]): Promise<readonly Reading[]> {
    this.#check();
    const out = samples.map((s) => {
      const seq = (this.#seqs.get(s.source) ?? 0) + 1;
      this.#seqs.set(s.source, seq);
      const reading: Reading = { ...s, seq };
      this.#rows.push({ id: ++this.#state.lastId, reading, size: Buffer.byteLength(JSON.stringify(reading)) });
      return reading;
    });
    this.#counters.appended += out.length;
    if (out.length > 0) this.#commits += 1;
    return out;
  }

  async peek(limit: number, opts: OutboxPeekOptions = {}): Promise<{ readonly rows: readonly OutboxRow[] }> {
    this.#check();
    const rows: OutboxRow[] = [];
    let bytes = 0;
    const after = opts.afterId ?? -Infinity;
    let start = 0;
    while (start < this.#rows.length && (this.#rows[start]?.id ?? 0) <= after) start++;
    for (const r of this.#rows.slice(start, start + Math.max(0, limit))) {
      if (opts.maxBytes !== undefined && rows.length > 0 && bytes + r.size > opts.maxBytes) break;
      bytes += r.size;
      rows.push({ id: r.id, reading: structuredClone(r.reading) });
    }
    return { rows };
  }

  async ack(ids: readonly number[]): Promise<number> {
    this.#check();
    const drop = new Set(ids);
    let deleted = 0;
    for (let i = this.#rows.length - 1; i >= 0; i--) {
      if (drop.has(this.#rows[i]?.id ?? -1)) {
        this.#rows.splice(i, 1);
        deleted += 1;
      }
    }
    this.#counters.sent += deleted;
    if (deleted > 0) this.#pruneBatches();
    return deleted;
  }

  async recordBatch(batch: BatchRecord): Promise<void> {
    this.#check();
    const plan = JSON.stringify(batch.plan);
    if (plan === undefined) throw new TypeError('a batch plan must be JSON-serialisable');
    this.#state.batches.set(batch.messageId, { messageId: batch.messageId, firstId: batch.firstId, lastId: batch.lastId, rowCount: batch.rowCount, plan });
    this.#pruneBatches();
  }

  async pendingBatches(): Promise<readonly BatchRecord[]> {
    this.#check();
    return [...this.#state.batches.values()]
      .sort((a, b) => a.firstId - b.firstId || (a.messageId < b.messageId ? -1 : a.messageId > b.messageId ? 1 : 0))
      .map((b) => ({ ...b, plan: JSON.parse(b.plan as string) as unknown }));
  }

  async rebaseUnsynced(bootId: string, offsetMs: number): Promise<number> {
    this.#check();
    if (!Number.isFinite(offsetMs)) throw new RangeError(`offsetMs must be finite, got ${offsetMs}`);
    const batches = [...this.#state.batches.values()];
    let changed = 0;
    for (const row of this.#rows) {
      const r = row.reading;
      if (r.flags.clockUnsynced !== true || r.bootId !== bootId) continue;
      if (batches.some((b) => row.id >= b.firstId && row.id <= b.lastId)) continue;
      const { clockUnsynced: _flag, ...flags } = r.flags;
      const { bootId: _boot, ...rest } = r;
      row.reading = { ...rest, ts: r.ts + offsetMs, flags };
      row.size = Buffer.byteLength(JSON.stringify(row.reading));
      changed += 1;
    }
    return changed;
  }

  /** A batch lives exactly as long as all its rows (ports/outbox.ts). */
  #pruneBatches(): void {
    for (const [id, b] of this.#state.batches) {
      const left = this.#rows.filter((r) => r.id >= b.firstId && r.id <= b.lastId).length;
      if (left < b.rowCount) this.#state.batches.delete(id);
    }
  }

  async stats(): Promise<OutboxStats> {
    this.#check();
    return {
      depth: this.#rows.length,
      bytes: this.#rows.reduce((n, r) => n + r.size, 0),
      oldestAgeMs: this.#rows.length === 0 ? undefined : 0,
      pending: 0,
      commits: this.#commits,
      counters: { ...this.#counters },
    };
  }

  /** Kept for inspection only: the memory outbox is unbounded. */
  limits: OutboxLimits | undefined;

  async setLimits(limits: OutboxLimits): Promise<void> {
    this.#check();
    this.limits = limits;
  }

  async flush(): Promise<void> {
    this.#check();
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}
