/**
 * GATT characteristic decoders (docs/protocols/gatt.md): pure functions from notification bytes
 * to a typed result, never throwing, plus the mapping from a result to sample fields.
 */
export type { DecodeError, DecodeErrorKind, DecodeResult } from './result.js';
export {
  decodeFloat,
  decodeSfloat,
  floatFromBits,
  sfloatFromBits,
  scaleByPowerOfTen,
  FLOAT_SPECIALS,
  SFLOAT_SPECIALS,
  type Ieee11073Number,
  type Ieee11073Special,
  type Ieee11073SpecialValue,
  type Ieee11073Value,
} from './ieee11073.js';
export {
  decodeHeartRateMeasurement,
  rrIntervalToMs,
  ENERGY_EXPENDED_SATURATED,
  HEART_RATE_FLAGS,
  HEART_RATE_MEASUREMENT_UUID,
  RR_INTERVAL_UNITS_PER_SECOND,
  type HeartRateMeasurement,
  type SensorContact,
} from './heart-rate.js';
export { decodeBatteryLevel, BATTERY_LEVEL_UUID } from './battery-level.js';
export {
  decodeDateTime,
  decodeTemperatureMeasurement,
  fahrenheitToCelsius,
  temperatureTypeOf,
  DATE_TIME_BYTES,
  TEMPERATURE_MEASUREMENT_FLAGS,
  TEMPERATURE_MEASUREMENT_UUID,
  TEMPERATURE_TYPES,
  type CelsiusValue,
  type DateTime,
  type TemperatureMeasurement,
  type TemperatureType,
} from './health-thermometer.js';
export {
  decodeEssTemperature,
  decodeHumidity,
  decodeUvIndex,
  ESS_HUMIDITY_UNKNOWN,
  ESS_HUMIDITY_UUID,
  ESS_TEMPERATURE_UNKNOWN,
  ESS_TEMPERATURE_UUID,
  UV_INDEX_UUID,
  type EssValue,
} from './environmental-sensing.js';
export {
  batteryLevelSamples,
  essTemperatureSamples,
  heartRateSamples,
  humiditySamples,
  temperatureMeasurementSamples,
  uvIndexSamples,
  type SampleFields,
} from './samples.js';
