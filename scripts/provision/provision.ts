/**
 * One offline step from a stock Raspberry Pi OS image (or a mounted boot partition) to a card
 * that boots into a working gateway: identity in IoT Hub, pairing code, config, secrets and the
 * first-boot hook on the FAT boot partition, and a label.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FieldlinkError } from '../../common/errors.js';
import { generatePairingCode } from '../../common/pairing-code.js';
import { applyCmdline, applyConfigTxt, serviceDropIn, type BoardProfile } from '../boards.js';
import { mergeUserData } from '../firstboot/cloud-init.js';
import { bootPartitionOffset, mtoolsOn, unpackXz, type Progress } from './fat-image.js';
import { checkGatewayConfig, gatewayConfigFor, type SensorSpec } from './gateway-config.js';
import { hubEndpoint, provisionIdentity, type ProvisionHub, type ProvisionedIdentity } from './identity.js';
import { labelSvg, labelText, type Label } from './label.js';

/** dist/scripts/provision/ → the repository's (or bundle's) scripts/firstboot/. */
const FIRSTBOOT_SCRIPT = fileURLToPath(new URL('../../../scripts/firstboot/fieldlink-firstboot.sh', import.meta.url));

/** On the boot partition: our folder, and cloud-init's user-data beside config.txt. */
const BOOT_DIR = 'fieldlink';
const USER_DATA = 'user-data';

export type ProvisionTarget = { readonly kind: 'dir'; readonly dir: string } | { readonly kind: 'image'; readonly file: string };

export interface ProvisionOptions {
  readonly gatewayId: string;
  readonly board: BoardProfile;
  readonly sensors: readonly SensorSpec[];
  readonly hub: ProvisionHub;
  readonly target: ProvisionTarget;
  /** Where the label SVG goes (default: the current directory). */
  readonly labelDir: string;
  readonly checkInIntervalS?: number;
  /** The site the gateway is installed at (tags.fieldlink.site): pairing tokens are scoped to one. */
  readonly site?: string;
  /** The companion's public URL: the label's QR becomes a link to its pairing page. */
  readonly companionUrl?: string;
  /** An installable bundle (`npm run bundle`) to carry on the card. */
  readonly bundle?: string;
  /** Human progress lines (never secrets). */
  readonly say: (line: string) => void;
  readonly progress?: Progress;
}

export interface ProvisionResult {
  readonly identity: Omit<ProvisionedIdentity, 'connectionString'>;
  readonly pairingCode: string;
  /** Paths on the boot partition, relative to its root. */
  readonly files: readonly string[];
  /** The image written (the unpacked one for an .xz). */
  readonly image?: string;
  readonly labelFile: string;
  readonly config: Record<string, unknown>;
}

/** Overwrites a secret file before unlinking it (a temp dir can outlive us on a crash). */
function shred(file: string): void {
  try {
    writeFileSync(file, Buffer.alloc(statSync(file).size));
  } catch {
    // gone already
  }
  rmSync(file, { force: true });
}

interface Staged {
  dir: string;
  files: { name: string; local: string }[];
}

function stage(config: Record<string, unknown>, identity: ProvisionedIdentity, ca: string | undefined, bundle: string | undefined, board: BoardProfile): Staged {
  if (!existsSync(FIRSTBOOT_SCRIPT)) throw new FieldlinkError('CONFIG_INVALID', { message: `first-boot script missing: ${FIRSTBOOT_SCRIPT}` });
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-provision-'));
  const files: Staged['files'] = [];
  const add = (name: string, content: string | Buffer, mode = 0o644): void => {
    const local = join(dir, name);
    writeFileSync(local, content, { mode });
    files.push({ name: `${BOOT_DIR}/${name}`, local });
  };
  add('gateway.json', `${JSON.stringify(config, null, 2)}\n`);
  add('connection-string', `${identity.connectionString}\n`, 0o600);
  if (ca !== undefined) add('hub-ca.pem', ca);
  add('firstboot.sh', readFileSync(FIRSTBOOT_SCRIPT), 0o755);
  // First boot installs it as a drop-in of the gateway unit (the board's memory budget).
  add('service.conf', serviceDropIn(board));
  if (bundle !== undefined) files.push({ name: `${BOOT_DIR}/bundle.tgz`, local: bundle });
  return { dir, files };
}

/** A checked place to write: the directory exists, or the image is unpacked and its boot partition found. */
type PreparedTarget = { kind: 'dir'; dir: string } | { kind: 'image'; image: string; offset: number };

async function prepareTarget(target: ProvisionTarget, say: (line: string) => void, progress: Progress | undefined): Promise<PreparedTarget> {
  if (target.kind === 'dir') {
    if (!existsSync(target.dir) || !statSync(target.dir).isDirectory()) {
      throw new FieldlinkError('CONFIG_INVALID', { message: `--out ${target.dir}: not a directory (mount the boot partition there)` });
    }
    return { kind: 'dir', dir: target.dir };
  }
  let image = target.file;
  if (image.endsWith('.xz')) {
    const unpacked = image.slice(0, -'.xz'.length);
    if (existsSync(unpacked)) throw new FieldlinkError('CONFIG_INVALID', { message: `${unpacked} exists: remove it, or provision it directly with --image ${unpacked}` });
    say(`unpacking ${basename(image)} → ${basename(unpacked)}`);
    await unpackXz(image, unpacked, progress ?? (() => undefined));
    image = unpacked;
  }
  const offset = bootPartitionOffset(image);
  say(`boot partition at byte ${offset} of ${basename(image)}`);
  return { kind: 'image', image, offset };
}

/** The boot partition, as a directory or inside an image: read a file, write one from a local copy. */
interface BootPartition {
  read(name: string): Promise<string | undefined>;
  put(local: string, name: string): Promise<void>;
}

function bootPartition(target: PreparedTarget): BootPartition {
  if (target.kind === 'dir') {
    mkdirSync(join(target.dir, BOOT_DIR), { recursive: true });
    return {
      read: async (name) => (existsSync(join(target.dir, name)) ? readFileSync(join(target.dir, name), 'utf8') : undefined),
      put: async (local, name) => copyFileSync(local, join(target.dir, name)),
    };
  }
  const fat = mtoolsOn(target.image, target.offset);
  let made = false;
  return {
    read: (name) => fat.read(`::/${name}`),
    async put(local, name) {
      if (!made && name.startsWith(`${BOOT_DIR}/`)) {
        await fat.mkdir(`::/${BOOT_DIR}`);
        made = true;
      }
      await fat.put(local, `::/${name}`);
    },
  };
}

/**
 * Our files, then the edits the board needs in the partition's own files: cloud-init's
 * user-data (run firstboot.sh), config.txt (UART beside Bluetooth) and cmdline.txt (no serial
 * console on the thermostat's UART). Each edit keeps what is there and is idempotent.
 */
async function writeFiles(target: PreparedTarget, staged: Staged, board: BoardProfile): Promise<void> {
  const boot = bootPartition(target);
  for (const f of staged.files) await boot.put(f.local, f.name);
  const edits: [string, (existing: string | undefined) => string | undefined][] = [
    [USER_DATA, (t) => mergeUserData(t)],
    ['config.txt', (t) => applyConfigTxt(t ?? '', board)],
    ['cmdline.txt', (t) => (t === undefined ? undefined : applyCmdline(t, board))],
  ];
  for (const [name, edit] of edits) {
    const next = edit(await boot.read(name));
    if (next === undefined) continue;
    const local = join(staged.dir, name);
    writeFileSync(local, next);
    await boot.put(local, name);
  }
}

export async function provision(opts: ProvisionOptions): Promise<ProvisionResult> {
  const endpoint = hubEndpoint(opts.hub);
  // The card first: a bad image or directory must not leave an identity behind in the hub.
  const target = await prepareTarget(opts.target, opts.say, opts.progress);
  const pairingCode = generatePairingCode();
  const identity = await provisionIdentity(endpoint, opts.gatewayId, pairingCode, { board: opts.board.id, ...(opts.site === undefined ? {} : { site: opts.site }) });
  opts.say(`${identity.created ? 'created' : 'reused'} gateway identity "${identity.deviceId}" in ${endpoint.hostName}; pairing code hash in its twin tags`);
  const config = gatewayConfigFor({
    gatewayId: opts.gatewayId,
    board: opts.board,
    sensors: opts.sensors,
    withCa: endpoint.ca !== undefined,
    ...(opts.checkInIntervalS === undefined ? {} : { checkInIntervalS: opts.checkInIntervalS }),
  });
  checkGatewayConfig(config, identity.connectionString);

  const staged = stage(config, identity, endpoint.ca, opts.bundle, opts.board);
  try {
    await writeFiles(target, staged, opts.board);
  } finally {
    for (const f of staged.files) if (f.local.startsWith(staged.dir)) shred(f.local);
    rmSync(staged.dir, { recursive: true, force: true });
  }

  mkdirSync(opts.labelDir, { recursive: true });
  const labelFile = join(opts.labelDir, `${opts.gatewayId}-label.svg`);
  const label: Label = { gatewayId: opts.gatewayId, pairingCode, ...(opts.companionUrl === undefined ? {} : { companionUrl: opts.companionUrl }) };
  writeFileSync(labelFile, labelSvg(label));
  opts.say(await labelText(label));
  const { connectionString: _secret, ...publicIdentity } = identity;
  return {
    identity: publicIdentity,
    pairingCode,
    files: [...staged.files.map((f) => f.name), USER_DATA, 'config.txt'],
    ...(target.kind === 'image' ? { image: target.image } : {}),
    labelFile,
    config,
  };
}
