/**
 * `fieldlink doctor` against a real local hub: unreachable (a closed loopback port), TLS not
 * trusted (no caFile), a wrong key; and all green on the emulator rig (thermostats on ptys, the
 * local hub, a fake timedate1 and a fake BlueZ on a private bus), through the real CLI as a child
 * process.
 */
import { execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { startPrivateBus } from '../../sensors/dbus/private-bus.js';
import { startFakeTimedate1 } from '../../sensors/dbus/fake-timedate1.js';
import { startFakeBluez } from '../../sensors/ble/emulator/fake-bluez.js';
import { configCheck, hubCheck } from '../../scripts/doctor/checks.js';
import { defaultDoctorEnv } from '../../scripts/doctor/env.js';
import { runDoctor, type DoctorReport } from '../../scripts/doctor/report.js';
import { startTestHub } from '../helpers/hub.js';
import { eventually } from '../helpers/deadline.js';
import { CLI, startRig } from '../helpers/gateway-rig.js';

function keyOf(cs: string): string {
  const key = /SharedAccessKey=([^;]+)/.exec(cs)?.[1];
  if (key === undefined) throw new Error('no key');
  return key;
}

function hubResult(report: DoctorReport) {
  const c = report.checks.find((x) => x.id === 'hub');
  if (c === undefined) throw new Error('no hub check');
  return c;
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

t.test('hub: unreachable, TLS not trusted, wrong key, then accepted; the key never in the report', async (t) => {
  const th = await startTestHub();
  t.teardown(() => th.cleanup());
  const cs = th.hub.createDevice('gw-doc');
  const caFile = join(th.dir, 'hub-ca.pem');
  writeFileSync(caFile, th.hub.ca);
  const write = (name: string, doc: Record<string, unknown>): string => {
    const path = join(th.dir, name);
    writeFileSync(path, JSON.stringify({ gatewayId: 'gw-doc', dataDir: join(th.dir, 'data'), clockTrust: { source: 'assume' }, sources: [], ...doc }));
    return path;
  };
  const run = (path: string): Promise<DoctorReport> => runDoctor({ env: defaultDoctorEnv({}), configPath: path, timeoutMs: 8000, checks: [configCheck, hubCheck] });

  const port = await closedPort();
  const unreachableCs = cs.replace(/GatewayHostName=[^;]+/, `GatewayHostName=127.0.0.1:${port}`);
  t.not(unreachableCs, cs, 'the test connection string names the hub port');
  const unreachable = hubResult(await run(write('unreachable.json', { connectionString: unreachableCs, caFile })));
  t.equal(unreachable.status, 'fail');
  t.match(unreachable.summary, `IoT Hub unreachable at 127.0.0.1:${port}: ECONNREFUSED`);
  t.match(unreachable.fix ?? '', 'firewall');

  const untrusted = hubResult(await run(write('untrusted.json', { connectionString: cs })));
  t.equal(untrusted.status, 'fail');
  t.match(untrusted.summary, /^TLS not trusted by localhost:\d+: (SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY) \(no caFile in the config\)/);
  t.match(untrusted.fix ?? '', 'caFile');

  const realKey = keyOf(cs);
  const wrongKey = Buffer.from('not-the-key-of-this-device-000000').toString('base64');
  const wrong = await run(write('wrong-key.json', { connectionString: cs.replace(realKey, wrongKey), caFile }));
  const w = hubResult(wrong);
  t.equal(w.status, 'fail');
  t.match(w.summary, /IoT Hub localhost:\d+ refused the key for gw-doc \(UnauthorizedError\): wrong or rotated key/);
  t.notOk(JSON.stringify(wrong).includes(wrongKey), 'the wrong key is not printed');

  const good = await run(write('good.json', { connectionString: cs, caFile }));
  t.equal(hubResult(good).status, 'ok', hubResult(good).summary);
  t.match(hubResult(good).summary, 'reachable, TLS trusted, credentials of gw-doc accepted');
  t.notOk(JSON.stringify(good).includes(realKey), 'the key is not printed');
});

t.test('all green on the emulator rig, through the real command', async (t) => {
  const bus = await startPrivateBus();
  t.teardown(() => bus.stop());
  const timedate1 = await startFakeTimedate1({ address: bus.address, synchronized: true });
  t.teardown(() => timedate1.stop());
  const bluez = await startFakeBluez({ address: bus.address });
  t.teardown(() => bluez.stop());
  const rig = await startRig(t, {
    thermostats: 2,
    clockTrust: { source: 'timedate1' },
    extraSources: [{ id: 'wearables', family: 'ble', adapter: 'hci0' }],
    // Room for the test machine's disk: the check compares free space with these.
    settings: { outbox: { maxBytes: 1024 * 1024, minFreeBytes: 1024 * 1024, highWatermarkBytes: 512 * 1024 } },
  });
  const key = keyOf(rig.config().connectionString);

  const doctor = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      execFile(
        process.execPath,
        [CLI, 'doctor', '--config', rig.configPath, ...args],
        { env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: bus.address }, timeout: 60_000 },
        (err, stdout, stderr) => resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr }),
      );
    });

  const json = await doctor(['--json']);
  t.equal(json.code, 0, `exit 0${json.stderr ? `; stderr: ${json.stderr}` : ''}`);
  const report = JSON.parse(json.stdout) as { ok: boolean; checks: { id: string; status: string; summary: string }[] };
  t.equal(report.ok, true);
  for (const c of report.checks) t.equal(c.status, 'ok', `${c.id}: ${c.summary}`);
  t.same(report.checks.map((c) => c.id), ['config', 'serial', 'ble', 'clock', 'disk', 'hub', 'outbox']);
  t.notOk(json.stdout.includes(key), 'no key in the JSON');

  const human = await doctor([]);
  t.equal(human.code, 0);
  t.match(human.stdout, /^✓ config: /);
  t.match(human.stdout, /gateway can work\n$/);
  t.notOk(human.stdout.includes(key));

  // With the gateway running: its ports are held, its outbox is live; doctor reads without
  // disturbing it, and the gateway still delivers afterwards.
  const gw = rig.spawnGateway({ DBUS_SYSTEM_BUS_ADDRESS: bus.address });
  await eventually(20_000, 'readings committed to the outbox', () => (existsSync(join(rig.dataDir, 'outbox.sqlite-wal')) && rig.emitted().length > 4 ? true : undefined));
  await new Promise((r) => setTimeout(r, 1500));
  const running = await doctor(['--json']);
  t.equal(running.code, 0, `exit 0 with the gateway running${running.stderr ? `; stderr: ${running.stderr}` : ''}`);
  const live = JSON.parse(running.stdout) as { checks: { id: string; status: string; summary: string; details?: { depth?: number } }[] };
  for (const c of live.checks) t.equal(c.status, 'ok', `running gateway, ${c.id}: ${c.summary}`);
  const outbox = live.checks.find((c) => c.id === 'outbox');
  t.ok((outbox?.details?.depth ?? 0) > 0, `the live outbox's backlog is read: ${outbox?.summary}`);
  const before = rig.hubReadings().length;
  gw.process.kill('SIGUSR1');
  await eventually(30_000, 'the gateway still delivers after doctor', () => (rig.hubReadings().length > before ? true : undefined));
  t.equal(gw.process.exitCode, null, 'the gateway is still running');

  // The clock goes bad: the command says so and exits 1.
  timedate1.setSynchronized(false);
  const bad = await doctor([]);
  t.equal(bad.code, 1, 'exit 1 when a check fails');
  t.match(bad.stdout, '✗ clock: clock not synchronised');
  t.match(bad.stdout, /gateway cannot work: 1 problem\n$/);
});
