/**
 * From a decode result to the fields of zero or more samples (`kind`, `value`, `unit`): the
 * driver adds `source`, `ts` and flags. A failed decode, an unknown value or an IEEE-11073
 * special value (NaN, NRes, ±INFINITY, reserved) yields no sample: a reading is always a number.
 */
import type { ReadingKind, Sample } from '../contract/reading.js';
import type { EssValue } from './environmental-sensing.js';
import type { TemperatureMeasurement } from './health-thermometer.js';
import type { HeartRateMeasurement } from './heart-rate.js';
import type { DecodeResult } from './result.js';

export type SampleFields = Pick<Sample, 'kind' | 'value' | 'unit'>;

/**
 * heart_rate (/min), energy_expended (kJ, when present and not saturated: a saturated 0xFFFF
 * only says "65535 or more"), and one rr_interval (ms) per interval, oldest first.
 */
export function heartRateSamples(result: DecodeResult<HeartRateMeasurement>): SampleFields[] {
  if (!result.ok) return [];
  const m = result.value;
  const out: SampleFields[] = [{ kind: 'heart_rate', value: m.heartRate, unit: '/min' }];
  if (m.energyExpendedKJ !== undefined && m.energyExpendedSaturated !== true) {
    out.push({ kind: 'energy_expended', value: m.energyExpendedKJ, unit: 'kJ' });
  }
  for (const ms of m.rrIntervalsMs) out.push({ kind: 'rr_interval', value: ms, unit: 'ms' });
  return out;
}

/** battery (%). */
export function batteryLevelSamples(result: DecodeResult<number>): SampleFields[] {
  return result.ok ? [{ kind: 'battery', value: result.value, unit: '%' }] : [];
}

/**
 * The temperature in °C (converted from °F when sent so) as `kind`: `skin_temperature` for a
 * wearable on the skin, `temperature` otherwise (the default).
 */
export function temperatureMeasurementSamples(
  result: DecodeResult<TemperatureMeasurement>,
  kind: Extract<ReadingKind, 'temperature' | 'skin_temperature'> = 'temperature',
): SampleFields[] {
  if (!result.ok || result.value.celsius.kind !== 'number') return [];
  return [{ kind, value: result.value.celsius.value, unit: 'Cel' }];
}

/** temperature (Cel) from ESS Temperature 0x2A6E. */
export function essTemperatureSamples(result: DecodeResult<EssValue>): SampleFields[] {
  if (!result.ok || result.value.kind !== 'number') return [];
  return [{ kind: 'temperature', value: result.value.value, unit: 'Cel' }];
}

/** humidity (%) from ESS Humidity 0x2A6F. */
export function humiditySamples(result: DecodeResult<EssValue>): SampleFields[] {
  if (!result.ok || result.value.kind !== 'number') return [];
  return [{ kind: 'humidity', value: result.value.value, unit: '%' }];
}

/** uv_index (UCUM `1`, dimensionless) from ESS UV Index 0x2A76. */
export function uvIndexSamples(result: DecodeResult<number>): SampleFields[] {
  return result.ok ? [{ kind: 'uv_index', value: result.value, unit: '1' }] : [];
}
