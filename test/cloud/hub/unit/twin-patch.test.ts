import t from 'tap';
import {
  mergeWithMetadata,
  replaceWithMetadata,
  sectionSize,
  TWIN_SECTION_MAX_BYTES,
  validatePatch,
  type JsonObject,
  type Metadata,
} from '../../../../cloud/hub/twin-patch.js';
import { throwsHub } from './temp-db.js';

const T0 = '2030-01-01T00:00:00.000Z';
const T1 = '2030-01-02T00:00:00.000Z';

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null) {
    for (const child of Object.values(v)) deepFreeze(child);
    Object.freeze(v);
  }
  return v;
}

/** Nested objects `depth` levels deep under the section: {k1: {k2: … {kN: leaf}}}. */
function nested(depth: number, leaf: JsonObject): JsonObject {
  let v: JsonObject = leaf;
  for (let i = depth; i >= 1; i--) v = { [`k${i}`]: v };
  return v;
}

t.test('merge semantics with metadata, version given', async (t) => {
  const target: JsonObject = { a: 1, b: { c: 2, d: 3 }, arr: [1, 2, 3], obj: { x: 1 } };
  const meta: Metadata = {
    $lastUpdated: T0,
    $lastUpdatedVersion: 1,
    a: { $lastUpdated: T0, $lastUpdatedVersion: 1 },
    b: { $lastUpdated: T0, $lastUpdatedVersion: 1, c: { $lastUpdated: T0, $lastUpdatedVersion: 1 }, d: { $lastUpdated: T0, $lastUpdatedVersion: 1 } },
    arr: { $lastUpdated: T0, $lastUpdatedVersion: 1 },
    obj: { $lastUpdated: T0, $lastUpdatedVersion: 1, x: { $lastUpdated: T0, $lastUpdatedVersion: 1 } },
  };
  const patch: JsonObject = { b: { c: null, e: { f: true } }, arr: [9], obj: 'flat', n: 0, missing: null };
  deepFreeze(target);
  deepFreeze(meta);
  deepFreeze(patch);
  const before = JSON.stringify({ target, meta, patch });
  const out = mergeWithMetadata(target, meta, patch, { lastUpdated: T1, version: 2 });
  t.strictSame(out.value, { a: 1, b: { d: 3, e: { f: true } }, arr: [9], obj: 'flat', n: 0 });
  const m1 = { $lastUpdated: T1, $lastUpdatedVersion: 2 };
  t.strictSame(out.meta, {
    $lastUpdated: T1,
    $lastUpdatedVersion: 2,
    a: { $lastUpdated: T0, $lastUpdatedVersion: 1 },
    b: { ...m1, d: { $lastUpdated: T0, $lastUpdatedVersion: 1 }, e: { ...m1, f: m1 } },
    arr: m1,
    obj: m1,
    n: m1,
  });
  t.equal(JSON.stringify({ target, meta, patch }), before, 'inputs unchanged (and frozen, so never written)');
});

t.test('metadata without a version has no $lastUpdatedVersion', async (t) => {
  const out = mergeWithMetadata({}, {}, { a: { b: 1 }, c: 'x' }, { lastUpdated: T1 });
  t.strictSame(out.value, { a: { b: 1 }, c: 'x' });
  t.strictSame(out.meta, { $lastUpdated: T1, a: { $lastUpdated: T1, b: { $lastUpdated: T1 } }, c: { $lastUpdated: T1 } });
});

t.test('null for a missing key changes no value', async (t) => {
  const out = mergeWithMetadata({ a: 1 }, { $lastUpdated: T0, a: { $lastUpdated: T0 } }, { zz: null, y: { deeper: null } }, { lastUpdated: T1 });
  t.strictSame(out.value, { a: 1, y: {} }, 'zz not created; y becomes an empty object (RFC 7386)');
  t.strictSame(out.meta, { $lastUpdated: T1, a: { $lastUpdated: T0 }, y: { $lastUpdated: T1 } });
  const noop = mergeWithMetadata({ a: 1 }, {}, { zz: null }, { lastUpdated: T1 });
  t.strictSame(noop.value, { a: 1 });
  t.equal('zz' in noop.meta, false, 'no metadata for the absent key');
});

t.test('deleting a subtree removes its metadata', async (t) => {
  const out = mergeWithMetadata(
    { keep: 1, gone: { x: { y: 1 } } },
    { $lastUpdated: T0, keep: { $lastUpdated: T0 }, gone: { $lastUpdated: T0, x: { $lastUpdated: T0, y: { $lastUpdated: T0 } } } },
    { gone: null },
    { lastUpdated: T1, version: 7 },
  );
  t.strictSame(out.value, { keep: 1 });
  t.strictSame(out.meta, { $lastUpdated: T1, $lastUpdatedVersion: 7, keep: { $lastUpdated: T0 } });
});

t.test('a primitive replaced by an object, and an object by a primitive', async (t) => {
  const out = mergeWithMetadata({ p: 5, o: { q: 1 } }, { p: { $lastUpdated: T0 }, o: { $lastUpdated: T0, q: { $lastUpdated: T0 } } }, { p: { r: 1 }, o: 6 }, { lastUpdated: T1 });
  t.strictSame(out.value, { p: { r: 1 }, o: 6 });
  t.strictSame(out.meta, { $lastUpdated: T1, p: { $lastUpdated: T1, r: { $lastUpdated: T1 } }, o: { $lastUpdated: T1 } });
});

t.test('arrays are replaced whole, nulls inside them kept', async (t) => {
  const out = mergeWithMetadata({ list: [1, { a: 1 }, 3] }, {}, { list: [null, { b: 2 }] }, { lastUpdated: T1 });
  t.strictSame(out.value, { list: [null, { b: 2 }] });
  t.strictSame(out.meta, { $lastUpdated: T1, list: { $lastUpdated: T1 } });
});

t.test('replaceWithMetadata rebuilds metadata for every node', async (t) => {
  const out = replaceWithMetadata({ a: { b: 1 }, gone: null }, { lastUpdated: T1, version: 3 });
  const m = { $lastUpdated: T1, $lastUpdatedVersion: 3 };
  t.strictSame(out.value, { a: { b: 1 } });
  t.strictSame(out.meta, { ...m, a: { ...m, b: m } });
});

t.test('sectionSize is the UTF-8 JSON length', async (t) => {
  t.equal(sectionSize({}), 2);
  t.equal(sectionSize({ a: 'é' }), 10);
  t.equal(TWIN_SECTION_MAX_BYTES, 32768);
});

t.test('validatePatch accepts what IoT Hub accepts', async (t) => {
  const ok: JsonObject = { a: 1, b: 'x'.repeat(4096), ['k'.repeat(1024)]: true, list: [1, 'two', { three: 3 }], n: null, neg: -1.5 };
  t.equal(validatePatch(ok, 'tags'), ok, 'returns the same object');
  t.strictSame(validatePatch({}, 'tags'), {});
  t.doesNotThrow(() => validatePatch({ s: 'é'.repeat(2048) }, 'tags'), '4096 UTF-8 bytes');
});

t.test('validatePatch rejections name the path', async (t) => {
  for (const bad of [null, [], 'str', 5, true, undefined]) {
    throwsHub(t, () => validatePatch(bad, 'properties.desired'), 'ArgumentInvalid', 'properties.desired patch must be a JSON object', `non-object ${JSON.stringify(bad)}`);
  }
  const nameRule = "(no '.', '$' or ' ', 1 KB at most)";
  throwsHub(t, () => validatePatch({ a: { 'b.c': 1 } }, 'tags'), 'ArgumentInvalid', `tags.a: invalid property name "b.c" ${nameRule}`);
  throwsHub(t, () => validatePatch({ $x: 1 }, 'properties.desired'), 'ArgumentInvalid', `properties.desired: invalid property name "$x" ${nameRule}`);
  throwsHub(t, () => validatePatch({ a: { b: { 'c d': 1 } } }, 'tags'), 'ArgumentInvalid', `tags.a.b: invalid property name "c d" ${nameRule}`);
  throwsHub(t, () => validatePatch({ '': 1 }, 'tags'), 'ArgumentInvalid', `tags: invalid property name "" ${nameRule}`);
  throwsHub(t, () => validatePatch({ list: [{ 'x.y': 1 }] }, 'tags'), 'ArgumentInvalid', `tags.list[0]: invalid property name "x.y" ${nameRule}`);
  throwsHub(t, () => validatePatch({ ['k'.repeat(1025)]: 1 }, 'tags'), 'ArgumentInvalid', `tags: invalid property name "${'k'.repeat(64)}" ${nameRule}`,
    'key over 1 KB, name cut to 64 characters');
  throwsHub(t, () => validatePatch({ ['é'.repeat(513)]: 1 }, 'tags'), 'ArgumentInvalid', /invalid property name/, 'key limit counts UTF-8 bytes');
  throwsHub(t, () => validatePatch({ a: { s: 'x'.repeat(4097) } }, 'properties.reported'), 'ArgumentInvalid', 'properties.reported.a.s: string longer than 4096 bytes');
  throwsHub(t, () => validatePatch({ s: 'é'.repeat(2049) }, 'tags'), 'ArgumentInvalid', 'tags.s: string longer than 4096 bytes', 'string limit counts UTF-8 bytes');
  throwsHub(t, () => validatePatch({ list: ['ok', 'x'.repeat(4097)] }, 'tags'), 'ArgumentInvalid', 'tags.list[1]: string longer than 4096 bytes');
  throwsHub(t, () => validatePatch({ a: { n: NaN } }, 'tags'), 'ArgumentInvalid', 'tags.a.n: number is not finite');
  throwsHub(t, () => validatePatch({ n: Infinity }, 'tags'), 'ArgumentInvalid', 'tags.n: number is not finite');
  throwsHub(t, () => validatePatch({ n: -Infinity }, 'tags'), 'ArgumentInvalid', 'tags.n: number is not finite');
});

t.test('depth: eight nested objects pass, eleven fail naming the path', async (t) => {
  t.doesNotThrow(() => validatePatch(nested(8, { leaf: 1 }), 'tags'));
  t.doesNotThrow(() => validatePatch({ list: [[[[[[[[1]]]]]]]] }, 'tags'), 'eight nested arrays');
  // The path is tags.k1…k10 today; with the depth fix below it becomes tags.k1…k11.
  throwsHub(t, () => validatePatch(nested(11, { leaf: 1 }), 'tags'), 'ArgumentInvalid',
    /^tags\.k1\.k2\.k3\.k4\.k5\.k6\.k7\.k8\.k9\.k10(\.k11)?: nesting deeper than 10 levels$/);
  throwsHub(t, () => validatePatch(nested(30, {}), 'tags'), 'ArgumentInvalid', /: nesting deeper than 10 levels$/);
});

t.test("the documented maximum-depth example (ten nested objects) is accepted", async (t) => {
  // docs "Understand and use device twins", Depth: tags.one.two...ten.property = "value" "is valid".
  t.doesNotThrow(() => validatePatch(nested(9, { leaf: 1 }), 'tags'), 'nine nested objects holding a value');
  t.doesNotThrow(() => validatePatch(nested(10, { leaf: 1 }), 'tags'), 'ten nested objects holding a value');
  const doc = { one: { two: { three: { four: { five: { six: { seven: { eight: { nine: { ten: { property: 'value' } } } } } } } } } } };
  t.doesNotThrow(() => validatePatch(doc, 'tags'), 'the documentation example');
});
