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
  /** Devices unpaired by the twin, reported as such (most recent 16) so the phone flow sees it. */
  readonly #unpaired: string[] = [];

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
    for (const address of Object.keys(this.source.state())) {
      if (pairings[address] === undefined && !this.#unpaired.includes(address)) this.#unpaired.push(address);
    }
    for (const address of Object.keys(pairings)) {
      const i = this.#unpaired.indexOf(address);
      if (i >= 0) this.#unpaired.splice(i, 1);
    }
    this.#unpaired.splice(0, Math.max(0, this.#unpaired.length - 16));
    this.source.setPairings({ ...pairings });
  }

  health(): SourceHealth {
    const t = this.source.totals();
    return { connected: t.connected > 0, errors: t.decodeErrors, reconnects: t.reconnects };
  }

  devices(): Record<string, Record<string, unknown>> {
    const out: Record<string, Record<string, unknown>> = {};
    for (const address of this.#unpaired) out[address] = { state: 'unpaired', reason: 'removed from pairings', rssi: null, battery: null, lastSeen: null, lastValue: null, lastKind: null, lastUnit: null, decodeErrors: 0 };
    for (const [address, d] of Object.entries(this.source.state())) {
      out[address] = {
        state: d.pairing,
        reason: d.reason ?? null,
        rssi: d.rssi ?? null,
        battery: d.battery ?? null,
        lastSeen: d.lastSeenMs === undefined ? null : new Date(d.lastSeenMs).toISOString(),
        lastValue: d.lastReading?.value ?? null,
        lastKind: d.lastReading?.kind ?? null,
        lastUnit: d.lastReading?.unit ?? null,
        decodeErrors: d.decodeErrors,
      };
    }
    return out;
  }
}
