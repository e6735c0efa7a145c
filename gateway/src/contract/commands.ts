/**
 * Cloud-to-device command wire schema (design §4 "Commands and twin"), shared with cloud/.
 * A command is a JSON object with a `type`; unknown types, unknown fields and bad values are
 * rejected with a reason (the gateway AMQP-rejects the message and logs the reason).
 *
 *   {"type":"wake","forS":600}   {"type":"measure","sources":["serial:thermo-1"]}   {"type":"sleep"}
 *
 * `commandSchema` is the same rule as JSON Schema (draft 2020-12) for other tools; a test checks
 * that it and `parseCommand` agree on every valid and invalid form.
 */
import { FieldlinkError } from '../../../common/errors.js';

/** A C2D wake keeps the uplink up at most two days. */
export const WAKE_MAX_S = 172_800;

export interface WakeCommand {
  readonly type: 'wake';
  /** Seconds to stay online, 1..172800. */
  readonly forS: number;
}
export interface MeasureCommand {
  readonly type: 'measure';
  /** Source ids (or id prefixes) to measure now; absent means every source. */
  readonly sources?: readonly string[];
}
export interface SleepCommand {
  readonly type: 'sleep';
}
export type Command = WakeCommand | MeasureCommand | SleepCommand;
export type CommandType = Command['type'];

export const commandSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  $id: 'https://fieldlink.dev/schemas/command.json',
  title: 'Fieldlink cloud-to-device command',
  oneOf: [
    {
      type: 'object',
      properties: { type: { const: 'wake' }, forS: { type: 'integer', minimum: 1, maximum: WAKE_MAX_S } },
      required: ['type', 'forS'],
      additionalProperties: false,
    },
    {
      type: 'object',
      properties: {
        type: { const: 'measure' },
        sources: { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1, uniqueItems: true },
      },
      required: ['type'],
      additionalProperties: false,
    },
    {
      type: 'object',
      properties: { type: { const: 'sleep' } },
      required: ['type'],
      additionalProperties: false,
    },
  ],
} as const;

export type CommandRejectReason =
  /** The body is not JSON (parseCommandBody only). */
  | 'not-json'
  /** Not a JSON object. */
  | 'not-object'
  /** `type` missing or not a string. */
  | 'missing-type'
  | 'unknown-type'
  | 'missing-field'
  | 'unknown-field'
  | 'bad-value';

export type CommandParseResult =
  | { readonly ok: true; readonly command: Command }
  | { readonly ok: false; readonly reason: CommandRejectReason; readonly message: string; readonly error: FieldlinkError };

function reject(reason: CommandRejectReason, message: string, cause?: unknown): CommandParseResult {
  return { ok: false, reason, message, error: new FieldlinkError('COMMAND_INVALID', { message, details: { reason }, ...(cause === undefined ? {} : { cause }) }) };
}

const allowed: Record<CommandType, readonly string[]> = { wake: ['type', 'forS'], measure: ['type', 'sources'], sleep: ['type'] };

/** Validates an already-parsed JSON value. */
export function parseCommand(json: unknown): CommandParseResult {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return reject('not-object', 'a command must be a JSON object');
  const o = json as Record<string, unknown>;
  if (typeof o.type !== 'string') return reject('missing-type', 'a command needs a string "type" (wake, measure or sleep)');
  const type = o.type;
  if (!Object.hasOwn(allowed, type)) return reject('unknown-type', `unknown command type "${type}" (wake, measure or sleep)`);
  const fields = allowed[type as CommandType];
  const extra = Object.keys(o).filter((k) => !fields.includes(k));
  if (extra.length) return reject('unknown-field', `${type} does not take ${extra.map((k) => `"${k}"`).join(', ')}`);
  switch (type as CommandType) {
    case 'wake': {
      if (!('forS' in o)) return reject('missing-field', 'wake needs "forS" (seconds, 1-172800)');
      const f = o.forS;
      if (typeof f !== 'number' || !Number.isInteger(f) || f < 1 || f > WAKE_MAX_S) {
        return reject('bad-value', `wake "forS" must be a whole number of seconds 1-${WAKE_MAX_S}, not ${JSON.stringify(f)}`);
      }
      return { ok: true, command: { type: 'wake', forS: f } };
    }
    case 'measure': {
      if (!('sources' in o)) return { ok: true, command: { type: 'measure' } };
      const s = o.sources;
      if (!Array.isArray(s) || s.length === 0) return reject('bad-value', 'measure "sources" must be a non-empty array of source ids (omit it for all)');
      const bad = s.findIndex((x) => typeof x !== 'string' || x === '');
      if (bad >= 0) return reject('bad-value', `measure "sources"[${bad}] must be a non-empty string`);
      if (new Set(s).size !== s.length) return reject('bad-value', 'measure "sources" lists a source twice');
      return { ok: true, command: { type: 'measure', sources: [...(s as string[])] } };
    }
    case 'sleep':
      return { ok: true, command: { type: 'sleep' } };
  }
}

/** Validates a C2D message body (UTF-8 JSON). */
export function parseCommandBody(body: Buffer | string): CommandParseResult {
  let json: unknown;
  try {
    json = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
  } catch (cause) {
    return reject('not-json', 'the command body is not valid JSON', cause);
  }
  return parseCommand(json);
}
