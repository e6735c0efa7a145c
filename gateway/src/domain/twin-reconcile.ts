/**
 * Desired-twin reconciliation (design §4 "Commands and twin"), pure: no I/O, no clock, no
 * validator of its own (one is injected, so the schema stays in contract/ and ajv in config/).
 *
 * The effective settings are always `merge(fileSettings, desired)`: the config file's settings
 * are the defaults, the twin's desired properties override them key by key. Consequences:
 * - a patch (`applyDesiredPatch`) is merged into the desired document we know; `null` deletes a
 *   key, which reverts it to the file's value;
 * - a full document (`reconcileDesiredDocument`, fetched after every uplink open) replaces the
 *   desired document: keys absent from it revert to the file's value. That is how deletes made
 *   while the gateway slept arrive — IoT Hub sends no nulls in a full twin, and patches sent
 *   meanwhile are not replayed;
 * - both are idempotent by `$version`: a version not newer than the one known changes nothing;
 * - the merged result is validated as a whole; if it is invalid the previous effective settings
 *   stay, and the acknowledgement carries the problems.
 *
 * Arrays are values, not merged element by element (the settings schema has none; pairings are
 * an object keyed by address precisely so that they merge).
 */

export type JsonObject = { [key: string]: unknown };

export interface ReconcileProblem {
  /** JSON pointer into the desired properties, `/` for the whole document. */
  readonly path: string;
  readonly message: string;
}

export type SettingsValidation<S> = { readonly ok: true; readonly settings: S } | { readonly ok: false; readonly problems: readonly ReconcileProblem[] };

/** Validates a candidate settings object; returns it with defaults applied, or every problem. */
export type SettingsValidator<S> = (candidate: JsonObject) => SettingsValidation<S>;

/** A desired document as kept: `$`-keys stripped, no nulls. */
export interface VersionedDesired {
  /** The twin's desired `$version`; 0 means "none yet" (file settings only). */
  readonly version: number;
  readonly desired: JsonObject;
}

export interface ReconcileState<S> {
  /** The config file's settings, defaults applied. */
  readonly fileSettings: S;
  /** The latest desired document known, even if it was rejected: patches apply to it. */
  readonly known: VersionedDesired;
  /** The desired document whose merge is in effect (what the applied-config store keeps). */
  readonly applied: VersionedDesired;
  readonly effective: S;
  /** Problems of `known` when it was rejected; empty otherwise. */
  readonly problems: readonly ReconcileProblem[];
}

/** Reported properties, under `config`. Kept compact: the twin's reported part is capped at 32 KB. */
export interface ConfigAck {
  readonly config: {
    /** `$version` of the desired properties in effect (0: file settings only). */
    readonly appliedVersion: number;
    /** `$version` of the latest desired properties seen; differs from appliedVersion when rejected. */
    readonly desiredVersion: number;
    readonly status: 'applied' | 'rejected';
    readonly errors: readonly ReconcileProblem[];
  };
}

export type ReconcileOutcome = 'applied' | 'rejected' | 'stale';

export interface ReconcileResult<S> {
  readonly state: ReconcileState<S>;
  /** 'stale': the version was not newer, nothing changed (the ack is the previous one). */
  readonly outcome: ReconcileOutcome;
  /** The effective settings differ from before (compare to decide whether to restart anything). */
  readonly changed: boolean;
  /** A patch skipped at least one version: fetch the whole twin to be sure. */
  readonly resync: boolean;
  readonly ack: ConfigAck;
}

/** Errors listed in an acknowledgement at most; a last entry says how many more there were. */
export const ACK_MAX_ERRORS = 10;
/** Characters of a problem's path or message kept in an acknowledgement. */
export const ACK_MAX_TEXT = 200;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A copy of `doc` without `$`-keys (`$version`, `$metadata`) and without null values, at any depth. */
export function cleanDesired(doc: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(doc)) {
    if (key.startsWith('$') || value === null || value === undefined) continue;
    out[key] = isObject(value) ? cleanDesired(value) : structuredCloneJson(value);
  }
  return out;
}

function structuredCloneJson(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(structuredCloneJson);
  if (isObject(value)) return cleanDesired(value);
  return value;
}

/**
 * Merge `patch` over `base`: objects merge key by key, `null` deletes, anything else replaces.
 * `$`-keys in the patch are ignored. Neither input is modified.
 */
export function mergePatch(base: JsonObject, patch: JsonObject): JsonObject {
  const out: JsonObject = { ...base };
  for (const [key, value] of Object.entries(patch)) {
    if (key.startsWith('$')) continue;
    if (value === null || value === undefined) {
      delete out[key];
      continue;
    }
    const current = out[key];
    out[key] = isObject(value) ? mergePatch(isObject(current) ? current : {}, value) : structuredCloneJson(value);
  }
  return out;
}

/** `$version` of a desired document or patch, or undefined when absent or not a whole number ≥ 0. */
export function desiredVersionOf(doc: JsonObject): number | undefined {
  const v = doc.$version;
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
}

function truncate(text: string): string {
  return text.length <= ACK_MAX_TEXT ? text : `${text.slice(0, ACK_MAX_TEXT - 1)}…`;
}

function compactProblems(problems: readonly ReconcileProblem[]): ReconcileProblem[] {
  const kept = problems.slice(0, ACK_MAX_ERRORS).map((p) => ({ path: truncate(p.path), message: truncate(p.message) }));
  if (problems.length > ACK_MAX_ERRORS) kept.push({ path: '/', message: `and ${problems.length - ACK_MAX_ERRORS} more` });
  return kept;
}

/** The reported-properties acknowledgement for a state. */
export function configAck<S>(state: ReconcileState<S>): ConfigAck {
  const rejected = state.problems.length > 0;
  return {
    config: {
      appliedVersion: state.applied.version,
      desiredVersion: state.known.version,
      status: rejected ? 'rejected' : 'applied',
      errors: compactProblems(state.problems),
    },
  };
}

function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => sameJson(x, b[i]));
  }
  if (!isObject(a) || !isObject(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && sameJson(a[k], b[k]));
}

function settingsAsObject<S>(settings: S): JsonObject {
  if (!isObject(settings)) throw new TypeError('file settings must be an object');
  return settings;
}

/**
 * The state at boot: file settings, and the desired document last applied (from the store), if
 * any. If the stored document no longer validates (the file changed underneath it), the file
 * settings are used and the problems kept for the next acknowledgement.
 */
export function initialReconcileState<S>(fileSettings: S, stored: VersionedDesired | undefined, validate: SettingsValidator<S>): ReconcileState<S> {
  const none: VersionedDesired = { version: 0, desired: {} };
  const base: ReconcileState<S> = { fileSettings, known: none, applied: none, effective: fileSettings, problems: [] };
  if (stored === undefined) return base;
  return decide(base, { version: stored.version, desired: cleanDesired(stored.desired) }, validate, false).state;
}

function decide<S>(prev: ReconcileState<S>, next: VersionedDesired, validate: SettingsValidator<S>, resync: boolean): ReconcileResult<S> {
  const result = validate(mergePatch(settingsAsObject(prev.fileSettings), next.desired));
  if (!result.ok) {
    const problems = result.problems.length > 0 ? result.problems : [{ path: '/', message: 'is invalid' }];
    const state: ReconcileState<S> = { ...prev, known: next, problems };
    return { state, outcome: 'rejected', changed: false, resync, ack: configAck(state) };
  }
  const state: ReconcileState<S> = { ...prev, known: next, applied: next, effective: result.settings, problems: [] };
  return { state, outcome: 'applied', changed: !sameJson(prev.effective, result.settings), resync, ack: configAck(state) };
}

function stale<S>(prev: ReconcileState<S>): ReconcileResult<S> {
  return { state: prev, outcome: 'stale', changed: false, resync: false, ack: configAck(prev) };
}

/**
 * Apply a desired-properties patch (as the SDK delivers it while connected). A patch without a
 * usable `$version` is rejected: without it, idempotence cannot be guaranteed.
 */
export function applyDesiredPatch<S>(prev: ReconcileState<S>, patch: JsonObject, validate: SettingsValidator<S>): ReconcileResult<S> {
  const version = desiredVersionOf(patch);
  if (version === undefined) return rejectUnversioned(prev, patch);
  if (version <= prev.known.version) return stale(prev);
  const desired = mergePatch(prev.known.desired, patch);
  return decide(prev, { version, desired }, validate, version > prev.known.version + 1);
}

/** Reconcile with the whole desired document (fetched after every uplink open). */
export function reconcileDesiredDocument<S>(prev: ReconcileState<S>, document: JsonObject, validate: SettingsValidator<S>): ReconcileResult<S> {
  const version = desiredVersionOf(document);
  if (version === undefined) return rejectUnversioned(prev, document);
  if (version <= prev.known.version) return stale(prev);
  return decide(prev, { version, desired: cleanDesired(document) }, validate, false);
}

function rejectUnversioned<S>(prev: ReconcileState<S>, doc: JsonObject): ReconcileResult<S> {
  const message = doc.$version === undefined ? 'is required' : 'must be a whole number ≥ 0';
  const state: ReconcileState<S> = { ...prev, problems: [{ path: '/$version', message }] };
  return { state, outcome: 'rejected', changed: false, resync: false, ack: configAck(state) };
}
