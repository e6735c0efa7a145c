import { createRequire } from 'node:module';
import five, { type Board, type FirmataConstructor, type FirmataIo, type FirmataIoModule } from 'johnny-five';
import { SerialPort } from 'serialport';
import { sleepUnlessAborted, type Clock } from '../../common/clock.js';
import { FieldlinkError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { Sample, SensorSource } from '../contract/index.js';
import { defaultReopenPolicy, reopenDelayMs, type ReopenPolicy } from '../serial-thermostat/driver.js';
import { ADC_MAX, analogChannel, isThermometerController, rawToCelsius, type ThermometerController } from './thermometers.js';
import { produceSamples, type SampleChannel } from '../contract/sample-channel.js';

/*
 * firmata-io is not a dependency of ours: it comes with johnny-five (johnny-five → firmata →
 * firmata-io), so it is loaded relative to johnny-five, which gets the copy j5 was installed
 * with. Binding it to OUR serialport 13 means firmata's own serialport 8 (a native build with
 * no prebuild) is never loaded: we only ever hand Firmata an already constructed port.
 */
const requireHere = createRequire(import.meta.url);
const requireFromJ5 = createRequire(requireHere.resolve('johnny-five'));
const Firmata: FirmataConstructor = (requireFromJ5('firmata-io') as FirmataIoModule)(SerialPort);

/** One analog thermometer on the board. */
export interface ThermometerSpec {
  /** Analog pin name, 'A0'..'A5'. */
  readonly pin: string;
  readonly controller: ThermometerController;
  readonly kind: 'temperature';
}

export interface FirmataThermometerOptions {
  /** Board id; the source is `firmata:<boardId>`, its readings `firmata:<boardId>/<pin>`. */
  readonly boardId: string;
  readonly path: string;
  readonly profile: readonly ThermometerSpec[];
  readonly clock: Clock;
  readonly log: Logger;
  /** Firmata SAMPLING_INTERVAL: one sample per thermometer per interval (10..16383 ms; default 1000). */
  readonly samplingIntervalMs?: number;
  /** From opening the port to the board's 'ready' (default 5000 ms). */
  readonly readyTimeoutMs?: number;
  readonly baudRate?: number;
  readonly reopen?: Partial<ReopenPolicy>;
  readonly random?: () => number;
}

export interface FirmataThermometerCounters {
  /** Connections that reached 'ready'. */
  connects: number;
  /** Connections that reached 'ready' after the board had been lost. */
  reconnects: number;
  /** Failed connection attempts, port/board/io errors, unusable values. */
  errors: number;
  samples: number;
}

interface Connection {
  readonly port: SerialPort;
  readonly io: FirmataIo;
  readonly board: Board;
  /** Resolves with why the board went away (io 'close' / 'disconnect'). */
  readonly lost: Promise<string>;
}

/**
 * Analog thermometers (TMP36 / LM35) on an Arduino running StandardFirmata, through johnny-five
 * given our serialport 13 port. Values are converted from the raw 10-bit reading here (0.1 °C),
 * not by johnny-five's Thermometer, which rounds to whole degrees; so no j5 components (and none
 * of their setInterval timers) are created: j5's Board handles the handshake and lifecycle, and
 * the raw values come from the io's analogRead, one per SAMPLING_INTERVAL.
 *
 * Board isolation: a FRESH SerialPort + Firmata + johnny-five Board per connection. A j5 Board
 * cannot be reopened once its port closed (it never re-runs the handshake), so after a loss the
 * whole stack is discarded (its timers cleared, and the Board removed from j5's module-level
 * Board.cache, which otherwise keeps every Board ever made) and a new one is built after a
 * backoff on the injected clock. A child process per board was not needed: with `sigint:false`,
 * `repl:false` and no components, a Board installs no process handlers and no lasting timers.
 */
export class FirmataThermometerSource implements SensorSource {
  readonly id: string;
  readonly counters: FirmataThermometerCounters = { connects: 0, reconnects: 0, errors: 0, samples: 0 };
  readonly #opts: FirmataThermometerOptions;
  readonly #policy: ReopenPolicy;
  readonly #log: Logger;
  readonly #channels: ReadonlyArray<readonly [number, ThermometerSpec]>;
  #conn: Connection | undefined;
  #running = false;
  #samplingIntervalMs: number;

  constructor(opts: FirmataThermometerOptions) {
    this.id = `firmata:${opts.boardId}`;
    this.#opts = opts;
    this.#policy = { ...defaultReopenPolicy, ...opts.reopen };
    this.#log = opts.log.child({ component: 'firmata-thermometers', source: this.id, path: opts.path });
    const seen = new Set<number>();
    this.#channels = opts.profile.map((spec) => {
      const ch = analogChannel(spec.pin);
      if (ch === undefined || seen.has(ch) || !isThermometerController(spec.controller)) {
        throw new FieldlinkError('CONFIG_INVALID', { message: `board ${opts.boardId}: bad thermometer ${JSON.stringify(spec)} (pins A0..A5, once each; controller TMP36 or LM35)` });
      }
      seen.add(ch);
      return [ch, spec] as const;
    });
    this.#samplingIntervalMs = checkedInterval(opts.samplingIntervalMs ?? 1000);
  }

  /**
   * The board's SAMPLING_INTERVAL (Firmata caps it at 16,383 ms; longer intervals are the
   * gateway's report thinning). Sent now if a board is connected, and on every (re)connect.
   */
  setSamplingInterval(ms: number): void {
    this.#samplingIntervalMs = checkedInterval(Math.min(16_383, Math.max(10, Math.round(ms))));
    this.#conn?.io.setSamplingInterval(this.#samplingIntervalMs);
  }

  /** True while a board is connected and ready. */
  get connected(): boolean {
    return this.#conn?.board.isReady === true && this.#conn.port.isOpen;
  }

  async *samples(signal: AbortSignal): AsyncGenerator<Sample> {
    if (this.#running) throw new Error('samples() is already running for this source');
    this.#running = true;
    try {
      yield* produceSamples(signal, (stop, channel) => this.#connectionLoop(stop, channel));
    } finally {
      this.#running = false;
    }
  }

  /**
   * Reads every thermometer once now: re-sends REPORT_ANALOG on, which StandardFirmata (2.5+)
   * answers with the pin's value at once; the samples arrive on the stream.
   */
  measureNow(): Promise<void> {
    const conn = this.#conn;
    if (conn === undefined || !conn.board.isReady || !conn.port.isOpen) {
      return Promise.reject(new FieldlinkError('SENSOR_UNAVAILABLE', { message: `board ${this.id} is not connected` }));
    }
    for (const [ch] of this.#channels) conn.io.reportAnalogPin(ch, 1);
    return new Promise<void>((resolve, reject) =>
      conn.port.drain((err) => (err ? reject(new FieldlinkError('SENSOR_UNAVAILABLE', { message: `writing to ${this.#opts.path} failed`, cause: err })) : resolve())),
    );
  }

  async #connectionLoop(signal: AbortSignal, channel: SampleChannel): Promise<void> {
    let failures = 0;
    let lost = false;
    const random = this.#opts.random ?? Math.random;
    while (!signal.aborted) {
      let conn: Connection;
      try {
        conn = await this.#connect(signal, channel);
      } catch (cause) {
        if (signal.aborted) break;
        failures++;
        this.counters.errors++;
        if (failures >= this.#policy.maxAttempts) {
          throw new FieldlinkError('SENSOR_UNAVAILABLE', { message: `board ${this.id} on ${this.#opts.path}: no connection after ${failures} attempts`, cause });
        }
        const delayMs = reopenDelayMs(this.#policy, failures, random);
        this.#log.warn({ err: cause, attempt: failures, delayMs }, 'board connection failed; retrying');
        if (!(await this.#sleep(delayMs, signal))) break;
        continue;
      }
      this.counters.connects++;
      if (lost) {
        this.counters.reconnects++;
        this.#log.info({ attempts: failures + 1 }, 'board reconnected');
      } else this.#log.info({ firmware: conn.io.firmware.name }, 'board ready');
      failures = 0;
      this.#conn = conn;
      const reason = await untilLostOrAborted(conn.lost, signal);
      this.#conn = undefined;
      await this.#teardown(conn, reason === 'aborted');
      if (signal.aborted) break;
      lost = true;
      this.#log.warn({ reason }, 'board lost; reopening');
      failures = 1;
      if (!(await this.#sleep(reopenDelayMs(this.#policy, 1, random), signal))) break;
    }
  }

  /** false if aborted while sleeping. */
  #sleep(ms: number, signal: AbortSignal): Promise<boolean> {
    return sleepUnlessAborted(this.#opts.clock, ms, signal);
  }

  /** Port + Firmata + a fresh Board, up to 'ready', with the thermometers reporting. */
  async #connect(signal: AbortSignal, channel: SampleChannel): Promise<Connection> {
    const port = new SerialPort({ path: this.#opts.path, baudRate: this.#opts.baudRate ?? 57600, autoOpen: false });
    // Always listening: a write in flight when the board disappears emits 'error' (EIO), which
    // would otherwise crash the process.
    port.on('error', (err) => {
      this.counters.errors++;
      this.#log.warn({ err }, 'serial port error');
    });
    // Firmata must be built before the port opens: its 'open' listener is what makes the io
    // emit 'connect', without which johnny-five postpones 'ready' for ever.
    const io = new Firmata(port, { reportVersionTimeout: 200 });
    io.on('error', (err: unknown) => this.#log.warn({ err }, 'firmata error'));
    const board = new five.Board({ io, id: this.id, repl: false, debug: false, sigint: false, timeout: this.#opts.readyTimeoutMs ?? 5000 });
    // j5 logs through events: an 'error' with no listener throws out of its timer.
    board.on('error', (err: unknown) => {
      this.counters.errors++;
      this.#log.warn({ err: err instanceof Error ? err : { message: (err as { message?: string } | undefined)?.message } }, 'board error');
    });
    const lost = new Promise<string>((resolve) => {
      io.once('close', () => resolve('port closed'));
      // firmata-io emits 'disconnect' instead of 'close' only for an event with both
      // `disconnect` and `disconnected`; serialport 13 sets only `disconnected`, so this is rare.
      io.once('disconnect', () => resolve('disconnected'));
    });
    const conn: Connection = { port, io, board, lost };
    const deadline = new AbortController();
    const onAbort = (): void => deadline.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await new Promise<void>((resolve, reject) => {
        board.once('ready', () => resolve());
        board.once('error', (err: unknown) => reject(err instanceof Error ? err : new Error('board error before ready')));
        void lost.then((why) => reject(new FieldlinkError('SENSOR_UNAVAILABLE', { message: `${this.#opts.path}: ${why} before the board was ready` })));
        const readyMs = this.#opts.readyTimeoutMs ?? 5000;
        this.#opts.clock.sleep(readyMs, deadline.signal).then(
          () => reject(new FieldlinkError('TIMEOUT', { message: `board on ${this.#opts.path} not ready within ${readyMs} ms` })),
          () => reject(new Error('aborted')),
        );
        port.open((err) => {
          if (err) reject(new FieldlinkError('SENSOR_UNAVAILABLE', { message: `cannot open ${this.#opts.path}`, cause: err }));
        });
      });
      this.#startReporting(conn, channel);
      return conn;
    } catch (e) {
      await this.#teardown(conn, false);
      throw e;
    } finally {
      deadline.abort();
      signal.removeEventListener('abort', onAbort);
    }
  }

  #startReporting(conn: Connection, channel: SampleChannel): void {
    const { io } = conn;
    io.setSamplingInterval(this.#samplingIntervalMs);
    for (const [ch, spec] of this.#channels) {
      if (io.analogPins[ch] === undefined) {
        this.counters.errors++;
        this.#log.error({ pin: spec.pin }, 'the board has no such analog pin; thermometer skipped');
        continue;
      }
      io.pinMode(ch, io.MODES.ANALOG);
      io.analogRead(ch, (raw) => {
        if (!Number.isInteger(raw) || raw < 0 || raw > ADC_MAX) {
          this.counters.errors++;
          this.#log.debug({ pin: spec.pin, raw }, 'analog value out of the 10-bit range; skipped');
          return;
        }
        this.counters.samples++;
        channel.push({ source: `${this.id}/${spec.pin}`, kind: spec.kind, value: rawToCelsius(spec.controller, raw), unit: 'Cel', ts: this.#opts.clock.now(), flags: {} });
      });
    }
  }

  /** Ends one connection for good: the Board is never reused (see the class comment). */
  async #teardown(conn: Connection, polite: boolean): Promise<void> {
    const { port, io, board } = conn;
    if (board.timer !== null) clearTimeout(board.timer);
    board.timer = null;
    clearTimeout(io.reportVersionTimeoutId);
    for (const [ch] of this.#channels) io.removeAllListeners(`analog-read-${ch}`);
    if (port.isOpen) {
      // Leaving on purpose: tell the board to stop reporting, as a well-behaved host does.
      if (polite && board.isReady) {
        for (const [ch] of this.#channels) io.reportAnalogPin(ch, 0);
        await settleWithin(500, new Promise<void>((resolve) => port.drain(() => resolve())));
      }
      await settleWithin(1000, new Promise<void>((resolve) => port.close(() => resolve())));
    }
    const cache = five.Board.cache;
    const i = cache.indexOf(board);
    if (i >= 0) cache.splice(i, 1);
  }
}

/** Why the connection ended: the loss reason, or 'aborted'; leaves no listener on `signal`. */
function untilLostOrAborted(lost: Promise<string>, signal: AbortSignal): Promise<string> {
  return new Promise((resolve) => {
    const onAbort = (): void => resolve('aborted');
    if (signal.aborted) {
      resolve('aborted');
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    void lost.then((reason) => {
      signal.removeEventListener('abort', onAbort);
      resolve(reason);
    });
  });
}

/** Waits for `p` at most `ms` (a port whose device vanished may never call back). */
async function settleWithin(ms: number, p: Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

function checkedInterval(interval: number): number {
  if (!(Number.isInteger(interval) && interval >= 10 && interval <= 16383)) {
    throw new FieldlinkError('CONFIG_INVALID', { message: `samplingIntervalMs must be an integer 10..16383, not ${interval}` });
  }
  return interval;
}
