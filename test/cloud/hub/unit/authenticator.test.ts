import t from 'tap';
import { Authenticator, canActAsDevice, requireRight, standardPolicies, type AccessPolicy, type DeviceKeys, type Principal, type Right } from '../../../../cloud/hub/access.js';
import { HubError } from '../../../../cloud/hub/hub-errors.js';
import { computeSignature, mintSasToken } from '../../../../cloud/hub/sas.js';
import { FakeClock, throwsHub } from './temp-db.js';

const HOST = 'localhost';
const NOW = Date.UTC(2030, 0, 1);
const SE = NOW / 1000 + 3600;

const key = (n: number): string => Buffer.alloc(32, n).toString('base64');

const policies: AccessPolicy[] = standardPolicies.map((p, i) => ({ ...p, primaryKey: key(0x10 + i), secondaryKey: key(0x20 + i) }));
const policy = (name: string): AccessPolicy => {
  const p = policies.find((x) => x.keyName === name);
  if (!p) throw new Error(`no policy ${name}`);
  return p;
};

const devices = new Map<string, DeviceKeys>([
  ['d1', { primaryKey: key(1), secondaryKey: key(2), status: 'enabled' }],
  ['off', { primaryKey: key(3), secondaryKey: key(4), status: 'disabled' }],
  ['dev:1+x', { primaryKey: key(5), secondaryKey: key(6), status: 'enabled' }],
]);

function setup(): { auth: Authenticator; clock: FakeClock; lookups: string[] } {
  const clock = new FakeClock(NOW);
  const lookups: string[] = [];
  const auth = new Authenticator(HOST, policies, (id) => {
    lookups.push(id);
    return devices.get(id);
  }, clock.now);
  return { auth, clock, lookups };
}

const deviceToken = (id: string, k = devices.get(id)?.primaryKey ?? key(99), se = SE, host = HOST): string =>
  mintSasToken(`${host}/devices/${id}`, k, undefined, se);

t.test('a device token yields a device principal', async (t) => {
  const { auth, lookups } = setup();
  t.strictSame(auth.authenticate(deviceToken('d1')), { kind: 'device', deviceId: 'd1', expiresAt: SE * 1000 });
  t.strictSame(lookups, ['d1']);
  t.strictSame(auth.authenticate(deviceToken('d1', key(2))), { kind: 'device', deviceId: 'd1', expiresAt: SE * 1000 }, 'secondary key');
});

t.test('a device id URL-encoding changes is looked up decoded', async (t) => {
  const { auth, lookups } = setup();
  t.strictSame(auth.authenticate(deviceToken('dev:1+x')), { kind: 'device', deviceId: 'dev:1+x', expiresAt: SE * 1000 });
  t.strictSame(lookups, ['dev:1+x']);
});

t.test('expiry: se * 1000 <= now is refused', async (t) => {
  const { auth, clock } = setup();
  const token = deviceToken('d1');
  clock.ms = SE * 1000 - 1;
  t.equal(auth.authenticate(token).kind, 'device', 'one ms before expiry');
  clock.ms = SE * 1000;
  throwsHub(t, () => auth.authenticate(token), 'Unauthorized',
    `token expired at ${new Date(SE * 1000).toISOString()} (hub time ${new Date(SE * 1000).toISOString()})`);
  clock.ms = SE * 1000 + 60_000;
  throwsHub(t, () => auth.authenticate(token), 'Unauthorized', /^token expired at /);
});

t.test('audience', async (t) => {
  const { auth } = setup();
  throwsHub(t, () => auth.authenticate(deviceToken('d1', key(1), SE, 'other.example')), 'Unauthorized',
    'token audience "other.example/devices/d1" is not this hub (localhost)');
  t.equal(auth.authenticate(deviceToken('d1', key(1), SE, 'LocalHost')).kind, 'device', 'host names compare case-insensitively');
  t.strictSame(auth.authenticate(deviceToken('d1', key(1), SE, 'localhost:5673')), { kind: 'device', deviceId: 'd1', expiresAt: SE * 1000 },
    'a port in the audience is accepted');
  throwsHub(t, () => auth.authenticate(deviceToken('d1', key(1), SE, 'localhost:abc')), 'Unauthorized', /is not this hub/, 'a non-numeric port is not a port');
  throwsHub(t, () => auth.authenticate(mintSasToken('localhost/devices/d1/modules/m', key(1), undefined, SE)), 'Unauthorized',
    'token resource "localhost/devices/d1/modules/m" is neither the hub nor a device');
  throwsHub(t, () => auth.authenticate(mintSasToken('localhost/devices/', key(1), undefined, SE)), 'Unauthorized',
    'token resource "localhost/devices/" is neither the hub nor a device');
  t.equal(auth.authenticate(mintSasToken('localhost/devices/d1/', key(1), undefined, SE)).kind, 'device', 'a trailing slash is allowed');
});

t.test('policy tokens', async (t) => {
  const { auth, lookups } = setup();
  const owner = policy('iothubowner');
  const p = auth.authenticate(mintSasToken(HOST, owner.primaryKey, 'iothubowner', SE));
  t.equal(p.kind, 'policy');
  if (p.kind !== 'policy') return;
  t.equal(p.keyName, 'iothubowner');
  t.equal(p.expiresAt, SE * 1000);
  t.equal(p.deviceId, undefined);
  t.equal('deviceId' in p, false, 'no deviceId key for a hub-scoped token');
  t.strictSame([...p.rights].sort(), ['DeviceConnect', 'RegistryRead', 'RegistryWrite', 'ServiceConnect']);
  t.equal(auth.authenticate(mintSasToken(HOST, owner.secondaryKey, 'iothubowner', SE)).kind, 'policy', 'secondary key');
  const scoped = auth.authenticate(mintSasToken(`${HOST}/devices/d1`, policy('device').primaryKey, 'device', SE));
  t.equal(scoped.kind === 'policy' ? scoped.deviceId : 'wrong kind', 'd1', 'a policy token scoped to a device');
  t.strictSame(lookups, [], 'policy tokens never look up device keys');
  throwsHub(t, () => auth.authenticate(mintSasToken(HOST, owner.primaryKey, 'nope', SE)), 'Unauthorized', 'unknown shared access policy "nope"');
  throwsHub(t, () => auth.authenticate(mintSasToken(HOST, owner.primaryKey, 'service', SE)), 'Unauthorized',
    'signature does not match policy "service"');
  throwsHub(t, () => auth.authenticate(mintSasToken(HOST, owner.primaryKey, 'iothubowner', NOW / 1000)), 'Unauthorized', /expired/,
    'expiry is checked for policy tokens too');
});

t.test('device refusals', async (t) => {
  const { auth } = setup();
  throwsHub(t, () => auth.authenticate(deviceToken('off')), 'Unauthorized', 'device "off" is disabled');
  throwsHub(t, () => auth.authenticate(deviceToken('off', key(1))), 'Unauthorized', 'signature does not match the keys of device "off"',
    'a disabled device with a wrong key is reported as a key mismatch, revealing nothing');
  throwsHub(t, () => auth.authenticate(deviceToken('ghost')), 'Unauthorized', 'device "ghost" is not registered');
  throwsHub(t, () => auth.authenticate(deviceToken('d1', key(3))), 'Unauthorized', 'signature does not match the keys of device "d1"');
  throwsHub(t, () => auth.authenticate(mintSasToken(HOST, key(1), undefined, SE)), 'Unauthorized',
    'a token without skn must name a device (sr=<host>/devices/<id>)');
});

t.test('malformed or missing tokens', async (t) => {
  const { auth } = setup();
  throwsHub(t, () => auth.authenticate(undefined), 'Unauthorized', 'no SharedAccessSignature supplied');
  throwsHub(t, () => auth.authenticate(''), 'Unauthorized', 'no SharedAccessSignature supplied');
  throwsHub(t, () => auth.authenticate('Bearer x'), 'Unauthorized', 'malformed token: token is not a SharedAccessSignature');
  const sig = encodeURIComponent(computeSignature(key(1), 'localhost%2Fdevices%2Fd1', SE));
  throwsHub(t, () => auth.authenticate(`SharedAccessSignature sr=localhost%2Fdevices%2Fd1&sig=${sig}&se=later`), 'Unauthorized',
    'malformed token: token expiry (se) is not a number');
  const err = throwsHub(t, () => auth.authenticate('Bearer x'), 'Unauthorized', /malformed/);
  t.equal(err?.status, 401);
  t.equal(err?.amqpCondition, 'amqp:unauthorized-access');
});

const ALL_RIGHTS: Right[] = ['RegistryRead', 'RegistryWrite', 'ServiceConnect', 'DeviceConnect'];

// What IoT Hub documents for its built-in policies (docs "Control access to IoT Hub").
const expectedRights: Record<string, Right[]> = {
  iothubowner: ['RegistryRead', 'RegistryWrite', 'ServiceConnect', 'DeviceConnect'],
  service: ['ServiceConnect'],
  device: ['DeviceConnect'],
  registryRead: ['RegistryRead'],
  registryReadWrite: ['RegistryRead', 'RegistryWrite'],
};

t.test('standardPolicies are the five built-in IoT Hub policies', async (t) => {
  t.strictSame(standardPolicies.map((p) => p.keyName), Object.keys(expectedRights));
  for (const p of standardPolicies) t.strictSame([...p.rights].sort(), [...(expectedRights[p.keyName] ?? [])].sort(), p.keyName);
});

t.test('requireRight and canActAsDevice for each standard policy', async (t) => {
  const { auth } = setup();
  for (const p of policies) {
    const hubWide = auth.authenticate(mintSasToken(HOST, p.primaryKey, p.keyName, SE));
    const scoped = auth.authenticate(mintSasToken(`${HOST}/devices/d1`, p.primaryKey, p.keyName, SE));
    const want = expectedRights[p.keyName] ?? [];
    for (const right of ALL_RIGHTS) {
      if (want.includes(right)) {
        t.doesNotThrow(() => requireRight(hubWide, right), `${p.keyName} has ${right}`);
      } else {
        throwsHub(t, () => requireRight(hubWide, right), 'Unauthorized', `policy "${p.keyName}" lacks the ${right} permission`);
      }
    }
    const connects = want.includes('DeviceConnect');
    t.equal(canActAsDevice(hubWide, 'd1'), connects, `${p.keyName} hub-wide acts as d1`);
    t.equal(canActAsDevice(hubWide, 'anyone'), connects, `${p.keyName} hub-wide acts as any device`);
    t.equal(canActAsDevice(scoped, 'd1'), connects, `${p.keyName} scoped to d1 acts as d1`);
    t.equal(canActAsDevice(scoped, 'd2'), false, `${p.keyName} scoped to d1 never acts as d2`);
  }
});

t.test('requireRight with several rights needs any one of them', async (t) => {
  const { auth } = setup();
  const reader = auth.authenticate(mintSasToken(HOST, policy('registryRead').primaryKey, 'registryRead', SE));
  t.doesNotThrow(() => requireRight(reader, 'RegistryRead', 'RegistryWrite'));
  throwsHub(t, () => requireRight(reader, 'RegistryWrite', 'ServiceConnect'), 'Unauthorized',
    'policy "registryRead" lacks the RegistryWrite or ServiceConnect permission');
});

t.test('a device principal has no policy rights and acts only as itself', async (t) => {
  const device: Principal = { kind: 'device', deviceId: 'd1', expiresAt: SE * 1000 };
  for (const right of ALL_RIGHTS) {
    throwsHub(t, () => requireRight(device, right), 'Unauthorized', `device "d1" lacks the ${right} permission`);
  }
  t.equal(canActAsDevice(device, 'd1'), true);
  t.equal(canActAsDevice(device, 'd2'), false);
  t.equal(canActAsDevice(device, 'D1'), false, 'device ids are case-sensitive');
  t.ok(new HubError('Unauthorized', 'x') instanceof Error);
});
