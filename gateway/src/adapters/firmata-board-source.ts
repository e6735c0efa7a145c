/**
 * A Firmata board with analog thermometers (sensors/firmata) as the gateway runs it: the
 * twin's sampling interval becomes the board's SAMPLING_INTERVAL, which the source re-sends on
 * every connect (so nothing goes stale on a replug).
 */
import type { Clock } from '../../../common/clock.js';
import type { Logger } from '../../../common/log.js';
import { FirmataThermometerSource } from '../../../sensors/firmata/source.js';
import type { FirmataThermometer, SamplingSettings } from '../contract/gateway-config.js';
import type { GatewaySource, SourceHealth } from '../ports/gateway-source.js';

export interface FirmataBoardSourceOptions {
  readonly configId: string;
  readonly path: string;
  readonly baudRate: number;
  readonly thermometers: readonly FirmataThermometer[];
  readonly clock: Clock;
  readonly log: Logger;
}

export class FirmataBoardSource implements GatewaySource {
  readonly configId: string;
  readonly family = 'firmata' as const;
  readonly source: FirmataThermometerSource;

  constructor(opts: FirmataBoardSourceOptions) {
    this.configId = opts.configId;
    this.source = new FirmataThermometerSource({
      boardId: opts.configId,
      path: opts.path,
      baudRate: opts.baudRate,
      profile: opts.thermometers.map((t) => ({ pin: t.pin, controller: t.controller, kind: 'temperature' as const })),
      clock: opts.clock,
      log: opts.log,
    });
  }

  async applySampling(settings: SamplingSettings): Promise<void> {
    this.source.setSamplingInterval(settings.sampleIntervalS * 1000);
  }

  samplingStale(): boolean {
    return false;
  }

  health(): SourceHealth {
    const c = this.source.counters;
    return { connected: this.source.connected, errors: c.errors, reconnects: c.reconnects };
  }
}
