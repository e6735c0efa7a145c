import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { FieldlinkError } from '../../common/errors.js';
import { openMigratedSqlite, StatementCache } from './sqlite-file.js';

export const ROLES = ['operator', 'viewer', 'pairing', 'ingest'] as const;
export type Role = (typeof ROLES)[number];

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

export const DEFAULT_CLOUD_DATA_DIR = '.fieldlink/cloud';
export const CLOUD_DB_FILE = 'cloud.db';

export interface TokenRecord {
  id: number;
  name: string;
  role: Role;
  /** Hex SHA-256 of the token; the token itself is never stored. */
  hash: string;
  created: number;
  /** Epoch ms when revoked, or null while valid. */
  revoked: number | null;
  /** Pairing tokens: the site whose gateways they may pair with (tags.fieldlink.site); null: every site. */
  site: string | null;
  /** Epoch ms after which the token is refused (short-lived pairing links); null: until revoked. */
  expires: number | null;
}

/** What `token list` shows: everything but the hash. */
export type TokenSummary = Omit<TokenRecord, 'hash'>;

export interface AuditEntry {
  ts: number;
  /** Name of the token that acted, or `cli` for the local command line. */
  tokenName: string;
  action: string;
  target: string;
  result: string;
  details?: Record<string, unknown>;
}

interface TokenRow {
  id: number;
  name: string;
  role: string;
  hash: string;
  created: number;
  revoked: number | null;
  site: string | null;
  expires: number | null;
}

interface AuditRow {
  ts: number;
  token_name: string;
  action: string;
  target: string;
  result: string;
  details: string | null;
}

// Applied by openMigratedSqlite, each once, in order. Append only: never edit a shipped entry.
const migrations: readonly string[] = [
  `CREATE TABLE tokens (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     name TEXT NOT NULL UNIQUE,
     role TEXT NOT NULL CHECK (role IN ('operator', 'viewer', 'pairing')),
     hash TEXT NOT NULL UNIQUE,
     created INTEGER NOT NULL,
     revoked INTEGER
   );
   CREATE TABLE audit (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     ts INTEGER NOT NULL,
     token_name TEXT NOT NULL,
     action TEXT NOT NULL,
     target TEXT NOT NULL,
     result TEXT NOT NULL,
     details TEXT
   );
   CREATE TABLE commands (
     id TEXT PRIMARY KEY,
     gateway TEXT NOT NULL,
     type TEXT NOT NULL,
     payload TEXT NOT NULL,
     status TEXT NOT NULL,
     message_id TEXT,
     created INTEGER NOT NULL,
     updated INTEGER NOT NULL,
     expires_at INTEGER NOT NULL
   );
   CREATE INDEX commands_by_gateway ON commands(gateway, created);
   CREATE INDEX commands_by_message ON commands(message_id);`,
  `ALTER TABLE commands ADD COLUMN status_reason TEXT;
   ALTER TABLE commands ADD COLUMN requested_by TEXT NOT NULL DEFAULT '';
   ALTER TABLE commands ADD COLUMN stay_for_s INTEGER;
   ALTER TABLE commands ADD COLUMN follow_up TEXT;
   ALTER TABLE commands ADD COLUMN follow_up_of TEXT;
   CREATE INDEX commands_pending ON commands(gateway, status, expires_at);`,
  `CREATE TABLE pairing_sessions (
     id TEXT PRIMARY KEY,
     gateway TEXT NOT NULL,
     token_name TEXT NOT NULL,
     created INTEGER NOT NULL,
     expires_at INTEGER NOT NULL
   );
   CREATE TABLE pairing_devices (
     session_id TEXT NOT NULL REFERENCES pairing_sessions(id),
     address TEXT NOT NULL,
     profile TEXT NOT NULL,
     name TEXT,
     added INTEGER NOT NULL,
     PRIMARY KEY (session_id, address)
   );`,
  `ALTER TABLE tokens ADD COLUMN site TEXT;
   ALTER TABLE tokens ADD COLUMN expires INTEGER;`,
  // The ingest role (connection logs posted by an Azure Function or Logic App): SQLite cannot
  // alter a CHECK, so the table is rebuilt with its rows and ids.
  `CREATE TABLE tokens_v5 (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     name TEXT NOT NULL UNIQUE,
     role TEXT NOT NULL CHECK (role IN ('operator', 'viewer', 'pairing', 'ingest')),
     hash TEXT NOT NULL UNIQUE,
     created INTEGER NOT NULL,
     revoked INTEGER,
     site TEXT,
     expires INTEGER
   );
   INSERT INTO tokens_v5 (id, name, role, hash, created, revoked, site, expires) SELECT id, name, role, hash, created, revoked, site, expires FROM tokens;
   DROP TABLE tokens;
   ALTER TABLE tokens_v5 RENAME TO tokens;`,
];

export const COMMAND_STATUSES = ['sending', 'queued', 'delivered', 'rejected', 'expired', 'undeliverable', 'failed'] as const;
export type CommandStatus = (typeof COMMAND_STATUSES)[number];
/** Still waiting in (or on its way to) the gateway's IoT Hub queue. */
export const PENDING_STATUSES: readonly CommandStatus[] = ['sending', 'queued'];

export interface CommandRecord {
  id: string;
  gateway: string;
  type: string;
  payload: Record<string, unknown>;
  status: CommandStatus;
  statusReason: string | null;
  /** The C2D message id (the command id); feedback names it. */
  messageId: string;
  created: number;
  updated: number;
  expiresAt: number;
  /** Token name that asked, or `companion` for a follow-up the companion sent itself. */
  requestedBy: string;
  /** For a wake: the longest stay asked while it was queued (coalesced requests can ask for more). */
  stayForS: number | null;
  /** Id of the wake the companion sent after this one to honour a longer stay. */
  followUp: string | null;
  followUpOf: string | null;
}

/** A phone pairing session (issue 8): one pairing-code lookup, for one gateway, by one token. */
export interface PairingSessionRecord {
  id: string;
  gateway: string;
  tokenName: string;
  created: number;
  expiresAt: number;
}

export interface PairingDeviceRecord {
  sessionId: string;
  /** Upper-case Bluetooth address. */
  address: string;
  profile: string;
  name: string | null;
  added: number;
}

interface PairingSessionRow {
  id: string;
  gateway: string;
  token_name: string;
  created: number;
  expires_at: number;
}

interface PairingDeviceRow {
  session_id: string;
  address: string;
  profile: string;
  name: string | null;
  added: number;
}

interface CommandRow {
  id: string;
  gateway: string;
  type: string;
  payload: string;
  status: string;
  status_reason: string | null;
  message_id: string;
  created: number;
  updated: number;
  expires_at: number;
  requested_by: string;
  stay_for_s: number | null;
  follow_up: string | null;
  follow_up_of: string | null;
}

function toCommand(r: CommandRow): CommandRecord {
  return {
    id: r.id,
    gateway: r.gateway,
    type: r.type,
    payload: JSON.parse(r.payload) as Record<string, unknown>,
    status: r.status as CommandStatus,
    statusReason: r.status_reason,
    messageId: r.message_id,
    created: r.created,
    updated: r.updated,
    expiresAt: r.expires_at,
    requestedBy: r.requested_by,
    stayForS: r.stay_for_s,
    followUp: r.follow_up,
    followUpOf: r.follow_up_of,
  };
}

function storeFailed(what: string, cause: unknown): FieldlinkError {
  return new FieldlinkError('CLOUD_STORE_FAILED', { message: `cloud store: ${what}: ${cause instanceof Error ? cause.message : String(cause)}`, cause });
}

/**
 * The companion's own state (tokens, audit log, command tracking) in one SQLite file, WAL mode,
 * owner-only. Methods are synchronous (better-sqlite3) and throw CLOUD_STORE_FAILED on I/O
 * problems; a unique-name clash is TOKEN_NAME_TAKEN.
 */
export class CloudStore {
  private readonly statements: StatementCache;

  private constructor(
    private readonly db: Database.Database,
    readonly file: string,
  ) {
    this.statements = new StatementCache(db);
  }

  private prepare(sql: string): Database.Statement {
    return this.statements.get(sql);
  }

  /** Opens (creating if needed) `<dataDir>/cloud.db`; `:memory:` for a throwaway store. */
  static open(dataDir: string): CloudStore {
    try {
      const { db, file } = openMigratedSqlite(dataDir, CLOUD_DB_FILE, migrations);
      return new CloudStore(db, file);
    } catch (err) {
      throw storeFailed(`cannot open ${dataDir === ':memory:' ? ':memory:' : join(dataDir, CLOUD_DB_FILE)}`, err);
    }
  }

  /** Throws CLOUD_STORE_FAILED unless the database answers a query (readiness). */
  ping(): void {
    try {
      this.prepare('SELECT 1').get();
    } catch (err) {
      throw storeFailed('not reachable', err);
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  insertToken(t: { name: string; role: Role; hash: string; created: number; site?: string | null; expires?: number | null }): TokenSummary {
    try {
      const info = this.prepare('INSERT INTO tokens (name, role, hash, created, site, expires) VALUES (?, ?, ?, ?, ?, ?)').run(t.name, t.role, t.hash, t.created, t.site ?? null, t.expires ?? null);
      return { id: Number(info.lastInsertRowid), name: t.name, role: t.role, created: t.created, revoked: null, site: t.site ?? null, expires: t.expires ?? null };
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE' && this.findTokenByName(t.name) !== undefined) {
        throw new FieldlinkError('TOKEN_NAME_TAKEN', { message: `a token named "${t.name}" already exists`, details: { name: t.name } });
      }
      throw storeFailed('cannot insert token', err);
    }
  }

  findTokenByHash(hash: string): TokenRecord | undefined {
    const row = this.query(() => this.prepare('SELECT * FROM tokens WHERE hash = ?').get(hash) as TokenRow | undefined);
    return row && toToken(row);
  }

  findTokenByName(name: string): TokenRecord | undefined {
    const row = this.query(() => this.prepare('SELECT * FROM tokens WHERE name = ?').get(name) as TokenRow | undefined);
    return row && toToken(row);
  }

  listTokens(): TokenSummary[] {
    const rows = this.query(() => this.prepare('SELECT id, name, role, created, revoked, site, expires FROM tokens ORDER BY id').all() as Omit<TokenRow, 'hash'>[]);
    return rows.map((r) => ({ id: r.id, name: r.name, role: r.role as Role, created: r.created, revoked: r.revoked, site: r.site, expires: r.expires }));
  }

  /** Marks the named token revoked (kept, so the audit log stays readable); TOKEN_NOT_FOUND if none. */
  revokeToken(name: string, at: number): TokenSummary {
    const existing = this.findTokenByName(name);
    if (!existing) throw new FieldlinkError('TOKEN_NOT_FOUND', { message: `no token named "${name}"`, details: { name } });
    if (existing.revoked === null) {
      this.query(() => this.prepare('UPDATE tokens SET revoked = ? WHERE id = ?').run(at, existing.id));
      existing.revoked = at;
    }
    const { hash: _hash, ...summary } = existing;
    return summary;
  }

  appendAudit(e: AuditEntry): void {
    this.query(() =>
      this.prepare('INSERT INTO audit (ts, token_name, action, target, result, details) VALUES (?, ?, ?, ?, ?, ?)')
        .run(e.ts, e.tokenName, e.action, e.target, e.result, e.details === undefined ? null : JSON.stringify(e.details)),
    );
  }

  /** The newest `limit` entries, newest first. */
  listAudit(limit: number): AuditEntry[] {
    const rows = this.query(() => this.prepare('SELECT * FROM audit ORDER BY seq DESC LIMIT ?').all(limit) as AuditRow[]);
    return rows.map((r) => {
      const entry: AuditEntry = { ts: r.ts, tokenName: r.token_name, action: r.action, target: r.target, result: r.result };
      if (r.details !== null) entry.details = JSON.parse(r.details) as Record<string, unknown>;
      return entry;
    });
  }

  insertCommand(c: Omit<CommandRecord, 'updated' | 'statusReason' | 'followUp'>): CommandRecord {
    this.query(() =>
      this.prepare(
          `INSERT INTO commands (id, gateway, type, payload, status, message_id, created, updated, expires_at, requested_by, stay_for_s, follow_up_of)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(c.id, c.gateway, c.type, JSON.stringify(c.payload), c.status, c.messageId, c.created, c.created, c.expiresAt, c.requestedBy, c.stayForS, c.followUpOf),
    );
    return { ...c, updated: c.created, statusReason: null, followUp: null };
  }

  findCommand(id: string): CommandRecord | undefined {
    const row = this.query(() => this.prepare('SELECT * FROM commands WHERE id = ?').get(id) as CommandRow | undefined);
    return row && toCommand(row);
  }

  /** The gateway's commands, newest first. */
  listCommands(gateway: string, limit: number): CommandRecord[] {
    const rows = this.query(() => this.prepare('SELECT * FROM commands WHERE gateway = ? ORDER BY created DESC, rowid DESC LIMIT ?').all(gateway, limit) as CommandRow[]);
    return rows.map(toCommand);
  }

  /** The gateway's commands still pending (sending or queued and not past expiry), oldest first. */
  pendingCommands(gateway: string, now: number): CommandRecord[] {
    const rows = this.query(
      () =>
        this.prepare(`SELECT * FROM commands WHERE gateway = ? AND status IN ('sending', 'queued') AND expires_at > ? ORDER BY created, rowid`)
          .all(gateway, now) as CommandRow[],
    );
    return rows.map(toCommand);
  }

  /** Moves a command from one status to another; false (and nothing changed) if it was not in `from`. */
  setCommandStatus(id: string, from: readonly CommandStatus[], to: CommandStatus, reason: string | null, now: number): boolean {
    const marks = from.map(() => '?').join(', ');
    const info = this.query(() =>
      this.prepare(`UPDATE commands SET status = ?, status_reason = ?, updated = ? WHERE id = ? AND status IN (${marks})`).run(to, reason, now, id, ...from),
    );
    return info.changes > 0;
  }

  /** Applies a feedback outcome to the pending command with this message id; the updated record, or undefined. */
  settleByMessageId(messageId: string, to: CommandStatus, reason: string, now: number): CommandRecord | undefined {
    const row = this.query(() => this.prepare('SELECT * FROM commands WHERE message_id = ?').get(messageId) as CommandRow | undefined);
    if (!row) return undefined;
    // 'failed' too: a send that timed out here may still have reached the hub.
    if (!this.setCommandStatus(row.id, ['sending', 'queued', 'failed'], to, reason, now)) return undefined;
    return this.findCommand(row.id);
  }

  setStayForS(id: string, stayForS: number, now: number): void {
    this.query(() => this.prepare('UPDATE commands SET stay_for_s = ?, updated = ? WHERE id = ?').run(stayForS, now, id));
  }

  setFollowUp(id: string, followUp: string): void {
    this.query(() => this.prepare('UPDATE commands SET follow_up = ? WHERE id = ?').run(followUp, id));
  }

  /** Pending commands whose expiry passed `graceMs` ago without feedback: marked expired. */
  expireOverdue(now: number, graceMs: number, reason: string): CommandRecord[] {
    const rows = this.query(
      () => this.prepare(`SELECT * FROM commands WHERE status IN ('sending', 'queued') AND expires_at <= ?`).all(now - graceMs) as CommandRow[],
    );
    for (const r of rows) this.setCommandStatus(r.id, PENDING_STATUSES, 'expired', reason, now);
    return rows.map((r) => ({ ...toCommand(r), status: 'expired', statusReason: reason, updated: now }));
  }

  insertPairingSession(p: PairingSessionRecord): PairingSessionRecord {
    this.query(() =>
      this.prepare('INSERT INTO pairing_sessions (id, gateway, token_name, created, expires_at) VALUES (?, ?, ?, ?, ?)').run(p.id, p.gateway, p.tokenName, p.created, p.expiresAt),
    );
    return { ...p };
  }

  findPairingSession(id: string): PairingSessionRecord | undefined {
    const r = this.query(() => this.prepare('SELECT * FROM pairing_sessions WHERE id = ?').get(id) as PairingSessionRow | undefined);
    return r && { id: r.id, gateway: r.gateway, tokenName: r.token_name, created: r.created, expiresAt: r.expires_at };
  }

  /** Adds the device to the session, or replaces its profile and name if it is there already. */
  putPairingDevice(d: PairingDeviceRecord): void {
    this.query(() =>
      this.prepare(
        `INSERT INTO pairing_devices (session_id, address, profile, name, added) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (session_id, address) DO UPDATE SET profile = excluded.profile, name = excluded.name, added = excluded.added`,
      ).run(d.sessionId, d.address, d.profile, d.name, d.added),
    );
  }

  /** False when the session had no such device. */
  deletePairingDevice(sessionId: string, address: string): boolean {
    const info = this.query(() => this.prepare('DELETE FROM pairing_devices WHERE session_id = ? AND address = ?').run(sessionId, address));
    return info.changes > 0;
  }

  /** The session's devices in the order they were added. */
  listPairingDevices(sessionId: string): PairingDeviceRecord[] {
    const rows = this.query(() => this.prepare('SELECT * FROM pairing_devices WHERE session_id = ? ORDER BY added, rowid').all(sessionId) as PairingDeviceRow[]);
    return rows.map((r) => ({ sessionId: r.session_id, address: r.address, profile: r.profile, name: r.name, added: r.added }));
  }

  private query<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw storeFailed('query failed', err);
    }
  }
}

function toToken(r: TokenRow): TokenRecord {
  return { id: r.id, name: r.name, role: r.role as Role, hash: r.hash, created: r.created, revoked: r.revoked, site: r.site, expires: r.expires };
}
