import t from 'tap';
import { request } from 'node:https';
import { registryFor, startTestHub, type TestHub } from '../../helpers/hub.js';
import { failure, statusOf, within } from '../../helpers/deadline.js';
import { mintSasToken } from '../../../cloud/hub/sas.js';

/** A raw HTTPS call, for what the SDK never sends (bad JSON, missing api-version, no token). */
function raw(th: TestHub, method: string, path: string, body?: string, token?: string): Promise<{ status: number; json: Record<string, unknown> }> {
  return within(
    5000,
    `${method} ${path}`,
    new Promise((resolve, reject) => {
      const req = request(
        {
          host: 'localhost',
          port: th.hub.hub.httpsPort,
          method,
          path,
          ca: th.hub.ca,
          headers: { ...(token ? { authorization: token } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} }));
        },
      );
      req.on('error', reject);
      req.end(body);
    }),
  );
}

t.test('device registry over HTTPS through azure-iothub', async (t) => {
  const th = await startTestHub();
  t.teardown(() => th.cleanup());
  const registry = registryFor(th);

  t.test('create returns generated keys and the device shows in get and list', async (t) => {
    const { responseBody: created } = await within(5000, 'create', registry.create({ deviceId: 'sensor-1' }));
    const keys = created.authentication?.symmetricKey;
    t.equal(Buffer.from(keys?.primaryKey ?? '', 'base64').length, 32, 'a 256-bit primary key is generated');
    t.not(keys?.primaryKey, keys?.secondaryKey);
    t.equal(created.status, 'enabled');
    t.equal(created.connectionState, 'Disconnected');
    const { responseBody: got } = await within(5000, 'get', registry.get('sensor-1'));
    t.equal(got.generationId, created.generationId);
    t.equal(got.etag, created.etag);
    const { responseBody: list } = await within(5000, 'list', registry.list());
    t.same(list.map((d) => d.deviceId), ['sensor-1']);
  });

  t.test('keys supplied on create are kept', async (t) => {
    const primaryKey = Buffer.alloc(32, 3).toString('base64');
    const secondaryKey = Buffer.alloc(32, 4).toString('base64');
    const { responseBody } = await within(5000, 'create', registry.create({ deviceId: 'keyed', authentication: { symmetricKey: { primaryKey, secondaryKey } } }));
    t.equal(responseBody.authentication?.symmetricKey?.primaryKey, primaryKey);
    t.equal(responseBody.authentication?.symmetricKey?.secondaryKey, secondaryKey);
  });

  t.test('a duplicate create is 409 DeviceAlreadyExistsError', async (t) => {
    const err = await failure(registry.create({ deviceId: 'sensor-1' }));
    t.equal(err.constructor.name, 'DeviceAlreadyExistsError');
    t.equal(statusOf(err), 409);
  });

  t.test('an invalid device id is 400 naming the rule', async (t) => {
    const err = await failure(registry.create({ deviceId: 'bad/id' as string }));
    t.equal(statusOf(err), 400);
  });

  t.test('get of an unknown device is 404 DeviceNotFoundError', async (t) => {
    const err = await failure(registry.get('nobody'));
    t.equal(err.constructor.name, 'DeviceNotFoundError');
  });

  t.test('update changes status and the etag; a stale etag is 412', async (t) => {
    const { responseBody: before } = await within(5000, 'get', registry.get('sensor-1'));
    const { responseBody: after } = await within(5000, 'update', registry.update({ deviceId: 'sensor-1', status: 'disabled', statusReason: 'returned to reseller' }));
    t.equal(after.status, 'disabled');
    t.equal(after.statusReason, 'returned to reseller');
    t.not(after.etag, before.etag);
    t.equal(after.authentication?.symmetricKey?.primaryKey, before.authentication?.symmetricKey?.primaryKey, 'keys left out are kept');
    const token = mintSasToken('localhost', th.hub.hub.policies[0]?.primaryKey ?? '', 'iothubowner', Math.floor(Date.now() / 1000) + 60);
    const stale = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: 'localhost',
          port: th.hub.hub.httpsPort,
          method: 'PUT',
          path: '/devices/sensor-1?api-version=2021-04-12',
          ca: th.hub.ca,
          headers: { authorization: token, 'content-type': 'application/json', 'if-match': `"${String(before.etag)}"` },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ deviceId: 'sensor-1', status: 'enabled' }));
    });
    t.equal(stale, 412);
  });

  t.test('delete removes the device; deleting again is 404', async (t) => {
    await within(5000, 'delete', registry.delete('keyed'));
    const err = await failure(registry.get('keyed'));
    t.equal(err.constructor.name, 'DeviceNotFoundError');
    const again = await failure(registry.delete('keyed'));
    t.equal(statusOf(again), 404);
  });

  t.test('requests the SDK never sends get IoT Hub-shaped 4xx errors', async (t) => {
    const owner = th.hub.hub.policies.find((p) => p.keyName === 'iothubowner');
    const token = mintSasToken('localhost', owner?.primaryKey ?? '', 'iothubowner', Math.floor(Date.now() / 1000) + 60);
    const noVersion = await raw(th, 'GET', '/devices', undefined, token);
    t.equal(noVersion.status, 400);
    t.match(noVersion.json.Message, /^ErrorCode:ArgumentInvalid;.*api-version/);
    const noToken = await raw(th, 'GET', '/devices?api-version=2021-04-12');
    t.equal(noToken.status, 401);
    t.match(noToken.json.Message, /^ErrorCode:Unauthorized;/);
    const badJson = await raw(th, 'PATCH', '/twins/sensor-1?api-version=2021-04-12', '{"tags":', token);
    t.equal(badJson.status, 400);
    t.match(badJson.json.Message, /^ErrorCode:ArgumentInvalid;/);
    const unknownPath = await raw(th, 'GET', '/nothing-here?api-version=2021-04-12', undefined, token);
    t.equal(unknownPath.status, 404);
  });

  t.test('a registryRead policy can read but not write', async (t) => {
    const reader = registryFor(th, 'registryRead');
    await within(5000, 'list', reader.list());
    const err = await failure(reader.create({ deviceId: 'nope' }));
    t.equal(statusOf(err), 401);
    t.match(err.message, /RegistryWrite/);
  });
});
