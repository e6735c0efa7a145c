import type { Command } from 'commander';
import { FieldlinkError } from '../../../common/errors.js';
import { createLogger } from '../../../common/log.js';
import { shutdownSignal } from '../../../common/shutdown-signal.js';
import { startPrivateBus } from '../../dbus/private-bus.js';
import { deviceLabelTerminal, isPairingProfile, PAIRING_PROFILES, writeDeviceLabels, type DeviceLabel, type PairingProfile } from '../device-label.js';
import { startFakeBluez } from './fake-bluez.js';
import type { WearableService } from './wearable-model.js';

const SERVICES: readonly WearableService[] = ['heart_rate', 'battery', 'health_thermometer', 'environmental_sensing'];

interface WearablesCliOptions {
  count: number;
  rateHz: number;
  services: string;
  log?: string;
  logLevel: string;
  labels?: string;
  qr?: boolean;
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

/** The profile a wearable with these services pairs as: its first service the pairing page knows (battery is not one). */
export function pairingProfileOf(services: readonly string[]): PairingProfile | undefined {
  return services.find(isPairingProfile);
}

/** The pairing labels of the wearables `--count`/`--services` emulate: address, profile and name `wearable i`. */
export function wearableLabels(count: number, services: readonly string[]): DeviceLabel[] {
  const profile = pairingProfileOf(services);
  if (profile === undefined) {
    throw new FieldlinkError('CONFIG_INVALID', { message: `--labels and --qr need a service the pairing page knows in --services (${Object.keys(PAIRING_PROFILES).join(', ')}), not only "${services.join(',')}"` });
  }
  return Array.from({ length: count }, (_, k) => ({ address: wearableAddress(k + 1), profile, name: `wearable ${k + 1}` }));
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
    .option('--labels <dir>', 'write a printable pairing label (QR code, address, model) per wearable: <dir>/AA-BB-CC-DD-EE-01.svg, …')
    .option('--qr', "print each wearable's pairing QR code, address and model on startup")
    .action(async (opts: WearablesCliOptions) => {
      const services = opts.services.split(',').map((s) => s.trim());
      const unknown = services.filter((s) => !(SERVICES as readonly string[]).includes(s));
      if (unknown.length > 0) throw new FieldlinkError('CONFIG_INVALID', { message: `unknown service ${unknown.join(', ')} (known: ${SERVICES.join(', ')})` });
      if (!(opts.rateHz > 0 && opts.rateHz <= 1000)) throw new FieldlinkError('CONFIG_INVALID', { message: `--rate-hz must be above 0 and at most 1000, not ${opts.rateHz}` });
      const labels = opts.labels !== undefined || opts.qr === true ? wearableLabels(opts.count, services) : [];
      // Written before the bus starts: a bad directory fails with nothing to clean up.
      if (opts.labels !== undefined) {
        const files = writeDeviceLabels(opts.labels, labels);
        process.stdout.write(`pairing labels: ${files.length} written to ${opts.labels}\n`);
      }
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
        if (opts.qr === true) for (const label of labels) process.stdout.write(`${await deviceLabelTerminal(label)}\n`);
        process.stdout.write(`emulated BlueZ ready: DBUS_SYSTEM_BUS_ADDRESS=${bus.address}\n`);
        process.stdout.write(`wearables (adapter hci0): ${addresses.join(' ')}\n`);
        await shutdownSignal(log);
        await bluez.stop();
      } finally {
        await bus.stop();
      }
    });
}
