/**
 * The benchmark's fixed reading set: generated from a fixed seed, pinned by its SHA-256 so a
 * change to the generator (and thus to every figure) cannot pass unnoticed.
 */
import { createHash } from 'node:crypto';
import type { Sample } from '../../sensors/contract/reading.js';
import { seededRandom } from '../../common/seeded-random.js';

export const READING_SET_SEED = 0x5eed_0004;
export const READING_SET_SIZE = 20_000;
export const READING_SET_SHA256 = '49c3eb3773d7952d785269d4b81717dfbb0a768b6c57f11d4a12cfb17bac442b';



const CHANNELS = [
  ['ble:AA:BB:CC:DD:EE:01/heart_rate', 'heart_rate', '/min', 60, 80],
  ['ble:AA:BB:CC:DD:EE:01/battery', 'battery', '%', 20, 80],
  ['ble:AA:BB:CC:DD:EE:02/skin_temperature', 'skin_temperature', 'Cel', 33, 4],
  ['serial:thermo-1/temperature', 'temperature', 'Cel', 15, 10],
  ['serial:thermo-1/humidity', 'humidity', '%', 30, 40],
  ['firmata:uno-1/uv_index', 'uv_index', '1', 0, 11],
] as const;

export function readingSet(size = READING_SET_SIZE, seed = READING_SET_SEED): Sample[] {
  const random = seededRandom(seed);
  const start = Date.UTC(2026, 0, 1);
  return Array.from({ length: size }, (_, i) => {
    const [source, kind, unit, base, span] = CHANNELS[Math.floor(random() * CHANNELS.length)] ?? CHANNELS[0];
    const value = Math.round((base + random() * span) * 100) / 100;
    const alarm = random() < 0.02;
    return { source, kind, value, unit, ts: start + i * 50 + Math.floor(random() * 50), flags: alarm ? { alarm } : {} };
  });
}

export function digest(samples: readonly Sample[]): string {
  return createHash('sha256').update(JSON.stringify(samples)).digest('hex');
}
