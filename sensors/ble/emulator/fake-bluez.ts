import { closeSync, openSync, writeSync } from 'node:fs';
import dbus from 'dbus-next';
import { systemClock, type Clock } from '../../../common/clock.js';
import { FieldlinkError } from '../../../common/errors.js';
import { createLogger, type Logger } from '../../../common/log.js';
import type { ReadingKind } from '../../contract/reading.js';
import {
  AdapterInterface,
  AgentManagerInterface,
  bluezError,
  DeviceInterface,
  GattCharacteristicInterface,
  GattServiceInterface,
  interfaceName,
  ObjectManagerInterface,
  propertiesOf,
} from './interfaces.js';
import { seedFromAddress, serviceModel, type CharacteristicModel, type CharacteristicSample, type WearableService } from './wearable-model.js';
import { withinBusDeadline } from '../../dbus/bus-deadline.js';

export const BLUEZ_NAME = 'org.bluez';
export const BLUEZ_ROOT = '/org/bluez';

export interface FakeBluezOptions {
  /** Bus to connect to, e.g. from `startPrivateBus()`. */
  readonly address: string;
  /** Adapter names, each served at /org/bluez/<name>; `['hci0']` by default. */
  readonly adapters?: readonly string[];
  readonly log?: Logger;
  /** For the log's timestamps and all emulator timing (discovery delay, notification rate). */
  readonly clock?: Clock;
  /** How long after StartDiscovery (or a wearable appearing) a device object is exported; 50 ms. */
  readonly discoveryDelayMs?: number;
  /** File to append the emitted-readings log to, as JSON lines. */
  readonly readingLog?: string;
  /** How many emitted readings `emitted` keeps in memory (oldest dropped first); 10000. */
  readonly keepEmitted?: number;
}

export interface WearableOptions {
  /** Bluetooth address, `AA:BB:CC:DD:EE:01`. */
  readonly address: string;
  readonly name?: string;
  readonly services: readonly WearableService[];
  /** Adapter that sees it; the first one by default. */
  readonly adapter?: string;
  /** Notifications per second on every notifying characteristic; 10 by default. */
  readonly rateHz?: number;
  /** Seed of the value drift; derived from the address by default. */
  readonly seed?: number;
  readonly rssi?: number;
  /** A bonded device: its GATT objects stay exported across disconnections, as in BlueZ. */
  readonly paired?: boolean;
}

/** One value that left an emulated wearable, as a JSON line of the emitted-readings log. */
export interface EmittedBleReading {
  readonly ts: number;
  /** `ble:<address>/<kind>`. */
  readonly source: string;
  /** Per wearable, counts payloads (one payload can carry several values, e.g. heart rate and RR). */
  readonly deviceSeq: number;
  readonly kind: ReadingKind;
  readonly value: number;
  readonly unit: string;
  /** How it left: a notification/indication (PropertiesChanged on Value) or a ReadValue reply. */
  readonly via: 'notify' | 'read';
  /** Characteristic UUID (128-bit). */
  readonly characteristic: string;
  /** The bytes actually sent, in hex. */
  readonly payload: string;
  /** Set when the payload was deliberately damaged: a driver must not accept it. */
  readonly fault?: 'truncated';
}

/** A method call the fake received (any interface, including Properties and Introspectable). */
export interface BluezCall {
  readonly path: string;
  readonly interface: string;
  readonly member: string;
  /** For Properties.Get/Set/GetAll: interface and property name. */
  readonly detail?: string;
}

/** A wearable in the emulator, with its fault switches. */
export interface EmulatedWearable {
  readonly address: string;
  readonly name: string;
  readonly adapter: string;
  /** Device object path, `/org/bluez/hci0/dev_AA_BB_CC_DD_EE_01`. */
  readonly path: string;
  readonly connected: boolean;
  /** In range (not vanished). */
  readonly present: boolean;
  /** Its Device1 object is on the bus (it has been discovered and not removed). */
  readonly exported: boolean;
  /** Readings this wearable emitted (within the fake's `keepEmitted`). */
  readonly emitted: readonly EmittedBleReading[];
  /** Values clients wrote with WriteValue, oldest first. */
  readonly writes: readonly { readonly characteristic: string; readonly value: Buffer }[];
  /** Link loss: Connected false (PropertiesChanged), notifications stop. It stays discoverable. */
  disconnect(): void;
  /** Out of range: the link drops and the device object is removed (InterfacesRemoved). */
  vanish(): void;
  /** Back in range: exported again once the adapter discovers (now, if it is discovering). */
  reappear(): void;
  /** The next `count` notifications carry a payload cut to half its length (rounded down). */
  truncateNext(count?: number): void;
  /** Every Connect waits `ms` before answering (0 restores immediate connects). */
  slowConnect(ms: number): void;
  /** Every notifying characteristic also notifies at `hz` for `ms`; resolves when it is over. */
  storm(hz: number, ms: number): Promise<void>;
  /** Notification rate of the characteristics. */
  setRateHz(hz: number): void;
}

interface EmulatedCharacteristic {
  readonly model: CharacteristicModel;
  readonly path: string;
  readonly iface: GattCharacteristicInterface;
  /** Bus clients (unique names) that called StartNotify; Notifying while any is left. */
  readonly notifySessions: Set<string>;
  loop: AbortController | undefined;
}

interface EmulatedService {
  readonly path: string;
  readonly iface: GattServiceInterface;
  readonly characteristics: readonly EmulatedCharacteristic[];
}

interface EmulatedAdapter {
  readonly name: string;
  readonly path: string;
  readonly iface: AdapterInterface;
  /** Bus clients (unique names) that called StartDiscovery; Discovering while any is left. */
  readonly discoverySessions: Set<string>;
  /** Aborted when discovery ends: cancels devices still waiting to be "found". */
  discovery: AbortController | undefined;
  filter: Record<string, unknown>;
}

/** What a Wearable needs from its FakeBluez (whose methods for it stay private). */
interface WearableHooks {
  connect(w: Wearable): Promise<void>;
  dropLink(w: Wearable, reason: LinkDropReason): void;
  pair(w: Wearable): void;
  vanish(w: Wearable): void;
  reappear(w: Wearable): void;
  storm(w: Wearable, hz: number, ms: number): Promise<void>;
  readValue(w: Wearable, c: EmulatedCharacteristic, options: Record<string, dbus.Variant>): Buffer;
  writeValue(w: Wearable, c: EmulatedCharacteristic, value: Buffer): void;
  startNotify(w: Wearable, c: EmulatedCharacteristic): void;
  stopNotify(w: Wearable, c: EmulatedCharacteristic): void;
  emitted(): readonly EmittedBleReading[];
}

type LinkDropReason = 'client' | 'link-loss' | 'removed' | 'vanished';

const ADDRESS = /^[0-9A-F]{2}(?::[0-9A-F]{2}){5}$/;

const STANDARD_INTERFACES = ['org.freedesktop.DBus.Introspectable', 'org.freedesktop.DBus.Properties'];

class Wearable implements EmulatedWearable {
  readonly address: string;
  readonly name: string;
  readonly adapter: string;
  readonly path: string;
  readonly device: DeviceInterface;
  readonly services: EmulatedService[] = [];
  readonly writes: { characteristic: string; value: Buffer }[] = [];
  present = true;
  exported = false;
  gattExported = false;
  connecting = false;
  connectDelayMs = 0;
  intervalMs: number;
  truncatePending = 0;
  deviceSeq = 0;

  constructor(
    private readonly fake: WearableHooks,
    opts: WearableOptions,
    adapter: EmulatedAdapter,
  ) {
    this.address = opts.address.toUpperCase();
    this.name = opts.name ?? `Fieldlink Wearable ${this.address.slice(-5)}`;
    this.adapter = adapter.name;
    this.path = `${adapter.path}/dev_${this.address.replace(/:/g, '_')}`;
    this.intervalMs = rateToInterval(opts.rateHz ?? 10);
    this.device = new DeviceInterface({
      connect: () => fake.connect(this),
      disconnect: () => fake.dropLink(this, 'client'),
      pair: () => fake.pair(this),
      cancelPair: () => undefined,
    });
    const d = this.device;
    d.Address = this.address;
    d.Name = this.name;
    d.Alias = this.name;
    d.Adapter = adapter.path;
    d.RSSI = opts.rssi ?? -60;
    d.Paired = opts.paired ?? false;
    d.Trusted = opts.paired ?? false;
    const seed = opts.seed ?? seedFromAddress(this.address);
    // BlueZ numbers GATT objects by attribute handle: service, then per characteristic its
    // declaration (the object's handle), value and CCC descriptor.
    let handle = 0x000c;
    for (const service of opts.services) {
      const model = serviceModel(service, seed);
      const servicePath = `${this.path}/service${hex4(handle)}`;
      const serviceIface = new GattServiceInterface();
      serviceIface.UUID = model.uuid;
      serviceIface.Device = this.path;
      serviceIface.Handle = handle;
      handle++;
      const characteristics = model.characteristics.map((m): EmulatedCharacteristic => {
        const chrPath = `${servicePath}/char${hex4(handle)}`;
        const chr: EmulatedCharacteristic = {
          model: m,
          path: chrPath,
          loop: undefined,
          notifySessions: new Set(),
          iface: new GattCharacteristicInterface({
            readValue: (options) => fake.readValue(this, chr, options),
            writeValue: (value) => fake.writeValue(this, chr, value),
            startNotify: () => fake.startNotify(this, chr),
            stopNotify: () => fake.stopNotify(this, chr),
          }),
        };
        chr.iface.UUID = m.uuid;
        chr.iface.Service = servicePath;
        chr.iface.Flags = [...m.flags];
        chr.iface.Handle = handle;
        handle += 3;
        return chr;
      });
      this.services.push({ path: servicePath, iface: serviceIface, characteristics });
    }
    d.UUIDs = this.services.map((s) => s.iface.UUID);
  }

  get connected(): boolean {
    return this.device.Connected;
  }

  get emitted(): readonly EmittedBleReading[] {
    return this.fake.emitted().filter((e) => e.source.startsWith(`ble:${this.address}/`));
  }

  *characteristics(): Generator<EmulatedCharacteristic> {
    for (const s of this.services) yield* s.characteristics;
  }

  disconnect(): void {
    this.fake.dropLink(this, 'link-loss');
  }

  vanish(): void {
    this.fake.vanish(this);
  }

  reappear(): void {
    this.fake.reappear(this);
  }

  truncateNext(count = 1): void {
    if (!Number.isInteger(count) || count < 0) throw new RangeError(`count must be a non-negative integer, got ${count}`);
    this.truncatePending += count;
  }

  slowConnect(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`delay must be non-negative, got ${ms}`);
    this.connectDelayMs = ms;
  }

  storm(hz: number, ms: number): Promise<void> {
    return this.fake.storm(this, hz, ms);
  }

  setRateHz(hz: number): void {
    this.intervalMs = rateToInterval(hz);
  }
}

function rateToInterval(hz: number): number {
  if (!(hz > 0 && hz <= 1000)) throw new RangeError(`rate must be above 0 and at most 1000 Hz, got ${hz}`);
  return 1000 / hz;
}

const hex4 = (n: number): string => n.toString(16).padStart(4, '0');

/**
 * An emulated BlueZ (`org.bluez`) on a private bus, for node-ble and for tests: ObjectManager at
 * `/`, AgentManager1 at /org/bluez, Adapter1 per adapter, and wearables (Device1, GattService1,
 * GattCharacteristic1) that appear while the adapter discovers and stream SIG-encoded values.
 * sensors/ble/emulator/README.md lists the BlueZ behaviour it copies and what it leaves out.
 */
export class FakeBluez {
  readonly busAddress: string;
  readonly #bus: dbus.MessageBus;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #discoveryDelayMs: number;
  readonly #keepEmitted: number;
  readonly #objectManager: ObjectManagerInterface;
  readonly #adapters = new Map<string, EmulatedAdapter>();
  readonly #wearables = new Map<string, Wearable>();
  /** Exported objects and their org.bluez interfaces, in export order (parents first). */
  readonly #objects = new Map<string, dbus.interface.Interface[]>();
  readonly #emitted: EmittedBleReading[] = [];
  readonly #calls: BluezCall[] = [];
  readonly #stop = new AbortController();
  readonly #hooks: WearableHooks = {
    connect: (w) => this.#connect(w),
    dropLink: (w, reason) => this.#dropLink(w, reason),
    pair: (w) => this.#pair(w),
    vanish: (w) => this.#vanish(w),
    reappear: (w) => this.#reappear(w),
    storm: (w, hz, ms) => this.#storm(w, hz, ms),
    readValue: (w, c, options) => this.#readValue(w, c, options),
    writeValue: (w, c, value) => this.#writeValue(w, c, value),
    startNotify: (w, c) => this.#startNotify(w, c),
    stopNotify: (w, c) => this.#stopNotify(w, c),
    emitted: () => this.#emitted,
  };
  readonly #loops = new Set<Promise<void>>();
  #logFd: number | undefined;
  #busError: unknown;
  #disconnected = false;
  /** Unique bus name of the client whose method call is being handled (dispatch is synchronous). */
  #sender = '';
  #stopping: Promise<void> | undefined;

  private constructor(opts: FakeBluezOptions) {
    this.busAddress = opts.address;
    this.#clock = opts.clock ?? systemClock;
    this.#log = (opts.log ?? createLogger({ level: 'silent' })).child({ component: 'fake-bluez' });
    this.#discoveryDelayMs = opts.discoveryDelayMs ?? 50;
    this.#keepEmitted = opts.keepEmitted ?? 10_000;
    this.#bus = dbus.sessionBus({ busAddress: opts.address });
    this.#objectManager = new ObjectManagerInterface({ getManagedObjects: () => this.#managedObjects() });
  }

  static async start(opts: FakeBluezOptions): Promise<FakeBluez> {
    const names = opts.adapters ?? ['hci0'];
    if (names.length === 0 || names.some((n) => !/^[A-Za-z0-9_]+$/.test(n)) || new Set(names).size !== names.length) {
      throw new FieldlinkError('CONFIG_INVALID', { message: `adapter names must be distinct D-Bus path elements, got ${JSON.stringify(names)}` });
    }
    const fake = new FakeBluez(opts);
    const bus = fake.#bus;
    // Without a listener a bus 'error' (the daemon going away under us) would crash the process.
    bus.on('error', (e: unknown) => {
      fake.#busError ??= e;
    });
    // MessageBus does not report the daemon closing the socket; its connection object does.
    (bus as unknown as { _connection?: { on?(event: 'end', fn: () => void): void } })._connection?.on?.('end', () => {
      fake.#busError ??= new Error('the bus closed the connection');
    });
    // Sees every method call before dbus-next answers it (returns false: not handled here).
    bus.addMethodHandler((msg: dbus.Message) => {
      fake.#sender = msg.sender;
      fake.#recordCall(msg);
      return false;
    });
    try {
      // BlueZ ties discovery and notification sessions to the client that started them and
      // ends them when that client leaves the bus (a crashed gateway must not leave the adapter
      // discovering: node-ble's startDiscovery() refuses when Discovering is already true).
      const daemon = (await withinBusDeadline(5000, bus.getProxyObject('org.freedesktop.DBus', '/org/freedesktop/DBus'), bus)).getInterface('org.freedesktop.DBus');
      daemon.on('NameOwnerChanged', (name: string, _old: string, owner: string) => {
        if (owner === '' && name.startsWith(':')) fake.#clientGone(name);
      });
      if (opts.readingLog !== undefined) fake.#logFd = openSync(opts.readingLog, 'a');
      fake.#exportObject('/', [fake.#objectManager], { announce: false });
      fake.#exportObject(BLUEZ_ROOT, [new AgentManagerInterface(() => undefined)], { announce: false });
      names.forEach((name, i) => fake.#addAdapter(name, i));
      // Last, so that a client never sees the name without the whole tree.
      const reply = await withinBusDeadline(5000, bus.requestName(BLUEZ_NAME, dbus.NameFlag.DO_NOT_QUEUE), bus);
      if (reply !== dbus.RequestNameReply.PRIMARY_OWNER) {
        throw new FieldlinkError('EMULATOR_FAILED', { message: `${BLUEZ_NAME} is already owned on ${opts.address}` });
      }
    } catch (e) {
      bus.disconnect();
      if (fake.#logFd !== undefined) closeSync(fake.#logFd);
      if (e instanceof FieldlinkError) throw e;
      throw new FieldlinkError('EMULATOR_FAILED', { message: `fake BlueZ could not join the bus at ${opts.address}`, cause: e });
    }
    fake.#log.info({ adapters: names }, 'fake BlueZ ready');
    return fake;
  }

  /** Adapter names, in order. */
  get adapters(): readonly string[] {
    return [...this.#adapters.keys()];
  }

  /** Everything emitted so far (up to `keepEmitted`, oldest first). */
  get emitted(): readonly EmittedBleReading[] {
    return this.#emitted;
  }

  /** Every method call received, oldest first. */
  get calls(): readonly BluezCall[] {
    return this.#calls;
  }

  /** Whether `adapter` is discovering. */
  discovering(adapter = this.#firstAdapter().name): boolean {
    return this.#adapter(adapter).iface.Discovering;
  }

  addWearable(opts: WearableOptions): EmulatedWearable {
    if (this.#stop.signal.aborted) throw new FieldlinkError('EMULATOR_FAILED', { message: 'fake BlueZ is stopped' });
    const address = opts.address.toUpperCase();
    if (!ADDRESS.test(address)) throw new FieldlinkError('CONFIG_INVALID', { message: `not a Bluetooth address: ${opts.address}` });
    if (this.#wearables.has(address)) throw new FieldlinkError('CONFIG_INVALID', { message: `wearable ${address} already exists` });
    if (opts.services.length === 0 || new Set(opts.services).size !== opts.services.length) {
      throw new FieldlinkError('CONFIG_INVALID', { message: `wearable ${address} needs distinct services, got ${JSON.stringify(opts.services)}` });
    }
    const adapter = this.#adapter(opts.adapter ?? this.#firstAdapter().name);
    const w = new Wearable(this.#hooks, opts, adapter);
    this.#wearables.set(address, w);
    if (adapter.iface.Discovering) this.#scheduleDiscovery(adapter, w);
    return w;
  }

  wearable(address: string): EmulatedWearable | undefined {
    return this.#wearables.get(address.toUpperCase());
  }

  /** Releases org.bluez (clients see NameOwnerChanged), ends every timer and disconnects; safe to call twice. */
  stop(): Promise<void> {
    return (this.#stopping ??= this.#stopNow());
  }

  async #stopNow(): Promise<void> {
    this.#stop.abort();
    for (const w of this.#wearables.values()) for (const c of w.characteristics()) c.loop?.abort();
    for (const a of this.#adapters.values()) a.discovery?.abort();
    await Promise.allSettled(this.#loops);
    try {
      if (this.#busError === undefined) await withinBusDeadline(1000, this.#bus.releaseName(BLUEZ_NAME), this.#bus);
    } catch {
      // The bus is gone; nothing left to release.
    }
    for (const [path, ifaces] of [...this.#objects].reverse()) for (const iface of ifaces) this.#bus.unexport(path, iface);
    this.#objects.clear();
    this.#disconnected = true;
    this.#bus.disconnect();
    if (this.#logFd !== undefined) closeSync(this.#logFd);
    this.#logFd = undefined;
    this.#log.info('fake BlueZ stopped');
  }

  // ---- adapters and discovery ----

  #firstAdapter(): EmulatedAdapter {
    const first = this.#adapters.values().next();
    if (first.done === true) throw new Error('no adapters');
    return first.value;
  }

  #adapter(name: string): EmulatedAdapter {
    const a = this.#adapters.get(name);
    if (a === undefined) throw new FieldlinkError('CONFIG_INVALID', { message: `no adapter ${name} (have ${this.adapters.join(', ')})` });
    return a;
  }

  #addAdapter(name: string, index: number): void {
    const path = `${BLUEZ_ROOT}/${name}`;
    const adapter: EmulatedAdapter = {
      name,
      path,
      discoverySessions: new Set(),
      discovery: undefined,
      filter: {},
      iface: new AdapterInterface({
        setDiscoveryFilter: (filter) => {
          adapter.filter = Object.fromEntries(Object.entries(filter).map(([k, v]) => [k, v.value as unknown]));
        },
        startDiscovery: () => this.#startDiscovery(adapter),
        stopDiscovery: () => this.#stopDiscovery(adapter),
        removeDevice: (devicePath) => this.#removeDevice(adapter, devicePath),
      }),
    };
    adapter.iface.Address = `F0:0D:00:00:00:${index.toString(16).padStart(2, '0').toUpperCase()}`;
    adapter.iface.Name = `fieldlink-emulator-${name}`;
    adapter.iface.Alias = adapter.iface.Name;
    this.#adapters.set(name, adapter);
    this.#exportObject(path, [adapter.iface], { announce: false });
  }

  #startDiscovery(adapter: EmulatedAdapter): void {
    if (!adapter.iface.Powered) throw bluezError('NotReady', 'Resource Not Ready');
    if (adapter.discoverySessions.has(this.#sender)) throw bluezError('InProgress', 'Operation already in progress');
    adapter.discoverySessions.add(this.#sender);
    if (adapter.iface.Discovering) return;
    adapter.discovery = new AbortController();
    this.#setProperty(adapter.iface, 'Discovering', true);
    // BlueZ announces cached and newly found devices with InterfacesAdded once it "hears" them.
    for (const w of this.#wearables.values()) if (w.adapter === adapter.name) this.#scheduleDiscovery(adapter, w);
  }

  #stopDiscovery(adapter: EmulatedAdapter): void {
    if (!adapter.discoverySessions.delete(this.#sender)) throw bluezError('Failed', 'No discovery started');
    if (adapter.discoverySessions.size === 0) this.#endDiscovery(adapter);
  }

  #endDiscovery(adapter: EmulatedAdapter): void {
    adapter.discovery?.abort();
    adapter.discovery = undefined;
    // Devices already found stay (BlueZ keeps them until its TemporaryTimeout, 30 s; not emulated).
    if (adapter.iface.Discovering) this.#setProperty(adapter.iface, 'Discovering', false);
  }

  /** A client left the bus: end the discovery and notification sessions it held. */
  #clientGone(name: string): void {
    for (const adapter of this.#adapters.values()) {
      if (adapter.discoverySessions.delete(name) && adapter.discoverySessions.size === 0) this.#endDiscovery(adapter);
    }
    for (const w of this.#wearables.values()) {
      for (const c of w.characteristics()) {
        if (c.notifySessions.delete(name) && c.notifySessions.size === 0) this.#endNotify(c);
      }
    }
  }

  #scheduleDiscovery(adapter: EmulatedAdapter, w: Wearable): void {
    const signal = adapter.discovery?.signal;
    if (signal === undefined || !w.present || w.exported) return;
    this.#track(async () => {
      await this.#clock.sleep(this.#discoveryDelayMs, signal);
      if (adapter.iface.Discovering && w.present && !w.exported) this.#exportDevice(w);
    });
  }

  #exportDevice(w: Wearable): void {
    w.exported = true;
    this.#exportObject(w.path, [w.device]);
    this.#log.debug({ address: w.address }, 'device found');
  }

  #removeDevice(adapter: EmulatedAdapter, devicePath: string): void {
    const w = [...this.#wearables.values()].find((x) => x.path === devicePath && x.adapter === adapter.name);
    if (w === undefined || !w.exported) throw bluezError('DoesNotExist', 'Does Not Exist');
    this.#forget(w, 'removed');
    w.device.Paired = false;
    w.device.Trusted = false;
  }

  /** Drops the link and removes the device object with everything under it. */
  #forget(w: Wearable, reason: LinkDropReason): void {
    this.#dropLink(w, reason);
    this.#removeGatt(w);
    if (w.exported) this.#removeObject(w.path);
    w.exported = false;
  }

  // ---- devices (called by Wearable and the D-Bus interfaces) ----

  /** Device1.Connect. */
  async #connect(w: Wearable): Promise<void> {
    if (w.device.Connected) return;
    if (w.connecting) throw bluezError('InProgress', 'In Progress');
    w.connecting = true;
    try {
      if (w.connectDelayMs > 0) await this.#clock.sleep(w.connectDelayMs, this.#stop.signal);
    } catch {
      throw bluezError('Failed', 'Software caused connection abort');
    } finally {
      w.connecting = false;
    }
    if (!w.present || !w.exported) throw bluezError('Failed', 'le-connection-abort-by-local');
    this.#exportGatt(w);
    this.#setProperty(w.device, 'Connected', true);
    // Before the Connect reply: node-ble's gatt() reads ServicesResolved and only then subscribes
    // to its change, so a change landing between the two would hang it.
    this.#setProperty(w.device, 'ServicesResolved', true);
    this.#log.debug({ address: w.address }, 'connected');
  }

  /** Link gone, for any reason: notifications stop, then ServicesResolved and Connected go false. */
  #dropLink(w: Wearable, reason: LinkDropReason): void {
    if (!w.device.Connected) return;
    for (const c of w.characteristics()) this.#endNotify(c);
    this.#setProperty(w.device, 'ServicesResolved', false);
    this.#setProperty(w.device, 'Connected', false);
    // BlueZ clears the GATT database of a device that is not bonded when it disconnects.
    if (!w.device.Paired) this.#removeGatt(w);
    this.#log.debug({ address: w.address, reason }, 'disconnected');
  }

  #pair(w: Wearable): void {
    if (!w.device.Paired) this.#setProperty(w.device, 'Paired', true);
  }

  #vanish(w: Wearable): void {
    if (!w.present) return;
    w.present = false;
    this.#forget(w, 'vanished');
  }

  #reappear(w: Wearable): void {
    if (w.present || this.#stop.signal.aborted) return;
    w.present = true;
    this.#scheduleDiscovery(this.#adapter(w.adapter), w);
  }

  #exportGatt(w: Wearable): void {
    if (w.gattExported) return;
    w.gattExported = true;
    for (const s of w.services) {
      this.#exportObject(s.path, [s.iface]);
      for (const c of s.characteristics) this.#exportObject(c.path, [c.iface]);
    }
  }

  #removeGatt(w: Wearable): void {
    if (!w.gattExported) return;
    w.gattExported = false;
    for (const s of [...w.services].reverse()) {
      for (const c of [...s.characteristics].reverse()) {
        this.#endNotify(c);
        this.#removeObject(c.path);
      }
      this.#removeObject(s.path);
    }
  }

  // ---- characteristics ----

  /** GattCharacteristic1.ReadValue. */
  #readValue(w: Wearable, c: EmulatedCharacteristic, options: Record<string, dbus.Variant>): Buffer {
    if (!c.model.flags.includes('read')) throw bluezError('NotPermitted', 'Read not permitted');
    if (!w.device.Connected) throw bluezError('Failed', 'Not connected');
    const offsetValue: unknown = options['offset']?.value;
    const offset = typeof offsetValue === 'number' ? offsetValue : 0;
    const sample = c.model.sample();
    if (offset > sample.payload.length) throw bluezError('InvalidOffset', 'Invalid offset');
    // The cached Value follows reads too (without a PropertiesChanged here, so that a read does
    // not look like a notification to a client that also subscribed).
    c.iface.Value = sample.payload;
    this.#record(w, c, sample, 'read', sample.payload, undefined);
    return sample.payload.subarray(offset);
  }

  /** GattCharacteristic1.WriteValue. */
  #writeValue(w: Wearable, c: EmulatedCharacteristic, value: Buffer): void {
    if (!c.model.flags.some((f) => f === 'write' || f === 'write-without-response')) throw bluezError('NotPermitted', 'Write not permitted');
    if (!w.device.Connected) throw bluezError('Failed', 'Not connected');
    w.writes.push({ characteristic: c.model.uuid, value: Buffer.from(value) });
  }

  /** GattCharacteristic1.StartNotify. */
  #startNotify(w: Wearable, c: EmulatedCharacteristic): void {
    if (!c.model.flags.some((f) => f === 'notify' || f === 'indicate')) throw bluezError('NotSupported', 'Operation is not supported');
    if (!w.device.Connected) throw bluezError('Failed', 'Not connected');
    c.notifySessions.add(this.#sender);
    if (c.iface.Notifying) return;
    this.#setProperty(c.iface, 'Notifying', true);
    const loop = new AbortController();
    c.loop = loop;
    this.#track(async () => {
      for (;;) {
        await this.#clock.sleep(w.intervalMs, loop.signal);
        this.#notify(w, c);
      }
    });
  }

  /** GattCharacteristic1.StopNotify. */
  #stopNotify(_w: Wearable, c: EmulatedCharacteristic): void {
    if (!c.notifySessions.delete(this.#sender)) throw bluezError('Failed', 'No notify session started');
    if (c.notifySessions.size === 0) this.#endNotify(c);
  }

  /** Every notification session of `c` ends: its timer stops and Notifying goes false. */
  #endNotify(c: EmulatedCharacteristic): void {
    c.notifySessions.clear();
    c.loop?.abort();
    c.loop = undefined;
    if (c.iface.Notifying) this.#setProperty(c.iface, 'Notifying', false);
  }

  #storm(w: Wearable, hz: number, ms: number): Promise<void> {
    const intervalMs = rateToInterval(hz);
    if (!(ms >= 0)) throw new RangeError(`duration must be non-negative, got ${ms}`);
    return this.#track(async () => {
      const until = this.#clock.monotonicMs() + ms;
      this.#log.debug({ address: w.address, hz, ms }, 'notification storm');
      while (this.#clock.monotonicMs() + intervalMs <= until) {
        await this.#clock.sleep(intervalMs, this.#stop.signal);
        for (const c of w.characteristics()) if (c.iface.Notifying) this.#notify(w, c);
      }
    });
  }

  #notify(w: Wearable, c: EmulatedCharacteristic): void {
    if (!c.iface.Notifying || !w.device.Connected || this.#stop.signal.aborted) return;
    const sample = c.model.sample();
    let payload = sample.payload;
    let fault: 'truncated' | undefined;
    if (w.truncatePending > 0) {
      w.truncatePending--;
      payload = payload.subarray(0, Math.floor(payload.length / 2));
      fault = 'truncated';
    }
    c.iface.Value = payload;
    this.#setProperty(c.iface, 'Value', payload);
    this.#record(w, c, sample, 'notify', payload, fault);
  }

  #record(w: Wearable, c: EmulatedCharacteristic, sample: CharacteristicSample, via: 'notify' | 'read', payload: Buffer, fault: 'truncated' | undefined): void {
    const ts = this.#clock.now();
    const deviceSeq = w.deviceSeq++;
    const entries = sample.values.map((v): EmittedBleReading => ({
      ts,
      source: `ble:${w.address}/${v.kind}`,
      deviceSeq,
      kind: v.kind,
      value: v.value,
      unit: v.unit,
      via,
      characteristic: c.model.uuid,
      payload: payload.toString('hex'),
      ...(fault === undefined ? {} : { fault }),
    }));
    this.#emitted.push(...entries);
    if (this.#emitted.length > this.#keepEmitted) this.#emitted.splice(0, this.#emitted.length - this.#keepEmitted);
    if (this.#logFd !== undefined) writeSync(this.#logFd, entries.map((e) => `${JSON.stringify(e)}\n`).join(''));
  }

  // ---- the object tree ----

  #exportObject(path: string, ifaces: dbus.interface.Interface[], opts: { announce?: boolean } = {}): void {
    for (const iface of ifaces) this.#bus.export(path, iface);
    this.#objects.set(path, ifaces);
    if (opts.announce !== false && this.#canSignal()) {
      this.#objectManager.InterfacesAdded(path, this.#interfacesOf(ifaces));
    }
  }

  #removeObject(path: string): void {
    const ifaces = this.#objects.get(path);
    if (ifaces === undefined) return;
    this.#objects.delete(path);
    for (const iface of ifaces) this.#bus.unexport(path, iface);
    if (this.#canSignal()) this.#objectManager.InterfacesRemoved(path, [...STANDARD_INTERFACES, ...ifaces.map(interfaceName)]);
  }

  #interfacesOf(ifaces: readonly dbus.interface.Interface[]): Record<string, Record<string, dbus.Variant>> {
    const out: Record<string, Record<string, dbus.Variant>> = {};
    for (const name of STANDARD_INTERFACES) out[name] = {};
    for (const iface of ifaces) out[interfaceName(iface)] = propertiesOf(iface);
    return out;
  }

  /** GetManagedObjects: every object under /org/bluez with its interfaces and properties. */
  #managedObjects(): Record<string, Record<string, Record<string, dbus.Variant>>> {
    const out: Record<string, Record<string, Record<string, dbus.Variant>>> = {};
    for (const [path, ifaces] of this.#objects) {
      if (path === '/') continue;
      out[path] = this.#interfacesOf(ifaces);
    }
    return out;
  }

  #setProperty<I extends dbus.interface.Interface, K extends keyof I & string>(iface: I, name: K, value: I[K]): void {
    iface[name] = value;
    if (this.#canSignal()) dbus.interface.Interface.emitPropertiesChanged(iface, { [name]: value }, []);
  }

  #canSignal(): boolean {
    return this.#busError === undefined && !this.#disconnected;
  }

  #recordCall(msg: dbus.Message): void {
    const detail = msg.interface === 'org.freedesktop.DBus.Properties' && Array.isArray(msg.body) ? msg.body.slice(0, 2).filter((x) => typeof x === 'string').join('.') : undefined;
    const call: BluezCall = { path: msg.path, interface: msg.interface, member: msg.member, ...(detail === undefined ? {} : { detail }) };
    this.#calls.push(call);
    if (this.#calls.length > 10_000) this.#calls.splice(0, this.#calls.length - 10_000);
    this.#log.trace(call, 'call');
  }

  /** Runs `work` in the background until it ends or stop() aborts it; stop() waits for it. */
  #track(work: () => Promise<void>): Promise<void> {
    const run = work().catch((e: unknown) => {
      if (!isAbort(e)) this.#log.error({ err: e }, 'emulator task failed');
    });
    const tracked = run.finally(() => this.#loops.delete(tracked));
    this.#loops.add(tracked);
    return tracked;
  }
}

function isAbort(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { name?: unknown }).name === 'AbortError';
}

/** Starts an emulated BlueZ on the bus at `opts.address` (see FakeBluez). */
export function startFakeBluez(opts: FakeBluezOptions): Promise<FakeBluez> {
  return FakeBluez.start(opts);
}
