/*
 * `fieldlink hub` as a user runs it: the compiled CLI in child processes, one data directory
 * through a whole session (start, devices, events, meter, stop, offline tools, restart).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import t from 'tap';
import deviceSdk from 'azure-iot-device';
import deviceAmqp from 'azure-iot-device-amqp';
import common from 'azure-iot-common';
import { eventually, within } from '../../helpers/deadline.js';
import type { HubFile } from '../../../cloud/hub/data-dir.js';

type Test = Parameters<Parameters<typeof t.test>[0]>[0];

// dist/test/cloud/hub/cli.test.js → repository root.
const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const CLI = join(ROOT, 'dist', 'cli', 'fieldlink.js');
const CMD_TIMEOUT = 20_000;
const START_TIMEOUT = 20_000;

interface Child {
  readonly proc: ChildProcess;
  readonly args: readonly string[];
  stdout: string;
  stderr: string;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children = new Set<Child>();

function start(args: readonly string[]): Child {
  const proc = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const child: Child = {
    proc,
    args,
    stdout: '',
    stderr: '',
    exit: undefined,
    exited: new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        child.exit = { code, signal };
        resolve({ code, signal });
      });
      proc.once('error', () => {
        child.exit = { code: null, signal: null };
        resolve({ code: null, signal: null });
      });
    }),
  };
  proc.stdout?.setEncoding('utf8').on('data', (s: string) => (child.stdout += s));
  proc.stderr?.setEncoding('utf8').on('data', (s: string) => (child.stderr += s));
  children.add(child);
  void child.exited.then(() => children.delete(child));
  return child;
}

/** Stops a child: the signal first, SIGKILL if it is still there after graceMs. Never throws. */
async function stop(child: Child, signal: NodeJS.Signals = 'SIGTERM', graceMs = 3000): Promise<void> {
  if (child.exit) return;
  child.proc.kill(signal);
  try {
    await within(graceMs, `${child.args.join(' ')} exits on ${signal}`, child.exited);
  } catch {
    child.proc.kill('SIGKILL');
    await within(2000, 'SIGKILL', child.exited).catch(() => undefined);
  }
}


/** Runs one CLI command to completion (killed if it takes longer than the deadline). */
async function run(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = start(args);
  try {
    const { code } = await within(CMD_TIMEOUT, `fieldlink ${args.join(' ')}`, child.exited);
    return { code, stdout: child.stdout, stderr: child.stderr };
  } finally {
    await stop(child, 'SIGKILL', 1000);
  }
}

/** Waits until `re` matches the child's stdout; fails at once if the child exits first. */
async function waitForOutput(child: Child, re: RegExp, ms: number, what: string): Promise<RegExpExecArray> {
  return eventually(ms, what, () => {
    const m = re.exec(child.stdout);
    if (m) return m;
    if (child.exit) throw new Error(`${what}: process exited (${JSON.stringify(child.exit)}) first\nstdout: ${child.stdout}\nstderr: ${child.stderr}`);
    return undefined;
  });
}

function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The JSON lines of a stream still being written (a trailing partial line is left out). */
function completeJsonLines(text: string): Record<string, unknown>[] {
  return jsonLines(text.slice(0, text.lastIndexOf('\n') + 1));
}

const mode = (file: string): number => statSync(file).mode & 0o777;


const tmp = mkdtempSync(join(tmpdir(), 'fieldlink-cli-'));
// Every child still alive when the file ends — after a failed assertion too — is stopped, then
// the data directory goes.
t.teardown(async () => {
  await Promise.all([...children].map((c) => stop(c, 'SIGTERM', 2000)));
  rmSync(tmp, { recursive: true, force: true });
});
const D = join(tmp, 'hub');
const hubJsonPath = join(D, 'hub.json');
// Parsed by hand, not through readHubFile: the test checks what is on disk, not what the hub reads back.
const readHubJson = (): HubFile => JSON.parse(readFileSync(hubJsonPath, 'utf8')) as HubFile;

/** The hub processes of this session, in start order (their output is scanned at the end). */
const hubs: Child[] = [];
let ports: { amqp: number; https: number } | undefined;
let dev1Cs: string | undefined;
const bodies: string[] = [];

const READY = /local IoT Hub ready: amqps:\/\/localhost:(\d+)\s+https:\/\/localhost:(\d+)/;

function requirePorts(): { amqp: number; https: number } {
  if (!ports) throw new Error('the hub did not start in the first test');
  return ports;
}

async function sendEvents(t: Test, cs: string, payloads: string[]): Promise<void> {
  const device = deviceSdk.Client.fromConnectionString(cs, deviceAmqp.Amqp);
  // Awaited: the SDK first tries `ca` as a file name (fs.readFile) and applies the options only in
  // that callback, so an open() started earlier can run without the CA.
  await within(5000, 'device setOptions', device.setOptions({ ca: readFileSync(readHubJson().caFile, 'utf8') }));
  device.setRetryPolicy(new common.NoRetry());
  t.teardown(() => within(5000, 'device close', device.close()).catch(() => undefined));
  await within(10_000, 'device open', device.open());
  for (const p of payloads) {
    await within(5000, `sendEvent ${p}`, device.sendEvent(new common.Message(p)));
    bodies.push(p);
  }
  await within(5000, 'device close', device.close());
}

t.test('`hub --data D --amqp-port 0 --https-port 0` starts, prints the bound ports and writes its files', async (t) => {
  const hub = start(['hub', '--data', D, '--amqp-port', '0', '--https-port', '0']);
  hubs.push(hub);
  const m = await waitForOutput(hub, READY, START_TIMEOUT, 'hub ready line');
  ports = { amqp: Number(m[1]), https: Number(m[2]) };
  t.ok(ports.amqp > 0 && ports.https > 0 && ports.amqp !== ports.https, `bound ports ${ports.amqp}, ${ports.https}`);

  t.ok(existsSync(hubJsonPath), 'hub.json exists');
  t.equal(mode(hubJsonPath), 0o600, 'hub.json is 0600');
  const h = readHubJson();
  t.equal(h.hostName, 'localhost');
  t.equal(h.amqpPort, ports.amqp, 'hub.json records the bound AMQP port');
  t.equal(h.httpsPort, ports.https, 'hub.json records the bound HTTPS port');
  t.match(h.serviceConnectionString, /^HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=[A-Za-z0-9+/=]+$/);
  t.ok(existsSync(h.caFile), 'caFile exists');
  t.match(readFileSync(h.caFile, 'utf8'), /-----BEGIN CERTIFICATE-----/);
  const caKey = join(h.caFile, '..', 'ca.key');
  t.ok(existsSync(caKey), 'CA key exists');
  t.equal(mode(caKey), 0o600, 'CA key is 0600');
  t.ok(existsSync(h.certFile), 'server certificate exists');
  t.ok(existsSync(h.keyFile), 'server key exists');
  t.equal(mode(h.keyFile), 0o600, 'server key is 0600');
});

t.test('with the hub running', async (t) => {
  t.test('`hub device create dev1` prints a device connection string for the running hub', async (t) => {
    const p = requirePorts();
    const r = await run('hub', 'device', 'create', 'dev1', '--data', D);
    t.equal(r.code, 0, r.stderr);
    const cs = r.stdout.trim();
    t.match(cs, /(^|;)DeviceId=dev1(;|$)/);
    t.match(cs, new RegExp(`(^|;)GatewayHostName=localhost:${p.amqp}(;|$)`));
    t.match(cs, /(^|;)SharedAccessKey=[A-Za-z0-9+/=]+(;|$)/);
    dev1Cs = cs;
  });

  t.test('creating dev1 again exits 1 naming DEVICE_ALREADY_EXISTS (answered by the running hub)', async (t) => {
    const r = await run('hub', 'device', 'create', 'dev1', '--data', D);
    t.equal(r.code, 1);
    t.match(r.stderr, /DEVICE_ALREADY_EXISTS/);
    t.equal(r.stdout, '', 'no connection string printed');
    const hub = hubs[0] as Child;
    // The refusal came over HTTPS from the hub process, not from the files.
    await waitForOutput(hub, /"component":"hub-rest".*"code":"DeviceAlreadyExists"/, 5000, 'hub logged the 409');
  });

  t.test('`hub device list --json` lists dev1', async (t) => {
    const r = await run('hub', 'device', 'list', '--data', D, '--json');
    t.equal(r.code, 0, r.stderr);
    const list = JSON.parse(r.stdout) as { deviceId: string; status: string }[];
    t.same(
      list.map((d) => d.deviceId),
      ['dev1'],
    );
    t.equal(list[0]?.status, 'enabled');
  });

  t.test('an SDK device sends two events; `hub events --json` prints both with bodies and sequence numbers', async (t) => {
    if (!dev1Cs) throw new Error('no dev1 connection string from the create test');
    const payloads = [`{"n":1,"tag":"${randomUUID()}"}`, `{"n":2,"tag":"${randomUUID()}"}`];
    await sendEvents(t, dev1Cs, payloads);
    const r = await run('hub', 'events', '--data', D, '--json');
    t.equal(r.code, 0, r.stderr);
    const events = jsonLines(r.stdout);
    t.equal(events.length, 2, 'exactly the two events');
    t.same(
      events.map((e) => e.body),
      payloads,
    );
    for (const e of events) {
      t.equal(e.deviceId, 'dev1');
      t.ok(Number.isInteger(e.sequenceNumber) && (e.sequenceNumber as number) > 0, 'has a sequence number');
    }
    t.ok((events[1]?.sequenceNumber as number) > (events[0]?.sequenceNumber as number), 'sequence numbers increase');
  });

  t.test('`hub events --follow --json` prints an event sent after it started', async (t) => {
    if (!dev1Cs) throw new Error('no dev1 connection string from the create test');
    const follow = start(['hub', 'events', '--data', D, '--follow', '--json']);
    t.teardown(() => stop(follow));
    // The backlog arriving means the stream is connected and subscribed.
    await eventually(10_000, 'follow prints the backlog', () => {
      if (follow.exit) throw new Error(`follow exited early: ${follow.stderr}`);
      const got = completeJsonLines(follow.stdout).map((e) => e.body);
      return bodies.every((b) => got.includes(b)) ? true : undefined;
    });
    const live = `{"n":3,"tag":"${randomUUID()}"}`;
    await sendEvents(t, dev1Cs, [live]);
    const seen = await eventually(10_000, 'follow prints the new event', () => {
      if (follow.exit) throw new Error(`follow exited early: ${follow.stderr}`);
      return completeJsonLines(follow.stdout).find((e) => e.body === live);
    });
    t.equal(seen.deviceId, 'dev1');
    t.ok(Number.isInteger(seen.sequenceNumber));
    await stop(follow);
    t.ok(follow.exit, 'follow stopped');
  });

  t.test('`hub meter --json` shows the D2C totals and dev1 counts', async (t) => {
    const r = await run('hub', 'meter', '--data', D, '--json');
    t.equal(r.code, 0, r.stderr);
    const m = JSON.parse(r.stdout) as { totals: Record<string, number>; devices: Record<string, Record<string, number>> };
    t.ok(bodies.length >= 2);
    t.equal(m.totals['d2c.messages'], bodies.length, 'total D2C messages = events sent');
    t.equal(m.devices.dev1?.['d2c.messages'], bodies.length, 'dev1 D2C messages = events sent');
    t.ok((m.devices.dev1?.['d2c.bytes'] ?? 0) >= bodies.join('').length, 'dev1 bytes cover the bodies');
    t.ok((m.devices.dev1?.['d2c.units'] ?? 0) >= bodies.length, 'dev1 billed units');
  });
});

t.test('SIGTERM stops the hub: exit code 0 within a few seconds and a "stopped" log line', async (t) => {
  const hub = hubs[0];
  if (!hub) throw new Error('no hub');
  t.notOk(hub.exit, 'hub still running before SIGTERM');
  hub.proc.kill('SIGTERM');
  const exit = await within(5000, 'hub exits after SIGTERM', hub.exited);
  t.same(exit, { code: 0, signal: null });
  t.match(hub.stdout, /"msg":"local IoT Hub stopped"/);
});

t.test('with the hub stopped', async (t) => {
  t.test('`hub device create dev2` works offline from the data dir', async (t) => {
    const r = await run('hub', 'device', 'create', 'dev2', '--data', D);
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout.trim(), /(^|;)DeviceId=dev2(;|$)/);
  });

  t.test('`hub device list --json` shows dev1 and dev2', async (t) => {
    const r = await run('hub', 'device', 'list', '--data', D, '--json');
    t.equal(r.code, 0, r.stderr);
    const ids = (JSON.parse(r.stdout) as { deviceId: string }[]).map((d) => d.deviceId).sort();
    t.same(ids, ['dev1', 'dev2']);
  });

  t.test('`hub events --json` still prints the stored events', async (t) => {
    const r = await run('hub', 'events', '--data', D, '--json');
    t.equal(r.code, 0, r.stderr);
    t.same(
      jsonLines(r.stdout).map((e) => e.body),
      bodies,
    );
  });

  t.test('a restart with the same data dir and no port flags reuses the ports and the device keys', async (t) => {
    const p = requirePorts();
    const hub = start(['hub', '--data', D]);
    hubs.push(hub);
    const m = await waitForOutput(hub, READY, START_TIMEOUT, 'restarted hub ready line');
    t.equal(Number(m[1]), p.amqp, 'same AMQP port');
    t.equal(Number(m[2]), p.https, 'same HTTPS port');
    const r = await run('hub', 'device', 'connection-string', 'dev1', '--data', D);
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout.trim(), dev1Cs, "dev1's connection string is unchanged");
    // The old string still authenticates against the restarted hub.
    await sendEvents(t, r.stdout.trim(), [`{"n":4,"tag":"${randomUUID()}"}`]);
  });
});

t.test('`hub device list --data /nonexistent` exits 1 naming HUB_DATA_DIR_INVALID', async (t) => {
  t.notOk(existsSync('/nonexistent'), '/nonexistent really does not exist');
  const r = await run('hub', 'device', 'list', '--data', '/nonexistent');
  t.equal(r.code, 1);
  t.match(r.stderr, /HUB_DATA_DIR_INVALID/);
  t.notOk(existsSync('/nonexistent'), 'nothing was created');
});

t.test("the hub processes' stdout and stderr never contain a policy or device key", async (t) => {
  for (const hub of hubs) await stop(hub);
  t.ok(hubs.length >= 1, 'hub output was captured');
  const output = hubs.map((h) => `${h.stdout}\n${h.stderr}`).join('\n');
  t.match(output, /local IoT Hub listening/, 'the output holds the hub logs (the scan is not vacuous)');
  const h = readHubJson();
  t.equal(h.policies.length, 5);
  for (const p of h.policies) {
    t.notOk(output.includes(p.primaryKey), `no ${p.keyName} primary key`);
    t.notOk(output.includes(p.secondaryKey), `no ${p.keyName} secondary key`);
  }
  const dev1Key = /SharedAccessKey=([^;]+)/.exec(dev1Cs ?? '')?.[1];
  t.ok(dev1Key, 'dev1 key known');
  if (dev1Key) t.notOk(output.includes(dev1Key), 'no dev1 key');
});
