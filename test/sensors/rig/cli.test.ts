/** `fieldlink emulate scenario <file>`: starts the rig, prints the fragment and bus, SIGTERM exits 0 and stops everything. */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { eventually } from '../../helpers/deadline.js';
import { CLI } from '../../helpers/gateway-rig.js';

t.test('emulate scenario: prints the fragment and bus address; SIGTERM exits 0 and stops the emulators', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-rig-cli-'));
  const scenario = join(dir, 'scenario.yaml');
  writeFileSync(
    scenario,
    ['thermostats:', '  - id: thermo-a', 'boards:', '  - id: board-a', '    thermometers:', '      - { pin: A1, controller: LM35, pattern: { celsius: 30 } }', 'wearables:', '  devices:', '    - { address: "AA:BB:CC:DD:EE:21", profile: heart_rate }', ''].join('\n'),
  );
  const out = join(dir, 'rig');
  const child = spawn(process.execPath, [CLI, 'emulate', 'scenario', scenario, '--dir', out, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  await eventually(15_000, `ready lines (stderr: ${stderr})`, () => (/DBUS_SYSTEM_BUS_ADDRESS=unix:path=\S+/.test(stdout) ? true : undefined), 50);
  const fragmentPath = join(out, 'gateway-sources.json');
  t.match(stdout, `gateway config fragment: ${fragmentPath}`);
  t.match(stdout, /1 thermostat\(s\), 1 board\(s\), 1 wearable\(s\)/);
  const fragment = JSON.parse(readFileSync(fragmentPath, 'utf8')) as { sources: { id: string; path?: string }[]; settings: { pairings: Record<string, unknown> }; env: { DBUS_SYSTEM_BUS_ADDRESS?: string } };
  t.same(fragment.sources.map((s) => s.id), ['thermo-a', 'board-a', 'wearables']);
  t.same(Object.keys(fragment.settings.pairings), ['AA:BB:CC:DD:EE:21']);
  t.match(stdout, `DBUS_SYSTEM_BUS_ADDRESS=${fragment.env.DBUS_SYSTEM_BUS_ADDRESS ?? 'missing'}`);
  const thermoPath = fragment.sources[0]?.path ?? '';
  t.ok(existsSync(thermoPath), 'the thermostat pty is there');

  child.kill('SIGTERM');
  t.equal(await exited, 0, `exit code 0 (stderr: ${stderr})`);
  t.notOk(existsSync(thermoPath), 'the pty is gone with its socat');
  const busSocket = /unix:path=([^,]+)/.exec(fragment.env.DBUS_SYSTEM_BUS_ADDRESS ?? '')?.[1];
  await eventually(3000, 'bus socket removed', () => (busSocket !== undefined && !existsSync(busSocket) ? true : undefined), 50);
});

t.test('emulate scenario: a bad file exits non-zero naming the path of the problem', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-rig-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const scenario = join(dir, 'bad.json');
  writeFileSync(scenario, JSON.stringify({ boards: [{ id: 'b', thermometers: [] }] }));
  const child = spawn(process.execPath, [CLI, 'emulate', 'scenario', scenario, '--dir', join(dir, 'rig')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (output += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (output += c));
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  t.not(code, 0);
  t.match(output, /\/boards\/0\/thermometers/);
  t.match(output, /CONFIG_INVALID|is invalid/);
});
