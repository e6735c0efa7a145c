import t from 'tap';
import { get } from 'node:https';
import common from 'azure-iot-common';
import { createRegistry, createServiceClient, hubTargetFromConnectionString, hubTargetFromFile, serviceConnectionString } from '../../../cloud/hub/service-clients.js';
import { createCa } from '../../../cloud/hub/certs.js';
import { startTestHub } from '../../helpers/hub.js';
import { within } from '../../helpers/deadline.js';

t.test('service clients trust the hub in-process, from hub.json or from a connection string', async (t) => {
  const th = await startTestHub();
  t.teardown(() => th.cleanup());
  const plain = await within(
    5000,
    'plain https',
    new Promise<Error | undefined>((resolve) => {
      get({ host: 'localhost', port: th.hub.hub.httpsPort, path: '/_local/health' }, (res) => {
        res.resume();
        resolve(undefined);
      }).on('error', resolve);
    }),
  );
  t.match(String(plain?.message), /certificate/i, 'this process does not trust the hub by itself: trust comes from the module');

  t.test('from hub.json with a least-privilege policy', async (t) => {
    const registry = createRegistry(hubTargetFromFile(th.hubJson, 'registryReadWrite'));
    const { responseBody } = await within(5000, 'create', registry.create({ deviceId: 'from-file' }));
    t.equal(responseBody.deviceId, 'from-file');
    const client = createServiceClient(hubTargetFromFile(th.hubJson, 'service'));
    t.teardown(() => client.close());
    await within(5000, 'open', client.open());
    await within(5000, 'send', client.send('from-file', new common.Message('hi')));
    t.equal(th.hub.c2d.queuedCount('from-file'), 1);
  });

  t.test('from a plain connection string plus the CA and ports', async (t) => {
    const owner = th.hub.hub.policies.find((p) => p.keyName === 'iothubowner');
    const cs = `HostName=localhost:${th.hub.hub.amqpPort};SharedAccessKeyName=iothubowner;SharedAccessKey=${owner?.primaryKey ?? ''}`;
    const target = hubTargetFromConnectionString(cs, { ca: th.hub.ca, httpsPort: th.hub.hub.httpsPort });
    t.equal(target.hostName, 'localhost');
    t.equal(target.amqpPort, th.hub.hub.amqpPort, 'HostName=host:port moves the AMQP port, as the SDK allows');
    t.equal(serviceConnectionString(target), `HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=${owner?.primaryKey ?? ''}`);
    const { responseBody } = await within(5000, 'list', createRegistry(target).list());
    t.ok(responseBody.some((d) => d.deviceId === 'from-file'));
  });

  t.test('an Azure connection string targets 5671 and 443 with the public trust store', async (t) => {
    const target = hubTargetFromConnectionString('HostName=contoso.azure-devices.net;SharedAccessKeyName=service;SharedAccessKey=a2V5');
    t.same({ ...target }, { hostName: 'contoso.azure-devices.net', amqpPort: 5671, httpsPort: 443, ca: undefined, keyName: 'service', key: 'a2V5' });
  });

  t.test('a malformed connection string is CONNECTION_STRING_INVALID', async (t) => {
    t.throws(() => hubTargetFromConnectionString('HostName=x'), { code: 'CONNECTION_STRING_INVALID' });
    t.throws(() => hubTargetFromFile(th.hubJson, 'nonexistent'), { code: 'CONNECTION_STRING_INVALID', message: /no policy "nonexistent"/ });
  });

  t.test('a hub the client does not trust fails in seconds, not after the SDK\'s 240 s of retries', async (t) => {
    const stranger = createCa('someone else');
    const target = { ...hubTargetFromFile(th.hubJson, 'service'), ca: stranger.certPem };
    const client = createServiceClient(target);
    t.teardown(() => client.close());
    const started = Date.now();
    const err = await within(10_000, 'open untrusted', client.open()).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    t.ok(err, 'open fails');
    t.ok(Date.now() - started < 10_000);
    const registryErr = await within(10_000, 'registry untrusted', createRegistry(target).list()).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    t.match(String(registryErr?.message), /certificate/i, 'the registry call names the certificate problem');
  });
});
