/**
 * Encoders for the GATT characteristic values the emulated wearables send, per the Bluetooth SIG
 * GATT Specification Supplement. They are the emulator's side only: the gateway decodes with its
 * own code, so a bug here is not mirrored there. Every encoder takes values already at the
 * characteristic's resolution (see the `quantize…` helpers); anything else is a RangeError,
 * so that the emulator's emitted-readings log always holds exactly what the bytes say.
 */

/** Heart Rate Measurement (0x2A37) flags, byte 0. */
export const HR_FLAG = {
  /** Heart rate is a uint16 (otherwise a uint8). */
  format16: 0x01,
  /** Sensor contact detected (meaningful with contactSupported). */
  contactDetected: 0x02,
  contactSupported: 0x04,
  /** Energy Expended field present (uint16, kJ). */
  energyExpended: 0x08,
  /** One or more RR-intervals present (uint16 each, 1/1024 s). */
  rrIntervals: 0x10,
} as const;

export interface HeartRateMeasurement {
  /** Beats per minute, an integer 0–65535 (0–255 unless `format16`). */
  readonly bpm: number;
  /** Send the value as uint16 even when it fits in a byte. */
  readonly format16?: boolean;
  /** Sensor contact status; omitted means "not supported" (bits 1–2 clear). */
  readonly contact?: 'detected' | 'not-detected';
  /** Accumulated energy, kJ (integer, 0–65535). */
  readonly energyExpendedKj?: number;
  /** RR-intervals in units of 1/1024 s (integers, 0–65535), oldest first. */
  readonly rrIntervals1024?: readonly number[];
}

function checkUint(name: string, v: number, max: number): number {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`${name} must be an integer 0–${max}, got ${v}`);
  return v;
}

/** `v × factor` as an integer, or a RangeError if `v` is not at that resolution. */
function scaled(name: string, v: number, factor: number): number {
  const x = v * factor;
  const n = Math.round(x);
  if (!Number.isFinite(x) || Math.abs(x - n) > 1e-6) throw new RangeError(`${name} ${v} is not a multiple of ${1 / factor}`);
  return n;
}

function checkInt(name: string, v: number, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) throw new RangeError(`${name} must be an integer ${min}–${max}, got ${v}`);
  return v;
}

export function encodeHeartRateMeasurement(m: HeartRateMeasurement): Buffer {
  const wide = m.format16 === true || m.bpm > 0xff;
  checkUint('bpm', m.bpm, wide ? 0xffff : 0xff);
  let flags = wide ? HR_FLAG.format16 : 0;
  if (m.contact !== undefined) flags |= HR_FLAG.contactSupported | (m.contact === 'detected' ? HR_FLAG.contactDetected : 0);
  if (m.energyExpendedKj !== undefined) flags |= HR_FLAG.energyExpended;
  const rr = m.rrIntervals1024 ?? [];
  if (rr.length > 0) flags |= HR_FLAG.rrIntervals;
  const out = Buffer.alloc(1 + (wide ? 2 : 1) + (m.energyExpendedKj !== undefined ? 2 : 0) + 2 * rr.length);
  let o = out.writeUInt8(flags, 0);
  o = wide ? out.writeUInt16LE(m.bpm, o) : out.writeUInt8(m.bpm, o);
  if (m.energyExpendedKj !== undefined) o = out.writeUInt16LE(checkUint('energyExpendedKj', m.energyExpendedKj, 0xffff), o);
  for (const r of rr) o = out.writeUInt16LE(checkUint('RR-interval', r, 0xffff), o);
  return out;
}

/** Battery Level (0x2A19): uint8 percent, 0–100. */
export function encodeBatteryLevel(percent: number): Buffer {
  return Buffer.from([checkUint('battery level', percent, 100)]);
}

/** IEEE 11073-20601 FLOAT special values (mantissa with exponent 0). */
export const IEEE11073_FLOAT = {
  NaN: 0x007fffff,
  NRes: 0x00800000,
  positiveInfinity: 0x007ffffe,
  negativeInfinity: 0x00800002,
} as const;

/**
 * IEEE 11073-20601 32-bit FLOAT: a signed 24-bit mantissa and a signed 8-bit exponent, value =
 * mantissa × 10^exponent, little-endian (mantissa in bytes 0–2, exponent in byte 3). `value`
 * must be a multiple of 10^exponent; NaN and ±Infinity use the reserved codes.
 */
export function encodeIeee11073Float(value: number, exponent: number): Buffer {
  checkInt('exponent', exponent, -128, 127);
  const out = Buffer.alloc(4);
  if (Number.isNaN(value)) return (out.writeUInt32LE(IEEE11073_FLOAT.NaN, 0), out);
  if (value === Infinity) return (out.writeUInt32LE(IEEE11073_FLOAT.positiveInfinity, 0), out);
  if (value === -Infinity) return (out.writeUInt32LE(IEEE11073_FLOAT.negativeInfinity, 0), out);
  const mantissa = scaled('FLOAT value', value, 10 ** -exponent);
  // ±(2^23 − 3): the top codes are the special values.
  checkInt('mantissa', mantissa, -0x7ffffd, 0x7ffffd);
  out.writeIntLE(mantissa, 0, 3);
  out.writeInt8(exponent, 3);
  return out;
}

/** Temperature Measurement (0x2A1C) flags, byte 0. */
export const TEMPERATURE_FLAG = {
  fahrenheit: 0x01,
  timeStamp: 0x02,
  temperatureType: 0x04,
} as const;

/** Temperature Type (0x2A1D) values used in 0x2A1C. */
export const TEMPERATURE_TYPE = { armpit: 1, body: 2, ear: 3, finger: 4, gastroIntestinal: 5, mouth: 6, rectum: 7, toe: 8, tympanum: 9 } as const;

export interface TemperatureMeasurement {
  /** Degrees Celsius, a multiple of 10^exponent. */
  readonly celsius: number;
  /** Decimal exponent of the FLOAT; -2 (0.01 °C) by default. */
  readonly exponent?: number;
  /** Temperature Type field (0x2A1D), omitted when undefined. */
  readonly type?: number;
}

/** Temperature Measurement (0x2A1C), Celsius, without time stamp. */
export function encodeTemperatureMeasurement(m: TemperatureMeasurement): Buffer {
  const flags = m.type === undefined ? 0 : TEMPERATURE_FLAG.temperatureType;
  const parts = [Buffer.from([flags]), encodeIeee11073Float(m.celsius, m.exponent ?? -2)];
  if (m.type !== undefined) parts.push(Buffer.from([checkUint('temperature type', m.type, 0xff)]));
  return Buffer.concat(parts);
}

/** Temperature (0x2A6E): sint16, 0.01 °C. */
export function encodeTemperature(celsius: number): Buffer {
  const out = Buffer.alloc(2);
  out.writeInt16LE(checkInt('temperature ×100', scaled('temperature', celsius, 100), -0x7fff, 0x7fff));
  return out;
}

/** Humidity (0x2A6F): uint16, 0.01 %. */
export function encodeHumidity(percent: number): Buffer {
  const out = Buffer.alloc(2);
  out.writeUInt16LE(checkUint('humidity ×100', scaled('humidity', percent, 100), 10000));
  return out;
}

/** UV Index (0x2A76): uint8. */
export function encodeUvIndex(index: number): Buffer {
  return Buffer.from([checkUint('UV index', index, 0xff)]);
}

/** `value` rounded to `decimals` places, computed as integer / 10^decimals (what a decoder gets). */
export function quantize(value: number, decimals: number): number {
  const f = 10 ** decimals;
  return Math.round(value * f) / f;
}
