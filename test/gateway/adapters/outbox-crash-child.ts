/**
 * Child process of the crash test in sqlite-outbox.test.ts: appends readings as fast as the
 * group commit lets it, from several concurrent writers, and prints the seq of every reading
 * whose append resolved (i.e. committed). The parent kills it with SIGKILL at a random moment.
 */
import { SqliteOutbox } from '../../../gateway/src/adapters/sqlite-outbox.js';

/** Appends from four concurrent writers until killed. */
async function run(path: string): Promise<void> {
  const outbox = await SqliteOutbox.open({ path, commitIntervalMs: 5 });
  process.stdout.write('ready\n');

  let value = 0;
  async function writer(): Promise<never> {
    for (;;) {
      const batch = Array.from({ length: 1 + (value % 7) }, () => ({
        source: 'crash/temperature',
        kind: 'temperature' as const,
        value: value++,
        unit: 'Cel',
        ts: Date.now(),
        flags: {},
      }));
      const readings = await outbox.append(batch);
      process.stdout.write(`${readings.map((r) => r.seq).join(' ')}\n`);
    }
  }

  await Promise.all([writer(), writer(), writer(), writer()]);
}

const path = process.argv[2];
// tap runs every file of a folder it is given (`tap dist/test/gateway/`): without the file
// argument this is not a test, so it reports itself skipped in TAP instead of failing.
if (path === undefined) console.log('1..0 # not a test: the child process of sqlite-outbox.test.ts (usage: outbox-crash-child <file>)');
else await run(path);
