/**
 * What the companion knows about where gateways are (issue 9), in its own SQLite file
 * (`locations.db` beside cloud.db: connection history is bulk data with another life than
 * tokens and audit): every connection event seen — the key that makes ingest idempotent, and
 * the source of truth for the per-device aggregates — and per device the location its address
 * gave, an operator's override, and whether the twin tag still has to be written.
 *
 * The aggregates (first and last connect, active months, last address) are kept in memory,
 * rebuilt from the events when the store opens and folded forward after each committed batch:
 * one sequential insert per event is all the disk sees (events are keyed time first, and logs
 * arrive in time order), and analytics read memory. They are order-independent (min/max, the
 * newest address by record time), so records arriving late, out of order or twice give the
 * same answer.
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
  /** The address ipLocation came from (differs from lastIp only until it is located again). */
  locatedIp: string | null;
  /** From the last address; null before any. */
  ipLocation: DeviceLocation | null;
  override: DeviceLocation | null;
  /** When the effective location last changed. */
  locatedAt: number | null;
  tagPending: boolean;
  tagError: string | null;
}

/** A device's connection aggregates, from its events. */
interface Aggregate {
  firstConnect: number | null;
  lastConnect: number | null;
  lastIp: string | null;
  lastIpTime: number | null;
  /** yyyymm of every month with a successful connect. */
  months: Set<number>;
}

/** What a committed batch did. */
export interface RecordedEvents {
  accepted: number;
  duplicates: number;
  failedConnects: number;
  /** Devices the batch touched. */
  devices: Set<string>;
  /** Devices whose last address is now different: to be located again. */
  addressChanged: string[];
}

interface DeviceDbRow {
  device_id: string;
  located_ip: string | null;
  ip_location: string | null;
  override: string | null;
  located_at: number | null;
  tag_pending: number;
  tag_error: string | null;
}

const migrations: readonly string[] = [
  // Keyed time first: logs arrive in time order, so inserts append to the end of the index.
  `CREATE TABLE events (
     time INTEGER NOT NULL,
     device_id TEXT NOT NULL,
     op INTEGER NOT NULL,
     failed INTEGER NOT NULL,
     ip TEXT,
     PRIMARY KEY (time, device_id, op)
   ) WITHOUT ROWID;
   CREATE TABLE devices (
     device_id TEXT PRIMARY KEY,
     located_ip TEXT,
     ip_location TEXT,
     override TEXT,
     located_at INTEGER,
     tag_pending INTEGER NOT NULL DEFAULT 0,
     tag_error TEXT
   );
   CREATE INDEX devices_tag_pending ON devices(located_at) WHERE tag_pending = 1;
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

function emptyAggregate(): Aggregate {
  return { firstConnect: null, lastConnect: null, lastIp: null, lastIpTime: null, months: new Set() };
}

const NO_AGGREGATE = emptyAggregate();

function toRow(id: string, a: Aggregate | undefined, r: DeviceDbRow | undefined): DeviceRow {
  const g = a ?? NO_AGGREGATE;
  return {
    deviceId: id,
    firstConnect: g.firstConnect,
    lastConnect: g.lastConnect,
    lastIp: g.lastIp,
    lastIpTime: g.lastIpTime,
    locatedIp: r?.located_ip ?? null,
    ipLocation: parseLocation(r?.ip_location ?? null),
    override: parseLocation(r?.override ?? null),
    locatedAt: r?.located_at ?? null,
    tagPending: r?.tag_pending === 1,
    tagError: r?.tag_error ?? null,
  };
}

/** Folds one event into a device's aggregate; true when its last address changed. */
function fold(a: Aggregate, time: number, operation: number, failed: boolean, ip: string | null): boolean {
  if (failed) return false;
  if (operation === OPS.deviceConnect) {
    if (a.firstConnect === null || time < a.firstConnect) a.firstConnect = time;
    if (a.lastConnect === null || time > a.lastConnect) a.lastConnect = time;
    a.months.add(monthOf(time));
  }
  if (ip !== null && (a.lastIpTime === null || time >= a.lastIpTime)) {
    const changed = a.lastIp !== ip;
    a.lastIp = ip;
    a.lastIpTime = time;
    return changed;
  }
  return false;
}

function failed(what: string, err: unknown): FieldlinkError {
  return new FieldlinkError('CLOUD_STORE_FAILED', { message: `locations store: ${what}: ${(err as Error)?.message ?? String(err)}`, cause: err });
}

export class LocationStore {
  private readonly statements: StatementCache;
  private readonly aggregates = new Map<string, Aggregate>();
  private eventCount = 0;

  private constructor(
    private readonly db: Database.Database,
    readonly file: string,
  ) {
    this.statements = new StatementCache(db);
    // The aggregates are what the events say: rebuilt from them (a second per million).
    for (const e of this.prepare('SELECT time, device_id, op, failed, ip FROM events').iterate() as Iterable<{ time: number; device_id: string; op: number; failed: number; ip: string | null }>) {
      this.eventCount++;
      fold(this.aggregate(e.device_id), e.time, e.op, e.failed === 1, e.ip);
    }
  }

  private aggregate(id: string): Aggregate {
    let a = this.aggregates.get(id);
    if (!a) this.aggregates.set(id, (a = emptyAggregate()));
    return a;
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

  /**
   * Stores a batch of events in one transaction (those seen before are duplicates: the same
   * device, time and operation), then folds the new ones into the aggregates — only once the
   * commit succeeded, so memory never runs ahead of the disk.
   */
  recordEvents(events: readonly ConnectionEvent[]): RecordedEvents {
    const insert = this.prepare('INSERT OR IGNORE INTO events (time, device_id, op, failed, ip) VALUES (?, ?, ?, ?, ?)');
    const fresh: ConnectionEvent[] = [];
    this.transaction(() => {
      for (const e of events) if (insert.run(e.time, e.deviceId, OPS[e.operation], e.failed ? 1 : 0, e.maskedIp).changes === 1) fresh.push(e);
    });
    this.eventCount += fresh.length;
    const devices = new Set<string>();
    const changed = new Set<string>();
    let failedConnects = 0;
    for (const e of fresh) {
      devices.add(e.deviceId);
      if (e.failed) failedConnects++;
      if (fold(this.aggregate(e.deviceId), e.time, OPS[e.operation], e.failed, e.maskedIp)) changed.add(e.deviceId);
    }
    return { accepted: fresh.length, duplicates: events.length - fresh.length, failedConnects, devices, addressChanged: [...changed] };
  }

  /** Devices whose last address is not the one their stored location came from. */
  unlocated(): string[] {
    const located = new Map((this.prepare('SELECT device_id, located_ip FROM devices').all() as { device_id: string; located_ip: string | null }[]).map((r) => [r.device_id, r.located_ip]));
    const out: string[] = [];
    for (const [id, a] of this.aggregates) if (a.lastIp !== null && located.get(id) !== a.lastIp) out.push(id);
    return out;
  }

  device(id: string): DeviceRow | undefined {
    const r = this.prepare('SELECT * FROM devices WHERE device_id = ?').get(id) as DeviceDbRow | undefined;
    const a = this.aggregates.get(id);
    return a === undefined && r === undefined ? undefined : toRow(id, a, r);
  }

  /** Every device, for analytics. */
  devices(): DeviceRow[] {
    const rows = new Map((this.prepare('SELECT * FROM devices').all() as DeviceDbRow[]).map((r) => [r.device_id, r]));
    const out: DeviceRow[] = [];
    for (const [id, a] of this.aggregates) out.push(toRow(id, a, rows.get(id)));
    for (const [id, r] of rows) if (!this.aggregates.has(id)) out.push(toRow(id, undefined, r));
    return out;
  }

  /** Active months per device from `fromMonth` (yyyymm) on: device id → set of yyyymm. */
  activeMonths(fromMonth: number): Map<string, Set<number>> {
    const out = new Map<string, Set<number>>();
    for (const [id, a] of this.aggregates) {
      const months = [...a.months].filter((m) => m >= fromMonth);
      if (months.length > 0) out.set(id, new Set(months));
    }
    return out;
  }

  /**
   * Sets the location the address gave; when the effective location (override first) differs
   * from what the twin has, the tag is marked to be written.
   */
  setIpLocation(id: string, ip: string, location: DeviceLocation, at: number, effectiveChanged: boolean): void {
    this.prepare(
      `INSERT INTO devices (device_id, located_ip, ip_location, located_at, tag_pending) VALUES (@id, @ip, @loc, @at, @pending)
       ON CONFLICT(device_id) DO UPDATE SET located_ip = excluded.located_ip, ip_location = excluded.ip_location,
         located_at = CASE WHEN @pending = 1 THEN excluded.located_at ELSE located_at END,
         tag_pending = CASE WHEN @pending = 1 THEN 1 ELSE tag_pending END`,
    ).run({ id, ip, loc: JSON.stringify(location), at, pending: effectiveChanged ? 1 : 0 });
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
    return (this.prepare('SELECT * FROM devices WHERE tag_pending = 1 ORDER BY located_at LIMIT ?').all(limit) as DeviceDbRow[]).map((r) => toRow(r.device_id, this.aggregates.get(r.device_id), r));
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
    return { events: this.eventCount, devices: this.aggregates.size };
  }
}
