import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, readdirSync, readlinkSync, realpathSync, writeSync } from 'node:fs';
import { SerialPort } from 'serialport';
import { systemClock, type Clock } from '../../common/clock.js';
import { FieldlinkError } from '../../common/errors.js';
import { createLogger, type Logger } from '../../common/log.js';
import { seededRandom } from '../../common/seeded-random.js';
import { ADC_MAX, celsiusToRaw, rawToCelsius, type ThermometerController } from './thermometers.js';
import { startSocatPair, stopSocat } from '../pty/socat-pair.js';

/**
 * What an analog channel reads. With a `controller`, temperatures are encoded as that sensor
 * would (and logged with the °C they encode); `raw` patterns send the value as given.
 */
export type AnalogPattern =
  | { readonly controller: ThermometerController; readonly celsius: number; readonly noiseC?: number }
  | { readonly controller: ThermometerController; readonly sine: { readonly meanC: number; readonly amplitudeC: number; readonly periodMs: number } }
  | { readonly controller?: ThermometerController; readonly raw: number };

export interface FirmataEmulatorOptions {
  /** The host side's path; the emulator keeps `<link>.emu`. */
  readonly link: string;
  /** Names the board in logged readings (`firmata:<boardId>/A0`). */
  readonly boardId?: string;
  readonly seed?: number;
  /** JSON lines, one per analog message sent (see EmittedAnalog). */
  readonly readingLog?: string;
  /** Keyed by analog channel (0 = A0 … 5 = A5; the Uno pin numbers 14–19 are accepted too). */
  readonly analog: Readonly<Record<number, AnalogPattern>>;
  /** Sampling rate until the host sends SAMPLING_INTERVAL (Firmata's default is 19 ms ≈ 52 Hz). */
  readonly rateHz?: number;
  /** How often the version/firmware announce repeats until the host sends a byte. */
  readonly announceEveryMs?: number;
  readonly clock?: Clock;
  readonly log?: Logger;
}

/** One line of the reading log: an analog message the emulator wrote to the host. */
export interface EmittedAnalog {
  readonly ts: number;
  readonly source: string;
  readonly pin: string;
  readonly channel: number;
  readonly raw: number;
  /** The temperature the raw value encodes for the configured controller; null for raw patterns. */
  readonly celsius: number | null;
  readonly controller: ThermometerController | null;
}

// Firmata 2.x message bytes (https://github.com/firmata/protocol).
const ANALOG_MESSAGE = 0xe0;
const DIGITAL_MESSAGE = 0x90;
const REPORT_ANALOG = 0xc0;
const REPORT_DIGITAL = 0xd0;
const START_SYSEX = 0xf0;
const SET_PIN_MODE = 0xf4;
const SET_DIGITAL_PIN_VALUE = 0xf5;
const END_SYSEX = 0xf7;
const REPORT_VERSION = 0xf9;
const SYSTEM_RESET = 0xff;
const ANALOG_MAPPING_QUERY = 0x69;
const ANALOG_MAPPING_RESPONSE = 0x6a;
const CAPABILITY_QUERY = 0x6b;
const CAPABILITY_RESPONSE = 0x6c;
const PIN_STATE_QUERY = 0x6d;
const PIN_STATE_RESPONSE = 0x6e;
const QUERY_FIRMWARE = 0x79;
const SAMPLING_INTERVAL = 0x7a;

const MODE = { INPUT: 0, OUTPUT: 1, ANALOG: 2, PWM: 3, SERVO: 4, PULLUP: 0x0b } as const;
const PROTOCOL_VERSION = [2, 5] as const;
const FIRMWARE_NAME = 'StandardFirmata.ino';

/** Arduino Uno: 20 pins, 0–1 serial, PWM on 3 5 6 9 10 11, A0–A5 = pins 14–19. */
const PIN_COUNT = 20;
const FIRST_ANALOG_PIN = 14;
const ANALOG_CHANNELS = 6;
const PWM_PINS = new Set([3, 5, 6, 9, 10, 11]);

function capabilities(pin: number): number[] {
  if (pin < 2) return [];
  const caps = [MODE.INPUT, 1, MODE.OUTPUT, 1, MODE.PULLUP, 1];
  if (PWM_PINS.has(pin)) caps.push(MODE.PWM, 8);
  if (pin < FIRST_ANALOG_PIN) caps.push(MODE.SERVO, 14);
  else caps.push(MODE.ANALOG, 10);
  return caps;
}

const lsb = (n: number): number => n & 0x7f;
const msb = (n: number): number => (n >> 7) & 0x7f;

/** Bytes of a message that starts with `command`, or undefined if it is not one we frame. */
function messageLength(command: number): number | undefined {
  if (command < 0xf0) {
    switch (command & 0xf0) {
      case DIGITAL_MESSAGE:
      case ANALOG_MESSAGE:
        return 3;
      case REPORT_ANALOG:
      case REPORT_DIGITAL:
        return 2;
      default:
        return undefined;
    }
  }
  switch (command) {
    case SET_PIN_MODE:
    case SET_DIGITAL_PIN_VALUE:
      return 3;
    case REPORT_VERSION:
    case SYSTEM_RESET:
      return 1;
    default:
      return undefined;
  }
}

/**
 * An Arduino Uno running StandardFirmata, on a pseudo-terminal: spawns `socat` for a pty pair,
 * speaks Firmata on `<link>.emu` and leaves `<link>` for the host (firmata.js / johnny-five).
 * See docs/protocols/firmata.md for what it answers.
 */
export class FirmataEmulator {
  readonly link: string;
  readonly emuLink: string;
  readonly boardId: string;
  readonly stats = { analogMessages: 0, announces: 0, hostBytes: 0, queries: 0, unplugs: 0, garbageBytes: 0 };
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #random: () => number;
  readonly #stop = new AbortController();
  readonly #patterns = new Map<number, AnalogPattern>();
  readonly #defaultIntervalMs: number;
  readonly #loops = new Set<Promise<void>>();
  #socat: ChildProcess | undefined;
  #port: SerialPort | undefined;
  #logFd: number | undefined;
  #plugged = false;
  // Board state: reset by a (re)plug, as a real board boots when it gets power.
  #hostSpoke = false;
  #intervalMs: number;
  #reporting = new Set<number>();
  #pinModes: number[] = [];
  #rx: number[] = [];
  readonly #killOnExit = (): void => {
    this.#socat?.kill('SIGKILL');
  };

  private constructor(opts: FirmataEmulatorOptions) {
    this.link = opts.link;
    this.emuLink = `${opts.link}.emu`;
    this.boardId = opts.boardId ?? 'uno-1';
    this.#clock = opts.clock ?? systemClock;
    this.#log = (opts.log ?? createLogger({ level: 'silent' })).child({ component: 'firmata-emulator', link: opts.link });
    this.#random = seededRandom(opts.seed ?? 1);
    this.#defaultIntervalMs = 1000 / (opts.rateHz ?? 1000 / 19);
    this.#intervalMs = this.#defaultIntervalMs;
    for (const [key, pattern] of Object.entries(opts.analog)) this.#patterns.set(FirmataEmulator.#channel(Number(key)), pattern);
  }

  static #channel(pin: number): number {
    const ch = pin >= FIRST_ANALOG_PIN ? pin - FIRST_ANALOG_PIN : pin;
    if (!Number.isInteger(ch) || ch < 0 || ch >= ANALOG_CHANNELS) {
      throw new FieldlinkError('CONFIG_INVALID', { message: `analog pin must be a channel 0..5 or an Uno pin 14..19, not ${pin}` });
    }
    return ch;
  }

  static async start(opts: FirmataEmulatorOptions): Promise<FirmataEmulator> {
    const rate = opts.rateHz ?? 1000 / 19;
    if (!(rate > 0 && rate <= 100)) throw new FieldlinkError('CONFIG_INVALID', { message: `rateHz must be above 0 and at most 100, not ${rate}` });
    const emu = new FirmataEmulator(opts);
    process.on('exit', emu.#killOnExit);
    try {
      if (opts.readingLog !== undefined) emu.#logFd = openSync(opts.readingLog, 'a');
      await emu.#plugIn();
    } catch (e) {
      await emu.stop();
      throw e;
    }
    emu.#loops.add(emu.#every(() => emu.#intervalMs, () => emu.#sample()));
    emu.#loops.add(emu.#every(() => opts.announceEveryMs ?? 50, () => emu.#announceIfIgnored()));
    return emu;
  }

  get socatPid(): number | undefined {
    return this.#socat?.pid;
  }

  get plugged(): boolean {
    return this.#plugged;
  }

  /** True once the host has sent a byte since the last (re)plug (the announce then stops). */
  get hostSpoke(): boolean {
    return this.#hostSpoke;
  }

  /** The sampling interval now in force (the host's SAMPLING_INTERVAL, or the rateHz default). */
  get samplingIntervalMs(): number {
    return this.#intervalMs;
  }

  /** Analog channels the host has asked to report. */
  get reportingChannels(): number[] {
    return [...this.#reporting].sort((a, b) => a - b);
  }

  /**
   * Whether a process other than socat has the host side of the pty open (read from /proc):
   * how the emulator "sees" the host close its port, which a pty does not signal.
   */
  hostAttached(): boolean {
    const socat = this.#socat?.pid;
    let target: string;
    try {
      target = realpathSync(this.link);
    } catch {
      return false;
    }
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid) || Number(pid) === socat) continue;
      let fds: string[];
      try {
        fds = readdirSync(`/proc/${pid}/fd`);
      } catch {
        continue;
      }
      for (const fd of fds) {
        try {
          if (readlinkSync(`/proc/${pid}/fd/${fd}`) === target) return true;
        } catch {
          // closed while we looked
        }
      }
    }
    return false;
  }

  /** Change what a channel reads (0 = A0). */
  setPattern(pin: number, pattern: AnalogPattern): void {
    this.#patterns.set(FirmataEmulator.#channel(pin), pattern);
  }

  /** Shorthand: a constant temperature on a channel, encoded for `controller`. */
  setCelsius(pin: number, celsius: number, controller: ThermometerController = 'TMP36'): void {
    this.setPattern(pin, { controller, celsius });
  }

  /** The USB cable is pulled: socat is killed (the host's port closes) and the board loses power. */
  async unplug(): Promise<void> {
    if (!this.#plugged) return;
    this.stats.unplugs++;
    this.#log.info('unplugged');
    await this.#unplugNow();
  }

  /** The cable goes back in: the pty reappears and the board boots (announcing again). */
  async replug(): Promise<void> {
    if (this.#plugged || this.#stop.signal.aborted) return;
    this.#log.info('replugged');
    await this.#plugIn();
  }

  /**
   * Line noise: `count` random bytes that form no valid Firmata message (stray data bytes,
   * unknown commands, an unterminated sysex), so firmata.js must resynchronise on the next one
   * and the values the host sees stay those logged.
   */
  garbage(count = 32): void {
    const junkCommands = [0x80, 0xa0, 0xb0, 0xf1, 0xf2, 0xf6, START_SYSEX];
    const bytes: number[] = [];
    for (let i = 0; i < count; i++) {
      bytes.push(this.#random() < 0.2 ? (junkCommands[Math.floor(this.#random() * junkCommands.length)] ?? 0x80) : 1 + Math.floor(this.#random() * 0x7f));
    }
    if (this.#write(bytes)) this.stats.garbageBytes += bytes.length;
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await Promise.allSettled(this.#loops);
    await this.#unplugNow();
    process.off('exit', this.#killOnExit);
    if (this.#logFd !== undefined) closeSync(this.#logFd);
    this.#logFd = undefined;
  }

  async #plugIn(): Promise<void> {
    this.#hostSpoke = false;
    this.#intervalMs = this.#defaultIntervalMs;
    this.#reporting = new Set();
    this.#pinModes = Array.from({ length: PIN_COUNT }, (_, pin) => (pin >= FIRST_ANALOG_PIN ? MODE.ANALOG : MODE.OUTPUT));
    this.#rx = [];
    await this.#startSocat();
    const port = new SerialPort({ path: this.emuLink, baudRate: 57600, autoOpen: false });
    // Always listening: a write in flight when the pty goes away emits 'error' (EIO).
    port.on('error', (err) => this.#log.warn({ err }, 'emulator port error'));
    port.on('data', (chunk: Buffer) => this.#onData(chunk));
    await new Promise<void>((resolve, reject) =>
      port.open((err) => (err ? reject(new FieldlinkError('EMULATOR_FAILED', { message: `cannot open ${this.emuLink}`, cause: err })) : resolve())),
    );
    this.#port = port;
    this.#plugged = true;
    this.#announce();
  }

  async #unplugNow(): Promise<void> {
    this.#plugged = false;
    const port = this.#port;
    this.#port = undefined;
    const socat = this.#socat;
    this.#socat = undefined;
    await stopSocat(socat);
    if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
  }

  async #startSocat(): Promise<void> {
    this.#socat = await startSocatPair(this.link, this.emuLink, (code, signal) => {
      if (!this.#stop.signal.aborted) this.#log.warn({ code, signal }, 'socat exited');
    });
  }


  async #every(ms: () => number, action: () => void): Promise<void> {
    try {
      for (;;) {
        await this.#clock.sleep(ms(), this.#stop.signal);
        action();
      }
    } catch (e) {
      if (!this.#stop.signal.aborted) this.#log.error({ err: e }, 'emulator loop failed');
    }
  }

  #write(bytes: readonly number[]): boolean {
    const port = this.#port;
    if (port === undefined || !port.isOpen || !this.#plugged) return false;
    port.write(Buffer.from(bytes));
    return true;
  }

  /**
   * A real Uno announces once after the DTR reset; a pty has no DTR and the host's open flushes
   * what was sent before, so the announce repeats until the host says anything.
   */
  #announceIfIgnored(): void {
    if (this.#plugged && !this.#hostSpoke) this.#announce();
  }

  #announce(): void {
    if (this.#write([...this.#versionReply(), ...this.#firmwareReply()])) this.stats.announces++;
  }

  #versionReply(): number[] {
    return [REPORT_VERSION, PROTOCOL_VERSION[0], PROTOCOL_VERSION[1]];
  }

  #firmwareReply(): number[] {
    const name = [...Buffer.from(FIRMWARE_NAME, 'ascii')].flatMap((b) => [lsb(b), msb(b)]);
    return [START_SYSEX, QUERY_FIRMWARE, PROTOCOL_VERSION[0], PROTOCOL_VERSION[1], ...name, END_SYSEX];
  }

  #onData(chunk: Buffer): void {
    this.stats.hostBytes += chunk.length;
    this.#hostSpoke = true;
    for (const byte of chunk) {
      const rx = this.#rx;
      if (rx.length === 0) {
        // Data bytes outside a message are noise; a command byte starts a message.
        if (byte < 0x80) continue;
        rx.push(byte);
      } else if (rx[0] === START_SYSEX) {
        if (byte === END_SYSEX) {
          this.#rx = [];
          this.#sysex(rx.slice(1));
          continue;
        }
        if (byte >= 0x80) {
          // A command inside a sysex: the sysex was cut short; start over with this byte.
          this.#rx = [byte];
        } else if (rx.length < 1024) rx.push(byte);
        else this.#rx = [];
      } else if (byte >= 0x80) {
        this.#rx = [byte];
      } else rx.push(byte);
      const cur = this.#rx;
      const command = cur[0];
      if (command === undefined || command === START_SYSEX) continue;
      const length = messageLength(command);
      if (length === undefined) {
        this.#rx = [];
        continue;
      }
      if (cur.length >= length) {
        this.#rx = [];
        this.#message(cur);
      }
    }
  }

  #message(m: readonly number[]): void {
    const command = m[0] ?? 0;
    if (command === REPORT_VERSION) {
      this.stats.queries++;
      this.#write(this.#versionReply());
    } else if (command === SYSTEM_RESET) {
      this.#reporting.clear();
      this.#intervalMs = this.#defaultIntervalMs;
    } else if (command === SET_PIN_MODE) {
      const pin = m[1] ?? 0;
      if (pin < PIN_COUNT) this.#pinModes[pin] = m[2] ?? 0;
    } else if ((command & 0xf0) === REPORT_ANALOG) {
      const channel = command & 0x0f;
      if (channel >= ANALOG_CHANNELS) return;
      if (m[1] === 1) {
        this.#reporting.add(channel);
        // StandardFirmata 2.5+ sends the pin's value at once when reporting is enabled: this is
        // what measureNow() relies on to read a channel on demand.
        this.#sendAnalog(channel);
      } else this.#reporting.delete(channel);
    }
    // REPORT_DIGITAL, DIGITAL_MESSAGE, analog/PWM writes, SET_DIGITAL_PIN_VALUE: accepted, no effect.
  }

  #sysex(body: readonly number[]): void {
    const command = body[0];
    this.stats.queries++;
    switch (command) {
      case QUERY_FIRMWARE:
        this.#write(this.#firmwareReply());
        break;
      case CAPABILITY_QUERY: {
        const pins = Array.from({ length: PIN_COUNT }, (_, pin) => [...capabilities(pin), 0x7f]).flat();
        this.#write([START_SYSEX, CAPABILITY_RESPONSE, ...pins, END_SYSEX]);
        break;
      }
      case ANALOG_MAPPING_QUERY: {
        const map = Array.from({ length: PIN_COUNT }, (_, pin) => (pin >= FIRST_ANALOG_PIN ? pin - FIRST_ANALOG_PIN : 0x7f));
        this.#write([START_SYSEX, ANALOG_MAPPING_RESPONSE, ...map, END_SYSEX]);
        break;
      }
      case PIN_STATE_QUERY: {
        const pin = body[1] ?? 0;
        if (pin >= PIN_COUNT) break;
        // State 0: no output written, no pull-up (the emulator keeps no digital state).
        this.#write([START_SYSEX, PIN_STATE_RESPONSE, pin, this.#pinModes[pin] ?? 0, 0, END_SYSEX]);
        break;
      }
      case SAMPLING_INTERVAL: {
        const ms = (body[1] ?? 0) | ((body[2] ?? 0) << 7);
        // StandardFirmata's minimum is 10 ms (MINIMUM_SAMPLING_INTERVAL).
        this.#intervalMs = Math.max(10, ms);
        this.#log.debug({ ms: this.#intervalMs }, 'sampling interval set');
        break;
      }
      default:
        this.stats.queries--;
        this.#log.debug({ command }, 'sysex ignored');
    }
  }

  #sample(): void {
    for (const channel of this.reportingChannels) this.#sendAnalog(channel);
  }

  #valueOf(pattern: AnalogPattern): number {
    if ('raw' in pattern) return Math.min(ADC_MAX, Math.max(0, Math.round(pattern.raw)));
    if ('sine' in pattern) {
      const { meanC, amplitudeC, periodMs } = pattern.sine;
      return celsiusToRaw(pattern.controller, meanC + amplitudeC * Math.sin((2 * Math.PI * this.#clock.monotonicMs()) / periodMs));
    }
    const noise = pattern.noiseC === undefined ? 0 : (this.#random() * 2 - 1) * pattern.noiseC;
    return celsiusToRaw(pattern.controller, pattern.celsius + noise);
  }

  #sendAnalog(channel: number): void {
    const pattern = this.#patterns.get(channel);
    // An unconnected analog input floats; StandardFirmata still reports it. Ours reads 0.
    const raw = pattern === undefined ? 0 : this.#valueOf(pattern);
    if (!this.#write([ANALOG_MESSAGE | channel, lsb(raw), msb(raw)])) return;
    this.stats.analogMessages++;
    if (this.#logFd === undefined) return;
    const controller = pattern?.controller ?? null;
    const pin = `A${channel}`;
    const entry: EmittedAnalog = {
      ts: this.#clock.now(),
      source: `firmata:${this.boardId}/${pin}`,
      pin,
      channel,
      raw,
      celsius: controller === null ? null : rawToCelsius(controller, raw),
      controller,
    };
    writeSync(this.#logFd, `${JSON.stringify(entry)}\n`);
  }
}

