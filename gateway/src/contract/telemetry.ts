/**
 * The `fieldlink.readings/1` telemetry format (docs/telemetry-format.md): the body the gateway
 * sends to IoT Hub and the cloud decodes. Shared with cloud/, so it imports only the Reading
 * contract and node:zlib. The encoder here is the only one; the packer (gateway/src/app/packer.ts)
 * decides which readings go in a message, this module decides the bytes.
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import { FieldlinkError } from '../../../common/errors.js';
import type { Reading, ReadingFlags, ReadingKind } from '../../../sensors/contract/reading.js';

/** Schema id, carried in the body (`v`) and in the `flSchema` property. */
export const TELEMETRY_SCHEMA = 'fieldlink.readings/1';
export const TELEMETRY_SCHEMA_PREFIX = 'fieldlink.readings/';
export const TELEMETRY_CONTENT_TYPE = 'application/json';

/** `json` is sent as UTF-8 text, `json+gzip` as gzip of the same text. */
export type TelemetryEncoding = 'json' | 'json+gzip';
export type TelemetryContentEncoding = 'utf-8' | 'gzip';
export const contentEncodingOf: Record<TelemetryEncoding, TelemetryContentEncoding> = { json: 'utf-8', 'json+gzip': 'gzip' };

/**
 * The zlib level new messages are compressed with. Any level decodes the same; it is fixed per
 * message (the packer records it in the batch plan) so the same rows always compress to the
 * same bytes (and Node writes mtime 0). 6 rather than 9: 2-3x less CPU for ~1.5 % more bytes.
 */
export const TELEMETRY_GZIP_LEVEL = 6;
/** The level before it was recorded per batch: a recorded plan without a level was compressed at 9. */
export const TELEMETRY_GZIP_LEVEL_UNRECORDED = 9;
/** A body inflates to at most this much; a message is at most 256 KB, so more is an attack or a bug. */
export const TELEMETRY_MAX_INFLATED_BYTES = 16 * 1024 * 1024;

/**
 * Application property names. IoT Hub routing cannot look inside a compressed body, so every
 * routing key travels here. All values are strings (IoT Hub application properties are).
 */
export const TELEMETRY_PROPERTY = {
  schema: 'flSchema',
  gateway: 'flGateway',
  /** Kinds present, sorted, comma-separated and comma-wrapped: `,humidity,temperature,`. */
  kinds: 'flKinds',
  alarm: 'flAlarm',
  count: 'flCount',
} as const;

// A type alias (not an interface) so it is assignable to Record<string, string>.
export type TelemetryProperties = {
  flSchema: string;
  flGateway: string;
  flKinds: string;
  flAlarm: 'true' | 'false';
  flCount: string;
};

/** Flag bits in a row's `f` field. */
export const FLAG_ALARM = 1;
export const FLAG_CLOCK_UNSYNCED = 2;

/** One entry of the sources table: `[source, kind, unit, seq0]`. */
export type SourceEntry = [source: string, kind: ReadingKind, unit: string, seq0: number];

/**
 * One reading: `[s, dt, v, dq, f?, ds?, b?]` — source index, ts minus the previous row's ts
 * (first row: minus `t0`), value, seq minus the previous seq of the same source entry (first:
 * minus its `seq0`), flag bits, deviceSeq, boot index. Trailing absent fields are dropped;
 * absent ones before a present one are `null` (`f` is then `0`).
 */
export type Row = [s: number, dt: number, v: number, dq: number, f?: number, ds?: number | null, b?: number | null];

export interface TelemetryDocument {
  v: string;
  gw: string;
  t0: number;
  src: SourceEntry[];
  boot?: string[];
  r: Row[];
}

export type TelemetryInvalidReason = 'encoding' | 'gzip' | 'json' | 'version' | 'shape' | 'reading';

function invalid(reason: TelemetryInvalidReason, message: string, cause?: unknown): FieldlinkError {
  return new FieldlinkError('TELEMETRY_INVALID', { message, details: { reason }, ...(cause === undefined ? {} : { cause }) });
}

/** Every kind, checked by the compiler against ReadingKind so the decoder cannot fall behind. */
const KINDS = {
  temperature: true,
  humidity: true,
  setpoint: true,
  mode: true,
  heart_rate: true,
  rr_interval: true,
  energy_expended: true,
  skin_temperature: true,
  battery: true,
  uv_index: true,
  rssi: true,
} as const satisfies Record<ReadingKind, true>;

function isKind(k: unknown): k is ReadingKind {
  return typeof k === 'string' && Object.hasOwn(KINDS, k);
}

function checkReading(r: Reading, i: number): void {
  // The common case without allocating (this runs once per reading packed).
  if (
    typeof r.source === 'string' &&
    r.source !== '' &&
    isKind(r.kind) &&
    typeof r.unit === 'string' &&
    typeof r.value === 'number' &&
    Number.isFinite(r.value) &&
    Number.isSafeInteger(r.ts) &&
    Number.isSafeInteger(r.seq) &&
    r.seq >= 0 &&
    (r.deviceSeq === undefined || (Number.isSafeInteger(r.deviceSeq) && r.deviceSeq >= 0))
  ) {
    return;
  }
  const bad = (what: string): never => {
    throw invalid('reading', `reading ${i} (${r.source}): ${what}`);
  };
  if (typeof r.source !== 'string' || r.source === '') bad('source must be a non-empty string');
  if (!isKind(r.kind)) bad(`unknown kind "${String(r.kind)}"`);
  if (typeof r.unit !== 'string') bad('unit must be a string');
  if (typeof r.value !== 'number' || !Number.isFinite(r.value)) bad('value must be a finite number (JSON has no NaN or Infinity)');
  if (!Number.isSafeInteger(r.ts)) bad('ts must be an integer');
  if (!Number.isSafeInteger(r.seq) || r.seq < 0) bad('seq must be a non-negative integer');
  if (r.deviceSeq !== undefined && (!Number.isSafeInteger(r.deviceSeq) || r.deviceSeq < 0)) bad('deviceSeq must be a non-negative integer');
}

/** Builds the document for readings in the order given (the outbox's row order). */
export function buildTelemetryDocument(gatewayId: string, readings: readonly Reading[]): TelemetryDocument {
  const first = readings[0];
  if (first === undefined) throw invalid('reading', 'a telemetry message holds at least one reading');
  const src: SourceEntry[] = [];
  const srcIndex = new Map<string, number>();
  const lastSeq: number[] = [];
  const boot: string[] = [];
  const bootIndex = new Map<string, number>();
  const rows: Row[] = [];
  let prevTs = first.ts;
  readings.forEach((r, i) => {
    checkReading(r, i);
    const key = JSON.stringify([r.source, r.kind, r.unit]);
    let s = srcIndex.get(key);
    if (s === undefined) {
      s = src.length;
      srcIndex.set(key, s);
      src.push([r.source, r.kind, r.unit, r.seq]);
      lastSeq.push(r.seq);
    }
    const dq = r.seq - (lastSeq[s] ?? r.seq);
    lastSeq[s] = r.seq;
    let b: number | null = null;
    if (r.bootId !== undefined) {
      b = bootIndex.get(r.bootId) ?? null;
      if (b === null) {
        b = boot.length;
        bootIndex.set(r.bootId, b);
        boot.push(r.bootId);
      }
    }
    const f = (r.flags.alarm === true ? FLAG_ALARM : 0) | (r.flags.clockUnsynced === true ? FLAG_CLOCK_UNSYNCED : 0);
    const row: Row = [s, r.ts - prevTs, r.value, dq, f, r.deviceSeq ?? null, b];
    prevTs = r.ts;
    while (row.length > 4 && (row[row.length - 1] === null || (row.length === 5 && row[4] === 0))) row.pop();
    rows.push(row);
  });
  return { v: TELEMETRY_SCHEMA, gw: gatewayId, t0: first.ts, src, ...(boot.length ? { boot } : {}), r: rows };
}

/** The body bytes: compact JSON (key order fixed above), gzip-compressed (at `gzipLevel`) for `json+gzip`. */
export function encodeTelemetry(gatewayId: string, readings: readonly Reading[], encoding: TelemetryEncoding, gzipLevel: number = TELEMETRY_GZIP_LEVEL): Buffer {
  if (readings.length === 0) throw invalid('reading', 'a telemetry message holds at least one reading');
  const text = new TelemetryTextBuilder(gatewayId, readings).text(readings.length);
  return encoding === 'json+gzip' ? gzipSync(text, { level: gzipLevel }) : text;
}

/**
 * The body text of the first n readings, for any n, each reading turned into its row text once
 * (the packer tries several n per message). `text(n)` is byte for byte
 * `JSON.stringify(buildTelemetryDocument(gatewayId, readings.slice(0, n)))`; `byteLength(n)` is
 * its length without building it. Readings are checked and encoded lazily, up to the largest n
 * asked for.
 */
export class TelemetryTextBuilder {
  readonly #gatewayId: string;
  readonly #readings: readonly Reading[];
  /** Per encoded reading: its row text, and after it the table sizes and running flags. */
  readonly #rows: string[] = [];
  /** UTF-8 bytes of rows 0..i-1, commas between them included (index i). */
  readonly #rowBytes: number[] = [0];
  readonly #srcAfter: number[] = [];
  readonly #bootAfter: number[] = [];
  readonly #kindsAfter: number[] = [];
  /** Index of the first alarm reading, or Infinity. */
  #firstAlarm = Infinity;
  /** Sources-table entries as JSON text, and the UTF-8 bytes of the first k joined with commas. */
  readonly #src: string[] = [];
  readonly #srcBytes: number[] = [0];
  readonly #srcIndex = new Map<string, number>();
  readonly #lastSeq: number[] = [];
  readonly #boot: string[] = [];
  readonly #bootBytes: number[] = [0];
  readonly #bootIndex = new Map<string, number>();
  /** Kinds in order of first appearance. */
  readonly #kinds: ReadingKind[] = [];
  #prevTs = 0;
  readonly #head: string;

  constructor(gatewayId: string, readings: readonly Reading[]) {
    this.#gatewayId = gatewayId;
    this.#readings = readings;
    const first = readings[0];
    this.#head = first === undefined ? '' : `{"v":${JSON.stringify(TELEMETRY_SCHEMA)},"gw":${JSON.stringify(gatewayId)},"t0":${first.ts},"src":[`;
    this.#prevTs = first?.ts ?? 0;
  }

  /** Readings encoded so far (lazily, up to the largest n asked for). */
  get encoded(): number {
    return this.#rows.length;
  }

  /** Readings available. */
  get count(): number {
    return this.#readings.length;
  }

  /** Encodes readings up to index n-1 (n at most `count`). */
  #ensure(n: number): void {
    for (let i = this.#rows.length; i < n; i++) {
      const r = this.#readings[i] as Reading;
      checkReading(r, i);
      // Unambiguous: kinds hold no NUL, the unit's length fixes where the source starts.
      const key = `${r.kind}\u0000${r.unit.length}\u0000${r.unit}${r.source}`;
      let s = this.#srcIndex.get(key);
      if (s === undefined) {
        s = this.#src.length;
        this.#srcIndex.set(key, s);
        const entry = JSON.stringify([r.source, r.kind, r.unit, r.seq]);
        this.#src.push(entry);
        this.#srcBytes.push((this.#srcBytes[s] ?? 0) + Buffer.byteLength(entry) + (s === 0 ? 0 : 1));
        this.#lastSeq.push(r.seq);
      }
      const dq = r.seq - (this.#lastSeq[s] ?? r.seq);
      this.#lastSeq[s] = r.seq;
      let b: number | null = null;
      if (r.bootId !== undefined) {
        b = this.#bootIndex.get(r.bootId) ?? null;
        if (b === null) {
          b = this.#boot.length;
          this.#bootIndex.set(r.bootId, b);
          const entry = JSON.stringify(r.bootId);
          this.#boot.push(entry);
          this.#bootBytes.push((this.#bootBytes[b] ?? 0) + Buffer.byteLength(entry) + (b === 0 ? 0 : 1));
        }
      }
      const f = (r.flags.alarm === true ? FLAG_ALARM : 0) | (r.flags.clockUnsynced === true ? FLAG_CLOCK_UNSYNCED : 0);
      if (r.flags.alarm === true && this.#firstAlarm === Infinity) this.#firstAlarm = i;
      if (!this.#kinds.includes(r.kind)) this.#kinds.push(r.kind);
      const ds = r.deviceSeq ?? null;
      // The same text as JSON.stringify of the Row buildTelemetryDocument makes (finite numbers
      // print alike in both; trailing absent fields dropped).
      let row = `[${s},${r.ts - this.#prevTs},${r.value},${dq}`;
      if (b !== null) row += `,${f},${ds === null ? 'null' : ds},${b}]`;
      else if (ds !== null) row += `,${f},${ds}]`;
      else if (f !== 0) row += `,${f}]`;
      else row += ']';
      this.#prevTs = r.ts;
      this.#rows.push(row);
      // Row text is ASCII (numbers, brackets, commas, null).
      this.#rowBytes.push((this.#rowBytes[i] ?? 0) + row.length + (i === 0 ? 0 : 1));
      this.#srcAfter.push(this.#src.length);
      this.#bootAfter.push(this.#boot.length);
      this.#kindsAfter.push(this.#kinds.length);
    }
  }

  #check(n: number): void {
    if (!Number.isInteger(n) || n < 1 || n > this.#readings.length) throw new RangeError(`n must be 1-${this.#readings.length}, got ${n}`);
    this.#ensure(n);
  }

  /** UTF-8 length of `text(n)`. */
  byteLength(n: number): number {
    this.#check(n);
    const src = this.#srcAfter[n - 1] ?? 0;
    const boot = this.#bootAfter[n - 1] ?? 0;
    // head + src entries + `]` (+ `,"boot":[` entries `]`) + `,"r":[` rows `]}`
    return Buffer.byteLength(this.#head) + (this.#srcBytes[src] ?? 0) + 1 + (boot > 0 ? 9 + (this.#bootBytes[boot] ?? 0) + 1 : 0) + 6 + (this.#rowBytes[n] ?? 0) + 2;
  }

  /** The fewest readings whose text is at least `bytes` long (`count` if none is). */
  readingsForLength(bytes: number): number {
    let n = Math.max(1, this.#rows.length);
    this.#ensure(n);
    while (n < this.#readings.length && this.byteLength(n) < bytes) this.#ensure(++n);
    if (this.byteLength(n) < bytes) return n;
    let lo = 0;
    let hi = n;
    // Smallest n in (lo, hi] with byteLength(n) >= bytes (byteLength grows with n).
    while (hi - lo > 1) {
      const mid = (lo + hi) >>> 1;
      if (this.byteLength(mid) >= bytes) hi = mid;
      else lo = mid;
    }
    return hi;
  }

  text(n: number): Buffer {
    this.#check(n);
    const src = this.#srcAfter[n - 1] ?? 0;
    const boot = this.#bootAfter[n - 1] ?? 0;
    const bootPart = boot > 0 ? `,"boot":[${this.#boot.slice(0, boot).join(',')}]` : '';
    return Buffer.from(`${this.#head}${this.#src.slice(0, src).join(',')}]${bootPart},"r":[${this.#rows.slice(0, n).join(',')}]}`, 'utf8');
  }

  /** `telemetryProperties` of the first n readings. */
  properties(n: number): TelemetryProperties {
    this.#check(n);
    return {
      flSchema: TELEMETRY_SCHEMA,
      flGateway: this.#gatewayId,
      flKinds: `,${this.#kinds.slice(0, this.#kindsAfter[n - 1] ?? 0).sort().join(',')},`,
      flAlarm: this.#firstAlarm < n ? 'true' : 'false',
      flCount: String(n),
    };
  }
}

/** Routing keys for a message holding these readings. */
export function telemetryProperties(gatewayId: string, readings: readonly Reading[]): TelemetryProperties {
  const kinds = [...new Set(readings.map((r) => r.kind))].sort();
  return {
    flSchema: TELEMETRY_SCHEMA,
    flGateway: gatewayId,
    flKinds: `,${kinds.join(',')},`,
    flAlarm: readings.some((r) => r.flags.alarm === true) ? 'true' : 'false',
    flCount: String(readings.length),
  };
}

/** `<gatewayId>:<firstRowId>-<lastRowId>` (outbox row ids; a device id may itself hold `:`). */
export function telemetryMessageId(gatewayId: string, firstRowId: number, lastRowId: number): string {
  return `${gatewayId}:${firstRowId}-${lastRowId}`;
}

export function parseTelemetryMessageId(id: string): { gatewayId: string; firstRowId: number; lastRowId: number } | undefined {
  const m = /^(.+):(\d+)-(\d+)$/.exec(id);
  if (!m) return undefined;
  return { gatewayId: m[1] ?? '', firstRowId: Number(m[2]), lastRowId: Number(m[3]) };
}

/** The `to` address the device SDK puts on every device-to-cloud message (it counts in the size). */
export function d2cAddress(deviceId: string): string {
  return `/devices/${deviceId}/messages/events`;
}

/**
 * Size as IoT Hub meters it for the cap and the 4 KB units: body plus names and values of the
 * system properties set (the SDK adds `to`, the device's event address) and of the application
 * properties. Names are counted with their AMQP spelling, as the local hub does; Azure counts
 * system property values only, so this is a slight over-estimate: safe for a budget.
 */
export function telemetryMessageSize(m: {
  deviceId: string;
  body: Buffer;
  messageId: string;
  contentType: string;
  contentEncoding: string;
  properties: Readonly<Record<string, string>>;
}): number {
  const pair = (k: string, v: string): number => Buffer.byteLength(k) + Buffer.byteLength(v);
  let size = m.body.length + pair('to', d2cAddress(m.deviceId)) + pair('message_id', m.messageId) + pair('content_type', m.contentType) + pair('content_encoding', m.contentEncoding);
  for (const [k, v] of Object.entries(m.properties)) size += pair(k, v);
  return size;
}

// ---- decoding -------------------------------------------------------------------------------

function isInt(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x);
}

function parseDocument(text: string): TelemetryDocument {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (cause) {
    throw invalid('json', 'telemetry body is not valid JSON', cause);
  }
  const shape = (what: string): never => {
    throw invalid('shape', `telemetry body: ${what}`);
  };
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return shape('not a JSON object');
  const d = doc as Record<string, unknown>;
  if (typeof d.v !== 'string') return shape('no schema id "v"');
  if (d.v !== TELEMETRY_SCHEMA) {
    throw invalid('version', `telemetry schema "${d.v}" is not supported (this build reads ${TELEMETRY_SCHEMA})`);
  }
  if (typeof d.gw !== 'string' || d.gw === '') shape('"gw" must be a non-empty string');
  if (!isInt(d.t0)) shape('"t0" must be an integer');
  if (!Array.isArray(d.src) || d.src.length === 0) shape('"src" must be a non-empty array');
  (d.src as unknown[]).forEach((e, i) => {
    if (!Array.isArray(e) || e.length !== 4) return shape(`src[${i}] must be [source, kind, unit, seq0]`);
    const [source, kind, unit, seq0] = e as unknown[];
    if (typeof source !== 'string' || source === '') shape(`src[${i}] source must be a non-empty string`);
    if (!isKind(kind)) shape(`src[${i}] kind "${String(kind)}" is unknown`);
    if (typeof unit !== 'string') shape(`src[${i}] unit must be a string`);
    if (!isInt(seq0) || seq0 < 0) shape(`src[${i}] seq0 must be a non-negative integer`);
  });
  if (d.boot !== undefined && (!Array.isArray(d.boot) || !d.boot.every((b) => typeof b === 'string'))) shape('"boot" must be an array of strings');
  if (!Array.isArray(d.r) || d.r.length === 0) shape('"r" must be a non-empty array');
  const srcCount = (d.src as unknown[]).length;
  const bootCount = Array.isArray(d.boot) ? d.boot.length : 0;
  (d.r as unknown[]).forEach((row, i) => {
    if (!Array.isArray(row) || row.length < 4 || row.length > 7) return shape(`r[${i}] must be an array of 4 to 7 fields`);
    const [s, dt, v, dq, f, ds, b] = row as unknown[];
    if (!isInt(s) || s < 0 || s >= srcCount) shape(`r[${i}] source index ${String(s)} is not in "src"`);
    if (!isInt(dt)) shape(`r[${i}] dt must be an integer`);
    if (typeof v !== 'number') shape(`r[${i}] value must be a number`);
    if (!isInt(dq)) shape(`r[${i}] dq must be an integer`);
    if (f !== undefined && (!isInt(f) || f < 0 || f > (FLAG_ALARM | FLAG_CLOCK_UNSYNCED))) shape(`r[${i}] flags must be 0-3`);
    if (ds !== undefined && ds !== null && (!isInt(ds) || ds < 0)) shape(`r[${i}] deviceSeq must be a non-negative integer or null`);
    if (b !== undefined && b !== null && (!isInt(b) || b < 0 || b >= bootCount)) shape(`r[${i}] boot index ${String(b)} is not in "boot"`);
  });
  return doc as TelemetryDocument;
}

/** The document's readings, in row order. */
export function readingsOf(doc: TelemetryDocument): Reading[] {
  const seq = doc.src.map((e) => e[3]);
  let ts = doc.t0;
  return doc.r.map(([s, dt, value, dq, f = 0, ds, b]) => {
    const [source, kind, unit] = doc.src[s] as SourceEntry;
    ts += dt;
    const q = (seq[s] ?? 0) + dq;
    seq[s] = q;
    const flags: { -readonly [K in keyof ReadingFlags]: ReadingFlags[K] } = {};
    if (f & FLAG_ALARM) flags.alarm = true;
    if (f & FLAG_CLOCK_UNSYNCED) flags.clockUnsynced = true;
    const bootId = b === null || b === undefined ? undefined : doc.boot?.[b];
    return {
      source,
      kind,
      value,
      unit,
      ts,
      seq: q,
      ...(ds === null || ds === undefined ? {} : { deviceSeq: ds }),
      flags,
      ...(bootId === undefined ? {} : { bootId }),
    };
  });
}

/** The body as text, undoing `contentEncoding` (`gzip`, or `utf-8`/absent for plain JSON). */
export function telemetryText(body: Buffer, contentEncoding?: string | null): string {
  const enc = (contentEncoding ?? 'utf-8').toLowerCase();
  if (enc === 'gzip') {
    try {
      return gunzipSync(body, { maxOutputLength: TELEMETRY_MAX_INFLATED_BYTES }).toString('utf8');
    } catch (cause) {
      throw invalid('gzip', 'telemetry body is not valid gzip (or inflates past 16 MiB)', cause);
    }
  }
  if (enc === 'utf-8' || enc === 'utf8') return body.toString('utf8');
  throw invalid('encoding', `content encoding "${contentEncoding ?? ''}" is not supported (gzip or utf-8)`);
}

/** Decodes a `fieldlink.readings/1` body; throws FieldlinkError TELEMETRY_INVALID with `details.reason`. */
export function decodeTelemetryDocument(body: Buffer, contentEncoding?: string | null): TelemetryDocument {
  return parseDocument(telemetryText(body, contentEncoding));
}

export function decodeTelemetry(body: Buffer, contentEncoding?: string | null): Reading[] {
  return readingsOf(decodeTelemetryDocument(body, contentEncoding));
}
