/**
 * The serial thermostat line protocol (docs/protocols/serial-thermostat.md): pure functions
 * only, used by the driver (host side) and the emulator (device side) alike.
 *
 * A line is `<body>*<HH>` where HH is the XOR of every byte of `<body>` as two hex digits, and
 * `<body>` is comma-separated fields, the first naming the frame.
 */

/** Longest line in bytes, excluding the `\r\n` terminator (docs §1). */
export const MAX_LINE_BYTES = 128;
export const LINE_END = '\r\n';
/** deviceSeq runs 0..DEVICE_SEQ_MAX and then wraps to 0. */
export const DEVICE_SEQ_MAX = 65535;
/** Command ids run 1..COMMAND_ID_MAX and then wrap to 1 (0 is never used). */
export const COMMAND_ID_MAX = 65535;

export const MODES = ['OFF', 'HEAT', 'COOL', 'AUTO'] as const;
export type Mode = (typeof MODES)[number];
/** The numeric code a mode is reported as (unit ''): its index in MODES. */
export function modeCode(mode: Mode): number {
  return MODES.indexOf(mode);
}

export const RANGES = {
  temperatureC: { min: -40, max: 85 },
  humidityPct: { min: 0, max: 100 },
  setpointC: { min: 5, max: 35 },
  intervalS: { min: 0.05, max: 3600 },
} as const;

export const NAK_REASONS = ['RANGE', 'SYNTAX', 'UNKNOWN'] as const;
export type NakReason = (typeof NAK_REASONS)[number];

export interface ReadingFrame {
  readonly type: 'reading';
  readonly deviceSeq: number;
  readonly temperatureC: number;
  readonly humidityPct: number;
  readonly setpointC: number;
  readonly mode: Mode;
}
export interface AckFrame {
  readonly type: 'ack';
  readonly id: number;
}
export interface NakFrame {
  readonly type: 'nak';
  readonly id: number;
  readonly reason: NakReason;
}
export interface BannerFrame {
  readonly type: 'banner';
  readonly model: string;
  readonly firmware: string;
  readonly deviceId: string;
}
export type Command =
  | { readonly verb: 'READ' }
  | { readonly verb: 'SETPOINT'; readonly celsius: number }
  | { readonly verb: 'INTERVAL'; readonly seconds: number };
export interface CommandFrame {
  readonly type: 'command';
  readonly id: number;
  readonly command: Command;
}
export type Frame = ReadingFrame | AckFrame | NakFrame | BannerFrame | CommandFrame;

export type ParseError =
  | {
      readonly kind: 'malformed';
      readonly reason: string;
      readonly line: string;
      /** For a command line whose checksum is good but whose content is not: what a device answers. */
      readonly nak?: { readonly id: number; readonly reason: NakReason };
    }
  | { readonly kind: 'checksum'; readonly expected: string; readonly actual: string; readonly line: string }
  | { readonly kind: 'oversize'; readonly length: number };

export type ParseResult = { readonly ok: true; readonly frame: Frame } | { readonly ok: false; readonly error: ParseError };

/** XOR of every byte of `body` (the text between the start of the line and `*`), as two upper-case hex digits. */
export function checksum(body: string): string {
  let x = 0;
  for (let i = 0; i < body.length; i++) x ^= body.charCodeAt(i) & 0xff;
  return x.toString(16).toUpperCase().padStart(2, '0');
}

/** `<body>*<HH>`, without the line terminator. */
export function seal(body: string): string {
  return `${body}*${checksum(body)}`;
}

function fixed1(n: number): string {
  // Avoid "-0.0" for values that round to zero.
  const s = n.toFixed(1);
  return s === '-0.0' ? '0.0' : s;
}

export function formatReading(r: Omit<ReadingFrame, 'type'>): string {
  return seal(`R,${r.deviceSeq},${fixed1(r.temperatureC)},${fixed1(r.humidityPct)},${fixed1(r.setpointC)},${r.mode}`);
}

export function formatAck(id: number): string {
  return seal(`ACK,${id}`);
}

export function formatNak(id: number, reason: NakReason): string {
  return seal(`NAK,${id},${reason}`);
}

export function formatBanner(b: Omit<BannerFrame, 'type'>): string {
  return seal(`B,${b.model},${b.firmware},${b.deviceId}`);
}

/** Seconds with at most three decimals and no trailing zeros: 0.05, 1, 2.5. */
function formatSeconds(s: number): string {
  return String(Number(s.toFixed(3)));
}

export function formatCommand(id: number, command: Command): string {
  switch (command.verb) {
    case 'READ':
      return seal(`READ,${id}`);
    case 'SETPOINT':
      return seal(`SETPOINT,${id},${fixed1(command.celsius)}`);
    case 'INTERVAL':
      return seal(`INTERVAL,${id},${formatSeconds(command.seconds)}`);
  }
}

const PRINTABLE = /^[\x20-\x7e]*$/;
const UINT = /^(0|[1-9]\d{0,4})$/;
const DECIMAL1 = /^-?\d{1,3}\.\d$/;
const UDECIMAL3 = /^\d{1,4}(\.\d{1,3})?$/;
const TEXT = /^[A-Za-z0-9._:-]{1,32}$/;

function uint(field: string | undefined, max: number, min = 0): number | undefined {
  if (field === undefined || !UINT.test(field)) return undefined;
  const n = Number(field);
  return n >= min && n <= max ? n : undefined;
}

function inRange(n: number, r: { readonly min: number; readonly max: number }): boolean {
  return n >= r.min && n <= r.max;
}

function malformed(line: string, reason: string, nak?: { id: number; reason: NakReason }): ParseResult {
  return { ok: false, error: nak === undefined ? { kind: 'malformed', reason, line } : { kind: 'malformed', reason, line, nak } };
}

/** One decimal in range, or why not. */
function decimal1(field: string | undefined, range: { readonly min: number; readonly max: number }): number | 'syntax' | 'range' {
  if (field === undefined || !DECIMAL1.test(field)) return 'syntax';
  const n = Number(field);
  return inRange(n, range) ? n : 'range';
}

function parseReading(line: string, f: readonly string[]): ParseResult {
  if (f.length !== 6) return malformed(line, `reading has ${f.length} fields, expected 6`);
  const deviceSeq = uint(f[1], DEVICE_SEQ_MAX);
  if (deviceSeq === undefined) return malformed(line, 'deviceSeq is not an integer 0-65535');
  const temperatureC = decimal1(f[2], RANGES.temperatureC);
  if (typeof temperatureC !== 'number') return malformed(line, `temperature ${temperatureC === 'range' ? 'out of range' : 'is not a one-decimal number'}`);
  const humidityPct = decimal1(f[3], RANGES.humidityPct);
  if (typeof humidityPct !== 'number') return malformed(line, `humidity ${humidityPct === 'range' ? 'out of range' : 'is not a one-decimal number'}`);
  const setpointC = decimal1(f[4], RANGES.setpointC);
  if (typeof setpointC !== 'number') return malformed(line, `setpoint ${setpointC === 'range' ? 'out of range' : 'is not a one-decimal number'}`);
  const mode = MODES.find((m) => m === f[5]);
  if (mode === undefined) return malformed(line, `unknown mode ${JSON.stringify(f[5])}`);
  return { ok: true, frame: { type: 'reading', deviceSeq, temperatureC, humidityPct, setpointC, mode } };
}

function parseCommand(line: string, verb: 'READ' | 'SETPOINT' | 'INTERVAL', f: readonly string[]): ParseResult {
  const id = uint(f[1], COMMAND_ID_MAX, 1);
  if (id === undefined) return malformed(line, `${verb} has no valid id (1-65535)`);
  const syntax = (reason: string): ParseResult => malformed(line, reason, { id, reason: 'SYNTAX' });
  const range = (reason: string): ParseResult => malformed(line, reason, { id, reason: 'RANGE' });
  switch (verb) {
    case 'READ':
      if (f.length !== 2) return syntax('READ takes no argument');
      return { ok: true, frame: { type: 'command', id, command: { verb } } };
    case 'SETPOINT': {
      if (f.length !== 3) return syntax('SETPOINT takes one argument');
      const arg = f[2] ?? '';
      if (!/^-?\d{1,3}(\.\d)?$/.test(arg)) return syntax('setpoint is not a number with at most one decimal');
      const celsius = Number(arg);
      if (!inRange(celsius, RANGES.setpointC)) return range(`setpoint ${arg} outside ${RANGES.setpointC.min}-${RANGES.setpointC.max}`);
      return { ok: true, frame: { type: 'command', id, command: { verb, celsius } } };
    }
    case 'INTERVAL': {
      if (f.length !== 3) return syntax('INTERVAL takes one argument');
      const arg = f[2] ?? '';
      if (!UDECIMAL3.test(arg)) return syntax('interval is not a number of seconds with at most three decimals');
      const seconds = Number(arg);
      if (!inRange(seconds, RANGES.intervalS)) return range(`interval ${arg} outside ${RANGES.intervalS.min}-${RANGES.intervalS.max}`);
      return { ok: true, frame: { type: 'command', id, command: { verb, seconds } } };
    }
  }
}

/**
 * One line (without its `\r\n`; a trailing `\r` is tolerated) to a frame, or to the reason it
 * is not one. Checked in order: length, framing (`*HH`), checksum, then content.
 */
export function parseLine(input: string): ParseResult {
  const line = input.endsWith('\r') ? input.slice(0, -1) : input;
  if (line.length > MAX_LINE_BYTES) return { ok: false, error: { kind: 'oversize', length: line.length } };
  if (!PRINTABLE.test(line)) return malformed(line, 'non-printable byte');
  const star = line.lastIndexOf('*');
  if (star < 0) return malformed(line, 'no checksum');
  const body = line.slice(0, star);
  const actual = line.slice(star + 1);
  if (!/^[0-9A-Fa-f]{2}$/.test(actual)) return malformed(line, 'checksum is not two hex digits');
  const expected = checksum(body);
  if (actual.toUpperCase() !== expected) return { ok: false, error: { kind: 'checksum', expected, actual, line } };
  if (body.includes('*')) return malformed(line, "'*' inside the body");
  const f = body.split(',');
  const tag = f[0] ?? '';
  switch (tag) {
    case 'R':
      return parseReading(line, f);
    case 'ACK': {
      const id = uint(f[1], COMMAND_ID_MAX, 1);
      if (f.length !== 2 || id === undefined) return malformed(line, 'ACK needs exactly one id (1-65535)');
      return { ok: true, frame: { type: 'ack', id } };
    }
    case 'NAK': {
      const id = uint(f[1], COMMAND_ID_MAX, 1);
      const reason = NAK_REASONS.find((r) => r === f[2]);
      if (f.length !== 3 || id === undefined || reason === undefined) return malformed(line, 'NAK needs an id and a reason (RANGE, SYNTAX, UNKNOWN)');
      return { ok: true, frame: { type: 'nak', id, reason } };
    }
    case 'B': {
      const [, model, firmware, deviceId] = f;
      if (f.length !== 4 || [model, firmware, deviceId].some((x) => x === undefined || !TEXT.test(x))) return malformed(line, 'banner needs model, firmware and device id');
      return { ok: true, frame: { type: 'banner', model: model ?? '', firmware: firmware ?? '', deviceId: deviceId ?? '' } };
    }
    case 'READ':
    case 'SETPOINT':
    case 'INTERVAL':
      return parseCommand(line, tag, f);
    default: {
      // An intact line with an id in the command position is an unknown command: a device NAKs it.
      const id = uint(f[1], COMMAND_ID_MAX, 1);
      return malformed(line, `unknown frame ${JSON.stringify(tag)}`, /^[A-Z]{1,16}$/.test(tag) && id !== undefined ? { id, reason: 'UNKNOWN' } : undefined);
    }
  }
}

export type FramerEvent = { readonly type: 'line'; readonly text: string } | { readonly type: 'oversize'; readonly length: number };

/**
 * Splits a byte stream into lines at `\n` (dropping a `\r` before it), never holding more than
 * `maxBytes` + 1: a longer line is reported once as `oversize` and discarded up to the next `\n`.
 * Bytes are decoded as latin1 so every byte stays one character for the checksum.
 */
export class LineFramer {
  #pending: Buffer = Buffer.alloc(0);
  #discarding = false;
  readonly #max: number;

  constructor(maxBytes = MAX_LINE_BYTES) {
    this.#max = maxBytes;
  }

  push(chunk: Buffer): FramerEvent[] {
    const events: FramerEvent[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      const part = chunk.subarray(start, nl);
      start = nl + 1;
      if (this.#discarding) {
        this.#discarding = false;
        this.#pending = Buffer.alloc(0);
        continue;
      }
      let line = this.#pending.length === 0 ? part : Buffer.concat([this.#pending, part]);
      this.#pending = Buffer.alloc(0);
      if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, -1);
      if (line.length > this.#max) events.push({ type: 'oversize', length: line.length });
      else events.push({ type: 'line', text: line.toString('latin1') });
    }
    const rest = chunk.subarray(start);
    if (this.#discarding || rest.length === 0) return events;
    this.#pending = this.#pending.length === 0 ? Buffer.from(rest) : Buffer.concat([this.#pending, rest]);
    // One extra byte for a `\r` that may precede the `\n` still to come.
    if (this.#pending.length > this.#max + 1) {
      events.push({ type: 'oversize', length: this.#pending.length });
      this.#pending = Buffer.alloc(0);
      this.#discarding = true;
    }
    return events;
  }

  /** Forget a partial line (after the port was reopened: its start belongs to another session). */
  reset(): void {
    this.#pending = Buffer.alloc(0);
    this.#discarding = false;
  }
}
