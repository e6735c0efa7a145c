import type { Db } from './db.js';
import type { EventMeta, EventStore, StoredEvent } from './event-store.js';
import { HubError } from './hub-errors.js';
import { billedUnits, type Meter } from './meter.js';
import type { DeviceRegistry } from './registry.js';

/** IoT Hub's device-to-cloud message cap, properties included. */
export const D2C_MAX_BYTES = 256 * 1024;

interface Pending {
  deviceId: string;
  size: number;
  body: Buffer;
  meta: EventMeta;
  done: (err?: HubError) => void;
}

/**
 * Admission of device-to-cloud messages. The size cap is checked at once; accepted messages
 * are stored and metered in group commits, one transaction per event-loop turn, and each is
 * acknowledged (`done`) only after its transaction committed. A commit per message cost a
 * quarter of the hub's CPU per message (bench/hub-d2c); grouping keeps "accepted means
 * stored" and removes that cost under load.
 */
export class D2cIntake {
  private pending: Pending[] = [];
  private scheduled: NodeJS.Immediate | undefined;

  constructor(
    private readonly db: Db,
    private readonly events: EventStore,
    private readonly meter: Meter,
    private readonly registry: DeviceRegistry,
    private readonly onCommitError: (err: unknown) => void,
    private readonly maxBytes = D2C_MAX_BYTES,
  ) {}

  /** Throws MessageTooLarge at once; otherwise `done` runs after the message is committed. */
  submit(deviceId: string, size: number, body: Buffer, meta: EventMeta, done: (err?: HubError) => void): void {
    if (size > this.maxBytes) {
      this.meter.add(deviceId, 'refused.d2c.MessageTooLarge');
      throw new HubError('MessageTooLarge', `message is ${size} bytes with its properties; IoT Hub accepts at most ${this.maxBytes}`);
    }
    this.pending.push({ deviceId, size, body, meta, done });
    this.scheduled ??= setImmediate(() => this.flush());
  }

  /** Commits whatever is pending now (also called before the hub closes its database). */
  flush(): void {
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    let stored: StoredEvent[];
    try {
      stored = this.db.transaction(() =>
        batch.map((p) => {
          const event = this.events.append(p.deviceId, p.size, p.meta, p.body);
          this.meter.add(p.deviceId, 'd2c.messages');
          this.meter.add(p.deviceId, 'd2c.bytes', p.size);
          this.meter.add(p.deviceId, 'd2c.units', billedUnits(p.size));
          this.registry.touch(p.deviceId);
          return event;
        }),
      )();
    } catch (err) {
      this.onCommitError(err);
      const refusal = new HubError('ServerError', 'the hub could not store the message; send it again');
      for (const p of batch) p.done(refusal);
      return;
    }
    for (const p of batch) p.done();
    for (const e of stored) this.events.publish(e);
  }
}
