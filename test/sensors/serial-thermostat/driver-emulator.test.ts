import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { systemClock } from '../../../common/clock.js';
import { isFieldlinkError } from '../../../common/errors.js';
import { createLogger } from '../../../common/log.js';
import type { Sample } from '../../../sensors/contract/index.js';
import { defaultReopenPolicy, reopenDelayMs, SerialThermostat, type SerialThermostatOptions } from '../../../sensors/serial-thermostat/driver.js';
import { ThermostatEmulator, type EmittedReading } from '../../../sensors/serial-thermostat/emulator.js';
import { eventually, within } from '../../helpers/deadline.js';


interface Rig {
  emulator: ThermostatEmulator;
  driver: SerialThermostat;
  samples: Sample[];
  logLines: Array<Record<string, unknown>>;
  /** Entries of the emulator's reading log, read now. */
  emitted: () => EmittedReading[];
  /** Stop the driver's samples() and wait for it to end. */
  stopDriver: () => Promise<void>;
  done: Promise<unknown>;
}

/** A real pty via the emulator (socat), a driver reading it; all torn down even on failure. */
async function rig(t: Test, driverOpts: Partial<SerialThermostatOptions> = {}, rateHz = 20): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-thermo-'));
  const logFile = join(dir, 'readings.jsonl');
  const emulator = await ThermostatEmulator.start({ link: join(dir, 'tty'), rateHz, seed: 7, deviceId: 'thermo-1', readingLog: logFile });
  const socatPid = emulator.socatPid;
  t.teardown(async () => {
    await emulator.stop();
    // Belt and braces: the emulator's socat (and a recreated one) must not outlive the test.
    for (const pid of [socatPid, emulator.socatPid]) {
      if (pid === undefined) continue;
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone, as expected
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const logLines: Array<Record<string, unknown>> = [];
  const log = createLogger({ level: 'debug', destination: { write: (s: string) => void logLines.push(JSON.parse(s) as Record<string, unknown>) } });
  const driver = new SerialThermostat({
    id: 'serial:thermo-1',
    path: emulator.link,
    clock: systemClock,
    log,
    commandTimeoutMs: 1000,
    reopen: { initialMs: 50, maxMs: 200 },
    ...driverOpts,
  });
  const samples: Sample[] = [];
  const ac = new AbortController();
  const done = (async () => {
    for await (const s of driver.samples(ac.signal)) samples.push(s);
  })();
  const stopDriver = async (): Promise<void> => {
    ac.abort();
    await within(3000, 'samples() to end after abort', done);
  };
  t.teardown(() => stopDriver().catch(() => undefined));
  await eventually(3000, 'driver connected', () => (driver.connected ? true : undefined));
  return {
    emulator,
    driver,
    samples,
    logLines,
    emitted: () =>
      readFileSync(logFile, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as EmittedReading),
    stopDriver,
    done,
  };
}

function readingsOf(samples: readonly Sample[], kind: string): Sample[] {
  return samples.filter((s) => s.kind === kind);
}

t.test('readings arrive with increasing deviceSeq and match what the emulator logged', async (t) => {
  const r = await rig(t);
  const start = Date.now();
  await eventually(3000, '8 readings', () => (r.driver.counters.readings >= 8 ? true : undefined));
  const temps = readingsOf(r.samples, 'temperature');
  const seqs = temps.map((s) => s.deviceSeq ?? -1);
  t.ok(seqs.every((s, i) => i === 0 || s > (seqs[i - 1] ?? -1)), `deviceSeq strictly increasing: ${seqs.join(',')}`);
  t.equal(r.samples.length, 4 * r.driver.counters.readings, 'four samples per reading line');

  const logged = new Map(r.emitted().map((e) => [`${e.source}#${e.deviceSeq}`, e]));
  for (const s of r.samples) {
    const e = logged.get(`${s.source}#${s.deviceSeq ?? -1}`);
    t.ok(e, `${s.source} #${s.deviceSeq} is in the emulator's log`);
    if (e === undefined) continue;
    t.same({ kind: s.kind, value: s.value, unit: s.unit }, { kind: e.kind, value: e.value, unit: e.unit }, `${s.source} #${s.deviceSeq}`);
    t.notOk(e.fault, 'no corrupted line was accepted');
  }
  const first = r.samples[0];
  t.match(first, { source: /^serial:thermo-1\/(temperature|humidity|setpoint|mode)$/, flags: {} });
  t.ok(r.samples.every((s) => s.ts >= start - 1000 && s.ts <= Date.now()), 'ts from the injected clock');
  t.same(new Set(r.samples.map((s) => `${s.kind}:${s.unit}`)), new Set(['temperature:Cel', 'humidity:%', 'setpoint:Cel', 'mode:']));
  t.same({ malformed: r.driver.counters.malformed, badChecksum: r.driver.counters.badChecksum, oversize: r.driver.counters.oversize }, { malformed: 0, badChecksum: 0, oversize: 0 });
});

t.test('commands are ACKed or NAKed; a silent device times out', async (t) => {
  const r = await rig(t);
  await within(2000, 'SETPOINT 23.5', r.driver.setSetpoint(23.5));
  t.equal(r.emulator.setpoint, 23.5);
  const before = r.driver.counters.readings;
  await eventually(2000, 'a reading with the new setpoint', () => readingsOf(r.samples, 'setpoint').slice(before).find((s) => s.value === 23.5));

  const nak = await within(2000, 'SETPOINT 40', r.driver.setSetpoint(40)).catch((e: unknown) => e);
  t.ok(isFieldlinkError(nak, 'SENSOR_COMMAND_REJECTED'), `NAK rejects: ${String(nak)}`);
  t.match((nak as { details?: unknown }).details, { reason: 'RANGE' });
  const nakInterval = await within(2000, 'INTERVAL 0.01', r.driver.setInterval(0.01)).catch((e: unknown) => e);
  t.match(nakInterval, { code: 'SENSOR_COMMAND_REJECTED', details: { reason: 'RANGE' } });

  await within(2000, 'INTERVAL 0.1', r.driver.setInterval(0.1));
  t.equal(r.emulator.intervalMs, 100);

  // READ: the ACK comes first and a reading follows at once.
  await within(2000, 'INTERVAL 60', r.driver.setInterval(60));
  const count = r.driver.counters.readings;
  await within(2000, 'READ', r.driver.readNow());
  await eventually(1000, 'the reading READ asked for', () => (r.driver.counters.readings > count ? true : undefined));
  await within(2000, 'measureNow', r.driver.measureNow());

  r.emulator.silence(3000);
  const started = Date.now();
  const timeout = await within(3000, 'READ to a silent device', r.driver.readNow()).catch((e: unknown) => e);
  t.ok(isFieldlinkError(timeout, 'TIMEOUT'), `times out: ${String(timeout)}`);
  t.ok(Date.now() - started >= 900, 'after the command deadline (1000 ms)');
});

t.test('garbage, bad checksums and oversize lines are counted and skipped while good lines flow', async (t) => {
  const r = await rig(t);
  await eventually(3000, 'first readings', () => (r.driver.counters.readings >= 2 ? true : undefined));
  r.emulator.injectGarbage(3);
  r.emulator.injectBadChecksum(2);
  r.emulator.injectOversize(2);
  await eventually(3000, 'faults counted', () => {
    const c = r.driver.counters;
    return c.malformed >= 3 && c.badChecksum >= 2 && c.oversize >= 2 ? true : undefined;
  });
  const after = r.driver.counters.readings;
  await eventually(3000, 'good readings keep flowing', () => (r.driver.counters.readings >= after + 3 ? true : undefined));
  t.equal(r.driver.counters.badChecksum, 2, 'exactly the corrupted lines');
  t.equal(r.driver.counters.oversize, 2, 'each oversize line counted once');
  t.ok(r.driver.counters.malformed >= 3, `garbage lines counted as malformed (${r.driver.counters.malformed})`);
  const corrupted = new Set(r.emitted().filter((e) => e.fault === 'checksum').map((e) => e.deviceSeq));
  t.equal(corrupted.size, 2);
  t.notOk(r.samples.some((s) => corrupted.has(s.deviceSeq ?? -1)), 'no sample from a corrupted line');
  const seqs = readingsOf(r.samples, 'temperature').map((s) => s.deviceSeq ?? -1);
  t.ok(seqs.every((s, i) => i === 0 || s > (seqs[i - 1] ?? -1)), 'deviceSeq still increasing');
});

t.test('after the device disappears and comes back, the driver reopens and readings resume', async (t) => {
  const r = await rig(t);
  await eventually(3000, 'first readings', () => (r.driver.counters.readings >= 2 ? true : undefined));
  const lastBefore = Math.max(...readingsOf(r.samples, 'temperature').map((s) => s.deviceSeq ?? -1));
  const outage = r.emulator.disconnect(400);
  await eventually(2000, 'driver sees the port close', () => (r.driver.connected ? undefined : true));
  const unavailable = await r.driver.readNow().catch((e: unknown) => e);
  t.ok(isFieldlinkError(unavailable, 'SENSOR_UNAVAILABLE'), 'a command while disconnected fails at once');
  await within(3000, 'emulator back', outage);
  await eventually(4000, 'readings after the reopen', () =>
    r.driver.counters.reopens >= 1 && readingsOf(r.samples, 'temperature').some((s) => (s.deviceSeq ?? -1) > lastBefore + 8) ? true : undefined,
  );
  t.equal(r.driver.counters.reopens, 1, 'one reopen');
  t.ok(r.logLines.some((l) => l.msg === 'serial port lost; reopening' && typeof l.reason === 'string' && /disconnected/.test(l.reason)), 'logs why');
  t.ok(r.logLines.some((l) => l.msg === 'serial port open failed; retrying'), 'retried while the link was gone');
  await within(2000, 'commands work again', r.driver.readNow());
});

t.test('aborting the signal ends samples() and releases the port', async (t) => {
  const r = await rig(t);
  await eventually(3000, 'first readings', () => (r.driver.counters.readings >= 1 ? true : undefined));
  await r.stopDriver();
  t.notOk(r.driver.connected, 'port closed');
  const count = r.samples.length;
  await new Promise((res) => setTimeout(res, 200));
  t.equal(r.samples.length, count, 'no samples after the end');
  // The lock is released: a second driver can open the same path.
  const again = new SerialThermostat({ id: 'serial:thermo-1', path: r.emulator.link, clock: systemClock, log: createLogger({ level: 'silent' }) });
  const ac = new AbortController();
  let got = 0;
  const done = (async () => {
    for await (const _ of again.samples(ac.signal)) if (++got >= 4) break;
  })();
  t.teardown(() => ac.abort());
  await within(3000, 'second driver reads', done);
  t.notOk(again.connected, 'leaving the loop early closes the port too');
});

t.test('a source that cannot open keeps retrying with backoff and gives up after maxAttempts', async (t) => {
  const log = createLogger({ level: 'silent' });
  const driver = new SerialThermostat({ id: 'serial:none', path: '/nonexistent/tty', clock: systemClock, log, reopen: { initialMs: 10, maxMs: 20, maxAttempts: 3 } });
  const err = await within(3000, 'give up', (async () => {
    for await (const _ of driver.samples(new AbortController().signal)) void _;
  })()).catch((e: unknown) => e);
  t.ok(isFieldlinkError(err, 'SENSOR_UNAVAILABLE'), String(err));
  await t.rejects(driver.setSetpoint(20), { code: 'SENSOR_UNAVAILABLE' }, 'commands fail at once without a port');
});

t.test('reopen delays grow exponentially, are capped, and are jittered down by at most the jitter share', async (t) => {
  const policy = { ...defaultReopenPolicy, initialMs: 100, maxMs: 1000, factor: 2, jitter: 0.5 };
  t.same([1, 2, 3, 4, 5, 10].map((a) => reopenDelayMs(policy, a, () => 0)), [100, 200, 400, 800, 1000, 1000]);
  t.equal(reopenDelayMs(policy, 3, () => 0.999999), 200, 'full jitter halves the delay');
  t.same(defaultReopenPolicy, { initialMs: 200, maxMs: 30_000, factor: 2, jitter: 0.5, maxAttempts: Number.POSITIVE_INFINITY });
});

t.test('stopping the emulator during a disconnect leaves no socat and no links behind', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-thermo-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const emulator = await ThermostatEmulator.start({ link: join(dir, 'tty'), rateHz: 20 });
  const first = emulator.socatPid;
  t.teardown(() => emulator.stop());
  const outage = emulator.disconnect(5000);
  await eventually(2000, 'socat killed', () => (emulator.socatPid === undefined ? true : undefined));
  await within(2000, 'stop', emulator.stop());
  await within(1000, 'the outage ends with stop', outage);
  t.equal(emulator.socatPid, undefined, 'no socat recreated');
  t.throws(() => process.kill(first ?? -1, 0), 'the first socat is gone');
  t.notOk(existsSync(emulator.link) || existsSync(emulator.emuLink), 'links removed');
});
