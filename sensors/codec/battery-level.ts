/**
 * Battery Level, characteristic 0x2A19 (Battery Service 1.0 §3.1; GATT Specification
 * Supplement): one uint8, the charge in percent, allowed range 0–100.
 */
import { checkFixedLength, fail, ok, type DecodeResult } from './result.js';

export const BATTERY_LEVEL_UUID = 0x2a19;

/** Percent, 0–100. */
export function decodeBatteryLevel(bytes: Uint8Array): DecodeResult<number> {
  const bad = checkFixedLength(bytes, 1, 'battery level');
  if (bad) return bad;
  const percent = bytes[0] ?? 0;
  if (percent > 100) return fail('range', `battery level ${percent} % is outside 0-100`);
  return ok(percent);
}
