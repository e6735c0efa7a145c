import { randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import t from 'tap';
import {
  buildTelemetryDocument,
  decodeTelemetry,
  encodeTelemetry,
  TELEMETRY_GZIP_LEVEL,
  telemetryMessageSize,
  telemetryProperties,
  TelemetryTextBuilder,
} from '../../../gateway/src/contract/telemetry.js';
import { buildMessage, packMessage, planBatch, type BatchPlan, type PackableRow, type PackerSettings } from '../../../gateway/src/app/packer.js';
import { BILLING_UNIT_BYTES, rowsWithinBudget } from '../../../gateway/src/domain/packer.js';
import type { Reading } from '../../../sensors/contract/reading.js';
import { noisyReadings } from '../../helpers/readings.js';

const rowsOf = (readings: readonly Reading[], firstId = 1): PackableRow[] => readings.map((reading, i) => ({ id: firstId + i, reading }));
const ROWS = rowsOf(noisyReadings(12_000, 42), 1001);
const GW = 'gw-pi-0042';

t.test('never over budget and as full as possible (the next row would not fit)', async (t) => {
  for (const encoding of ['json', 'json+gzip'] as const) {
    for (const budgetUnits of [1, 2, 8]) {
      const budget = budgetUnits * BILLING_UNIT_BYTES;
      let rest = ROWS;
      for (let batch = 0; batch < 3 && rest.length > 0; batch++) {
        const { plan, message } = planBatch(rest, { gatewayId: GW, encoding, budgetUnits });
        const n = plan.rowIds.length;
        t.ok(message.size <= budget, `${encoding} ${budgetUnits}u #${batch}: ${message.size} <= ${budget}`);
        t.equal(message.size, telemetryMessageSize({ ...message, deviceId: GW }), 'size is the metered size');
        if (n < rest.length) t.ok(packMessage(GW, encoding, rest.slice(0, n + 1)).size > budget, `one more row (${n + 1}) would exceed ${budget}`);
        else t.ok(batch > 0, 'only the tail of the set fits whole');
        t.same(decodeTelemetry(message.body, message.contentEncoding), rest.slice(0, n).map((r) => r.reading), 'decodes to the rows, in order');
        rest = rest.slice(n);
      }
    }
  }
});

t.test('readings per billed 4 KB unit on a realistic noisy seeded set', async (t) => {
  const figures: Record<string, number> = {};
  for (const encoding of ['json', 'json+gzip'] as const) {
    for (const budgetUnits of [1, 4]) {
      let rest = ROWS;
      let units = 0;
      let readings = 0;
      let bytes = 0;
      while (rest.length > 0) {
        const { plan, message } = planBatch(rest, { gatewayId: GW, encoding, budgetUnits });
        units += Math.ceil(message.size / BILLING_UNIT_BYTES);
        bytes += message.size;
        readings += plan.rowIds.length;
        rest = rest.slice(plan.rowIds.length);
      }
      const perUnit = readings / units;
      figures[`${encoding} ${budgetUnits}u`] = Math.round(perUnit * 10) / 10;
      t.comment(
        `${encoding.padEnd(9)} budget ${budgetUnits} unit(s): ${readings} readings in ${units} billed units = ${perUnit.toFixed(1)} readings/unit, ` +
          `${(bytes / readings).toFixed(1)} B/reading, fill ${((100 * bytes) / (units * BILLING_UNIT_BYTES)).toFixed(1)}%`,
      );
      t.equal(readings, ROWS.length, 'every row packed exactly once');
    }
  }
  // Issue 4's targets: ~29 readings/unit as plain JSON, >= 300 with json+gzip.
  t.ok((figures['json 1u'] ?? 0) >= 29, `json: ${figures['json 1u']} readings/unit >= 29`);
  t.ok((figures['json+gzip 1u'] ?? 0) >= 300, `json+gzip: ${figures['json+gzip 1u']} readings/unit >= 300`);
});

t.test('deterministic: same rows and settings give the same bytes and id; a resend ignores new settings', async (t) => {
  const rows = ROWS.slice(0, 3000);
  for (const encoding of ['json', 'json+gzip'] as const) {
    const settings: PackerSettings = { gatewayId: GW, encoding, budgetUnits: 2 };
    const a = planBatch(rows, settings);
    const b = planBatch(rows, settings);
    t.ok(a.message.body.equals(b.message.body), `${encoding}: identical body`);
    t.same(a.plan, b.plan);
    t.same(a.message.properties, b.message.properties);
    const ids = a.plan.rowIds;
    t.equal(a.message.messageId, `${GW}:${ids[0]}-${ids.at(-1)}`, 'id = gateway:first-last row id');
    // The plan is what is recorded; after a crash the same rows are re-read from the outbox.
    const recorded = JSON.parse(JSON.stringify(a.plan)) as typeof a.plan;
    const chosen = rows.filter((r) => recorded.rowIds.includes(r.id));
    const resend = buildMessage(recorded, chosen);
    t.ok(resend.body.equals(a.message.body), `${encoding}: resend is byte-identical`);
    t.equal(resend.messageId, a.message.messageId);
    t.equal(resend.contentEncoding, a.message.contentEncoding);
    // A config change (other encoding, other budget) affects new batches, not the recorded one.
    const other = planBatch(rows, { gatewayId: GW, encoding: encoding === 'json' ? 'json+gzip' : 'json', budgetUnits: 1 });
    t.not(other.message.body.toString('base64'), a.message.body.toString('base64'), 'new settings pack differently');
    t.ok(buildMessage(recorded, chosen).body.equals(a.message.body), 'the recorded batch does not');
  }
});

t.test('message metadata', async (t) => {
  const { message } = planBatch(ROWS.slice(0, 50), { gatewayId: GW, encoding: 'json+gzip' });
  t.equal(message.contentType, 'application/json');
  t.equal(message.contentEncoding, 'gzip');
  t.equal(message.readingCount, 50, 'small outbox: everything fits');
  t.equal(message.properties.flCount, '50');
  t.equal(message.properties.flGateway, GW);
  t.equal(planBatch(ROWS.slice(0, 5), { gatewayId: GW, encoding: 'json' }).message.contentEncoding, 'utf-8');
});

t.test('a reading bigger than the budget goes alone; one bigger than the 256 KB cap is refused', async (t) => {
  // Random hex, so gzip cannot squeeze it under the budget.
  const big = (len: number): Reading => ({ source: `x:${randomBytes(len / 2).toString('hex')}`, kind: 'mode', value: 1, unit: '', ts: 1, seq: 1, flags: {} });
  const rows = [{ id: 5, reading: big(12_000) }, ...rowsOf(noisyReadings(10), 6)];
  for (const encoding of ['json', 'json+gzip'] as const) {
    const { plan, message } = planBatch(rows, { gatewayId: GW, encoding });
    t.same(plan.rowIds, [5], `${encoding}: alone`);
    t.ok(message.size > BILLING_UNIT_BYTES);
  }
  t.throws(() => planBatch([{ id: 7, reading: big(300 * 1024) }], { gatewayId: GW, encoding: 'json' }), {
    code: 'READING_TOO_LARGE',
    message: /row 7 alone makes a \d+-byte message, over IoT Hub's 262144-byte cap/,
    details: { rowId: 7 },
  });
});

t.test('bad input', async (t) => {
  t.throws(() => planBatch([], { gatewayId: GW, encoding: 'json' }), /nothing to pack/);
  t.throws(() => planBatch([...ROWS.slice(1, 3), ...ROWS.slice(0, 1)], { gatewayId: GW, encoding: 'json' }), /ascending id order/);
  t.throws(() => planBatch(ROWS.slice(0, 3), { gatewayId: GW, encoding: 'json', budgetUnits: 0 }), /1-60 whole 4 KB units/);
  t.throws(() => planBatch(ROWS.slice(0, 3), { gatewayId: GW, encoding: 'json', budgetUnits: 61 }), /1-60/);
  t.throws(() => planBatch(ROWS.slice(0, 3), { gatewayId: GW, encoding: 'json', budgetUnits: 1.5 }), /1-60/);
  const { plan } = planBatch(ROWS.slice(0, 3), { gatewayId: GW, encoding: 'json' });
  t.throws(() => buildMessage(plan, ROWS.slice(0, 2)), /are not batch/);
  t.throws(() => buildMessage(plan, ROWS.slice(1, 4)), /are not batch/);
});

t.test('rowsWithinBudget (the pure rule)', async (t) => {
  const linear = (per: number) => (n: number) => n * per;
  t.equal(rowsWithinBudget(0, 100, linear(10)), 0);
  t.equal(rowsWithinBudget(100, 100, linear(10)), 10);
  t.equal(rowsWithinBudget(5, 100, linear(10)), 5, 'all fit');
  t.equal(rowsWithinBudget(1, 100, linear(500)), 1, 'too big still goes alone');
  t.equal(rowsWithinBudget(50, 100, linear(500)), 1);
  for (let budget = 1; budget <= 200; budget++) {
    for (const count of [1, 2, 3, 7, 16, 17, 100]) {
      const expected = Math.max(1, Math.min(count, Math.floor(budget / 3)));
      t.equal(rowsWithinBudget(count, budget, linear(3)), expected, `count ${count} budget ${budget}`, { diagnostic: false });
    }
  }
  let calls = 0;
  rowsWithinBudget(1_000_000, 1000, (n) => (calls++, n * 10));
  t.ok(calls <= 16, `cost follows the answer, not the row count (${calls} probes)`);
});

t.test('rowsWithinBudget: the same edge from any guess, in few probes', async (t) => {
  const linear = (per: number, fixed = 0) => (n: number) => fixed + n * per;
  for (const guess of [1, 2, 50, 333, 334, 335, 999, 10_000, 2_000_000]) {
    let calls = 0;
    const n = rowsWithinBudget(1_000_000, 100_000, (k) => (calls++, linear(300, 250)(k)), guess);
    t.equal(n, 332, `guess ${guess}`);
    t.ok(calls <= 6, `guess ${guess}: ${calls} probes`);
  }
  // A size that is not linear at all still ends on an edge, with the bisection safeguard.
  const steps = (n: number): number => 1000 * Math.floor(Math.sqrt(n)) + n;
  let calls = 0;
  const n = rowsWithinBudget(100_000, 50_000, (k) => (calls++, steps(k)), 1);
  t.ok(steps(n) <= 50_000 && steps(n + 1) > 50_000, `edge ${n}`);
  t.ok(calls <= 40, `${calls} probes`);
});

/** Odd readings the format specialises: boot ids, flags, deviceSeq, non-ASCII, backwards ts, one source two kinds. */
const ODD: Reading[] = [
  { source: 's/ä', kind: 'mode', value: 0, unit: '', ts: 10, seq: 0, flags: {} },
  { source: 's/ä', kind: 'mode', value: 1e-7, unit: '', ts: 5, seq: 3, deviceSeq: 0, flags: {} },
  { source: 's/ä', kind: 'mode', value: -1.5e300, unit: '', ts: 5, seq: 4, flags: { clockUnsynced: true }, bootId: 'b1' },
  { source: 's/ä', kind: 'mode', value: 2, unit: '', ts: 6, seq: 5, flags: { alarm: true }, bootId: 'b—2' },
  { source: 's/ä', kind: 'uv_index', value: -0, unit: 'µ', ts: 6, seq: 6, deviceSeq: 7, flags: { alarm: true, clockUnsynced: true } },
  { source: 'x', kind: 'rssi', value: 1e21, unit: 'dBm', ts: 6, seq: 1, flags: {}, bootId: 'b1' },
];

t.test('TelemetryTextBuilder: text(n) is the encoder\'s JSON of the first n readings, byte for byte', async (t) => {
  for (const readings of [noisyReadings(400, 3), ODD, [...ODD, ...noisyReadings(50, 9), ...ODD]]) {
    const b = new TelemetryTextBuilder(GW, readings);
    for (let n = 1; n <= readings.length; n += n < 20 ? 1 : 37) {
      const expected = JSON.stringify(buildTelemetryDocument(GW, readings.slice(0, n)));
      t.equal(b.text(n).toString('utf8'), expected, `n ${n}`, { diagnostic: false });
      t.equal(b.byteLength(n), Buffer.byteLength(expected), `byteLength ${n}`, { diagnostic: false });
      t.same(b.properties(n), telemetryProperties(GW, readings.slice(0, n)), `properties ${n}`, { diagnostic: false });
    }
    t.equal(encodeTelemetry(GW, readings, 'json').toString('utf8'), JSON.stringify(buildTelemetryDocument(GW, readings)));
  }
  const b = new TelemetryTextBuilder(GW, noisyReadings(1000, 3));
  b.text(10);
  t.equal(b.encoded, 10, 'readings are encoded lazily, up to the largest n asked for');
  t.throws(() => b.text(0), RangeError);
  t.throws(() => b.text(1001), RangeError);
});

t.test('packing cost: each row encoded once, a few gzip runs per message, the same message from any guess', async (t) => {
  const budgetUnits = 16;
  const settings: PackerSettings = { gatewayId: GW, encoding: 'json+gzip', budgetUnits };
  const rows = rowsOf(noisyReadings(40_000, 5));
  const { plan, message, cost } = planBatch(rows, settings);
  const n = plan.rowIds.length;
  t.ok(n > 10_000 && n < rows.length, `${n} rows fill 16 units`);
  t.ok(message.size <= budgetUnits * BILLING_UNIT_BYTES && packMessage(GW, 'json+gzip', rows.slice(0, n + 1)).size > budgetUnits * BILLING_UNIT_BYTES, 'on the edge');
  t.ok(cost.rowsEncoded <= n + Math.ceil(n / 20), `${cost.rowsEncoded} rows encoded for ${n}`);
  t.ok(cost.compressions <= 7, `${cost.compressions} gzip runs (doubling then bisecting took 27)`);
  for (const guessRows of [1, n - 40, n, n + 1, n + 500, 1e9]) {
    const again = planBatch(rows, settings, { guessRows });
    t.same(again.plan, plan, `guess ${guessRows}: the same plan`);
    t.ok(again.message.body.equals(message.body), `guess ${guessRows}: the same bytes`);
    if (Math.abs(guessRows - n) <= 1) t.ok(again.cost.compressions <= 4, `a good guess: ${again.cost.compressions} gzip runs`);
  }
  const json = planBatch(rows, { ...settings, encoding: 'json' });
  t.equal(json.cost.compressions, 0, 'json sizes need no body');
  t.ok(json.cost.probes <= 6, `${json.cost.probes} json probes`);
});

t.test('the gzip level is recorded in the plan; a plan without one (recorded before) rebuilds at level 9', async (t) => {
  const rows = ROWS.slice(0, 2000);
  const { plan, message } = planBatch(rows, { gatewayId: GW, encoding: 'json+gzip', budgetUnits: 2 });
  t.equal(plan.gzipLevel, TELEMETRY_GZIP_LEVEL);
  t.equal(TELEMETRY_GZIP_LEVEL, 6);
  const chosen = rows.slice(0, plan.rowIds.length);
  t.ok(buildMessage(JSON.parse(JSON.stringify(plan)) as BatchPlan, chosen).body.equals(message.body), 'rebuilt identically');
  const { gzipLevel: _level, ...legacy } = plan;
  const old = buildMessage(legacy, chosen);
  t.ok(old.body.equals(encodeTelemetry(GW, chosen.map((r) => r.reading), 'json+gzip', 9)), 'legacy plan: level 9, as it was sent');
  t.ok(gunzipSync(old.body).equals(gunzipSync(message.body)), 'the same text either way');
  t.notOk('gzipLevel' in planBatch(rows, { gatewayId: GW, encoding: 'json' }).plan, 'no level for json');
});
