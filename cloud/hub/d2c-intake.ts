import type { Db } from './db.js';
import type { D2cRateLimiter, DailyQuota } from './d2c-limits.js';
import type { EventMeta, EventStore, StoredEvent } from './event-store.js';
import { HubError } from './hub-errors.js';
import { billedUnits, type Meter } from './meter.js';
import type { DeviceRegistry } from './registry.js';

/** IoT Hub's device-to-cloud message cap, properties included. */
export const D2C_MAX_BYTES = 256 * 1024;

interface Pending {
  deviceId: string;
  size: number;
  units: number;
  /** The UTC day whose quota the units were reserved against. */
  day: string;
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
    private readonly rate: D2cRateLimiter,
    private readonly quota: DailyQuota,
    private readonly maxBytes = D2C_MAX_BYTES,
  ) {}

  /**
   * Throws at once what IoT Hub refuses at once (MessageTooLarge, ThrottlingException,
   * IotHubQuotaExceeded), metering the refusal; otherwise `done` runs after the commit.
   */
  submit(deviceId: string, size: number, body: Buffer, meta: EventMeta, done: (err?: HubError) => void): void {
    const units = billedUnits(size);
    let day: string;
    try {
      if (size > this.maxBytes) {
        throw new HubError('MessageTooLarge', `message is ${size} bytes with its properties; IoT Hub accepts at most ${this.maxBytes}`);
      }
      this.rate.admit(deviceId);
      day = this.quota.reserve(units);
    } catch (err) {
      if (err instanceof HubError) this.meter.add(deviceId, `refused.d2c.${err.code}`);
      throw err;
    }
    this.pending.push({ deviceId, size, units, day, body, meta, done });
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
          this.meter.add(p.deviceId, 'd2c.units', p.units);
          this.meter.add('', `quota.units.${p.day}`, p.units);
          this.registry.touch(p.deviceId);
          return event;
        }),
      )();
    } catch (err) {
      this.onCommitError(err);
      for (const p of batch) this.quota.release(p.day, p.units);
      const refusal = new HubError('ServerError', 'the hub could not store the message; send it again');
      for (const p of batch) p.done(refusal);
      return;
    }
    for (const p of batch) p.done();
    for (const e of stored) this.events.publish(e);
  }
}
