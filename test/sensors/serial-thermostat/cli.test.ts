import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SerialPort } from 'serialport';
import t from 'tap';
import { parseLine, type ReadingFrame } from '../../../sensors/serial-thermostat/protocol.js';
import type { EmittedReading } from '../../../sensors/serial-thermostat/emulator.js';
import { eventually, within } from '../../helpers/deadline.js';

// Compiled to dist/test/sensors/serial-thermostat/; the CLI is dist/cli/fieldlink.js.
const CLI = new URL('../../../cli/fieldlink.js', import.meta.url).pathname;

/** Pids of socat processes whose command line names `link` (ours: the path is unique to this test). */
function socatsFor(link: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (cmd[0]?.endsWith('socat') && cmd.some((a) => a.includes(link))) pids.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return pids;
}

t.test('fieldlink emulate thermostat: serves readings on --link, logs them, SIGTERM exits 0 and removes socat', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-thermo-cli-'));
  const link = join(dir, 'tty');
  const logFile = join(dir, 'readings.jsonl');
  const child = spawn(process.execPath, [CLI, 'emulate', 'thermostat', '--link', link, '--rate-hz', '20', '--log', logFile, '--seed', '3', '--id', 'cli-1', '--log-level', 'warn'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const pid of socatsFor(link)) process.kill(pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  await eventually(5000, `ready line (stderr: ${stderr})`, () => (stdout.includes('thermostat emulator ready') ? true : undefined));
  t.ok(existsSync(link), 'the host link exists');
  t.equal(socatsFor(link).length, 1, 'one socat');

  const port = new SerialPort({ path: link, baudRate: 9600, autoOpen: false });
  port.on('error', () => undefined);
  await within(2000, 'open', new Promise<void>((resolve, reject) => port.open((e) => (e ? reject(e) : resolve()))));
  t.teardown(() => new Promise<void>((resolve) => (port.isOpen ? port.close(() => resolve()) : resolve())));
  let received = '';
  port.on('data', (d: Buffer) => (received += d.toString('latin1')));
  await new Promise((r) => setTimeout(r, 1000));
  await new Promise<void>((resolve) => port.close(() => resolve()));

  const readings = received
    .split('\r\n')
    .slice(0, -1)
    .map((l) => parseLine(l))
    .flatMap((p) => (p.ok && p.frame.type === 'reading' ? [p.frame as ReadingFrame] : []));
  t.ok(readings.length >= 10, `about 20 readings in a second at 20 Hz (got ${readings.length})`);
  const logged = readFileSync(logFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as EmittedReading);
  for (const r of readings) {
    const temp = logged.find((e) => e.source === 'serial:cli-1/temperature' && e.deviceSeq === r.deviceSeq);
    const hum = logged.find((e) => e.source === 'serial:cli-1/humidity' && e.deviceSeq === r.deviceSeq);
    t.same([temp?.value, hum?.value], [r.temperatureC, r.humidityPct], `reading #${r.deviceSeq} is logged with its values`);
  }

  child.kill('SIGTERM');
  t.equal(await within(5000, 'exit after SIGTERM', exited), 0, 'exit code 0');
  t.same(socatsFor(link), [], 'socat is gone');
  t.notOk(existsSync(link), 'the links are removed');
});
