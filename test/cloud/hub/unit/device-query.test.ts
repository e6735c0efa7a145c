import t from 'tap';
import {
  compareValues,
  evaluateCondition,
  matchesDeviceQuery,
  parseDeviceQuery,
  resolvePath,
  type Condition,
} from '../../../../cloud/hub/device-query.js';
import { throwsHub } from './temp-db.js';

const WHERE = 'SELECT * FROM devices WHERE ';
const UNSUPPORTED = 'is not supported by the local hub, which answers SELECT * FROM devices [WHERE <condition>] only';
const A_CONDITION = "a condition (a property path, NOT, IS_DEFINED or '(')";
const A_VALUE = "a value ('string', number, true, false or null)";
const AN_OPERATOR = 'a comparison operator (=, !=, <>, <, >, <=, >=)';

/** A twin document shaped as GET /twins/{id} returns it. */
const twin = {
  deviceId: 'pump-7',
  status: 'enabled',
  etag: 'AAAAAAAAAAM=',
  tags: {
    site: 'osaka',
    floor: 3,
    active: true,
    retired: null,
    owner: "O'Brien",
    blank: '',
    nested: { a: { b: 'deep' } },
    list: [1, 2],
  },
  properties: {
    desired: { interval: 30, $version: 4 },
    reported: { temp: 21.5, fw: '1.2.0', online: false, $version: 7, $metadata: { $lastUpdated: '2030-01-01T00:00:00.000Z' } },
  },
};

function where(cond: string, doc: unknown = twin): boolean {
  return matchesDeviceQuery(parseDeviceQuery(WHERE + cond), doc);
}

function conditionOf(cond: string): Condition {
  const parsed = parseDeviceQuery(WHERE + cond).where;
  if (parsed === undefined) throw new Error(`no condition parsed from ${cond}`);
  return parsed;
}

t.test('SELECT * FROM devices without WHERE matches every twin; keywords ignore case', async (t) => {
  t.same(parseDeviceQuery('SELECT * FROM devices'), { where: undefined });
  t.ok(matchesDeviceQuery(parseDeviceQuery('  select *\nfrom DEVICES  '), twin));
  t.ok(matchesDeviceQuery(parseDeviceQuery('SELECT * FROM devices'), {}));
  t.ok(matchesDeviceQuery(parseDeviceQuery("select * from devices where tags.site = 'osaka' and not tags.floor = 1 or deviceId = 'x'"), twin));
  t.ok(where("Is_Defined(tags.site)"), 'IS_DEFINED ignores case too');
});

t.test('paths: deviceId, status, tags, reported and desired properties', async (t) => {
  t.ok(where("deviceId = 'pump-7'"));
  t.notOk(where("deviceId = 'pump-8'"));
  t.ok(where("status = 'enabled'"));
  t.ok(where("tags.site = 'osaka'"));
  t.ok(where("tags.nested.a.b = 'deep'"), 'nested tags');
  t.ok(where('properties.reported.temp = 21.5'));
  t.ok(where("properties.reported.fw = '1.2.0'"));
  t.ok(where('properties.desired.interval = 30'));
  t.ok(where('properties.reported.$version = 7'), '$version is part of the document');
  t.ok(where("properties.reported.$metadata.$lastUpdated > '2029'"));
  t.same(conditionOf('properties.desired.interval = 30'), { kind: 'compare', path: ['properties', 'desired', 'interval'], op: '=', value: 30 });
  t.ok(where("tags.from = 'x' OR tags.where = 'y' OR deviceId != ''"), 'keywords after a dot are property names');
});

t.test('every comparison operator on numbers', async (t) => {
  const cases: [string, boolean][] = [
    ['tags.floor = 3', true],
    ['tags.floor = 4', false],
    ['tags.floor != 3', false],
    ['tags.floor != 4', true],
    ['tags.floor <> 4', true],
    ['tags.floor <> 3', false],
    ['tags.floor < 4', true],
    ['tags.floor < 3', false],
    ['tags.floor > 2', true],
    ['tags.floor > 3', false],
    ['tags.floor <= 3', true],
    ['tags.floor <= 2', false],
    ['tags.floor >= 3', true],
    ['tags.floor >= 4', false],
    ['tags.floor>2', true],
    ['tags.floor > -1', true],
    ['properties.reported.temp < 2.2e1', true],
    ['properties.reported.temp > 21.49', true],
    ['properties.reported.temp = 21.50', true],
  ];
  for (const [cond, expected] of cases) t.equal(where(cond), expected, cond);
});

t.test('strings: equality, ordinal ordering, quote escaping', async (t) => {
  t.ok(where("tags.site != 'kyoto'"));
  t.ok(where("tags.site > 'kyoto'"));
  t.ok(where("tags.site < 'tokyo'"));
  t.ok(where("tags.site >= 'osaka'"));
  t.ok(where("tags.site <= 'osaka'"));
  t.notOk(where("tags.site = 'Osaka'"), 'case-sensitive');
  t.ok(where("tags.site > 'Osaka'"), 'ordinal: lower case sorts after upper case');
  t.ok(where("tags.owner = 'O''Brien'"), "'' is one quote");
  t.ok(where("tags.blank = ''"), 'the empty string');
  t.same(conditionOf("tags.x = 'it''s ''quoted'''"), { kind: 'compare', path: ['tags', 'x'], op: '=', value: "it's 'quoted'" });
  t.same(conditionOf("tags.x = 'AND OR ( ) \" ;'"), { kind: 'compare', path: ['tags', 'x'], op: '=', value: 'AND OR ( ) " ;' }, 'anything goes inside quotes');
});

t.test('booleans and null compare by equality only', async (t) => {
  t.ok(where('tags.active = true'));
  t.ok(where('tags.active != false'));
  t.ok(where('properties.reported.online = FALSE'));
  t.ok(where('tags.retired = null'));
  t.notOk(where('tags.retired != null'));
  t.notOk(where('tags.active > false'), 'booleans have no order here');
  t.notOk(where('tags.retired <= null'), 'null has no order');
});

t.test('values of different types never compare: every operator is false', async (t) => {
  for (const op of ['=', '!=', '<', '>', '<=', '>=']) {
    t.notOk(where(`tags.floor ${op} '3'`), `number ${op} string`);
    t.notOk(where(`tags.site ${op} 3`), `string ${op} number`);
    t.notOk(where(`tags.active ${op} 'true'`), `boolean ${op} string`);
    t.notOk(where(`tags.retired ${op} 0`), `null ${op} number`);
    t.notOk(where(`tags.nested ${op} 'x'`), `object ${op} string`);
    t.notOk(where(`tags.list ${op} 1`), `array ${op} number`);
  }
  t.equal(compareValues(3, '!=', '3'), undefined, 'the comparison has no answer, rather than false');
});

t.test('a missing path is undefined: every comparison is false', async (t) => {
  for (const op of ['=', '!=', '<>', '<', '>', '<=', '>=']) {
    t.notOk(where(`tags.nothing ${op} 1`), `missing ${op} 1`);
    t.notOk(where(`properties.reported.nothing.deeper ${op} 'x'`), `missing ${op} 'x'`);
  }
  t.notOk(where("tags.site.city = 'x'"), 'below a string');
  t.notOk(where('tags.list.length = 2'), 'arrays are not walked into');
  t.notOk(where("properties.desired.interval = 30", { deviceId: 'x' }), 'a document without properties');
  t.equal(resolvePath(twin, ['tags', 'constructor']), undefined, 'inherited members are not properties');
  t.equal(resolvePath(twin, ['tags', 'toString']), undefined);
  t.equal(resolvePath(twin, ['tags', 'nested', 'a', 'b']), 'deep');
});

t.test('IS_DEFINED', async (t) => {
  t.ok(where('IS_DEFINED(tags.site)'));
  t.ok(where('IS_DEFINED(tags.nested.a)'), 'an object is defined');
  t.ok(where('IS_DEFINED(tags.retired)'), 'null is a value, so defined');
  t.ok(where('IS_DEFINED(properties.desired.interval)'));
  t.ok(where('IS_DEFINED ( deviceId )'), 'spaces allowed');
  t.notOk(where('IS_DEFINED(tags.nothing)'));
  t.notOk(where('IS_DEFINED(tags.constructor)'));
  t.ok(where('NOT IS_DEFINED(properties.reported.nothing)'), 'IS_DEFINED is never undefined, so NOT applies');
});

t.test('NOT, and three-valued logic on undefined', async (t) => {
  t.ok(where("NOT tags.site = 'kyoto'"));
  t.notOk(where("NOT tags.site = 'osaka'"));
  t.ok(where("NOT NOT tags.site = 'osaka'"));
  t.notOk(where('NOT tags.nothing = 1'), 'NOT undefined stays undefined, as on IoT Hub');
  t.notOk(where("NOT tags.floor = '3'"), 'NOT of a type mismatch stays undefined');
  t.ok(where('tags.nothing = 1 OR tags.floor = 3'), 'undefined OR true');
  t.notOk(where('tags.nothing = 1 OR tags.floor = 4'), 'undefined OR false');
  t.notOk(where('tags.nothing = 1 AND tags.floor = 3'), 'undefined AND true');
  t.equal(evaluateCondition(conditionOf('tags.nothing = 1 AND tags.floor = 4'), twin), false, 'undefined AND false is false');
  t.equal(evaluateCondition(conditionOf('NOT (tags.nothing = 1 AND tags.floor = 4)'), twin), true, '… so its NOT is true');
  t.equal(evaluateCondition(conditionOf('tags.nothing = 1 AND tags.floor = 3'), twin), undefined);
  t.equal(evaluateCondition(conditionOf('tags.nothing = 1 OR tags.floor = 4'), twin), undefined);
});

t.test('precedence: NOT binds tighter than AND, AND tighter than OR; parentheses override', async (t) => {
  const T = "tags.site = 'osaka'";
  const F = "tags.site = 'kyoto'";
  t.ok(where(`${T} OR ${T} AND ${F}`), 'T OR (T AND F)');
  t.notOk(where(`(${T} OR ${T}) AND ${F}`), '(T OR T) AND F');
  t.ok(where(`${F} AND ${F} OR ${T}`), '(F AND F) OR T');
  t.notOk(where(`${F} AND (${F} OR ${T})`), 'F AND (F OR T)');
  t.notOk(where(`NOT ${F} AND ${F}`), '(NOT F) AND F');
  t.ok(where(`NOT (${F} AND ${F})`), 'NOT (F AND F)');
  t.ok(where(`NOT ${T} OR ${T}`), '(NOT T) OR T');
  t.ok(where(`((((${T}))))`), 'redundant parentheses');
  const site = (v: string): Condition => ({ kind: 'compare', path: ['tags', 'site'], op: '=', value: v });
  t.same(conditionOf("NOT tags.site = 'a' AND tags.site = 'b' OR tags.site = 'c' AND tags.site = 'd'"), {
    kind: 'or',
    left: { kind: 'and', left: { kind: 'not', operand: site('a') }, right: site('b') },
    right: { kind: 'and', left: site('c'), right: site('d') },
  });
  t.same(conditionOf("tags.site = 'a' OR tags.site = 'b' OR tags.site = 'c'"), {
    kind: 'or',
    left: { kind: 'or', left: site('a'), right: site('b') },
    right: site('c'),
  }, 'OR associates to the left');
  t.same(conditionOf("tags.site <> 'a'"), { kind: 'compare', path: ['tags', 'site'], op: '!=', value: 'a' }, '<> is !=');
});

t.test('every parse error names what was expected and where', async (t) => {
  const cases: [string, string][] = [
    ['', 'expected SELECT at position 0'],
    ['   ', 'expected SELECT at position 3'],
    ['DELETE FROM devices', 'expected SELECT at position 0'],
    ['SELECT * devices', 'expected FROM at position 9'],
    ['SELECT FROM devices', 'expected * at position 7'],
    ['SELECT 1 FROM devices', 'expected * at position 7'],
    ['SELECT *, deviceId FROM devices', 'expected FROM at position 8'],
    ['SELECT * FROM twins', 'expected devices at position 14'],
    ['SELECT * FROM', 'expected devices at position 13'],
    ['SELECT * FROM devices x', 'expected WHERE or end of query at position 22'],
    ['SELECT * FROM devices WHERE', `expected ${A_CONDITION} at position 27`],
    [`${WHERE}AND tags.a = 1`, `expected ${A_CONDITION} at position 28`],
    [`${WHERE}'osaka' = tags.site`, `expected ${A_CONDITION} at position 28`],
    [`${WHERE}tags.a = 1 AND`, `expected ${A_CONDITION} at position 42`],
    [`${WHERE}tags.a = 1 OR NOT`, `expected ${A_CONDITION} at position 45`],
    [`${WHERE}tags.site`, `expected ${AN_OPERATOR} at position 37`],
    [`${WHERE}tags.site IN ['a']`, `expected ${AN_OPERATOR} at position 38`],
    [`${WHERE}tags.site =`, `expected ${A_VALUE} at position 39`],
    [`${WHERE}tags.site = osaka`, `expected ${A_VALUE} at position 40`],
    [`${WHERE}tags.a == 1`, `expected ${A_VALUE} at position 36`],
    [`${WHERE}tags. = 1`, 'expected a property name after . at position 34'],
    [`${WHERE}tags.3 = 1`, 'expected a property name after . at position 33'],
    [`${WHERE}properties = 1`, 'expected . after properties at position 39'],
    [`${WHERE}properties.foo = 1`, 'expected reported or desired at position 39'],
    [`${WHERE}(tags.a = 1`, 'expected AND, OR or ) at position 39'],
    [`${WHERE}tags.a = 1)`, 'expected AND, OR or end of query at position 38'],
    [`${WHERE}tags.a = 1 tags.b = 2`, 'expected AND, OR or end of query at position 39'],
    [`${WHERE}IS_DEFINED tags.a`, 'expected ( after IS_DEFINED at position 39'],
    [`${WHERE}IS_DEFINED(tags.a`, 'expected ) after the IS_DEFINED path at position 45'],
    [`${WHERE}IS_DEFINED()`, 'expected a property path at position 39'],
    [`${WHERE}tags.a = "x"`, `unexpected character '"' at position 37 (strings take single quotes)`],
    [`${WHERE}tags.a = 'x`, 'unterminated string starting at position 37'],
    [`${WHERE}tags.a = 'it''s`, 'unterminated string starting at position 37'],
    [`${WHERE}tags.a = -`, "unexpected character '-' at position 37"],
    [`${WHERE}tags.a = 1 # comment`, "unexpected character '#' at position 39"],
    // The SDK cuts an error message at its first ';' (Http.parseErrorBody), so none is echoed.
    [`${WHERE}tags.a = 1; DROP`, 'unexpected character U+003B at position 38'],
    [`${WHERE}tags.a = 1 \u00e9`, 'unexpected character U+00E9 at position 39'],
    [
      `${WHERE}location = 'x'`,
      "unknown property 'location' at position 28: the local hub queries deviceId, status, tags.…, properties.reported.… and properties.desired.…",
    ],
    [`${WHERE}DeviceId = 'x'`, "unknown property 'DeviceId' at position 28: the local hub queries deviceId, status, tags.…, properties.reported.… and properties.desired.…"],
  ];
  for (const [sql, message] of cases) {
    const err = throwsHub(t, () => parseDeviceQuery(sql), 'ArgumentInvalid', `query: ${message}`, JSON.stringify(sql));
    t.notOk(err?.message.includes(';'), `${JSON.stringify(sql)}: no ';' for the SDK to cut at`);
  }
});

t.test('what the local hub does not support is refused by name', async (t) => {
  const cases: [string, string][] = [
    ['SELECT deviceId FROM devices', 'SELECT deviceId (position 7)'],
    ['SELECT COUNT() AS n FROM devices', 'SELECT COUNT (position 7)'],
    ['SELECT TOP 5 * FROM devices', 'TOP (position 7)'],
    ['SELECT * FROM devices.modules', 'FROM devices.modules (position 14)'],
    ['SELECT * FROM devices.jobs', 'FROM devices.jobs (position 14)'],
    ['SELECT * FROM devices GROUP BY tags.site', 'GROUP BY (position 22)'],
    [`${WHERE}tags.a = 1 GROUP BY tags.site`, 'GROUP BY (position 39)'],
    [`${WHERE}tags.a = 1 ORDER BY deviceId`, 'ORDER BY (position 39)'],
  ];
  for (const [sql, what] of cases) throwsHub(t, () => parseDeviceQuery(sql), 'ArgumentInvalid', `query: ${what} ${UNSUPPORTED}`, sql);
});

t.test('nesting is bounded, so a hostile query is a 400 and not a stack overflow', async (t) => {
  t.ok(where(`${'('.repeat(64)}tags.floor = 3${')'.repeat(64)}`), '64 levels are fine');
  throwsHub(t, () => parseDeviceQuery(`${WHERE}${'('.repeat(10_000)}`), 'ArgumentInvalid', 'query: conditions nest deeper than 64 levels at position 92');
  throwsHub(t, () => parseDeviceQuery(`${WHERE}${'NOT '.repeat(10_000)}tags.a = 1`), 'ArgumentInvalid', 'query: conditions nest deeper than 64 levels at position 284');
});
