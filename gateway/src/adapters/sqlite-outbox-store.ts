/**
 * The outbox's SQLite engine: synchronous, one connection, one writer. It runs inside the
 * outbox worker thread (sqlite-outbox-worker.ts) so that fsyncs never block the event loop;
 * the benchmark also drives it directly. docs/outbox.md explains the guarantees.
 */
import Database from 'better-sqlite3';
import type { Reading } from '../../../sensors/contract/reading.js';
import type { OutboxCounters } from '../ports/outbox.js';
import { withSeq, type AppendGroup, type StoreOptions, type StoreStats, type StoredBatch } from './sqlite-outbox-protocol.js';

/**
 * Schema migrations: MIGRATIONS[v] takes a file from user_version v to v + 1, in one
 * transaction. Version 1 is the original outbox (its DDL is idempotent, so files created
 * before versioning still open); version 2 adds the batch records (issue 4).
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alarm INTEGER NOT NULL,
    size INTEGER NOT NULL,
    enq_ms INTEGER NOT NULL,
    body TEXT NOT NULL
  );
  CREATE INDEX IF NOT EXISTS readings_alarm_id ON readings (alarm, id);
  CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS source_seq (source TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
  `,
  `
  CREATE TABLE batches (
    message_id TEXT PRIMARY KEY,
    first_id INTEGER NOT NULL,
    last_id INTEGER NOT NULL,
    row_count INTEGER NOT NULL,
    plan TEXT NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX batches_first_id ON batches (first_id);
  `,
];
const SCHEMA_VERSION = MIGRATIONS.length;
/** Rows fetched per step while evicting or expiring (bounded memory, few round trips). */
const SCAN_CHUNK = 256;

type MutableCounters = { -readonly [K in keyof OutboxCounters]: OutboxCounters[K] };
const COUNTER_NAMES = ['appended', 'sent', 'evicted', 'evictedAlarms', 'expired'] as const;

interface ScanRow {
  id: number;
  size: number;
  alarm: number;
  enq_ms: number;
}

function prepareStatements(db: Database.Database) {
  return {
    insert: db.prepare('INSERT INTO readings (alarm, size, enq_ms, body) VALUES (?, ?, ?, ?)'),
    setSeq: db.prepare('INSERT INTO source_seq (source, seq) VALUES (?, ?) ON CONFLICT (source) DO UPDATE SET seq = excluded.seq'),
    bump: db.prepare('INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = value + excluded.value'),
    setElapsed: db.prepare("INSERT INTO meta (key, value) VALUES ('elapsed_ms', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
    deleteById: db.prepare('DELETE FROM readings WHERE id = ? RETURNING size, alarm'),
    rangeTotals: db.prepare('SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes FROM readings WHERE id BETWEEN ? AND ?'),
    deleteRange: db.prepare('DELETE FROM readings WHERE id BETWEEN ? AND ?'),
    oldestOfClass: db.prepare('SELECT id, size, alarm, enq_ms FROM readings WHERE alarm = ? AND id > ? ORDER BY alarm, id LIMIT ?'),
    oldest: db.prepare('SELECT id, size, alarm, enq_ms FROM readings WHERE id > ? ORDER BY id LIMIT ?'),
    peek: db.prepare('SELECT id, size, body FROM readings WHERE id > ? ORDER BY id LIMIT ?'),
    oldestEnq: db.prepare('SELECT enq_ms FROM readings ORDER BY id LIMIT 1'),
    freelist: db.prepare('PRAGMA freelist_count'),
    recordBatch: db.prepare(
      'INSERT INTO batches (message_id, first_id, last_id, row_count, plan) VALUES (?, ?, ?, ?, ?) ' +
        'ON CONFLICT (message_id) DO UPDATE SET first_id = excluded.first_id, last_id = excluded.last_id, row_count = excluded.row_count, plan = excluded.plan',
    ),
    batches: db.prepare('SELECT message_id, first_id, last_id, row_count, plan FROM batches ORDER BY first_id, message_id'),
    batchCount: db.prepare('SELECT count(*) FROM batches'),
    // Candidates for rebaseUnsynced: flagged rows of the boot outside every recorded batch. The
    // instr() test is a cheap necessary condition (bodies are written by JSON.stringify).
    unsynced: db.prepare(
      `SELECT id, size, body FROM readings r WHERE id > ? AND instr(body, '"clockUnsynced":true') > 0
         AND json_extract(body, '$.flags.clockUnsynced') = 1 AND json_extract(body, '$.bootId') = ?
         AND NOT EXISTS (SELECT 1 FROM batches b WHERE b.first_id <= r.id AND b.last_id >= r.id)
       ORDER BY id LIMIT ?`,
    ),
    setBody: db.prepare('UPDATE readings SET size = ?, body = ? WHERE id = ?'),
    // A batch lives exactly as long as all its rows (ports/outbox.ts).
    pruneBatches: db.prepare('DELETE FROM batches WHERE row_count > (SELECT count(*) FROM readings WHERE id BETWEEN batches.first_id AND batches.last_id)'),
  };
}

export class SqliteOutboxStore {
  readonly #db: Database.Database;
  #opts: StoreOptions;
  readonly #seqs = new Map<string, number>();
  #counters: MutableCounters = { appended: 0, sent: 0, evicted: 0, evictedAlarms: 0, expired: 0 };
  #depth = 0;
  #bytes = 0;
  #commits = 0;
  /** Outbox-clock value persisted by the previous run, and the caller's monotonic time at open. */
  readonly #elapsedAtOpen: number;
  readonly #monoAtOpen: number;
  readonly #stmt: ReturnType<typeof prepareStatements>;
  /** One transaction wrapper for every write (`.immediate(fn)`), built once. */
  readonly #tx: Database.Transaction<(fn: () => void) => void>;

  constructor(opts: StoreOptions, monoMs: number) {
    this.#opts = opts;
    const db = new Database(opts.path);
    this.#db = db;
    try {
      const hasTables = (db.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE type = 'table'").get() as { n: number }).n > 0;
      // auto_vacuum only takes effect before the first table exists (or through a full VACUUM).
      if (!hasTables) db.pragma('auto_vacuum = INCREMENTAL');
      else if (db.pragma('auto_vacuum', { simple: true }) !== 2) {
        db.pragma('auto_vacuum = INCREMENTAL');
        db.exec('VACUUM');
      }
      // better-sqlite3 builds SQLite with a 16 MB page cache; the outbox appends at the tail and
      // deletes at the head, so 2 MB serves it and a full outbox costs a Pi 14 MB less RSS.
      db.pragma('cache_size = -2048');
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${opts.synchronous}`);
      db.pragma(`journal_size_limit = ${Math.floor(opts.journalSizeLimitBytes)}`);
      db.pragma(`wal_autocheckpoint = ${Math.floor(opts.walAutocheckpointPages)}`);
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > SCHEMA_VERSION) throw new Error(`outbox schema version ${version}, expected at most ${SCHEMA_VERSION}`);
      for (let v = version; v < SCHEMA_VERSION; v++) {
        db.transaction(() => {
          db.exec(MIGRATIONS[v] ?? '');
          db.pragma(`user_version = ${v + 1}`);
        }).immediate();
      }
      this.#stmt = prepareStatements(db);
      this.#tx = db.transaction((fn: () => void) => fn());
      const totals = db.prepare('SELECT count(*) AS n, coalesce(sum(size), 0) AS b FROM readings').get() as { n: number; b: number };
      this.#depth = totals.n;
      this.#bytes = totals.b;
      for (const r of db.prepare('SELECT source, seq FROM source_seq').all() as { source: string; seq: number }[]) this.#seqs.set(r.source, r.seq);
      for (const r of db.prepare('SELECT name, value FROM counters').all() as { name: string; value: number }[]) {
        if ((COUNTER_NAMES as readonly string[]).includes(r.name)) this.#counters[r.name as keyof MutableCounters] = r.value;
      }
      const elapsed = db.prepare("SELECT value FROM meta WHERE key = 'elapsed_ms'").get() as { value: number } | undefined;
      this.#elapsedAtOpen = elapsed?.value ?? 0;
      this.#monoAtOpen = monoMs;
    } catch (e) {
      db.close();
      throw e;
    }
  }

  /**
   * The outbox clock: monotonic milliseconds the outbox has been open, summed over every run of
   * the process. Wall-clock jumps cannot move it; time with the gateway off does not count.
   */
  #now(monoMs: number): number {
    return Math.floor(this.#elapsedAtOpen + Math.max(0, monoMs - this.#monoAtOpen));
  }

  /**
   * Bytes the rows may occupy after this append: the configured bound, tightened so the file
   * grows by at most the free space above the watermark (and shrinks when below it).
   */
  #budget(freeBytes: number | undefined): number {
    if (freeBytes === undefined) return this.#opts.maxBytes;
    return Math.min(this.#opts.maxBytes, this.#bytes + freeBytes - this.#opts.minFreeBytes);
  }

  /**
   * One group commit: assigns seq, inserts, evicts to the bounds, expires; all in one
   * transaction. Returns the seq given to each row, in order.
   */
  append(group: AppendGroup, monoMs: number, freeBytes: number | undefined): Float64Array {
    const now = this.#now(monoMs);
    const budget = this.#budget(freeBytes);
    const { sources, meta, json } = group;
    const n = meta.length / 3;
    // The rows' JSON are '\n'-separated in one string: walked in place, not split.
    if (!Number.isInteger(n) || (json.length === 0) !== (n === 0)) throw new Error(`malformed append group: ${meta.length} meta values`);
    // The last seq of each source of the group, by its index in `sources`.
    const last = sources.map((source) => this.#seqs.get(source) ?? 0);
    const seqs = new Float64Array(n);
    let removed = 0;
    this.#transact(() => {
      const insert = this.#stmt.insert;
      let bytes = 0;
      let start = 0;
      for (let i = 0, m = 0; i < n; i++, m += 3) {
        let end = json.indexOf('\n', start);
        if (end < 0) end = json.length;
        if ((end === json.length) !== (i === n - 1)) throw new Error(`malformed append group: not ${n} rows`);
        const k = meta[m] ?? 0;
        const seq = (last[k] ?? 0) + 1;
        last[k] = seq;
        seqs[i] = seq;
        const body = withSeq(json, start, end, seq);
        const size = (meta[m + 2] ?? 0) + body.length - (end - start);
        insert.run(meta[m + 1] ?? 0, size, now, body);
        bytes += size;
        start = end + 1;
      }
      this.#depth += n;
      this.#bytes += bytes;
      for (let k = 0; k < sources.length; k++) this.#stmt.setSeq.run(sources[k], last[k]);
      this.#bump('appended', n);
      this.#stmt.setElapsed.run(now);
      removed += this.#expire(now);
      removed += this.#evictTo(budget);
      if (removed > 0) this.#pruneBatches();
    });
    for (let k = 0; k < sources.length; k++) this.#seqs.set(sources[k] ?? '', last[k] ?? 0);
    this.#commits += 1;
    if (removed > 0) this.#reclaim();
    return seqs;
  }

  /** New bounds, enforced from the next append (and TTL sweep). */
  setLimits(limits: Pick<StoreOptions, 'maxBytes' | 'minFreeBytes' | 'ttlMs'>): void {
    this.#opts = { ...this.#opts, ...limits };
  }

  /**
   * Rows with id > afterId (all when undefined), oldest first (the id is the primary key, so
   * the start costs nothing), as one JSON text `[[id, reading], ...]` spliced from the stored
   * bodies: nothing is parsed here, and one string crosses to the main thread, which parses it
   * once (cheaper there than deserialising as many cloned objects).
   */
  peek(limit: number, maxBytes: number | undefined, monoMs: number, afterId?: number): string {
    const now = this.#now(monoMs);
    let removed = 0;
    this.#transact(() => {
      removed = this.#expire(now);
      if (removed > 0) {
        this.#stmt.setElapsed.run(now);
        this.#pruneBatches();
      }
    });
    if (removed > 0) this.#reclaim();
    if (limit <= 0) return '[]';
    const parts: string[] = [];
    let bytes = 0;
    for (const r of this.#stmt.peek.all(afterId === undefined ? -1 : Math.floor(afterId), Math.floor(limit)) as { id: number; size: number; body: string }[]) {
      if (maxBytes !== undefined && parts.length > 0 && bytes + r.size > maxBytes) break;
      bytes += r.size;
      parts.push(`[${r.id},${r.body}]`);
    }
    return `[${parts.join(',')}]`;
  }

  ack(ids: readonly number[], monoMs: number): number {
    const now = this.#now(monoMs);
    let deleted = 0;
    this.#transact(() => {
      // A message's rows are consecutive ids (ids never repeat, newer rows get higher ones), so
      // an ack is a few ranges: two statements a range instead of one a row.
      for (const [first, last] of idRuns(ids)) {
        const { n, bytes } = this.#stmt.rangeTotals.get(first, last) as { n: number; bytes: number };
        if (n === 0) continue;
        this.#stmt.deleteRange.run(first, last);
        deleted += n;
        this.#depth -= n;
        this.#bytes -= bytes;
      }
      this.#bump('sent', deleted);
      if (deleted > 0) this.#pruneBatches();
      this.#stmt.setElapsed.run(now);
    });
    if (deleted > 0) this.#reclaim();
    return deleted;
  }

  /** Stores (or replaces) a batch record in its own transaction; dropped at once if its rows are short. */
  recordBatch(batch: StoredBatch): void {
    this.#transact(() => {
      this.#stmt.recordBatch.run(batch.messageId, batch.firstId, batch.lastId, batch.rowCount, batch.plan);
      this.#pruneBatches();
    });
  }

  /**
   * Re-bases the boot-relative readings of `bootId` to wall time (ports/outbox.ts): ts +=
   * offsetMs, without `clockUnsynced` and `bootId`; rows of recorded batches are skipped. One
   * transaction; returns how many rows changed.
   */
  rebaseUnsynced(bootId: string, offsetMs: number): number {
    let changed = 0;
    this.#transact(() => {
      let after = 0;
      for (;;) {
        const rows = this.#stmt.unsynced.all(after, bootId, SCAN_CHUNK) as { id: number; size: number; body: string }[];
        for (const row of rows) {
          after = row.id;
          const reading = JSON.parse(row.body) as Reading;
          if (reading.flags.clockUnsynced !== true || reading.bootId !== bootId) continue;
          const { clockUnsynced: _flag, ...flags } = reading.flags;
          const { bootId: _boot, ...rest } = reading;
          const body = JSON.stringify({ ...rest, ts: reading.ts + offsetMs, flags } satisfies Reading);
          const size = Buffer.byteLength(body);
          this.#stmt.setBody.run(size, body, row.id);
          this.#bytes += size - row.size;
          changed += 1;
        }
        if (rows.length < SCAN_CHUNK) break;
      }
    });
    return changed;
  }

  pendingBatches(): StoredBatch[] {
    const rows = this.#stmt.batches.all() as { message_id: string; first_id: number; last_id: number; row_count: number; plan: string }[];
    return rows.map((r) => ({ messageId: r.message_id, firstId: r.first_id, lastId: r.last_id, rowCount: r.row_count, plan: r.plan }));
  }

  stats(monoMs: number): StoreStats {
    const oldest = this.#stmt.oldestEnq.get() as { enq_ms: number } | undefined;
    return {
      depth: this.#depth,
      bytes: this.#bytes,
      oldestAgeMs: oldest === undefined ? undefined : Math.max(0, this.#now(monoMs) - oldest.enq_ms),
      commits: this.#commits,
      counters: { ...this.#counters },
    };
  }

  close(monoMs: number): void {
    if (!this.#db.open) return;
    try {
      this.#stmt.setElapsed.run(this.#now(monoMs));
      this.#reclaim(true);
    } finally {
      this.#db.close();
    }
  }

  /** Runs `fn` in one transaction; on failure the in-memory totals are restored with the rows. */
  #transact(fn: () => void): void {
    const saved = { depth: this.#depth, bytes: this.#bytes, counters: { ...this.#counters } };
    try {
      this.#tx.immediate(fn);
    } catch (e) {
      this.#depth = saved.depth;
      this.#bytes = saved.bytes;
      this.#counters = saved.counters;
      throw e;
    }
  }

  /** Deletes the batch records that lost a row; cheap when there are none (the usual case between drains). */
  #pruneBatches(): void {
    if ((this.#stmt.batchCount.pluck().get() as number) > 0) this.#stmt.pruneBatches.run();
  }

  #bump(name: keyof MutableCounters, by: number): void {
    if (by === 0) return;
    this.#stmt.bump.run(name, by);
    this.#counters[name] += by;
  }

  #delete(row: ScanRow): void {
    this.#stmt.deleteById.run(row.id);
    this.#depth -= 1;
    this.#bytes -= row.size;
  }

  /** Rows are inserted in outbox-clock order, so expired rows are a prefix of the id order. */
  #expire(now: number): number {
    if (!Number.isFinite(this.#opts.ttlMs)) return 0;
    const cutoff = now - this.#opts.ttlMs;
    // The common case, nothing expired, costs one index lookup.
    const oldest = this.#stmt.oldestEnq.get() as { enq_ms: number } | undefined;
    if (oldest === undefined || oldest.enq_ms >= cutoff) return 0;
    let expired = 0;
    let after = 0;
    for (;;) {
      const rows = this.#stmt.oldest.all(after, SCAN_CHUNK) as ScanRow[];
      let done = rows.length < SCAN_CHUNK;
      for (const row of rows) {
        if (row.enq_ms >= cutoff) {
          done = true;
          break;
        }
        this.#delete(row);
        expired += 1;
        after = row.id;
      }
      if (done) break;
    }
    this.#bump('expired', expired);
    return expired;
  }

  /** Oldest non-alarm rows first, then the oldest alarms, until the rows fit in `budget`. */
  #evictTo(budget: number): number {
    let evicted = 0;
    for (const alarm of [0, 1]) {
      let after = 0;
      while (this.#bytes > budget) {
        const rows = this.#stmt.oldestOfClass.all(alarm, after, SCAN_CHUNK) as ScanRow[];
        if (rows.length === 0) break;
        for (const row of rows) {
          if (this.#bytes <= budget) break;
          this.#delete(row);
          evicted += 1;
          if (alarm === 1) this.#bump('evictedAlarms', 1);
          after = row.id;
        }
      }
    }
    this.#bump('evicted', evicted);
    return evicted;
  }

  /**
   * Gives freed pages back to the file system: incremental vacuum once enough pages are free,
   * and a truncating checkpoint when the outbox is empty (or closing), so the WAL shrinks too.
   */
  #reclaim(force = false): void {
    const free = this.#stmt.freelist.pluck().get() as number;
    if (free > 0 && (force || this.#depth === 0 || free >= this.#opts.vacuumThresholdPages)) this.#db.exec('PRAGMA incremental_vacuum');
    if (force || this.#depth === 0) this.#db.pragma('wal_checkpoint(TRUNCATE)');
  }
}

/** Sorted, de-duplicated ids as inclusive runs of consecutive integers. */
export function idRuns(ids: readonly number[]): [number, number][] {
  const sorted = [...new Set(ids)].sort((a, b) => a - b);
  const runs: [number, number][] = [];
  for (const id of sorted) {
    const last = runs.at(-1);
    if (last !== undefined && id === last[1] + 1) last[1] = id;
    else runs.push([id, id]);
  }
  return runs;
}
