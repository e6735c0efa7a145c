import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { systemClock } from '../../../common/clock.js';
import { createLogger } from '../../../common/log.js';
import type { Sample } from '../../../sensors/contract/index.js';
import { FirmataEmulator, type EmittedAnalog, type FirmataEmulatorOptions } from '../../../sensors/firmata/emulator.js';
import { FirmataThermometerSource } from '../../../sensors/firmata/source.js';
import { eventually, within } from '../../helpers/deadline.js';

interface Rig {
  emulator: FirmataEmulator;
  source: FirmataThermometerSource;
  samples: Sample[];
  emitted: () => EmittedAnalog[];
  stopSource: () => Promise<void>;
}

function killQuietly(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone, as expected
  }
}

/** Emulated Uno on a real pty (socat), the source reading it; everything torn down even on failure. */
async function rig(t: Test, analog: FirmataEmulatorOptions['analog'] = { 0: { controller: 'TMP36', celsius: 21.5, noiseC: 3 }, 1: { controller: 'LM35', celsius: 30, noiseC: 3 } }): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-firmata-'));
  const logFile = join(dir, 'analog.jsonl');
  const emulator = await FirmataEmulator.start({ link: join(dir, 'tty'), boardId: 'uno-1', seed: 5, readingLog: logFile, analog, announceEveryMs: 20 });
  const pids = new Set<number | undefined>([emulator.socatPid]);
  t.teardown(async () => {
    await emulator.stop();
    for (const pid of pids) killQuietly(pid);
    killQuietly(emulator.socatPid);
    rmSync(dir, { recursive: true, force: true });
  });
  const log = createLogger({ level: 'silent' });
  const source = new FirmataThermometerSource({
    boardId: 'uno-1',
    path: emulator.link,
    profile: [
      { pin: 'A0', controller: 'TMP36', kind: 'temperature' },
      { pin: 'A1', controller: 'LM35', kind: 'temperature' },
    ],
    clock: systemClock,
    log,
    samplingIntervalMs: 40,
    readyTimeoutMs: 3000,
    reopen: { initialMs: 50, maxMs: 200 },
  });
  const samples: Sample[] = [];
  const ac = new AbortController();
  const done = (async () => {
    for await (const s of source.samples(ac.signal)) samples.push(s);
  })();
  let stopped: Promise<void> | undefined;
  const stopSource = (): Promise<void> => {
    ac.abort();
    stopped ??= within(3000, 'samples() to end after abort', done);
    return stopped;
  };
  t.teardown(() => stopSource().catch(() => undefined));
  return {
    emulator,
    source,
    samples,
    emitted: () =>
      readFileSync(logFile, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as EmittedAnalog),
    stopSource,
  };
}

/** Each source's samples, in order, must be exactly the start of what the emulator logged for it. */
function assertMatchesLog(t: Test, samples: readonly Sample[], emitted: readonly EmittedAnalog[]): void {
  for (const source of ['firmata:uno-1/A0', 'firmata:uno-1/A1']) {
    const got = samples.filter((s) => s.source === source).map((s) => s.value);
    const sent = emitted.filter((e) => e.source === source).map((e) => e.celsius ?? Number.NaN);
    t.ok(got.length > 0, `${source}: samples arrived`);
    const mismatches = got.flatMap((v, i) => (Math.abs(v - (sent[i] ?? Number.NaN)) <= 0.1 ? [] : [`#${i}: got ${v}, logged ${sent[i]}`]));
    t.same(mismatches, [], `${source}: ${got.length} samples equal (±0.1 °C) the ${sent.length} values logged, in order`);
  }
}

t.test('board ready through johnny-five; samples equal what the emulator logged', async (t) => {
  const r = await rig(t);
  const t0 = Date.now();
  await eventually(4000, 'board ready', () => (r.source.connected ? true : undefined));
  t.comment(`ready in ${Date.now() - t0} ms`);
  t.ok(r.emulator.hostSpoke, 'the host answered the announce');
  await eventually(3000, '10 samples per thermometer', () => (r.samples.filter((s) => s.source.endsWith('/A1')).length >= 10 ? true : undefined));
  t.same(r.emulator.reportingChannels, [0, 1], 'REPORT_ANALOG on for A0 and A1');
  t.equal(r.emulator.samplingIntervalMs, 40, 'SAMPLING_INTERVAL from the source');
  const values = new Set(r.samples.map((s) => s.value));
  t.ok([...values].some((v) => !Number.isInteger(v)), 'tenths of a degree, not j5-rounded integers');
  t.match(r.samples[0], { kind: 'temperature', unit: 'Cel', flags: {} });

  // Line noise in between must not produce values the board never sent.
  r.emulator.garbage(64);
  r.emulator.garbage(64);
  // measureNow(): one extra value per pin, at once.
  const before = r.emulator.stats.analogMessages;
  await within(1000, 'measureNow', r.source.measureNow());
  await eventually(1000, 'the on-demand values', () => (r.emulator.stats.analogMessages >= before + 2 ? true : undefined));
  const n = r.samples.length;
  await eventually(2000, 'more samples after the noise', () => (r.samples.length >= n + 6 ? true : undefined));
  await r.stopSource();
  assertMatchesLog(t, r.samples, r.emitted());
  t.equal(r.source.counters.errors, 0, 'no errors');
  t.equal(r.source.counters.reconnects, 0);
});

t.test('unplug, then replug: samples resume, the reconnect is counted', async (t) => {
  const r = await rig(t);
  await eventually(4000, 'first samples', () => (r.samples.length >= 4 ? true : undefined));
  await r.emulator.unplug();
  await eventually(2000, 'source sees the board gone', () => (r.source.connected ? undefined : true));
  const during = r.samples.length;
  await new Promise((res) => setTimeout(res, 400)); // a few failed re-opens with backoff
  t.equal(r.samples.length, during, 'nothing while unplugged');
  r.emulator.setCelsius(0, 35.5, 'TMP36');
  await r.emulator.replug();
  await eventually(4000, 'reconnected', () => (r.source.counters.reconnects >= 1 && r.source.connected ? true : undefined));
  await eventually(2000, 'samples resume with the new value', () => r.samples.slice(during).find((s) => s.source.endsWith('/A0') && Math.abs(s.value - 35.5) <= 0.25));
  t.equal(r.source.counters.reconnects, 1, 'one reconnect');
  t.ok(r.source.counters.errors >= 1, `failed re-opens counted as errors (${r.source.counters.errors})`);
  await r.stopSource();
  assertMatchesLog(t, r.samples, r.emitted());
});

t.test('abort: samples() ends, the emulator sees the port closed, no timers or processes left', async (t) => {
  const baseline = process.getActiveResourcesInfo().filter((k) => k === 'Timeout').length;
  const r = await rig(t);
  await eventually(4000, 'samples', () => (r.samples.length >= 4 ? true : undefined));
  t.ok(r.emulator.hostAttached(), 'the emulator sees the host port open');
  await r.stopSource();
  t.pass('samples() ended');
  t.notOk(r.source.connected);
  await eventually(1000, 'host port closed', () => (r.emulator.hostAttached() ? undefined : true));
  await eventually(1000, 'reporting switched off by the leaving host', () => (r.emulator.reportingChannels.length === 0 ? true : undefined));
  const pid = r.emulator.socatPid;
  await r.emulator.stop();
  t.throws(() => process.kill(pid ?? -1, 0), 'socat is gone');
  // Any timer j5/firmata or the source left would keep tap waiting on this process.
  await eventually(1000, 'no leftover timers', () => (process.getActiveResourcesInfo().filter((k) => k === 'Timeout').length <= baseline ? true : undefined));
  t.comment(`active resources now: ${process.getActiveResourcesInfo().join(', ')}`);
});
