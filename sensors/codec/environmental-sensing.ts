/**
 * Environmental Sensing Service characteristics (ESS 1.0 §3; GATT Specification Supplement),
 * each a single little-endian number with a fixed length:
 *
 * - Temperature 0x2A6E: sint16 in 0.01 °C, allowed −273.15 to 327.67; 0x8000 means "value is not known".
 * - Humidity 0x2A6F: uint16 in 0.01 %, allowed 0 to 100; 0xFFFF means "value is not known".
 * - UV Index 0x2A76: uint8, unitless, every value allowed.
 */
import { checkFixedLength, fail, ok, viewOf, type DecodeResult } from './result.js';

export const ESS_TEMPERATURE_UUID = 0x2a6e;
export const ESS_HUMIDITY_UUID = 0x2a6f;
export const UV_INDEX_UUID = 0x2a76;

/** A number, or the characteristic's "value is not known". */
export type EssValue = { readonly kind: 'number'; readonly value: number } | { readonly kind: 'unknown' };

export const ESS_TEMPERATURE_UNKNOWN = -0x8000;
export const ESS_HUMIDITY_UNKNOWN = 0xffff;

/** °C, resolution 0.01. */
export function decodeEssTemperature(bytes: Uint8Array): DecodeResult<EssValue> {
  const bad = checkFixedLength(bytes, 2, 'temperature (0x2A6E)');
  if (bad) return bad;
  const raw = viewOf(bytes).getInt16(0, true);
  if (raw === ESS_TEMPERATURE_UNKNOWN) return ok({ kind: 'unknown' });
  if (raw < -27315) return fail('range', `temperature (0x2A6E) ${raw / 100} °C is below absolute zero`);
  return ok({ kind: 'number', value: raw / 100 });
}

/** Percent relative humidity, resolution 0.01. */
export function decodeHumidity(bytes: Uint8Array): DecodeResult<EssValue> {
  const bad = checkFixedLength(bytes, 2, 'humidity (0x2A6F)');
  if (bad) return bad;
  const raw = viewOf(bytes).getUint16(0, true);
  if (raw === ESS_HUMIDITY_UNKNOWN) return ok({ kind: 'unknown' });
  if (raw > 10000) return fail('range', `humidity (0x2A6F) ${raw / 100} % is outside 0-100`);
  return ok({ kind: 'number', value: raw / 100 });
}

/** UV index, unitless. */
export function decodeUvIndex(bytes: Uint8Array): DecodeResult<number> {
  const bad = checkFixedLength(bytes, 1, 'UV index (0x2A76)');
  if (bad) return bad;
  return ok(viewOf(bytes).getUint8(0));
}
