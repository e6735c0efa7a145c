/**
 * The config a provisioned gateway boots with, for its board profile and sensor list, in the
 * paths the first-boot step installs it to. Checked with the gateway's own validator.
 */
import { FieldlinkError } from '../../common/errors.js';
import { parseGatewayConfig } from '../../gateway/src/config/load-config.js';
import type { BoardProfile } from '../boards.js';

/** Where first boot puts things on the Pi (hardware/systemd/fieldlink-gateway.service agrees). */
const PI_PATHS = {
  configFile: '/etc/fieldlink/gateway.json',
  connectionStringFile: '/etc/fieldlink/connection-string',
  caFile: '/etc/fieldlink/hub-ca.pem',
  dataDir: '/var/lib/fieldlink',
} as const;

export type SensorSpec =
  | { family: 'serial'; id: string; path: string; baudRate: number }
  | { family: 'firmata'; id: string; path: string; baudRate: number; thermometers: { pin: string; controller: string }[] }
  | { family: 'ble'; id: string; adapter?: string };

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * `serial:ID:PATH[:BAUD]`, `firmata:ID:PATH[:PIN=CONTROLLER,…]` (default A0=TMP36) or
 * `ble:ID[:ADAPTER]` (default: the board's adapter).
 */
export function parseSensorSpec(spec: string): SensorSpec {
  const [family, id, ...rest] = spec.split(':');
  const bad = (why: string): FieldlinkError =>
    new FieldlinkError('CONFIG_INVALID', { message: `--sensor "${spec}": ${why} (serial:ID:PATH[:BAUD], firmata:ID:PATH[:A0=TMP36,…] or ble:ID[:ADAPTER])` });
  if (id === undefined || !ID.test(id)) throw bad('needs an id of letters, digits, . _ -');
  switch (family) {
    case 'serial': {
      const [path, baud] = rest;
      if (!path?.startsWith('/')) throw bad('needs an absolute device path');
      const baudRate = baud === undefined ? 9600 : Number(baud);
      if (!Number.isInteger(baudRate) || baudRate <= 0) throw bad(`baud rate "${baud}" is not a number`);
      return { family, id, path, baudRate };
    }
    case 'firmata': {
      const [path, pins] = rest;
      if (!path?.startsWith('/')) throw bad('needs an absolute device path');
      const thermometers = (pins ?? 'A0=TMP36').split(',').map((p) => {
        const [pin, controller] = p.split('=');
        if (!pin || !controller) throw bad(`thermometer "${p}" is not PIN=CONTROLLER`);
        return { pin, controller };
      });
      return { family, id, path, baudRate: 57_600, thermometers };
    }
    case 'ble': {
      const [adapter] = rest;
      return adapter === undefined ? { family, id } : { family, id, adapter };
    }
    default:
      throw bad(`unknown family "${family ?? ''}"`);
  }
}

export interface GatewayConfigInput {
  gatewayId: string;
  board: BoardProfile;
  sensors: readonly SensorSpec[];
  withCa: boolean;
  /** Check-in schedule; the gateway's defaults otherwise. */
  checkInIntervalS?: number;
}

export function gatewayConfigFor(input: GatewayConfigInput): Record<string, unknown> {
  return {
    gatewayId: input.gatewayId,
    connectionStringFile: PI_PATHS.connectionStringFile,
    ...(input.withCa ? { caFile: PI_PATHS.caFile } : {}),
    dataDir: PI_PATHS.dataDir,
    // A Pi has no real-time clock: nothing is sent until systemd says the time is synchronised.
    clockTrust: { source: 'timedate1' },
    // Gateways with wearables are paired on site right after they are installed: online for
    // five minutes after each boot, so the phone's pairings apply at once (SIGUSR2 for more).
    ...(input.sensors.some((s) => s.family === 'ble') ? { pairingMode: { onBootS: 300 } } : {}),
    sources: input.sensors.map((s) => (s.family === 'ble' ? { id: s.id, family: 'ble', adapter: s.adapter ?? input.board.bleAdapter } : { ...s })),
    settings: {
      outbox: { maxBytes: input.board.outboxMaxBytes },
      ...(input.checkInIntervalS === undefined ? {} : { checkInIntervalS: input.checkInIntervalS }),
    },
  };
}

/**
 * Validates with the gateway's loader (the secret passed in memory, so nothing is read from the
 * Pi paths); throws CONFIG_INVALID listing every problem.
 */
export function checkGatewayConfig(config: Record<string, unknown>, connectionString: string): void {
  parseGatewayConfig(config, 'provisioned gateway config', '/', { env: { FIELDLINK_CONNECTION_STRING: connectionString } });
}
