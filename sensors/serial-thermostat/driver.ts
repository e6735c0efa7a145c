import { SerialPort } from 'serialport';
import { sleepUnlessAborted, type Clock } from '../../common/clock.js';
import { FieldlinkError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { ReadingKind, Sample, SensorSource } from '../contract/index.js';
import { COMMAND_ID_MAX, formatCommand, LineFramer, modeCode, parseLine, type Command, type ReadingFrame } from './protocol.js';
import { produceSamples, type SampleChannel } from '../contract/sample-channel.js';

/** Exponential backoff with jitter for re-opening the port; delays are on the injected clock. */
export interface ReopenPolicy {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly factor: number;
  /** 0..1: the delay is drawn from [(1 - jitter) × nominal, nominal]. */
  readonly jitter: number;
  /** Failed opens in a row after which `samples()` fails with SENSOR_UNAVAILABLE. */
  readonly maxAttempts: number;
}

export const defaultReopenPolicy: ReopenPolicy = { initialMs: 200, maxMs: 30_000, factor: 2, jitter: 0.5, maxAttempts: Number.POSITIVE_INFINITY };

/** The delay before re-open attempt `attempt` (1-based); `random` in [0, 1). */
export function reopenDelayMs(policy: ReopenPolicy, attempt: number, random: () => number): number {
  const nominal = Math.min(policy.maxMs, policy.initialMs * policy.factor ** Math.max(0, attempt - 1));
  return Math.round(nominal * (1 - policy.jitter * random()));
}

export interface SerialThermostatOptions {
  /** Source id prefix, e.g. `serial:thermo-1`; readings are `<id>/temperature` and so on. */
  readonly id: string;
  readonly path: string;
  readonly baudRate?: number;
  readonly clock: Clock;
  readonly log: Logger;
  /** How long a command waits for ACK/NAK before failing with TIMEOUT. */
  readonly commandTimeoutMs?: number;
  readonly reopen?: Partial<ReopenPolicy>;
  readonly random?: () => number;
}

export interface SerialThermostatCounters {
  /** Complete lines received (good or bad), not counting oversize ones. */
  lines: number;
  readings: number;
  malformed: number;
  badChecksum: number;
  oversize: number;
  /** Successful opens after the port had been lost. */
  reopens: number;
}

interface PendingCommand {
  readonly resolve: () => void;
  readonly reject: (e: unknown) => void;
  readonly deadline: AbortController;
}

const KINDS: ReadonlyArray<readonly [ReadingKind, string, (r: ReadingFrame) => number]> = [
  ['temperature', 'Cel', (r) => r.temperatureC],
  ['humidity', '%', (r) => r.humidityPct],
  ['setpoint', 'Cel', (r) => r.setpointC],
  ['mode', '', (r) => modeCode(r.mode)],
];

/**
 * A serial thermostat (docs/protocols/serial-thermostat.md) over `serialport`. `samples()` owns
 * the port: it opens it, re-opens it with backoff whenever it closes or disappears, and closes
 * it when the signal aborts. Commands work while `samples()` has the port open.
 */
export class SerialThermostat implements SensorSource {
  readonly id: string;
  readonly counters: SerialThermostatCounters = { lines: 0, readings: 0, malformed: 0, badChecksum: 0, oversize: 0, reopens: 0 };
  readonly #opts: SerialThermostatOptions;
  readonly #policy: ReopenPolicy;
  readonly #log: Logger;
  readonly #framer = new LineFramer();
  readonly #pending = new Map<number, PendingCommand>();
  #port: SerialPort | undefined;
  #nextId = 1;
  #running = false;

  constructor(opts: SerialThermostatOptions) {
    this.id = opts.id;
    this.#opts = opts;
    this.#policy = { ...defaultReopenPolicy, ...opts.reopen };
    this.#log = opts.log.child({ component: 'serial-thermostat', source: opts.id, path: opts.path });
  }

  /** True while the port is open. */
  get connected(): boolean {
    return this.#port?.isOpen === true;
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

  measureNow(): Promise<void> {
    return this.readNow();
  }

  /** Ask for a reading now; resolves on ACK (the reading follows on the stream). */
  readNow(): Promise<void> {
    return this.#command({ verb: 'READ' });
  }

  setSetpoint(celsius: number): Promise<void> {
    return this.#command({ verb: 'SETPOINT', celsius });
  }

  /** Reporting interval in seconds. */
  setInterval(seconds: number): Promise<void> {
    return this.#command({ verb: 'INTERVAL', seconds });
  }

  async #connectionLoop(signal: AbortSignal, channel: SampleChannel): Promise<void> {
    let failures = 0;
    let lost = false;
    while (!signal.aborted) {
      let port: SerialPort;
      try {
        port = await this.#open();
      } catch (cause) {
        failures++;
        if (failures >= this.#policy.maxAttempts) {
          throw new FieldlinkError('SENSOR_UNAVAILABLE', { message: `cannot open ${this.#opts.path} after ${failures} attempts`, cause });
        }
        const delayMs = reopenDelayMs(this.#policy, failures, this.#opts.random ?? Math.random);
        this.#log.warn({ err: cause, attempt: failures, delayMs }, 'serial port open failed; retrying');
        if (!(await this.#sleep(delayMs, signal))) break;
        continue;
      }
      if (lost) {
        this.counters.reopens++;
        this.#log.info({ attempts: failures + 1 }, 'serial port reopened');
      } else {
        this.#log.info('serial port open');
      }
      failures = 0;
      const reason = await this.#serve(port, signal, channel);
      if (signal.aborted) break;
      lost = true;
      this.#log.warn({ reason }, 'serial port lost; reopening');
      failures = 1;
      if (!(await this.#sleep(reopenDelayMs(this.#policy, 1, this.#opts.random ?? Math.random), signal))) break;
    }
  }

  /** false if aborted while sleeping. */
  #sleep(ms: number, signal: AbortSignal): Promise<boolean> {
    return sleepUnlessAborted(this.#opts.clock, ms, signal);
  }

  #open(): Promise<SerialPort> {
    return new Promise((resolve, reject) => {
      const port = new SerialPort({ path: this.#opts.path, baudRate: this.#opts.baudRate ?? 9600, autoOpen: false });
      // Always listening: a write in flight when the device disappears emits 'error' (EIO),
      // which would otherwise crash the process.
      port.on('error', (err) => this.#log.warn({ err }, 'serial port error'));
      port.open((err) => (err ? reject(err) : resolve(port)));
    });
  }

  /** Reads the open port until it closes (returns why) or the signal aborts (closes it). */
  #serve(port: SerialPort, signal: AbortSignal, channel: SampleChannel): Promise<string> {
    this.#port = port;
    this.#framer.reset();
    return new Promise<string>((resolve) => {
      const onData = (chunk: Buffer): void => this.#onData(chunk, channel);
      const finish = (reason: string): void => {
        signal.removeEventListener('abort', onAbort);
        port.off('data', onData);
        if (this.#port === port) this.#port = undefined;
        this.#failPending(new FieldlinkError('SENSOR_UNAVAILABLE', { message: `serial port ${this.#opts.path} closed: ${reason}` }));
        resolve(reason);
      };
      const onAbort = (): void => {
        port.removeAllListeners('close');
        if (port.isOpen) {
          port.close((err) => {
            if (err) this.#log.warn({ err }, 'closing the serial port failed');
            finish('aborted');
          });
        } else finish('aborted');
      };
      port.on('data', onData);
      port.once('close', (err: unknown) => {
        const e = err as { disconnected?: boolean; message?: string } | null | undefined;
        finish(e?.disconnected ? `disconnected: ${e.message ?? 'device gone'}` : (e?.message ?? 'closed'));
      });
      // Aborted while the port was opening: no abort event will come, close it now.
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  #onData(chunk: Buffer, channel: SampleChannel): void {
    for (const ev of this.#framer.push(chunk)) {
      if (ev.type === 'oversize') {
        this.counters.oversize++;
        this.#log.debug({ length: ev.length }, 'oversize line discarded');
        continue;
      }
      this.counters.lines++;
      const parsed = parseLine(ev.text);
      if (!parsed.ok) {
        const e = parsed.error;
        if (e.kind === 'checksum') this.counters.badChecksum++;
        else if (e.kind === 'oversize') this.counters.oversize++;
        else this.counters.malformed++;
        this.#log.debug({ error: e }, 'line skipped');
        continue;
      }
      const frame = parsed.frame;
      switch (frame.type) {
        case 'reading': {
          this.counters.readings++;
          const ts = this.#opts.clock.now();
          for (const [kind, unit, value] of KINDS) {
            channel.push({ source: `${this.id}/${kind}`, kind, value: value(frame), unit, ts, deviceSeq: frame.deviceSeq, flags: {} });
          }
          break;
        }
        case 'ack':
        case 'nak':
          this.#settle(frame.id, frame.type === 'ack' ? undefined : new FieldlinkError('SENSOR_COMMAND_REJECTED', {
            message: `thermostat ${this.id} answered NAK ${frame.reason} to command ${frame.id}`,
            details: { id: frame.id, reason: frame.reason },
          }));
          break;
        case 'banner':
          this.#log.info({ model: frame.model, firmware: frame.firmware, deviceId: frame.deviceId }, 'thermostat booted');
          break;
        case 'command':
          // A host-to-device line coming back: an echoing link or a loop; not ours to answer.
          this.counters.malformed++;
          this.#log.debug({ line: ev.text }, 'command line received from the device side; skipped');
          break;
      }
    }
  }

  #settle(id: number, error: FieldlinkError | undefined): void {
    const p = this.#pending.get(id);
    if (p === undefined) {
      this.#log.debug({ id }, 'answer to no pending command');
      return;
    }
    this.#pending.delete(id);
    p.deadline.abort();
    if (error === undefined) p.resolve();
    else p.reject(error);
  }

  #failPending(error: FieldlinkError): void {
    for (const id of [...this.#pending.keys()]) this.#settle(id, error);
  }

  #command(command: Command): Promise<void> {
    const port = this.#port;
    if (port === undefined || !port.isOpen) {
      return Promise.reject(new FieldlinkError('SENSOR_UNAVAILABLE', { message: `serial port ${this.#opts.path} is not open` }));
    }
    const id = this.#nextId;
    this.#nextId = id >= COMMAND_ID_MAX ? 1 : id + 1;
    const line = formatCommand(id, command);
    const timeoutMs = this.#opts.commandTimeoutMs ?? 2000;
    return new Promise<void>((resolve, reject) => {
      const deadline = new AbortController();
      this.#pending.set(id, { resolve, reject, deadline });
      this.#opts.clock.sleep(timeoutMs, deadline.signal).then(
        () => {
          if (!this.#pending.delete(id)) return;
          reject(new FieldlinkError('TIMEOUT', { message: `thermostat ${this.id} did not answer ${command.verb} (id ${id}) within ${timeoutMs} ms`, details: { id, verb: command.verb } }));
        },
        () => undefined,
      );
      port.write(`${line}\r\n`, (err) => {
        if (err) this.#settle(id, new FieldlinkError('SENSOR_UNAVAILABLE', { message: `writing ${command.verb} to ${this.#opts.path} failed`, cause: err }));
      });
    });
  }
}
