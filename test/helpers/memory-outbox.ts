import { FieldlinkError } from '../../common/errors.js';
import type { Reading, Sample } from '../../sensors/contract/reading.js';
import type { Outbox, OutboxCounters, OutboxPeekOptions, OutboxRow, OutboxStats } from '../../gateway/src/ports/outbox.js';

/**
 * An in-memory Outbox for use-case tests: commits at once, never evicts or expires (no bounds),
 * forgets everything with the process. It passes the same contract suite as SqliteOutbox.
 */
export class MemoryOutbox implements Outbox {
  readonly #rows: { id: number; reading: Reading; size: number }[] = [];
  readonly #seqs = new Map<string, number>();
  readonly #counters: { -readonly [K in keyof OutboxCounters]: number } = { appended: 0, sent: 0, evicted: 0, evictedAlarms: 0, expired: 0 };
  #lastId = 0;
  #commits = 0;
  #closed = false;

  #check(): void {
    if (this.#closed) throw new FieldlinkError('OUTBOX_CLOSED');
  }

  async append(samples: readonly Sample[]): Promise<readonly Reading[]> {
    this.#check();
    const out = samples.map((s) => {
      const seq = (this.#seqs.get(s.source) ?? 0) + 1;
      this.#seqs.set(s.source, seq);
      const reading: Reading = { ...s, seq };
      this.#rows.push({ id: ++this.#lastId, reading, size: Buffer.byteLength(JSON.stringify(reading)) });
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
    for (const r of this.#rows.slice(0, Math.max(0, limit))) {
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
    return deleted;
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

  async flush(): Promise<void> {
    this.#check();
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}
