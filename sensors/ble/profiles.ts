/**
 * The BLE profile table: which GATT services and characteristics a paired wearable of a given
 * profile offers, how each one is decoded and turned into samples, and whether it is subscribed
 * to (notify/indicate) or read periodically. Data, not code: the scheduler in `source.ts` only
 * walks this table; decoders are referred to by name and resolved through `DECODERS`.
 */
import {
  batteryLevelSamples,
  decodeBatteryLevel,
  decodeEssTemperature,
  decodeHeartRateMeasurement,
  decodeHumidity,
  decodeTemperatureMeasurement,
  decodeUvIndex,
  essTemperatureSamples,
  heartRateSamples,
  humiditySamples,
  temperatureMeasurementSamples,
  uvIndexSamples,
  type DecodeError,
  type DecodeResult,
  type SampleFields,
} from '../codec/index.js';

/** `0000xxxx-0000-1000-8000-00805f9b34fb`: a 16-bit SIG assigned number on the Bluetooth base UUID. */
export function sigUuid(assigned: number): string {
  if (!Number.isInteger(assigned) || assigned < 0 || assigned > 0xffff) throw new RangeError(`not a 16-bit UUID: ${assigned}`);
  return `0000${assigned.toString(16).padStart(4, '0')}-0000-1000-8000-00805f9b34fb`;
}

export type DecodeOutcome = { readonly ok: true; readonly samples: SampleFields[] } | { readonly ok: false; readonly error: DecodeError };

/** Bytes of one characteristic value to sample fields, never throwing. */
export type CharacteristicDecoder = (bytes: Uint8Array) => DecodeOutcome;

function decoder<T>(decode: (b: Uint8Array) => DecodeResult<T>, toSamples: (r: DecodeResult<T>) => SampleFields[]): CharacteristicDecoder {
  return (bytes) => {
    const result = decode(bytes);
    return result.ok ? { ok: true, samples: toSamples(result) } : { ok: false, error: result.error };
  };
}

/** Decoders by name, as the profile table refers to them. */
export const DECODERS = {
  heart_rate_measurement: decoder(decodeHeartRateMeasurement, heartRateSamples),
  battery_level: decoder(decodeBatteryLevel, batteryLevelSamples),
  skin_temperature_measurement: decoder(decodeTemperatureMeasurement, (r) => temperatureMeasurementSamples(r, 'skin_temperature')),
  ess_temperature: decoder(decodeEssTemperature, essTemperatureSamples),
  ess_humidity: decoder(decodeHumidity, humiditySamples),
  ess_uv_index: decoder(decodeUvIndex, uvIndexSamples),
} as const satisfies Record<string, CharacteristicDecoder>;

export type DecoderName = keyof typeof DECODERS;

/**
 * - `subscribe`: notifications or indications when the characteristic's flags allow them,
 *   periodic reads otherwise.
 * - `poll`: periodic reads (every `pollIntervalMs`) when readable, a subscription otherwise.
 */
export type AccessMode = 'subscribe' | 'poll';

export interface CharacteristicProfile {
  readonly service: string;
  readonly characteristic: string;
  readonly decoder: DecoderName;
  readonly access: AccessMode;
}

export interface DeviceProfile {
  readonly characteristics: readonly CharacteristicProfile[];
}

export const SERVICE_UUID = {
  heartRate: sigUuid(0x180d),
  battery: sigUuid(0x180f),
  healthThermometer: sigUuid(0x1809),
  environmentalSensing: sigUuid(0x181a),
} as const;

export const CHARACTERISTIC_UUID = {
  heartRateMeasurement: sigUuid(0x2a37),
  batteryLevel: sigUuid(0x2a19),
  temperatureMeasurement: sigUuid(0x2a1c),
  temperature: sigUuid(0x2a6e),
  humidity: sigUuid(0x2a6f),
  uvIndex: sigUuid(0x2a76),
} as const;

const battery: CharacteristicProfile = { service: SERVICE_UUID.battery, characteristic: CHARACTERISTIC_UUID.batteryLevel, decoder: 'battery_level', access: 'poll' };

export const PROFILES = {
  heart_rate: {
    characteristics: [
      { service: SERVICE_UUID.heartRate, characteristic: CHARACTERISTIC_UUID.heartRateMeasurement, decoder: 'heart_rate_measurement', access: 'subscribe' },
      battery,
    ],
  },
  health_thermometer: {
    characteristics: [
      { service: SERVICE_UUID.healthThermometer, characteristic: CHARACTERISTIC_UUID.temperatureMeasurement, decoder: 'skin_temperature_measurement', access: 'subscribe' },
      battery,
    ],
  },
  environmental_sensing: {
    characteristics: [
      { service: SERVICE_UUID.environmentalSensing, characteristic: CHARACTERISTIC_UUID.temperature, decoder: 'ess_temperature', access: 'subscribe' },
      { service: SERVICE_UUID.environmentalSensing, characteristic: CHARACTERISTIC_UUID.humidity, decoder: 'ess_humidity', access: 'subscribe' },
      { service: SERVICE_UUID.environmentalSensing, characteristic: CHARACTERISTIC_UUID.uvIndex, decoder: 'ess_uv_index', access: 'subscribe' },
      battery,
    ],
  },
} as const satisfies Record<string, DeviceProfile>;

export type ProfileName = keyof typeof PROFILES;

export function isProfileName(name: string): name is ProfileName {
  return Object.hasOwn(PROFILES, name);
}
