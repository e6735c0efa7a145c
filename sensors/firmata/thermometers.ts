/**
 * Analog thermometers on a 10-bit ADC with a 5 V reference (Arduino Uno), pure.
 *
 * One ADC step is Vref/1024 (ATmega328P datasheet: ADC = Vin·1024/Vref), so
 * mV = raw·5000/1024. johnny-five divides by 1023 and rounds to whole degrees; we keep 0.1 °C.
 *   TMP36: °C = (mV − 500) / 10  (10 mV/°C, 500 mV at 0 °C)
 *   LM35:  °C = mV / 10          (10 mV/°C, 0 mV at 0 °C; negative temperatures need a
 *                                 negative rail, which an Uno's ADC cannot read: raw ≥ 0)
 */

export type ThermometerController = 'TMP36' | 'LM35';

export const ADC_MAX = 1023;
const ADC_STEPS = 1024;
const VREF_MV = 5000;

export function isThermometerController(v: unknown): v is ThermometerController {
  return v === 'TMP36' || v === 'LM35';
}

/** Millivolts at the pin for a raw reading. */
export function rawToMillivolts(raw: number): number {
  return (raw * VREF_MV) / ADC_STEPS;
}

/** °C to one decimal for a raw 0–1023 reading; throws RangeError outside that range. */
export function rawToCelsius(controller: ThermometerController, raw: number): number {
  if (!Number.isInteger(raw) || raw < 0 || raw > ADC_MAX) throw new RangeError(`raw analog value must be an integer 0..${ADC_MAX}, got ${raw}`);
  const mV = rawToMillivolts(raw);
  const c = controller === 'TMP36' ? (mV - 500) / 10 : mV / 10;
  return round1(c);
}

/**
 * The raw value a sensor at `celsius` reads (nearest step, clamped to 0–1023): what an
 * emulator sends. Round trip: rawToCelsius(c, celsiusToRaw(c, t)) is within half a step
 * (0.25 °C) of t inside the sensor's range.
 */
export function celsiusToRaw(controller: ThermometerController, celsius: number): number {
  if (!Number.isFinite(celsius)) throw new RangeError(`temperature must be finite, got ${celsius}`);
  const mV = controller === 'TMP36' ? celsius * 10 + 500 : celsius * 10;
  return Math.min(ADC_MAX, Math.max(0, Math.round((mV * ADC_STEPS) / VREF_MV)));
}

/** The range of °C a controller can report on this ADC. */
export function celsiusRange(controller: ThermometerController): { readonly min: number; readonly max: number } {
  return { min: rawToCelsius(controller, 0), max: rawToCelsius(controller, ADC_MAX) };
}

/** 'A0'..'A5' (or a bare channel number) → analog channel; undefined if not an analog pin name. */
export function analogChannel(pin: string | number, channels = 6): number | undefined {
  const n = typeof pin === 'number' ? pin : /^A(\d{1,2})$/i.exec(pin)?.[1];
  const ch = typeof n === 'string' ? Number(n) : n;
  return ch !== undefined && Number.isInteger(ch) && ch >= 0 && ch < channels ? ch : undefined;
}

function round1(n: number): number {
  const r = Math.round(n * 10) / 10;
  return Object.is(r, -0) ? 0 : r;
}
