import type { Command } from 'commander';
import { FieldlinkError } from '../../../common/errors.js';
import { createLogger } from '../../../common/log.js';
import { shutdownSignal } from '../../../common/shutdown-signal.js';
import { startPrivateBus } from '../../dbus/private-bus.js';
import { startFakeBluez } from './fake-bluez.js';
import type { WearableService } from './wearable-model.js';

const SERVICES: readonly WearableService[] = ['heart_rate', 'battery', 'health_thermometer', 'environmental_sensing'];

interface WearablesCliOptions {
  count: number;
  rateHz: number;
  services: string;
  log?: string;
  logLevel: string;
}

function positiveInt(name: string, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new FieldlinkError('CONFIG_INVALID', { message: `${name} must be a whole number 1-${max}, not "${value}"` });
    return n;
  };
}

/** Addresses the emulated wearables get: AA:BB:CC:DD:EE:01, …:02, … (what a config pairs). */
export function wearableAddress(i: number): string {
  return `AA:BB:CC:DD:${(0xee + Math.floor(i / 256)).toString(16).toUpperCase()}:${(i % 256).toString(16).toUpperCase().padStart(2, '0')}`;
}

/** Registers `fieldlink emulate wearables` under an existing `emulate` command. */
export function registerWearablesEmulator(emulate: Command): void {
  emulate
    .command('wearables')
    .description('run a private D-Bus with an emulated BlueZ (org.bluez) and N BLE wearables; point the gateway at the printed bus address')
    .option('--count <n>', 'how many wearables', positiveInt('--count', 255), 2)
    .option('--rate-hz <n>', 'notifications a second per characteristic', (v) => Number(v), 1)
    .option('--services <list>', `comma-separated, of ${SERVICES.join(', ')}`, 'heart_rate,battery')
    .option('--log <file>', 'append every value emitted as JSON lines')
    .option('--log-level <level>', 'pino log level (to stderr)', 'info')
    .action(async (opts: WearablesCliOptions) => {
      const services = opts.services.split(',').map((s) => s.trim());
      const unknown = services.filter((s) => !(SERVICES as readonly string[]).includes(s));
      if (unknown.length > 0) throw new FieldlinkError('CONFIG_INVALID', { message: `unknown service ${unknown.join(', ')} (known: ${SERVICES.join(', ')})` });
      if (!(opts.rateHz > 0 && opts.rateHz <= 1000)) throw new FieldlinkError('CONFIG_INVALID', { message: `--rate-hz must be above 0 and at most 1000, not ${opts.rateHz}` });
      const log = createLogger({ name: 'fieldlink', level: opts.logLevel, destination: process.stderr });
      const bus = await startPrivateBus();
      try {
        const bluez = await startFakeBluez({ address: bus.address, log, ...(opts.log === undefined ? {} : { readingLog: opts.log }) });
        const addresses: string[] = [];
        for (let i = 1; i <= opts.count; i++) {
          const address = wearableAddress(i);
          bluez.addWearable({ address, name: `wearable ${i}`, services: services as WearableService[], rateHz: opts.rateHz });
          addresses.push(address);
        }
        process.stdout.write(`emulated BlueZ ready: DBUS_SYSTEM_BUS_ADDRESS=${bus.address}\n`);
        process.stdout.write(`wearables (adapter hci0): ${addresses.join(' ')}\n`);
        await shutdownSignal(log);
        await bluez.stop();
      } finally {
        await bus.stop();
      }
    });
}
