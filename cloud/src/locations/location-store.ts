/**
 * What the companion knows about where gateways are (issue 9), in its own SQLite file
 * (`locations.db` beside cloud.db: connection history is bulk data with another life than
 * tokens and audit): every connection event seen (the key that makes ingest idempotent), per
 * device its first and last connect, the months it was active, its last logged address, the
 * location that address gave, an operator's override, and whether the twin tag still has to be
 * written.
 *
 * Aggregates are order-independent (MIN/MAX, the newest address by record time), so records
 * arriving late, out of order or twice give the same answer.
 */
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { FieldlinkError } from '../../../common/errors.js';
import { openMigratedSqlite, StatementCache } from '../sqlite-file.js';
import type { ConnectionEvent } from './connection-records.js';

export const LOCATIONS_DB_FILE = 'locations.db';

/** Where a device is, as shown and as written to its twin tags (`tags.fieldlink.location`). */
export type DeviceLocation =
  | {
      status: 'located';
      source: 'ip' | 'manual';
      country: string;
      region: string | null;
      city: string | null;
      latitude: number;
      longitude: number;
      accuracyKm: number;
      /** ip: how fine the database placed it; manual: 'site'. */
      precision: 'city' | 'region' | 'country' | 'site';
      /** ip: the masked address it came from, and the database release. */
      maskedIp?: string;
      database?: string;
      /** manual: who set it and why. */
      note?: string;
    }
  | { status: 'private' | 'reserved' | 'unresolved'; source: 'ip'; maskedIp: string; reason: string };

export interface DeviceRow {
  deviceId: string;
  firstConnect: number | null;
  lastConnect: number | null;
  lastIp: string | null;
  lastIpTime: number | null;
  /** From the last address; null before any. */
  ipLocation: DeviceLocation | null;
  override: DeviceLocation | null;
  /** When the effective location last changed. */
  locatedAt: number | null;
  tagPending: boolean;
  tagError: string | null;
}

/** Per device, what one ingest batch adds. */
export interface DeviceDelta {
  firstConnect: number | null;
  lastConnect: number | null;
  /** yyyymm → successful connects. */
  months: Map<number, number>;
  lastIp: string | null;
  lastIpTime: number | null;
}

interface DeviceDbRow {
  device_id: string;
  first_connect: number | null;
  last_connect: number | null;
  last_ip: string | null;
  last_ip_time: number | null;
  ip_location: string | null;
  override: string | null;
  located_at: number | null;
  tag_pending: number;
  tag_error: string | null;
}

const migrations: readonly string[] = [
  `CREATE TABLE events (
     device_id TEXT NOT NULL,
     time INTEGER NOT NULL,
     op INTEGER NOT NULL,
     PRIMARY KEY (device_id, time, op)
   ) WITHOUT ROWID;
   CREATE TABLE devices (
     device_id TEXT PRIMARY KEY,
     first_connect INTEGER,
     last_connect INTEGER,
     last_ip TEXT,
     last_ip_time INTEGER,
     ip_location TEXT,
     override TEXT,
     located_at INTEGER,
     tag_pending INTEGER NOT NULL DEFAULT 0,
     tag_error TEXT
   );
   CREATE INDEX devices_tag_pending ON devices(tag_pending) WHERE tag_pending = 1;
   CREATE TABLE device_months (
     device_id TEXT NOT NULL,
     month INTEGER NOT NULL,
     connects INTEGER NOT NULL,
     PRIMARY KEY (device_id, month)
   ) WITHOUT ROWID;
   CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);`,
];

const OPS = { deviceConnect: 1, deviceDisconnect: 2 } as const;

/** yyyymm of an epoch ms, UTC. */
export function monthOf(ms: number): number {
  const d = new Date(ms);
  return d.getUTCFullYear() * 100 + d.getUTCMonth() + 1;
}

function parseLocation(text: string | null): DeviceLocation | null {
  return text === null ? null : (JSON.parse(text) as DeviceLocation);
}

function toRow(r: DeviceDbRow): DeviceRow {
  return {
    deviceId: r.device_id,
    firstConnect: r.first_connect,
    lastConnect: r.last_connect,
    lastIp: r.last_ip,
    lastIpTime: r.last_ip_time,
    ipLocation: parseLocation(r.ip_location),
    override: parseLocation(r.override),
    locatedAt: r.located_at,
    tagPending: r.tag_pending === 1,
    tagError: r.tag_error,
  };
}

function failed(what: string, err: unknown): FieldlinkError {
  return new FieldlinkError('CLOUD_STORE_FAILED', { message: `locations store: ${what}: ${(err as Error)?.message ?? String(err)}`, cause: err });
}

export class LocationStore {
  private readonly statements: StatementCache;

  private constructor(
    private readonly db: Database.Database,
    readonly file: string,
  ) {
    this.statements = new StatementCache(db);
  }

  /** Opens (creating) `<dataDir>/locations.db`, owner-only; `:memory:` for tests. */
  static open(dataDir: string): LocationStore {
    try {
      const { db, file } = openMigratedSqlite(dataDir, LOCATIONS_DB_FILE, migrations);
      return new LocationStore(db, file);
    } catch (err) {
      throw failed(`cannot open ${dataDir === ':memory:' ? ':memory:' : join(dataDir, LOCATIONS_DB_FILE)}`, err);
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private prepare(sql: string): Database.Statement {
    return this.statements.get(sql);
  }

  /** Runs `work` in one transaction (a batch is all or nothing). */
  transaction<T>(work: () => T): T {
    try {
      return this.db.transaction(work)();
    } catch (err) {
      if (err instanceof FieldlinkError) throw err;
      throw failed('transaction failed', err);
    }
  }

  /** Records the event's key; false when it was seen before (a duplicate). Call inside a transaction. */
  markSeen(e: ConnectionEvent): boolean {
    return this.prepare('INSERT OR IGNORE INTO events (device_id, time, op) VALUES (?, ?, ?)').run(e.deviceId, e.time, OPS[e.operation]).changes === 1;
  }

  /** Folds one batch's deltas in; returns the devices whose last address changed. Call inside a transaction. */
  applyDeltas(deltas: ReadonlyMap<string, DeviceDelta>): string[] {
    const upsert = this.prepare(
      `INSERT INTO devices (device_id, first_connect, last_connect, last_ip, last_ip_time) VALUES (@id, @first, @last, @ip, @ipTime)
       ON CONFLICT(device_id) DO UPDATE SET
         first_connect = CASE WHEN first_connect IS NULL OR (excluded.first_connect IS NOT NULL AND excluded.first_connect < first_connect) THEN excluded.first_connect ELSE first_connect END,
         last_connect = CASE WHEN last_connect IS NULL OR (excluded.last_connect IS NOT NULL AND excluded.last_connect > last_connect) THEN excluded.last_connect ELSE last_connect END,
         last_ip = CASE WHEN excluded.last_ip_time IS NOT NULL AND (last_ip_time IS NULL OR excluded.last_ip_time >= last_ip_time) THEN excluded.last_ip ELSE last_ip END,
         last_ip_time = CASE WHEN excluded.last_ip_time IS NOT NULL AND (last_ip_time IS NULL OR excluded.last_ip_time >= last_ip_time) THEN excluded.last_ip_time ELSE last_ip_time END
       RETURNING last_ip`,
    );
    const before = this.prepare('SELECT last_ip FROM devices WHERE device_id = ?');
    const month = this.prepare('INSERT INTO device_months (device_id, month, connects) VALUES (?, ?, ?) ON CONFLICT(device_id, month) DO UPDATE SET connects = connects + excluded.connects');
    const changed: string[] = [];
    for (const [id, d] of deltas) {
      const prev = (before.get(id) as { last_ip: string | null } | undefined)?.last_ip ?? null;
      const row = upsert.get({ id, first: d.firstConnect, last: d.lastConnect, ip: d.lastIp, ipTime: d.lastIpTime }) as { last_ip: string | null };
      if (row.last_ip !== null && row.last_ip !== prev) changed.push(id);
      for (const [m, n] of d.months) month.run(id, m, n);
    }
    return changed;
  }

  device(id: string): DeviceRow | undefined {
    const r = this.prepare('SELECT * FROM devices WHERE device_id = ?').get(id) as DeviceDbRow | undefined;
    return r && toRow(r);
  }

  /** Every device, for analytics. */
  devices(): DeviceRow[] {
    return (this.prepare('SELECT * FROM devices').all() as DeviceDbRow[]).map(toRow);
  }

  /** Active months per device from `fromMonth` (yyyymm) on: device id → set of yyyymm. */
  activeMonths(fromMonth: number): Map<string, Set<number>> {
    const out = new Map<string, Set<number>>();
    for (const r of this.prepare('SELECT device_id, month FROM device_months WHERE month >= ?').iterate(fromMonth) as Iterable<{ device_id: string; month: number }>) {
      let set = out.get(r.device_id);
      if (!set) out.set(r.device_id, (set = new Set()));
      set.add(r.month);
    }
    return out;
  }

  /**
   * Sets the location the address gave; when the effective location (override first) differs
   * from what the twin has, the tag is marked to be written.
   */
  setIpLocation(id: string, location: DeviceLocation, at: number, effectiveChanged: boolean): void {
    this.prepare(
      `UPDATE devices SET ip_location = ?, located_at = CASE WHEN ? THEN ? ELSE located_at END, tag_pending = CASE WHEN ? THEN 1 ELSE tag_pending END WHERE device_id = ?`,
    ).run(JSON.stringify(location), effectiveChanged ? 1 : 0, at, effectiveChanged ? 1 : 0, id);
  }

  /** Sets or (null) clears the operator's location; the tag is to be written either way. */
  setOverride(id: string, location: DeviceLocation | null, at: number): void {
    this.prepare(
      `INSERT INTO devices (device_id, override, located_at, tag_pending) VALUES (?, ?, ?, 1)
       ON CONFLICT(device_id) DO UPDATE SET override = excluded.override, located_at = excluded.located_at, tag_pending = 1, tag_error = NULL`,
    ).run(id, location === null ? null : JSON.stringify(location), at);
  }

  /** Devices whose twin tag waits to be written, oldest change first. */
  pendingTags(limit: number): DeviceRow[] {
    return (this.prepare('SELECT * FROM devices WHERE tag_pending = 1 ORDER BY located_at LIMIT ?').all(limit) as DeviceDbRow[]).map(toRow);
  }

  /** The tag was written (error null) or cannot be (error: why, e.g. no such device in IoT Hub), unless the location changed again since `locatedAt`. */
  tagSettled(id: string, locatedAt: number | null, error: string | null): void {
    this.prepare('UPDATE devices SET tag_pending = 0, tag_error = ? WHERE device_id = ? AND located_at IS ?').run(error, id, locatedAt);
  }

  meta(key: string): string | undefined {
    return (this.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value;
  }

  setMeta(key: string, value: string): void {
    this.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  counts(): { events: number; devices: number } {
    const events = (this.prepare('SELECT COUNT(*) AS n FROM events').get() as { n: number }).n;
    const devices = (this.prepare('SELECT COUNT(*) AS n FROM devices').get() as { n: number }).n;
    return { events, devices };
  }
}
