import nodeBle from 'node-ble';
import t, { type Test } from 'tap';
import { FakeClock, systemClock, type Clock } from '../../../common/clock.js';
import { createLogger } from '../../../common/log.js';
import type { Sample } from '../../../sensors/contract/index.js';
import { startFakeBluez, type EmittedBleReading, type FakeBluez } from '../../../sensors/ble/emulator/fake-bluez.js';
import { BleWearableSource, type BleWearableSourceOptions } from '../../../sensors/ble/source.js';
import { startPrivateBus } from '../../../sensors/dbus/private-bus.js';
import { eventually, within } from '../../helpers/deadline.js';

const HR = 'AA:BB:CC:DD:EE:01';
const ENV = 'AA:BB:CC:DD:EE:02';
const THERMO = 'AA:BB:CC:DD:EE:03';
const STRANGER = 'AA:BB:CC:DD:EE:09';
const devicePath = (address: string): string => `/org/bluez/hci0/dev_${address.replace(/:/g, '_')}`;
const silent = createLogger({ level: 'silent' });

interface Rig {
  fake: FakeBluez;
  busAddress: string;
  onCleanup: (fn: () => unknown) => void;
}

/** Bus and fake BlueZ, stopped in reverse order in teardown even when the test fails. */
async function rig(t: Test): Promise<Rig> {
  const stack: (() => unknown)[] = [];
  t.teardown(async () => {
    for (const fn of stack.reverse()) await fn();
  });
  const onCleanup = (fn: () => unknown): void => void stack.push(fn);
  const bus = await startPrivateBus();
  onCleanup(() => bus.stop());
  const fake = await startFakeBluez({ address: bus.address, discoveryDelayMs: 20 });
  onCleanup(() => fake.stop());
  return { fake, busAddress: bus.address, onCleanup };
}

interface Running {
  source: BleWearableSource;
  got: Sample[];
  /** Resolves when the samples() loop has ended. */
  done: Promise<void>;
  stop(): Promise<void>;
}

function start(r: Rig, opts: Partial<BleWearableSourceOptions> & Pick<BleWearableSourceOptions, 'pairings'>, clock: Clock = systemClock): Running {
  const source = new BleWearableSource({
    clock,
    log: silent,
    reconnect: { initialMs: 50, maxMs: 400, factor: 2, jitter: 0.2 },
    discoveryTimeoutMs: 1000,
    pollIntervalMs: 300,
    operationTimeoutMs: 2000,
    turnWindowMs: 1000,
    // node-ble's createBluetooth() reads the bus address from the environment when called.
    bluetooth: () => {
      const previous = process.env.DBUS_SYSTEM_BUS_ADDRESS;
      process.env.DBUS_SYSTEM_BUS_ADDRESS = r.busAddress;
      try {
        return nodeBle.createBluetooth();
      } finally {
        if (previous === undefined) delete process.env.DBUS_SYSTEM_BUS_ADDRESS;
        else process.env.DBUS_SYSTEM_BUS_ADDRESS = previous;
      }
    },
    ...opts,
  });
  const got: Sample[] = [];
  const ac = new AbortController();
  const done = (async () => {
    for await (const s of source.samples(ac.signal)) got.push(s);
  })();
  const stop = async (): Promise<void> => {
    ac.abort();
    await within(5000, 'samples() to end', done);
  };
  r.onCleanup(stop);
  return { source, got, done, stop };
}

const values = (got: readonly Sample[], source: string): number[] => got.filter((s) => s.source === source).map((s) => s.value);
const emittedValues = (e: readonly EmittedBleReading[], kind: string, via?: 'notify' | 'read'): number[] =>
  e.filter((x) => x.kind === kind && x.fault === undefined && (via === undefined || x.via === via)).map((x) => x.value);

/** `got` is the start of `emitted` (values still in flight at the end may be missing). */
function assertPrefix(t: Test, got: number[], emitted: number[], what: string, close = 0): void {
  t.ok(got.length > 0, `${what}: received some`);
  t.ok(got.length <= emitted.length, `${what}: no more than emitted (${got.length} <= ${emitted.length})`);
  const mismatch = got.findIndex((v, i) => Math.abs(v - (emitted[i] ?? Number.NaN)) > close || Number.isNaN(emitted[i] ?? Number.NaN));
  t.equal(mismatch, -1, `${what}: values equal the emitted log, in order`);
  t.ok(emitted.length - got.length <= 10, `${what}: only the last few in flight at the stop (${emitted.length - got.length})`);
}

t.test('discover, connect, notify: kinds, units and values match the emitted log; battery read', async (t) => {
  const r = await rig(t);
  const hr = r.fake.addWearable({ address: HR, services: ['heart_rate', 'battery'], rateHz: 20, seed: 7 });
  const env = r.fake.addWearable({ address: ENV, services: ['environmental_sensing', 'battery'], rateHz: 10, seed: 8 });
  const thermo = r.fake.addWearable({ address: THERMO, services: ['health_thermometer', 'battery'], rateHz: 10, seed: 9 });
  const run = start(r, {
    pairings: { [HR]: { profile: 'heart_rate' }, [ENV]: { profile: 'environmental_sensing' }, [THERMO]: { profile: 'health_thermometer', name: 'thermo' } },
  });
  await eventually(5000, 'samples of every kind', () => {
    const kinds = new Set(run.got.map((s) => s.source));
    return ['heart_rate', 'rr_interval', 'battery'].every((k) => kinds.has(`ble:${HR}/${k}`)) &&
      ['temperature', 'humidity', 'uv_index', 'battery'].every((k) => kinds.has(`ble:${ENV}/${k}`)) &&
      kinds.has(`ble:${THERMO}/skin_temperature`) &&
      values(run.got, `ble:${HR}/heart_rate`).length >= 12
      ? true
      : undefined;
  });
  await run.stop();

  const units = new Map(run.got.map((s) => [s.kind, s.unit]));
  t.same(Object.fromEntries(units), {
    heart_rate: '/min',
    rr_interval: 'ms',
    energy_expended: 'kJ',
    battery: '%',
    temperature: 'Cel',
    humidity: '%',
    uv_index: '1',
    skin_temperature: 'Cel',
  }, 'kinds and units');
  for (const s of run.got) {
    t.same(s.flags, {}, 'no flags');
    t.ok(Math.abs(s.ts - Date.now()) < 10_000, 'ts from the clock');
  }

  assertPrefix(t, values(run.got, `ble:${HR}/heart_rate`), emittedValues(hr.emitted, 'heart_rate'), 'heart_rate');
  assertPrefix(t, values(run.got, `ble:${HR}/rr_interval`), emittedValues(hr.emitted, 'rr_interval').map((s) => s * 1000), 'rr_interval (s in the log, ms here)', 1e-6);
  const energy = values(run.got, `ble:${HR}/energy_expended`);
  if (energy.length > 0) assertPrefix(t, energy, emittedValues(hr.emitted, 'energy_expended'), 'energy_expended');
  for (const kind of ['temperature', 'humidity', 'uv_index']) {
    assertPrefix(t, values(run.got, `ble:${ENV}/${kind}`), emittedValues(env.emitted, kind, 'notify'), `ENV ${kind}`, 0.006);
  }
  assertPrefix(t, values(run.got, `ble:${THERMO}/skin_temperature`), emittedValues(thermo.emitted, 'skin_temperature'), 'skin_temperature', 0.006);

  for (const [w, address] of [[hr, HR], [env, ENV], [thermo, THERMO]] as const) {
    const reads = emittedValues(w.emitted, 'battery', 'read');
    t.ok(reads.length >= 1, `${address}: battery read`);
    t.same(values(run.got, `ble:${address}/battery`), reads, `${address}: battery samples = values read`);
    const st = run.source.state()[address];
    t.equal(st?.battery, reads.at(-1), `${address}: battery in state`);
    t.equal(st?.rssi, -60, `${address}: RSSI in state`);
    t.equal(st?.decodeErrors, 0);
  }
  t.equal(run.source.totals().shortfall, 0);
  const hrState = run.source.state()[HR];
  t.ok(hrState?.lastSeenMs !== undefined);
});

t.test('an unpaired device in range is never connected', async (t) => {
  const r = await rig(t);
  r.fake.addWearable({ address: HR, services: ['heart_rate', 'battery'], rateHz: 20 });
  const stranger = r.fake.addWearable({ address: STRANGER, services: ['heart_rate', 'battery'], rateHz: 20 });
  const run = start(r, { pairings: { [HR]: { profile: 'heart_rate' } } });
  await eventually(5000, 'heart rate', () => (values(run.got, `ble:${HR}/heart_rate`).length >= 5 ? true : undefined));
  // Let the paired device drop and come back once, so rediscovery runs too.
  r.fake.wearable(HR)?.vanish();
  await new Promise((res) => setTimeout(res, 100));
  r.fake.wearable(HR)?.reappear();
  await eventually(5000, 'back', () => (run.source.state()[HR]?.reconnects === 1 ? true : undefined));
  await run.stop();
  t.ok(stranger.exported, 'the stranger was discovered');
  t.equal(stranger.connected, false);
  t.same(r.fake.calls.filter((c) => c.path.startsWith(devicePath(STRANGER)) && c.member === 'Connect'), [], 'no Connect to the stranger');
  t.same(Object.keys(run.source.state()), [HR]);
  t.notOk(run.got.some((s) => s.source.includes(STRANGER)));
});

t.test('disconnect fault → reconnect; vanish + reappear → rediscovered and receiving again', async (t) => {
  const r = await rig(t);
  const w = r.fake.addWearable({ address: HR, services: ['heart_rate', 'battery'], rateHz: 25 });
  const run = start(r, { pairings: { [HR]: { profile: 'heart_rate' } } });
  const count = (): number => values(run.got, `ble:${HR}/heart_rate`).length;
  await eventually(5000, 'receiving', () => (count() >= 3 ? true : undefined));
  const connectsBefore = r.fake.calls.filter((c) => c.member === 'Connect').length;

  w.disconnect();
  await eventually(3000, 'reconnected', () => (run.source.state()[HR]?.reconnects === 1 && run.source.state()[HR]?.pairing === 'receiving' ? true : undefined));
  t.equal(r.fake.calls.filter((c) => c.member === 'Connect').length, connectsBefore + 1, 'one more Connect');
  const afterReconnect = count();
  await eventually(3000, 'samples after the reconnect', () => (count() >= afterReconnect + 3 ? true : undefined));
  t.equal(w.connected, true);

  const discoveriesBefore = r.fake.calls.filter((c) => c.member === 'StartDiscovery').length;
  w.vanish();
  await eventually(3000, 'error state', () => (run.source.state()[HR]?.pairing === 'error' ? true : undefined));
  t.match(run.source.state()[HR]?.reason, /lost/);
  await new Promise((res) => setTimeout(res, 300));
  w.reappear();
  await eventually(5000, 'receiving again', () => (run.source.state()[HR]?.reconnects === 2 && run.source.state()[HR]?.pairing === 'receiving' ? true : undefined));
  const afterRediscovery = count();
  await eventually(3000, 'samples after rediscovery', () => (count() >= afterRediscovery + 3 ? true : undefined));
  t.ok(r.fake.calls.filter((c) => c.member === 'StartDiscovery').length > discoveriesBefore, 'discovered again');
  t.equal(r.fake.discovering(), false, 'discovery stopped once found');
  await run.stop();
  // Everything received is still the emitted sequence (losses happen only across link drops).
  const emitted = emittedValues(w.emitted, 'heart_rate');
  const got = values(run.got, `ble:${HR}/heart_rate`);
  t.ok(got.every((v) => emitted.includes(v)), 'every received value was emitted');
});

t.test('backoff on the injected clock: delays grow and are capped; rediscovered after reappearing', async (t) => {
  const r = await rig(t);
  const w = r.fake.addWearable({ address: HR, services: ['heart_rate', 'battery'], rateHz: 25 });
  const clock = new FakeClock();
  // jitter 0.5 with random() = 0.5: every delay is 0.75 × nominal.
  const run = start(r, {
    pairings: { [HR]: { profile: 'heart_rate' } },
    reconnect: { initialMs: 100, maxMs: 800, factor: 2, jitter: 0.5 },
    random: () => 0.5,
    discoveryTimeoutMs: 150,
  }, clock);
  await eventually(5000, 'receiving', () => (values(run.got, `ble:${HR}/heart_rate`).length >= 3 ? true : undefined));
  w.vanish();
  const delays: number[] = [];
  for (let attempt = 1; attempt <= 6; attempt++) {
    const st = await eventually(5000, `failure ${attempt}`, () => {
      const s = run.source.state()[HR];
      return s?.failures === attempt && s.retryInMs !== undefined ? s : undefined;
    });
    const delay = st.retryInMs ?? Number.NaN;
    delays.push(delay);
    const connects = r.fake.calls.filter((c) => c.member === 'StartDiscovery').length;
    // Nothing happens before the delay has passed on the injected clock...
    await clock.advance(delay - 1);
    await new Promise((res) => setTimeout(res, 50));
    t.equal(r.fake.calls.filter((c) => c.member === 'StartDiscovery').length, connects, `attempt ${attempt + 1} waits the full delay`);
    await clock.advance(1);
  }
  t.same(delays, [75, 150, 300, 600, 600, 600], 'delays grow by the factor and stop at maxMs (× 0.75 jitter)');
  t.ok(delays.every((d) => d <= 800), 'bounded by maxMs');

  await eventually(5000, 'failure 7', () => (run.source.state()[HR]?.failures === 7 ? true : undefined));
  w.reappear();
  await clock.advance(run.source.state()[HR]?.retryInMs ?? 0);
  await eventually(5000, 'receiving again', () => (run.source.state()[HR]?.pairing === 'receiving' ? true : undefined));
  const n = values(run.got, `ble:${HR}/heart_rate`).length;
  await eventually(3000, 'samples again', () => (values(run.got, `ble:${HR}/heart_rate`).length > n + 2 ? true : undefined));
  t.equal(run.source.state()[HR]?.reconnects, 1);
  t.ok(run.got.every((s) => s.ts === clock.now() || s.ts < clock.now()), 'ts from the injected clock');
});

t.test('more paired devices than maxConnections: all served in turn, shortfall reported', async (t) => {
  const r = await rig(t);
  const devices = [
    r.fake.addWearable({ address: HR, services: ['heart_rate', 'battery'], rateHz: 20 }),
    r.fake.addWearable({ address: ENV, services: ['environmental_sensing', 'battery'], rateHz: 10 }),
    r.fake.addWearable({ address: THERMO, services: ['environmental_sensing', 'battery'], rateHz: 10 }),
  ];
  let maxConnected = 0;
  const watch = setInterval(() => {
    maxConnected = Math.max(maxConnected, devices.filter((d) => d.connected).length);
  }, 2);
  t.teardown(() => clearInterval(watch));
  const run = start(r, {
    maxConnections: 2,
    pollIntervalMs: 200,
    pairings: { [HR]: { profile: 'heart_rate' }, [ENV]: { profile: 'environmental_sensing' }, [THERMO]: { profile: 'environmental_sensing' } },
  });
  const kindsOf = (address: string): Set<string> => new Set(run.got.filter((s) => s.source.startsWith(`ble:${address}/`)).map((s) => s.kind));
  await eventually(8000, 'every device served at least twice', () => {
    const turns = [ENV, THERMO].map((a) => values(run.got, `ble:${a}/battery`).length);
    return turns.every((n) => n >= 2) && kindsOf(HR).has('heart_rate') ? true : undefined;
  });
  const totals = run.source.totals();
  t.equal(totals.paired, 3);
  t.equal(totals.maxConnections, 2);
  t.equal(totals.persistentSlots, 1);
  t.equal(totals.shortfall, 2, 'shortfall reported');
  const st = run.source.state();
  t.equal(Object.values(st).filter((s) => s.servedInTurn).length, 2, 'two served in turn');
  t.equal(st[HR]?.servedInTurn, false, 'the first paired holds its connection');
  for (const a of [ENV, THERMO]) {
    t.same([...kindsOf(a)].sort(), ['battery', 'humidity', 'temperature', 'uv_index'], `${a}: every characteristic read in its turn`);
    t.ok(r.fake.calls.filter((c) => c.path === devicePath(a) && c.member === 'Disconnect').length >= 2, `${a}: disconnected after each turn`);
  }
  t.ok(maxConnected <= 2, `never more than 2 connected at once (saw ${maxConnected})`);
  await run.stop();
});

t.test('truncated payloads are counted in decodeErrors and the stream continues', async (t) => {
  const r = await rig(t);
  const w = r.fake.addWearable({ address: HR, services: ['heart_rate', 'battery'], rateHz: 25, seed: 3 });
  const run = start(r, { pairings: { [HR]: { profile: 'heart_rate' } } });
  const count = (): number => values(run.got, `ble:${HR}/heart_rate`).length;
  await eventually(5000, 'receiving', () => (count() >= 3 ? true : undefined));
  w.truncateNext(4);
  await eventually(3000, '4 decode errors', () => (run.source.state()[HR]?.decodeErrors === 4 ? true : undefined));
  const n = count();
  await eventually(3000, 'stream continues', () => (count() >= n + 5 ? true : undefined));
  await run.stop();
  t.equal(run.source.totals().decodeErrors, 4);
  t.equal(w.emitted.filter((e) => e.fault === 'truncated' && e.kind === 'heart_rate').length, 4);
  assertPrefix(t, values(run.got, `ble:${HR}/heart_rate`), emittedValues(w.emitted, 'heart_rate'), 'heart_rate without the damaged ones');
  t.equal(run.source.state()[HR]?.reconnects, 0, 'no reconnect: a bad payload is not a link failure');
});

t.test('measureNow reads every readable characteristic; setPairings connects and disconnects live', async (t) => {
  const r = await rig(t);
  const hr = r.fake.addWearable({ address: HR, services: ['heart_rate', 'battery'], rateHz: 20 });
  const env = r.fake.addWearable({ address: ENV, services: ['environmental_sensing', 'battery'], rateHz: 5 });
  const run = start(r, { pairings: { [HR]: { profile: 'heart_rate' } }, pollIntervalMs: 60_000 });
  await eventually(5000, 'battery read', () => (values(run.got, `ble:${HR}/battery`).length === 1 ? true : undefined));
  const reads = (): number => r.fake.calls.filter((c) => c.member === 'ReadValue' && c.path.includes('dev_AA_BB_CC_DD_EE_01')).length;
  const readsBefore = reads();
  await run.source.measureNow();
  t.ok(reads() > readsBefore, 'measureNow read the device before resolving');
  // The value reaches the stream a few ticks later (the next poll is a minute away).
  await eventually(1000, 'second battery reading on the stream', () => (values(run.got, `ble:${HR}/battery`).length === 2 ? true : undefined));
  t.equal(values(run.got, `ble:${HR}/battery`).length, 2, 'measureNow read the battery again');

  run.source.setPairings({ [ENV]: { profile: 'environmental_sensing' } });
  await eventually(5000, 'ENV receiving', () => (run.source.state()[ENV]?.pairing === 'receiving' ? true : undefined));
  await eventually(3000, 'HR disconnected', () => (hr.connected ? undefined : true));
  t.same(Object.keys(run.source.state()), [ENV]);
  t.equal(env.connected, true);
  await run.stop();
});

t.test('abort: samples() ends, devices disconnected, no further D-Bus calls', async (t) => {
  const r = await rig(t);
  const w = r.fake.addWearable({ address: HR, services: ['heart_rate', 'battery'], rateHz: 50 });
  const run = start(r, { pairings: { [HR]: { profile: 'heart_rate' }, [ENV]: { profile: 'environmental_sensing' } } });
  await eventually(5000, 'receiving', () => (values(run.got, `ble:${HR}/heart_rate`).length >= 3 ? true : undefined));
  // ENV is paired but absent: the scheduler is discovering or backing off when the abort comes.
  await run.stop();
  const calls = r.fake.calls.length;
  t.equal(w.connected, false, 'disconnected');
  t.equal(r.fake.discovering(), false, 'discovery stopped');
  const n = run.got.length;
  await new Promise((res) => setTimeout(res, 500));
  t.equal(r.fake.calls.length, calls, 'no D-Bus calls after samples() ended');
  t.equal(run.got.length, n);
});

t.test('no D-Bus daemon: retries with backoff, no crash, abort ends samples()', async (t) => {
  const source = new BleWearableSource({
    clock: systemClock,
    log: silent,
    pairings: { [HR]: { profile: 'heart_rate' } },
    reconnect: { initialMs: 20, maxMs: 50, factor: 2, jitter: 0 },
    operationTimeoutMs: 200,
    bluetooth: () => {
      const previous = process.env.DBUS_SYSTEM_BUS_ADDRESS;
      process.env.DBUS_SYSTEM_BUS_ADDRESS = 'unix:path=/nonexistent/fieldlink-no-bus';
      try {
        return nodeBle.createBluetooth();
      } finally {
        if (previous === undefined) delete process.env.DBUS_SYSTEM_BUS_ADDRESS;
        else process.env.DBUS_SYSTEM_BUS_ADDRESS = previous;
      }
    },
  });
  const ac = new AbortController();
  const got: Sample[] = [];
  const done = (async () => {
    for await (const s of source.samples(ac.signal)) got.push(s);
  })();
  t.teardown(() => ac.abort());
  await new Promise((res) => setTimeout(res, 500));
  ac.abort();
  await within(3000, 'samples() to end', done);
  t.same(got, []);
  t.equal(source.state()[HR]?.pairing, 'error');
  t.match(source.state()[HR]?.reason, /adapter hci0 unavailable/);
});

t.test('a Connect that does not answer in time fails the attempt; retried until it connects', async (t) => {
  const r = await rig(t);
  const w = r.fake.addWearable({ address: HR, services: ['heart_rate', 'battery'], rateHz: 25 });
  w.slowConnect(1200);
  const run = start(r, { pairings: { [HR]: { profile: 'heart_rate' } }, operationTimeoutMs: 300 });
  const st = await eventually(3000, 'timeout reported', () => {
    const s = run.source.state()[HR];
    return s?.pairing === 'error' ? s : undefined;
  });
  t.match(st.reason, /connect: no answer within 300 ms/);
  w.slowConnect(0);
  await eventually(6000, 'receiving', () => (values(run.got, `ble:${HR}/heart_rate`).length >= 3 ? true : undefined));
  t.equal(run.source.state()[HR]?.pairing, 'receiving');
  await run.stop();
});
