/**
 * A serial thermostat (sensors/serial-thermostat) as the gateway runs it: sampling from the
 * twin becomes the device's INTERVAL command, and is sent again whenever the port comes back
 * (a replugged or power-cycled thermostat starts at its own default).
 */
import type { Clock } from '../../../common/clock.js';
import type { Logger } from '../../../common/log.js';
import { SerialThermostat } from '../../../sensors/serial-thermostat/driver.js';
import type { SamplingSettings } from '../contract/gateway-config.js';
import type { GatewaySource, SourceHealth } from '../ports/gateway-source.js';

export interface SerialThermostatSourceOptions {
  readonly configId: string;
  readonly path: string;
  readonly baudRate: number;
  readonly clock: Clock;
  readonly log: Logger;
}

export class SerialThermostatSource implements GatewaySource {
  readonly configId: string;
  readonly family = 'serial' as const;
  readonly source: SerialThermostat;
  #wantedIntervalS: number | undefined;
  #appliedAtReopens = -1;

  constructor(opts: SerialThermostatSourceOptions) {
    this.configId = opts.configId;
    this.source = new SerialThermostat({ id: `serial:${opts.configId}`, path: opts.path, baudRate: opts.baudRate, clock: opts.clock, log: opts.log });
  }

  async applySampling(settings: SamplingSettings): Promise<void> {
    this.#wantedIntervalS = settings.sampleIntervalS;
    await this.source.setInterval(settings.sampleIntervalS);
    this.#appliedAtReopens = this.source.counters.reopens;
  }

  /** The interval must be sent again: the port was reopened since it was last applied. */
  samplingStale(): boolean {
    return this.#wantedIntervalS !== undefined && this.source.connected && this.source.counters.reopens !== this.#appliedAtReopens;
  }

  health(): SourceHealth {
    const c = this.source.counters;
    return { connected: this.source.connected, errors: c.malformed + c.badChecksum + c.oversize, reconnects: c.reopens };
  }
}
