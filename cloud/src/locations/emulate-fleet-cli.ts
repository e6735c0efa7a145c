import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { InvalidArgumentError, type Command } from 'commander';
import { resourceLogDocument } from './record-stream.js';

/** The default seed, kept here so that registering the command loads no geolocation code. */
const DEFAULT_SEED = 20260605;

interface FleetCliOptions {
  devices: number;
  months: number;
  seed: number;
  now?: number;
  checkinsPerMonth: number;
  out?: string;
}

function wholeNumber(min: number, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) throw new InvalidArgumentError(`a whole number from ${min} to ${max}`);
    return n;
  };
}

function isoTime(value: string): number {
  const ms = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$/i.test(value.trim()) ? Date.parse(value) : Number.NaN;
  if (!Number.isFinite(ms)) throw new InvalidArgumentError('an ISO 8601 date, or date-time with a zone (2026-06-30T12:00:00Z)');
  return ms;
}

/** Writes `text`, waiting when the stream asks us to (a million records must not pile up in memory). */
async function write(out: Writable, text: string): Promise<void> {
  if (!out.write(text)) await once(out, 'drain');
}

/**
 * Registers `fieldlink emulate fleet` under the `emulate` command: a fleet's IoT Hub Connections
 * log over months, as `{"records":[…]}` (the Azure Monitor export shape), written as it is made.
 */
export function registerFleetHistoryEmulator(emulate: Command): void {
  emulate
    .command('fleet')
    .description('write an emulated fleet\'s IoT Hub Connections resource log over months (gateways in a dozen cities, growing, steady and declining) as {"records":[...]} JSON')
    .option('--devices <n>', 'gateways in the fleet', wholeNumber(0, 10_000_000), 200)
    .option('--months <m>', 'months of history, the current one included', wholeNumber(1, 600), 18)
    .option('--seed <n>', 'seed for the pseudo-random choices: the same seed, options and --now give the same records', wholeNumber(0, 0xffffffff), DEFAULT_SEED)
    .option('--now <time>', 'end of the history, ISO 8601 (default: now)', isoTime)
    .option('--checkins-per-month <n>', 'check-ins (connect + disconnect) per gateway per month, on average', wholeNumber(1, 3000), 4)
    .option('--out <file>', 'write here instead of stdout')
    .action(async (opts: FleetCliOptions) => {
      // Loaded here: `fieldlink emulate thermostat` on a gateway never needs them.
      const [{ generateFleetHistory, planFleet }, { openIpGeolocator }] = await Promise.all([import('./fleet-history.js'), import('./ip-geolocation.js')]);
      const geolocator = await openIpGeolocator();
      const options = {
        devices: opts.devices,
        months: opts.months,
        seed: opts.seed,
        checkinsPerMonth: opts.checkinsPerMonth,
        geolocator,
        ...(opts.now === undefined ? {} : { now: opts.now }),
      };
      const plan = planFleet(options);
      const out = opts.out === undefined ? process.stdout : createWriteStream(opts.out);
      if (out !== process.stdout) await once(out, 'open'); // rejects with the reason a file cannot be opened
      let count = 0;
      function* counted(): Generator<unknown> {
        for (const record of generateFleetHistory(options, plan)) {
          count++;
          yield record;
        }
      }
      for (const chunk of resourceLogDocument(counted())) await write(out, chunk);
      if (out !== process.stdout) {
        out.end();
        await once(out, 'finish');
      }
      const where = opts.out ?? 'stdout';
      process.stderr.write(`${count} records from ${plan.devices.length} gateways over ${plan.months.length} months (${plan.months[0]} to ${plan.months.at(-1)}) to ${where}; declining: ${plan.declining.join(', ') || 'none'}\n`);
      process.stderr.write(`locations by ${geolocator.source}: ${geolocator.attribution.text} (${geolocator.attribution.url})\n`);
    });
}
