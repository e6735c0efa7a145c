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
import { FieldlinkError } from '../../../common/errors.js';
import {
  contentEncodingOf,
  encodeTelemetry,
  TELEMETRY_CONTENT_TYPE,
  telemetryMessageId,
  telemetryMessageSize,
  telemetryProperties,
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

/** The message for exactly these rows (no budget applied). */
export function packMessage(gatewayId: string, encoding: TelemetryEncoding, rows: readonly PackableRow[]): TelemetryMessage {
  const first = rows[0];
  const last = rows.at(-1);
  if (first === undefined || last === undefined) throw new RangeError('a telemetry message holds at least one row');
  const readings = rows.map((r) => r.reading);
  const message = {
    messageId: telemetryMessageId(gatewayId, first.id, last.id),
    body: encodeTelemetry(gatewayId, readings, encoding),
    contentType: TELEMETRY_CONTENT_TYPE,
    contentEncoding: contentEncodingOf[encoding],
    properties: telemetryProperties(gatewayId, readings),
    readingCount: rows.length,
  };
  // The gateway id is the gateway's IoT Hub device id.
  return { ...message, size: telemetryMessageSize({ ...message, deviceId: gatewayId }) };
}

/**
 * Chooses the longest prefix of `rows` (oldest first, as peeked) whose message fits the budget,
 * and builds it. Throws FieldlinkError READING_TOO_LARGE when the first row alone is over IoT
 * Hub's 256 KB cap (it can never be sent; the outbox must drop it), and a RangeError for caller
 * bugs (no rows, rows out of id order, a budget outside 1-60 units).
 */
export function planBatch(rows: readonly PackableRow[], settings: PackerSettings): { plan: BatchPlan; message: TelemetryMessage } {
  if (rows.length === 0) throw new RangeError('nothing to pack');
  rows.forEach((r, i) => {
    const prev = rows[i - 1];
    if (prev !== undefined && r.id <= prev.id) throw new RangeError(`rows must be in ascending id order (${prev.id} then ${r.id})`);
  });
  const budget = budgetBytes(settings.budgetUnits ?? 1);
  const cache = new Map<number, TelemetryMessage>();
  const build = (n: number): TelemetryMessage => {
    let m = cache.get(n);
    if (m === undefined) {
      m = packMessage(settings.gatewayId, settings.encoding, rows.slice(0, n));
      cache.set(n, m);
    }
    return m;
  };
  const n = rowsWithinBudget(rows.length, budget, (k) => build(k).size);
  const message = build(n);
  if (message.size > MAX_MESSAGE_BYTES) {
    const rowId = rows[0]?.id;
    throw new FieldlinkError('READING_TOO_LARGE', {
      message: `row ${rowId ?? '?'} alone makes a ${message.size}-byte message, over IoT Hub's ${MAX_MESSAGE_BYTES}-byte cap`,
      details: { rowId, size: message.size },
    });
  }
  const plan: BatchPlan = {
    messageId: message.messageId,
    gatewayId: settings.gatewayId,
    encoding: settings.encoding,
    rowIds: rows.slice(0, n).map((r) => r.id),
  };
  return { plan, message };
}

/** Rebuilds a recorded batch; `rows` must be exactly the plan's rows, in order. */
export function buildMessage(plan: BatchPlan, rows: readonly PackableRow[]): TelemetryMessage {
  const ids = rows.map((r) => r.id);
  if (ids.length !== plan.rowIds.length || ids.some((id, i) => id !== plan.rowIds[i])) {
    throw new RangeError(`rows ${ids.join(',')} are not batch ${plan.messageId}'s rows ${plan.rowIds.join(',')}`);
  }
  const message = packMessage(plan.gatewayId, plan.encoding, rows);
  if (message.messageId !== plan.messageId) throw new RangeError(`batch ${plan.messageId} rebuilt as ${message.messageId}`);
  return message;
}
