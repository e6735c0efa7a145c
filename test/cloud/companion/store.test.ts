import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t, { type Test } from 'tap';
import { hashToken, issueToken } from '../../../cloud/src/auth.js';
import { CLOUD_DB_FILE, CloudStore } from '../../../cloud/src/store.js';

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-cloud-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('the store file is owner-only, in WAL mode, with its tables', async (t) => {
  const dir = tempDir(t);
  const store = CloudStore.open(join(dir, 'nested', 'cloud'));
  t.teardown(() => store.close());
  const file = join(dir, 'nested', 'cloud', CLOUD_DB_FILE);
  t.equal(store.file, file);
  t.equal(statSync(file).mode & 0o777, 0o600);
  t.equal(statSync(join(dir, 'nested', 'cloud')).mode & 0o077, 0, 'data dir not readable by others');
  const raw = new Database(file, { readonly: true });
  t.teardown(() => raw.close());
  t.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
  const tables = (raw.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[]).map((r) => r.name);
  t.same(tables, ['audit', 'commands', 'pairing_devices', 'pairing_sessions', 'tokens']);
  const commandCols = (raw.prepare('PRAGMA table_info(commands)').all() as { name: string }[]).map((c) => c.name);
  t.same(commandCols, ['id', 'gateway', 'type', 'payload', 'status', 'message_id', 'created', 'updated', 'expires_at', 'status_reason', 'requested_by', 'stay_for_s', 'follow_up', 'follow_up_of']);
  t.equal(raw.pragma('user_version', { simple: true }), 5, 'every migration ran');
});

t.test('upgrading a version 4 store: the tokens table is rebuilt for the ingest role with its rows and ids', async (t) => {
  const dir = tempDir(t);
  const old = new Database(join(dir, CLOUD_DB_FILE));
  // The tokens table as migration 4 left it (the only table migration 5 touches).
  old.exec(`CREATE TABLE tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, role TEXT NOT NULL CHECK (role IN ('operator', 'viewer', 'pairing')),
    hash TEXT NOT NULL UNIQUE, created INTEGER NOT NULL, revoked INTEGER, site TEXT, expires INTEGER)`);
  old.prepare('INSERT INTO tokens (id, name, role, hash, created, revoked, site, expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?)').run(1, 'ops', 'operator', hashToken('a'), 1000, 2000, null, null);
  old.prepare('INSERT INTO tokens (id, name, role, hash, created, revoked, site, expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?)').run(3, 'phone', 'pairing', hashToken('b'), 1500, null, 'Osaka plant', 9000);
  old.pragma('user_version = 4');
  old.close();

  const store = CloudStore.open(dir);
  t.teardown(() => store.close());
  t.same(store.listTokens(), [
    { id: 1, name: 'ops', role: 'operator', created: 1000, revoked: 2000, site: null, expires: null },
    { id: 3, name: 'phone', role: 'pairing', created: 1500, revoked: null, site: 'Osaka plant', expires: 9000 },
  ]);
  t.equal(store.findTokenByHash(hashToken('b'))?.name, 'phone', 'hashes kept');
  t.match(issueToken(store, { name: 'logs', role: 'ingest', now: 3000 }).record, { id: 4, role: 'ingest' }, 'the ingest role is accepted; ids go on after the highest');
  t.throws(() => issueToken(store, { name: 'ops', role: 'viewer', now: 3000 }), { code: 'TOKEN_NAME_TAKEN' }, 'names still unique');
});

t.test('tokens: hash stored, never the token; names unique; revoke keeps the row', async (t) => {
  const dir = tempDir(t);
  const store = CloudStore.open(dir);
  t.teardown(() => store.close());
  const { token, record } = issueToken(store, { name: 'ops', role: 'operator', now: 1000 });
  t.same(record, { id: 1, name: 'ops', role: 'operator', created: 1000, revoked: null, site: null, expires: null });

  const raw = new Database(join(dir, CLOUD_DB_FILE), { readonly: true });
  t.teardown(() => raw.close());
  const rows = raw.prepare('SELECT * FROM tokens').all() as Record<string, unknown>[];
  t.same(rows, [{ id: 1, name: 'ops', role: 'operator', hash: hashToken(token), created: 1000, revoked: null, site: null, expires: null }]);
  t.notOk(JSON.stringify(rows).includes(token));

  t.throws(() => issueToken(store, { name: 'ops', role: 'viewer', now: 2000 }), { code: 'TOKEN_NAME_TAKEN' });
  t.throws(() => store.revokeToken('nobody', 1), { code: 'TOKEN_NOT_FOUND' });
  t.same(store.revokeToken('ops', 3000), { id: 1, name: 'ops', role: 'operator', created: 1000, revoked: 3000, site: null, expires: null });
  t.equal(store.revokeToken('ops', 4000).revoked, 3000, 'revoking twice keeps the first time');
  t.same(store.listTokens(), [{ id: 1, name: 'ops', role: 'operator', created: 1000, revoked: 3000, site: null, expires: null }]);
});

t.test('audit: newest first, limited, details round-trip; survives reopening', async (t) => {
  const dir = tempDir(t);
  const store = CloudStore.open(dir);
  for (let i = 0; i < 5; i++) store.appendAudit({ ts: i, tokenName: 'ops', action: 'command.wake', target: `gw-${i}`, result: 'queued', ...(i === 4 ? { details: { forS: 60 } } : {}) });
  store.close();
  const again = CloudStore.open(dir);
  t.teardown(() => again.close());
  t.same(again.listAudit(2), [
    { ts: 4, tokenName: 'ops', action: 'command.wake', target: 'gw-4', result: 'queued', details: { forS: 60 } },
    { ts: 3, tokenName: 'ops', action: 'command.wake', target: 'gw-3', result: 'queued' },
  ]);
});

t.test('a store that cannot be opened is CLOUD_STORE_FAILED', async (t) => {
  const dir = tempDir(t);
  const blocker = join(dir, 'file');
  new Database(blocker).close();
  t.throws(() => CloudStore.open(join(blocker, 'sub')), { code: 'CLOUD_STORE_FAILED' });
});
