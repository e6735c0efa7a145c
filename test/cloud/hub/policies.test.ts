import t from 'tap';
import common from 'azure-iot-common';
import { registryFor, serviceClientFor, startTestHub, type TestHub } from '../../helpers/hub.js';
import { within } from '../../helpers/deadline.js';
import { RawAmqp } from '../../helpers/raw-amqp.js';
import { mintSasToken } from '../../../cloud/hub/sas.js';

type Policy = 'iothubowner' | 'service' | 'device' | 'registryRead' | 'registryReadWrite';
const POLICIES: Policy[] = ['iothubowner', 'service', 'device', 'registryRead', 'registryReadWrite'];

/** What IoT Hub lets each standard policy do (RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect). */
const allowed: Record<string, readonly Policy[]> = {
  'registry: get device': ['iothubowner', 'registryRead', 'registryReadWrite'],
  'registry: list devices': ['iothubowner', 'registryRead', 'registryReadWrite'],
  'registry: create device': ['iothubowner', 'registryReadWrite'],
  'registry: delete device': ['iothubowner', 'registryReadWrite'],
  'twin: get': ['iothubowner', 'service', 'registryRead', 'registryReadWrite'],
  'twin: update desired': ['iothubowner', 'service', 'registryReadWrite'],
  'local: meter': ['iothubowner', 'service'],
  'amqp: send C2D': ['iothubowner', 'service'],
  'amqp: act as a device': ['iothubowner', 'device'],
};

async function outcome(p: Promise<unknown>): Promise<'allowed' | 'refused'> {
  return within(10_000, 'operation', p).then(
    () => 'allowed' as const,
    (e: unknown) => {
      const status = (e as { response?: { statusCode?: number } }).response?.statusCode;
      const name = (e as Error).constructor.name;
      if (status === 401 || status === 403 || name === 'UnauthorizedError' || /Unauthorized|lacks|not authori/i.test(String((e as Error).message))) return 'refused' as const;
      throw e;
    },
  );
}

function policyKey(th: TestHub, policy: Policy): string {
  const p = th.hub.hub.policies.find((x) => x.keyName === policy);
  if (!p) throw new Error(`no policy ${policy}`);
  return p.primaryKey;
}

const operations: Record<string, (th: TestHub, policy: Policy, n: number) => Promise<unknown>> = {
  'registry: get device': (th, p) => registryFor(th, p).get('target'),
  'registry: list devices': (th, p) => registryFor(th, p).list(),
  'registry: create device': (th, p, n) => registryFor(th, p).create({ deviceId: `created-by-${p}-${n}` }),
  'registry: delete device': async (th, p, n) => {
    th.hub.createDevice(`doomed-${p}-${n}`);
    return registryFor(th, p).delete(`doomed-${p}-${n}`);
  },
  'twin: get': (th, p) => registryFor(th, p).getTwin('target'),
  'twin: update desired': (th, p) => registryFor(th, p).updateTwin('target', { properties: { desired: { by: p } } }, '*'),
  'local: meter': async (th, p) => {
    const { request } = await import('node:https');
    const token = mintSasToken('localhost', policyKey(th, p), p, Math.floor(Date.now() / 1000) + 60);
    const status = await new Promise<number>((resolve, reject) => {
      request({ host: 'localhost', port: th.hub.hub.httpsPort, path: '/_local/meter', ca: th.hub.ca, headers: { authorization: token } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
        .on('error', reject)
        .end();
    });
    if (status !== 200) throw Object.assign(new Error(`status ${status}`), { response: { statusCode: status } });
  },
  'amqp: send C2D': async (th, p) => {
    const client = serviceClientFor(th, p);
    try {
      await client.open();
      await client.send('target', new common.Message('x'));
    } finally {
      await client.close().catch(() => undefined);
    }
  },
  'amqp: act as a device': async (th, p) => {
    const raw = await RawAmqp.connect(th);
    try {
      const token = mintSasToken('localhost/devices/target', policyKey(th, p), p, Math.floor(Date.now() / 1000) + 60);
      const reply = await raw.putToken(token, encodeURIComponent('localhost/devices/target'));
      if (reply.status !== 200) throw new Error(`Unauthorized: ${String(reply.description)}`);
      const { outcome: attach } = await raw.attachSender('/devices/target/messages/events');
      if (!attach.attached) throw new Error(`Unauthorized: ${attach.error?.description ?? ''}`);
    } finally {
      await raw.close();
    }
  },
};

t.test('each standard policy is allowed and refused per IoT Hub permission, on REST and AMQP', async (t) => {
  const th = await startTestHub();
  t.teardown(() => th.cleanup());
  th.hub.createDevice('target');
  let n = 0;
  for (const [name, op] of Object.entries(operations)) {
    t.test(name, async (t) => {
      for (const policy of POLICIES) {
        const expected = allowed[name]?.includes(policy) ? 'allowed' : 'refused';
        t.equal(await outcome(op(th, policy, ++n)), expected, `${policy}: ${expected}`);
      }
    });
  }
});
