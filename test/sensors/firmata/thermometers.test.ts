import t from 'tap';
import { analogChannel, celsiusRange, celsiusToRaw, rawToCelsius, rawToMillivolts } from '../../../sensors/firmata/thermometers.js';

// mV = raw·5000/1024; TMP36 °C = (mV − 500)/10; LM35 °C = mV/10; one decimal.
t.test('raw → °C vectors (5 V reference, 10-bit)', async (t) => {
  const vectors: Array<[raw: number, tmp36: number, lm35: number]> = [
    [0, -50, 0],
    [1, -49.5, 0.5], // 4.8828 mV
    [102, -0.2, 49.8], // 498.05 mV
    [103, 0.3, 50.3], // 502.93 mV
    [154, 25.2, 75.2], // 751.95 mV
    [150, 23.2, 73.2], // 732.42 mV
    [205, 50.1, 100.1], // 1000.98 mV
    [512, 200, 250], // 2500 mV exactly
    [1023, 449.5, 499.5], // 4995.1 mV
  ];
  for (const [raw, tmp36, lm35] of vectors) {
    t.equal(rawToCelsius('TMP36', raw), tmp36, `TMP36 raw ${raw}`);
    t.equal(rawToCelsius('LM35', raw), lm35, `LM35 raw ${raw}`);
  }
  t.equal(rawToMillivolts(512), 2500);
  t.ok(Object.is(rawToCelsius('LM35', 0), 0), 'no −0');
  t.same(celsiusRange('TMP36'), { min: -50, max: 449.5 });
  t.same(celsiusRange('LM35'), { min: 0, max: 499.5 });
});

t.test('out-of-range raw values are refused', async (t) => {
  for (const raw of [-1, 1024, 0.5, Number.NaN]) t.throws(() => rawToCelsius('TMP36', raw), RangeError, `raw ${raw}`);
});

t.test('°C → raw (what the emulator sends) and the round trip', async (t) => {
  t.equal(celsiusToRaw('TMP36', 22), 147); // 720 mV → 720·1024/5000 = 147.456
  t.equal(celsiusToRaw('TMP36', 0), 102); // 500 mV → 102.4
  t.equal(celsiusToRaw('LM35', 25), 51); // 250 mV → 51.2
  t.equal(celsiusToRaw('TMP36', -80), 0, 'clamped low');
  t.equal(celsiusToRaw('LM35', 600), 1023, 'clamped high');
  t.throws(() => celsiusToRaw('LM35', Number.POSITIVE_INFINITY), RangeError);
  for (let c = -40; c <= 125; c += 0.7) {
    const back = rawToCelsius('TMP36', celsiusToRaw('TMP36', c));
    if (Math.abs(back - c) > 0.3) t.fail(`TMP36 ${c} → ${back}`);
  }
  for (let c = 2; c <= 150; c += 0.7) {
    const back = rawToCelsius('LM35', celsiusToRaw('LM35', c));
    if (Math.abs(back - c) > 0.3) t.fail(`LM35 ${c} → ${back}`);
  }
  t.pass('round trips within half a step (0.25 °C, plus rounding to 0.1)');
});

t.test('analog pin names', async (t) => {
  t.equal(analogChannel('A0'), 0);
  t.equal(analogChannel('a5'), 5);
  t.equal(analogChannel(3), 3);
  t.equal(analogChannel('A6'), undefined);
  t.equal(analogChannel('D3'), undefined);
  t.equal(analogChannel('A'), undefined);
});
