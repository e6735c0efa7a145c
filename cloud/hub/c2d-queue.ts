import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { prepared, type Db } from './db.js';
import { HubError } from './hub-errors.js';

export type AckMode = 'none' | 'positive' | 'negative' | 'full';
export type FeedbackStatus = 'Success' | 'Expired' | 'DeliveryCountExceeded' | 'Rejected' | 'Purged';

/** The AMQP properties of a cloud-to-device message, kept so the device receives them as sent. */
export interface C2dProperties {
  messageId?: string;
  correlationId?: string;
  contentType?: string;
  contentEncoding?: string;
  userId?: string;
  applicationProperties: Record<string, string | number | boolean>;
}

export interface C2dMessage {
  readonly seq: number;
  readonly deviceId: string;
  readonly messageId: string | null;
  readonly ack: AckMode;
  readonly enqueuedAt: number;
  readonly expiresAt: number;
  readonly deliveryCount: number;
  readonly props: C2dProperties;
  readonly body: Buffer;
}

export interface FeedbackRecord {
  originalMessageId: string;
  description: string;
  deviceGenerationId: string;
  deviceId: string;
  enqueuedTimeUtc: string;
  statusCode: FeedbackStatus;
}

export interface C2dLimits {
  /** IoT Hub: 50 messages per device queue. */
  maxQueuedPerDevice: number;
  /** IoT Hub default TTL 1 hour, at most 2 days. */
  defaultTtlMs: number;
  maxTtlMs: number;
  /** IoT Hub default maxDeliveryCount 10 (configurable 1-100). */
  maxDeliveryCount: number;
  /** Feedback records the hub keeps while no service receiver collects them. */
  maxFeedbackRecords: number;
}

export const defaultC2dLimits: C2dLimits = {
  maxQueuedPerDevice: 50,
  defaultTtlMs: 3600_000,
  maxTtlMs: 2 * 86400_000,
  maxDeliveryCount: 10,
  maxFeedbackRecords: 10_000,
};

interface Row {
  seq: number;
  device_id: string;
  message_id: string | null;
  ack: string;
  enqueued_at: number;
  expires_at: number;
  delivery_count: number;
  props: string;
  body: Buffer;
}

const ACKS: readonly AckMode[] = ['none', 'positive', 'negative', 'full'];

function toMessage(r: Row): C2dMessage {
  return {
    seq: r.seq,
    deviceId: r.device_id,
    messageId: r.message_id,
    ack: ACKS.includes(r.ack as AckMode) ? (r.ack as AckMode) : 'none',
    enqueuedAt: r.enqueued_at,
    expiresAt: r.expires_at,
    deliveryCount: r.delivery_count,
    props: JSON.parse(r.props) as C2dProperties,
    body: r.body,
  };
}

export function parseAck(value: unknown): AckMode {
  if (value === undefined || value === null || value === '') return 'none';
  if (typeof value === 'string' && ACKS.includes(value as AckMode)) return value as AckMode;
  throw new HubError('ArgumentInvalid', `iothub-ack must be one of none, positive, negative, full; got ${JSON.stringify(value)}`);
}

function wantsFeedback(ack: AckMode, status: FeedbackStatus): boolean {
  if (ack === 'full') return true;
  if (ack === 'positive') return status === 'Success';
  if (ack === 'negative') return status !== 'Success';
  return false;
}

/**
 * Per-device cloud-to-device queues with IoT Hub's semantics: a bounded queue, expiry, a lock
 * while a delivery is outstanding, redelivery after abandon up to maxDeliveryCount, and
 * feedback records for the service's feedback receiver. Emits 'enqueued' (deviceId) and
 * 'feedback' when records are added.
 */
export class C2dQueue extends EventEmitter {
  /** Messages delivered and not yet settled; in memory, so a restart makes them available again. */
  private readonly locked = new Set<number>();

  constructor(
    private readonly db: Db,
    private readonly now: () => number,
    private readonly generationIdOf: (deviceId: string) => string | undefined,
    readonly limits: C2dLimits = defaultC2dLimits,
  ) {
    super();
  }

  enqueue(deviceId: string, props: C2dProperties, body: Buffer, ack: AckMode, expiresAt: number | undefined): C2dMessage {
    const now = this.now();
    const latest = now + this.limits.maxTtlMs;
    const expiry = expiresAt === undefined ? now + this.limits.defaultTtlMs : Math.min(expiresAt, latest);
    const seq = this.db.transaction(() => {
      if (this.generationIdOf(deviceId) === undefined) throw new HubError('DeviceNotFound', `Device ${deviceId} not registered`);
      const queued = this.queuedCount(deviceId);
      if (queued >= this.limits.maxQueuedPerDevice) {
        throw new HubError(
          'DeviceMaximumQueueDepthExceeded',
          `Device ${deviceId} already has ${queued} cloud-to-device messages queued; IoT Hub allows ${this.limits.maxQueuedPerDevice}`,
        );
      }
      const info = prepared(this.db, 
          `INSERT INTO c2d_messages (device_id, message_id, ack, enqueued_at, expires_at, props, body)
           VALUES (?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(deviceId, props.messageId ?? null, ack, now, expiry, JSON.stringify(props), body);
      return Number(info.lastInsertRowid);
    })();
    this.emit('enqueued', deviceId);
    return this.get(seq) as C2dMessage;
  }

  get(seq: number): C2dMessage | undefined {
    const row = prepared(this.db, 'SELECT * FROM c2d_messages WHERE seq = ?').get(seq) as Row | undefined;
    return row ? toMessage(row) : undefined;
  }

  queuedCount(deviceId: string): number {
    return (prepared(this.db, 'SELECT COUNT(*) AS n FROM c2d_messages WHERE device_id = ?').get(deviceId) as { n: number }).n;
  }

  /** The oldest unexpired message not already out for delivery, now locked and counted as a delivery. */
  takeNext(deviceId: string): C2dMessage | undefined {
    this.expire();
    const rows = prepared(this.db, 'SELECT * FROM c2d_messages WHERE device_id = ? ORDER BY seq LIMIT ?')
      .all(deviceId, this.locked.size + 1) as Row[];
    const row = rows.find((r) => !this.locked.has(r.seq));
    if (!row) return undefined;
    prepared(this.db, 'UPDATE c2d_messages SET delivery_count = delivery_count + 1 WHERE seq = ?').run(row.seq);
    this.locked.add(row.seq);
    return toMessage({ ...row, delivery_count: row.delivery_count + 1 });
  }

  /** Device accepted (SDK `complete`). */
  complete(seq: number): void {
    this.finish(seq, 'Success', 'Success');
  }

  /** Device rejected (SDK `reject`): dropped, never redelivered. */
  reject(seq: number): void {
    this.finish(seq, 'Rejected', 'Message rejected by the device');
  }

  /** Device released (SDK `abandon`): back in the queue until maxDeliveryCount is reached. */
  abandon(seq: number): void {
    this.locked.delete(seq);
    const msg = this.get(seq);
    if (!msg) return;
    if (msg.deliveryCount >= this.limits.maxDeliveryCount) {
      this.finish(seq, 'DeliveryCountExceeded', `Delivery count ${msg.deliveryCount} reached maxDeliveryCount ${this.limits.maxDeliveryCount}`);
      return;
    }
    this.emit('enqueued', msg.deviceId);
  }

  /** The link carrying the delivery went away unsettled: the message is available again. */
  unlock(seq: number): void {
    if (!this.locked.delete(seq)) return;
    const msg = this.get(seq);
    if (msg) this.emit('enqueued', msg.deviceId);
  }

  /** Removes every expired message (including ones out for delivery) and records Expired feedback. */
  expire(): number {
    const now = this.now();
    const rows = prepared(this.db, 'SELECT * FROM c2d_messages WHERE expires_at <= ?').all(now) as Row[];
    for (const row of rows) this.finish(row.seq, 'Expired', 'Message expired before the device completed it');
    return rows.length;
  }

  /** Removes a device's queue (device deleted): IoT Hub reports Purged. */
  purge(deviceId: string): void {
    const rows = prepared(this.db, 'SELECT seq FROM c2d_messages WHERE device_id = ?').all(deviceId) as { seq: number }[];
    for (const r of rows) this.finish(r.seq, 'Purged', 'Device queue purged');
  }

  private finish(seq: number, status: FeedbackStatus, description: string): void {
    this.locked.delete(seq);
    let added = false;
    this.db.transaction(() => {
      const msg = this.get(seq);
      if (!msg) return;
      prepared(this.db, 'DELETE FROM c2d_messages WHERE seq = ?').run(seq);
      this.emit('settled', msg, status);
      if (!wantsFeedback(msg.ack, status) || msg.messageId === null) return;
      const record: FeedbackRecord = {
        originalMessageId: msg.messageId,
        description,
        deviceGenerationId: this.generationIdOf(msg.deviceId) ?? '',
        deviceId: msg.deviceId,
        enqueuedTimeUtc: new Date(this.now()).toISOString(),
        statusCode: status,
      };
      prepared(this.db, 'INSERT INTO feedback_records (created_at, record) VALUES (?, ?)').run(this.now(), JSON.stringify(record));
      // Bounded: the oldest uncollected records go first, as IoT Hub's feedback queue expires them.
      prepared(this.db, 'DELETE FROM feedback_records WHERE seq NOT IN (SELECT seq FROM feedback_records ORDER BY seq DESC LIMIT ?)')
        .run(this.limits.maxFeedbackRecords);
      added = true;
    })();
    if (added) this.emit('feedback');
  }

  pendingFeedback(limit: number): { seqs: number[]; records: FeedbackRecord[] } {
    const rows = prepared(this.db, 'SELECT seq, record FROM feedback_records ORDER BY seq LIMIT ?').all(limit) as {
      seq: number;
      record: string;
    }[];
    return { seqs: rows.map((r) => r.seq), records: rows.map((r) => JSON.parse(r.record) as FeedbackRecord) };
  }

  ackFeedback(seqs: readonly number[]): void {
    const del = prepared(this.db, 'DELETE FROM feedback_records WHERE seq = ?');
    this.db.transaction(() => {
      for (const s of seqs) del.run(s);
    })();
  }

  static newMessageId(): string {
    return randomUUID();
  }
}
