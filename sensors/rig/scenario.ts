/**
 * The rig's scenario file: which emulated sensors to start (wearables on a fake BlueZ, serial
 * thermostats and Firmata boards on ptys) and which faults to inject when. JSON or YAML (by
 * extension), validated with common/config's loadConfig; every problem is reported with its
 * JSON pointer (CONFIG_INVALID, details.problems), as for the gateway's own config.
 */
import { extname } from 'node:path';
import YAML from 'yaml';
import { loadConfig, readConfigText, type ConfigProblem, type DeepReadonly } from '../../common/config.js';
import { FieldlinkError } from '../../common/errors.js';
import type { WearableService } from '../ble/emulator/wearable-model.js';
import type { FaultSchedule } from '../serial-thermostat/emulator.js';
import type { ThermometerController } from '../firmata/thermometers.js';

export type WearableProfile = 'heart_rate' | 'health_thermometer' | 'environmental_sensing';
export type AnalogPin = 'A0' | 'A1' | 'A2' | 'A3' | 'A4' | 'A5';
export type TimelineFault = 'disconnect' | 'vanish' | 'reappear' | 'truncate' | 'storm' | 'slowConnect' | 'silence' | 'unplug' | 'replug' | 'garbage';

export interface ScenarioWearable {
  /** Bluetooth address, upper case: `AA:BB:CC:DD:EE:01`. */
  readonly address: string;
  /** What the gateway pairs it as (settings.pairings). */
  readonly profile: WearableProfile;
  readonly name?: string;
  /** GATT services it offers; by default the profile's service plus battery. */
  readonly services?: readonly WearableService[];
  /** Notifications a second per notifying characteristic; 1 by default. */
  readonly rateHz?: number;
  readonly seed?: number;
  readonly rssi?: number;
  /** Listed in the fragment's pairings (a gateway connects only to paired devices); true by default. */
  readonly paired?: boolean;
}

export interface ScenarioThermostat {
  /** Config source id and device id: readings are `serial:<id>/<kind>`. */
  readonly id: string;
  readonly rateHz?: number;
  readonly seed?: number;
  /** Periodic faults (every Nth line, every N ms), as `fieldlink emulate thermostat` takes them. */
  readonly faults?: FaultSchedule;
}

export type ScenarioPattern =
  | { readonly celsius: number; readonly noiseC?: number }
  | { readonly sine: { readonly meanC: number; readonly amplitudeC: number; readonly periodMs: number } };

export interface ScenarioThermometer {
  readonly pin: AnalogPin;
  readonly controller: ThermometerController;
  readonly pattern: ScenarioPattern;
}

export interface ScenarioBoard {
  /** Config source id and board id: readings are `firmata:<id>/<pin>`. */
  readonly id: string;
  readonly thermometers: readonly ScenarioThermometer[];
  /** Analog sampling until the host sets its own interval (Firmata's default ≈ 52 Hz). */
  readonly rateHz?: number;
  readonly seed?: number;
}

export interface TimelineEvent {
  /** Seconds after the rig started. */
  readonly atS: number;
  /** A thermostat or board id, or a wearable address. */
  readonly target: string;
  readonly fault: TimelineFault;
  /** disconnect (thermostat), silence, storm: how long; slowConnect: the connect delay. */
  readonly forMs?: number;
  /** truncate: payloads; garbage: lines (thermostat) or bytes (board). */
  readonly count?: number;
  /** storm: notifications a second. */
  readonly hz?: number;
}

export interface Scenario {
  /** Where the fragment, ptys and logs go (relative to the working directory). */
  readonly dir?: string;
  readonly wearables?: { readonly adapter?: string; readonly devices: readonly ScenarioWearable[] };
  readonly thermostats?: readonly ScenarioThermostat[];
  readonly boards?: readonly ScenarioBoard[];
  readonly timeline?: readonly TimelineEvent[];
}

export type TargetKind = 'wearable' | 'thermostat' | 'board';

/** Which faults apply to which kind of target, and the parameters each takes. */
export const FAULTS: Readonly<Record<TargetKind, Readonly<Partial<Record<TimelineFault, readonly ('forMs' | 'count' | 'hz')[]>>>>> = {
  wearable: { disconnect: [], vanish: [], reappear: [], truncate: ['count'], storm: ['hz', 'forMs'], slowConnect: ['forMs'] },
  thermostat: { disconnect: ['forMs'], silence: ['forMs'], garbage: ['count'] },
  board: { unplug: [], replug: [], garbage: ['count'] },
};

/** The services a wearable of each profile offers unless the scenario lists them. */
export const PROFILE_SERVICES: Readonly<Record<WearableProfile, readonly WearableService[]>> = {
  heart_rate: ['heart_rate', 'battery'],
  health_thermometer: ['health_thermometer', 'battery'],
  environmental_sensing: ['environmental_sensing', 'battery'],
};

const ID = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$' } as const;
const ADDRESS = { type: 'string', pattern: '^[0-9A-F]{2}(:[0-9A-F]{2}){5}$' } as const;
const positive = (max: number) => ({ type: 'number', exclusiveMinimum: 0, maximum: max }) as const;
const count = { type: 'integer', minimum: 1 } as const;

export const scenarioSchema = {
  $id: 'https://fieldlink.dev/schemas/rig-scenario.json',
  title: 'Fieldlink emulator rig scenario',
  type: 'object',
  additionalProperties: false,
  properties: {
    dir: { type: 'string', minLength: 1 },
    wearables: {
      type: 'object',
      additionalProperties: false,
      required: ['devices'],
      properties: {
        adapter: { type: 'string', pattern: '^hci[0-9]+$', default: 'hci0' },
        devices: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['address', 'profile'],
            properties: {
              address: ADDRESS,
              profile: { enum: ['heart_rate', 'health_thermometer', 'environmental_sensing'] },
              name: { type: 'string', minLength: 1, maxLength: 64 },
              services: { type: 'array', minItems: 1, uniqueItems: true, items: { enum: ['heart_rate', 'battery', 'health_thermometer', 'environmental_sensing'] } },
              rateHz: positive(1000),
              seed: { type: 'integer', minimum: 0 },
              rssi: { type: 'integer', minimum: -127, maximum: 20 },
              paired: { type: 'boolean', default: true },
            },
          },
        },
      },
    },
    thermostats: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id'],
        properties: {
          id: ID,
          rateHz: positive(20),
          seed: { type: 'integer', minimum: 0 },
          faults: {
            type: 'object',
            additionalProperties: false,
            properties: {
              garbageEvery: count,
              badChecksumEvery: count,
              oversizeEvery: count,
              disconnectEveryMs: count,
              disconnectForMs: { type: 'integer', minimum: 0 },
              silenceEveryMs: count,
              silenceForMs: { type: 'integer', minimum: 0 },
            },
          },
        },
      },
    },
    boards: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'thermometers'],
        properties: {
          id: ID,
          rateHz: positive(100),
          seed: { type: 'integer', minimum: 0 },
          thermometers: {
            type: 'array',
            minItems: 1,
            maxItems: 6,
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['pin', 'controller', 'pattern'],
              properties: {
                pin: { enum: ['A0', 'A1', 'A2', 'A3', 'A4', 'A5'] },
                controller: { enum: ['TMP36', 'LM35'] },
                pattern: {
                  type: 'object',
                  additionalProperties: false,
                  minProperties: 1,
                  properties: {
                    celsius: { type: 'number', minimum: -40, maximum: 150 },
                    noiseC: { type: 'number', minimum: 0, maximum: 20 },
                    sine: {
                      type: 'object',
                      additionalProperties: false,
                      required: ['meanC', 'amplitudeC', 'periodMs'],
                      properties: {
                        meanC: { type: 'number', minimum: -40, maximum: 150 },
                        amplitudeC: { type: 'number', minimum: 0, maximum: 100 },
                        periodMs: { type: 'number', exclusiveMinimum: 0 },
                      },
                    },
                  },
                },
              },
            },
          },
        },
      },
    },
    timeline: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['atS', 'target', 'fault'],
        properties: {
          atS: { type: 'number', minimum: 0 },
          target: { type: 'string', minLength: 1 },
          fault: { enum: ['disconnect', 'vanish', 'reappear', 'truncate', 'storm', 'slowConnect', 'silence', 'unplug', 'replug', 'garbage'] },
          forMs: { type: 'integer', minimum: 0 },
          count,
          hz: positive(1000),
        },
      },
    },
  },
} as const;

/** What a validated scenario's target resolves to. */
export function targetKinds(s: DeepReadonly<Scenario>): Map<string, TargetKind> {
  const kinds = new Map<string, TargetKind>();
  for (const w of s.wearables?.devices ?? []) kinds.set(w.address, 'wearable');
  for (const th of s.thermostats ?? []) kinds.set(th.id, 'thermostat');
  for (const b of s.boards ?? []) kinds.set(b.id, 'board');
  return kinds;
}

/** Rules across fields the schema cannot state: unique ids, patterns, timeline targets. */
function ruleProblems(s: DeepReadonly<Scenario>): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const seen = new Map<string, string>();
  const claim = (key: string, path: string): void => {
    const first = seen.get(key);
    if (first === undefined) seen.set(key, path);
    else problems.push({ path, message: `"${key}" is already used at ${first}` });
  };
  // "wearables" is the BLE source's id in the fragment.
  if (s.wearables !== undefined) seen.set('wearables', '/wearables');
  s.wearables?.devices.forEach((w, i) => claim(w.address, `/wearables/devices/${i}/address`));
  s.thermostats?.forEach((th, i) => claim(th.id, `/thermostats/${i}/id`));
  s.boards?.forEach((b, i) => {
    claim(b.id, `/boards/${i}/id`);
    const pins = new Set<string>();
    b.thermometers.forEach((m, j) => {
      if (pins.has(m.pin)) problems.push({ path: `/boards/${i}/thermometers/${j}/pin`, message: `${m.pin} is already used on this board` });
      pins.add(m.pin);
      const p = m.pattern as Record<string, unknown>;
      const base = `/boards/${i}/thermometers/${j}/pattern`;
      if (('celsius' in p) === ('sine' in p)) problems.push({ path: base, message: 'must have either celsius (with optional noiseC) or sine' });
      else if ('sine' in p && 'noiseC' in p) problems.push({ path: `${base}/noiseC`, message: 'applies only with celsius' });
    });
  });
  const kinds = targetKinds(s);
  s.timeline?.forEach((e, i) => {
    const kind = kinds.get(e.target);
    if (kind === undefined) {
      problems.push({ path: `/timeline/${i}/target`, message: `no thermostat, board or wearable "${e.target}" in this scenario` });
      return;
    }
    const params = FAULTS[kind][e.fault];
    if (params === undefined) {
      problems.push({ path: `/timeline/${i}/fault`, message: `"${e.fault}" does not apply to a ${kind} (it takes ${Object.keys(FAULTS[kind]).join(', ')})` });
      return;
    }
    for (const param of ['forMs', 'count', 'hz'] as const) {
      if (e[param] !== undefined && !params.includes(param)) problems.push({ path: `/timeline/${i}/${param}`, message: `does not apply to ${e.fault} on a ${kind}` });
    }
  });
  return problems;
}

/** Validate a scenario (already parsed) and apply defaults; CONFIG_INVALID lists every problem with its path. */
export function parseScenario(input: unknown, source = 'scenario'): DeepReadonly<Scenario> {
  const scenario = loadConfig<Scenario>(scenarioSchema, input, { source });
  const problems = ruleProblems(scenario);
  if (problems.length > 0) {
    throw new FieldlinkError('CONFIG_INVALID', {
      message: `${source} is invalid:\n${problems.map((p) => `  ${p.path}: ${p.message}`).join('\n')}`,
      details: { source, problems },
    });
  }
  return scenario;
}

/** Read a scenario file: YAML for .yaml/.yml, JSON otherwise. CONFIG_UNREADABLE when it cannot be read or parsed. */
export function loadScenarioFile(path: string): DeepReadonly<Scenario> {
  const text = readConfigText(path);
  const ext = extname(path).toLowerCase();
  const yaml = ext === '.yaml' || ext === '.yml';
  let input: unknown;
  try {
    input = yaml ? (YAML.parse(text) as unknown) : (JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text) as unknown);
  } catch (cause) {
    throw new FieldlinkError('CONFIG_UNREADABLE', {
      message: `scenario file ${path} is not valid ${yaml ? 'YAML' : 'JSON'}: ${cause instanceof Error ? cause.message : String(cause)}`,
      cause,
      details: { path },
    });
  }
  // An empty YAML file is null: an empty scenario, not an error.
  return parseScenario(input ?? {}, path);
}
