/**
 * `fieldlink emulate wearables`: prints a bus address at which the real node-ble finds the
 * emulated wearables; SIGTERM stops the bus and leaves nothing behind.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import t from 'tap';
import nodeBle from 'node-ble';
import { eventually, within } from '../../helpers/deadline.js';
import { CLI } from '../../helpers/gateway-rig.js';

t.test('emulate wearables: node-ble discovers them at the printed address; SIGTERM cleans up', async (t) => {
  const child = spawn(process.execPath, [CLI, 'emulate', 'wearables', '--count', '2', '--services', 'heart_rate,battery', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
  // Both lines: they may arrive in separate chunks.
  const address = await eventually(10_000, 'bus address and wearables printed', () => (/wearables \(adapter hci0\)/.test(out) ? /DBUS_SYSTEM_BUS_ADDRESS=(\S+)/.exec(out)?.[1] : undefined));
  t.match(out, /wearables \(adapter hci0\): AA:BB:CC:DD:EE:01 AA:BB:CC:DD:EE:02/);

  const previous = process.env.DBUS_SYSTEM_BUS_ADDRESS;
  process.env.DBUS_SYSTEM_BUS_ADDRESS = address;
  const session = nodeBle.createBluetooth();
  if (previous === undefined) delete process.env.DBUS_SYSTEM_BUS_ADDRESS;
  else process.env.DBUS_SYSTEM_BUS_ADDRESS = previous;
  t.teardown(() => session.destroy());
  const adapter = await within(5000, 'adapter', session.bluetooth.getAdapter('hci0'));
  await within(5000, 'discovery', adapter.startDiscovery());
  const device = await within(5000, 'device', adapter.waitDevice('AA:BB:CC:DD:EE:02', 4000, 20));
  t.equal(await device.getName(), 'wearable 2');
  await adapter.stopDiscovery();
  session.destroy();

  child.kill('SIGTERM');
  t.equal(await exited, 0, 'exits 0 on SIGTERM');
  const socket = /unix:path=([^,]+)/.exec(address)?.[1];
  t.ok(socket !== undefined && !existsSync(socket), 'the private bus socket is gone');
});
