/**
 * Reads the gateway's SQLite outbox without disturbing a running gateway: read-only, with a busy
 * timeout, and never creating anything next to the file. A running (or crashed) gateway leaves
 * `-wal`/`-shm` files, which a read-only connection shares. When they are absent the file is
 * fully checkpointed, and it is read from a private copy instead: a read-only open in place would
 * create `-shm`/`-wal` files owned by whoever runs doctor (root, often), which the gateway's
 * user could then not write.
 */
import { copyFileSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';

export interface OutboxProbe {
  /** Rows waiting to be sent. */
  readonly depth: number;
  /** Their stored size. */
  readonly bytes: number;
  /** Age of the oldest row on the outbox's own clock (gateway running time), when any. */
  readonly oldestAgeMs: number | undefined;
  /** The oldest reading's timestamp, when it is wall-clock time (not boot-relative). */
  readonly oldestTs: string | undefined;
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** Size of the outbox file and its WAL; 0 when there is none yet. */
export function outboxFileBytes(path: string): number {
  return sizeOf(path) + sizeOf(`${path}-wal`);
}

/** undefined when there is no outbox file yet. Throws what SQLite throws (code SQLITE_…). */
export function probeOutbox(path: string, busyTimeoutMs = 2000): OutboxProbe | undefined {
  if (!existsSync(path)) return undefined;
  let copyDir: string | undefined;
  let target = path;
  if (!existsSync(`${path}-wal`)) {
    copyDir = mkdtempSync(join(tmpdir(), 'fieldlink-doctor-'));
    target = join(copyDir, 'outbox.sqlite');
    copyFileSync(path, target);
  }
  try {
    const db = new Database(target, { readonly: true, fileMustExist: true, timeout: busyTimeoutMs });
    try {
      const hasReadings = db.prepare("SELECT count(*) AS n FROM sqlite_schema WHERE type = 'table' AND name = 'readings'").get() as { n: number };
      if (hasReadings.n === 0) return { depth: 0, bytes: 0, oldestAgeMs: undefined, oldestTs: undefined };
      const totals = db.prepare('SELECT count(*) AS n, coalesce(sum(size), 0) AS b FROM readings').get() as { n: number; b: number };
      const oldest = db.prepare('SELECT enq_ms, body FROM readings ORDER BY id LIMIT 1').get() as { enq_ms: number; body: string } | undefined;
      const elapsed = db.prepare("SELECT value FROM meta WHERE key = 'elapsed_ms'").get() as { value: number } | undefined;
      let oldestTs: string | undefined;
      if (oldest !== undefined) {
        try {
          const r = JSON.parse(oldest.body) as { ts?: unknown; flags?: { clockUnsynced?: unknown } };
          if (typeof r.ts === 'number' && r.flags?.clockUnsynced !== true) oldestTs = new Date(r.ts).toISOString();
        } catch {
          // A damaged body: the depth still counts.
        }
      }
      return {
        depth: totals.n,
        bytes: totals.b,
        oldestAgeMs: oldest === undefined ? undefined : Math.max(0, (elapsed?.value ?? oldest.enq_ms) - oldest.enq_ms),
        oldestTs,
      };
    } finally {
      db.close();
    }
  } finally {
    if (copyDir !== undefined) rmSync(copyDir, { recursive: true, force: true });
  }
}
