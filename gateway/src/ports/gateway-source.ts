import type { SensorSource } from '../../../sensors/contract/reading.js';
import type { Pairing, SamplingSettings, SourceFamily } from '../contract/gateway-config.js';

/** Per-source health for reported properties: counts, not lists (the twin is capped at 32 KB). */
export interface SourceHealth {
  readonly connected: boolean;
  /** Frames or lines the decoder refused (garbage, bad checksum, oversize). */
  readonly errors: number;
  /** Times the device link was lost and re-established. */
  readonly reconnects: number;
}

/**
 * A configured sensor source as the gateway runs it: the family's driver (`source`) plus the
 * two things the gateway asks of every family — apply the sampling interval from the twin, and
 * say how the link is doing.
 */
export interface GatewaySource {
  /** The config file's source id, e.g. `thermo-1`. */
  readonly configId: string;
  readonly family: SourceFamily;
  readonly source: SensorSource;
  /** Tells the device to sample at this interval; rejects if the device refused or did not answer. */
  applySampling(settings: SamplingSettings): Promise<void>;
  /** The device lost what was applied (it reconnected since): apply the sampling again. */
  samplingStale(): boolean;
  health(): SourceHealth;
  /** Families that connect to paired devices (BLE): the twin's `pairings`, applied live. */
  applyPairings?(pairings: Readonly<Record<string, Pairing>>): void;
  /** Per-device state for the reported properties (bounded by the pairings), keyed by address. */
  devices?(): Record<string, Record<string, unknown>>;
}
