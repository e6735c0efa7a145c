/**
 * Board profiles: what the field tools need to know about each supported Raspberry Pi, kept as
 * data in hardware/boards/<id>.yaml (one file per board, with the reasoning in its comments)
 * and validated here with the same loader as every config (common/config.ts).
 *
 * Used by `fieldlink provision` (the outbox budget in the generated gateway.json, the BLE
 * adapter, the config.txt and cmdline.txt edits, the service's memory limit). `serial` is read
 * by no code: it records the device names the udev rules give, for whoever writes `--sensor`.
 *
 * Rules a schema cannot state (`boardRuleProblems`): the gateway's memory limit is at most half
 * the board's RAM, and the outbox fits the gateway's defaults (at least the 8 MiB wake
 * watermark, at most a quarter of RAM so the SQLite working set stays small beside it).
 */
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { loadConfig, readConfigText, type ConfigProblem } from '../common/config.js';
import { FieldlinkError } from '../common/errors.js';

export interface BoardProfile {
  /** File name without .yaml; what `--board` takes. */
  readonly id: string;
  readonly name: string;
  /** RAM of the variant the budgets are sized for, in MiB. */
  readonly memoryMb: number;
  /** The gateway service's MemoryMax, in MiB. */
  readonly gatewayMemoryMaxMb: number;
  /** The outbox's `settings.outbox.maxBytes` for this board. */
  readonly outboxMaxBytes: number;
  /** BlueZ adapter for `ble` sources. */
  readonly bleAdapter: string;
  /** Where the serial devices appear (names made by hardware/udev/99-fieldlink-serial.rules). */
  readonly serial: {
    /** The on-board UART on GPIO 14/15. */
    readonly uart: string;
    /** Glob of the USB-serial adapters' names (thermostats). */
    readonly usbThermostats: string;
    /** Glob of the Arduino boards' names (Firmata). */
    readonly firmataBoards: string;
  };
  /** Lines config.txt must contain (UART alongside Bluetooth). */
  readonly configTxt: readonly string[];
  /** Words to remove from cmdline.txt (the serial console). */
  readonly cmdlineRemove: readonly string[];
}

const DEVICE_PATH = '^/dev/[A-Za-z0-9_./*-]+$';

const boardProfileSchema = {
  $id: 'https://fieldlink.dev/schemas/board-profile.json',
  title: 'Fieldlink board profile (hardware/boards/<id>.yaml)',
  type: 'object',
  additionalProperties: false,
  required: ['id', 'name', 'memoryMb', 'gatewayMemoryMaxMb', 'outboxMaxBytes', 'bleAdapter', 'serial', 'configTxt', 'cmdlineRemove'],
  properties: {
    id: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,31}$' },
    name: { type: 'string', minLength: 1, maxLength: 64 },
    memoryMb: { type: 'integer', minimum: 256, maximum: 65_536 },
    gatewayMemoryMaxMb: { type: 'integer', minimum: 96 },
    outboxMaxBytes: { type: 'integer', minimum: 1_048_576 },
    bleAdapter: { type: 'string', pattern: '^hci[0-9]+$' },
    serial: {
      type: 'object',
      additionalProperties: false,
      required: ['uart', 'usbThermostats', 'firmataBoards'],
      properties: {
        uart: { type: 'string', pattern: DEVICE_PATH },
        usbThermostats: { type: 'string', pattern: DEVICE_PATH },
        firmataBoards: { type: 'string', pattern: DEVICE_PATH },
      },
    },
    configTxt: {
      type: 'array',
      minItems: 1,
      uniqueItems: true,
      // key=value, as config.txt has them (dtoverlay/dtparam repeat the key, so lines, not a map).
      items: { type: 'string', pattern: '^[a-z_0-9]+=[^\\s#]+$' },
    },
    cmdlineRemove: { type: 'array', uniqueItems: true, items: { type: 'string', pattern: '^\\S+$' } },
  },
} as const;

/** hardware/boards/ beside dist/: dist/scripts/boards.js → ../../hardware/boards/. */
const BOARDS_DIR = new URL('../../hardware/boards/', import.meta.url);

const WAKE_WATERMARK_BYTES = 8 * 1024 * 1024;

/** The rules across fields; paths as JSON pointers into the profile. */
export function boardRuleProblems(p: BoardProfile): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  if (p.gatewayMemoryMaxMb * 2 > p.memoryMb) problems.push({ path: '/gatewayMemoryMaxMb', message: `must be at most half of memoryMb (${p.memoryMb / 2})` });
  if (p.outboxMaxBytes < WAKE_WATERMARK_BYTES) problems.push({ path: '/outboxMaxBytes', message: `must be at least the default wake watermark (${WAKE_WATERMARK_BYTES} bytes)` });
  if (p.outboxMaxBytes > (p.memoryMb * 1024 * 1024) / 4) problems.push({ path: '/outboxMaxBytes', message: 'must be at most a quarter of memoryMb' });
  if (!p.configTxt.includes('enable_uart=1')) problems.push({ path: '/configTxt', message: 'must contain enable_uart=1' });
  return problems;
}

function profileIds(): string[] {
  return readdirSync(fileURLToPath(BOARDS_DIR))
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => f.slice(0, -'.yaml'.length))
    .sort();
}

function readProfile(id: string): BoardProfile {
  const file = fileURLToPath(new URL(`${id}.yaml`, BOARDS_DIR));
  const source = `board profile ${file}`;
  let document: unknown;
  try {
    document = YAML.parse(readConfigText(file), { uniqueKeys: true }) as unknown;
  } catch (cause) {
    if (cause instanceof FieldlinkError) throw cause;
    throw new FieldlinkError('CONFIG_UNREADABLE', { message: `${source} is not valid YAML: ${(cause as Error).message.split('\n')[0] ?? ''}`, cause, details: { path: file } });
  }
  const profile = loadConfig<BoardProfile>(boardProfileSchema, document, { source }) as BoardProfile;
  const problems = boardRuleProblems(profile);
  if (profile.id !== id) problems.unshift({ path: '/id', message: `must be the file's name (${id})` });
  if (problems.length > 0) {
    throw new FieldlinkError('CONFIG_INVALID', {
      message: `${source} is invalid:\n${problems.map((p) => `  ${p.path}: ${p.message}`).join('\n')}`,
      details: { source, problems },
    });
  }
  return profile;
}

/** Every profile in hardware/boards/, sorted by id; throws on the first invalid one. */
export function listBoardProfiles(): BoardProfile[] {
  return profileIds().map(readProfile);
}

/** The profile `id`; CONFIG_INVALID naming the known ids when there is none. */
export function loadBoardProfile(id: string): BoardProfile {
  const ids = profileIds();
  if (!ids.includes(id)) {
    throw new FieldlinkError('CONFIG_INVALID', {
      message: `unknown board "${id}": known boards are ${ids.join(', ')}`,
      details: { board: id, known: ids },
    });
  }
  return readProfile(id);
}

/**
 * config.txt with the profile's lines: each missing line is appended under an `[all]` section
 * (so a model filter such as `[cm4]` above cannot swallow it); lines already present, in any
 * section, are left alone. Idempotent.
 */
export function applyConfigTxt(text: string, profile: BoardProfile): string {
  const present = new Set(text.split(/\r?\n/).map((l) => l.trim()));
  const missing = profile.configTxt.filter((l) => !present.has(l));
  if (missing.length === 0) return text;
  const base = text === '' || text.endsWith('\n') ? text : `${text}\n`;
  return `${base}\n[all]\n# Fieldlink (${profile.id}): UART for the thermostat alongside Bluetooth, see hardware/boards/${profile.id}.yaml\n${missing.join('\n')}\n`;
}

/** cmdline.txt (one line) without the profile's `cmdlineRemove` words. Idempotent. */
export function applyCmdline(text: string, profile: BoardProfile): string {
  const words = text.trim().split(/\s+/).filter((w) => w !== '' && !profile.cmdlineRemove.includes(w));
  return `${words.join(' ')}\n`;
}

/**
 * The systemd drop-in carrying the board's memory budget. Provisioning puts it on the boot
 * partition as `fieldlink/service.conf`; first boot installs it as
 * /etc/systemd/system/fieldlink-gateway.service.d/50-board.conf.
 */
export function serviceDropIn(profile: BoardProfile): string {
  return `# Fieldlink board profile ${profile.id} (hardware/boards/${profile.id}.yaml)\n[Service]\nMemoryMax=${profile.gatewayMemoryMaxMb}M\n`;
}
