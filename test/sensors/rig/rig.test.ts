/** The emulator rig: the demo scenario starts every family, the fragment is a valid gateway config, stop() leaves nothing behind. */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import nodeBle from 'node-ble';
import { SerialPort } from 'serialport';
import t, { type Test } from 'tap';
import { parseGatewayConfig } from '../../../gateway/src/config/load-config.js';
import { UUID } from '../../../sensors/ble/emulator/uuids.js';
import { emittedCounts, startRig, type Rig } from '../../../sensors/rig/rig.js';
import { loadScenarioFile, type Scenario } from '../../../sensors/rig/scenario.js';
import { eventually, within } from '../../helpers/deadline.js';

/** From dist/test/sensors/rig/ back to the repository. */
const DEMO = fileURLToPath(new URL('../../../../hardware/scenarios/demo.yaml', import.meta.url));

/** Cleanups run in reverse order of registration, even when the test fails. */
const stacks = new WeakMap<Test, (() => unknown)[]>();
function onCleanup(t: Test, fn: () => unknown): void {
  let stack = stacks.get(t);
  if (stack === undefined) {
    const created: (() => unknown)[] = [];
    stack = created;
    stacks.set(t, created);
    t.teardown(async () => {
      for (const f of created.reverse()) await f();
    });
  }
  stack.push(fn);
}

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-rig-test-'));
  onCleanup(t, () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function rigFor(t: Test, scenario: Scenario): Promise<Rig> {
  const rig = await startRig(scenario, { dir: tempDir(t) });
  onCleanup(t, () => rig.stop());
  return rig;
}

/** Whether any process other than us has `needle` in its command line (a leftover socat names our pty path). */
function processesMentioning(needle: string): number[] {
  const found: number[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const state = /^State:\s+(\S)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
      if (cmdline.includes(needle) && state !== 'Z') found.push(Number(pid));
    } catch {
      // gone while we looked
    }
  }
  return found;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

async function firstLine(path: string): Promise<string> {
  const port = new SerialPort({ path, baudRate: 9600, autoOpen: false });
  await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
  try {
    return await within(5000, `a line from ${path}`, new Promise<string>((resolve) => {
      let buf = '';
      port.on('data', (chunk: Buffer) => {
        buf += chunk.toString('latin1');
        const lines = buf.split('\r\n');
        // The first complete line after a full one: the open may have cut the first.
        if (lines.length >= 3 && lines[1] !== undefined) resolve(lines[1]);
      });
    }));
  } finally {
    await new Promise<void>((resolve) => port.close(() => resolve()));
  }
}

t.test('the demo scenario: every family starts, the fragment is a gateway config, stop() leaves no process', async (t) => {
  const scenario = loadScenarioFile(DEMO);
  const dir = tempDir(t);
  const rig = await startRig(scenario, { dir });
  onCleanup(t, () => rig.stop());

  // The fragment on disk is the one returned, and a gateway config accepts it.
  const fragment = JSON.parse(readFileSync(join(dir, 'gateway-sources.json'), 'utf8')) as { sources: unknown[]; settings: { pairings: Record<string, unknown> }; env: Record<string, string> };
  t.same(fragment, JSON.parse(JSON.stringify(rig.fragment)));
  const config = parseGatewayConfig(
    { gatewayId: 'rig-gw', connectionString: 'HostName=localhost;DeviceId=rig-gw;SharedAccessKey=AAAA', dataDir: join(dir, 'data'), sources: fragment.sources, settings: fragment.settings },
    'fragment',
    dir,
    { env: {} },
  );
  t.same(
    config.sources.map((s) => `${s.family}:${s.id}`),
    ['serial:thermo-1', 'serial:thermo-2', 'firmata:board-1', 'ble:wearables'],
  );
  t.same(Object.keys(config.settings.pairings).sort(), ['AA:BB:CC:DD:EE:01', 'AA:BB:CC:DD:EE:02', 'AA:BB:CC:DD:EE:03'], 'the unpaired wearable is not paired');
  t.match(config.settings.pairings['AA:BB:CC:DD:EE:03'], { profile: 'health_thermometer' });
  t.match(config.sources.find((s) => s.id === 'board-1'), { path: join(dir, 'tty', 'board-1'), baudRate: 57600, thermometers: [{ pin: 'A0', controller: 'TMP36' }] });
  t.equal(fragment.env.DBUS_SYSTEM_BUS_ADDRESS, rig.busAddress);
  t.match(rig.busAddress, /^unix:path=/);

  // Each emulator is reachable where the fragment says.
  const thermo = config.sources.find((s) => s.id === 'thermo-1');
  if (thermo === undefined || thermo.family !== 'serial') throw new Error('no thermo-1');
  t.match(await firstLine(thermo.path), /^R,\d+,/, 'the thermostat pty yields a reading line');
  t.ok(existsSync(join(dir, 'tty', 'board-1')), 'the board pty exists');

  const previous = process.env.DBUS_SYSTEM_BUS_ADDRESS;
  process.env.DBUS_SYSTEM_BUS_ADDRESS = rig.busAddress;
  let session: ReturnType<typeof nodeBle.createBluetooth>;
  try {
    session = nodeBle.createBluetooth();
  } finally {
    if (previous === undefined) delete process.env.DBUS_SYSTEM_BUS_ADDRESS;
    else process.env.DBUS_SYSTEM_BUS_ADDRESS = previous;
  }
  try {
    const adapter = await session.bluetooth.getAdapter('hci0');
    if (!(await adapter.isDiscovering())) await within(2000, 'startDiscovery', adapter.startDiscovery());
    const device = await adapter.waitDevice('AA:BB:CC:DD:EE:01', 3000, 20);
    t.equal(await device.getName(), 'Wrist band 1');
    await within(3000, 'connect', device.connect());
    const gatt = await within(3000, 'gatt', device.gatt());
    const battery = await (await gatt.getPrimaryService(UUID.batteryService)).getCharacteristic(UUID.batteryLevel);
    await within(3000, 'readValue', battery.readValue());
    await within(3000, 'disconnect', device.disconnect());
    await adapter.stopDiscovery();
  } finally {
    session.destroy();
  }

  // The emitted logs grow, keyed as readings name their sources.
  const before = emittedCounts(dir);
  t.ok((before['ble:AA:BB:CC:DD:EE:01/battery'] ?? 0) >= 1, 'the battery read is logged');
  await eventually(5000, 'thermostat log grows', () => ((emittedCounts(dir)['serial:thermo-2/temperature'] ?? 0) > (before['serial:thermo-2/temperature'] ?? 0) ? true : undefined), 100);
  const after = emittedCounts(dir);
  t.ok((after['serial:thermo-1/humidity'] ?? 0) >= 1);

  // stop(): no socat, no dbus-daemon left.
  const pids = rig.pids();
  const busPid = rig.bus?.pid;
  t.equal(pids.length, 4, 'three socat and the bus supervisor were running');
  t.ok(busPid !== undefined && groupAlive(busPid), 'the bus is running');
  await rig.stop();
  await rig.stop();
  t.same(pids.filter(alive), [], 'every socat and the bus supervisor exited');
  t.notOk(busPid !== undefined && groupAlive(busPid), 'no process of the bus group (dbus-daemon) is left');
  t.same(processesMentioning(dir), [], 'no process refers to the rig directory');
  t.same(rig.pids(), []);
});

t.test('a bad scenario: CONFIG_INVALID listing every problem with its JSON path', async (t) => {
  const bad = {
    thermostats: [{ id: 'bad id!', rateHz: 0 }, { id: 'dup' }],
    boards: [{ id: 'b1', thermometers: [{ pin: 'A9', controller: 'TMP99', pattern: { celsius: 20 } }] }],
    wearables: { devices: [{ address: 'aa:bb', profile: 'pedometer' }] },
    timeline: [{ atS: -1, target: 'dup', fault: 'explode' }],
    extra: true,
  };
  const error = await startRig(bad as unknown as Scenario, { dir: tempDir(t) }).then(
    () => undefined,
    (e: unknown) => e as { code?: string; details?: { problems?: { path: string }[] } },
  );
  t.equal(error?.code, 'CONFIG_INVALID');
  const paths = (error?.details?.problems ?? []).map((p) => p.path);
  for (const path of ['/thermostats/0/id', '/thermostats/0/rateHz', '/boards/0/thermometers/0/pin', '/boards/0/thermometers/0/controller', '/wearables/devices/0/address', '/wearables/devices/0/profile', '/timeline/0/atS', '/timeline/0/fault', '/extra']) {
    t.ok(paths.includes(path), `${path} is reported (got ${paths.join(' ')})`);
  }

  // Rules beyond the schema: duplicate ids, unknown targets, faults that do not fit the target.
  const rules = await startRig(
    {
      thermostats: [{ id: 'x' }, { id: 'th' }],
      boards: [{ id: 'x', thermometers: [{ pin: 'A0', controller: 'TMP36', pattern: { celsius: 20 } }, { pin: 'A0', controller: 'LM35', pattern: { sine: { meanC: 20, amplitudeC: 1, periodMs: 1000 }, noiseC: 1 } as never }] }],
      timeline: [
        { atS: 1, target: 'nobody', fault: 'disconnect' },
        { atS: 1, target: 'x', fault: 'vanish' },
        { atS: 1, target: 'th', fault: 'disconnect', count: 3 },
      ],
    },
    { dir: tempDir(t) },
  ).then(
    () => undefined,
    (e: unknown) => e as { code?: string; message?: string; details?: { problems?: { path: string }[] } },
  );
  t.equal(rules?.code, 'CONFIG_INVALID');
  t.same(
    (rules?.details?.problems ?? []).map((p) => p.path),
    ['/boards/0/id', '/boards/0/thermometers/1/pin', '/boards/0/thermometers/1/pattern/noiseC', '/timeline/0/target', '/timeline/1/fault', '/timeline/2/count'],
  );
  t.match(rules?.message, /\/timeline\/0\/target: no thermostat, board or wearable "nobody"/);
});

t.test('a scenario file that is not YAML: CONFIG_UNREADABLE naming the file', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'broken.yaml');
  writeFileSync(file, 'thermostats: [ { id: a\n');
  t.throws(() => loadScenarioFile(file), { code: 'CONFIG_UNREADABLE', message: new RegExp(`${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}.*not valid YAML`) });
  writeFileSync(join(dir, 'bad.json'), JSON.stringify({ thermostats: [{}] }));
  t.throws(() => loadScenarioFile(join(dir, 'bad.json')), { code: 'CONFIG_INVALID', details: { problems: [{ path: '/thermostats/0/id', message: 'is required' }] } });
});

t.test('timeline: faults fire at their time on every kind of target', async (t) => {
  const rig = await rigFor(t, {
    thermostats: [{ id: 'th-1', rateHz: 10 }],
    boards: [{ id: 'b-1', thermometers: [{ pin: 'A0', controller: 'LM35', pattern: { sine: { meanC: 25, amplitudeC: 2, periodMs: 10_000 } } }] }],
    wearables: { devices: [{ address: 'AA:BB:CC:DD:EE:10', profile: 'environmental_sensing' }] },
    timeline: [
      { atS: 0.8, target: 'b-1', fault: 'replug' },
      { atS: 0.3, target: 'b-1', fault: 'unplug' },
      { atS: 0.4, target: 'AA:BB:CC:DD:EE:10', fault: 'vanish' },
      { atS: 0.5, target: 'th-1', fault: 'disconnect', forMs: 300 },
    ],
  });
  const board = rig.boards.get('b-1');
  const thermostat = rig.thermostats.get('th-1');
  const wearable = rig.wearables.get('AA:BB:CC:DD:EE:10');
  if (board === undefined || thermostat === undefined || wearable === undefined) throw new Error('rig incomplete');
  t.equal(board.plugged, true);
  t.equal(wearable.present, true);
  await eventually(3000, 'unplug', () => (rig.fired.length >= 1 ? true : undefined), 10);
  t.equal(board.plugged, false, 'unplugged');
  await within(5000, 'the timeline', rig.timelineDone);
  t.same(rig.fired.map((e) => `${e.target} ${e.fault}`), ['b-1 unplug', 'AA:BB:CC:DD:EE:10 vanish', 'th-1 disconnect', 'b-1 replug']);
  for (const e of rig.fired) {
    t.ok(e.afterMs >= e.atS * 1000 - 5 && e.afterMs < e.atS * 1000 + 300, `${e.fault} fired at ${e.afterMs} ms for atS ${e.atS}`);
    t.equal(e.error, undefined);
  }
  t.equal(board.plugged, true, 'replugged');
  t.equal(board.stats.unplugs, 1);
  t.equal(wearable.present, false, 'vanished');
  t.equal(thermostat.stats.disconnects, 1);
  const logged = readFileSync(join(rig.dir, 'timeline.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { fault: string });
  t.same(logged.map((e) => e.fault), ['unplug', 'vanish', 'disconnect', 'replug']);
  await eventually(3000, 'thermostat back', () => (thermostat.socatPid !== undefined && alive(thermostat.socatPid) ? true : undefined), 20);
  await rig.stop();
  t.same(rig.pids(), []);
});
