import type { Command } from 'commander';
import { FieldlinkError } from '../../common/errors.js';
import { createLogger } from '../../common/log.js';
import { ThermostatEmulator, type FaultSchedule } from './emulator.js';
import { shutdownSignal } from '../../common/shutdown-signal.js';

function number(name: string, min: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < min) throw new FieldlinkError('CONFIG_INVALID', { message: `${name} must be a number ≥ ${min}, not "${value}"` });
    return n;
  };
}

interface ThermostatCliOptions {
  link: string;
  rateHz: number;
  log?: string;
  seed: number;
  id: string;
  logLevel: string;
  garbageEvery?: number;
  badChecksumEvery?: number;
  oversizeEvery?: number;
  disconnectEvery?: number;
  disconnectFor?: number;
  silenceEvery?: number;
  silenceFor?: number;
}

/** Registers `fieldlink emulate thermostat` under the `emulate` command (sensors/cli.ts). */
export function registerThermostatEmulator(emulate: Command): void {
  emulate
    .command('thermostat')
    .description('serve the serial thermostat protocol on a pseudo-terminal (needs socat); the host opens --link')
    .requiredOption('--link <path>', 'path of the host side of the pty pair (the emulator keeps <path>.emu)')
    .option('--rate-hz <n>', 'readings a second', number('--rate-hz', 0.0003), 1)
    .option('--log <file>', 'append every reading written as JSON lines {ts, source, deviceSeq, kind, value, unit}')
    .option('--seed <n>', 'seed of the value generator', number('--seed', 0), 1)
    .option('--id <id>', 'device id (banner and logged sources serial:<id>/<kind>)', 'thermo-1')
    .option('--log-level <level>', 'pino log level (to stderr)', 'info')
    .option('--garbage-every <n>', 'a line of random bytes before every nth reading', number('--garbage-every', 1))
    .option('--bad-checksum-every <n>', 'every nth reading with a wrong checksum', number('--bad-checksum-every', 1))
    .option('--oversize-every <n>', 'an over-long line before every nth reading', number('--oversize-every', 1))
    .option('--disconnect-every <ms>', 'disappear (socat killed) every <ms>', number('--disconnect-every', 1))
    .option('--disconnect-for <ms>', 'how long each disconnect lasts', number('--disconnect-for', 0), 1000)
    .option('--silence-every <ms>', 'stop emitting and answering every <ms>', number('--silence-every', 1))
    .option('--silence-for <ms>', 'how long each silence lasts', number('--silence-for', 0), 1000)
    .action(async (opts: ThermostatCliOptions) => {
      const log = createLogger({ name: 'fieldlink', level: opts.logLevel, destination: process.stderr });
      const faults: FaultSchedule = {
        ...(opts.garbageEvery === undefined ? {} : { garbageEvery: opts.garbageEvery }),
        ...(opts.badChecksumEvery === undefined ? {} : { badChecksumEvery: opts.badChecksumEvery }),
        ...(opts.oversizeEvery === undefined ? {} : { oversizeEvery: opts.oversizeEvery }),
        ...(opts.disconnectEvery === undefined ? {} : { disconnectEveryMs: opts.disconnectEvery, disconnectForMs: opts.disconnectFor }),
        ...(opts.silenceEvery === undefined ? {} : { silenceEveryMs: opts.silenceEvery, silenceForMs: opts.silenceFor }),
      };
      const emulator = await ThermostatEmulator.start({
        link: opts.link,
        rateHz: opts.rateHz,
        seed: opts.seed,
        deviceId: opts.id,
        faults,
        log,
        ...(opts.log === undefined ? {} : { readingLog: opts.log }),
      });
      process.stdout.write(`thermostat emulator ready: open ${emulator.link} (9600 8N1), ${opts.rateHz} readings/s\n`);
      await shutdownSignal(log);
      await emulator.stop();
    });
}
