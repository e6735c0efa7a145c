import { seededRandom } from '../../../common/seeded-random.js';
import type { ReadingKind } from '../../contract/reading.js';
import {
  encodeBatteryLevel,
  encodeHeartRateMeasurement,
  encodeHumidity,
  encodeTemperature,
  encodeTemperatureMeasurement,
  encodeUvIndex,
  quantize,
  TEMPERATURE_TYPE,
} from './encoders.js';
import { bluetoothUuid, CHARACTERISTIC, SERVICE } from './uuids.js';

/** The GATT services an emulated wearable can offer. */
export type WearableService = 'heart_rate' | 'battery' | 'health_thermometer' | 'environmental_sensing';

export const WEARABLE_SERVICES: readonly WearableService[] = ['heart_rate', 'battery', 'health_thermometer', 'environmental_sensing'];

/** One value carried by a characteristic payload, as the emitted-readings log records it. */
export interface EmittedValue {
  readonly kind: ReadingKind;
  readonly value: number;
  readonly unit: string;
}

export interface CharacteristicSample {
  readonly payload: Buffer;
  readonly values: readonly EmittedValue[];
}

export interface CharacteristicModel {
  readonly uuid: string;
  /** GattCharacteristic1.Flags, as the SIG specification requires for this characteristic. */
  readonly flags: readonly string[];
  /** The next value: drifts the model one step and encodes it. */
  sample(): CharacteristicSample;
}

export interface ServiceModel {
  readonly uuid: string;
  readonly characteristics: readonly CharacteristicModel[];
}

const clamp = (n: number, min: number, max: number): number => Math.min(max, Math.max(min, n));

/** A mean-reverting random walk: `x` is pulled towards `target` and jittered by ±noise/2 a step. */
function walk(random: () => number, start: number, target: number, pull: number, noise: number, min: number, max: number): () => number {
  let x = start;
  return () => {
    x = clamp(x + pull * (target - x) + (random() - 0.5) * noise, min, max);
    return x;
  };
}

/** Independent, reproducible streams per characteristic, whatever order they are sampled in. */
function streamFor(seed: number, assigned: number): () => number {
  return seededRandom((seed ^ Math.imul(assigned, 0x9e3779b1)) >>> 0);
}

function heartRateMeasurement(seed: number): CharacteristicModel {
  const random = streamFor(seed, CHARACTERISTIC.heartRateMeasurement);
  const bpm = walk(random, 65 + random() * 15, 72, 0.1, 6, 40, 200);
  let energyKj = Math.floor(random() * 100);
  let n = 0;
  return {
    uuid: bluetoothUuid(CHARACTERISTIC.heartRateMeasurement),
    flags: ['notify'],
    sample() {
      const value = Math.round(bpm());
      const rr = Math.round((60 / value) * 1024);
      energyKj = Math.min(0xffff, energyKj + 1);
      // Energy Expended in every 10th measurement, as the specification suggests.
      const withEnergy = n++ % 10 === 0;
      const values: EmittedValue[] = [
        { kind: 'heart_rate', value, unit: '/min' },
        { kind: 'rr_interval', value: rr / 1024, unit: 's' },
      ];
      if (withEnergy) values.push({ kind: 'energy_expended', value: energyKj, unit: 'kJ' });
      const payload = encodeHeartRateMeasurement({
        bpm: value,
        contact: 'detected',
        rrIntervals1024: [rr],
        ...(withEnergy ? { energyExpendedKj: energyKj } : {}),
      });
      return { payload, values };
    },
  };
}

function batteryLevel(seed: number): CharacteristicModel {
  const random = streamFor(seed, CHARACTERISTIC.batteryLevel);
  let level = 80 + Math.floor(random() * 21);
  return {
    uuid: bluetoothUuid(CHARACTERISTIC.batteryLevel),
    flags: ['read', 'notify'],
    sample() {
      if (random() < 0.05) level = Math.max(5, level - 1);
      return { payload: encodeBatteryLevel(level), values: [{ kind: 'battery', value: level, unit: '%' }] };
    },
  };
}

function temperatureMeasurement(seed: number): CharacteristicModel {
  const random = streamFor(seed, CHARACTERISTIC.temperatureMeasurement);
  const skin = walk(random, 33 + random(), 33.5, 0.05, 0.1, 25, 40);
  return {
    uuid: bluetoothUuid(CHARACTERISTIC.temperatureMeasurement),
    // The Health Thermometer service indicates (acknowledged); it has no read.
    flags: ['indicate'],
    sample() {
      const celsius = quantize(skin(), 2);
      return {
        payload: encodeTemperatureMeasurement({ celsius, exponent: -2, type: TEMPERATURE_TYPE.body }),
        values: [{ kind: 'skin_temperature', value: celsius, unit: 'Cel' }],
      };
    },
  };
}

function environmental(seed: number): CharacteristicModel[] {
  const tRandom = streamFor(seed, CHARACTERISTIC.temperature);
  const hRandom = streamFor(seed, CHARACTERISTIC.humidity);
  const uRandom = streamFor(seed, CHARACTERISTIC.uvIndex);
  const temperature = walk(tRandom, 20 + tRandom() * 4, 22, 0.05, 0.2, -20, 50);
  const humidity = walk(hRandom, 40 + hRandom() * 10, 45, 0.05, 0.6, 5, 95);
  const uv = walk(uRandom, uRandom() * 3, 3, 0.05, 0.8, 0, 11);
  return [
    {
      uuid: bluetoothUuid(CHARACTERISTIC.temperature),
      flags: ['read', 'notify'],
      sample() {
        const value = quantize(temperature(), 2);
        return { payload: encodeTemperature(value), values: [{ kind: 'temperature', value, unit: 'Cel' }] };
      },
    },
    {
      uuid: bluetoothUuid(CHARACTERISTIC.humidity),
      flags: ['read', 'notify'],
      sample() {
        const value = quantize(humidity(), 2);
        return { payload: encodeHumidity(value), values: [{ kind: 'humidity', value, unit: '%' }] };
      },
    },
    {
      uuid: bluetoothUuid(CHARACTERISTIC.uvIndex),
      flags: ['read', 'notify'],
      sample() {
        const value = Math.round(uv());
        return { payload: encodeUvIndex(value), values: [{ kind: 'uv_index', value, unit: '{UVI}' }] };
      },
    },
  ];
}

/** The GATT service `service` with its characteristics, values drifting from `seed`. */
export function serviceModel(service: WearableService, seed: number): ServiceModel {
  switch (service) {
    case 'heart_rate':
      return { uuid: bluetoothUuid(SERVICE.heartRate), characteristics: [heartRateMeasurement(seed)] };
    case 'battery':
      return { uuid: bluetoothUuid(SERVICE.battery), characteristics: [batteryLevel(seed)] };
    case 'health_thermometer':
      return { uuid: bluetoothUuid(SERVICE.healthThermometer), characteristics: [temperatureMeasurement(seed)] };
    case 'environmental_sensing':
      return { uuid: bluetoothUuid(SERVICE.environmentalSensing), characteristics: environmental(seed) };
  }
}

/** A stable 32-bit seed from a Bluetooth address (FNV-1a), for wearables given no seed. */
export function seedFromAddress(address: string): number {
  let h = 0x811c9dc5;
  for (const c of address.toUpperCase()) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return h;
}
