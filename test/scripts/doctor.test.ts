/**
 * `fieldlink doctor`, the local checks: each failure produced for real (a missing device, a bus
 * without BlueZ, an unsynchronised timedate1, a powered-off adapter, an outbox with a backlog) or
 * through the injected environment (a port the user may not open, a full disk), each message
 * naming its cause; the exit code; the connection string's key never in the output.
 * The hub checks and the all-green run on the emulator rig: doctor-hub.test.ts.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import dbus from 'dbus-next';
import { systemClock, type Clock } from '../../common/clock.js';
import { startPrivateBus, type PrivateBus } from '../../sensors/dbus/private-bus.js';
import { startFakeTimedate1 } from '../../sensors/dbus/fake-timedate1.js';
import { startFakeBluez } from '../../sensors/ble/emulator/fake-bluez.js';
import { withinBusDeadline } from '../../sensors/dbus/bus-deadline.js';
import { SqliteOutbox } from '../../gateway/src/adapters/sqlite-outbox.js';
import { OUTBOX_FILE } from '../../gateway/src/main.js';
import { createProgram } from '../../cli/program.js';
import { runCli } from '../../cli/run.js';
import { bleCheck, clockCheck, configCheck, diskCheck, outboxCheck, serialCheck, type Check } from '../../scripts/doctor/checks.js';
import { defaultDoctorEnv, type DoctorEnv } from '../../scripts/doctor/env.js';
import { formatReport, reportJson, runDoctor, type DoctorReport } from '../../scripts/doctor/report.js';
import { registerDoctorCommand } from '../../scripts/doctor/cli.js';

const KEY = Buffer.from('doctor-test-secret-key-0123456789').toString('base64');
const CONNECTION_STRING = `HostName=doctor.azure-devices.net;DeviceId=gw-doc;SharedAccessKey=${KEY}`;

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-doctor-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function writeConfig(dir: string, more: Record<string, unknown> = {}, name = 'gateway.json'): string {
  const path = join(dir, name);
  writeFileSync(
    path,
    JSON.stringify({ gatewayId: 'gw-doc', connectionString: CONNECTION_STRING, dataDir: join(dir, 'data'), clockTrust: { source: 'assume' }, sources: [], ...more }, null, 2),
  );
  return path;
}

function envWith(over: Partial<DoctorEnv> = {}, vars: Record<string, string> = {}): DoctorEnv {
  return { ...defaultDoctorEnv(vars), ...over };
}

async function run(configPath: string, checks: readonly Check[], env: DoctorEnv = envWith()): Promise<DoctorReport> {
  return runDoctor({ env, configPath, timeoutMs: 3000, checks });
}

function check(report: DoctorReport, id: string) {
  const c = report.checks.find((x) => x.id === id);
  if (c === undefined) throw new Error(`no check ${id}`);
  return c;
}

function errno(code: string, path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: open '${path}'`), { code });
}

async function privateBus(t: Test): Promise<PrivateBus> {
  const bus = await startPrivateBus();
  t.teardown(() => bus.stop());
  return bus;
}

t.test('config: every bad field named by its path, the rest skipped, exit 1', async (t) => {
  const dir = tempDir(t);
  const path = writeConfig(dir, { settings: { outbox: { maxBytes: 'lots' } }, sourcez: [] });
  const report = await runDoctor({ env: envWith(), configPath: path });
  const c = check(report, 'config');
  t.equal(c.status, 'fail');
  t.match(c.summary, '/settings/outbox/maxBytes', 'names the bad field');
  t.match(c.summary, 'sourcez', 'names the unknown property');
  t.ok(report.checks.slice(1).every((x) => x.status === 'skip' && x.summary === 'no valid config'), 'everything else skipped');
  t.equal(report.ok, false);
  t.notOk(JSON.stringify(report).includes(KEY), 'no key in the report');

  const missing = await runDoctor({ env: envWith(), configPath: join(dir, 'nope.json') });
  t.match(check(missing, 'config').summary, /nope\.json.*no such file/);
});

t.test('serial: a missing device (real ENOENT), a port the user may not open (EACCES), a present one', async (t) => {
  const dir = tempDir(t);
  const missingPath = join(dir, 'ttyUSB-missing');
  const path = writeConfig(dir, {
    sources: [
      { id: 'thermo-1', family: 'serial', path: missingPath, baudRate: 9600 },
      { id: 'thermo-2', family: 'serial', path: '/dev/null', baudRate: 9600 },
    ],
  });
  const real = await run(path, [configCheck, serialCheck]);
  const s = check(real, 'serial');
  t.equal(s.status, 'fail');
  t.match(s.summary, `thermo-1 ${missingPath}: ENOENT`, 'names the source, the path and the errno');
  t.notMatch(s.summary, 'thermo-2', 'the present port is not blamed');
  t.match(s.fix ?? '', /udev rule/);

  const denied = await run(
    path,
    [configCheck, serialCheck],
    envWith({ openSerial: async (p) => (p === '/dev/null' ? Promise.reject(errno('EACCES', p)) : undefined) }),
  );
  const d = check(denied, 'serial');
  t.equal(d.status, 'fail');
  t.match(d.summary, 'thermo-2 /dev/null: EACCES (permission denied)');
  t.match(d.fix ?? '', /dialout/);

  const busy = await run(path, [configCheck, serialCheck], envWith({ openSerial: async (p) => Promise.reject(errno('EBUSY', p)) }));
  t.equal(check(busy, 'serial').status, 'ok', 'EBUSY: held by the running gateway, present');

  const good = await run(writeConfig(dir, { sources: [{ id: 'thermo-2', family: 'serial', path: '/dev/null', baudRate: 9600 }] }, 'good.json'), [configCheck, serialCheck]);
  t.equal(check(good, 'serial').status, 'ok');
  t.match(check(good, 'serial').summary, '/dev/null');
  const goodPath = join(dir, 'good.json');
  const asRoot = await run(goodPath, [configCheck, serialCheck], envWith({ isRoot: () => true }));
  t.match(check(asRoot, 'serial').summary, 'as root: the gateway user\'s permissions are not tested', 'root is told its open proves less');
  const asUser = await run(goodPath, [configCheck, serialCheck], envWith({ isRoot: () => false }));
  t.notMatch(check(asUser, 'serial').summary, 'as root');
});

t.test('ble: no system bus, a bus without BlueZ, a missing adapter, a powered-off adapter, then powered', async (t) => {
  const dir = tempDir(t);
  const path = writeConfig(dir, { sources: [{ id: 'wearables', family: 'ble', adapter: 'hci0' }] });

  const noBus = await run(path, [configCheck, bleCheck], envWith({}, { DBUS_SYSTEM_BUS_ADDRESS: `unix:path=${join(dir, 'no-bus')}` }));
  t.equal(check(noBus, 'ble').status, 'fail');
  t.match(check(noBus, 'ble').summary, /system bus cannot be reached \((ENOENT|ECONNREFUSED)/);

  const bus = await privateBus(t);
  const env = envWith({}, { DBUS_SYSTEM_BUS_ADDRESS: bus.address });
  const empty = await run(path, [configCheck, bleCheck], env);
  const e = check(empty, 'ble');
  t.equal(e.status, 'fail');
  t.match(e.summary, 'org.bluez is not on the system bus (org.freedesktop.DBus.Error.ServiceUnknown): bluetooth.service not running');
  t.match(e.fix ?? '', 'bluetooth');

  const bluez = await startFakeBluez({ address: bus.address });
  t.teardown(() => bluez.stop());
  const ok = await run(path, [configCheck, bleCheck], env);
  t.equal(check(ok, 'ble').status, 'ok', check(ok, 'ble').summary);
  t.match(check(ok, 'ble').summary, 'hci0 powered');

  const other = await run(writeConfig(dir, { sources: [{ id: 'wearables', family: 'ble', adapter: 'hci7' }] }, 'hci7.json'), [configCheck, bleCheck], env);
  t.equal(check(other, 'ble').status, 'fail');
  t.match(check(other, 'ble').summary, /adapter hci7: no \/org\/bluez\/hci7 with org\.bluez\.Adapter1 \(org\.freedesktop\.DBus\.Error\.\w+\)/);

  // Power the emulated adapter off, as `bluetoothctl power off` would.
  const client = dbus.sessionBus({ busAddress: bus.address });
  client.on('error', () => undefined);
  t.teardown(() => client.disconnect());
  await withinBusDeadline(
    3000,
    client.call(
      new dbus.Message({
        destination: 'org.bluez',
        path: '/org/bluez/hci0',
        interface: 'org.freedesktop.DBus.Properties',
        member: 'Set',
        signature: 'ssv',
        body: ['org.bluez.Adapter1', 'Powered', new dbus.Variant('b', false)],
      }),
    ),
    client,
  );
  const off = await run(path, [configCheck, bleCheck], env);
  t.equal(check(off, 'ble').status, 'fail');
  t.match(check(off, 'ble').summary, 'adapter hci0 (/org/bluez/hci0) is powered off');
  t.match(check(off, 'ble').fix ?? '', 'bluetoothctl power on');
});

t.test('clock: assume, timedate1 missing, not synchronised, synchronised', async (t) => {
  const dir = tempDir(t);
  const assume = await run(writeConfig(dir), [configCheck, clockCheck]);
  t.equal(check(assume, 'clock').status, 'ok');
  t.match(check(assume, 'clock').summary, '"assume"');

  const path = writeConfig(dir, { clockTrust: { source: 'timedate1' } });
  const bus = await privateBus(t);
  const fixedNow = Date.UTC(2026, 0, 2, 3, 4, 5);
  const env = envWith({ now: () => fixedNow }, { DBUS_SYSTEM_BUS_ADDRESS: bus.address });
  const missing = await run(path, [configCheck, clockCheck], env);
  t.equal(check(missing, 'clock').status, 'fail');
  t.match(check(missing, 'clock').summary, 'org.freedesktop.timedate1 is not on the system bus (org.freedesktop.DBus.Error.ServiceUnknown)');

  const td = await startFakeTimedate1({ address: bus.address, synchronized: false });
  t.teardown(() => td.stop());
  const unsynced = await run(path, [configCheck, clockCheck], env);
  const c = check(unsynced, 'clock');
  t.equal(c.status, 'fail');
  t.match(c.summary, 'clock not synchronised');
  t.match(c.summary, 'SAS tokens');
  t.match(c.summary, '2026-01-02T03:04:05.000Z', 'shows the wall time');
  t.match(c.fix ?? '', 'systemd-timesyncd');

  td.setSynchronized(true);
  const synced = await run(path, [configCheck, clockCheck], env);
  t.equal(check(synced, 'clock').status, 'ok');
});

t.test('disk: full (fail), tight (warn), roomy (ok) through an injected statfs', async (t) => {
  const dir = tempDir(t);
  const path = writeConfig(dir, { settings: { outbox: { maxBytes: 64 * 1024 * 1024, minFreeBytes: 100 * 1024 * 1024 } } });
  const MiB = 1024 * 1024;
  const asked: string[] = [];
  const statfsWith = (freeMiB: number): Partial<DoctorEnv> => ({
    statfs: async (p) => {
      asked.push(p);
      return { bavail: freeMiB * 256, bsize: 4096 };
    },
  });
  const full = await run(path, [configCheck, diskCheck], envWith(statfsWith(12)));
  const f = check(full, 'disk');
  t.equal(f.status, 'fail');
  t.match(f.summary, '12.0 MiB free');
  t.match(f.summary, 'minFreeBytes 100.0 MiB');
  t.equal(asked[0], dir, 'the data dir does not exist yet: its nearest existing parent is measured');
  t.equal(f.details?.['freeBytes'], 12 * MiB);

  const tight = await run(path, [configCheck, diskCheck], envWith(statfsWith(150)));
  t.equal(check(tight, 'disk').status, 'warn');
  t.match(check(tight, 'disk').summary, '150.0 MiB free');

  const roomy = await run(path, [configCheck, diskCheck], envWith(statfsWith(2048)));
  t.equal(check(roomy, 'disk').status, 'ok');

  const real = await run(path, [configCheck, diskCheck]);
  t.ok(['ok', 'warn', 'fail'].includes(check(real, 'disk').status), `the real statfs answers: ${check(real, 'disk').summary}`);
  // A statfs error is also a fail, but without the measurement.
  t.type(check(real, 'disk').details?.['freeBytes'], 'number', 'the real statfs measured the free space');
});

t.test('outbox: none yet (nothing created), then a backlog older than half the TTL', async (t) => {
  const dir = tempDir(t);
  const dataDir = join(dir, 'data');
  const path = writeConfig(dir, { settings: { outbox: { ttlS: 86_400 } } });
  const none = await run(path, [configCheck, outboxCheck]);
  t.equal(check(none, 'outbox').status, 'ok');
  t.match(check(none, 'outbox').summary, 'no outbox yet');
  t.notOk(existsSync(dataDir), 'doctor created nothing');

  mkdirSync(dataDir);
  let mono = 0;
  const clock: Clock = { now: () => Date.now(), monotonicMs: () => mono, sleep: (ms, signal) => systemClock.sleep(ms, signal) };
  const outbox = await SqliteOutbox.open({ path: join(dataDir, OUTBOX_FILE), clock, commitIntervalMs: 5, ttlMs: 86_400_000 });
  let closed = false;
  t.teardown(async () => {
    if (!closed) await outbox.close();
  });
  const sample = (v: number) => ({ source: 'serial:thermo-1/temperature', kind: 'temperature' as const, value: v, unit: 'Cel', ts: Date.UTC(2026, 0, 1) + v, flags: {} });
  await outbox.append([sample(1), sample(2)]);
  mono = 13 * 3600 * 1000; // 13 h later on the outbox's clock: past half of a 24 h TTL
  await outbox.append([sample(3)]);

  // While the gateway (here: the adapter) holds the file open, WAL mode.
  const live = await run(path, [configCheck, outboxCheck]);
  const o = check(live, 'outbox');
  t.equal(o.status, 'warn', o.summary);
  t.match(o.summary, '3 reading(s) waiting');
  t.match(o.summary, 'oldest reading 13.0 h old (2026-01-01T00:00:00.001Z)');
  t.match(o.summary, 'half the TTL');
  t.equal(o.details?.['depth'], 3);

  await outbox.close();
  closed = true;
  const before = readdirSync(dataDir).sort();
  const after = await run(path, [configCheck, outboxCheck]);
  t.equal(check(after, 'outbox').details?.['depth'], 3, 'read after the gateway closed it');
  t.same(readdirSync(dataDir).sort(), before, 'doctor left no -wal/-shm files behind');
});

t.test('the command: exit 1 on a failing check, 0 otherwise, 2 on usage errors; JSON; the key never printed', async (t) => {
  const dir = tempDir(t);
  const out: string[] = [];
  const io = (env: DoctorEnv) => ({ stdout: (s: string) => void out.push(s), env: () => env });
  const cli = async (args: string[], env: DoctorEnv): Promise<number> =>
    runCli(['node', 'fieldlink', 'doctor', ...args], { program: createProgram([(p) => registerDoctorCommand(p, io(env))]), output: { stdout: (s) => void out.push(s), stderr: (s) => void out.push(s) } });
  const missing = join(dir, 'ttyACM-gone');
  const failing = writeConfig(dir, { sources: [{ id: 'thermo-1', family: 'serial', path: missing, baudRate: 9600 }] });
  // The hub connection is injected here (doctor-hub.test.ts uses a real hub): refused with the key in the message.
  const env = envWith({
    probeTls: async () => undefined,
    connectHub: async (config) => Promise.reject(Object.assign(new Error(`connect ECONNREFUSED for ${config.connectionString}`), { code: 'ECONNREFUSED' })),
    statfs: async () => ({ bavail: 1e9, bsize: 4096 }),
  });
  t.equal(await cli(['--config', failing], env), 1, 'a failing check: exit 1');
  const text = out.join('');
  t.match(text, `✗ serial devices: thermo-1 ${missing}: ENOENT`);
  t.match(text, /\n {4}fix: /);
  t.match(text, '✗ IoT Hub: IoT Hub unreachable at doctor.azure-devices.net:5671: ECONNREFUSED');
  t.match(text, /gateway cannot work: 2 problems\n$/);
  t.notOk(text.includes(KEY), 'the key is not in the output, even in an error that quoted it');

  out.length = 0;
  const passing = writeConfig(dir);
  t.equal(await cli(['--config', passing, '--json'], envWith({ probeTls: async () => undefined, connectHub: async () => undefined, statfs: async () => ({ bavail: 1e9, bsize: 4096 }) })), 0);
  const json = JSON.parse(out.join('')) as { ok: boolean; checks: { id: string; status: string }[] };
  t.equal(json.ok, true);
  t.same(json.checks.map((c) => c.id), ['config', 'serial', 'ble', 'clock', 'disk', 'hub', 'outbox']);
  t.same(json.checks.map((c) => c.status), ['ok', 'skip', 'skip', 'ok', 'ok', 'ok', 'ok']);
  t.notOk(out.join('').includes(KEY));

  out.length = 0;
  t.equal(await cli(['--config', passing, '--bogus'], env), 2, 'unknown option: exit 2');
  t.equal(await cli(['--timeout', 'soon'], env), 2, 'bad --timeout: exit 2');

  // A warning alone does not fail the gateway.
  const warnOnly: DoctorReport = { ok: true, checks: [{ id: 'disk', title: 'disk space', status: 'warn', summary: 'tight', fix: 'free some' }] };
  t.equal(formatReport(warnOnly), '! disk space: tight\n    fix: free some\ngateway can work (1 warning)\n');
  t.same(JSON.parse(reportJson(warnOnly)), warnOnly);
});
