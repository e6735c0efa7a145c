/**
 * The companion's SQLite files (cloud.db, locations.db): owner-only in an owner-only directory
 * (token hashes, the audit log, where the fleet is), WAL, and a list of migrations applied once
 * each in order, recorded in user_version. Append only: never edit a shipped migration.
 */
import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

/** Opens (creating) `<dataDir>/<fileName>`, or an in-memory database for `:memory:`, migrated. Throws what SQLite or the file system threw. */
export function openMigratedSqlite(dataDir: string, fileName: string, migrations: readonly string[]): { db: Database.Database; file: string } {
  const file = dataDir === ':memory:' ? ':memory:' : join(dataDir, fileName);
  if (file !== ':memory:') {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    closeSync(openSync(file, 'a', 0o600));
    chmodSync(file, 0o600);
  }
  const db = new Database(file);
  try {
    // SQLite gives -wal and -shm the main file's mode.
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('busy_timeout = 5000');
    const current = db.pragma('user_version', { simple: true }) as number;
    for (let i = current; i < migrations.length; i++) {
      const sql = migrations[i];
      if (sql === undefined) break;
      db.transaction(() => {
        db.exec(sql);
        db.pragma(`user_version = ${i + 1}`);
      })();
    }
  } catch (err) {
    db.close();
    throw err;
  }
  return { db, file };
}

/** Statements by SQL text, prepared once (preparing costs more than running these queries). */
export class StatementCache {
  private readonly statements = new Map<string, Database.Statement>();

  constructor(private readonly db: Database.Database) {}

  get(sql: string): Database.Statement {
    let st = this.statements.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.statements.set(sql, st);
    }
    return st;
  }
}
