import type { Reading, ReadingKind } from '../../sensors/contract/reading.js';
import { seededRandom } from '../../common/seeded-random.js';


interface Channel {
  source: string;
  kind: ReadingKind;
  unit: string;
  value: (rnd: () => number) => number;
}

const round = (x: number, places: number): number => Number(x.toFixed(places));

/**
 * A realistic mix as the outbox would hold it: 4 serial thermostats (temperature to 0.01 °C,
 * humidity to 0.1 %, setpoint) and 2 BLE wearables (heart rate, RR interval, battery, RSSI),
 * interleaved, a few hundred ms apart, with noise and the odd alarm.
 */
export function noisyReadings(count: number, seed = 42, startTs = 1_764_000_000_000): Reading[] {
  const rnd = seededRandom(seed);
  const channels: Channel[] = [];
  for (let i = 1; i <= 4; i++) {
    channels.push(
      { source: `serial:thermo-${i}/temperature`, kind: 'temperature', unit: 'Cel', value: (r) => round(20 + i + (r() - 0.5) * 1.5, 2) },
      { source: `serial:thermo-${i}/humidity`, kind: 'humidity', unit: '%', value: (r) => round(45 + i * 2 + (r() - 0.5) * 6, 1) },
      { source: `serial:thermo-${i}/setpoint`, kind: 'setpoint', unit: 'Cel', value: () => 21 + (i % 2) * 0.5 },
    );
  }
  for (const mac of ['AA:BB:CC:DD:EE:01', 'AA:BB:CC:DD:EE:02']) {
    channels.push(
      { source: `ble:${mac}/heart_rate`, kind: 'heart_rate', unit: '/min', value: (r) => Math.round(62 + r() * 40) },
      { source: `ble:${mac}/rr_interval`, kind: 'rr_interval', unit: 'ms', value: (r) => Math.round(600 + r() * 350) },
      { source: `ble:${mac}/battery`, kind: 'battery', unit: '%', value: (r) => (r() < 0.95 ? 87 : 86) },
      { source: `ble:${mac}/rssi`, kind: 'rssi', unit: 'dB', value: (r) => -Math.round(55 + r() * 25) },
    );
  }
  const seq = new Map<string, number>();
  const out: Reading[] = [];
  let ts = startTs;
  for (let i = 0; i < count; i++) {
    // Wearables report more often than thermostats.
    const ch = channels[rnd() < 0.6 ? 12 + Math.floor(rnd() * 8) : Math.floor(rnd() * 12)] as Channel;
    ts += Math.floor(50 + rnd() * 900);
    const s = (seq.get(ch.source) ?? 1000) + 1;
    seq.set(ch.source, s);
    const alarm = rnd() < 0.01;
    out.push({ source: ch.source, kind: ch.kind, value: ch.value(rnd), unit: ch.unit, ts, seq: s, flags: alarm ? { alarm: true } : {} });
  }
  return out;
}
