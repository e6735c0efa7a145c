/**
 * The gateway's configuration, read once at boot (`fieldlink gateway --config FILE`), validated
 * against contract/gateway-config.ts and frozen; and the validator the twin reconciliation uses
 * for desired properties, built on the same schema.
 *
 * This is the only module of the gateway that reads `process.env`. Overrides, applied before
 * validation: FIELDLINK_CONNECTION_STRING (wins over the file's connectionString /
 * connectionStringFile), FIELDLINK_DATA_DIR.
 *
 * Config files are JSON, or YAML when the name ends in .yaml/.yml (field engineers edit the file
 * on the device, and YAML takes comments); both go through the same schema.
 *
 * The connection string is a secret: it is a non-enumerable property of the returned config, so
 * JSON.stringify and pino leave it out, no error message quotes it, and `describeConfig` gives
 * the log-safe view.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import YAML from 'yaml';
import { deepFreeze, loadConfig, readConfigText, readJsonConfigFile, type ConfigProblem, type DeepReadonly } from '../../../common/config.js';
import { FieldlinkError } from '../../../common/errors.js';
import { gatewayConfigSchema, settingsRuleProblems, type GatewayConfig } from '../contract/gateway-config.js';
import { explain, problemsOf } from '../contract/settings-validation.js';
import type { JsonObject } from '../domain/twin-reconcile.js';

/** The loaded config: the connection string is always present (resolved from file or env). */
export type LoadedGatewayConfig = DeepReadonly<GatewayConfig> & { readonly connectionString: string };

export { validateSettings } from '../contract/settings-validation.js';

export interface LoadGatewayConfigOptions {
  /** Defaults to process.env; tests pass their own. */
  env?: Readonly<Record<string, string | undefined>>;
}

function invalid(source: string, problems: readonly ConfigProblem[], cause?: unknown): FieldlinkError {
  const lines = problems.map((p) => `  ${p.path}: ${p.message}`).join('\n');
  return new FieldlinkError('CONFIG_INVALID', {
    message: `${source} is invalid:\n${lines}`,
    details: { source, problems },
    ...(cause === undefined ? {} : { cause }),
  });
}


/** Validate a config document already parsed; relative paths resolve against `baseDir`. */
export function parseGatewayConfig(input: unknown, source: string, baseDir: string, opts: LoadGatewayConfigOptions = {}): LoadedGatewayConfig {
  const env = opts.env ?? process.env;
  let config: DeepReadonly<GatewayConfig>;
  try {
    const overridden = typeof input === 'object' && input !== null && !Array.isArray(input) ? { ...(input as JsonObject) } : input;
    if (overridden !== input) {
      const o = overridden as JsonObject;
      if (env.FIELDLINK_DATA_DIR) o.dataDir = env.FIELDLINK_DATA_DIR;
      if (env.FIELDLINK_CONNECTION_STRING) {
        delete o.connectionStringFile;
        o.connectionString = env.FIELDLINK_CONNECTION_STRING;
      }
    }
    config = loadConfig<GatewayConfig>(gatewayConfigSchema, overridden, { source });
  } catch (error) {
    const problems = problemsOf(error);
    if (problems === undefined) throw error;
    throw invalid(source, explain(problems, input, '/settings'), error);
  }
  const rules = settingsRuleProblems(config.settings).map((p) => ({ path: `/settings${p.path}`, message: p.message }));
  if (rules.length > 0) throw invalid(source, rules);

  let connectionString = config.connectionString;
  const connectionStringFile = config.connectionStringFile === undefined ? undefined : resolve(baseDir, config.connectionStringFile);
  if (connectionString === undefined && connectionStringFile !== undefined) {
    connectionString = readSecretFile(connectionStringFile);
  }
  if (connectionString === undefined) {
    throw invalid(source, [{ path: '/connectionString', message: 'is required (or connectionStringFile, or the FIELDLINK_CONNECTION_STRING environment variable)' }]);
  }

  const deviceId = /(?:^|;)DeviceId=([^;]+)/.exec(connectionString)?.[1];
  if (deviceId !== undefined && deviceId !== config.gatewayId) {
    throw invalid(source, [{ path: '/gatewayId', message: `must be the connection string's DeviceId (${deviceId}): the gateway id names its messages and its twin` }]);
  }

  const out: JsonObject = {
    ...(structuredClone(config) as unknown as JsonObject),
    dataDir: resolve(baseDir, config.dataDir),
    ...(config.caFile === undefined ? {} : { caFile: resolve(baseDir, config.caFile) }),
  };
  delete out.connectionString;
  if (connectionStringFile !== undefined) out.connectionStringFile = connectionStringFile;
  Object.defineProperty(out, 'connectionString', { value: connectionString, enumerable: false });
  return deepFreeze(out) as unknown as LoadedGatewayConfig;
}

function readSecretFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    throw new FieldlinkError('CONFIG_UNREADABLE', {
      message: `cannot read connection string file ${path}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : 'read failed'}`,
      cause,
      details: { path },
    });
  }
  const value = text.trim();
  if (value === '') throw new FieldlinkError('CONFIG_UNREADABLE', { message: `connection string file ${path} is empty`, details: { path } });
  return value;
}

/** YAML for people editing on the device, JSON for tools; the extension decides. */
function readConfigDocument(path: string): unknown {
  if (!/\.ya?ml$/i.test(path)) return readJsonConfigFile(path);
  const text = readConfigText(path);
  try {
    // uniqueKeys: a key written twice is a mistake, not "the last one wins".
    return YAML.parse(text, { uniqueKeys: true, prettyErrors: true }) as unknown;
  } catch (cause) {
    const pos = cause instanceof YAML.YAMLError ? cause.linePos?.[0] : undefined;
    const first = (cause instanceof Error ? cause.message : String(cause)).split('\n')[0] ?? '';
    throw new FieldlinkError('CONFIG_UNREADABLE', {
      message: `config file ${path} is not valid YAML${pos === undefined ? '' : ` (line ${pos.line}, column ${pos.col})`}: ${first}`,
      cause,
      details: { path },
    });
  }
}

/** Read, validate and freeze the config file at `path` (JSON, or YAML for .yaml/.yml). */
export function loadGatewayConfig(path: string, opts: LoadGatewayConfigOptions = {}): LoadedGatewayConfig {
  const absolute = resolve(path);
  return parseGatewayConfig(readConfigDocument(absolute), `config file ${absolute}`, dirname(absolute), opts);
}

/** A log-safe view of the config: everything but the connection string's value. */
export function describeConfig(config: LoadedGatewayConfig): JsonObject {
  const hostName = /(?:^|;)HostName=([^;]+)/.exec(config.connectionString)?.[1];
  return {
    ...(JSON.parse(JSON.stringify(config)) as JsonObject),
    connectionString: hostName === undefined ? '[redacted]' : `HostName=${hostName};[redacted]`,
  };
}
