/**
 * BLE wearables on one adapter (sensors/ble) as the gateway runs them: the twin's `pairings`
 * choose the devices (applied live), and each device's pairing state goes to the reported
 * properties. Sampling is the wearable's own notification rate; the report interval thins it.
 */
import type { Clock } from '../../../common/clock.js';
import type { Logger } from '../../../common/log.js';
import { BleWearableSource } from '../../../sensors/ble/source.js';
import type { Pairing } from '../contract/gateway-config.js';
import type { GatewaySource, SourceHealth } from '../ports/gateway-source.js';

export interface BleWearablesSourceOptions {
  readonly configId: string;
  readonly adapter: string;
  readonly pairings: Readonly<Record<string, Pairing>>;
  readonly clock: Clock;
  readonly log: Logger;
}

export class BleWearablesSource implements GatewaySource {
  readonly configId: string;
  readonly family = 'ble' as const;
  readonly source: BleWearableSource;

  constructor(opts: BleWearablesSourceOptions) {
    this.configId = opts.configId;
    this.source = new BleWearableSource({ adapter: opts.adapter, pairings: { ...opts.pairings }, clock: opts.clock, log: opts.log });
  }

  async applySampling(): Promise<void> {
    // Notifications come at the wearable's rate; nothing to tell the device.
  }

  samplingStale(): boolean {
    return false;
  }

  applyPairings(pairings: Readonly<Record<string, Pairing>>): void {
    this.source.setPairings({ ...pairings });
  }

  health(): SourceHealth {
    const t = this.source.totals();
    return { connected: t.connected > 0, errors: t.decodeErrors, reconnects: t.reconnects };
  }

  devices(): Record<string, Record<string, unknown>> {
    const out: Record<string, Record<string, unknown>> = {};
    for (const [address, d] of Object.entries(this.source.state())) {
      out[address] = {
        state: d.pairing,
        reason: d.reason ?? null,
        rssi: d.rssi ?? null,
        battery: d.battery ?? null,
        lastSeen: d.lastSeenMs === undefined ? null : new Date(d.lastSeenMs).toISOString(),
        decodeErrors: d.decodeErrors,
      };
    }
    return out;
  }
}
