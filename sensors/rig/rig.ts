/**
 * The emulator rig: one scenario starts any mix of emulated wearables (a private D-Bus with a
 * fake BlueZ, only when there are wearables), serial thermostats and Firmata boards (on ptys),
 * runs the scenario's fault timeline, and writes what a gateway needs to read them:
 *
 *   <dir>/gateway-sources.json   { sources, settings: { pairings }, env: { DBUS_SYSTEM_BUS_ADDRESS } }
 *   <dir>/emitted/*.jsonl        every value each emulator emitted (see emittedCounts)
 *   <dir>/timeline.jsonl         every timeline event as it fired
 *   <dir>/tty/<id>               the host side of each pty
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { systemClock, type Clock } from '../../common/clock.js';
import type { DeepReadonly } from '../../common/config.js';
import { FieldlinkError } from '../../common/errors.js';
import { createLogger, type Logger } from '../../common/log.js';
import { startFakeBluez, type EmulatedWearable, type FakeBluez } from '../ble/emulator/fake-bluez.js';
import type { WearableService } from '../ble/emulator/wearable-model.js';
import { startPrivateBus, type PrivateBus } from '../dbus/private-bus.js';
import { FirmataEmulator, type AnalogPattern } from '../firmata/emulator.js';
import { ThermostatEmulator } from '../serial-thermostat/emulator.js';
import { parseScenario, PROFILE_SERVICES, targetKinds, type AnalogPin, type Scenario, type ScenarioThermometer, type TimelineEvent, type TimelineFault, type WearableProfile } from './scenario.js';

export const FRAGMENT_FILE = 'gateway-sources.json';
export const EMITTED_DIR = 'emitted';
export const TIMELINE_FILE = 'timeline.jsonl';
/** The BLE source's id in the fragment. */
export const BLE_SOURCE_ID = 'wearables';

/** The gateway config fragment, shaped as the gateway config file's `sources` and `settings`. */
export interface GatewayFragment {
  readonly sources: readonly FragmentSource[];
  readonly settings: { readonly pairings: Readonly<Record<string, { readonly profile: WearableProfile; readonly name?: string }>> };
  /** The environment a gateway process needs (the private bus, when there are wearables). */
  readonly env: { readonly DBUS_SYSTEM_BUS_ADDRESS?: string };
}

export type FragmentSource =
  | { readonly id: string; readonly family: 'serial'; readonly path: string; readonly baudRate: 9600 }
  | { readonly id: string; readonly family: 'firmata'; readonly path: string; readonly baudRate: 57600; readonly thermometers: readonly { readonly pin: AnalogPin; readonly controller: 'TMP36' | 'LM35' }[] }
  | { readonly id: string; readonly family: 'ble'; readonly adapter: string };

/** A timeline event that has fired (also a line of timeline.jsonl). */
export interface FiredEvent extends TimelineEvent {
  /** Wall time it fired (clock.now()). */
  readonly ts: number;
  /** Milliseconds after the rig started, on the rig's clock. */
  readonly afterMs: number;
  /** Set when the fault could not be applied. */
  readonly error?: string;
}

export interface RigOptions {
  /** Overrides the scenario's `dir`; by default a fresh temporary directory. Created if missing. */
  readonly dir?: string;
  readonly log?: Logger;
  /** The timeline's clock (systemClock by default); the emulators run on the system clock. */
  readonly clock?: Clock;
  /** Names the scenario in CONFIG_INVALID messages. */
  readonly source?: string;
}

export interface Rig {
  readonly dir: string;
  /** Path of gateway-sources.json. */
  readonly fragmentPath: string;
  readonly fragment: GatewayFragment;
  /** The private bus's address, when the scenario has wearables. */
  readonly busAddress: string | undefined;
  readonly bus: PrivateBus | undefined;
  readonly bluez: FakeBluez | undefined;
  readonly thermostats: ReadonlyMap<string, ThermostatEmulator>;
  readonly boards: ReadonlyMap<string, FirmataEmulator>;
  readonly wearables: ReadonlyMap<string, EmulatedWearable>;
  /** Timeline events fired so far, in order. */
  readonly fired: readonly FiredEvent[];
  /** Resolves once every timeline event has fired (or the rig stopped). */
  readonly timelineDone: Promise<void>;
  /** Process ids of every socat and the bus supervisor now running (for leak checks). */
  pids(): number[];
  /** Stops everything (timeline, emulators, fake BlueZ, bus); safe to call twice. */
  stop(): Promise<void>;
}

const logName = (prefix: string, id: string): string => `${prefix}-${id.replace(/[^A-Za-z0-9_.-]/g, '_')}.jsonl`;

function analogPattern(t: DeepReadonly<ScenarioThermometer>): AnalogPattern {
  const p = t.pattern;
  if ('sine' in p) return { controller: t.controller, sine: { ...p.sine } };
  return p.noiseC === undefined ? { controller: t.controller, celsius: p.celsius } : { controller: t.controller, celsius: p.celsius, noiseC: p.noiseC };
}

/** Starts everything the scenario lists and writes the gateway fragment. On a failure, what started is stopped again. */
export async function startRig(input: Scenario | DeepReadonly<Scenario>, opts: RigOptions = {}): Promise<Rig> {
  const scenario = parseScenario(input, opts.source ?? 'scenario');
  const log = (opts.log ?? createLogger({ level: 'silent' })).child({ component: 'rig' });
  const clock = opts.clock ?? systemClock;
  const dirOption = opts.dir ?? scenario.dir;
  const dir = dirOption === undefined ? mkdtempSync(join(tmpdir(), 'fieldlink-rig-')) : resolve(dirOption);
  const emittedDir = join(dir, EMITTED_DIR);
  const ttyDir = join(dir, 'tty');
  for (const d of [dir, emittedDir, ttyDir]) mkdirSync(d, { recursive: true });

  const thermostats = new Map<string, ThermostatEmulator>();
  const boards = new Map<string, FirmataEmulator>();
  const wearables = new Map<string, EmulatedWearable>();
  let bus: PrivateBus | undefined;
  let bluez: FakeBluez | undefined;
  const stopAbort = new AbortController();
  const inFlight = new Set<Promise<void>>();
  const fired: FiredEvent[] = [];

  const stopEmulators = async (): Promise<void> => {
    const results = await Promise.allSettled([...[...thermostats.values()].map((e) => e.stop()), ...[...boards.values()].map((b) => b.stop()), ...(bluez === undefined ? [] : [bluez.stop()])]);
    await bus?.stop();
    for (const r of results) if (r.status === 'rejected') log.warn({ err: r.reason as unknown }, 'an emulator did not stop cleanly');
  };

  const sources: FragmentSource[] = [];
  const pairings: Record<string, { profile: WearableProfile; name?: string }> = {};
  try {
    for (const th of scenario.thermostats ?? []) {
      const emu = await ThermostatEmulator.start({
        link: join(ttyDir, th.id),
        deviceId: th.id,
        readingLog: join(emittedDir, logName('thermostat', th.id)),
        log,
        ...(th.rateHz === undefined ? {} : { rateHz: th.rateHz }),
        ...(th.seed === undefined ? {} : { seed: th.seed }),
        ...(th.faults === undefined ? {} : { faults: { ...th.faults } }),
      });
      thermostats.set(th.id, emu);
      sources.push({ id: th.id, family: 'serial', path: emu.link, baudRate: 9600 });
    }
    for (const b of scenario.boards ?? []) {
      const analog: Record<number, AnalogPattern> = {};
      for (const t of b.thermometers) analog[Number(t.pin.slice(1))] = analogPattern(t);
      const emu = await FirmataEmulator.start({
        link: join(ttyDir, b.id),
        boardId: b.id,
        analog,
        readingLog: join(emittedDir, logName('board', b.id)),
        log,
        ...(b.rateHz === undefined ? {} : { rateHz: b.rateHz }),
        ...(b.seed === undefined ? {} : { seed: b.seed }),
      });
      boards.set(b.id, emu);
      sources.push({ id: b.id, family: 'firmata', path: emu.link, baudRate: 57600, thermometers: b.thermometers.map((t) => ({ pin: t.pin, controller: t.controller })) });
    }
    const ble = scenario.wearables;
    if (ble !== undefined) {
      const adapter = ble.adapter ?? 'hci0';
      bus = await startPrivateBus();
      bluez = await startFakeBluez({ address: bus.address, adapters: [adapter], log, readingLog: join(emittedDir, 'wearables.jsonl') });
      for (const w of ble.devices) {
        const services: readonly WearableService[] = w.services ?? PROFILE_SERVICES[w.profile];
        const paired = w.paired ?? true;
        wearables.set(
          w.address,
          bluez.addWearable({
            address: w.address,
            services: [...services],
            adapter,
            rateHz: w.rateHz ?? 1,
            paired,
            ...(w.name === undefined ? {} : { name: w.name }),
            ...(w.seed === undefined ? {} : { seed: w.seed }),
            ...(w.rssi === undefined ? {} : { rssi: w.rssi }),
          }),
        );
        if (paired) pairings[w.address] = w.name === undefined ? { profile: w.profile } : { profile: w.profile, name: w.name };
      }
      sources.push({ id: BLE_SOURCE_ID, family: 'ble', adapter });
    }
  } catch (e) {
    await stopEmulators();
    throw e;
  }

  const fragment: GatewayFragment = { sources, settings: { pairings }, env: bus === undefined ? {} : { DBUS_SYSTEM_BUS_ADDRESS: bus.address } };
  const fragmentPath = join(dir, FRAGMENT_FILE);
  writeFileSync(fragmentPath, `${JSON.stringify(fragment, null, 2)}\n`);
  log.info({ dir, thermostats: thermostats.size, boards: boards.size, wearables: wearables.size, busAddress: bus?.address }, 'rig ready');

  const kinds = targetKinds(scenario);
  /** Background work a fault leaves running (an outage, a storm): tracked so stop() waits for it. */
  const background = (work: Promise<void>, e: DeepReadonly<TimelineEvent>): void => {
    const tracked: Promise<void> = work
      .catch((err: unknown) => {
        if (!stopAbort.signal.aborted) log.warn({ target: e.target, fault: e.fault, err }, 'timeline fault failed');
      })
      .finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  };
  const apply = async (e: DeepReadonly<TimelineEvent>): Promise<void> => {
    const kind = kinds.get(e.target);
    if (kind === 'thermostat') {
      const emu = thermostats.get(e.target);
      if (emu === undefined) return;
      if (e.fault === 'disconnect') background(emu.disconnect(e.forMs ?? 5000), e);
      else if (e.fault === 'silence') emu.silence(e.forMs ?? 5000);
      else if (e.fault === 'garbage') emu.injectGarbage(e.count ?? 1);
    } else if (kind === 'board') {
      const emu = boards.get(e.target);
      if (emu === undefined) return;
      if (e.fault === 'unplug') await emu.unplug();
      else if (e.fault === 'replug') await emu.replug();
      else if (e.fault === 'garbage') emu.garbage(e.count ?? 32);
    } else if (kind === 'wearable') {
      const w = wearables.get(e.target);
      if (w === undefined) return;
      const fault: TimelineFault = e.fault;
      switch (fault) {
        case 'disconnect':
          w.disconnect();
          break;
        case 'vanish':
          w.vanish();
          break;
        case 'reappear':
          w.reappear();
          break;
        case 'truncate':
          w.truncateNext(e.count ?? 1);
          break;
        case 'slowConnect':
          w.slowConnect(e.forMs ?? 2000);
          break;
        case 'storm':
          background(w.storm(e.hz ?? 50, e.forMs ?? 2000), e);
          break;
        default:
          break;
      }
    }
  };

  const startedMs = clock.monotonicMs();
  const timelinePath = join(dir, TIMELINE_FILE);
  const fire = async (e: DeepReadonly<TimelineEvent>): Promise<void> => {
    const afterMs = Math.round(clock.monotonicMs() - startedMs);
    let error: unknown;
    try {
      await apply(e);
    } catch (err) {
      error = err;
    }
    if (stopAbort.signal.aborted) return;
    const entry: FiredEvent = { ...e, ts: clock.now(), afterMs, ...(error === undefined ? {} : { error: error instanceof Error ? error.message : String(error) }) };
    fired.push(entry);
    appendFileSync(timelinePath, `${JSON.stringify(entry)}\n`);
    if (error === undefined) log.info({ target: e.target, fault: e.fault, atS: e.atS }, 'timeline fault');
    else log.warn({ target: e.target, fault: e.fault, err: error }, 'timeline fault failed');
  };

  const events = [...(scenario.timeline ?? [])].sort((a, b) => a.atS - b.atS);
  const timelineDone = (async (): Promise<void> => {
    try {
      for (const e of events) {
        const wait = startedMs + e.atS * 1000 - clock.monotonicMs();
        if (wait > 0) await clock.sleep(wait, stopAbort.signal);
        if (stopAbort.signal.aborted) return;
        await fire(e);
      }
    } catch (e) {
      if (!stopAbort.signal.aborted) log.error({ err: e }, 'timeline failed');
    }
  })();

  let stopping: Promise<void> | undefined;
  const stopNow = async (): Promise<void> => {
    stopAbort.abort();
    await timelineDone;
    await stopEmulators();
    await Promise.allSettled([...inFlight]);
    log.info('rig stopped');
  };

  return {
    dir,
    fragmentPath,
    fragment,
    busAddress: bus?.address,
    bus,
    bluez,
    thermostats,
    boards,
    wearables,
    fired,
    timelineDone,
    pids: () =>
      [...[...thermostats.values()].map((e) => e.socatPid), ...[...boards.values()].map((b) => b.socatPid), bus?.pid].filter((p): p is number => p !== undefined && processAlive(p)),
    stop: () => (stopping ??= stopNow()),
  };
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * How many values each source emitted, from `<dir>/emitted/*.jsonl`, keyed as readings name
 * their source (`serial:thermo-1/temperature`, `ble:AA:…/heart_rate`, `firmata:board-1/A0`).
 * Deliberately damaged values (a bad checksum, a truncated payload) are left out unless
 * `includeFaulted`: a gateway must drop them, so they never reach the hub.
 */
export function emittedCounts(dir: string, opts: { includeFaulted?: boolean } = {}): Record<string, number> {
  const emittedDir = join(dir, EMITTED_DIR);
  const counts = new Map<string, number>();
  let files: string[];
  try {
    files = readdirSync(emittedDir).filter((f) => f.endsWith('.jsonl'));
  } catch (cause) {
    throw new FieldlinkError('CONFIG_UNREADABLE', { message: `no emitted logs in ${emittedDir}: is ${dir} a rig directory?`, cause, details: { path: emittedDir } });
  }
  for (const file of files.sort()) {
    for (const line of readFileSync(join(emittedDir, file), 'utf8').split('\n')) {
      if (line.trim() === '') continue;
      let entry: { source?: unknown; fault?: unknown };
      try {
        entry = JSON.parse(line) as { source?: unknown; fault?: unknown };
      } catch {
        // A line being written as we read: not counted yet.
        continue;
      }
      if (typeof entry.source !== 'string') continue;
      if (entry.fault !== undefined && opts.includeFaulted !== true) continue;
      counts.set(entry.source, (counts.get(entry.source) ?? 0) + 1);
    }
  }
  return Object.fromEntries([...counts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

