import t from 'tap';
import { seededRandom } from '../../../common/seeded-random.js';
import {
  batteryLevelSamples,
  decodeBatteryLevel,
  decodeDateTime,
  decodeEssTemperature,
  decodeFloat,
  decodeHeartRateMeasurement,
  decodeHumidity,
  decodeSfloat,
  decodeTemperatureMeasurement,
  decodeUvIndex,
  essTemperatureSamples,
  heartRateSamples,
  humiditySamples,
  temperatureMeasurementSamples,
  uvIndexSamples,
  type DecodeResult,
  type SampleFields,
} from '../../../sensors/codec/index.js';

const PAYLOADS = 10_000;
const ERROR_KINDS = new Set(['truncated', 'inconsistent', 'reserved', 'range']);

/** Every number anywhere in `v` (arrays and nested objects included). */
function numbersIn(v: unknown, out: number[] = []): number[] {
  if (typeof v === 'number') out.push(v);
  else if (Array.isArray(v)) for (const x of v) numbersIn(x, out);
  else if (typeof v === 'object' && v !== null) for (const x of Object.values(v)) numbersIn(x, out);
  return out;
}

type Decoder = (b: Uint8Array) => DecodeResult<unknown>;
type ToSamples = (r: DecodeResult<never>) => SampleFields[];

// The last field: whether random bytes ever decode; a random Date Time is valid about 4 times in a million.
const decoders: Array<[string, Decoder, ToSamples, boolean?]> = [
  ['heart rate measurement', decodeHeartRateMeasurement, heartRateSamples],
  ['battery level', decodeBatteryLevel, batteryLevelSamples],
  ['temperature measurement', decodeTemperatureMeasurement, (r) => temperatureMeasurementSamples(r, 'skin_temperature')],
  ['ESS temperature', decodeEssTemperature, essTemperatureSamples],
  ['ESS humidity', decodeHumidity, humiditySamples],
  ['ESS UV index', decodeUvIndex, uvIndexSamples],
  ['FLOAT', (b) => decodeFloat(b), () => []],
  ['SFLOAT', (b) => decodeSfloat(b), () => []],
  ['date time', (b) => decodeDateTime(b), () => [], false],
];

decoders.forEach(([name, decode, toSamples, someDecode = true], i) => {
  t.test(`fuzz: ${PAYLOADS} random payloads of 0-40 bytes never throw (${name})`, async (t) => {
    const random = seededRandom(0xc0dec + i);
    let oks = 0;
    const problems: string[] = [];
    for (let n = 0; n < PAYLOADS; n++) {
      // Half the payloads are short (0-12 bytes), where the valid lengths are.
      const length = Math.floor(random() * (random() < 0.5 ? 13 : 41));
      const bytes = new Uint8Array(length);
      for (let k = 0; k < length; k++) bytes[k] = Math.floor(random() * 256);
      const hex = Buffer.from(bytes).toString('hex');
      try {
        const r = decode(bytes);
        if (r.ok) {
          oks++;
          if (!numbersIn(r.value).every(Number.isFinite)) problems.push(`${hex}: a non-finite number in ${JSON.stringify(r.value)}`);
        } else if (!ERROR_KINDS.has(r.error.kind) || r.error.message.length === 0) {
          problems.push(`${hex}: bad error ${JSON.stringify(r.error)}`);
        }
        const samples = toSamples(r as DecodeResult<never>);
        if (!samples.every((s) => Number.isFinite(s.value))) problems.push(`${hex}: a non-finite sample`);
      } catch (e) {
        problems.push(`${hex}: threw ${String(e)}`);
      }
    }
    t.same(problems.slice(0, 5), [], `no throw, ok values finite (${problems.length} problems)`);
    if (someDecode) t.ok(oks > 0, `${oks} of ${PAYLOADS} decoded`);
    t.ok(oks < PAYLOADS, `${PAYLOADS - oks} of ${PAYLOADS} rejected`);
  });
});
