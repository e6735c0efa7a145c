/**
 * The one validator for gateway settings, shared by the gateway (config file, desired
 * properties) and the cloud companion (a desired-properties patch is checked before it is sent,
 * so a bad value is refused with its field's path instead of being rejected by the gateway later).
 */
import { loadConfig, type ConfigProblem, type DeepReadonly } from '../../../common/config.js';
import { isFieldlinkError } from '../../../common/errors.js';
import { cleanDesired, mergePatch, type JsonObject, type SettingsValidation } from '../domain/twin-reconcile.js';
import { gatewaySettingsSchema, settingsRuleProblems, type GatewaySettings } from './gateway-config.js';

const PAIRINGS_NOT_OBJECT = 'must be an object keyed by device address, e.g. {"AA:BB:CC:DD:EE:01": {"profile": "heart_rate"}}, not an array or list';

/** Say what was meant where ajv's wording would puzzle whoever edits the file or the twin. */
export function explain(problems: readonly ConfigProblem[], input: unknown, prefix: string): ConfigProblem[] {
  const settings = prefix === '' ? input : (input as { settings?: unknown } | null)?.settings;
  const pairings = (settings as { pairings?: unknown } | null | undefined)?.pairings;
  return problems.map((p) =>
    p.path === `${prefix}/pairings` && p.message === 'must be object' && pairings !== undefined
      ? { path: p.path, message: PAIRINGS_NOT_OBJECT }
      : p,
  );
}

/** The problems a CONFIG_INVALID from loadConfig carries, or undefined for any other error. */
export function problemsOf(error: unknown): ConfigProblem[] | undefined {
  if (!isFieldlinkError(error, 'CONFIG_INVALID')) return undefined;
  const problems = error.details?.problems;
  return Array.isArray(problems) ? (problems as ConfigProblem[]) : undefined;
}

/**
 * Validate settings (the file's `settings`, or file settings merged with desired properties):
 * schema, defaults, then the cross-field rules. Paths are relative to the settings object.
 */
export function validateSettings(candidate: JsonObject): SettingsValidation<DeepReadonly<GatewaySettings>> {
  let settings: DeepReadonly<GatewaySettings>;
  try {
    settings = loadConfig<GatewaySettings>(gatewaySettingsSchema, candidate, { source: 'desired properties' });
  } catch (error) {
    const problems = problemsOf(error);
    if (problems === undefined) throw error;
    return { ok: false, problems: explain(problems, candidate, '') };
  }
  const rules = settingsRuleProblems(settings);
  return rules.length > 0 ? { ok: false, problems: rules } : { ok: true, settings };
}

/**
 * What the desired properties would be after `patch` (JSON merge patch: null removes) and
 * whether a gateway would accept them, judged against the schema defaults. The gateway merges
 * desired over its config file's settings, which the cloud cannot see, so a patch that passes
 * here can still be rejected there by a cross-field rule (it says so in its reported `config`).
 */
export function validateDesiredPatch(currentDesired: JsonObject, patch: JsonObject): { desired: JsonObject; validation: SettingsValidation<DeepReadonly<GatewaySettings>> } {
  const desired = cleanDesired(mergePatch(cleanDesired(currentDesired), patch));
  return { desired, validation: validateSettings(desired) };
}
