/**
 * The one record every sensor source yields, whatever the family (BLE, serial, Firmata).
 *
 * Deduplication downstream: `(source, seq)` identifies a reading. IoT Hub delivers at least
 * once and does not deduplicate, and the gateway resends a batch with the same message id after
 * a crash, so a consumer keeps the highest `seq` seen per `source` (or a set of recent ones)
 * and drops repeats. `seq` is assigned by the gateway, strictly increasing per source, and
 * survives restarts (it is persisted with the outbox); `deviceSeq` is the sensor's own counter,
 * which may wrap or restart with the sensor and is kept for diagnosis, not for deduplication.
 */
export interface Reading {
  /** Stable id of the physical source and channel, e.g. `serial:thermo-1/temperature`. */
  readonly source: string;
  /** What is measured, e.g. `temperature`, `humidity`, `heart_rate`, `battery`. */
  readonly kind: ReadingKind;
  readonly value: number;
  /** UCUM-style unit code, e.g. `Cel`, `%`, `/min`. */
  readonly unit: string;
  /**
   * Milliseconds since the Unix epoch when the clock is trusted; otherwise boot-relative
   * milliseconds, with `flags.clockUnsynced` set and `bootId` naming the boot.
   */
  readonly ts: number;
  /** Gateway-assigned, per source, strictly increasing, never reused (survives restarts). */
  readonly seq: number;
  /** The sensor's own sequence number, where the protocol has one. */
  readonly deviceSeq?: number;
  readonly flags: ReadingFlags;
  /** Set with `clockUnsynced`: the boot whose monotonic clock `ts` counts from. */
  readonly bootId?: string;
}

export interface ReadingFlags {
  /** The value crossed an alarm threshold (wakes the uplink). */
  readonly alarm?: boolean;
  /** `ts` is boot-relative: the wall clock was not trusted when the reading was taken. */
  readonly clockUnsynced?: boolean;
}

/** Kinds the gateway knows; new families add theirs here so the packer and cloud agree. */
export type ReadingKind =
  | 'temperature'
  | 'humidity'
  | 'setpoint'
  | 'mode'
  | 'heart_rate'
  | 'rr_interval'
  | 'energy_expended'
  | 'skin_temperature'
  | 'battery'
  | 'uv_index'
  | 'rssi';

/** A reading before the gateway assigns `seq` (what drivers produce). */
export type Sample = Omit<Reading, 'seq'>;

/**
 * A source of samples: an async iterable stopped by an AbortSignal, plus an on-demand
 * measurement (the C2D `measure` command and the BLE `measureNow`).
 */
export interface SensorSource {
  /** Stable id prefix of this source's readings, e.g. `serial:thermo-1`. */
  readonly id: string;
  samples(signal: AbortSignal): AsyncIterable<Sample>;
  /** Asks the device for a fresh measurement now; resolves when the request was accepted. */
  measureNow(): Promise<void>;
}
