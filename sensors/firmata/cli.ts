import type { Command } from 'commander';
import { FieldlinkError } from '../../common/errors.js';
import { createLogger } from '../../common/log.js';
import { shutdownSignal } from '../../common/shutdown-signal.js';
import { FirmataEmulator } from './emulator.js';
import { isThermometerController } from './thermometers.js';

interface BoardCliOptions {
  link: string;
  id: string;
  sensor: string;
  celsius: number;
  noise: number;
  channels: number;
  log?: string;
  logLevel: string;
}

/** Registers `fieldlink emulate board` under the `emulate` command (sensors/cli.ts). */
export function registerBoardEmulator(emulate: Command): void {
  emulate
    .command('board')
    .description('serve Firmata (an Uno with analog thermometers) on a pseudo-terminal (needs socat); the host opens --link')
    .requiredOption('--link <path>', 'path of the host side of the pty pair (the emulator keeps <path>.emu)')
    .option('--id <id>', 'board id (logged sources firmata:<id>/A0 …)', 'board-1')
    .option('--sensor <type>', 'thermometer on each channel: TMP36 or LM35', 'TMP36')
    .option('--celsius <n>', 'temperature the thermometers read', (v) => Number(v), 21.5)
    .option('--noise <n>', 'random variation in °C', (v) => Number(v), 0.3)
    .option('--channels <n>', 'thermometers on A0 … A(n-1), 1-6', (v) => Number(v), 1)
    .option('--log <file>', 'append every analog value sent as JSON lines')
    .option('--log-level <level>', 'pino log level (to stderr)', 'info')
    .action(async (opts: BoardCliOptions) => {
      if (!isThermometerController(opts.sensor)) throw new FieldlinkError('CONFIG_INVALID', { message: `--sensor must be TMP36 or LM35, not "${opts.sensor}"` });
      if (!Number.isInteger(opts.channels) || opts.channels < 1 || opts.channels > 6) throw new FieldlinkError('CONFIG_INVALID', { message: `--channels must be 1-6, not ${opts.channels}` });
      if (!Number.isFinite(opts.celsius) || !(opts.noise >= 0)) throw new FieldlinkError('CONFIG_INVALID', { message: '--celsius must be a number and --noise ≥ 0' });
      const controller = opts.sensor;
      const log = createLogger({ name: 'fieldlink', level: opts.logLevel, destination: process.stderr });
      const analog = Object.fromEntries(Array.from({ length: opts.channels }, (_, ch) => [ch, { controller, celsius: opts.celsius, noiseC: opts.noise }]));
      const board = await FirmataEmulator.start({ link: opts.link, boardId: opts.id, analog, log, ...(opts.log === undefined ? {} : { readingLog: opts.log }) });
      process.stdout.write(`Firmata board emulator ready: open ${board.link} (57600 8N1), ${opts.channels} ${controller} on A0${opts.channels > 1 ? `-A${opts.channels - 1}` : ''}\n`);
      await shutdownSignal(log);
      await board.stop();
    });
}
