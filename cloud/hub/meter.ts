import type { Db } from './db.js';

/** IoT Hub bills device-to-cloud traffic in 4 KB blocks, properties included. */
export const BILLING_UNIT_BYTES = 4096;

export function billedUnits(messageBytes: number): number {
  return Math.max(1, Math.ceil(messageBytes / BILLING_UNIT_BYTES));
}

export type MeterCounts = Record<string, number>;

export interface MeterSnapshot {
  totals: MeterCounts;
  devices: Record<string, MeterCounts>;
}

/**
 * Counters per device (d2c.messages, d2c.bytes, d2c.units, c2d.sent, c2d.completed,
 * refused.<reason>, …), persisted in the hub's database so cost measurements survive restarts.
 * Hub-wide refusals with no device are kept under the empty device id.
 */
export class Meter {
  private readonly upsert;

  constructor(private readonly db: Db) {
    this.upsert = db.prepare(
      `INSERT INTO meter (device_id, metric, value) VALUES (?, ?, ?)
       ON CONFLICT (device_id, metric) DO UPDATE SET value = value + excluded.value`,
    );
  }

  add(deviceId: string, metric: string, amount = 1): void {
    this.upsert.run(deviceId, metric, amount);
  }

  get(deviceId: string, metric: string): number {
    const row = this.db.prepare('SELECT value FROM meter WHERE device_id = ? AND metric = ?').get(deviceId, metric) as { value: number } | undefined;
    return row?.value ?? 0;
  }

  snapshot(): MeterSnapshot {
    const rows = this.db.prepare('SELECT device_id, metric, value FROM meter ORDER BY device_id, metric').all() as {
      device_id: string;
      metric: string;
      value: number;
    }[];
    const totals: MeterCounts = {};
    const devices: Record<string, MeterCounts> = {};
    for (const r of rows) {
      totals[r.metric] = (totals[r.metric] ?? 0) + r.value;
      if (r.device_id === '') continue;
      const d = (devices[r.device_id] ??= {});
      d[r.metric] = r.value;
    }
    return { totals, devices };
  }
}
