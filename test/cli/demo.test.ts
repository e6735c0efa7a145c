/**
 * `npm start` runs `fieldlink demo`: the local hub, two emulated thermostats and the gateway.
 * A newcomer must see readings arrive at the hub through a standby cycle, and Ctrl-C must stop
 * everything cleanly.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { eventually } from '../helpers/deadline.js';
import { CLI } from '../helpers/gateway-rig.js';

t.test('demo: hub + wearables, thermostats and a board + gateway; readings of every family reach the hub after a standby period; SIGINT stops it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-demo-'));
  const child = spawn(process.execPath, [CLI, 'demo', '--data', dir, '--check-in', '10', '--window', '2', '--sample', '1', '--amqp-port', '0', '--https-port', '0', '--cloud-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));

  await eventually(20_000, 'status lines in standby', () => (/power standby .*outbox [1-9]/.test(out) ? true : undefined));
  t.notMatch(out, /hub ←/, 'nothing sent before the first check-in: readings wait in the outbox');
  await eventually(30_000, 'a message at the hub', () => (/hub ← demo-gateway: message demo-gateway:1-\d+ \[gzip\], \d+ B, \d+ readings/.test(out) ? true : undefined));
  const first = /hub ← demo-gateway: message demo-gateway:1-\d+ .*\n/.exec(out)?.[0] ?? '';
  for (const family of ['serial', 'firmata', 'ble']) t.match(first, new RegExp(`${family} \\d+`), `${family} readings in the first message`);
  t.match(out, /ble source wearables \(adapter hci0, paired: AA:BB:CC:DD:EE:01 AA:BB:CC:DD:EE:02 AA:BB:CC:DD:EE:03\)/, 'the stranger is not paired');
  // A message at the hub means it was online; after it, the gateway goes back to standby. (The
  // online status line may print before the message line, so only standby is looked for.)
  await eventually(20_000, 'standby again after sending', () => (/power standby/.test(out.slice(out.indexOf('hub ←'))) ? true : undefined));
  t.equal(statSync(join(dir, 'demo', 'connection-string')).mode & 0o777, 0o600, 'the device secret file is 0600');
  t.notMatch(out, /SharedAccessKey=/, 'no secret printed');

  // The companion runs beside them: its fleet view knows the gateway from the twin.
  const cloudUrl = /cloud companion: (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1];
  t.ok(cloudUrl, 'the companion URL is printed');
  const tokenFile = join(dir, 'demo', 'operator-token');
  t.equal(statSync(tokenFile).mode & 0o777, 0o600, 'the operator token file is 0600');
  const token = readFileSync(tokenFile, 'utf8').trim();
  t.notMatch(out, token, 'the token itself is not printed');
  t.match(out, new RegExp(`fleet page: ${cloudUrl}/fleet`));
  await eventually(15_000, 'fleet line after a check-in', () => (/fleet view: demo-gateway health ok \| reported standby \| last check-in 20/.test(out) ? true : undefined));
  const fleet = await fetch(`${cloudUrl}/v1/gateways`, { headers: { authorization: `Bearer ${token}` } });
  t.equal(fleet.status, 200);
  const body = (await fleet.json()) as { gateways: { id: string; power: { state: string } }[] };
  t.match(body.gateways, [{ id: 'demo-gateway' }], 'the fleet view lists the demo gateway');
  t.equal((await fetch(`${cloudUrl}/fleet`)).status, 200, 'the fleet page is served');

  child.kill('SIGINT');
  t.equal(await exited, 0, 'exits 0 on Ctrl-C');
  t.match(out, /stopped: [1-9]\d* device-to-cloud messages/, 'prints what went through');
});
