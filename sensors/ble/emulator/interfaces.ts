import dbus from 'dbus-next';

/*
 * The org.bluez interfaces of an emulated BlueZ, as dbus-next service interfaces configured with
 * Interface.configureMembers (no decorators). Plain fields are the property values: dbus-next's
 * Properties.Get handler reads `iface[name]`. Methods forward to a `handlers` object supplied by
 * fake-bluez.ts, which owns the state machine; what is here is only the D-Bus shape (names and
 * signatures as in BlueZ's doc/org.bluez.*.rst).
 */

type Dict = Record<string, dbus.Variant>;

/** A D-Bus error named as BlueZ names them (`org.bluez.Error.<name>`). */
export function bluezError(name: string, text: string): dbus.DBusError {
  return new dbus.DBusError(`org.bluez.Error.${name}`, text);
}

export interface ObjectManagerHandlers {
  getManagedObjects(): Record<string, Record<string, Dict>>;
}

export class ObjectManagerInterface extends dbus.interface.Interface {
  constructor(private readonly handlers: ObjectManagerHandlers) {
    super('org.freedesktop.DBus.ObjectManager');
  }

  GetManagedObjects(): Record<string, Record<string, Dict>> {
    return this.handlers.getManagedObjects();
  }

  InterfacesAdded(path: string, interfaces: Record<string, Dict>): [string, Record<string, Dict>] {
    return [path, interfaces];
  }

  InterfacesRemoved(path: string, interfaces: string[]): [string, string[]] {
    return [path, interfaces];
  }
}

ObjectManagerInterface.configureMembers({
  methods: { GetManagedObjects: { outSignature: 'a{oa{sa{sv}}}' } },
  signals: {
    InterfacesAdded: { signature: 'oa{sa{sv}}' },
    InterfacesRemoved: { signature: 'oas' },
  },
});

/** node-ble's Bluetooth object needs this interface on /org/bluez, or every call fails. */
export class AgentManagerInterface extends dbus.interface.Interface {
  constructor(private readonly onCall: (member: string) => void) {
    super('org.bluez.AgentManager1');
  }

  RegisterAgent(_agent: string, _capability: string): void {
    this.onCall('RegisterAgent');
  }

  UnregisterAgent(_agent: string): void {
    this.onCall('UnregisterAgent');
  }

  RequestDefaultAgent(_agent: string): void {
    this.onCall('RequestDefaultAgent');
  }
}

AgentManagerInterface.configureMembers({
  methods: {
    RegisterAgent: { inSignature: 'os' },
    UnregisterAgent: { inSignature: 'o' },
    RequestDefaultAgent: { inSignature: 'o' },
  },
});

export interface AdapterHandlers {
  setDiscoveryFilter(filter: Dict): void;
  startDiscovery(): void;
  stopDiscovery(): void;
  removeDevice(path: string): void;
}

export class AdapterInterface extends dbus.interface.Interface {
  Address = '00:00:00:00:00:00';
  AddressType = 'public';
  Name = 'fieldlink-emulator';
  Alias = 'fieldlink-emulator';
  Class = 0;
  Powered = true;
  Discoverable = false;
  Pairable = true;
  Discovering = false;
  UUIDs: string[] = [];

  constructor(private readonly handlers: AdapterHandlers) {
    super('org.bluez.Adapter1');
  }

  SetDiscoveryFilter(filter: Dict): void {
    this.handlers.setDiscoveryFilter(filter);
  }

  StartDiscovery(): void {
    this.handlers.startDiscovery();
  }

  StopDiscovery(): void {
    this.handlers.stopDiscovery();
  }

  RemoveDevice(path: string): void {
    this.handlers.removeDevice(path);
  }

  GetDiscoveryFilters(): string[] {
    return ['UUIDs', 'RSSI', 'Pathloss', 'Transport', 'DuplicateData', 'Discoverable', 'Pattern'];
  }
}

AdapterInterface.configureMembers({
  properties: {
    Address: { signature: 's', access: 'read' },
    AddressType: { signature: 's', access: 'read' },
    Name: { signature: 's', access: 'read' },
    Alias: { signature: 's', access: 'readwrite' },
    Class: { signature: 'u', access: 'read' },
    Powered: { signature: 'b', access: 'readwrite' },
    Discoverable: { signature: 'b', access: 'readwrite' },
    Pairable: { signature: 'b', access: 'readwrite' },
    Discovering: { signature: 'b', access: 'read' },
    UUIDs: { signature: 'as', access: 'read' },
  },
  methods: {
    SetDiscoveryFilter: { inSignature: 'a{sv}' },
    StartDiscovery: {},
    StopDiscovery: {},
    RemoveDevice: { inSignature: 'o' },
    GetDiscoveryFilters: { outSignature: 'as' },
  },
});

export interface DeviceHandlers {
  connect(): Promise<void>;
  disconnect(): void;
  pair(): void;
  cancelPair(): void;
}

/*
 * No ManufacturerData (a{qv}) and no other integer-keyed dictionary: dbus-next 0.10.2 cannot
 * marshal dicts with integer keys ("Data: 76 was not of type number", dbusjs/node-dbus-next
 * issue #79), and the failure would come inside a signal or a GetManagedObjects reply. Real
 * BlueZ leaves the property out too when a device advertises no manufacturer data, so
 * node-ble's getManufacturerData() fails here as it does there.
 */
export class DeviceInterface extends dbus.interface.Interface {
  Address = '';
  AddressType = 'random';
  Name = '';
  Alias = '';
  /** GAP Appearance: 0x00C0, Generic Watch. */
  Appearance = 0x00c0;
  Paired = false;
  Trusted = false;
  Blocked = false;
  LegacyPairing = false;
  RSSI = -60;
  TxPower = 0;
  Connected = false;
  UUIDs: string[] = [];
  Adapter = '/';
  ServicesResolved = false;

  constructor(private readonly handlers: DeviceHandlers) {
    super('org.bluez.Device1');
  }

  Connect(): Promise<void> {
    return this.handlers.connect();
  }

  Disconnect(): void {
    this.handlers.disconnect();
  }

  ConnectProfile(_uuid: string): Promise<void> {
    return this.handlers.connect();
  }

  DisconnectProfile(_uuid: string): void {
    this.handlers.disconnect();
  }

  Pair(): void {
    this.handlers.pair();
  }

  CancelPair(): void {
    this.handlers.cancelPair();
  }
}

DeviceInterface.configureMembers({
  properties: {
    Address: { signature: 's', access: 'read' },
    AddressType: { signature: 's', access: 'read' },
    Name: { signature: 's', access: 'read' },
    Alias: { signature: 's', access: 'readwrite' },
    Appearance: { signature: 'q', access: 'read' },
    Paired: { signature: 'b', access: 'read' },
    Trusted: { signature: 'b', access: 'readwrite' },
    Blocked: { signature: 'b', access: 'readwrite' },
    LegacyPairing: { signature: 'b', access: 'read' },
    RSSI: { signature: 'n', access: 'read' },
    TxPower: { signature: 'n', access: 'read' },
    Connected: { signature: 'b', access: 'read' },
    UUIDs: { signature: 'as', access: 'read' },
    Adapter: { signature: 'o', access: 'read' },
    ServicesResolved: { signature: 'b', access: 'read' },
  },
  methods: {
    Connect: {},
    Disconnect: {},
    ConnectProfile: { inSignature: 's' },
    DisconnectProfile: { inSignature: 's' },
    Pair: {},
    CancelPair: {},
  },
});

export class GattServiceInterface extends dbus.interface.Interface {
  UUID = '';
  Device = '/';
  Primary = true;
  Includes: string[] = [];
  Handle = 0;

  constructor() {
    super('org.bluez.GattService1');
  }
}

GattServiceInterface.configureMembers({
  properties: {
    UUID: { signature: 's', access: 'read' },
    Device: { signature: 'o', access: 'read' },
    Primary: { signature: 'b', access: 'read' },
    Includes: { signature: 'ao', access: 'read' },
    Handle: { signature: 'q', access: 'read' },
  },
});

export interface CharacteristicHandlers {
  readValue(options: Dict): Buffer;
  writeValue(value: Buffer, options: Dict): void;
  startNotify(): void;
  stopNotify(): void;
}

export class GattCharacteristicInterface extends dbus.interface.Interface {
  UUID = '';
  Service = '/';
  Value: Buffer = Buffer.alloc(0);
  Notifying = false;
  Flags: string[] = [];
  Handle = 0;

  constructor(private readonly handlers: CharacteristicHandlers) {
    super('org.bluez.GattCharacteristic1');
  }

  ReadValue(options: Dict): Buffer {
    return this.handlers.readValue(options);
  }

  WriteValue(value: Buffer, options: Dict): void {
    this.handlers.writeValue(value, options);
  }

  StartNotify(): void {
    this.handlers.startNotify();
  }

  StopNotify(): void {
    this.handlers.stopNotify();
  }
}

GattCharacteristicInterface.configureMembers({
  properties: {
    UUID: { signature: 's', access: 'read' },
    Service: { signature: 'o', access: 'read' },
    Value: { signature: 'ay', access: 'read' },
    Notifying: { signature: 'b', access: 'read' },
    Flags: { signature: 'as', access: 'read' },
    Handle: { signature: 'q', access: 'read' },
  },
  methods: {
    ReadValue: { inSignature: 'a{sv}', outSignature: 'ay' },
    WriteValue: { inSignature: 'aya{sv}' },
    StartNotify: {},
    StopNotify: {},
  },
});

/** Properties of an exported interface as BlueZ sends them in GetManagedObjects and InterfacesAdded. */
export function propertiesOf(iface: dbus.interface.Interface): Dict {
  const props = (iface as unknown as { $properties?: Record<string, { signature: string; name: string; disabled?: boolean }> }).$properties ?? {};
  const values = iface as unknown as Record<string, unknown>;
  const out: Dict = {};
  for (const [key, opts] of Object.entries(props)) {
    if (opts.disabled === true) continue;
    out[opts.name] = new dbus.Variant(opts.signature, values[key]);
  }
  return out;
}

/** The D-Bus name of an exported interface. */
export function interfaceName(iface: dbus.interface.Interface): string {
  return (iface as unknown as { $name: string }).$name;
}
