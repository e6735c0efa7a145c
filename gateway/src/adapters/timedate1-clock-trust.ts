import type { EventEmitter } from 'node:events';
import dbus from 'dbus-next';
import type { Clock } from '../../../common/clock.js';
import { FieldlinkError } from '../../../common/errors.js';
import type { Logger } from '../../../common/log.js';
import type { ClockTrust } from '../ports/clock-trust.js';

const TIMEDATE1 = 'org.freedesktop.timedate1';
const TIMEDATE1_PATH = '/org/freedesktop/timedate1';
const PROPERTIES = 'org.freedesktop.DBus.Properties';
const BUS_NAME = 'org.freedesktop.DBus';
const BUS_PATH = '/org/freedesktop/DBus';
/** dbus-next's own default for the system bus. */
const DEFAULT_SYSTEM_BUS = 'unix:path=/var/run/dbus/system_bus_socket';

export interface Timedate1ClockTrustOptions {
  /** D-Bus address; default `DBUS_SYSTEM_BUS_ADDRESS` (read when constructed), else the system bus. */
  readonly busAddress?: string;
  /** How often NTPSynchronized is read (and a lost bus reconnected); default 30 000 ms. */
  readonly pollIntervalMs?: number;
  /** How long connecting or one call may take before the bus counts as dead; default 5000 ms. */
  readonly callTimeoutMs?: number;
  readonly log: Logger;
  readonly clock: Clock;
}

/**
 * What the last attempt found out. Logged once per change, so a Pi without timedated logs one
 * warning, not one every poll.
 */
type SourceState =
  | 'synchronized'
  | 'unsynchronized'
  /** The bus cannot be connected to, or it died. */
  | 'bus-unreachable'
  /** Nobody owns org.freedesktop.timedate1 and the bus cannot start it. */
  | 'service-missing'
  /** timedated answered, but with an error or a value that is not a boolean. */
  | 'service-error';

/** One connection to the bus; replaced as a whole when it dies. */
interface Connection {
  readonly bus: dbus.MessageBus;
  /** Rejects when the connection errors or ends; calls race against it. */
  readonly died: Promise<never>;
  dead: boolean;
  /** Hello answered and signals subscribed. */
  ready: boolean;
}

class Stopped extends Error {}

/** dbus-next calls that never get a reply (the bus died) never settle; races need a deadline. */
class CallTimedOut extends Error {}

/**
 * ClockTrust from systemd-timedated: `NTPSynchronized` of org.freedesktop.timedate1, read with
 * org.freedesktop.DBus.Properties.Get.
 *
 * Why it polls as well as listening for PropertiesChanged: timedated declares NTPSynchronized
 * without the EmitsChangedSignal flag (its vtable entry has flags 0; the value is computed from
 * adjtimex() on every Get), so systemd does not emit PropertiesChanged when the kernel's clock
 * becomes synchronised — `busctl introspect` shows no `emits-change` for it, and Cockpit polls it
 * for the same reason (cockpit-project/cockpit#2970). The subscription is kept because it costs
 * nothing and picks up other time services, or future systemd versions, that do signal.
 *
 * Why a vanished name is re-asked rather than taken as "untrusted" at once: on a real system
 * timedated is bus-activated and exits after about 30 s idle, so its name comes and goes; the
 * next Get starts it again. Only when that Get fails (ServiceUnknown: nothing can provide the
 * name) does the clock become untrusted.
 *
 * Failures never escape: an unreachable bus, a missing service or an error reply make the clock
 * untrusted, are logged once per change of state with code CLOCK_SOURCE_UNAVAILABLE, and are
 * retried every poll interval, reconnecting the bus when it died.
 */
export class Timedate1ClockTrust implements ClockTrust {
  readonly #address: string;
  readonly #pollIntervalMs: number;
  readonly #callTimeoutMs: number;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #handlers = new Set<{ readonly fn: (trusted: boolean) => void }>();
  readonly #stop = new AbortController();
  #trusted = false;
  #state: SourceState | undefined;
  #conn: Connection | undefined;
  #loop: Promise<void> | undefined;
  #firstAnswer: Promise<void> | undefined;
  /** Aborted to cut the current wait short (a signal asked for a fresh read). */
  #nap: AbortController | undefined;
  #recheck = false;
  #polls = 0;

  constructor(opts: Timedate1ClockTrustOptions) {
    this.#address = opts.busAddress ?? (process.env['DBUS_SYSTEM_BUS_ADDRESS'] || DEFAULT_SYSTEM_BUS);
    this.#pollIntervalMs = opts.pollIntervalMs ?? 30_000;
    this.#callTimeoutMs = opts.callTimeoutMs ?? 5000;
    this.#log = opts.log.child({ component: 'clock-trust', source: TIMEDATE1 });
    this.#clock = opts.clock;
  }

  get trusted(): boolean {
    return this.#trusted;
  }

  /** How many reads of NTPSynchronized were attempted (successful or not); for tests and metrics. */
  get polls(): number {
    return this.#polls;
  }

  start(): Promise<void> {
    if (this.#firstAnswer !== undefined) return this.#firstAnswer;
    if (this.#stop.signal.aborted) return Promise.resolve();
    let answered!: () => void;
    this.#firstAnswer = new Promise<void>((resolve) => {
      answered = resolve;
    });
    this.#loop = this.#run(answered);
    return this.#firstAnswer;
  }

  onChange(handler: (trusted: boolean) => void): () => void {
    const entry = { fn: handler };
    this.#handlers.add(entry);
    return () => {
      this.#handlers.delete(entry);
    };
  }

  async close(): Promise<void> {
    this.#stop.abort(new Stopped('clock trust closed'));
    this.#nap?.abort();
    await this.#loop;
    this.#dropConnection();
    this.#handlers.clear();
  }

  async #run(answered: () => void): Promise<void> {
    const stop = this.#stop.signal;
    while (!stop.aborted) {
      this.#recheck = false;
      await this.#poll();
      answered();
      if (stop.aborted) break;
      // A signal that arrived during the read asked for another one; no need to wait.
      if (this.#recheck) continue;
      const nap = new AbortController();
      this.#nap = nap;
      const onStop = (): void => nap.abort();
      stop.addEventListener('abort', onStop, { once: true });
      try {
        await this.#clock.sleep(this.#pollIntervalMs, nap.signal);
      } catch {
        // Cut short on purpose: by close(), or by a signal asking for a fresh read.
      } finally {
        stop.removeEventListener('abort', onStop);
        this.#nap = undefined;
      }
    }
    answered();
  }

  /** Ask for a read as soon as possible, without running two at once. */
  #wake(): void {
    this.#recheck = true;
    this.#nap?.abort();
  }

  /** One read of NTPSynchronized; never throws. */
  async #poll(): Promise<void> {
    this.#polls++;
    let conn: Connection;
    try {
      conn = await this.#connection();
    } catch (e) {
      if (e instanceof Stopped) return;
      this.#dropConnection();
      this.#observe('bus-unreachable', e);
      return;
    }
    try {
      const reply = await this.#call(
        conn,
        new dbus.Message({
          destination: TIMEDATE1,
          path: TIMEDATE1_PATH,
          interface: PROPERTIES,
          member: 'Get',
          signature: 'ss',
          body: [TIMEDATE1, 'NTPSynchronized'],
        }),
      );
      const value: unknown = reply?.body[0] instanceof dbus.Variant ? (reply.body[0] as dbus.Variant<unknown>).value : undefined;
      if (typeof value !== 'boolean') {
        this.#observe('service-error', new Error(`NTPSynchronized is not a boolean: ${JSON.stringify(value)}`));
        return;
      }
      this.#observe(value ? 'synchronized' : 'unsynchronized');
    } catch (e) {
      if (e instanceof Stopped) return;
      if (e instanceof dbus.DBusError) {
        const missing = e.type === 'org.freedesktop.DBus.Error.ServiceUnknown' || e.type === 'org.freedesktop.DBus.Error.NameHasNoOwner';
        this.#observe(missing ? 'service-missing' : 'service-error', e);
        return;
      }
      // Timed out or the connection failed: start again with a fresh one next time.
      this.#dropConnection();
      this.#observe('bus-unreachable', e);
    }
  }

  /** The live connection, or a new one: connected, subscribed to the signals we watch. */
  async #connection(): Promise<Connection> {
    if (this.#conn !== undefined && !this.#conn.dead) return this.#conn;
    this.#dropConnection();
    // sessionBus() with an explicit address is systemBus() without its fixed address lookup.
    // It throws synchronously for a malformed address.
    const bus = dbus.sessionBus({ busAddress: this.#address });
    let markDead!: (e: unknown) => void;
    const died = new Promise<never>((_, reject) => {
      markDead = reject;
    });
    // Nobody may be racing against it when it rejects; that is not an unhandled rejection.
    died.catch(() => undefined);
    const conn: Connection = { bus, died, dead: false, ready: false };
    this.#conn = conn;
    const onDeath = (e: unknown): void => {
      if (conn.dead) return;
      conn.dead = true;
      markDead(e instanceof Error ? e : new Error(String(e)));
      // A bus that died while we wait should not leave the clock trusted for a whole interval.
      // Only a connection that had worked: a failed attempt is retried on the poll interval,
      // or an unreachable bus would be retried in a tight loop.
      if (this.#conn === conn && conn.ready) this.#wake();
    };
    // Stays attached for the life of the object: dbus-next emits 'error' for writes to a
    // closed stream, and an 'error' without a listener would crash the process.
    bus.on('error', onDeath);
    // dbus-next's MessageBus does not report the stream ending (the daemon exiting or
    // restarting); its connection object does. Private, so guarded: without it the next poll
    // notices instead.
    privateConnection(bus)?.on('end', () => onDeath(new Error('the D-Bus connection was closed by the bus')));
    bus.on('message', (msg: dbus.Message) => {
      if (this.#conn === conn) this.#onMessage(msg);
    });

    const connected = new Promise<void>((resolve) => bus.once('connect', () => resolve()));
    await this.#race(conn, connected, 'connecting to the bus');
    for (const rule of [
      `type='signal',sender='${TIMEDATE1}',path='${TIMEDATE1_PATH}',interface='${PROPERTIES}',member='PropertiesChanged',arg0='${TIMEDATE1}'`,
      `type='signal',sender='${BUS_NAME}',path='${BUS_PATH}',interface='${BUS_NAME}',member='NameOwnerChanged',arg0='${TIMEDATE1}'`,
    ]) {
      await this.#call(
        conn,
        new dbus.Message({ destination: BUS_NAME, path: BUS_PATH, interface: BUS_NAME, member: 'AddMatch', signature: 's', body: [rule] }),
      );
    }
    conn.ready = true;
    return conn;
  }

  #call(conn: Connection, msg: dbus.Message): Promise<dbus.Message | null> {
    return this.#race(conn, conn.bus.call(msg), `${msg.interface}.${msg.member}`);
  }

  /** `work`, unless the connection dies, the deadline passes or close() is called first. */
  async #race<T>(conn: Connection, work: Promise<T>, what: string): Promise<T> {
    const cancel = new AbortController();
    const stop = this.#stop.signal;
    const onStop = (): void => cancel.abort(new Stopped('clock trust closed'));
    if (stop.aborted) onStop();
    else stop.addEventListener('abort', onStop, { once: true });
    const timeout = this.#clock.sleep(this.#callTimeoutMs, cancel.signal).then(() => {
      throw new CallTimedOut(`${what}: no answer within ${this.#callTimeoutMs} ms`);
    });
    try {
      return await Promise.race([work, conn.died, timeout]);
    } finally {
      stop.removeEventListener('abort', onStop);
      // Ends the timer; the rejection this causes is consumed by the race above.
      cancel.abort(new Stopped('settled'));
    }
  }

  #onMessage(msg: dbus.Message): void {
    if (msg.type !== dbus.MessageType.SIGNAL) return;
    const body: unknown[] = msg.body ?? [];
    if (msg.interface === BUS_NAME && msg.member === 'NameOwnerChanged' && body[0] === TIMEDATE1) {
      // Appeared: read it. Vanished: re-ask (see the class comment on bus activation).
      this.#wake();
      return;
    }
    if (msg.path !== TIMEDATE1_PATH || msg.interface !== PROPERTIES || msg.member !== 'PropertiesChanged' || body[0] !== TIMEDATE1) return;
    const changed = body[1] as Record<string, unknown> | undefined;
    const invalidated = Array.isArray(body[2]) ? (body[2] as unknown[]) : [];
    const variant = changed?.['NTPSynchronized'];
    if (variant instanceof dbus.Variant && typeof variant.value === 'boolean') {
      this.#observe(variant.value ? 'synchronized' : 'unsynchronized');
    } else if (invalidated.includes('NTPSynchronized')) {
      this.#wake();
    }
  }

  /** Record what the source said; log and notify only on change. */
  #observe(state: SourceState, cause?: unknown): void {
    if (state !== this.#state) {
      const previous = this.#state;
      this.#state = state;
      if (state === 'synchronized' || state === 'unsynchronized') {
        this.#log.info({ state, previous }, state === 'synchronized' ? 'wall clock is NTP-synchronised' : 'wall clock is not NTP-synchronised yet');
      } else {
        const err = new FieldlinkError('CLOCK_SOURCE_UNAVAILABLE', {
          message: `${describe(state)} at ${this.#address}; the clock counts as unsynchronised, asking again every ${this.#pollIntervalMs} ms`,
          cause,
          details: { state, address: this.#address },
        });
        this.#log.warn({ err, state, previous }, err.message);
      }
    }
    this.#setTrusted(state === 'synchronized');
  }

  #setTrusted(trusted: boolean): void {
    if (trusted === this.#trusted) return;
    this.#trusted = trusted;
    for (const handler of [...this.#handlers]) {
      try {
        handler.fn(trusted);
      } catch (e) {
        // A broken subscriber must not stop the watch or the other subscribers.
        this.#log.error({ err: e }, 'clock trust change handler threw');
      }
    }
  }

  #dropConnection(): void {
    const conn = this.#conn;
    this.#conn = undefined;
    if (conn === undefined) return;
    conn.dead = true;
    try {
      conn.bus.disconnect();
    } catch {
      // Already closed.
    }
    // disconnect() only half-closes (stream.end()); a socket still connecting, or a bus that
    // never answers, would keep the process alive. Destroy it.
    privateConnection(conn.bus)?.stream?.destroy();
  }
}

function describe(state: SourceState): string {
  switch (state) {
    case 'bus-unreachable':
      return 'the D-Bus system bus cannot be reached';
    case 'service-missing':
      return `${TIMEDATE1} is not on the bus`;
    default:
      return `${TIMEDATE1} answered with an error`;
  }
}

/** dbus-next 0.10's MessageBus keeps its connection (an EventEmitter with the socket) here. */
function privateConnection(bus: dbus.MessageBus): (EventEmitter & { stream?: { destroy(): void } }) | undefined {
  const conn = (bus as unknown as { _connection?: EventEmitter & { stream?: { destroy(): void } } })._connection;
  return conn !== undefined && typeof conn.on === 'function' ? conn : undefined;
}
