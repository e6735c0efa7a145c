import dbus from 'dbus-next';
import { FieldlinkError } from '../../common/errors.js';
import { withinBusDeadline } from './bus-deadline.js';

export const TIMEDATE1_NAME = 'org.freedesktop.timedate1';
export const TIMEDATE1_PATH = '/org/freedesktop/timedate1';

/*
 * The subset of systemd-timedated's org.freedesktop.timedate1 a clock-trust client reads. Plain
 * fields are the property values: dbus-next's Properties.Get handler reads `iface[name]`.
 */
class Timedate1Interface extends dbus.interface.Interface {
  NTPSynchronized = false;
  NTP = true;
  CanNTP = true;
  LocalRTC = false;
  Timezone = 'Etc/UTC';
}

Timedate1Interface.configureMembers({
  properties: {
    NTPSynchronized: { signature: 'b', access: 'read' },
    NTP: { signature: 'b', access: 'read' },
    CanNTP: { signature: 'b', access: 'read' },
    LocalRTC: { signature: 'b', access: 'read' },
    Timezone: { signature: 's', access: 'read' },
  },
});

export interface FakeTimedate1Options {
  /** Bus to connect to, e.g. from `startPrivateBus()`. */
  readonly address: string;
  readonly synchronized: boolean;
  readonly timezone?: string;
}

export interface FakeTimedate1 {
  readonly synchronized: boolean;
  /**
   * Changes NTPSynchronized. With `emitSignal`, also sends PropertiesChanged for it. Real
   * timedated does not: it declares the property without EmitsChangedSignal (its value is
   * computed from adjtimex() on every Get), so clients must poll. Default: no signal, as there.
   */
  setSynchronized(synchronized: boolean, opts?: { readonly emitSignal?: boolean }): void;
  /** Releases the name (clients see NameOwnerChanged) and disconnects; safe to call twice. */
  stop(): Promise<void>;
}

/**
 * A fake systemd-timedated: owns org.freedesktop.timedate1 on the given bus and serves
 * /org/freedesktop/timedate1. The object is exported before the name is requested, so a client
 * never sees the name without the object. Fails with EMULATOR_FAILED if the name is taken or
 * the bus cannot be reached.
 */
export async function startFakeTimedate1(opts: FakeTimedate1Options): Promise<FakeTimedate1> {
  const bus = dbus.sessionBus({ busAddress: opts.address });
  // Without a listener a bus 'error' (the daemon going away under us) would crash the process.
  let busError: unknown;
  bus.on('error', (e: unknown) => {
    busError ??= e;
  });
  // MessageBus does not report the daemon closing the socket, and calls on a closed bus never
  // settle; its (private) connection object does report it.
  (bus as unknown as { _connection?: { on?(event: 'end', fn: () => void): void } })._connection?.on?.('end', () => {
    busError ??= new Error('the bus closed the connection');
  });
  const iface = new Timedate1Interface(TIMEDATE1_NAME);
  iface.NTPSynchronized = opts.synchronized;
  if (opts.timezone !== undefined) iface.Timezone = opts.timezone;

  let stopping: Promise<void> | undefined;
  const stop = async (): Promise<void> => {
    try {
      if (busError === undefined) await withinBusDeadline(1000, bus.releaseName(TIMEDATE1_NAME), bus);
    } catch {
      // The bus is gone; nothing left to release.
    }
    bus.unexport(TIMEDATE1_PATH, iface);
    bus.disconnect();
  };

  try {
    bus.export(TIMEDATE1_PATH, iface);
    const reply = await withinBusDeadline(5000, bus.requestName(TIMEDATE1_NAME, dbus.NameFlag.DO_NOT_QUEUE), bus);
    if (reply !== dbus.RequestNameReply.PRIMARY_OWNER) {
      throw new FieldlinkError('EMULATOR_FAILED', { message: `${TIMEDATE1_NAME} is already owned on ${opts.address}` });
    }
  } catch (e) {
    bus.disconnect();
    if (e instanceof FieldlinkError) throw e;
    throw new FieldlinkError('EMULATOR_FAILED', { message: `fake timedate1 could not join the bus at ${opts.address}`, cause: e });
  }

  return {
    get synchronized() {
      return iface.NTPSynchronized;
    },
    setSynchronized(synchronized, setOpts = {}) {
      iface.NTPSynchronized = synchronized;
      if (setOpts.emitSignal === true) dbus.interface.Interface.emitPropertiesChanged(iface, { NTPSynchronized: synchronized }, []);
    },
    stop: () => (stopping ??= stop()),
  };
}
