/**
 * Child process of the crash test in sqlite-outbox.test.ts: appends readings as fast as the
 * group commit lets it, from several concurrent writers, and prints the seq of every reading
 * whose append resolved (i.e. committed). The parent kills it with SIGKILL at a random moment.
 */
import { SqliteOutbox } from '../../../gateway/src/adapters/sqlite-outbox.js';

const path = process.argv[2];
if (path === undefined) throw new Error('usage: outbox-crash-child <file>');
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
