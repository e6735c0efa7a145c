import { resolve } from 'node:path';
import type { Command } from 'commander';
import { FieldlinkError } from '../../common/errors.js';
import { siteProblem } from '../../common/site.js';
import { GATEWAY_ID_PATTERN } from '../../gateway/src/contract/gateway-config.js';
import { hubFilePath, DEFAULT_DATA_DIR as DEFAULT_HUB_DATA_DIR } from '../../cloud/hub/data-dir.js';
import { listBoardProfiles, loadBoardProfile } from '../boards.js';
import { parseSensorSpec, type SensorSpec } from './gateway-config.js';
import type { ProvisionHub } from './identity.js';
import { companionBaseUrl } from '../../common/companion-url.js';
import { provision, type ProvisionTarget } from './provision.js';

interface ProvisionCliOptions {
  id: string;
  board: string;
  sensor: SensorSpec[];
  out?: string;
  image?: string;
  hub?: string;
  hubConnectionString?: string;
  labelDir: string;
  checkIn?: number;
  site?: string;
  companionUrl?: string;
  bundle?: string;
  json?: boolean;
}

export interface ProvisionCliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Readonly<Record<string, string | undefined>>;
  isTty: boolean;
}

const defaultIo: ProvisionCliIo = {
  stdout: (t) => void process.stdout.write(t),
  stderr: (t) => void process.stderr.write(t),
  env: process.env,
  isTty: process.stderr.isTTY === true,
};

function collectSensor(value: string, previous: SensorSpec[]): SensorSpec[] {
  return [...previous, parseSensorSpec(value)];
}

function siteName(value: string): string {
  const problem = siteProblem(value);
  if (problem !== undefined) throw new FieldlinkError('CONFIG_INVALID', { message: problem });
  return value;
}

function gatewayId(value: string): string {
  if (!new RegExp(GATEWAY_ID_PATTERN).test(value)) throw new FieldlinkError('CONFIG_INVALID', { message: `--id "${value}" is not a valid IoT Hub device id` });
  return value;
}

/** Progress for gigabyte copies: a rewritten line on a terminal, a line every 10 % otherwise. */
function progressPrinter(io: ProvisionCliIo): (done: number, total: number | undefined) => void {
  let lastShown = -1;
  let lastAt = 0;
  return (done, total) => {
    const pct = total ? Math.floor((done / total) * 100) : undefined;
    const mib = (done / 1_048_576).toFixed(0);
    const line = pct === undefined ? `  ${mib} MiB` : `  ${pct}% (${mib} of ${(total! / 1_048_576).toFixed(0)} MiB)`;
    if (io.isTty) {
      if (Date.now() - lastAt < 200 && pct !== 100) return;
      lastAt = Date.now();
      io.stderr(`\r${line}${pct === 100 ? '\n' : ''}`);
    } else if (pct !== undefined && pct >= lastShown + 10) {
      lastShown = pct - (pct % 10);
      io.stderr(`${line}\n`);
    }
  };
}

/**
 * `fieldlink provision`: identity, pairing code, config and first-boot files for one gateway,
 * into a mounted boot partition (`--out`) or an image file (`--image`). The connection string
 * goes only onto the card (a 0600 file there), never to the terminal.
 */
export function registerProvisionCommand(program: Command, io: ProvisionCliIo = defaultIo): void {
  program
    .command('provision')
    .description('create (or reuse) a gateway identity and write its config, secret and first-boot step onto a card or image')
    .requiredOption('--id <gatewayId>', 'gateway id (its IoT Hub device id)', gatewayId)
    .requiredOption('--board <board>', `board profile: ${listBoardProfiles().map((b) => b.id).join(', ')}`)
    .option('--sensor <spec>', 'serial:ID:PATH[:BAUD] | firmata:ID:PATH[:A0=TMP36,…] | ble:ID[:ADAPTER] (repeat)', collectSensor, [])
    .option('--out <dir>', 'a mounted boot partition (or any directory)')
    .option('--image <file>', 'a Raspberry Pi OS image file (.img, or .img.xz unpacked beside it)')
    .option('--hub <file>', "a local hub's hub.json (default: .fieldlink/hub/hub.json)")
    .option('--hub-connection-string <cs>', 'an IoT Hub connection string with RegistryRead/Write (or FIELDLINK_HUB_REGISTRY_CONNECTION_STRING)')
    .option('--label-dir <dir>', 'where to write <id>-label.svg', '.')
    .option('--site <name>', 'the site the gateway is installed at (twin tag fieldlink.site); pairing tokens are scoped to a site', siteName)
    .option('--companion-url <url>', "the cloud companion's public URL: the label's QR opens its pairing page")
    .option('--check-in <s>', 'check-in interval in seconds (default: the gateway default)', (v) => Number(v))
    .option('--bundle <tgz>', 'an installable bundle (npm run bundle) to carry on the card')
    .option('--json', 'print the result as JSON (no QR art)')
    .action(async (opts: ProvisionCliOptions) => {
      if ((opts.out === undefined) === (opts.image === undefined)) throw new FieldlinkError('CONFIG_INVALID', { message: 'give exactly one of --out DIR and --image FILE' });
      if (opts.sensor.length === 0) throw new FieldlinkError('CONFIG_INVALID', { message: 'give at least one --sensor (e.g. serial:thermo-1:/dev/fieldlink/uart, or a USB adapter: /dev/fieldlink/thermostat-<port>)' });
      const cs = opts.hubConnectionString ?? io.env.FIELDLINK_HUB_REGISTRY_CONNECTION_STRING;
      if (cs !== undefined && opts.hub !== undefined) throw new FieldlinkError('CONFIG_INVALID', { message: '--hub and a hub connection string exclude each other: give one' });
      const hub: ProvisionHub = cs !== undefined ? { kind: 'connection-string', connectionString: cs } : { kind: 'file', hubJson: resolve(opts.hub ?? hubFilePath(DEFAULT_HUB_DATA_DIR)) };
      const target: ProvisionTarget = opts.out !== undefined ? { kind: 'dir', dir: resolve(opts.out) } : { kind: 'image', file: resolve(opts.image ?? '') };
      const lines: string[] = [];
      const result = await provision({
        gatewayId: opts.id,
        board: loadBoardProfile(opts.board),
        sensors: opts.sensor,
        hub,
        target,
        labelDir: resolve(opts.labelDir),
        ...(opts.checkIn === undefined ? {} : { checkInIntervalS: opts.checkIn }),
        ...(opts.site === undefined ? {} : { site: opts.site }),
        ...(opts.companionUrl === undefined ? {} : { companionUrl: companionBaseUrl(opts.companionUrl, '--companion-url') }),
        ...(opts.bundle === undefined ? {} : { bundle: resolve(opts.bundle) }),
        say: (line) => (opts.json ? lines.push(line) : io.stdout(`${line}\n`)),
        progress: progressPrinter(io),
      });
      if (opts.json) {
        io.stdout(`${JSON.stringify({ gatewayId: result.identity.deviceId, created: result.identity.created, pairingCode: result.pairingCode, files: result.files, image: result.image, label: result.labelFile })}\n`);
        return;
      }
      io.stdout(`written: ${result.files.join(', ')}${result.image ? ` into ${result.image}` : ''}\n`);
      io.stdout(`label: ${result.labelFile}\n`);
      io.stdout('first boot (cloud-init) installs the config and the secret into /etc/fieldlink and erases the secret from the boot partition\n');
    });
}
