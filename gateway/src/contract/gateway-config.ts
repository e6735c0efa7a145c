/**
 * Gateway configuration schema (design §4 "Commands and twin"), shared with cloud/ so the
 * companion validates a desired-properties patch exactly as the gateway will.
 *
 * Two parts:
 * - `settings` — what the twin may change: the config file's `settings` are the defaults, and
 *   the desired properties (at the root of `properties.desired`, `$`-keys aside) are merged over
 *   them. `gatewaySettingsSchema` validates the merged result, so a patch is judged by the same
 *   rules as the file.
 * - everything else (gateway id, connection, data dir, sources) — file only: changing them means
 *   a restart, and the twin must never be able to redirect the uplink or open a serial port.
 *
 * The schemas use only keywords common to draft-07 and 2020-12 (common/config.ts compiles with
 * ajv's default draft-07 dialect; cloud/ may use Ajv2020). Defaults live in the schema only.
 * Cross-field rules a schema cannot express (min ≤ max, watermark ≤ limit) are in
 * `settingsRuleProblems`, which every validator of settings must run as well.
 */

/** BLE device address as used in source ids: six upper-case hex pairs. Upper case only, so one
 * device cannot be paired twice under two spellings. */
export const DEVICE_ADDRESS_PATTERN = '^[0-9A-F]{2}(:[0-9A-F]{2}){5}$';
/** IoT Hub device id characters (docs: "device identity"), at most 128. */
export const GATEWAY_ID_PATTERN = "^[A-Za-z0-9\\-.%_*?!(),:=@$']{1,128}$";
/** Reading kinds (as in Reading.kind): snake case. */
export const READING_KIND_PATTERN = '^[a-z][a-z0-9_]{0,63}$';
/** Packer budget in 4 KB billing units: 60 units (240 KB) stays clear of the 256 KB cap. */
export const PACKER_BUDGET_UNITS_MAX = 60;

export const sourceFamilies = ['ble', 'serial', 'firmata'] as const;
export type SourceFamily = (typeof sourceFamilies)[number];

export const pairingProfiles = ['heart_rate', 'health_thermometer', 'environmental_sensing'] as const;
export type PairingProfile = (typeof pairingProfiles)[number];

export interface SamplingSettings {
  /** Seconds between measurements. */
  readonly sampleIntervalS: number;
  /** Seconds between readings appended to the outbox (≥ sampleIntervalS). */
  readonly reportIntervalS: number;
}

export interface OutboxSettings {
  readonly maxBytes: number;
  readonly minFreeBytes: number;
  readonly ttlS: number;
  readonly commitIntervalMs: number;
  /** Wakes the uplink when the outbox grows past it (≤ maxBytes). */
  readonly highWatermarkBytes: number;
}

export interface PackerSettings {
  /** Message byte budget in 4 KB billing units, 1..60. */
  readonly budgetUnits: number;
  readonly encoding: 'json' | 'json+gzip';
}

export interface AlarmThreshold {
  readonly min?: number;
  readonly max?: number;
}

export interface Pairing {
  readonly profile: PairingProfile;
  readonly name?: string;
}

/** An analog thermometer on a Firmata board (e.g. a TMP36 on A0). */
export interface FirmataThermometer {
  readonly pin: 'A0' | 'A1' | 'A2' | 'A3' | 'A4' | 'A5';
  readonly controller: 'TMP36' | 'LM35';
}

/** The twin-settable part, after defaults. */
export interface GatewaySettings {
  readonly sampling: Readonly<Record<SourceFamily, SamplingSettings>>;
  readonly checkInIntervalS: number;
  readonly onlineWindowS: number;
  readonly outbox: OutboxSettings;
  readonly packer: PackerSettings;
  /** Keyed by reading kind. */
  readonly alarms: Readonly<Record<string, AlarmThreshold>>;
  /** Keyed by device address — an object, never an array, so a twin patch can add or remove
   * one device (`{"pairings": {"AA:…": null}}`) without restating the others. */
  readonly pairings: Readonly<Record<string, Pairing>>;
}

export type SourceConfig =
  | { readonly id: string; readonly family: 'serial'; readonly path: string; readonly baudRate: number }
  | { readonly id: string; readonly family: 'firmata'; readonly path: string; readonly baudRate: number; readonly thermometers: readonly FirmataThermometer[] }
  | { readonly id: string; readonly family: 'ble'; readonly adapter: string };

export interface ClockTrustConfig {
  readonly source: 'timedate1' | 'assume';
  /** How often timedate1 is asked (it does not reliably signal the change). */
  readonly pollIntervalS: number;
}

/**
 * Local pairing mode: the gateway goes online and stays there, so a phone's pairing reaches it
 * in seconds instead of at the next check-in. Asked for on the gateway itself (SIGUSR2, e.g.
 * `systemctl kill -s USR2 fieldlink-gateway` or a button's script), and optionally for a while after
 * every boot — provisioning sets that for new gateways, whose devices are paired on site.
 */
export interface PairingModeConfig {
  /** Online this long after the gateway starts (0: not at boot). */
  readonly onBootS: number;
  /** How long a pairing-mode request keeps it online. */
  readonly forS: number;
}

/** The whole config file, after defaults. */
export interface GatewayConfig {
  readonly gatewayId: string;
  /** Secret: never log it (see load-config's `describeConfig`). */
  readonly connectionString?: string;
  /** A file holding the connection string (mode 0600), read at boot. */
  readonly connectionStringFile?: string;
  readonly dataDir: string;
  /** PEM file of a CA to trust for the hub's TLS certificate (the local hub's); Azure needs none. */
  readonly caFile?: string;
  /**
   * Where the gateway learns that the wall clock is right: `timedate1` (systemd over D-Bus, the
   * Pi) or `assume` (a machine whose clock is known good: development, the demo).
   */
  readonly clockTrust: ClockTrustConfig;
  readonly pairingMode: PairingModeConfig;
  readonly sources: readonly SourceConfig[];
  readonly settings: GatewaySettings;
}

const samplingSchema = (sampleIntervalS: number, reportIntervalS: number) =>
  ({
    type: 'object',
    additionalProperties: false,
    default: {},
    properties: {
      sampleIntervalS: { type: 'integer', minimum: 1, maximum: 86_400, default: sampleIntervalS },
      reportIntervalS: { type: 'integer', minimum: 1, maximum: 86_400, default: reportIntervalS },
    },
  }) as const;

/* The settings rules without an $id, so the file schema can embed them (ajv refuses two schemas
 * with one $id). */
const settingsBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    sampling: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        ble: samplingSchema(10, 60),
        serial: samplingSchema(30, 60),
        firmata: samplingSchema(10, 60),
      },
    },
    checkInIntervalS: { type: 'integer', minimum: 10, maximum: 604_800, default: 3_600 },
    onlineWindowS: { type: 'integer', minimum: 2, maximum: 86_400, default: 120 },
    outbox: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        maxBytes: { type: 'integer', minimum: 1_048_576, default: 67_108_864 },
        minFreeBytes: { type: 'integer', minimum: 0, default: 104_857_600 },
        ttlS: { type: 'integer', minimum: 60, maximum: 31_536_000, default: 604_800 },
        commitIntervalMs: { type: 'integer', minimum: 10, maximum: 10_000, default: 250 },
        highWatermarkBytes: { type: 'integer', minimum: 4_096, default: 8_388_608 },
      },
    },
    packer: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        budgetUnits: { type: 'integer', minimum: 1, maximum: PACKER_BUDGET_UNITS_MAX, default: 16 },
        encoding: { enum: ['json', 'json+gzip'], default: 'json+gzip' },
      },
    },
    alarms: {
      type: 'object',
      default: {},
      propertyNames: { pattern: READING_KIND_PATTERN },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        minProperties: 1,
        properties: { min: { type: 'number' }, max: { type: 'number' } },
      },
    },
    pairings: {
      type: 'object',
      default: {},
      propertyNames: { pattern: DEVICE_ADDRESS_PATTERN },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['profile'],
        properties: {
          profile: { enum: [...pairingProfiles] },
          name: { type: 'string', minLength: 1, maxLength: 64 },
        },
      },
    },
  },
} as const;

export const gatewaySettingsSchema = {
  $id: 'https://fieldlink.dev/schemas/gateway-settings.json',
  title: 'Fieldlink gateway settings (config file "settings" and desired properties)',
  ...settingsBody,
} as const;

export const gatewayConfigSchema = {
  $id: 'https://fieldlink.dev/schemas/gateway-config.json',
  title: 'Fieldlink gateway config file',
  type: 'object',
  additionalProperties: false,
  required: ['gatewayId'],
  properties: {
    gatewayId: { type: 'string', pattern: GATEWAY_ID_PATTERN },
    connectionString: { type: 'string', minLength: 1 },
    connectionStringFile: { type: 'string', minLength: 1 },
    dataDir: { type: 'string', minLength: 1, default: '/var/lib/fieldlink' },
    caFile: { type: 'string', minLength: 1 },
    clockTrust: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        source: { enum: ['timedate1', 'assume'], default: 'timedate1' },
        pollIntervalS: { type: 'integer', minimum: 1, maximum: 3600, default: 30 },
      },
    },
    pairingMode: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        onBootS: { type: 'integer', minimum: 0, maximum: 3600, default: 0 },
        forS: { type: 'integer', minimum: 10, maximum: 3600, default: 300 },
      },
    },
    sources: {
      type: 'array',
      default: [],
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'family'],
        properties: {
          id: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$' },
          family: { enum: [...sourceFamilies] },
          path: { type: 'string', minLength: 1 },
          baudRate: { type: 'integer', enum: [1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] },
          adapter: { type: 'string', pattern: '^hci[0-9]+$' },
          thermometers: {
            type: 'array',
            minItems: 1,
            maxItems: 6,
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['pin', 'controller'],
              properties: { pin: { enum: ['A0', 'A1', 'A2', 'A3', 'A4', 'A5'] }, controller: { enum: ['TMP36', 'LM35'] } },
            },
          },
        },
        allOf: [
          {
            if: { properties: { family: { enum: ['serial', 'firmata'] } } },
            then: { required: ['path'], properties: { path: true, adapter: false, baudRate: { default: 57_600 } } },
          },
          {
            if: { properties: { family: { const: 'firmata' } } },
            then: { properties: { thermometers: { default: [{ pin: 'A0', controller: 'TMP36' }] } } },
            else: { properties: { thermometers: false } },
          },
          {
            if: { properties: { family: { const: 'ble' } } },
            then: { properties: { path: false, baudRate: false, adapter: { default: 'hci0' } } },
          },
        ],
      },
    },
    settings: { ...settingsBody, default: {} },
  },
  // One or the other (or neither: FIELDLINK_CONNECTION_STRING), never both.
  not: { type: 'object', properties: { connectionString: true, connectionStringFile: true }, required: ['connectionString', 'connectionStringFile'] },
} as const;

export interface SettingsProblem {
  readonly path: string;
  readonly message: string;
}

/**
 * Rules across fields, on settings that already passed the schema. Paths are relative to the
 * settings object (as for desired properties); prefix `/settings` for the file.
 */
export function settingsRuleProblems(settings: GatewaySettings): SettingsProblem[] {
  const problems: SettingsProblem[] = [];
  for (const family of sourceFamilies) {
    const s = settings.sampling[family];
    if (s.reportIntervalS < s.sampleIntervalS) {
      problems.push({ path: `/sampling/${family}/reportIntervalS`, message: 'must be at least sampleIntervalS' });
    }
  }
  if (settings.outbox.highWatermarkBytes > settings.outbox.maxBytes) {
    problems.push({ path: '/outbox/highWatermarkBytes', message: 'must not exceed outbox maxBytes' });
  }
  for (const [kind, threshold] of Object.entries(settings.alarms)) {
    if (threshold.min !== undefined && threshold.max !== undefined && threshold.min > threshold.max) {
      problems.push({ path: `/alarms/${kind}/min`, message: 'must not exceed max' });
    }
  }
  return problems;
}
