import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import t, { type Test } from 'tap';
import {
  readResourceLogRecords,
  resourceLogDocument,
  ResourceLogDocumentError,
  type RecordItem,
  type RecordStreamOptions,
} from '../../../cloud/src/locations/record-stream.js';

type Chunk = Buffer | Uint8Array | string;

async function collect(chunks: AsyncIterable<Chunk> | Iterable<Chunk>, opts?: RecordStreamOptions): Promise<RecordItem[]> {
  const items: RecordItem[] = [];
  for await (const item of readResourceLogRecords(chunks, opts)) items.push(item);
  return items;
}

/** Items and the error (if any) the stream ended with. */
async function run(chunks: AsyncIterable<Chunk> | Iterable<Chunk>, opts?: RecordStreamOptions): Promise<{ items: RecordItem[]; error: unknown }> {
  const items: RecordItem[] = [];
  try {
    for await (const item of readResourceLogRecords(chunks, opts)) items.push(item);
    return { items, error: undefined };
  } catch (error) {
    return { items, error };
  }
}

function values(records: unknown[]): RecordItem[] {
  return records.map((value, index) => ({ index, value }));
}

const record = (i: number): Record<string, unknown> => ({
  time: `2026-01-01T00:00:${String(i % 60).padStart(2, '0')}.000Z`,
  resourceId: '/SUBSCRIPTIONS/0000/RESOURCEGROUPS/FIELDLINK/PROVIDERS/MICROSOFT.DEVICES/IOTHUBS/FIELDLINK-HUB',
  operationName: 'deviceConnect',
  category: 'Connections',
  level: 'Information',
  properties: JSON.stringify({ deviceId: `device-${i}`, protocol: 'Amqp', authType: JSON.stringify({ scope: 'device', type: 'sas' }), maskedIpAddress: '81.2.69.XXX' }),
  location: 'westeurope',
});

// Multi-byte UTF-8, every kind of escape, brackets and commas inside strings, nesting, whitespace.
const tricky = [
  '{',
  '  "before": {"x": ["]", "}", "\\"[{", {"y": "\\\\"}], "n": -1.5e3, "t": true},',
  '  "str": "a \\"quoted\\" ], } string \\\\",',
  '  "num": 42, "nil": null,',
  '  "records": [',
  '    {"city": "東京", "note": "caf\\u00e9 \\"été\\" \\\\ \\/ \\n", "emoji": "🛰️", "props": "{\\"a\\":[1,2]}"},',
  '    {"nested": {"a": [1, {"b": [2, 3]}, "],}"]}, "e": ""}\t,',
  '\r\n    [1, "two", null] , 7 ,"just a string", true,',
  '    {}',
  '  ],',
  '  "after": [[], {}, "]}", {"z": "\\\\\\""}]',
  '}\n',
].join('\n');

t.test('chunks split at every byte position give the same records as JSON.parse of the whole', async (t) => {
  const bytes = Buffer.from(tricky, 'utf8');
  const expected = values((JSON.parse(tricky) as { records: unknown[] }).records);
  t.ok(bytes.length > Buffer.byteLength(tricky, 'latin1') - 100, 'the document holds multi-byte characters');
  t.same(await collect([bytes]), expected, 'one chunk');
  t.same(await collect([tricky]), expected, 'one string chunk');
  let mismatches = 0;
  for (let cut = 0; cut <= bytes.length; cut++) {
    const items = await collect([bytes.subarray(0, cut), bytes.subarray(cut)]);
    if (JSON.stringify(items) !== JSON.stringify(expected)) {
      mismatches++;
      t.same(items, expected, `split at byte ${cut}`);
    }
  }
  t.equal(mismatches, 0, `all ${bytes.length + 1} two-chunk splits agree`);
  const oneByte = Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1));
  t.same(await collect(oneByte), expected, 'one byte per chunk');
  const u8 = Array.from({ length: Math.ceil(bytes.length / 7) }, (_, i) => new Uint8Array(bytes.subarray(i * 7, i * 7 + 7)));
  t.same(await collect(u8), expected, 'plain Uint8Array chunks of 7 bytes');
  t.same(await collect([Buffer.alloc(0), bytes, Buffer.alloc(0)]), expected, 'empty chunks are harmless');
});

t.test('three-way splits around the escapes and multi-byte characters', async (t) => {
  const doc = '{"records":["\\\\","\\"","\\u00e9","東京",{"k":"\\\\\\"]"}]}';
  const bytes = Buffer.from(doc, 'utf8');
  const expected = values((JSON.parse(doc) as { records: unknown[] }).records);
  let mismatches = 0;
  for (let a = 0; a <= bytes.length; a++) {
    for (let b = a; b <= bytes.length; b++) {
      const items = await collect([bytes.subarray(0, a), bytes.subarray(a, b), bytes.subarray(b)]);
      if (JSON.stringify(items) !== JSON.stringify(expected)) mismatches++;
    }
  }
  t.equal(mismatches, 0);
});

t.test('an Azure-shaped document streams its records in order', async (t) => {
  const records = Array.from({ length: 50 }, (_, i) => record(i));
  const doc = JSON.stringify({ records }, null, 2);
  t.same(await collect([doc]), values(records), 'pretty-printed');
  t.same(await collect([JSON.stringify({ records })]), values(records), 'compact');
  t.same(await collect(['\ufeff' + JSON.stringify({ records })]), values(records), 'with a UTF-8 byte-order mark');
});

t.test('an empty records array yields nothing; non-object elements are yielded as values', async (t) => {
  t.same(await collect(['{"records":[]}']), []);
  t.same(await collect([' \n{ "records" : [ \r\n\t ] }\n ']), []);
  t.same(await collect(['{"records":[1,"x",null,[2],false,{}]}']), values([1, 'x', null, [2], false, {}]));
  t.same(await collect(['{"rec\\u006frds":[1]}']), values([1]), 'an escaped "records" key is still the records key');
  t.same(await collect(['{"Records":[1],"records":[2]}']), values([2]), 'keys are case-sensitive');
});

t.test('a malformed element is reported with its index and the rest still come', async (t) => {
  const items = await collect(['{"records":[{"a":1},{"a":},{"b":2},{"c":[1,}],,"ok"]}']);
  t.same(items[0], { index: 0, value: { a: 1 } });
  t.equal(items[1]?.index, 1);
  t.match((items[1] as { error: string }).error, /JSON/, "JSON.parse's message");
  t.same(items[2], { index: 2, value: { b: 2 } });
  t.ok(items[3] !== undefined && 'error' in items[3] && items[3].index === 3, 'a mismatched bracket that still balances is an element error');
  t.ok(items[4] !== undefined && 'error' in items[4] && items[4].index === 4, 'an empty element');
  t.same(items[5], { index: 5, value: 'ok' });
  t.equal(items.length, 6);
});

t.test('an oversize element is reported and skipped without being buffered', async (t) => {
  const chunkSize = 64 * 1024;
  const total = 10 * 1024 * 1024;
  // One reused chunk buffer: if the reader kept (or copied) the element's bytes, arrayBuffers would grow by ~10 MB.
  const filler = Buffer.alloc(chunkSize, 'x');
  async function* body(): AsyncGenerator<Buffer> {
    yield Buffer.from('{"records":[{"big":"');
    for (let sent = 0; sent < total; sent += chunkSize) yield filler;
    yield Buffer.from('"},{"small":true},{"big2":"' + 'y'.repeat(70_000) + '"},3]}');
  }
  const before = process.memoryUsage().arrayBuffers;
  let growth = 0;
  const items: RecordItem[] = [];
  for await (const item of readResourceLogRecords(body(), { maxRecordBytes: 64 * 1024 })) {
    if (items.length === 0) growth = process.memoryUsage().arrayBuffers - before;
    items.push(item);
  }
  t.equal(items.length, 4);
  t.equal(items[0]?.index, 0);
  t.match((items[0] as { error: string }).error, /record 0 is 10485770 bytes, more than the 65536-byte limit/);
  t.same(items[1], { index: 1, value: { small: true } });
  t.match(items[2], { index: 2, error: /more than the 65536-byte limit/ }, 'oversize within one chunk');
  t.same(items[3], { index: 3, value: 3 });
  t.ok(growth < 2 * 1024 * 1024, `external memory grew ${growth} bytes while skipping a 10 MB element`);
  t.same(await collect(['{"records":[[1,2],12345]}'], { maxRecordBytes: 5 }), values([[1, 2], 12345]), 'exactly the limit is allowed');
  t.match(await collect(['{"records":[123456]}'], { maxRecordBytes: 5 }), [{ index: 0, error: /6 bytes, more than the 5-byte limit/ }]);
});

async function documentError(t: Test, chunks: Chunk[], message: RegExp, offset?: number): Promise<RecordItem[]> {
  const { items, error } = await run(chunks);
  t.type(error, ResourceLogDocumentError, `${JSON.stringify(chunks.join(''))} is a document error`);
  if (error instanceof ResourceLogDocumentError) {
    t.match(error.message, message);
    if (offset !== undefined) t.equal(error.offset, offset, 'at the byte offset');
  }
  return items;
}

t.test('a truncated document is a document error after the records before the cut', async (t) => {
  const items = await documentError(t, ['{"records":[{"a":1},{"b":'], /truncated: it ends inside record 1, which starts at byte 20 \(at byte 25\)/, 25);
  t.same(items, values([{ a: 1 }]));
  await documentError(t, ['{"records":[{"a":"unterminated'], /truncated: it ends inside record 0/);
  await documentError(t, ['{"records":[1,2'], /truncated/);
  await documentError(t, ['{"records":[1,2]'], /truncated: it ends before the top-level object closes/);
  await documentError(t, ['{"records":[1,2],"x":"ab'], /truncated: it ends inside a string/);
  await documentError(t, ['{"records":["a\\'], /truncated/);
  // Every proper prefix of a valid document is a document error, never another exception.
  const doc = tricky.trimEnd();
  let wrong = 0;
  for (let cut = 0; cut < doc.length; cut++) {
    const { error } = await run([doc.slice(0, cut)]);
    if (!(error instanceof ResourceLogDocumentError)) wrong++;
  }
  t.equal(wrong, 0, 'all prefixes rejected');
});

t.test('structure errors: trailing garbage, not an object, no records, unbalanced', async (t) => {
  await documentError(t, ['{"records":[]} x'], /unexpected 'x' after the top-level object \(at byte 15\)/, 15);
  await documentError(t, ['{"records":[1]}{}'], /unexpected '\{' after the top-level object/, 15);
  await documentError(t, ['[{"a":1}]'], /not a JSON object: it starts with '\['/, 0);
  await documentError(t, ['  "records"'], /not a JSON object: it starts with '"'/, 2);
  await documentError(t, ['42'], /not a JSON object/);
  await documentError(t, [], /the document is empty/);
  await documentError(t, [' \n '], /holds no JSON object/);
  await documentError(t, ['{}'], /^the document has no "records" array/);
  await documentError(t, ['{"value":[{"a":1}], "other": "records"}'], /^the document has no "records" array/);
  await documentError(t, ['{"records":{"a":1}}'], /"records" is not an array: it starts with '\{'/, 11);
  await documentError(t, ['{"records":null}'], /"records" is not an array/);
  await documentError(t, ['{"records":[1],"records":[2]}'], /more than one "records" key/);
  await documentError(t, ['{"records":[{"a":1}}]}'], /unbalanced '\}' in record 0 \(at byte 19\)/, 19);
  await documentError(t, ['{"x":[1}, "records":[]}'], /unbalanced '\}' in a top-level value/);
  await documentError(t, ['{"x":nope,"records":[]}'], /top-level value is not valid JSON/, 5);
  await documentError(t, ['{"records" [1]}'], /expected ':' after a top-level key/);
  await documentError(t, ['{"records":[1] "x":1}'], /expected ',' or '\}' after a top-level value/);
  await documentError(t, ['{"records":[1],}'], /expected a key in the top-level object, found '\}'/);
  await documentError(t, ['{records:[1]}'], /expected a key in the top-level object, found 'r'/, 1);
});

t.test('more than maxRecords elements is a document error', async (t) => {
  const { items, error } = await run(['{"records":[1,2,3,4]}'], { maxRecords: 3 });
  t.same(items, values([1, 2, 3]));
  t.type(error, ResourceLogDocumentError);
  t.match((error as Error).message, /more than 3 records/);
  t.same(await collect(['{"records":[1,2,3]}'], { maxRecords: 3 }), values([1, 2, 3]), 'exactly maxRecords is fine');
});

t.test('100,000 records stream from lazily generated chunks with bounded memory', async (t) => {
  const count = 100_000;
  const chunkSize = 64 * 1024;
  async function* body(): AsyncGenerator<Buffer> {
    let pending: Buffer[] = [Buffer.from('{"category":"Connections","records":[\n')];
    let pendingBytes = pending[0]!.length;
    for (let i = 0; i < count; i++) {
      const b = Buffer.from((i === 0 ? '' : ',\n') + JSON.stringify(record(i)));
      pending.push(b);
      pendingBytes += b.length;
      if (pendingBytes >= chunkSize) {
        const all = Buffer.concat(pending, pendingBytes);
        yield all.subarray(0, chunkSize);
        pending = [all.subarray(chunkSize)];
        pendingBytes = pending[0]!.length;
      }
    }
    pending.push(Buffer.from('\n],"tail":{"x":"]"}}\n'));
    yield Buffer.concat(pending);
  }
  // What the reader retains, not garbage the GC has yet to collect: measure right after a full GC.
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  const baseline = process.memoryUsage().heapUsed;
  let peak = 0;
  let seen = 0;
  let next = 0;
  let outOfOrder = 0;
  for await (const item of readResourceLogRecords(body())) {
    if (item.index !== next++ || !('value' in item) || (item.value as { operationName?: string }).operationName !== 'deviceConnect') outOfOrder++;
    seen++;
    if (seen % 10_000 === 0) {
      gc();
      peak = Math.max(peak, process.memoryUsage().heapUsed - baseline);
    }
  }
  t.equal(seen, count);
  t.equal(outOfOrder, 0, 'every record in order, parsed');
  t.ok(peak < 50 * 1024 * 1024, `live heap grew at most ${(peak / 1048576).toFixed(1)} MB (the document is ~${Math.round((count * 450) / 1048576)} MB)`);
});

t.test('resourceLogDocument writes what readResourceLogRecords reads, in bounded chunks', async (t) => {
  const records = Array.from({ length: 500 }, (_, i) => ({ time: `2026-01-01T00:00:${String(i % 60).padStart(2, '0')}Z`, properties: JSON.stringify({ deviceId: `gw-${i}`, note: '東京 "quoted" \\' }) }));
  const chunks = [...resourceLogDocument(records, 4096)];
  t.ok(chunks.length > 5, `${chunks.length} chunks for 500 records`);
  t.ok(chunks.every((c) => c.length < 4096 + 200), 'no chunk much over the asked size');
  t.same(JSON.parse(chunks.join('')), { records }, 'one valid document');
  t.same(await collect(chunks), records.map((value, index) => ({ index, value })), 'read back record by record');
  t.same(JSON.parse([...resourceLogDocument([])].join('')), { records: [] }, 'no records: an empty array');
});
