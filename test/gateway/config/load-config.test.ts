import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import t, { type Test } from 'tap';
import { isFieldlinkError, type FieldlinkError } from '../../../common/errors.js';
import { applyDesiredPatch, initialReconcileState, reconcileDesiredDocument } from '../../../gateway/src/domain/twin-reconcile.js';
import { gatewayConfigSchema, gatewaySettingsSchema } from '../../../gateway/src/contract/gateway-config.js';
import { describeConfig, loadGatewayConfig, parseGatewayConfig, validateSettings } from '../../../gateway/src/config/load-config.js';

// Compiled to dist/test/gateway/config/, four levels below the project root.
const EXAMPLE = new URL('../../../../hardware/gateway.example.json', import.meta.url);
const SECRET = 'HostName=hub.example.net;DeviceId=gw-1;SharedAccessKey=c2VjcmV0c2VjcmV0';
/** The examples' gateway id is fieldlink-gw-01. */
const EXAMPLE_SECRET = 'HostName=hub.example.net;DeviceId=fieldlink-gw-01;SharedAccessKey=c2VjcmV0c2VjcmV0';

function problemsOf(t: Test, fn: () => unknown): { path: string; message: string }[] {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  t.ok(isFieldlinkError(caught, 'CONFIG_INVALID'), 'throws CONFIG_INVALID');
  return ((caught as FieldlinkError | undefined)?.details?.problems ?? []) as { path: string; message: string }[];
}

const minimal = { gatewayId: 'gw-1', connectionString: SECRET };

t.test('the example config validates and defaults fill what it omits', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-cfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = loadGatewayConfig(EXAMPLE.pathname, { env: { FIELDLINK_CONNECTION_STRING: EXAMPLE_SECRET } });
  t.equal(config.gatewayId, 'fieldlink-gw-01');
  t.equal(config.connectionString, EXAMPLE_SECRET, 'env override wins over connectionStringFile');
  t.equal(config.connectionStringFile, undefined, 'the overridden file is not kept');
  t.same(config.settings.sampling.firmata, { sampleIntervalS: 10, reportIntervalS: 60 }, 'omitted family gets defaults');
  t.same(config.settings.pairings, { 'AA:BB:CC:DD:EE:01': { profile: 'heart_rate', name: 'wearer 1' } });
  const firmata = config.sources.find((s) => s.id === 'board-1');
  t.same(firmata, { id: 'board-1', family: 'firmata', path: '/dev/ttyACM0', baudRate: 57600, thermometers: [{ pin: 'A0', controller: 'TMP36' }] }, 'baudRate and thermometer defaults');
  t.same(config.sources[0], { id: 'wearables', family: 'ble', adapter: 'hci0' });
  t.ok(Object.isFrozen(config) && Object.isFrozen(config.settings.outbox) && Object.isFrozen(config.sources), 'frozen');
});

t.test('YAML configs: the example loads; syntax errors name the line; duplicate keys are refused; schema errors as for JSON', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-cfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const yamlExample = new URL('../../../../hardware/gateway.example.yaml', import.meta.url).pathname;
  const config = loadGatewayConfig(yamlExample, { env: { FIELDLINK_CONNECTION_STRING: EXAMPLE_SECRET } });
  t.equal(config.gatewayId, 'fieldlink-gw-01');
  t.same(config.clockTrust, { source: 'timedate1', pollIntervalS: 30 });
  t.same(config.settings.alarms, { temperature: { min: 5, max: 38.5 } });
  t.equal(config.settings.outbox.ttlS, 604_800, 'defaults fill what YAML omits');

  const bad = join(dir, 'bad.yml');
  writeFileSync(bad, 'gatewayId: gw-1\nsettings:\n  checkInIntervalS: [\n');
  const syntax = (() => {
    try {
      loadGatewayConfig(bad, { env: { FIELDLINK_CONNECTION_STRING: SECRET } });
    } catch (e) {
      return e as FieldlinkError;
    }
    return undefined;
  })();
  t.equal(syntax?.code, 'CONFIG_UNREADABLE');
  t.match(syntax?.message, /not valid YAML \(line \d+, column \d+\)/);

  const dup = join(dir, 'dup.yaml');
  writeFileSync(dup, 'gatewayId: gw-1\ngatewayId: gw-2\n');
  t.throws(() => loadGatewayConfig(dup, { env: { FIELDLINK_CONNECTION_STRING: SECRET } }), /not valid YAML.*[Mm]ap keys must be unique/);

  const wrong = join(dir, 'wrong.yaml');
  writeFileSync(wrong, 'gatewayId: gw-1\nsettings:\n  checkInIntervalS: soon\n');
  t.same(
    problemsOf(t, () => loadGatewayConfig(wrong, { env: { FIELDLINK_CONNECTION_STRING: SECRET } })).map((p) => p.path),
    ['/settings/checkInIntervalS'],
  );
});

t.test("the gateway id must be the connection string's device id", async (t) => {
  t.same(
    problemsOf(t, () => parseGatewayConfig({ ...minimal, gatewayId: 'gw-2' }, 'test', '/etc', { env: {} })),
    [{ path: '/gatewayId', message: "must be the connection string's DeviceId (gw-1): the gateway id names its messages and its twin" }],
  );
});

t.test('defaults of a minimal config', async (t) => {
  const config = parseGatewayConfig(minimal, 'test', '/etc/fieldlink', { env: {} });
  t.equal(config.dataDir, '/var/lib/fieldlink');
  t.same(config.sources, []);
  t.same(config.settings, {
    sampling: {
      ble: { sampleIntervalS: 10, reportIntervalS: 60 },
      serial: { sampleIntervalS: 30, reportIntervalS: 60 },
      firmata: { sampleIntervalS: 10, reportIntervalS: 60 },
    },
    checkInIntervalS: 3600,
    onlineWindowS: 120,
    outbox: { maxBytes: 67108864, minFreeBytes: 104857600, ttlS: 604800, commitIntervalMs: 250, highWatermarkBytes: 8388608 },
    packer: { budgetUnits: 16, encoding: 'json+gzip' },
    alarms: {},
    pairings: {},
  });
  const relative = parseGatewayConfig({ ...minimal, dataDir: 'data' }, 'test', '/etc/fieldlink', { env: { FIELDLINK_DATA_DIR: undefined } });
  t.equal(relative.dataDir, '/etc/fieldlink/data', 'relative paths resolve against the config file directory');
  const env = parseGatewayConfig(minimal, 'test', '/etc/fieldlink', { env: { FIELDLINK_DATA_DIR: '/srv/fl' } });
  t.equal(env.dataDir, '/srv/fl');
});

t.test('every bad field is reported with its path in one error', async (t) => {
  const problems = problemsOf(t, () =>
    parseGatewayConfig(
      {
        gatewayId: 'bad id with spaces',
        connectionString: SECRET,
        colour: 'red',
        sources: [{ id: 'thermo', family: 'serial' }, { id: 'x', family: 'zigbee' }],
        settings: {
          sampling: { ble: { sampleIntervalS: 0 } },
          checkInIntervalS: '3600',
          outbox: { commitIntervalMs: 5 },
          packer: { budgetUnits: 61, encoding: 'gzip' },
          alarms: { 'Heart Rate': { min: 1 }, temperature: {} },
          pairings: { 'aa:bb:cc:dd:ee:01': { profile: 'heart_rate' }, 'AA:BB:CC:DD:EE:02': { name: 'x' } },
        },
      },
      'test',
      '/',
      { env: {} },
    ),
  );
  const paths = problems.map((p) => p.path);
  for (const path of [
    '/gatewayId',
    '/colour',
    '/sources/0/path',
    '/sources/1/family',
    '/settings/sampling/ble/sampleIntervalS',
    '/settings/checkInIntervalS',
    '/settings/outbox/commitIntervalMs',
    '/settings/packer/budgetUnits',
    '/settings/packer/encoding',
    '/settings/alarms/temperature',
    '/settings/pairings/AA:BB:CC:DD:EE:02/profile',
  ]) {
    t.ok(paths.includes(path), `reports ${path}`);
  }
  const named = (path: string) => problems.some((p) => p.path === path && /not an allowed name/.test(p.message));
  t.ok(named('/settings/alarms/Heart Rate'), 'bad alarm kind reported by name');
  t.ok(named('/settings/pairings/aa:bb:cc:dd:ee:01'), 'lower-case address reported by name');
});

t.test('pairings must be an object keyed by address; an array is rejected clearly', async (t) => {
  const problems = problemsOf(t, () =>
    parseGatewayConfig({ ...minimal, settings: { pairings: [{ address: 'AA:BB:CC:DD:EE:01', profile: 'heart_rate' }] } }, 'test', '/', { env: {} }),
  );
  t.same(problems.length, 1);
  t.equal(problems[0]?.path, '/settings/pairings');
  t.match(problems[0]?.message, /object keyed by device address.*not an array/);
  const desired = validateSettings({ pairings: [] });
  t.notOk(desired.ok);
  if (!desired.ok) t.match(desired.problems, [{ path: '/pairings', message: /keyed by device address/ }], 'same message for desired properties');
});

t.test('cross-field rules', async (t) => {
  const problems = problemsOf(t, () =>
    parseGatewayConfig(
      { ...minimal, settings: { alarms: { heart_rate: { min: 200, max: 100 } }, outbox: { maxBytes: 2000000, highWatermarkBytes: 3000000 }, sampling: { serial: { sampleIntervalS: 60, reportIntervalS: 30 } } } },
      'test',
      '/',
      { env: {} },
    ),
  );
  t.same(problems.map((p) => p.path).sort(), ['/settings/alarms/heart_rate/min', '/settings/outbox/highWatermarkBytes', '/settings/sampling/serial/reportIntervalS']);
});

t.test('connection string: required, from a file, never shown', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-cfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const missing = problemsOf(t, () => parseGatewayConfig({ gatewayId: 'gw-1' }, 'test', dir, { env: {} }));
  t.match(missing, [{ path: '/connectionString', message: /FIELDLINK_CONNECTION_STRING/ }]);
  const both = problemsOf(t, () => parseGatewayConfig({ ...minimal, connectionStringFile: 'cs' }, 'test', dir, { env: {} }));
  t.ok(both.length > 0, 'connectionString and connectionStringFile together are rejected');

  writeFileSync(join(dir, 'cs'), `${SECRET}\n`, { mode: 0o600 });
  writeFileSync(join(dir, 'gateway.json'), JSON.stringify({ gatewayId: 'gw-1', connectionStringFile: 'cs', dataDir: 'data' }));
  const config = loadGatewayConfig(join(dir, 'gateway.json'), { env: {} });
  t.equal(config.connectionString, SECRET, 'read from the file, relative to the config file');
  t.equal(config.dataDir, join(dir, 'data'));
  t.notMatch(JSON.stringify(config), /SharedAccessKey/, 'JSON of the config leaves the secret out');
  t.notMatch(JSON.stringify(describeConfig(config)), /c2VjcmV0/, 'describeConfig leaves the secret out');
  t.match(describeConfig(config), { connectionString: 'HostName=hub.example.net;[redacted]', gatewayId: 'gw-1' });

  let caught: unknown;
  try {
    parseGatewayConfig({ gatewayId: 'gw 1', connectionString: SECRET, dataDir: 5 }, 'test', dir, { env: {} });
  } catch (e) {
    caught = e;
  }
  t.ok(isFieldlinkError(caught, 'CONFIG_INVALID'));
  t.notMatch(String((caught as Error).message), /c2VjcmV0/, 'errors do not quote the secret');

  let unreadable: unknown;
  try {
    parseGatewayConfig({ gatewayId: 'gw-1', connectionStringFile: 'nope' }, 'test', dir, { env: {} });
  } catch (e) {
    unreadable = e;
  }
  t.ok(isFieldlinkError(unreadable, 'CONFIG_UNREADABLE'));
  t.match(String((unreadable as Error).message), /no such file/);
});

t.test('desired properties reconcile against the gateway schema', async (t) => {
  const config = parseGatewayConfig({ ...minimal, settings: { pairings: { 'AA:BB:CC:DD:EE:01': { profile: 'heart_rate' } } } }, 'test', '/', { env: {} });
  const boot = initialReconcileState(config.settings, undefined, validateSettings);
  const r1 = applyDesiredPatch(boot, { $version: 2, packer: { encoding: 'json' }, alarms: { heart_rate: { max: 170 } }, pairings: { 'AA:BB:CC:DD:EE:02': { profile: 'health_thermometer' } } }, validateSettings);
  t.equal(r1.outcome, 'applied');
  t.same(r1.state.effective.packer, { budgetUnits: 16, encoding: 'json' });
  t.same(Object.keys(r1.state.effective.pairings).sort(), ['AA:BB:CC:DD:EE:01', 'AA:BB:CC:DD:EE:02']);
  t.ok(Object.isFrozen(r1.state.effective), 'effective settings are frozen');

  const r2 = applyDesiredPatch(r1.state, { $version: 3, packer: { budgetUnits: 0 }, pairings: ['AA:BB:CC:DD:EE:03'], checkInIntervalS: 5, alarms: { heart_rate: { min: 200 } } }, validateSettings);
  t.equal(r2.outcome, 'rejected');
  t.same(r2.state.effective, r1.state.effective);
  t.same(
    r2.ack.config.errors.map((e) => e.path).sort(),
    ['/checkInIntervalS', '/packer/budgetUnits', '/pairings'],
    'schema problems, with paths relative to the desired properties',
  );
  t.match(r2.ack.config.errors.find((e) => e.path === '/pairings')?.message, /keyed by device address/);

  const r3 = applyDesiredPatch(r1.state, { $version: 4, alarms: { heart_rate: { min: 200 } } }, validateSettings);
  t.same(r3.ack.config.errors, [{ path: '/alarms/heart_rate/min', message: 'must not exceed max' }], 'cross-field rules apply to desired too');

  const r4 = reconcileDesiredDocument(r1.state, { $version: 9, $metadata: {}, packer: { encoding: 'json' } }, validateSettings);
  t.same(r4.state.effective.alarms, {}, 'alarms deleted while asleep revert to the file');
  t.same(Object.keys(r4.state.effective.pairings), ['AA:BB:CC:DD:EE:01'], 'pairings deleted while asleep revert to the file');
});

t.test('the schemas also compile under draft 2020-12 (cloud/ may use Ajv2020)', async (t) => {
  const ajv = new Ajv2020({ strict: true, allErrors: true, useDefaults: true, allowUnionTypes: true });
  const settings = ajv.compile(gatewaySettingsSchema);
  const file = ajv.compile(gatewayConfigSchema);
  t.ok(settings({ pairings: { 'AA:BB:CC:DD:EE:01': { profile: 'heart_rate' } } }));
  t.notOk(settings({ pairings: [] }));
  t.ok(file(JSON.parse(readFileSync(EXAMPLE, 'utf8'))));
});
