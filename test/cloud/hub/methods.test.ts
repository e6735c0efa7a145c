import t from 'tap';
import { deviceClientFor, serviceClientFor, startTestHub } from '../../helpers/hub.js';
import { within } from '../../helpers/deadline.js';

interface MethodRequest {
  methodName: string;
  payload: unknown;
}
interface MethodResponse {
  send(status: number, payload?: unknown): Promise<void>;
}

async function failure(p: Promise<unknown>): Promise<Error & { response?: { statusCode?: number } }> {
  return within(15_000, 'invoke', p).then(
    () => {
      throw new Error('expected the call to fail');
    },
    (e: unknown) => e as Error,
  );
}

t.test('direct methods through the official SDKs', async (t) => {
  const th = await startTestHub();
  t.teardown(() => th.cleanup());
  th.hub.createDevice('dev');
  th.hub.createDevice('offline');
  const device = await deviceClientFor(th, th.hub.deviceConnectionString('dev'));
  t.teardown(() => device.close());
  await within(5000, 'open', device.open());
  const calls: MethodRequest[] = [];
  device.onDeviceMethod('measureNow', (req: MethodRequest, res: MethodResponse) => {
    calls.push(req);
    void res.send(200, { measured: (req.payload as { sources?: string[] }).sources?.length ?? 0 });
  });
  device.onDeviceMethod('fail', (_req: MethodRequest, res: MethodResponse) => void res.send(409, { reason: 'busy' }));
  device.onDeviceMethod('silent', () => undefined);
  const service = serviceClientFor(th);
  t.teardown(() => service.close());

  t.test('a round trip carries name, payload, status and reply', async (t) => {
    // The SDK attaches its methods links after onDeviceMethod, asynchronously: allow it to connect.
    const { result } = await within(
      10_000,
      'invoke',
      service.invokeDeviceMethod('dev', { methodName: 'measureNow', payload: { sources: ['a', 'b'] }, responseTimeoutInSeconds: 5, connectTimeoutInSeconds: 5 }),
    );
    t.same(result, { status: 200, payload: { measured: 2 } });
    t.equal(calls.at(-1)?.methodName, 'measureNow', 'the device saw the method name');
    t.same(calls.at(-1)?.payload, { sources: ['a', 'b'] }, 'and the payload');
  });

  t.test("the device's own status comes back as sent", async (t) => {
    const { result } = await within(10_000, 'invoke', service.invokeDeviceMethod('dev', { methodName: 'fail', payload: null, responseTimeoutInSeconds: 5 }));
    t.same(result, { status: 409, payload: { reason: 'busy' } });
  });

  t.test('no reply within responseTimeoutInSeconds is 504', async (t) => {
    const started = Date.now();
    const err = await failure(service.invokeDeviceMethod('dev', { methodName: 'silent', payload: {}, responseTimeoutInSeconds: 5 }));
    t.equal(err.response?.statusCode, 504);
    t.equal(err.constructor.name, 'GatewayTimeoutError');
    t.ok(Date.now() - started >= 4900, 'waited the response timeout');
  });

  t.test('an offline device is 404 at once, or after connectTimeoutInSeconds', async (t) => {
    const err = await failure(service.invokeDeviceMethod('offline', { methodName: 'measureNow', payload: {}, responseTimeoutInSeconds: 5 }));
    t.equal(err.response?.statusCode, 404);
    const started = Date.now();
    const later = await failure(service.invokeDeviceMethod('offline', { methodName: 'measureNow', payload: {}, responseTimeoutInSeconds: 5, connectTimeoutInSeconds: 1 }));
    t.equal(later.response?.statusCode, 404);
    t.ok(Date.now() - started >= 900, 'waited the connect timeout');
  });

  t.test('a device that connects within connectTimeoutInSeconds gets the call', async (t) => {
    th.hub.createDevice('late');
    const call = service.invokeDeviceMethod('late', { methodName: 'hello', payload: 1, responseTimeoutInSeconds: 5, connectTimeoutInSeconds: 5 });
    const late = await deviceClientFor(th, th.hub.deviceConnectionString('late'));
    t.teardown(() => late.close());
    await within(5000, 'late open', late.open());
    late.onDeviceMethod('hello', (req: MethodRequest, res: MethodResponse) => void res.send(200, { echo: req.payload }));
    const { result } = await within(10_000, 'invoke late', call);
    t.same(result, { status: 200, payload: { echo: 1 } });
  });

  t.test('an unknown device is 404 DeviceNotFoundError; a bad timeout is 400', async (t) => {
    const err = await failure(service.invokeDeviceMethod('nobody', { methodName: 'x', payload: {} }));
    t.equal(err.constructor.name, 'DeviceNotFoundError');
    const bad = await failure(service.invokeDeviceMethod('dev', { methodName: 'x', payload: {}, responseTimeoutInSeconds: 1 }));
    t.equal(bad.response?.statusCode, 400);
  });

  t.test('a registryRead policy cannot invoke methods', async (t) => {
    const reader = serviceClientFor(th, 'registryRead');
    t.teardown(() => reader.close());
    const err = await failure(reader.invokeDeviceMethod('dev', { methodName: 'measureNow', payload: {} }));
    t.equal(err.response?.statusCode, 401);
  });
});
