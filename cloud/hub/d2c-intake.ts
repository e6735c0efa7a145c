import type { Db } from './db.js';
import type { EventMeta, EventStore } from './event-store.js';
import { HubError } from './hub-errors.js';
import { billedUnits, type Meter } from './meter.js';
import type { DeviceRegistry } from './registry.js';

/** IoT Hub's device-to-cloud message cap, properties included. */
export const D2C_MAX_BYTES = 256 * 1024;

/**
 * Admission of a device-to-cloud message: the size cap, then storing and metering it in one
 * transaction, so the meter never counts a message the store lost or the reverse. The caller
 * settles the AMQP delivery (accepted, or rejected with the HubError) only after this returns.
 */
export class D2cIntake {
  constructor(
    private readonly db: Db,
    private readonly events: EventStore,
    private readonly meter: Meter,
    private readonly registry: DeviceRegistry,
    private readonly maxBytes = D2C_MAX_BYTES,
  ) {}

  accept(deviceId: string, size: number, body: Buffer, meta: EventMeta): void {
    if (size > this.maxBytes) {
      this.meter.add(deviceId, 'refused.d2c.MessageTooLarge');
      throw new HubError('MessageTooLarge', `message is ${size} bytes with its properties; IoT Hub accepts at most ${this.maxBytes}`);
    }
    const event = this.db.transaction(() => {
      const stored = this.events.append(deviceId, size, meta, body);
      this.meter.add(deviceId, 'd2c.messages');
      this.meter.add(deviceId, 'd2c.bytes', size);
      this.meter.add(deviceId, 'd2c.units', billedUnits(size));
      this.registry.touch(deviceId);
      return stored;
    })();
    this.events.publish(event);
  }
}
