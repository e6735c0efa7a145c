import t from 'tap';
import { decodeHeartRateMeasurement, type DecodeResult, type HeartRateMeasurement } from '../../../sensors/codec/index.js';

function value<T>(r: DecodeResult<T>): T {
  if (!r.ok) throw new Error(`expected ok, got ${r.error.kind}: ${r.error.message}`);
  return r.value;
}

// Heart Rate Measurement 0x2A37 (HRS 1.0 §3.1), little-endian:
//   flags (uint8) | heart rate (uint8, or uint16 when flags bit 0) | energy expended (uint16, when bit 3)
//   | RR-Intervals (uint16 each, 1/1024 s, when bit 4)
// Flags bits 1-2: sensor contact (bit 2 supported, bit 1 detected); bits 5-7 reserved.

t.test('specification vectors, byte by byte', async (t) => {
  t.same(value(decodeHeartRateMeasurement(Buffer.from([0x10, 0x48, 0x00, 0x03]))), {
    // flags 0x10: uint8 value, no contact support, no energy, RR present | 0x48 = 72 bpm | RR 0x0300 = 768/1024 s
    heartRate: 72,
    valueFormat: 'uint8',
    sensorContact: 'not-supported',
    rrIntervalsMs: [750],
    rrIntervalsRaw: [768],
  }, 'the conventions example: 72 bpm and one RR-Interval of 750 ms');

  t.same(value(decodeHeartRateMeasurement(Uint8Array.from([0x00, 0x48]))), {
    // flags 0x00 | heart rate uint8 72
    heartRate: 72, valueFormat: 'uint8', sensorContact: 'not-supported', rrIntervalsMs: [], rrIntervalsRaw: [],
  }, 'the shortest measurement');

  t.same(value(decodeHeartRateMeasurement(Uint8Array.from([0x01, 0x2c, 0x01]))), {
    // flags 0x01: uint16 value | 0x012C = 300 bpm
    heartRate: 300, valueFormat: 'uint16', sensorContact: 'not-supported', rrIntervalsMs: [], rrIntervalsRaw: [],
  }, 'uint16 heart rate');

  t.same(value(decodeHeartRateMeasurement(Uint8Array.from([0x1e, 0x5a, 0x10, 0x27, 0x00, 0x04, 0x80, 0x03, 0x9a, 0x02]))), {
    // flags 0x1E: uint8, contact supported + detected, energy, RR | 90 bpm | energy 0x2710 = 10000 kJ
    // | RR 0x0400 = 1024 (1000 ms), 0x0380 = 896 (875 ms), 0x029A = 666 (650.390625 ms)
    heartRate: 90,
    valueFormat: 'uint8',
    sensorContact: 'detected',
    energyExpendedKJ: 10000,
    energyExpendedSaturated: false,
    rrIntervalsMs: [1000, 875, 650.390625],
    rrIntervalsRaw: [1024, 896, 666],
  }, 'every field, three RR-Intervals');

  t.match(value(decodeHeartRateMeasurement(Uint8Array.from([0x08, 0x48, 0xff, 0xff]))), { energyExpendedKJ: 65535, energyExpendedSaturated: true }, 'energy expended saturates at 0xFFFF');
  t.match(value(decodeHeartRateMeasurement(Uint8Array.from([0x00, 0x00]))), { heartRate: 0 }, 'zero bpm decodes (no contact)');
});

t.test('sensor contact status, bits 1-2', async (t) => {
  const contact = (flags: number): string => value(decodeHeartRateMeasurement(Uint8Array.from([flags, 60]))).sensorContact;
  t.equal(contact(0x00), 'not-supported', '00: not supported');
  t.equal(contact(0x02), 'not-supported', '01 (detected without supported): not supported');
  t.equal(contact(0x04), 'not-detected', '10: supported, not detected');
  t.equal(contact(0x06), 'detected', '11: supported and detected');
});

/** Builds the payload for `flags` byte by byte, independently of the decoder. */
function encode(flags: number): { bytes: number[]; expected: HeartRateMeasurement; headerLength: number } {
  const bytes = [flags];
  const wide = (flags & 0x01) !== 0;
  if (wide) bytes.push(0x02, 0x01); // uint16 0x0102 = 258 bpm
  else bytes.push(0x48); // uint8 72 bpm
  if ((flags & 0x08) !== 0) bytes.push(0x90, 0x01); // energy expended 0x0190 = 400 kJ
  const headerLength = bytes.length;
  if ((flags & 0x10) !== 0) bytes.push(0x00, 0x04, 0x80, 0x03); // RR 1024 (1000 ms), 896 (875 ms)
  const contact = (flags & 0x04) === 0 ? 'not-supported' : (flags & 0x02) === 0 ? 'not-detected' : 'detected';
  return {
    bytes,
    headerLength,
    expected: {
      heartRate: wide ? 258 : 72,
      valueFormat: wide ? 'uint16' : 'uint8',
      sensorContact: contact,
      ...((flags & 0x08) !== 0 ? { energyExpendedKJ: 400, energyExpendedSaturated: false } : {}),
      rrIntervalsMs: (flags & 0x10) !== 0 ? [1000, 875] : [],
      rrIntervalsRaw: (flags & 0x10) !== 0 ? [1024, 896] : [],
    },
  };
}

t.test('every flag combination of bits 0-4, with and without the reserved bits 5-7', async (t) => {
  for (let flags = 0; flags < 32; flags++) {
    const { bytes, expected } = encode(flags);
    t.same(value(decodeHeartRateMeasurement(Uint8Array.from(bytes))), expected, `flags 0x${flags.toString(16)}`);
    for (const reserved of [0x20, 0x40, 0x80, 0xe0]) {
      const withReserved = [flags | reserved, ...bytes.slice(1)];
      t.same(value(decodeHeartRateMeasurement(Uint8Array.from(withReserved))), expected, `flags 0x${(flags | reserved).toString(16)}: reserved bits ignored`);
    }
  }
});

t.test('every truncation of every flag combination', async (t) => {
  for (let flags = 0; flags < 32; flags++) {
    const { bytes, headerLength } = encode(flags);
    const rr = (flags & 0x10) !== 0;
    for (let length = 0; length < bytes.length; length++) {
      const r = decodeHeartRateMeasurement(Uint8Array.from(bytes.slice(0, length)));
      const label = `flags 0x${flags.toString(16)} cut to ${length} byte(s)`;
      if (length < headerLength || (rr && length === headerLength)) t.match(r, { ok: false, error: { kind: 'truncated' } }, label);
      else if ((length - headerLength) % 2 !== 0) t.match(r, { ok: false, error: { kind: 'inconsistent', message: /not a whole number of uint16/ } }, label);
      else t.match(r, { ok: true, value: { rrIntervalsRaw: [1024] } }, `${label}: one whole RR-Interval left`);
    }
  }
});

t.test('inconsistent payloads', async (t) => {
  t.same(decodeHeartRateMeasurement(Uint8Array.from([0x00, 0x48, 0x00])), {
    ok: false,
    error: { kind: 'inconsistent', message: 'heart rate measurement: 1 byte(s) after the last field flags 0x00 announce' },
  }, 'a byte after the heart rate without the RR flag');
  t.match(decodeHeartRateMeasurement(Uint8Array.from([0x08, 0x48, 0x90, 0x01, 0x00, 0x04])), { ok: false, error: { kind: 'inconsistent' } }, 'RR-Interval bytes without the RR flag');
  t.match(decodeHeartRateMeasurement(Uint8Array.from([0x10, 0x48, 0x00, 0x04, 0x80])), { ok: false, error: { kind: 'inconsistent' } }, 'three RR bytes');
  t.same(decodeHeartRateMeasurement(Uint8Array.from([0x10, 0x48])), {
    ok: false,
    error: { kind: 'truncated', message: 'heart rate measurement: flags 0x10 announce RR-Intervals, none follow' },
  }, 'RR flag with no interval');
  t.same(decodeHeartRateMeasurement(new Uint8Array(0)), { ok: false, error: { kind: 'truncated', message: 'heart rate measurement: no flags byte' } });
});

t.test('many RR-Intervals in one notification', async (t) => {
  // 23-byte default ATT MTU leaves 20 bytes: flags, uint8 value, 9 intervals.
  const bytes = [0x10, 0x40];
  for (let i = 0; i < 9; i++) bytes.push(0x00, 0x04);
  const m = value(decodeHeartRateMeasurement(Uint8Array.from(bytes)));
  t.equal(m.rrIntervalsMs.length, 9);
  t.ok(m.rrIntervalsMs.every((ms) => ms === 1000));
});
