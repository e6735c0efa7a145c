/**
 * The packer (design §4): turns the oldest outbox rows into one telemetry message that fills a
 * byte budget. Planning and building are separate so a batch can be recorded before it is sent:
 *
 *   const { plan, message } = planBatch(rows, settings); // record `plan` with the rows, then send
 *   const again = buildMessage(plan, rowsOf(plan));      // after a crash or a config change
 *
 * `buildMessage` depends only on the plan and the rows, never on the current settings, so a
 * resend is byte-identical with the same message id. It lives in app/ because the bytes come
 * from the wire contract (and gzip); the budget rule itself is pure, in domain/packer.ts.
 */
import { gzipSync } from 'node:zlib';
import { FieldlinkError } from '../../../common/errors.js';
import {
  contentEncodingOf,
  TELEMETRY_CONTENT_TYPE,
  TELEMETRY_GZIP_LEVEL,
  TELEMETRY_GZIP_LEVEL_UNRECORDED,
  telemetryMessageId,
  telemetryMessageSize,
  TelemetryTextBuilder,
  type TelemetryContentEncoding,
  type TelemetryEncoding,
  type TelemetryProperties,
} from '../contract/telemetry.js';
import { budgetBytes, MAX_MESSAGE_BYTES, rowsWithinBudget } from '../domain/packer.js';
import type { OutboxRow } from '../ports/outbox.js';

/** An outbox row as `Outbox.peek` returns it: id (AUTOINCREMENT, never reused) and reading. */
export type PackableRow = OutboxRow;

export interface PackerSettings {
  /** The gateway's IoT Hub device id (it is in the message id and the metered `to` address). */
  readonly gatewayId: string;
  readonly encoding: TelemetryEncoding;
  /** Whole 4 KB billing units a message may fill (1-60); default 1. */
  readonly budgetUnits?: number;
}

/** What is recorded before sending: enough to rebuild the identical message. */
export interface BatchPlan {
  readonly messageId: string;
  readonly gatewayId: string;
  readonly encoding: TelemetryEncoding;
  readonly rowIds: readonly number[];
  /**
   * zlib level of a `json+gzip` body (absent: 9, what plans recorded before the level was
   * are compressed with). Absent for `json`.
   */
  readonly gzipLevel?: number;
}

export interface TelemetryMessage {
  readonly messageId: string;
  readonly body: Buffer;
  readonly contentType: string;
  readonly contentEncoding: TelemetryContentEncoding;
  readonly properties: TelemetryProperties;
  /** Bytes as IoT Hub meters them (body + properties). */
  readonly size: number;
  readonly readingCount: number;
}

/** Message candidates for prefixes of `rows`: each row is encoded once, each body built on demand. */
class Candidates {
  readonly #gatewayId: string;
  readonly #encoding: TelemetryEncoding;
  readonly #gzipLevel: number;
  readonly #rows: readonly PackableRow[];
  readonly text: TelemetryTextBuilder;
  readonly #bodies = new Map<number, Buffer>();
  /** Compressions run (for the tests' cost checks). */
  compressions = 0;

  constructor(gatewayId: string, encoding: TelemetryEncoding, gzipLevel: number, rows: readonly PackableRow[]) {
    this.#gatewayId = gatewayId;
    this.#encoding = encoding;
    this.#gzipLevel = gzipLevel;
    this.#rows = rows;
    this.text = new TelemetryTextBuilder(
      gatewayId,
      rows.map((r) => r.reading),
    );
  }

  #body(n: number): Buffer {
    let body = this.#bodies.get(n);
    if (body === undefined) {
      const text = this.text.text(n);
      if (this.#encoding === 'json+gzip') {
        body = gzipSync(text, { level: this.#gzipLevel });
        this.compressions++;
      } else body = text;
      this.#bodies.set(n, body);
    }
    return body;
  }

  #meta(n: number): Omit<TelemetryMessage, 'body' | 'size'> {
    const first = this.#rows[0] as PackableRow;
    const last = this.#rows[n - 1] as PackableRow;
    return {
      messageId: telemetryMessageId(this.#gatewayId, first.id, last.id),
      contentType: TELEMETRY_CONTENT_TYPE,
      contentEncoding: contentEncodingOf[this.#encoding],
      properties: this.text.properties(n),
      readingCount: n,
    };
  }

  /** Metered size of the message of the first n rows; for `json` without building its body. */
  size(n: number): number {
    const meta = this.#meta(n);
    const bodyLength = this.#encoding === 'json' ? this.text.byteLength(n) : this.#body(n).length;
    // The gateway id is the gateway's IoT Hub device id.
    return telemetryMessageSize({ ...meta, body: Buffer.alloc(0), deviceId: this.#gatewayId }) + bodyLength;
  }

  message(n: number): TelemetryMessage {
    const meta = this.#meta(n);
    const body = this.#body(n);
    return { ...meta, body, size: telemetryMessageSize({ ...meta, body, deviceId: this.#gatewayId }) };
  }
}

/** The message for exactly these rows (no budget applied), gzip at `gzipLevel` for `json+gzip`. */
export function packMessage(gatewayId: string, encoding: TelemetryEncoding, rows: readonly PackableRow[], gzipLevel: number = TELEMETRY_GZIP_LEVEL): TelemetryMessage {
  if (rows.length === 0) throw new RangeError('a telemetry message holds at least one row');
  return new Candidates(gatewayId, encoding, gzipLevel, rows).message(rows.length);
}

export interface PlanOptions {
  /**
   * Where to start looking: the row count expected to fill the budget (e.g. from the last
   * message). Saves a probe or two; the answer is the same edge (the rows that fit, and one
   * more that would not), only the path to it differs.
   */
  readonly guessRows?: number;
}

/** How planBatch found the message (diagnosis and tests). */
export interface PlanCost {
  /** Rows encoded to text (at most the rows given). */
  readonly rowsEncoded: number;
  /** Message sizes computed, and of them gzip runs. */
  readonly probes: number;
  readonly compressions: number;
}

/**
 * Chooses the longest prefix of `rows` (oldest first, as peeked) whose message fits the budget,
 * and builds it. Each row is encoded to its text once; the row count is found from the sizes of
 * a few candidates (rowsWithinBudget), the first guessed from the text length: for `json` the
 * sizes are exact without building a body, for `json+gzip` each probe is one gzip run (about 4
 * per message: the ratio of a first trial, then secant steps to the edge).
 *
 * Throws FieldlinkError READING_TOO_LARGE when the first row alone is over IoT Hub's 256 KB
 * cap (it can never be sent; the outbox must drop it), and a RangeError for caller bugs (no
 * rows, rows out of id order, a budget outside 1-60 units).
 */
export function planBatch(rows: readonly PackableRow[], settings: PackerSettings, opts: PlanOptions = {}): { plan: BatchPlan; message: TelemetryMessage; cost: PlanCost } {
  if (rows.length === 0) throw new RangeError('nothing to pack');
  for (let i = 1; i < rows.length; i++) {
    const prev = (rows[i - 1] as PackableRow).id;
    const id = (rows[i] as PackableRow).id;
    if (id <= prev) throw new RangeError(`rows must be in ascending id order (${prev} then ${id})`);
  }
  const budget = budgetBytes(settings.budgetUnits ?? 1);
  const gzipLevel = TELEMETRY_GZIP_LEVEL;
  const c = new Candidates(settings.gatewayId, settings.encoding, gzipLevel, rows);
  // First guess: the caller's, else as many rows as make `budget` bytes of text: exact but for
  // the properties with `json`; with gzip a first trial that surely fits, whose ratio aims the next probe.
  const guess = opts.guessRows !== undefined && opts.guessRows >= 1 ? Math.min(rows.length, Math.round(opts.guessRows)) : c.text.readingsForLength(budget);
  let probes = 0;
  const n = rowsWithinBudget(rows.length, budget, (k) => (probes++, c.size(k)), guess);
  const message = c.message(n);
  if (message.size > MAX_MESSAGE_BYTES) {
    const rowId = rows[0]?.id;
    throw new FieldlinkError('READING_TOO_LARGE', {
      message: `row ${rowId ?? '?'} alone makes a ${message.size}-byte message, over IoT Hub's ${MAX_MESSAGE_BYTES}-byte cap`,
      details: { rowId, size: message.size },
    });
  }
  const rowIds = new Array<number>(n);
  for (let i = 0; i < n; i++) rowIds[i] = (rows[i] as PackableRow).id;
  const plan: BatchPlan = {
    messageId: message.messageId,
    gatewayId: settings.gatewayId,
    encoding: settings.encoding,
    rowIds,
    ...(settings.encoding === 'json+gzip' ? { gzipLevel } : {}),
  };
  return { plan, message, cost: { rowsEncoded: c.text.encoded, probes, compressions: c.compressions } };
}

/** Rebuilds a recorded batch; `rows` must be exactly the plan's rows, in order. */
export function buildMessage(plan: BatchPlan, rows: readonly PackableRow[]): TelemetryMessage {
  if (rows.length !== plan.rowIds.length || rows.some((r, i) => r.id !== plan.rowIds[i])) {
    throw new RangeError(`rows ${rows.map((r) => r.id).join(',')} are not batch ${plan.messageId}'s rows ${plan.rowIds.join(',')}`);
  }
  const message = packMessage(plan.gatewayId, plan.encoding, rows, plan.gzipLevel ?? TELEMETRY_GZIP_LEVEL_UNRECORDED);
  if (message.messageId !== plan.messageId) throw new RangeError(`batch ${plan.messageId} rebuilt as ${message.messageId}`);
  return message;
}
