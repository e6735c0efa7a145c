/**
 * Temperature Measurement, characteristic 0x2A1C (Health Thermometer Service 1.0 §3.1; GATT
 * Specification Supplement), sent as indications. Little-endian:
 *
 *   flags (uint8) | temperature (IEEE-11073 FLOAT) | [time stamp (Date Time, 7 bytes)] | [temperature type (uint8)]
 *
 * Flags: bit 0 units (0 Celsius, 1 Fahrenheit); bit 1 time stamp present; bit 2 temperature type
 * present; bits 3–7 reserved, which a receiver ignores.
 */
import { floatFromBits, scaleByPowerOfTen, type Ieee11073Value, type Ieee11073SpecialValue } from './ieee11073.js';
import { fail, ok, viewOf, type DecodeResult } from './result.js';

export const TEMPERATURE_MEASUREMENT_UUID = 0x2a1c;

export const TEMPERATURE_MEASUREMENT_FLAGS = {
  fahrenheit: 0x01,
  timeStamp: 0x02,
  temperatureType: 0x04,
} as const;

/** Temperature Type (0x2A1D) codes 1–9; 0 and 10–255 are reserved. */
export const TEMPERATURE_TYPES = ['armpit', 'body', 'ear', 'finger', 'gastro-intestinal-tract', 'mouth', 'rectum', 'toe', 'tympanum'] as const;
export type TemperatureType = (typeof TEMPERATURE_TYPES)[number];

/** The body location a Temperature Type code names, or undefined for a reserved code. */
export function temperatureTypeOf(code: number): TemperatureType | undefined {
  return code >= 1 ? TEMPERATURE_TYPES[code - 1] : undefined;
}

/**
 * Date Time (0x2A08): the device's local time, with no time zone. `null` is the specification's
 * "not known" (0) for year, month and day.
 */
export interface DateTime {
  readonly year: number | null;
  readonly month: number | null;
  readonly day: number | null;
  readonly hours: number;
  readonly minutes: number;
  readonly seconds: number;
}

export const DATE_TIME_BYTES = 7;

/** Decodes the 7-byte Date Time at `offset`: year uint16, month, day, hours, minutes, seconds (uint8 each). */
export function decodeDateTime(bytes: Uint8Array, offset = 0): DecodeResult<DateTime> {
  if (!Number.isInteger(offset) || offset < 0 || offset + DATE_TIME_BYTES > bytes.length) {
    return fail('truncated', `date time needs ${DATE_TIME_BYTES} bytes at offset ${offset}, payload is ${bytes.length}`);
  }
  const view = viewOf(bytes);
  const year = view.getUint16(offset, true);
  const [month, day, hours, minutes, seconds] = [1, 2, 3, 4, 5].map((i) => view.getUint8(offset + 1 + i)) as [number, number, number, number, number];
  // Values outside these ranges are reserved for future use (GATT Specification Supplement, Date Time).
  const fields: Array<[string, number, number, number, boolean]> = [
    ['year', year, 1582, 9999, true],
    ['month', month, 1, 12, true],
    ['day', day, 1, 31, true],
    ['hours', hours, 0, 23, false],
    ['minutes', minutes, 0, 59, false],
    ['seconds', seconds, 0, 59, false],
  ];
  for (const [name, value, min, max, zeroUnknown] of fields) {
    if ((zeroUnknown && value === 0) || (value >= min && value <= max)) continue;
    return fail('reserved', `date time: ${name} ${value} is reserved (valid: ${zeroUnknown ? '0 for not known, ' : ''}${min}-${max})`);
  }
  const known = (v: number): number | null => (v === 0 ? null : v);
  return ok({ year: known(year), month: known(month), day: known(day), hours, minutes, seconds });
}

export type CelsiusValue = { readonly kind: 'number'; readonly value: number } | Ieee11073SpecialValue;

export interface TemperatureMeasurement {
  /** The temperature in °C, converted when the thermometer sent °F; a special value stays special. */
  readonly celsius: CelsiusValue;
  /** True when the thermometer sent °F and `celsius` was converted from it. */
  readonly convertedFromFahrenheit: boolean;
  /** The temperature as sent, in the unit sent (UCUM `Cel` or `[degF]`). */
  readonly sent: { readonly unit: 'Cel' | '[degF]'; readonly value: Ieee11073Value };
  readonly timeStamp?: DateTime;
  readonly temperatureType?: TemperatureType;
}

/**
 * (°F − 32) × 5/9, computed on the integers of the FLOAT where it can be so that 98.6 °F is
 * exactly 37 °C: for a negative exponent −k (down to −12, where the integers stay below 2^53), (mantissa − 32·10^k) × 5 / (9·10^k).
 */
export function fahrenheitToCelsius(f: Ieee11073Value): CelsiusValue {
  if (f.kind === 'special') return f;
  if (f.exponent < 0 && f.exponent >= -12) {
    const scale = 10 ** -f.exponent;
    return { kind: 'number', value: ((f.mantissa - 32 * scale) * 5) / (9 * scale) };
  }
  return { kind: 'number', value: ((scaleByPowerOfTen(f.mantissa, f.exponent) - 32) * 5) / 9 };
}

export function decodeTemperatureMeasurement(bytes: Uint8Array): DecodeResult<TemperatureMeasurement> {
  const view = viewOf(bytes);
  if (bytes.length < 1) return fail('truncated', 'temperature measurement: no flags byte');
  const flags = view.getUint8(0);
  if (bytes.length < 5) return fail('truncated', `temperature measurement: the FLOAT temperature needs bytes 1-4, payload is ${bytes.length} byte(s)`);
  const sentValue = floatFromBits(view.getUint32(1, true));
  let at = 5;

  let timeStamp: DateTime | undefined;
  if ((flags & TEMPERATURE_MEASUREMENT_FLAGS.timeStamp) !== 0) {
    if (bytes.length < at + DATE_TIME_BYTES) return fail('truncated', `temperature measurement: flags announce a time stamp at bytes ${at}-${at + DATE_TIME_BYTES - 1}, payload is ${bytes.length} byte(s)`);
    const dt = decodeDateTime(bytes, at);
    if (!dt.ok) return fail(dt.error.kind, `temperature measurement: ${dt.error.message}`);
    timeStamp = dt.value;
    at += DATE_TIME_BYTES;
  }

  let temperatureType: TemperatureType | undefined;
  if ((flags & TEMPERATURE_MEASUREMENT_FLAGS.temperatureType) !== 0) {
    if (bytes.length < at + 1) return fail('truncated', `temperature measurement: flags announce a temperature type at byte ${at}, payload is ${bytes.length} byte(s)`);
    const code = view.getUint8(at);
    temperatureType = temperatureTypeOf(code);
    if (temperatureType === undefined) return fail('reserved', `temperature measurement: temperature type ${code} is reserved (valid: 1-9)`);
    at += 1;
  }

  if (at < bytes.length) return fail('inconsistent', `temperature measurement: ${bytes.length - at} byte(s) after the last field flags 0x${flags.toString(16).padStart(2, '0').toUpperCase()} announce`);

  const fahrenheit = (flags & TEMPERATURE_MEASUREMENT_FLAGS.fahrenheit) !== 0;
  const celsius: CelsiusValue = fahrenheit ? fahrenheitToCelsius(sentValue) : sentValue.kind === 'number' ? { kind: 'number', value: sentValue.value } : sentValue;
  return ok({
    celsius,
    convertedFromFahrenheit: fahrenheit,
    sent: { unit: fahrenheit ? '[degF]' : 'Cel', value: sentValue },
    ...(timeStamp === undefined ? {} : { timeStamp }),
    ...(temperatureType === undefined ? {} : { temperatureType }),
  });
}
