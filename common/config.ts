import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { FieldlinkError } from './errors.js';

// ajv-formats is CommonJS with `exports.default`; under NodeNext the default import is the
// module object, and `.default` is the plugin both to TypeScript and at runtime.
const addFormats = addFormatsModule.default;

export type DeepReadonly<T> = T extends (...args: never[]) => unknown
  ? T
  : T extends ReadonlyArray<infer U>
    ? ReadonlyArray<DeepReadonly<U>>
    : T extends object
      ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
      : T;

export interface ConfigProblem {
  /** JSON pointer to the offending value; `/` is the whole document. */
  path: string;
  message: string;
}

/*
 * One validator instance for the process: compiled schemas are cached by object identity, so
 * validating desired-twin patches against the boot schema costs nothing extra.
 * - useDefaults fills omitted fields from the schema, so defaults live in one place;
 * - coerceTypes is off: "5" where 5 is expected is a mistake worth reporting, not guessing;
 * - strict makes mistakes in our own schemas (unknown keywords, ignored defaults) fail loudly.
 */
const ajv = new Ajv({
  allErrors: true,
  useDefaults: true,
  coerceTypes: false,
  removeAdditional: false,
  strict: true,
  allowUnionTypes: true,
});
addFormats(ajv);

const validators = new WeakMap<object, ValidateFunction>();

function validatorFor(schema: object): ValidateFunction {
  let validate = validators.get(schema);
  if (validate === undefined) {
    validate = ajv.compile(schema);
    validators.set(schema, validate);
  }
  return validate;
}

function escapePointerSegment(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** Turn ajv's errors into one line per bad field, phrased for the person editing the file. */
function toProblems(errors: readonly ErrorObject[]): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const seen = new Set<string>();
  for (const error of errors) {
    // An `if` failure only announces that a `then`/`else` branch failed; that branch's own
    // errors say what is actually wrong.
    if (error.keyword === 'if') continue;
    // `propertyNames` only announces that some name failed; the error from inside it carries
    // `propertyName`, which is what the person editing needs to find.
    if (error.keyword === 'propertyNames') continue;
    let path = error.instancePath;
    let message = error.message ?? 'is invalid';
    const params = error.params as Record<string, unknown>;
    if (error.propertyName !== undefined) {
      path = `${path}/${escapePointerSegment(error.propertyName)}`;
      message = `is not an allowed name: ${message}`;
    } else if (error.keyword === 'additionalProperties' && typeof params.additionalProperty === 'string') {
      path = `${path}/${escapePointerSegment(params.additionalProperty)}`;
      message = 'unknown property';
    } else if (error.keyword === 'required' && typeof params.missingProperty === 'string') {
      path = `${path}/${escapePointerSegment(params.missingProperty)}`;
      message = 'is required';
    } else if (error.keyword === 'enum' && Array.isArray(params.allowedValues)) {
      message = `must be one of ${params.allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
    }
    if (path === '') path = '/';
    const key = `${path}\0${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    problems.push({ path, message });
  }
  return problems;
}

/**
 * Freeze `value` and everything reachable from it, in place. Typed arrays and buffers are left
 * writable: freezing them throws, and config never contains them.
 */
export function deepFreeze<T>(value: T): DeepReadonly<T> {
  const stack: unknown[] = [value];
  const seen = new Set<object>();
  while (stack.length > 0) {
    const item = stack.pop();
    if (item === null || (typeof item !== 'object' && typeof item !== 'function')) continue;
    if (seen.has(item) || ArrayBuffer.isView(item)) continue;
    seen.add(item);
    Object.freeze(item);
    for (const key of Reflect.ownKeys(item)) {
      const descriptor = Object.getOwnPropertyDescriptor(item, key);
      if (descriptor !== undefined && 'value' in descriptor) stack.push(descriptor.value);
    }
  }
  return value as DeepReadonly<T>;
}

export interface LoadConfigOptions {
  /** Names the input in the error message, e.g. the file path or "desired properties". */
  source?: string;
}

/**
 * Validate `input` against `schema` and return a deep-frozen copy with schema defaults applied.
 * The input itself is never modified. On failure throws CONFIG_INVALID listing every problem,
 * so one edit-and-retry cycle fixes them all.
 */
export function loadConfig<T>(schema: object, input: unknown, opts: LoadConfigOptions = {}): DeepReadonly<T> {
  const source = opts.source ?? 'config';
  let copy: unknown;
  try {
    // Defaults are written into the object being validated; validate a copy so callers'
    // objects (possibly frozen, possibly shared) stay as they were.
    copy = structuredClone(input);
  } catch (cause) {
    throw new FieldlinkError('CONFIG_INVALID', {
      message: `${source} is invalid: it is not plain JSON data`,
      cause,
      details: { source, problems: [{ path: '/', message: 'is not plain JSON data' }] },
    });
  }
  const validate = validatorFor(schema);
  if (!validate(copy)) {
    const problems = toProblems(validate.errors ?? []);
    const lines = problems.map((p) => `  ${p.path}: ${p.message}`).join('\n');
    throw new FieldlinkError('CONFIG_INVALID', {
      message: `${source} is invalid:\n${lines}`,
      details: { source, problems },
    });
  }
  return deepFreeze(copy as T);
}

/** Line and column (1-based) of a character offset, for pointing an editor at a JSON error. */
function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const column = offset - (before.lastIndexOf('\n') + 1) + 1;
  return { line, column };
}

/** The text of a config file; CONFIG_UNREADABLE says which file and why it cannot be read. */
export function readConfigText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : String((cause as Error).message);
    throw new FieldlinkError('CONFIG_UNREADABLE', {
      message: `cannot read config file ${path}: ${why}`,
      cause,
      details: { path },
    });
  }
}

/** Read and parse a JSON config file; CONFIG_UNREADABLE says which file and why. */
export function readJsonConfigFile(path: string): unknown {
  let text = readConfigText(path);
  // Editors on Windows save a byte-order mark that JSON.parse rejects.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  try {
    return JSON.parse(text) as unknown;
  } catch (cause) {
    const syntax = cause instanceof Error ? cause.message : String(cause);
    // V8's messages carry "position N" for most errors; an unexpected end has no position
    // because it is the end.
    const position = /position (\d+)/.exec(syntax)?.[1];
    const offset = position !== undefined ? Number(position) : /end of JSON input/i.test(syntax) ? text.length : undefined;
    const where = offset === undefined ? undefined : lineAndColumn(text, offset);
    throw new FieldlinkError('CONFIG_UNREADABLE', {
      message: `config file ${path} is not valid JSON${where ? ` (line ${where.line}, column ${where.column})` : ''}: ${syntax}`,
      cause,
      details: where ? { path, ...where } : { path },
    });
  }
}
