/** `fieldlink emulate board`: a Firmata board on a pty that the gateway's Firmata source reads. */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { systemClock } from '../../../common/clock.js';
import { createLogger } from '../../../common/log.js';
import type { Sample } from '../../../sensors/contract/reading.js';
import { FirmataThermometerSource } from '../../../sensors/firmata/source.js';
import { eventually } from '../../helpers/deadline.js';
import { CLI } from '../../helpers/gateway-rig.js';

t.test('emulate board: the Firmata source reads its thermometer; SIGTERM exits 0', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-board-'));
  const link = join(dir, 'uno');
  const child = spawn(process.execPath, [CLI, 'emulate', 'board', '--link', link, '--celsius', '23.4', '--noise', '0', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
  await eventually(10_000, 'ready line', () => (/Firmata board emulator ready: open (\S+)/.test(out) ? true : undefined));

  const source = new FirmataThermometerSource({ boardId: 'uno-cli', path: link, profile: [{ pin: 'A0', controller: 'TMP36', kind: 'temperature' }], clock: systemClock, log: createLogger({ level: 'silent' }), samplingIntervalMs: 100 });
  const ac = new AbortController();
  const got: Sample[] = [];
  const done = (async () => {
    for await (const s of source.samples(ac.signal)) got.push(s);
  })();
  await eventually(10_000, 'a reading', () => (got.length >= 2 ? true : undefined));
  ac.abort();
  await done;
  t.equal(got[0]?.source, 'firmata:uno-cli/A0');
  t.ok(Math.abs((got[0]?.value ?? 0) - 23.4) <= 0.5, `reads about 23.4 °C (${got[0]?.value})`);

  child.kill('SIGTERM');
  t.equal(await exited, 0);
});
