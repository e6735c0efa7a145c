import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { isFieldlinkError, type FieldlinkError } from '../../../common/errors.js';
import { APPLIED_CONFIG_FILE, JsonFileAppliedConfigStore } from '../../../gateway/src/adapters/applied-config-store.js';

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-applied-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const doc = { version: 7, desired: { checkInIntervalS: 900, pairings: { 'AA:BB:CC:DD:EE:01': { profile: 'heart_rate' } } } };

t.test('nothing saved yet loads as undefined', async (t) => {
  const store = new JsonFileAppliedConfigStore(join(tempDir(t), APPLIED_CONFIG_FILE));
  t.equal(await store.load(), undefined);
});

t.test('round trip, replaced atomically, mode 0600, no temp file left', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, APPLIED_CONFIG_FILE);
  const store = new JsonFileAppliedConfigStore(path);
  await store.save(doc);
  t.same(await store.load(), doc);
  t.same(await new JsonFileAppliedConfigStore(path).load(), doc, 'a new instance (a reboot) reads it');
  t.equal(statSync(path).mode & 0o777, 0o600);

  // A leftover temp file from a crash with a looser mode must not leak that mode.
  const temp = join(dir, `.${APPLIED_CONFIG_FILE}.${process.pid}.tmp`);
  writeFileSync(temp, 'partial');
  chmodSync(temp, 0o644);
  const next = { version: 8, desired: {} };
  await store.save(next);
  t.same(await store.load(), next);
  t.equal(statSync(path).mode & 0o777, 0o600, 'still 0600 after replacing');
  t.same(readdirSync(dir), [APPLIED_CONFIG_FILE], 'only the store file remains');
});

t.test('a damaged file is reported, moved aside, and treated as absent', async (t) => {
  for (const [name, content] of [
    ['truncated JSON', '{"format":"fieldlink.applied-config/1","vers'],
    ['wrong format', JSON.stringify({ format: 'other', version: 1, desired: {} })],
    ['bad version', JSON.stringify({ format: 'fieldlink.applied-config/1', version: -1, desired: {} })],
    ['desired not an object', JSON.stringify({ format: 'fieldlink.applied-config/1', version: 1, desired: [] })],
  ] as const) {
    const dir = tempDir(t);
    const path = join(dir, APPLIED_CONFIG_FILE);
    writeFileSync(path, content);
    const reported: FieldlinkError[] = [];
    const store = new JsonFileAppliedConfigStore(path, { onCorrupt: (e) => reported.push(e) });
    t.equal(await store.load(), undefined, `${name}: loads as nothing`);
    t.equal(reported.length, 1, `${name}: reported once`);
    t.ok(isFieldlinkError(reported[0], 'APPLIED_CONFIG_STORE_FAILED'), `${name}: with the store's code`);
    t.equal(readFileSync(`${path}.corrupt`, 'utf8'), content, `${name}: moved aside intact`);
    t.notOk(existsSync(path), `${name}: original gone`);
    await store.save(doc);
    t.same(await store.load(), doc, `${name}: the next save recovers`);
  }
});

t.test('write failures reject with APPLIED_CONFIG_STORE_FAILED', async (t) => {
  const store = new JsonFileAppliedConfigStore(join(tempDir(t), 'missing-dir', APPLIED_CONFIG_FILE));
  await t.rejects(store.save(doc), { code: 'APPLIED_CONFIG_STORE_FAILED' });
});
