import t from 'tap';
import { DeviceRegistry, etagOf, newKey } from '../../../../cloud/hub/registry.js';
import type { JsonObject } from '../../../../cloud/hub/twin-patch.js';
import { FakeClock, fileMode, tempDb, throwsHub, type Test } from './temp-db.js';

const T0 = Date.UTC(2030, 0, 1);

function setup(t: Test): { reg: DeviceRegistry; clock: FakeClock; file: string } {
  const { db, file } = tempDb(t);
  const clock = new FakeClock(T0);
  return { reg: new DeviceRegistry(db, clock.now), clock, file };
}

const iso = (ms: number): string => new Date(ms).toISOString();
const KEY16 = Buffer.alloc(16, 7).toString('base64');
const KEY64 = Buffer.alloc(64, 8).toString('base64');

t.test('the database file is owner-only', async (t) => {
  const { file } = setup(t);
  t.equal(fileMode(file), 0o600);
});

t.test('etagOf is base64 of the big-endian 64-bit version', async (t) => {
  t.equal(etagOf(1), 'AAAAAAAAAAE=');
  t.equal(etagOf(256), 'AAAAAAAAAQA=');
  t.not(etagOf(2), etagOf(1));
  t.equal(Buffer.from(newKey(), 'base64').length, 32);
});

t.test('create', async (t) => {
  const { reg, clock } = setup(t);
  const d = reg.create('dev-1');
  t.equal(d.deviceId, 'dev-1');
  t.equal(d.version, 1);
  t.equal(d.status, 'enabled');
  t.equal(d.statusReason, null);
  t.equal(d.createdAt, T0);
  t.equal(d.statusUpdatedAt, T0);
  t.equal(d.lastActivityAt, null);
  t.equal(d.connectionStateUpdatedAt, null);
  t.match(d.generationId, /^6\d{1,17}$/);
  t.equal(Buffer.from(d.primaryKey, 'base64').length, 32);
  t.equal(Buffer.from(d.secondaryKey, 'base64').length, 32);
  t.not(d.primaryKey, d.secondaryKey);
  t.strictSame(reg.get('dev-1'), d);
  t.equal(reg.count(), 1);
  clock.advance(5);
  const twin = reg.getTwin('dev-1');
  t.strictSame(twin, {
    deviceId: 'dev-1', version: 1, tags: {}, desired: {}, reported: {}, desiredVersion: 1, reportedVersion: 1,
    desiredMeta: { $lastUpdated: iso(T0) }, reportedMeta: { $lastUpdated: iso(T0) },
  });
  const off = reg.create('off', { status: 'disabled', statusReason: 'maintenance' });
  t.equal(off.status, 'disabled');
  t.equal(off.statusReason, 'maintenance');
  t.strictSame(reg.list().map((x) => x.deviceId), ['dev-1', 'off']);
  throwsHub(t, () => reg.create('dev-1'), 'DeviceAlreadyExists', "A device with ID 'dev-1' is already registered");
  t.equal(reg.count(), 2, 'the duplicate left nothing behind');
  t.equal(reg.get('dev-1')?.primaryKey, d.primaryKey, 'the duplicate did not overwrite keys');
  throwsHub(t, () => reg.create('dev', { status: 'on' }), 'ArgumentInvalid', 'status must be "enabled" or "disabled", not "on"');
  throwsHub(t, () => reg.create('dev', { statusReason: 'r'.repeat(129) }), 'ArgumentInvalid', 'statusReason must be a string of at most 128 characters');
  t.equal(reg.get('dev'), undefined, 'refused creates leave nothing behind');
  t.equal(reg.require('dev-1').deviceId, 'dev-1');
  throwsHub(t, () => reg.require('nope'), 'DeviceNotFound', 'Device nope not registered');
  throwsHub(t, () => reg.getTwin('nope'), 'DeviceNotFound', 'Device nope not registered');
});

t.test('device id rule', async (t) => {
  const { reg } = setup(t);
  const rule = "1-128 ASCII letters, digits or -.+%_#*?!(),:=@$'";
  for (const bad of ['', 'has space', 'slash/no', 'ünï', 'semi;colon', 'x'.repeat(129), 'a&b', 'tab\t']) {
    throwsHub(t, () => reg.create(bad), 'ArgumentInvalid', `Device id "${bad.slice(0, 140)}" is invalid: ${rule}`, `refuses ${JSON.stringify(bad)}`);
  }
  for (const good of ["-.+%_#*?!(),:=@$'", 'x'.repeat(128), 'A9']) {
    t.equal(reg.create(good).deviceId, good, `accepts ${good.length > 20 ? `${good.length} chars` : good}`);
  }
});

t.test('update with If-Match', async (t) => {
  const { reg, clock } = setup(t);
  const d = reg.create('d');
  clock.advance(1000);
  const u1 = reg.update('d', { statusReason: 'why' }, '*');
  t.equal(u1.version, 2);
  t.equal(u1.statusReason, 'why');
  t.equal(u1.status, 'enabled');
  t.equal(u1.statusUpdatedAt, T0, 'status unchanged: its timestamp too');
  t.equal(u1.primaryKey, d.primaryKey, 'keys left out are kept');
  t.equal(u1.secondaryKey, d.secondaryKey);
  t.equal(u1.generationId, d.generationId);
  clock.advance(1000);
  const u2 = reg.update('d', { status: 'disabled' }, etagOf(2));
  t.equal(u2.version, 3);
  t.equal(u2.status, 'disabled');
  t.equal(u2.statusReason, 'why', 'an absent reason is kept');
  t.equal(u2.statusUpdatedAt, T0 + 2000);
  t.equal(reg.update('d', {}, `"${etagOf(3)}"`).version, 4, 'a quoted etag');
  t.equal(reg.update('d', {}, `W/"${etagOf(4)}"`).version, 5, 'a weak etag');
  throwsHub(t, () => reg.update('d', { status: 'enabled' }, etagOf(1)), 'PreconditionFailed',
    `Precondition failed: device d has etag "${etagOf(5)}", the request carried "${etagOf(1)}"`);
  t.equal(reg.get('d')?.status, 'disabled', 'the refused update changed nothing');
  t.equal(reg.get('d')?.version, 5);
  t.equal(reg.update('d', { statusReason: null }, '*').statusReason, null, 'null clears the reason');
  throwsHub(t, () => reg.update('ghost', {}, '*'), 'DeviceNotFound', 'Device ghost not registered');
});

t.test('keys: supplied ones kept, bad ones refused', async (t) => {
  const { reg } = setup(t);
  const d = reg.create('k', { authentication: { type: 'sas', symmetricKey: { primaryKey: KEY16, secondaryKey: KEY64 } } });
  t.equal(d.primaryKey, KEY16);
  t.equal(d.secondaryKey, KEY64);
  const half = reg.create('half', { authentication: { symmetricKey: { primaryKey: KEY16 } } });
  t.equal(half.primaryKey, KEY16);
  t.equal(Buffer.from(half.secondaryKey, 'base64').length, 32, 'a missing key is generated');
  const u = reg.update('k', { authentication: { symmetricKey: { primaryKey: '', secondaryKey: KEY16 } } }, '*');
  t.equal(u.primaryKey, KEY16, 'an empty key keeps the current one');
  t.equal(u.secondaryKey, KEY16);
  const notBase64 = 'not base64 at all!!!!!!!!!!!!!!!';
  throwsHub(t, () => reg.create('b1', { authentication: { symmetricKey: { primaryKey: notBase64 } } }), 'ArgumentInvalid', 'primaryKey must be base64 of 16 to 64 bytes');
  throwsHub(t, () => reg.create('b2', { authentication: { symmetricKey: { secondaryKey: Buffer.alloc(15).toString('base64') } } }), 'ArgumentInvalid',
    'secondaryKey must be base64 of 16 to 64 bytes', '15 bytes is too short');
  throwsHub(t, () => reg.create('b3', { authentication: { symmetricKey: { primaryKey: Buffer.alloc(65).toString('base64') } } }), 'ArgumentInvalid',
    'primaryKey must be base64 of 16 to 64 bytes', '65 bytes is too long');
  throwsHub(t, () => reg.create('b4', { authentication: { symmetricKey: { primaryKey: 42 } } }), 'ArgumentInvalid', 'primaryKey must be a base64 string');
  throwsHub(t, () => reg.create('b5', { authentication: { type: 'selfSigned' } }), 'ArgumentInvalid',
    'authentication type "selfSigned" is not supported by the local hub (only "sas")');
  throwsHub(t, () => reg.create('b6', { authentication: 'sas' }), 'ArgumentInvalid', 'authentication must be an object');
  throwsHub(t, () => reg.update('k', { authentication: { symmetricKey: { primaryKey: 'abc' } } }, '*'), 'ArgumentInvalid',
    'primaryKey must be base64 of 16 to 64 bytes');
  t.equal(reg.get('k')?.primaryKey, KEY16, 'the refused update kept the key');
  t.equal(reg.get('b1'), undefined);
});

t.test('status() follows create, update and delete at once', async (t) => {
  const { reg } = setup(t);
  t.equal(reg.status('s'), undefined, 'not registered (and now cached as such)');
  reg.create('s');
  t.equal(reg.status('s'), 'enabled');
  reg.update('s', { status: 'disabled' }, '*');
  t.equal(reg.status('s'), 'disabled');
  t.throws(() => reg.update('s', { status: 'enabled' }, etagOf(1)));
  t.equal(reg.status('s'), 'disabled', 'a refused update leaves the status');
  reg.update('s', { status: 'enabled' }, etagOf(2));
  t.equal(reg.status('s'), 'enabled');
  throwsHub(t, () => reg.delete('s', etagOf(1)), 'PreconditionFailed', /device s has etag/);
  t.equal(reg.status('s'), 'enabled', 'a refused delete leaves the device');
  reg.delete('s', etagOf(3));
  t.equal(reg.status('s'), undefined);
  t.equal(reg.get('s'), undefined);
  throwsHub(t, () => reg.getTwin('s'), 'DeviceNotFound', 'Device s not registered', 'the twin went with the device');
  reg.create('s', { status: 'disabled' });
  t.equal(reg.status('s'), 'disabled', 're-created');
  throwsHub(t, () => reg.delete('ghost', '*'), 'DeviceNotFound', 'Device ghost not registered');
});

t.test('twin versions', async (t) => {
  const { reg, clock } = setup(t);
  reg.create('tw');
  const pushed: [string, JsonObject][] = [];
  const off = reg.onDesiredPatch((id, patch) => pushed.push([id, patch]));

  clock.advance(1000);
  let tw = reg.patchTwin('tw', { tags: { site: 'a' } }, '*');
  t.strictSame([tw.version, tw.desiredVersion, tw.reportedVersion], [2, 1, 1], 'tags only: desired $version unchanged');
  t.strictSame(tw.tags, { site: 'a' });
  t.strictSame(pushed, [], 'no desired push for a tags patch');

  tw = reg.patchTwin('tw', { properties: { desired: { rate: 5, cfg: { a: 1, b: 2 } } } }, etagOf(2));
  t.strictSame([tw.version, tw.desiredVersion, tw.reportedVersion], [3, 2, 1]);
  t.strictSame(tw.desired, { rate: 5, cfg: { a: 1, b: 2 } });
  const stamp = { $lastUpdated: iso(T0 + 1000), $lastUpdatedVersion: 2 };
  t.strictSame(tw.desiredMeta, { ...stamp, rate: stamp, cfg: { ...stamp, a: stamp, b: stamp } });
  t.strictSame(pushed, [['tw', { rate: 5, cfg: { a: 1, b: 2 }, $version: 2 }]]);

  tw = reg.patchTwin('tw', { properties: { desired: { cfg: { a: null }, $version: 99, $metadata: {} } } as JsonObject }, '*');
  t.strictSame([tw.version, tw.desiredVersion], [4, 3], '$version and $metadata in the patch are ignored');
  t.strictSame(tw.desired, { rate: 5, cfg: { b: 2 } });
  t.strictSame(pushed[1], ['tw', { cfg: { a: null }, $version: 3 }], 'the device gets the patch itself, nulls included');

  tw = reg.patchTwin('tw', { properties: { desired: {} } }, '*');
  t.strictSame([tw.version, tw.desiredVersion], [5, 3], 'an empty desired patch bumps only the twin version');
  t.equal(pushed.length, 2);

  throwsHub(t, () => reg.patchTwin('tw', { tags: { x: 1 } }, etagOf(1)), 'PreconditionFailed',
    `Precondition failed: twin tw has etag "${etagOf(5)}", the request carried "${etagOf(1)}"`);

  clock.advance(1000);
  tw = reg.patchReported('tw', { fw: '1.0', $version: 42 });
  t.strictSame([tw.version, tw.desiredVersion, tw.reportedVersion], [6, 3, 2], 'reported write: twin and reported versions');
  t.strictSame(tw.reported, { fw: '1.0' });
  t.strictSame(tw.reportedMeta, { $lastUpdated: iso(T0 + 2000), fw: { $lastUpdated: iso(T0 + 2000) } }, 'reported metadata has no $lastUpdatedVersion');
  t.equal(pushed.length, 2, 'reported writes push nothing');

  tw = reg.replaceTwin('tw', { tags: { sole: true }, properties: { desired: { fresh: 1 } } }, etagOf(6));
  t.strictSame([tw.version, tw.desiredVersion, tw.reportedVersion], [7, 4, 2]);
  t.strictSame(tw.tags, { sole: true }, 'replace removes old tags');
  t.strictSame(tw.desired, { fresh: 1 }, 'replace removes old desired keys');
  t.strictSame(tw.reported, { fw: '1.0' }, 'replace leaves reported alone');
  const s4 = { $lastUpdated: iso(T0 + 2000), $lastUpdatedVersion: 4 };
  t.strictSame(tw.desiredMeta, { ...s4, fresh: s4 }, 'metadata of removed keys is gone');
  t.strictSame(pushed[2], ['tw', { fresh: 1, $version: 4 }], 'replace pushes the full document');
  throwsHub(t, () => reg.replaceTwin('tw', {}, etagOf(6)), 'PreconditionFailed', /twin tw has etag/);

  t.strictSame(reg.getTwin('tw'), tw, 'what was returned is what was stored');
  t.strictSame(reg.deviceTwinDocument('tw'), { desired: { fresh: 1, $version: 4 }, reported: { fw: '1.0', $version: 2 } });

  off();
  reg.patchTwin('tw', { properties: { desired: { z: 1 } } }, '*');
  t.equal(pushed.length, 3, 'an unsubscribed listener is not called');
});

t.test('patchTwin refusals', async (t) => {
  const { reg } = setup(t);
  reg.create('p');
  throwsHub(t, () => reg.patchTwin('p', { properties: { reported: { x: 1 } } as JsonObject }, '*'), 'ArgumentInvalid',
    'reported properties can only be written by the device');
  throwsHub(t, () => reg.patchTwin('p', { bogus: 1 } as JsonObject, '*'), 'ArgumentInvalid', 'twin patch has unsupported fields: bogus');
  throwsHub(t, () => reg.patchTwin('p', [] as unknown as JsonObject, '*'), 'ArgumentInvalid', 'twin patch must be a JSON object');
  throwsHub(t, () => reg.patchTwin('p', { properties: 'x' } as unknown as JsonObject, '*'), 'ArgumentInvalid', 'properties must be an object');
  throwsHub(t, () => reg.patchTwin('p', { tags: { 'a.b': 1 } }, '*'), 'ArgumentInvalid', /^tags: invalid property name "a\.b"/);
  throwsHub(t, () => reg.patchTwin('p', { properties: { desired: { s: 'x'.repeat(4097) } } }, '*'), 'ArgumentInvalid',
    'properties.desired.s: string longer than 4096 bytes');
  throwsHub(t, () => reg.patchReported('p', 'nope'), 'ArgumentInvalid', 'properties.reported patch must be a JSON object');
  throwsHub(t, () => reg.patchTwin('ghost', { tags: {} }, '*'), 'DeviceNotFound', 'Device ghost not registered');
  const tw = reg.getTwin('p');
  t.strictSame([tw.version, tw.desiredVersion, tw.reportedVersion], [1, 1, 1], 'nothing refused was written');
  t.equal(tw.reportedMeta.$lastUpdated, tw.desiredMeta.$lastUpdated);
});

/** An object of 4000-character strings whose JSON is exactly `bytes` long. */
function sectionOfSize(bytes: number): JsonObject {
  const obj: JsonObject = {};
  let i = 0;
  while (JSON.stringify(obj).length + 4100 < bytes) obj[`k${i++}`] = 'x'.repeat(4000);
  const base = JSON.stringify({ ...obj, last: '' }).length;
  obj.last = 'y'.repeat(bytes - base);
  if (JSON.stringify(obj).length !== bytes) throw new Error('sectionOfSize miscounted');
  return obj;
}

t.test('32 KB per section', async (t) => {
  const { reg } = setup(t);
  reg.create('big');
  const exactly = sectionOfSize(32768);
  const over = sectionOfSize(32769);
  t.equal(reg.patchTwin('big', { properties: { desired: exactly } }, '*').desiredVersion, 2, '32768 bytes of desired is allowed');
  throwsHub(t, () => reg.patchTwin('big', { properties: { desired: { extra: 1 } } }, '*'), 'ArgumentInvalid',
    'properties.desired would be 32778 bytes; IoT Hub allows 32768', 'a merge that grows past the cap');
  throwsHub(t, () => reg.replaceTwin('big', { properties: { desired: over } }, '*'), 'ArgumentInvalid',
    'properties.desired would be 32769 bytes; IoT Hub allows 32768');
  t.equal(reg.patchReported('big', exactly).reportedVersion, 2, '32768 bytes of reported is allowed');
  throwsHub(t, () => reg.patchReported('big', { more: true }), 'ArgumentInvalid', 'properties.reported would be 32780 bytes; IoT Hub allows 32768');
  const tw = reg.getTwin('big');
  t.strictSame([tw.version, tw.desiredVersion, tw.reportedVersion], [3, 2, 2], 'refused writes rolled back');
  t.strictSame(tw.desired, exactly);
});

t.test('tags are capped at 8 KB (docs "Device twin size")', async (t) => {
  // "IoT Hub enforces an 8-KB size limit on the value of tags, and a 32-KB size limit each on
  // the value of properties/desired and properties/reported." The registry allows 32 KB of tags.
  const { reg } = setup(t);
  reg.create('tags');
  throwsHub(t, () => reg.patchTwin('tags', { tags: sectionOfSize(8193) }, '*'), 'ArgumentInvalid', /^tags would be 8193 bytes; IoT Hub allows 8192$/);
});
