import { Ajv2020 } from 'ajv/dist/2020.js';
import t from 'tap';
import { commandSchema, parseCommand, parseCommandBody, WAKE_MAX_S, type CommandRejectReason } from '../../../gateway/src/contract/commands.js';

const validate = new Ajv2020({ strict: true, allErrors: true }).compile(commandSchema);

const VALID: [unknown, unknown][] = [
  [{ type: 'wake', forS: 1 }, { type: 'wake', forS: 1 }],
  [{ type: 'wake', forS: WAKE_MAX_S }, { type: 'wake', forS: 172800 }],
  [{ type: 'wake', forS: 600.0 }, { type: 'wake', forS: 600 }],
  [{ type: 'measure' }, { type: 'measure' }],
  [{ type: 'measure', sources: ['serial:thermo-1'] }, { type: 'measure', sources: ['serial:thermo-1'] }],
  [{ type: 'measure', sources: ['a', 'b/c'] }, { type: 'measure', sources: ['a', 'b/c'] }],
  [{ type: 'sleep' }, { type: 'sleep' }],
];

const INVALID: [string, unknown, CommandRejectReason, RegExp][] = [
  ['null', null, 'not-object', /JSON object/],
  ['a string', 'wake', 'not-object', /JSON object/],
  ['a number', 42, 'not-object', /JSON object/],
  ['an array', [{ type: 'wake', forS: 1 }], 'not-object', /JSON object/],
  ['no type', { forS: 10 }, 'missing-type', /string "type"/],
  ['a non-string type', { type: 1 }, 'missing-type', /string "type"/],
  ['an unknown type', { type: 'reboot' }, 'unknown-type', /unknown command type "reboot"/],
  ['a type from the prototype', { type: 'toString' }, 'unknown-type', /unknown command type/],
  ['a wrongly cased type', { type: 'Wake', forS: 1 }, 'unknown-type', /"Wake"/],
  ['wake without forS', { type: 'wake' }, 'missing-field', /needs "forS"/],
  ['wake forS 0', { type: 'wake', forS: 0 }, 'bad-value', /1-172800, not 0/],
  ['wake forS negative', { type: 'wake', forS: -5 }, 'bad-value', /not -5/],
  ['wake forS over two days', { type: 'wake', forS: WAKE_MAX_S + 1 }, 'bad-value', /not 172801/],
  ['wake forS fractional', { type: 'wake', forS: 1.5 }, 'bad-value', /not 1.5/],
  ['wake forS a string', { type: 'wake', forS: '60' }, 'bad-value', /not "60"/],
  ['wake forS null', { type: 'wake', forS: null }, 'bad-value', /not null/],
  ['wake with an extra field', { type: 'wake', forS: 5, reason: 'x' }, 'unknown-field', /does not take "reason"/],
  ['measure sources not an array', { type: 'measure', sources: 'serial:thermo-1' }, 'bad-value', /non-empty array/],
  ['measure sources empty', { type: 'measure', sources: [] }, 'bad-value', /non-empty array/],
  ['measure sources with a number', { type: 'measure', sources: ['a', 2] }, 'bad-value', /\[1\] must be a non-empty string/],
  ['measure sources with an empty string', { type: 'measure', sources: [''] }, 'bad-value', /\[0\]/],
  ['measure sources repeated', { type: 'measure', sources: ['a', 'a'] }, 'bad-value', /twice/],
  ['measure sources null', { type: 'measure', sources: null }, 'bad-value', /non-empty array/],
  ['measure with an extra field', { type: 'measure', all: true }, 'unknown-field', /"all"/],
  ['sleep with a field', { type: 'sleep', forS: 10 }, 'unknown-field', /sleep does not take "forS"/],
];

t.test('valid commands parse to typed commands, and the JSON Schema agrees', async (t) => {
  for (const [json, expected] of VALID) {
    const r = parseCommand(json);
    t.same(r, { ok: true, command: expected }, JSON.stringify(json));
    t.ok(validate(json), `schema accepts ${JSON.stringify(json)}`);
  }
});

t.test('every invalid form is rejected with its reason, and the JSON Schema agrees', async (t) => {
  for (const [name, json, reason, message] of INVALID) {
    const r = parseCommand(json);
    t.equal(r.ok, false, `${name}: rejected`);
    if (!r.ok) {
      t.equal(r.reason, reason, `${name}: reason ${reason}`);
      t.match(r.message, message, `${name}: message`);
      t.equal(r.error.code, 'COMMAND_INVALID');
      t.same(r.error.details, { reason });
      t.equal(r.error.retryable, false);
    }
    t.notOk(validate(json), `${name}: schema rejects too`);
  }
});

t.test('parseCommandBody reads UTF-8 JSON', async (t) => {
  t.same(parseCommandBody(Buffer.from('{"type":"wake","forS":30}')), { ok: true, command: { type: 'wake', forS: 30 } });
  t.same(parseCommandBody('{"type":"sleep"}'), { ok: true, command: { type: 'sleep' } });
  for (const body of ['', '{', 'wake', '{"type":"sleep"} x']) {
    const r = parseCommandBody(body);
    t.equal(r.ok ? undefined : r.reason, 'not-json', JSON.stringify(body));
    if (!r.ok) t.ok(r.error.cause instanceof SyntaxError, 'the parse error is the cause');
  }
  const r = parseCommandBody('"sleep"');
  t.equal(r.ok ? undefined : r.reason, 'not-object');
});
