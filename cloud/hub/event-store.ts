import { EventEmitter } from 'node:events';
import { prepared, type Db } from './db.js';

/** The AMQP properties of a device-to-cloud message, as stored. */
export interface EventMeta {
  messageId: string | null;
  correlationId: string | null;
  contentType: string | null;
  contentEncoding: string | null;
  properties: Record<string, unknown>;
  annotations: Record<string, unknown>;
}

/** A device-to-cloud message as the hub stored it. */
export interface StoredEvent extends EventMeta {
  sequenceNumber: number;
  deviceId: string;
  enqueuedTimeUtc: string;
  size: number;
  /** Body as UTF-8 when it is valid UTF-8, else base64 (see bodyEncoding). */
  body: string;
  bodyEncoding: 'utf8' | 'base64';
}

export interface EventRetention {
  /** IoT Hub keeps events 1 day by default; the local hub keeps as long and at most maxEvents. */
  maxAgeMs: number;
  maxEvents: number;
}

export const defaultRetention: EventRetention = { maxAgeMs: 86400_000, maxEvents: 200_000 };

interface Row {
  seq: number;
  device_id: string;
  enqueued_at: number;
  size: number;
  props: string;
  body: Buffer;
}

function decodeBody(body: Buffer): { body: string; bodyEncoding: 'utf8' | 'base64' } {
  const text = body.toString('utf8');
  return Buffer.from(text, 'utf8').equals(body) ? { body: text, bodyEncoding: 'utf8' } : { body: body.toString('base64'), bodyEncoding: 'base64' };
}

export function toStoredEvent(r: Row): StoredEvent {
  const meta = JSON.parse(r.props) as EventMeta;
  return {
    sequenceNumber: r.seq,
    deviceId: r.device_id,
    enqueuedTimeUtc: new Date(r.enqueued_at).toISOString(),
    size: r.size,
    ...meta,
    ...decodeBody(r.body),
  };
}

/** Device-to-cloud messages, kept with bounded retention; emits 'event' for live followers. */
export class EventStore extends EventEmitter {
  private readonly insert;
  private insertsSincePrune = 0;

  constructor(
    private readonly db: Db,
    private readonly now: () => number,
    private readonly retention: EventRetention = defaultRetention,
  ) {
    super();
    this.setMaxListeners(0);
    this.insert = prepared(db, 'INSERT INTO events (device_id, enqueued_at, size, props, body) VALUES (?, ?, ?, ?, ?)');
  }

  /** Stores the message; call inside the transaction that also meters it. */
  append(deviceId: string, size: number, meta: EventMeta, body: Buffer): StoredEvent {
    const enqueuedAt = this.now();
    const info = this.insert.run(deviceId, enqueuedAt, size, JSON.stringify(meta), body);
    const event = toStoredEvent({ seq: Number(info.lastInsertRowid), device_id: deviceId, enqueued_at: enqueuedAt, size, props: JSON.stringify(meta), body });
    if (++this.insertsSincePrune >= 1000) this.prune();
    return event;
  }

  /** Announces stored events once their transaction committed. */
  publish(event: StoredEvent): void {
    this.emit('event', event);
  }

  prune(): void {
    this.insertsSincePrune = 0;
    prepared(this.db, 'DELETE FROM events WHERE enqueued_at < ?').run(this.now() - this.retention.maxAgeMs);
    prepared(this.db, 'DELETE FROM events WHERE seq <= (SELECT MAX(seq) FROM events) - ?').run(this.retention.maxEvents);
  }
}

export function readEvents(db: Db, q: { deviceId?: string; fromSequence?: number; limit: number }): StoredEvent[] {
  const rows = (
    q.deviceId === undefined
      ? prepared(db, 'SELECT * FROM events WHERE seq >= ? ORDER BY seq LIMIT ?').all(q.fromSequence ?? 0, q.limit)
      : prepared(db, 'SELECT * FROM events WHERE device_id = ? AND seq >= ? ORDER BY seq LIMIT ?').all(q.deviceId, q.fromSequence ?? 0, q.limit)
  ) as Row[];
  return rows.map(toStoredEvent);
}
