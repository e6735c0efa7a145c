import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { SerialPort } from 'serialport';
import { systemClock, type Clock } from '../../common/clock.js';
import { FieldlinkError } from '../../common/errors.js';
import { createLogger, type Logger } from '../../common/log.js';
import {
  DEVICE_SEQ_MAX,
  formatAck,
  formatBanner,
  formatNak,
  formatReading,
  LineFramer,
  MAX_LINE_BYTES,
  modeCode,
  parseLine,
  RANGES,
  type Command,
  type Mode,
} from './protocol.js';
import { seededRandom } from '../../common/seeded-random.js';
import { startSocatPair, stopSocat } from '../pty/socat-pair.js';

/** Periodic faults, e.g. from the command line: every Nth reading line, or every N ms. */
export interface FaultSchedule {
  readonly garbageEvery?: number;
  readonly badChecksumEvery?: number;
  readonly oversizeEvery?: number;
  readonly disconnectEveryMs?: number;
  readonly disconnectForMs?: number;
  readonly silenceEveryMs?: number;
  readonly silenceForMs?: number;
}

export interface ThermostatEmulatorOptions {
  /** The host side's path; the emulator keeps `<link>.emu`. */
  readonly link: string;
  readonly rateHz?: number;
  readonly seed?: number;
  /** Device id, in the banner and in logged sources (`serial:<id>/<kind>`). */
  readonly deviceId?: string;
  /** JSON lines, one per value of every reading line written. */
  readonly readingLog?: string;
  readonly mode?: Mode;
  readonly faults?: FaultSchedule;
  readonly clock?: Clock;
  readonly log?: Logger;
}

export interface EmittedReading {
  readonly ts: number;
  readonly source: string;
  readonly deviceSeq: number;
  readonly kind: 'temperature' | 'humidity' | 'setpoint' | 'mode';
  readonly value: number;
  readonly unit: string;
  /** Set when the line was deliberately corrupted: a driver must not accept it. */
  readonly fault?: 'checksum';
}



const round1 = (n: number): number => Math.round(n * 10) / 10;
const clamp = (n: number, r: { readonly min: number; readonly max: number }): number => Math.min(r.max, Math.max(r.min, n));

/**
 * A serial thermostat on a pseudo-terminal: spawns `socat` for a pty pair, serves the protocol
 * on `<link>.emu`, and leaves `<link>` for the host. Values drift from a seeded PRNG.
 */
export class ThermostatEmulator {
  readonly link: string;
  readonly emuLink: string;
  readonly deviceId: string;
  /** Everything written and answered, for tests. */
  readonly stats = { readingLines: 0, acks: 0, naks: 0, commandsIgnored: 0, disconnects: 0 };
  readonly #opts: ThermostatEmulatorOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #random: () => number;
  readonly #framer = new LineFramer();
  readonly #stop = new AbortController();
  #socat: ChildProcess | undefined;
  #port: SerialPort | undefined;
  #logFd: number | undefined;
  #intervalMs: number;
  #deviceSeq = 0;
  #temperature = 20.5;
  #humidity = 45;
  #setpoint = 21;
  #mode: Mode;
  #silentUntil = 0;
  #disconnected = false;
  #pendingFaults = { garbage: 0, badChecksum: 0, oversize: 0 };
  /** Background work stop() waits for: the emit loop, fault schedules, an outage in progress. */
  readonly #loops = new Set<Promise<void>>();
  readonly #killOnExit = (): void => {
    this.#socat?.kill('SIGKILL');
  };

  private constructor(opts: ThermostatEmulatorOptions) {
    this.#opts = opts;
    this.link = opts.link;
    this.emuLink = `${opts.link}.emu`;
    this.deviceId = opts.deviceId ?? 'thermo-1';
    this.#clock = opts.clock ?? systemClock;
    this.#log = (opts.log ?? createLogger({ level: 'silent' })).child({ component: 'thermostat-emulator', link: opts.link });
    this.#random = seededRandom(opts.seed ?? 1);
    this.#intervalMs = 1000 / (opts.rateHz ?? 1);
    this.#mode = opts.mode ?? 'AUTO';
    this.#temperature = round1(18 + this.#random() * 6);
    this.#humidity = round1(35 + this.#random() * 20);
  }

  static async start(opts: ThermostatEmulatorOptions): Promise<ThermostatEmulator> {
    const rate = opts.rateHz ?? 1;
    if (!(rate > 0 && rate <= 1000 / (RANGES.intervalS.min * 1000))) {
      throw new FieldlinkError('CONFIG_INVALID', { message: `rate must be above 0 and at most ${1 / RANGES.intervalS.min} Hz, not ${rate}` });
    }
    const emu = new ThermostatEmulator(opts);
    process.on('exit', emu.#killOnExit);
    try {
      if (opts.readingLog !== undefined) emu.#logFd = openSync(opts.readingLog, 'a');
      await emu.#connect();
    } catch (e) {
      await emu.stop();
      throw e;
    }
    emu.#loops.add(emu.#emitLoop());
    const f = opts.faults ?? {};
    if (f.disconnectEveryMs !== undefined) emu.#loops.add(emu.#every(f.disconnectEveryMs, () => emu.disconnect(f.disconnectForMs ?? 1000)));
    if (f.silenceEveryMs !== undefined) emu.#loops.add(emu.#every(f.silenceEveryMs, () => emu.silence(f.silenceForMs ?? 1000)));
    return emu;
  }

  /** The socat process id (for tests that check it is gone). */
  get socatPid(): number | undefined {
    return this.#socat?.pid;
  }

  get intervalMs(): number {
    return this.#intervalMs;
  }

  get setpoint(): number {
    return this.#setpoint;
  }

  /** Write a line of random bytes before the next reading. */
  injectGarbage(count = 1): void {
    this.#pendingFaults.garbage += count;
  }

  /** Send the next `count` readings with a wrong checksum. */
  injectBadChecksum(count = 1): void {
    this.#pendingFaults.badChecksum += count;
  }

  /** Write a line longer than the protocol allows before the next reading. */
  injectOversize(count = 1): void {
    this.#pendingFaults.oversize += count;
  }

  /** Stop emitting and answering for `ms` (commands received meanwhile are dropped). */
  silence(ms: number): void {
    this.#silentUntil = Math.max(this.#silentUntil, this.#clock.monotonicMs() + ms);
  }

  /** The device disappears: socat is killed (the host sees its port close), and comes back after `ms`. */
  disconnect(ms: number): Promise<void> {
    if (this.#disconnected || this.#stop.signal.aborted) return Promise.resolve();
    this.#disconnected = true;
    const outage = this.#outage(ms);
    const tracked: Promise<void> = outage.catch(() => undefined).finally(() => this.#loops.delete(tracked));
    this.#loops.add(tracked);
    return outage;
  }

  async #outage(ms: number): Promise<void> {
    this.stats.disconnects++;
    this.#log.info({ forMs: ms }, 'disconnecting');
    try {
      await this.#disconnectNow();
      await this.#clock.sleep(ms, this.#stop.signal);
      await this.#connect();
      // stop() may have run while socat was starting: it must not outlive the emulator.
      if (this.#stop.signal.aborted) await this.#disconnectNow();
    } catch (e) {
      if (!this.#stop.signal.aborted) throw e;
    } finally {
      this.#disconnected = false;
    }
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await Promise.allSettled(this.#loops);
    await this.#disconnectNow();
    process.off('exit', this.#killOnExit);
    if (this.#logFd !== undefined) closeSync(this.#logFd);
    this.#logFd = undefined;
  }

  async #connect(): Promise<void> {
    await this.#startSocat();
    const port = new SerialPort({ path: this.emuLink, baudRate: 9600, autoOpen: false });
    // Always listening: a write in flight when the pty goes away emits 'error' (EIO).
    port.on('error', (err) => this.#log.warn({ err }, 'emulator port error'));
    port.on('data', (chunk: Buffer) => this.#onData(chunk));
    await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(new FieldlinkError('EMULATOR_FAILED', { message: `cannot open ${this.emuLink}`, cause: err })) : resolve())));
    this.#port = port;
    this.#framer.reset();
    // The host flushes on open, so this banner is usually lost; it is informative only.
    this.#write(formatBanner({ model: 'FLT-100', firmware: '1.0', deviceId: this.deviceId }));
    this.#log.info('emulator ready');
  }

  async #disconnectNow(): Promise<void> {
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


  #write(line: string): boolean {
    const port = this.#port;
    if (port === undefined || !port.isOpen || this.#disconnected) return false;
    port.write(`${line}\r\n`);
    return true;
  }

  #writeRaw(bytes: Buffer): void {
    const port = this.#port;
    if (port !== undefined && port.isOpen && !this.#disconnected) port.write(bytes);
  }

  #silent(): boolean {
    return this.#clock.monotonicMs() < this.#silentUntil;
  }

  async #every(ms: number, action: () => Promise<void> | void): Promise<void> {
    try {
      for (;;) {
        await this.#clock.sleep(ms, this.#stop.signal);
        await action();
      }
    } catch (e) {
      if (!this.#stop.signal.aborted) this.#log.error({ err: e }, 'fault schedule failed');
    }
  }

  async #emitLoop(): Promise<void> {
    try {
      for (;;) {
        await this.#clock.sleep(this.#intervalMs, this.#stop.signal);
        if (!this.#silent()) this.#emitReading();
      }
    } catch (e) {
      if (!this.#stop.signal.aborted) this.#log.error({ err: e }, 'emit loop failed');
    }
  }

  #drift(): void {
    // Temperature relaxes towards the setpoint unless OFF, humidity wanders; both with noise.
    const target = this.#mode === 'OFF' ? 18 : this.#setpoint;
    this.#temperature = round1(clamp(this.#temperature + 0.05 * (target - this.#temperature) + (this.#random() - 0.5) * 0.2, RANGES.temperatureC));
    this.#humidity = round1(clamp(this.#humidity + (this.#random() - 0.5) * 0.6, { min: 20, max: 80 }));
  }

  #emitReading(): void {
    const f = this.#opts.faults ?? {};
    const n = this.stats.readingLines + 1;
    const due = (every: number | undefined): boolean => every !== undefined && every > 0 && n % every === 0;
    if (this.#pendingFaults.garbage > 0 || due(f.garbageEvery)) {
      this.#pendingFaults.garbage = Math.max(0, this.#pendingFaults.garbage - 1);
      const junk = Buffer.from(Array.from({ length: 8 + Math.floor(this.#random() * 24) }, () => Math.floor(this.#random() * 256)).filter((b) => b !== 0x0a));
      this.#writeRaw(Buffer.concat([junk, Buffer.from('\r\n')]));
    }
    if (this.#pendingFaults.oversize > 0 || due(f.oversizeEvery)) {
      this.#pendingFaults.oversize = Math.max(0, this.#pendingFaults.oversize - 1);
      this.#writeRaw(Buffer.from(`${'X'.repeat(MAX_LINE_BYTES + 40)}\r\n`, 'latin1'));
    }
    this.#drift();
    const deviceSeq = this.#deviceSeq;
    this.#deviceSeq = deviceSeq >= DEVICE_SEQ_MAX ? 0 : deviceSeq + 1;
    const reading = { deviceSeq, temperatureC: this.#temperature, humidityPct: this.#humidity, setpointC: this.#setpoint, mode: this.#mode };
    let line = formatReading(reading);
    let fault: 'checksum' | undefined;
    if (this.#pendingFaults.badChecksum > 0 || due(f.badChecksumEvery)) {
      this.#pendingFaults.badChecksum = Math.max(0, this.#pendingFaults.badChecksum - 1);
      const sum = parseInt(line.slice(-2), 16);
      line = `${line.slice(0, -2)}${((sum ^ 0x5a) & 0xff).toString(16).toUpperCase().padStart(2, '0')}`;
      fault = 'checksum';
    }
    if (!this.#write(line)) return;
    this.stats.readingLines++;
    this.#logReading(reading, fault);
  }

  #logReading(r: { deviceSeq: number; temperatureC: number; humidityPct: number; setpointC: number; mode: Mode }, fault: 'checksum' | undefined): void {
    if (this.#logFd === undefined) return;
    const ts = this.#clock.now();
    const source = `serial:${this.deviceId}`;
    const entries: EmittedReading[] = [
      { ts, source: `${source}/temperature`, deviceSeq: r.deviceSeq, kind: 'temperature', value: r.temperatureC, unit: 'Cel' },
      { ts, source: `${source}/humidity`, deviceSeq: r.deviceSeq, kind: 'humidity', value: r.humidityPct, unit: '%' },
      { ts, source: `${source}/setpoint`, deviceSeq: r.deviceSeq, kind: 'setpoint', value: r.setpointC, unit: 'Cel' },
      { ts, source: `${source}/mode`, deviceSeq: r.deviceSeq, kind: 'mode', value: modeCode(r.mode), unit: '' },
    ];
    writeSync(this.#logFd, entries.map((e) => `${JSON.stringify(fault === undefined ? e : { ...e, fault })}\n`).join(''));
  }

  #onData(chunk: Buffer): void {
    for (const ev of this.#framer.push(chunk)) {
      if (ev.type === 'oversize' || this.#silent()) {
        this.stats.commandsIgnored++;
        continue;
      }
      const parsed = parseLine(ev.text);
      if (!parsed.ok) {
        // Bad checksum or no usable id: the id cannot be trusted, so there is no one to NAK.
        if (parsed.error.kind === 'malformed' && parsed.error.nak !== undefined) {
          this.stats.naks++;
          this.#write(formatNak(parsed.error.nak.id, parsed.error.nak.reason));
        } else this.stats.commandsIgnored++;
        continue;
      }
      const frame = parsed.frame;
      if (frame.type !== 'command') {
        this.stats.commandsIgnored++;
        continue;
      }
      this.stats.acks++;
      this.#write(formatAck(frame.id));
      this.#apply(frame.command);
    }
  }

  #apply(command: Command): void {
    switch (command.verb) {
      case 'READ':
        this.#emitReading();
        break;
      case 'SETPOINT':
        this.#setpoint = command.celsius;
        break;
      case 'INTERVAL':
        this.#intervalMs = command.seconds * 1000;
        break;
    }
  }
}

