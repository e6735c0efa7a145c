import t from 'tap';
import { deviceClientFor, registryFor, startTestHub } from '../../helpers/hub.js';
import { eventually, within } from '../../helpers/deadline.js';

type Patch = Record<string, unknown>;

t.test('device twin through the official SDKs', async (t) => {
  const th = await startTestHub();
  t.teardown(() => th.cleanup());
  th.hub.createDevice('dev');
  const registry = registryFor(th);
  const device = await deviceClientFor(th, th.hub.deviceConnectionString('dev'));
  t.teardown(() => device.close());
  await within(5000, 'open', device.open());
  const twin = await within(5000, 'device getTwin', device.getTwin());
  const desiredSeen: Patch[] = [];
  twin.on('properties.desired', (p: Patch) => desiredSeen.push(p));
  const report = (patch: Patch): Promise<void> =>
    within(5000, 'report', new Promise<void>((res, rej) => twin.properties.reported.update(patch, (e?: Error) => (e ? rej(e) : res()))));

  t.test('reported patches merge, null deletes, versions and metadata follow', async (t) => {
    await report({ fw: '1.0', battery: { level: 80, charging: false }, obsolete: true });
    await report({ battery: { level: 75 }, obsolete: null });
    const { responseBody: st } = await within(5000, 'service getTwin', registry.getTwin('dev'));
    const reported = st.properties.reported as Patch & { $version: number; $metadata: Patch };
    t.equal(reported.fw, '1.0');
    t.same(reported.battery, { level: 75, charging: false }, 'nested objects merge');
    t.notOk('obsolete' in reported, 'null deletes the property');
    t.equal(reported.$version, 3, 'two patches on top of the initial version');
    t.ok((reported.$metadata.battery as Patch).level, 'metadata tracks nested leaves');
    t.match((reported.$metadata.fw as Patch).$lastUpdated, /^\d{4}-\d\d-\d\dT/);
    t.notOk('obsolete' in reported.$metadata, 'metadata of deleted properties goes too');
  });

  t.test('a desired patch from the service reaches the subscribed device with its $version', async (t) => {
    const before = desiredSeen.length;
    const { responseBody: current } = await within(5000, 'getTwin', registry.getTwin('dev'));
    const { responseBody: updated } = await within(
      5000,
      'updateTwin',
      registry.updateTwin('dev', { properties: { desired: { samplingS: 30 } }, tags: { site: 'osaka' } }, current.etag as string),
    );
    t.equal(updated.properties.desired.samplingS, 30);
    t.equal(updated.tags.site, 'osaka');
    t.not(updated.etag, current.etag, 'the etag changes with every write');
    t.ok(((updated as unknown as { version: number }).version) > ((current as unknown as { version: number }).version), 'the twin version increases');
    const pushed = await eventually(5000, 'desired pushed', () => desiredSeen[before + 0]);
    t.equal(pushed.samplingS, 30);
    t.equal(pushed.$version, updated.properties.desired.$version);
    const fresh = await within(5000, 'device getTwin again', device.getTwin());
    t.equal(fresh.properties.desired.samplingS, 30, 'a fresh GET shows the desired property');
  });

  t.test('a stale etag is refused with 412 InvalidEtagError and changes nothing', async (t) => {
    const { responseBody: current } = await within(5000, 'getTwin', registry.getTwin('dev'));
    await within(5000, 'first update', registry.updateTwin('dev', { properties: { desired: { x: 1 } } }, current.etag as string));
    const err = await within(5000, 'stale update', registry.updateTwin('dev', { properties: { desired: { x: 2 } } }, current.etag as string)).then(
      () => undefined,
      (e: unknown) => e as Error & { response?: { statusCode?: number } },
    );
    t.equal(err?.constructor.name, 'InvalidEtagError');
    t.equal(err?.response?.statusCode, 412);
    const { responseBody: after } = await within(5000, 'getTwin', registry.getTwin('dev'));
    t.equal(after.properties.desired.x, 1);
  });

  t.test('twin limits: a desired section over 32 KB is refused with 400', async (t) => {
    const big = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`k${i}`, 'x'.repeat(4000)]));
    const err = await within(5000, 'update', registry.updateTwin('dev', { properties: { desired: big } }, '*')).then(
      () => undefined,
      (e: unknown) => e as Error & { response?: { statusCode?: number } },
    );
    t.equal(err?.response?.statusCode, 400);
    t.match(JSON.stringify(err?.message) + JSON.stringify((err as { responseBody?: unknown } | undefined)?.responseBody ?? ''), /32768/, 'the reason names the limit');
  });

  t.test('a twin of an unknown device is 404 DeviceNotFoundError', async (t) => {
    const err = await within(5000, 'getTwin', registry.getTwin('nobody')).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    t.equal(err?.constructor.name, 'DeviceNotFoundError');
  });

  t.test('invalid reported property names are refused and reported to the SDK', async (t) => {
    const err = await report({ 'bad.name': 1 }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    t.ok(err, 'the SDK surfaces the refusal');
    const { responseBody: st } = await within(5000, 'getTwin', registry.getTwin('dev'));
    t.notOk('bad.name' in st.properties.reported);
  });
});

t.test('desired patches sent while a device was offline are in the twin it fetches on reconnect', async (t) => {
  const th = await startTestHub();
  t.teardown(() => th.cleanup());
  th.hub.createDevice('sleepy');
  const registry = registryFor(th);
  await within(5000, 'update', registry.updateTwin('sleepy', { properties: { desired: { standbyS: 600 } } }, '*'));
  const device = await deviceClientFor(th, th.hub.deviceConnectionString('sleepy'));
  t.teardown(() => device.close());
  await within(5000, 'open', device.open());
  const twin = await within(5000, 'getTwin', device.getTwin());
  t.equal(twin.properties.desired.standbyS, 600);
  t.equal(twin.properties.desired.$version, 2);
});
