import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { deepFreeze, loadConfig, readJsonConfigFile } from '../../common/config.js';
import { FieldlinkError, isFieldlinkError } from '../../common/errors.js';

interface UplinkConfig {
  gatewayId: string;
  uplink: { host: string; port: number; protocol: 'amqps' | 'amqp-ws' };
  batch: { maxBytes: number };
  tags: string[];
}

const schema = {
  type: 'object',
  additionalProperties: false,
  required: ['gatewayId', 'uplink'],
  properties: {
    gatewayId: { type: 'string', minLength: 1 },
    uplink: {
      type: 'object',
      additionalProperties: false,
      required: ['host'],
      properties: {
        host: { type: 'string', format: 'hostname' },
        port: { type: 'integer', minimum: 1, maximum: 65535, default: 5671 },
        protocol: { enum: ['amqps', 'amqp-ws'], default: 'amqps' },
      },
    },
    batch: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: { maxBytes: { type: 'integer', default: 4096 } },
    },
    tags: { type: 'array', items: { type: 'string' }, default: [] },
  },
} as const;

function thrown(fn: () => unknown): FieldlinkError {
  try {
    fn();
  } catch (error) {
    if (error instanceof FieldlinkError) return error;
    throw error;
  }
  throw new Error('expected a FieldlinkError');
}

t.test('every bad field is reported, with its path, in one message', async (t) => {
  const input = {
    gatewayId: '',
    uplink: { host: 'not a host!', port: '5671', protocol: 'mqtt', colour: 'red' },
    foo: 1,
  };
  const error = thrown(() => loadConfig<UplinkConfig>(schema, input, { source: 'config.json' }));
  t.equal(error.code, 'CONFIG_INVALID');
  t.equal(error.retryable, false);
  const problems = error.details?.problems;
  t.same(
    new Set(problems as unknown[]),
    new Set([
      { path: '/foo', message: 'unknown property' },
      { path: '/gatewayId', message: 'must NOT have fewer than 1 characters' },
      { path: '/uplink/colour', message: 'unknown property' },
      { path: '/uplink/host', message: 'must match format "hostname"' },
      { path: '/uplink/port', message: 'must be integer' },
      { path: '/uplink/protocol', message: 'must be one of "amqps", "amqp-ws"' },
    ]),
  );
  t.match(error.message, /^config\.json is invalid:\n {2}\//);
  for (const line of ['  /uplink/port: must be integer', '  /foo: unknown property', '  /uplink/colour: unknown property']) {
    t.ok(error.message.split('\n').includes(line), `message has line "${line}"`);
  }
});

t.test('missing required fields and a non-object root', async (t) => {
  const missing = thrown(() => loadConfig<UplinkConfig>(schema, { uplink: {} }));
  t.match(missing.message, /^config is invalid:/, 'source defaults to "config"');
  t.same(
    new Set(missing.details?.problems as unknown[]),
    new Set([
      { path: '/gatewayId', message: 'is required' },
      { path: '/uplink/host', message: 'is required' },
    ]),
  );
  const root = thrown(() => loadConfig<UplinkConfig>(schema, 'hello'));
  t.same(root.details?.problems, [{ path: '/', message: 'must be object' }]);
});

t.test('defaults are applied and the input is left alone', async (t) => {
  const input = { gatewayId: 'gw1', uplink: { host: 'hub.local' } };
  const config = loadConfig<UplinkConfig>(schema, input);
  t.same(config, {
    gatewayId: 'gw1',
    uplink: { host: 'hub.local', port: 5671, protocol: 'amqps' },
    batch: { maxBytes: 4096 },
    tags: [],
  });
  t.same(input, { gatewayId: 'gw1', uplink: { host: 'hub.local' } }, 'input not mutated');
});

t.test('the result is deeply frozen', async (t) => {
  const config = loadConfig<UplinkConfig>(schema, { gatewayId: 'gw1', uplink: { host: 'hub.local' }, tags: ['a'] });
  t.ok(Object.isFrozen(config));
  t.ok(Object.isFrozen(config.uplink));
  t.ok(Object.isFrozen(config.batch));
  t.ok(Object.isFrozen(config.tags));
  t.throws(() => {
    (config.uplink as { port: number }).port = 1;
  }, TypeError, 'writes throw in strict mode');
  t.throws(() => {
    (config.tags as string[]).push('b');
  }, TypeError);
});

t.test('deepFreeze handles cycles and typed arrays', async (t) => {
  const value: { self?: unknown; bytes: Uint8Array; list: { n: number }[] } = { bytes: new Uint8Array(2), list: [{ n: 1 }] };
  value.self = value;
  const frozen = deepFreeze(value);
  t.ok(Object.isFrozen(frozen));
  t.ok(Object.isFrozen(frozen.list[0]));
  t.notOk(Object.isFrozen(frozen.bytes), 'typed arrays cannot be frozen and are skipped');
});

t.test('readJsonConfigFile', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));

  const good = join(dir, 'good.json');
  writeFileSync(good, '\uFEFF{ "gatewayId": "gw1" }');
  t.same(readJsonConfigFile(good), { gatewayId: 'gw1' }, 'parses, ignoring a byte-order mark');

  const missingPath = join(dir, 'missing.json');
  const missing = thrown(() => readJsonConfigFile(missingPath));
  t.equal(missing.code, 'CONFIG_UNREADABLE');
  t.equal(missing.message, `cannot read config file ${missingPath}: no such file`);
  t.equal((missing.cause as NodeJS.ErrnoException).code, 'ENOENT');
  t.same(missing.details, { path: missingPath });

  const bad = join(dir, 'bad.json');
  writeFileSync(bad, '{\n  "gatewayId": "gw1",\n  "uplink": { "port": 56 71 }\n}\n');
  const badJson = thrown(() => readJsonConfigFile(bad));
  t.ok(isFieldlinkError(badJson, 'CONFIG_UNREADABLE'));
  t.match(badJson.message, `config file ${bad} is not valid JSON (line 3, column 26)`);
  t.same(badJson.details, { path: bad, line: 3, column: 26 });
  t.ok(badJson.cause instanceof SyntaxError);

  const truncated = join(dir, 'truncated.json');
  writeFileSync(truncated, '{\n  "a": 1,\n');
  t.match(thrown(() => readJsonConfigFile(truncated)).details, { line: 3, column: 1 });
});
