/**
 * What `fieldlink doctor` touches in the world, behind one interface so tests can inject a full
 * disk or a serial port the user may not open; `defaultDoctorEnv()` is the real thing.
 */
import { constants as fsConstants, promises as fsp } from 'node:fs';
import { isIP } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import dbus from 'dbus-next';
import { withinBusDeadline } from '../../sensors/dbus/bus-deadline.js';
import { AmqpUplink } from '../../gateway/src/adapters/amqp-uplink.js';
import { loadGatewayConfig, type LoadedGatewayConfig } from '../../gateway/src/config/load-config.js';

/** dbus-next's own default for the system bus. */
const DEFAULT_SYSTEM_BUS = 'unix:path=/var/run/dbus/system_bus_socket';

/** The part of statfs(2) the disk check needs. */
export interface DiskStats {
  /** Blocks available to an unprivileged user. */
  readonly bavail: number;
  readonly bsize: number;
}

/** A connection to the system bus; every call has the session's deadline. */
export interface BusSession {
  readonly address: string;
  /** org.freedesktop.DBus.Properties.Get; rejects with a dbus-next DBusError (`type`) on an error reply. */
  getProperty(service: string, path: string, iface: string, name: string): Promise<unknown>;
  close(): void;
}

export interface DoctorEnv {
  loadConfig(path: string): LoadedGatewayConfig;
  readFile(path: string): Promise<string>;
  /** Resolves when `path` exists (any kind), rejects with its errno otherwise. */
  stat(path: string): Promise<void>;
  statfs(path: string): Promise<DiskStats>;
  /** Opens `path` read-write like the gateway would, then closes it; rejects with the errno. */
  openSerial(path: string): Promise<void>;
  /** Connects to the system bus (DBUS_SYSTEM_BUS_ADDRESS, like the gateway). */
  systemBus(timeoutMs: number): Promise<BusSession>;
  /**
   * A TLS handshake with host:port, verifying the certificate against `ca` (or the system's
   * roots), then closed; rejects with the errno (ECONNREFUSED, ENOTFOUND…) or the certificate
   * error code (SELF_SIGNED_CERT_IN_CHAIN…). The SDK reports both as a bare disconnection.
   */
  probeTls(host: string, port: number, ca: string | undefined, timeoutMs: number): Promise<void>;
  /** Opens the gateway's uplink to IoT Hub with its credentials and CA, then closes it. */
  connectHub(config: LoadedGatewayConfig, ca: string | undefined, timeoutMs: number): Promise<void>;
  now(): number;
  /** Root opens any device node: the serial check then cannot prove the gateway's user may. */
  isRoot(): boolean;
}

function systemBusAddress(env: Readonly<Record<string, string | undefined>> = process.env): string {
  return env['DBUS_SYSTEM_BUS_ADDRESS'] || DEFAULT_SYSTEM_BUS;
}

function privateStream(bus: dbus.MessageBus): { destroy(): void } | undefined {
  return (bus as unknown as { _connection?: { stream?: { destroy(): void } } })._connection?.stream;
}

/** A dbus-next connection whose every step has a deadline (dbus-next never rejects on a dead bus). */
async function connectBus(address: string, timeoutMs: number): Promise<BusSession> {
  // sessionBus() with an explicit address is systemBus() without its fixed address lookup.
  const bus = dbus.sessionBus({ busAddress: address });
  let lastError: unknown;
  bus.on('error', (e: unknown) => {
    lastError ??= e;
  });
  const close = (): void => {
    try {
      bus.disconnect();
    } catch {
      // already closed
    }
    privateStream(bus)?.destroy();
  };
  try {
    await withinBusDeadline(timeoutMs, new Promise<void>((resolve) => bus.once('connect', () => resolve())), bus);
  } catch (e) {
    close();
    const cause = lastError ?? e;
    const code = (cause as { code?: unknown } | undefined)?.code;
    throw Object.assign(new Error(`cannot connect to the D-Bus bus at ${address}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause }), {
      address,
      ...(typeof code === 'string' ? { code } : {}),
    });
  }
  const call = async (msg: dbus.Message): Promise<dbus.Message | null> => withinBusDeadline(timeoutMs, bus.call(msg), bus);
  return {
    address,
    async getProperty(service, path, iface, name) {
      const reply = await call(
        new dbus.Message({ destination: service, path, interface: 'org.freedesktop.DBus.Properties', member: 'Get', signature: 'ss', body: [iface, name] }),
      );
      const v: unknown = reply?.body[0];
      return v instanceof dbus.Variant ? (v as dbus.Variant<unknown>).value : v;
    },
    close,
  };
}

/** Opens the real AmqpUplink (NoRetry, deadline per step) and closes it. */
async function connectHubWithUplink(config: LoadedGatewayConfig, ca: string | undefined, timeoutMs: number): Promise<void> {
  const uplink = new AmqpUplink({ connectionString: config.connectionString, ...(ca === undefined ? {} : { ca }), deadlineMs: timeoutMs });
  try {
    await uplink.open();
  } finally {
    await uplink.close().catch(() => undefined);
  }
}

function probeTlsHandshake(host: string, port: number, ca: string | undefined, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const socket = tlsConnect({ host, port, ...(ca === undefined ? {} : { ca }), ...(isIP(host) === 0 ? { servername: host } : {}) });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(Object.assign(new Error(`no TLS handshake with ${host}:${port} within ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.end();
      socket.destroy();
      resolve();
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      socket.destroy();
      reject(e);
    });
  });
}

export function defaultDoctorEnv(env: Readonly<Record<string, string | undefined>> = process.env): DoctorEnv {
  return {
    loadConfig: (path) => loadGatewayConfig(path, { env }),
    readFile: (path) => fsp.readFile(path, 'utf8'),
    stat: async (path) => {
      await fsp.stat(path);
    },
    statfs: async (path) => {
      const s = await fsp.statfs(path);
      return { bavail: s.bavail, bsize: s.bsize };
    },
    openSerial: async (path) => {
      // O_NONBLOCK: a tty without carrier must not block the open; O_NOCTTY: never our terminal.
      const fh = await fsp.open(path, fsConstants.O_RDWR | fsConstants.O_NOCTTY | fsConstants.O_NONBLOCK);
      await fh.close();
    },
    systemBus: (timeoutMs) => connectBus(systemBusAddress(env), timeoutMs),
    probeTls: probeTlsHandshake,
    connectHub: connectHubWithUplink,
    now: () => Date.now(),
    isRoot: () => process.getuid?.() === 0,
  };
}
