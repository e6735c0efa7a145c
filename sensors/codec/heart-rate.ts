/**
 * Heart Rate Measurement, characteristic 0x2A37 (Heart Rate Service 1.0 §3.1; GATT
 * Specification Supplement), sent as notifications. Little-endian:
 *
 *   flags (uint8) | heart rate (uint8 or uint16) | [energy expended (uint16)] | [RR-Interval (uint16)]…
 *
 * Flags: bit 0 heart-rate value format (0 uint8, 1 uint16); bits 1–2 sensor contact status (bit 2
 * "supported", bit 1 "detected": 0 and 1 mean not supported, 2 supported but not detected, 3
 * detected); bit 3 energy expended present; bit 4 RR-Intervals present; bits 5–7 reserved, which
 * a receiver ignores. The number of RR-Intervals follows from the length.
 */
import { fail, ok, viewOf, type DecodeResult } from './result.js';

export const HEART_RATE_MEASUREMENT_UUID = 0x2a37;

export const HEART_RATE_FLAGS = {
  valueUint16: 0x01,
  contactDetected: 0x02,
  contactSupported: 0x04,
  energyExpended: 0x08,
  rrIntervals: 0x10,
} as const;

/**
 * Energy expended stops at 0xFFFF until the client resets it (HRS, Energy Expended field): the true value is then
 * 65535 kJ or more.
 */
export const ENERGY_EXPENDED_SATURATED = 0xffff;

/** RR-Intervals are counted in 1/1024 s. */
export const RR_INTERVAL_UNITS_PER_SECOND = 1024;

export type SensorContact = 'not-supported' | 'not-detected' | 'detected';

export interface HeartRateMeasurement {
  /** Beats per minute. */
  readonly heartRate: number;
  readonly valueFormat: 'uint8' | 'uint16';
  readonly sensorContact: SensorContact;
  /** kJ since the last reset; present when flag bit 3 is set. */
  readonly energyExpendedKJ?: number;
  /** True when energy expended reads 0xFFFF (saturated: 65535 kJ or more). */
  readonly energyExpendedSaturated?: boolean;
  /** Oldest first, in milliseconds (raw × 1000 / 1024); empty unless flag bit 4 is set. */
  readonly rrIntervalsMs: readonly number[];
  /** The same intervals as sent, in 1/1024 s. */
  readonly rrIntervalsRaw: readonly number[];
}

function sensorContactOf(flags: number): SensorContact {
  if ((flags & HEART_RATE_FLAGS.contactSupported) === 0) return 'not-supported';
  return (flags & HEART_RATE_FLAGS.contactDetected) === 0 ? 'not-detected' : 'detected';
}

export function rrIntervalToMs(raw: number): number {
  return (raw * 1000) / RR_INTERVAL_UNITS_PER_SECOND;
}

export function decodeHeartRateMeasurement(bytes: Uint8Array): DecodeResult<HeartRateMeasurement> {
  const view = viewOf(bytes);
  if (bytes.length < 1) return fail('truncated', 'heart rate measurement: no flags byte');
  const flags = view.getUint8(0);
  const wide = (flags & HEART_RATE_FLAGS.valueUint16) !== 0;
  let at = 1;

  const valueSize = wide ? 2 : 1;
  if (bytes.length < at + valueSize) {
    return fail('truncated', `heart rate measurement: flags 0x${hex(flags)} announce a ${wide ? 'uint16' : 'uint8'} heart rate, payload is ${bytes.length} byte(s)`);
  }
  const heartRate = wide ? view.getUint16(at, true) : view.getUint8(at);
  at += valueSize;

  let energy: { energyExpendedKJ: number; energyExpendedSaturated: boolean } | undefined;
  if ((flags & HEART_RATE_FLAGS.energyExpended) !== 0) {
    if (bytes.length < at + 2) return fail('truncated', `heart rate measurement: flags 0x${hex(flags)} announce energy expended at byte ${at}, payload is ${bytes.length} byte(s)`);
    const kJ = view.getUint16(at, true);
    energy = { energyExpendedKJ: kJ, energyExpendedSaturated: kJ === ENERGY_EXPENDED_SATURATED };
    at += 2;
  }

  const rest = bytes.length - at;
  const rrIntervalsRaw: number[] = [];
  if ((flags & HEART_RATE_FLAGS.rrIntervals) !== 0) {
    if (rest === 0) return fail('truncated', `heart rate measurement: flags 0x${hex(flags)} announce RR-Intervals, none follow`);
    if (rest % 2 !== 0) return fail('inconsistent', `heart rate measurement: ${rest} byte(s) of RR-Intervals, not a whole number of uint16`);
    for (; at < bytes.length; at += 2) rrIntervalsRaw.push(view.getUint16(at, true));
  } else if (rest > 0) {
    return fail('inconsistent', `heart rate measurement: ${rest} byte(s) after the last field flags 0x${hex(flags)} announce`);
  }

  return ok({
    heartRate,
    valueFormat: wide ? 'uint16' : 'uint8',
    sensorContact: sensorContactOf(flags),
    ...energy,
    rrIntervalsMs: rrIntervalsRaw.map(rrIntervalToMs),
    rrIntervalsRaw,
  });
}

function hex(byte: number): string {
  return byte.toString(16).padStart(2, '0').toUpperCase();
}
