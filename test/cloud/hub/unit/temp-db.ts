import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tap from 'tap';
import { HubError, type HubErrorCode } from '../../../../cloud/hub/hub-errors.js';
import { openDb, type Db } from '../../../../cloud/hub/db.js';

/** The type of the `t` a tap test callback receives. */
export type Test = Parameters<Parameters<typeof tap.test>[0]>[0];

/** A migrated hub database in a fresh temp dir, closed and removed when `t` ends. */
export function tempDb(t: Test): { db: Db; file: string } {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-unit-'));
  const file = join(dir, 'hub.db');
  const db = openDb(file);
  t.teardown(() => {
    if (db.open) db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { db, file };
}

/** An in-memory hub database (openDb skips the chmod for ':memory:'). */
export function memoryDb(t: Test): Db {
  const db = openDb(':memory:');
  t.teardown(() => {
    if (db.open) db.close();
  });
  return db;
}

export function fileMode(file: string): number {
  return statSync(file).mode & 0o777;
}

/** A clock the test moves by hand. */
export class FakeClock {
  constructor(public ms: number) {}
  readonly now = (): number => this.ms;
  advance(ms: number): void {
    this.ms += ms;
  }
}

/**
 * Asserts that `fn` throws a HubError with exactly `code` whose message matches `message`
 * (a string must be equal; a RegExp must match). Returns the error for further checks.
 */
export function throwsHub(t: Test, fn: () => unknown, code: HubErrorCode, message: string | RegExp, what?: string): HubError | undefined {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  const label = what ?? `throws ${code}`;
  if (!(thrown instanceof HubError)) {
    t.fail(`${label}: expected a HubError ${code}, got ${thrown === undefined ? 'no error' : String(thrown)}`);
    return undefined;
  }
  t.equal(thrown.code, code, `${label}: code`);
  if (typeof message === 'string') t.equal(thrown.message, message, `${label}: message`);
  else t.match(thrown.message, message, `${label}: message`);
  return thrown;
}
