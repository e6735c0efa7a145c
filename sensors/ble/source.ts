import nodeBle from 'node-ble';
import { sleepUnlessAborted, type Clock } from '../../common/clock.js';
import { FieldlinkError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { Sample, SensorSource } from '../contract/index.js';
import { DECODERS, PROFILES, isProfileName, type CharacteristicProfile, type ProfileName } from './profiles.js';
import { produceSamples, type SampleChannel } from '../contract/sample-channel.js';

/** One paired wearable, keyed by its upper-case address in `BlePairings`. */
export interface BlePairing {
  readonly profile: ProfileName;
  readonly name?: string;
}

export type BlePairings = Readonly<Record<string, BlePairing>>;

/** Exponential backoff with jitter between connection attempts; delays are on the injected clock. */
export interface ReconnectPolicy {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly factor: number;
  /** 0..1: the delay is drawn from [(1 - jitter) × nominal, nominal]. */
  readonly jitter: number;
}

export const defaultReconnectPolicy: ReconnectPolicy = { initialMs: 500, maxMs: 60_000, factor: 2, jitter: 0.3 };

/** The delay before retry `attempt` (1-based); `random` in [0, 1). */
export function reconnectDelayMs(policy: ReconnectPolicy, attempt: number, random: () => number): number {
  const nominal = Math.min(policy.maxMs, policy.initialMs * policy.factor ** Math.max(0, attempt - 1));
  return Math.max(0, Math.round(nominal * (1 - policy.jitter * random())));
}

/** What `createBluetooth()` of node-ble returns. */
export interface BluetoothSession {
  readonly bluetooth: nodeBle.Bluetooth;
  destroy(): void;
}

export interface BleWearableSourceOptions {
  /** BlueZ adapter name, `hci0` by default; the source id is `ble:<adapter>`. */
  readonly adapter?: string;
  readonly pairings: BlePairings;
  readonly clock: Clock;
  readonly log: Logger;
  /** Simultaneous connections the radio holds; 4 by default. */
  readonly maxConnections?: number;
  readonly reconnect?: Partial<ReconnectPolicy>;
  readonly random?: () => number;
  /** How long one discovery for a device BlueZ does not know lasts (real time); 10 s. */
  readonly discoveryTimeoutMs?: number;
  /** Period of reads of polled characteristics, and the spacing of a device's turns beyond the cap; 60 s. */
  readonly pollIntervalMs?: number;
  /** Deadline of one D-Bus operation (connect, GATT resolution, read, subscribe), real time; 10 s. */
  readonly operationTimeoutMs?: number;
  /** In a turn (beyond the cap), how long to wait for a first notification of notify-only characteristics (real time); 3 s. */
  readonly turnWindowMs?: number;
  /** Opens the D-Bus connection when `samples()` starts; node-ble's `createBluetooth` by default. */
  readonly bluetooth?: () => BluetoothSession;
}

export type PairingState = 'connecting' | 'receiving' | 'error' | 'waiting';

/** Per device, for the twin's reported properties. */
export interface BleDeviceState {
  pairing: PairingState;
  reason?: string;
  rssi?: number;
  /** Last battery level, %. */
  battery?: number;
  decodeErrors: number;
  /** Successful connections after the device had been connected before. */
  reconnects: number;
  /** Wall-clock ms of the last sample. */
  lastSeenMs?: number;
  /** The last measurement (battery aside), so a pairing page can show a value, not just "receiving". */
  lastReading?: { readonly kind: string; readonly value: number; readonly unit: string };
  /** Served in turn (connect, read once, disconnect) because of the connection cap. */
  servedInTurn: boolean;
  /** Failed attempts (or losses) in a row; drives the backoff. */
  failures: number;
  /** The backoff delay waited before the next attempt, when one is pending. */
  retryInMs?: number;
}

export interface BleTotals {
  paired: number;
  connected: number;
  maxConnections: number;
  /** Devices that hold a connection while connected (the cap, less one slot for turns when over it). */
  persistentSlots: number;
  /** Paired devices that cannot hold a connection and are served in turn. */
  shortfall: number;
  decodeErrors: number;
  reconnects: number;
  samples: number;
  discoveries: number;
}

interface Link {
  readonly device: nodeBle.Device;
  readonly stop: AbortController;
  readonly readable: { readonly spec: CharacteristicProfile; readonly chr: nodeBle.GattCharacteristic }[];
  readonly polled: { readonly spec: CharacteristicProfile; readonly chr: nodeBle.GattCharacteristic }[];
  /** Characteristics whose values come by notification (subscribed at once when persistent). */
  readonly notifying: { readonly spec: CharacteristicProfile; readonly chr: nodeBle.GattCharacteristic }[];
  readonly subscribed: nodeBle.GattCharacteristic[];
  readonly persistent: boolean;
  /** Set up completely; a loss before that fails the attempt instead. */
  ready: boolean;
  poll: Promise<void> | undefined;
}

interface Entry {
  readonly address: string;
  readonly pairing: BlePairing;
  readonly order: number;
  readonly state: BleDeviceState;
  /** Monotonic ms when the next connect (or turn) is due; Infinity while connected. */
  dueAt: number;
  link: Link | undefined;
  everConnected: boolean;
  removed: boolean;
}

const ADDRESS = /^[0-9A-F]{2}(?::[0-9A-F]{2}){5}$/;

function checkPairings(pairings: BlePairings): void {
  for (const [address, p] of Object.entries(pairings)) {
    if (!ADDRESS.test(address)) throw new FieldlinkError('CONFIG_INVALID', { message: `pairing key must be an upper-case Bluetooth address, got ${address}` });
    if (!isProfileName(p.profile)) throw new FieldlinkError('CONFIG_INVALID', { message: `unknown BLE profile ${String(p.profile)} for ${address}` });
  }
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function abortError(): Error {
  const e = new Error('aborted');
  e.name = 'AbortError';
  return e;
}

/** Removes node-ble's PropertiesChanged listeners of a Device or characteristic (its BusHelper). */
function detach(obj: object): void {
  const helper = (obj as { helper?: { removeListeners?: () => void } }).helper;
  try {
    helper?.removeListeners?.();
  } catch {
    // Best effort: the object may be gone from the bus already.
  }
}

/**
 * BLE wearables on one BlueZ adapter, through node-ble. One scheduler serialises discovery and
 * connects; only paired devices are connected, at most `maxConnections` at once. When more
 * devices are paired than that, `maxConnections - 1` hold connections and the last slot serves
 * the others in turn (connect, read every characteristic once, disconnect). Losses and failed
 * attempts are retried with exponential backoff and jitter on the injected clock; a device that
 * BlueZ no longer knows is discovered again.
 *
 * Timing: scheduling (backoff, poll periods, turn spacing) is on the injected clock; deadlines of
 * D-Bus operations (discovery, connect, GATT) are real time, as they bound I/O.
 */
export class BleWearableSource implements SensorSource {
  readonly id: string;
  readonly #opts: BleWearableSourceOptions;
  readonly #adapterName: string;
  readonly #policy: ReconnectPolicy;
  readonly #random: () => number;
  readonly #log: Logger;
  readonly #maxConnections: number;
  readonly #pollIntervalMs: number;
  readonly #discoveryTimeoutMs: number;
  readonly #opTimeoutMs: number;
  readonly #turnWindowMs: number;
  readonly #entries = new Map<string, Entry>();
  readonly #totals = { decodeErrors: 0, reconnects: 0, samples: 0, discoveries: 0 };
  #order = 0;
  #running = false;
  #channel: SampleChannel | undefined;
  #adapter: nodeBle.Adapter | undefined;
  #stop: AbortSignal | undefined;
  #kick: AbortController = new AbortController();
  #discoveringByUs = false;
  #session: BluetoothSession | undefined;

  constructor(opts: BleWearableSourceOptions) {
    checkPairings(opts.pairings);
    this.#opts = opts;
    this.#adapterName = opts.adapter ?? 'hci0';
    this.id = `ble:${this.#adapterName}`;
    this.#policy = { ...defaultReconnectPolicy, ...opts.reconnect };
    this.#random = opts.random ?? Math.random;
    this.#maxConnections = Math.max(1, Math.floor(opts.maxConnections ?? 4));
    this.#pollIntervalMs = opts.pollIntervalMs ?? 60_000;
    this.#discoveryTimeoutMs = opts.discoveryTimeoutMs ?? 10_000;
    this.#opTimeoutMs = opts.operationTimeoutMs ?? 10_000;
    this.#turnWindowMs = opts.turnWindowMs ?? 3000;
    this.#log = opts.log.child({ component: 'ble-source', source: this.id });
    for (const [address, pairing] of Object.entries(opts.pairings)) this.#add(address, pairing);
  }

  /** Per device (by address): pairing state, RSSI, battery and counters. */
  state(): Record<string, BleDeviceState> {
    const out: Record<string, BleDeviceState> = {};
    for (const e of this.#entries.values()) out[e.address] = { ...e.state };
    return out;
  }

  totals(): BleTotals {
    const paired = this.#entries.size;
    const persistentSlots = this.#persistentSlots();
    return {
      paired,
      connected: [...this.#entries.values()].filter((e) => e.link !== undefined).length,
      maxConnections: this.#maxConnections,
      persistentSlots,
      shortfall: Math.max(0, paired - persistentSlots),
      ...this.#totals,
    };
  }

  /** Applies a new pairing set live: new devices are connected, removed ones disconnected. */
  setPairings(pairings: BlePairings): void {
    checkPairings(pairings);
    for (const e of [...this.#entries.values()]) {
      const next = pairings[e.address];
      if (next !== undefined && next.profile === e.pairing.profile) continue;
      this.#entries.delete(e.address);
      e.removed = true;
      if (e.link !== undefined) void this.#close(e, 'unpaired');
    }
    for (const [address, pairing] of Object.entries(pairings)) if (!this.#entries.has(address)) this.#add(address, pairing);
    // More devices than the cap now: free the turn slot by releasing the latest persistent link.
    const persistent = [...this.#entries.values()].filter((e) => e.link?.persistent === true);
    for (const e of persistent.slice(this.#persistentSlots()).reverse()) {
      void this.#close(e, 'connection cap').then(() => {
        e.dueAt = this.#opts.clock.monotonicMs();
        this.#wake();
      });
    }
    this.#wake();
  }

  /** Reads every readable characteristic of the connected devices once. */
  async measureNow(): Promise<void> {
    const reads: Promise<void>[] = [];
    for (const e of this.#entries.values()) {
      const link = e.link;
      if (link === undefined) continue;
      for (const r of link.readable) reads.push(this.#read(e, r.spec, r.chr, link.stop.signal).catch(() => undefined));
    }
    await Promise.all(reads);
  }

  async *samples(signal: AbortSignal): AsyncGenerator<Sample> {
    if (this.#running) throw new Error('samples() is already running for this source');
    this.#running = true;
    try {
      yield* produceSamples(signal, async (stop, channel) => {
        this.#channel = channel;
        this.#stop = stop;
        // Stopping ends the stream at once; disconnecting the devices follows in `finally`.
        stop.addEventListener('abort', () => channel.end(), { once: true });
        try {
          await this.#run(stop);
        } catch (e) {
          this.#log.error({ err: e }, 'BLE scheduler failed');
        }
      });
    } finally {
      await this.#shutdown();
      this.#closeSession();
      this.#adapter = undefined;
      this.#channel = undefined;
      this.#running = false;
    }
  }

  // ---- scheduling ----

  #add(address: string, pairing: BlePairing): void {
    this.#entries.set(address, {
      address,
      pairing,
      order: this.#order++,
      state: { pairing: 'waiting', decodeErrors: 0, reconnects: 0, servedInTurn: false, failures: 0 },
      dueAt: this.#opts.clock.monotonicMs(),
      link: undefined,
      everConnected: false,
      removed: false,
    });
  }

  #persistentSlots(): number {
    return this.#entries.size <= this.#maxConnections ? this.#maxConnections : this.#maxConnections - 1;
  }

  #wake(): void {
    this.#kick.abort();
  }

  /** A fresh D-Bus session; bus errors (no daemon, daemon gone) are logged, never thrown at the process. */
  #openSession(): BluetoothSession {
    this.#closeSession();
    const session = (this.#opts.bluetooth ?? nodeBle.createBluetooth)();
    const bus = (session.bluetooth as unknown as { dbus?: { on?: (event: 'error', fn: (e: unknown) => void) => void } }).dbus;
    bus?.on?.('error', (err: unknown) => this.#log.warn({ err }, 'D-Bus connection error'));
    this.#session = session;
    return session;
  }

  #closeSession(): void {
    const session = this.#session;
    this.#session = undefined;
    try {
      session?.destroy();
    } catch (err) {
      this.#log.debug({ err }, 'closing the D-Bus session failed');
    }
  }

  async #run(signal: AbortSignal): Promise<void> {
    for (let attempt = 1; !signal.aborted; attempt++) {
      try {
        const session = this.#openSession();
        this.#adapter = await this.#op(session.bluetooth.getAdapter(this.#adapterName), 'getAdapter', signal);
        break;
      } catch (e) {
        if (signal.aborted) return;
        const delayMs = reconnectDelayMs(this.#policy, attempt, this.#random);
        this.#log.warn({ err: e, adapter: this.#adapterName, delayMs }, 'BLE adapter not available; retrying');
        for (const entry of this.#entries.values()) {
          entry.state.pairing = 'error';
          entry.state.reason = `adapter ${this.#adapterName} unavailable: ${messageOf(e)}`;
        }
        if (!(await this.#sleep(delayMs, signal))) return;
      }
    }
    while (!signal.aborted) {
      const now = this.#opts.clock.monotonicMs();
      const due = [...this.#entries.values()]
        .filter((e) => e.link === undefined && e.dueAt <= now)
        .sort((a, b) => a.dueAt - b.dueAt || a.order - b.order)[0];
      if (due !== undefined) {
        const persistentNow = [...this.#entries.values()].filter((e) => e.link?.persistent === true).length;
        const persistent = persistentNow < this.#persistentSlots();
        await this.#attempt(due, persistent, signal);
        continue;
      }
      let next = Number.POSITIVE_INFINITY;
      for (const e of this.#entries.values()) if (e.link === undefined) next = Math.min(next, e.dueAt);
      const kick = new AbortController();
      this.#kick = kick;
      const onStop = (): void => kick.abort();
      signal.addEventListener('abort', onStop, { once: true });
      try {
        await this.#opts.clock.sleep(Number.isFinite(next) ? Math.max(0, next - now) : Number.POSITIVE_INFINITY, kick.signal);
      } catch {
        // Woken early: a pairing change, a lost link, or the stop signal.
      } finally {
        signal.removeEventListener('abort', onStop);
      }
    }
  }

  /** One connect (to hold, or for a turn); on failure the entry is rescheduled with backoff. */
  async #attempt(e: Entry, persistent: boolean, signal: AbortSignal): Promise<void> {
    e.state.pairing = 'connecting';
    e.state.servedInTurn = !persistent;
    delete e.state.retryInMs;
    try {
      await this.#connect(e, persistent, signal);
      if (e.removed) {
        // Unpaired while connecting.
        await this.#close(e, 'unpaired');
        return;
      }
      if (!persistent) {
        await this.#turn(e, signal);
        e.state.failures = 0;
        e.dueAt = this.#opts.clock.monotonicMs() + this.#pollIntervalMs;
        e.state.pairing = 'waiting';
        e.state.reason = 'connection cap: served in turn';
      }
    } catch (err) {
      if (e.link !== undefined) await this.#close(e, signal.aborted ? 'stopping' : 'failed');
      if (signal.aborted || e.removed) return;
      this.#fail(e, messageOf(err));
    }
  }

  #fail(e: Entry, reason: string): void {
    e.state.failures++;
    const delay = reconnectDelayMs(this.#policy, e.state.failures, this.#random);
    e.state.pairing = 'error';
    e.state.reason = reason;
    e.state.retryInMs = delay;
    e.dueAt = this.#opts.clock.monotonicMs() + delay;
    this.#log.warn({ address: e.address, reason, attempt: e.state.failures, delayMs: delay }, 'BLE device unavailable; retrying');
  }

  async #connect(e: Entry, persistent: boolean, signal: AbortSignal): Promise<void> {
    const device = await this.#find(e, signal);
    try {
      const rssi = Number(await this.#op(device.getRSSI(), 'RSSI', signal));
      if (Number.isFinite(rssi)) e.state.rssi = rssi;
    } catch {
      // RSSI is absent when the device was not heard by the last discovery.
    }
    try {
      await this.#op(device.connect(), 'connect', signal);
    } catch (err) {
      // A Connect still pending (timed out, or we are stopping): BlueZ cancels it on Disconnect.
      await this.#op(device.disconnect(), 'cancel connect').catch(() => undefined);
      detach(device);
      throw err;
    }
    const stop = new AbortController();
    const link: Link = { device, stop, readable: [], polled: [], notifying: [], subscribed: [], persistent, ready: false, poll: undefined };
    e.link = link;
    e.dueAt = Number.POSITIVE_INFINITY;
    device.on('disconnect', () => this.#lost(e, link, 'link lost'));
    const gatt = await this.#op(device.gatt(), 'gatt', signal);
    const profile = PROFILES[e.pairing.profile];
    for (const spec of profile.characteristics) {
      let chr: nodeBle.GattCharacteristic;
      try {
        const service = await this.#op(gatt.getPrimaryService(spec.service), 'service', signal);
        chr = await this.#op(service.getCharacteristic(spec.characteristic), 'characteristic', signal);
      } catch (err) {
        if (signal.aborted || stop.signal.aborted) throw err;
        this.#log.warn({ address: e.address, characteristic: spec.characteristic, err }, 'characteristic missing; skipped');
        continue;
      }
      const flags = await this.#op(chr.getFlags(), 'flags', signal);
      const canRead = flags.includes('read');
      const canNotify = flags.includes('notify') || flags.includes('indicate');
      if (canRead) link.readable.push({ spec, chr });
      if (canNotify && (spec.access === 'subscribe' || !canRead)) {
        link.notifying.push({ spec, chr });
        chr.on('valuechanged', (b: Buffer) => this.#handle(e, spec, b));
        if (persistent) {
          link.subscribed.push(chr);
          await this.#op(chr.startNotifications(), 'startNotifications', signal);
        }
      } else if (canRead) {
        link.polled.push({ spec, chr });
      }
    }
    if (stop.signal.aborted) throw new Error('link lost while setting up');
    if (!persistent) return;
    // Polled characteristics: read now, then every pollIntervalMs while the link holds.
    for (const r of link.polled) await this.#read(e, r.spec, r.chr, signal);
    if (stop.signal.aborted) throw new Error('link lost while setting up');
    link.ready = true;
    if (e.everConnected) {
      e.state.reconnects++;
      this.#totals.reconnects++;
    }
    e.everConnected = true;
    e.state.pairing = 'receiving';
    delete e.state.reason;
    this.#log.info({ address: e.address, profile: e.pairing.profile }, 'BLE device connected');
    if (link.polled.length > 0) link.poll = this.#pollLoop(e, link).catch((err: unknown) => this.#log.error({ err, address: e.address }, 'poll loop failed'));
  }

  /** The Device object, discovering it first when BlueZ does not know it (any more). */
  async #find(e: Entry, signal: AbortSignal): Promise<nodeBle.Device> {
    const adapter = this.#adapter;
    if (adapter === undefined) throw new Error('no adapter');
    try {
      return await this.#op(adapter.getDevice(e.address), 'getDevice', signal);
    } catch (err) {
      if (signal.aborted || messageOf(err) !== 'Device not found') throw err;
    }
    this.#totals.discoveries++;
    if (!(await this.#op(adapter.isDiscovering(), 'isDiscovering', signal))) {
      await this.#op(adapter.startDiscovery(), 'startDiscovery', signal);
      this.#discoveringByUs = true;
    }
    try {
      const deadline = Date.now() + this.#discoveryTimeoutMs;
      for (;;) {
        try {
          return await this.#op(adapter.getDevice(e.address), 'getDevice', signal);
        } catch (err) {
          if (signal.aborted || messageOf(err) !== 'Device not found') throw err;
        }
        if (Date.now() >= deadline) throw new Error(`not found by discovery within ${this.#discoveryTimeoutMs} ms`);
        await this.#realDelay(25, signal);
        if (signal.aborted) throw abortError();
      }
    } finally {
      await this.#stopDiscovery();
    }
  }

  async #stopDiscovery(): Promise<void> {
    if (!this.#discoveringByUs || this.#adapter === undefined) return;
    this.#discoveringByUs = false;
    try {
      await this.#op(this.#adapter.stopDiscovery(), 'stopDiscovery');
    } catch (err) {
      this.#log.debug({ err }, 'stopDiscovery failed');
    }
  }

  /**
   * A turn beyond the cap: read every readable characteristic once, wait (up to turnWindowMs)
   * for one value of each notify-only one, disconnect.
   */
  async #turn(e: Entry, signal: AbortSignal): Promise<void> {
    const link = e.link;
    if (link === undefined) throw new Error('link lost');
    e.state.pairing = 'receiving';
    try {
      for (const r of link.readable) await this.#read(e, r.spec, r.chr, signal);
      const readable = new Set(link.readable.map((r) => r.chr));
      const waits = link.notifying.filter((n) => !readable.has(n.chr)).map((n) => this.#firstNotification(link, n.chr, signal));
      await Promise.all(waits);
      if (link.stop.signal.aborted) throw new Error('link lost during the turn');
      if (e.everConnected) {
        e.state.reconnects++;
        this.#totals.reconnects++;
      }
      e.everConnected = true;
    } finally {
      await this.#close(e, 'turn over');
    }
  }

  /** Subscribes to `chr` until one value arrived (handled by the listener set in #connect) or turnWindowMs passed. */
  async #firstNotification(link: Link, chr: nodeBle.GattCharacteristic, signal: AbortSignal): Promise<void> {
    let onValue: (() => void) | undefined;
    const got = new Promise<void>((resolve) => {
      onValue = resolve;
      chr.once('valuechanged', resolve);
    });
    link.subscribed.push(chr);
    try {
      await this.#op(chr.startNotifications(), 'startNotifications', signal);
      await Promise.race([got, this.#realDelay(this.#turnWindowMs, link.stop.signal)]);
    } finally {
      if (onValue !== undefined) chr.off('valuechanged', onValue);
    }
  }

  async #pollLoop(e: Entry, link: Link): Promise<void> {
    const signal = link.stop.signal;
    while (!signal.aborted) {
      if (!(await this.#sleep(this.#pollIntervalMs, signal))) return;
      for (const r of link.polled) {
        try {
          await this.#read(e, r.spec, r.chr, signal);
        } catch (err) {
          if (signal.aborted) return;
          this.#log.warn({ address: e.address, err }, 'periodic read failed');
        }
      }
    }
  }

  async #read(e: Entry, spec: CharacteristicProfile, chr: nodeBle.GattCharacteristic, signal: AbortSignal): Promise<void> {
    const value = await this.#op(chr.readValue(), 'readValue', signal);
    this.#handle(e, spec, value);
  }

  #handle(e: Entry, spec: CharacteristicProfile, bytes: Buffer): void {
    if (e.removed || this.#stop?.aborted === true) return;
    const outcome = DECODERS[spec.decoder](bytes);
    if (!outcome.ok) {
      e.state.decodeErrors++;
      this.#totals.decodeErrors++;
      this.#log.debug({ address: e.address, characteristic: spec.characteristic, error: outcome.error }, 'undecodable value skipped');
      return;
    }
    const ts = this.#opts.clock.now();
    if (outcome.samples.length > 0) e.state.lastSeenMs = ts;
    // Data flows: the link is healthy, so the next loss starts the backoff from the beginning.
    e.state.failures = 0;
    // A decoder puts the characteristic's main measurement first (heart rate before its RR
    // intervals): that is the value worth showing someone pairing the device.
    let main = true;
    for (const f of outcome.samples) {
      if (f.kind === 'battery') e.state.battery = f.value;
      else if (main) {
        e.state.lastReading = { kind: f.kind, value: f.value, unit: f.unit };
        main = false;
      }
      this.#totals.samples++;
      this.#channel?.push({ source: `ble:${e.address}/${f.kind}`, kind: f.kind, value: f.value, unit: f.unit, ts, flags: {} });
    }
  }

  /** The link dropped (Connected went false): clean up and schedule a reconnect. */
  #lost(e: Entry, link: Link, reason: string): void {
    if (e.link !== link || link.stop.signal.aborted) return;
    this.#release(e, link);
    // Before set-up completes, the failing set-up reports the loss (#attempt).
    if (e.removed || this.#stop?.aborted === true || !link.persistent || !link.ready) return;
    this.#log.warn({ address: e.address }, 'BLE link lost');
    this.#fail(e, reason);
    this.#wake();
  }

  #release(e: Entry, link: Link): void {
    link.stop.abort();
    if (e.link === link) e.link = undefined;
    for (const c of link.subscribed) {
      c.removeAllListeners('valuechanged');
      detach(c);
    }
    for (const r of [...link.readable, ...link.polled]) r.chr.removeAllListeners('valuechanged');
  }

  /** Disconnects on purpose (turn over, unpaired, shutdown). */
  async #close(e: Entry, why: string): Promise<void> {
    const link = e.link;
    if (link === undefined) return;
    this.#release(e, link);
    link.device.removeAllListeners('disconnect');
    try {
      await this.#op(link.device.disconnect(), 'disconnect');
    } catch (err) {
      this.#log.debug({ address: e.address, err }, 'disconnect failed');
    }
    detach(link.device);
    await link.poll;
    this.#log.debug({ address: e.address, why }, 'BLE device disconnected');
  }

  async #shutdown(): Promise<void> {
    for (const e of this.#entries.values()) {
      await this.#close(e, 'stopping');
      if (e.state.pairing !== 'error') e.state.pairing = 'waiting';
      e.dueAt = this.#opts.clock.monotonicMs();
    }
    await this.#stopDiscovery();
  }

  // ---- helpers ----

  /** `work` within the operation deadline (real time), or rejected when `signal` aborts. */
  async #op<T>(work: Promise<T>, what: string, signal?: AbortSignal): Promise<T> {
    work.catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const fail = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new FieldlinkError('TIMEOUT', { message: `${what}: no answer within ${this.#opTimeoutMs} ms` })), this.#opTimeoutMs);
      if (signal !== undefined) {
        onAbort = () => reject(abortError());
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
      }
    });
    try {
      return await Promise.race([work, fail]);
    } finally {
      clearTimeout(timer);
      if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
    }
  }

  /** A real-time wait (I/O polling), cut short by `signal`. */
  #realDelay(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /** false if aborted while sleeping on the injected clock. */
  #sleep(ms: number, signal: AbortSignal): Promise<boolean> {
    return sleepUnlessAborted(this.#opts.clock, ms, signal);
  }
}
