/*
 * AMQP traffic the Azure IoT SDKs never send — unauthorised links, broken CBS requests, malformed
 * twin requests — driven with a bare rhea client against a real local hub on loopback.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import t from 'tap';
import rhea from 'rhea';
import type { EventContext, Message } from 'rhea';
import { readEvents } from '../../../cloud/hub/event-store.js';
import { mintSasToken } from '../../../cloud/hub/sas.js';
import { startTestHub } from '../../helpers/hub.js';
import { errorOf, RawAmqp, type AmqpErr, type AttachOutcome } from '../../helpers/raw-amqp.js';
import { eventually, within } from '../../helpers/deadline.js';

/** A tap test object (the type tap gives a subtest callback). */
type Test = Parameters<Parameters<typeof t.test>[0]>[0];

const WAIT = 5000;
const HOST = 'localhost';

/** Every SAS signature this file puts on the wire, so the log scan can look for each one. */
const sigsSent = new Set<string>();

function mint(resource: string, key: string, keyName: string | undefined, expirySec: number): string {
  const token = mintSasToken(resource, key, keyName, expirySec);
  const sig = /sig=([^&]+)/.exec(token)?.[1];
  if (sig) {
    sigsSent.add(sig);
    sigsSent.add(decodeURIComponent(sig));
  }
  return token;
}

const inAnHour = (): number => Math.floor(Date.now() / 1000) + 3600;


const th = await startTestHub();
t.teardown(() => th.cleanup());
th.hub.createDevice('dev1');
th.hub.createDevice('dev2');
const keyOf = (id: string): string => th.hub.registry.require(id).primaryKey;
const policyKey = (name: string): string => {
  const p = th.hub.hub.policies.find((x) => x.keyName === name);
  if (!p) throw new Error(`no policy ${name}`);
  return p.primaryKey;
};
const deviceAudience = (id: string): string => encodeURIComponent(`${HOST}/devices/${id}`);
const deviceToken = (id: string, key = keyOf(id), expirySec = inAnHour()): string => mint(`${HOST}/devices/${id}`, key, undefined, expirySec);

async function client(t: Test): Promise<RawAmqp> {
  const c = await RawAmqp.connect(th);
  t.teardown(() => c.close());
  return c;
}

/** A connection that holds a valid dev1 token. */
async function dev1Client(t: Test): Promise<RawAmqp> {
  const c = await client(t);
  const r = await c.putToken(deviceToken('dev1'), deviceAudience('dev1'));
  t.equal(r.status, 200, 'valid dev1 token accepted on $cbs');
  return c;
}

function assertRefused(t: Test, outcome: AttachOutcome, condition: string, mention: RegExp): void {
  t.equal(outcome.attached, false, 'link not attached');
  if (outcome.attached) return;
  t.equal(outcome.error?.condition, condition, `detached with ${condition}`);
  t.match(outcome.error?.description ?? '', mention, 'description names the reason');
}

function twinRequest(operation: string, resource: string | undefined, body: string): Message {
  return {
    correlation_id: randomUUID(),
    message_annotations: resource === undefined ? { operation } : { operation, resource },
    body: rhea.message.data_section(Buffer.from(body)),
  } as Message;
}

/** Opens dev1's twin links and returns a function that sends a request and awaits its correlated reply. */
async function twinChannel(t: Test, c: RawAmqp): Promise<(m: Message) => Promise<{ status: unknown; body: string }>> {
  const down = await c.attachReceiver('/devices/dev1/twin');
  const up = await c.attachSender('/devices/dev1/twin');
  t.ok(down.outcome.attached && up.outcome.attached, 'twin links attached');
  const pending = new Map<string, (r: { status: unknown; body: string }) => void>();
  down.link.on('message', (ctx: EventContext) => {
    const m = ctx.message as Message;
    const ann = (m.message_annotations ?? {}) as Record<string, unknown>;
    const body = m.body as { content?: unknown } | undefined;
    const text = Buffer.isBuffer(body?.content) ? body.content.toString('utf8') : '';
    pending.get(String(m.correlation_id))?.({ status: ann.status, body: text });
  });
  return async (m) => {
    const id = String(m.correlation_id);
    const reply = new Promise<{ status: unknown; body: string }>((resolve) => pending.set(id, resolve));
    up.link.send(m);
    return within(WAIT, `twin reply to ${JSON.stringify(m.message_annotations)}`, reply);
  };
}

t.test('a device link attached without any CBS token is detached with amqp:unauthorized-access', async (t) => {
  const c = await client(t);
  const { outcome } = await c.attachSender('/devices/dev1/messages/events');
  assertRefused(t, outcome, 'amqp:unauthorized-access', /token/i);
});

t.test('CBS put-token refusals', async (t) => {
  const c = await client(t);

  t.test('a dev1 token signed with the wrong key is 401 naming the signature', async (t) => {
    const r = await c.putToken(deviceToken('dev1', randomBytes(32).toString('base64')), deviceAudience('dev1'));
    t.equal(r.status, 401);
    t.match(String(r.description), /signature/i);
  });

  t.test('a token for an unregistered device is 401 naming "not registered"', async (t) => {
    const r = await c.putToken(mint(`${HOST}/devices/ghost`, randomBytes(32).toString('base64'), undefined, inAnHour()), deviceAudience('ghost'));
    t.equal(r.status, 401);
    t.match(String(r.description), /not registered/);
  });

  t.test('a correctly signed token whose se is in the past is 401 naming "expired"', async (t) => {
    const r = await c.putToken(deviceToken('dev1', keyOf('dev1'), Math.floor(Date.now() / 1000) - 60), deviceAudience('dev1'));
    t.equal(r.status, 401);
    t.match(String(r.description), /expired/i);
  });

  t.test('a garbage token string is 401 naming it malformed', async (t) => {
    const r = await c.putToken('this is not a token', deviceAudience('dev1'));
    t.equal(r.status, 401);
    t.match(String(r.description), /malformed/i);
  });

  t.test('an operation other than put-token is 400', async (t) => {
    const r = await c.cbs(deviceToken('dev1'), { operation: 'delete-token', type: 'servicebus.windows.net:sastoken', name: deviceAudience('dev1') });
    t.equal(r.status, 400);
    t.match(String(r.description), /delete-token/);
  });

  t.test('a numeric token body is 400', async (t) => {
    const r = await c.putToken(42, deviceAudience('dev1'));
    t.equal(r.status, 400);
    t.match(String(r.description), /string token/);
  });

  t.test('a map token body is 400', async (t) => {
    const r = await c.putToken({ token: deviceToken('dev1') }, deviceAudience('dev1'));
    t.equal(r.status, 400);
    t.match(String(r.description), /string token/);
  });

  t.test('after all those refusals the connection still holds no token', async (t) => {
    const { outcome } = await c.attachSender('/devices/dev1/messages/events');
    assertRefused(t, outcome, 'amqp:unauthorized-access', /token/i);
  });
});

t.test('with a valid dev1 token, links beyond dev1 are refused', async (t) => {
  const c = await dev1Client(t);

  t.test("another device's telemetry link is amqp:unauthorized-access", async (t) => {
    const { outcome } = await c.attachSender('/devices/dev2/messages/events');
    assertRefused(t, outcome, 'amqp:unauthorized-access', /dev2/);
  });

  t.test('an unknown address is amqp:not-found', async (t) => {
    const { outcome } = await c.attachSender('/nonsense');
    assertRefused(t, outcome, 'amqp:not-found', /\/nonsense/);
  });

  t.test('the service-only /messages/devicebound is amqp:unauthorized-access', async (t) => {
    const { outcome } = await c.attachSender('/messages/devicebound');
    assertRefused(t, outcome, 'amqp:unauthorized-access', /service token/);
  });

  t.test("the device's own telemetry link attaches (control)", async (t) => {
    const { outcome } = await c.attachSender('/devices/dev1/messages/events');
    t.same(outcome, { attached: true });
  });
});

t.test('twin PATCH /properties/reported with a non-JSON body is answered status 400 and leaves the twin unchanged', async (t) => {
  const c = await dev1Client(t);
  const request = await twinChannel(t, c);
  const before = th.hub.registry.getTwin('dev1');
  const bad = await request(twinRequest('PATCH', '/properties/reported', '{"fw": 1.0,'));
  t.equal(bad.status, 400, 'status annotation 400');
  t.match(bad.body, /JSON/, 'error body names the reason');
  const after = th.hub.registry.getTwin('dev1');
  t.same(after.reported, before.reported, 'reported properties unchanged');
  t.equal(after.reportedVersion, before.reportedVersion, 'reported version unchanged');
  // Control: the same channel applies a well-formed patch, so the 400 came from the body.
  const good = await request(twinRequest('PATCH', '/properties/reported', '{"fw":"1.0"}'));
  t.equal(good.status, 204, 'a JSON patch on the same link is applied');
  t.equal(th.hub.registry.getTwin('dev1').reported.fw, '1.0');
});

t.test('an unknown twin operation (POST) is answered status 400', async (t) => {
  const c = await dev1Client(t);
  const request = await twinChannel(t, c);
  const r = await request(twinRequest('POST', '/properties/reported', '{}'));
  t.equal(r.status, 400);
  t.match(r.body, /unsupported twin operation POST/);
});

t.test('a D2C message on a valid link is accepted and stored (positive control)', async (t) => {
  const c = await dev1Client(t);
  const { link, outcome } = await c.attachSender('/devices/dev1/messages/events');
  t.same(outcome, { attached: true });
  const payload = `raw-${randomUUID()}`;
  const messageId = randomUUID();
  const r = await c.deliver(link, { message_id: messageId, body: rhea.message.data_section(Buffer.from(payload)) } as Message);
  t.equal(r.outcome, 'accepted');
  const stored = readEvents(th.hub.db, { limit: 10 }).filter((e) => e.body === payload);
  t.equal(stored.length, 1, 'stored once');
  t.equal(stored[0]?.deviceId, 'dev1');
  t.equal(stored[0]?.messageId, messageId);
});

t.test('service tokens: registryRead cannot attach /messages/devicebound (no ServiceConnect), service can', async (t) => {
  const audience = HOST;
  t.test('registryRead policy', async (t) => {
    const c = await client(t);
    const r = await c.putToken(mint(HOST, policyKey('registryRead'), 'registryRead', inAnHour()), audience);
    t.equal(r.status, 200, 'token itself is valid');
    const { outcome } = await c.attachSender('/messages/devicebound');
    assertRefused(t, outcome, 'amqp:unauthorized-access', /ServiceConnect/);
  });
  t.test('service policy', async (t) => {
    const c = await client(t);
    const r = await c.putToken(mint(HOST, policyKey('service'), 'service', inAnHour()), audience);
    t.equal(r.status, 200);
    const { outcome } = await c.attachSender('/messages/devicebound');
    t.same(outcome, { attached: true });
  });
});

t.test('a device-scoped policy token without DeviceConnect cannot act as that device', async (t) => {
  // IoT Hub only lets a policy connect as a device if it has DeviceConnect; registryRead does not.
  const c = await client(t);
  const r = await c.putToken(mint(`${HOST}/devices/dev1`, policyKey('registryRead'), 'registryRead', inAnHour()), deviceAudience('dev1'));
  t.equal(r.status, 401, 'put-token is refused although the signature is valid');
  t.match(r.description, /DeviceConnect/, 'the refusal names the missing permission');
  const { outcome } = await c.attachSender('/devices/dev1/messages/events');
  assertRefused(t, outcome, 'amqp:unauthorized-access', /no token for device/);
});

t.test('desired-property patches are pushed only after the device subscribed, and not after it unsubscribed', async (t) => {
  const c = await dev1Client(t);
  const pushes: string[] = [];
  const down = await c.attachReceiver('/devices/dev1/twin');
  down.link.on('message', (ctx: EventContext) => {
    const m = ctx.message as Message;
    const body = m.body as { content?: unknown } | undefined;
    if (m.correlation_id === undefined && Buffer.isBuffer(body?.content)) pushes.push(body.content.toString('utf8'));
  });
  const up = await c.attachSender('/devices/dev1/twin');
  t.ok(down.outcome.attached && up.outcome.attached, 'twin links attached');
  th.hub.registry.patchTwin('dev1', { properties: { desired: { before: 1 } } }, '*');
  await new Promise((r) => setTimeout(r, 200));
  t.same(pushes, [], 'nothing pushed before PUT /notifications/twin/properties/desired');
  up.link.send(twinRequest('PUT', '/notifications/twin/properties/desired', ' '));
  await new Promise((r) => setTimeout(r, 100));
  th.hub.registry.patchTwin('dev1', { properties: { desired: { during: 2 } } }, '*');
  await eventually(WAIT, 'push after subscribing', () => pushes[0]);
  t.match(JSON.parse(pushes[0] ?? '{}'), { during: 2 }, 'the patch itself is pushed, with its $version');
  t.type((JSON.parse(pushes[0] ?? '{}') as { $version?: unknown }).$version, 'number');
  up.link.send(twinRequest('DELETE', '/notifications/twin/properties/desired', ' '));
  await new Promise((r) => setTimeout(r, 100));
  th.hub.registry.patchTwin('dev1', { properties: { desired: { after: 3 } } }, '*');
  await new Promise((r) => setTimeout(r, 200));
  t.equal(pushes.length, 1, 'nothing pushed after DELETE');
});

t.test('a token that expires without renewal ends the links it authorised', async (t) => {
  const c = await client(t);
  const soon = Math.floor(Date.now() / 1000) + 2;
  const r = await c.putToken(deviceToken('dev2', keyOf('dev2'), soon), deviceAudience('dev2'));
  t.equal(r.status, 200);
  const { link, outcome } = await c.attachSender('/devices/dev2/messages/events');
  t.ok(outcome.attached, 'attached while the token is valid');
  const closed = await within(
    8000,
    'link closed at expiry',
    new Promise<AmqpErr | undefined>((resolve) => {
      link.on('sender_close', () => resolve(errorOf(link)));
    }),
  );
  t.equal(closed?.condition, 'amqp:unauthorized-access');
  t.match(closed?.description ?? '', /expired/);
  t.equal(th.hub.registry.isConnected('dev2'), false, 'the device no longer counts as connected');
});

t.test('hub logs never contain a key or a SAS signature', async (t) => {
  const text = th.log.lines.map((l) => JSON.stringify(l)).join('\n');
  t.match(text, /cbs put-token refused/, 'the refusals above were logged (the scan is not vacuous)');
  t.match(text, /amqp link refused/);
  const secrets: [string, string][] = [];
  for (const id of ['dev1', 'dev2']) {
    const d = th.hub.registry.require(id);
    secrets.push([`${id} primaryKey`, d.primaryKey], [`${id} secondaryKey`, d.secondaryKey]);
  }
  for (const p of th.hub.hub.policies) secrets.push([`${p.keyName} primaryKey`, p.primaryKey], [`${p.keyName} secondaryKey`, p.secondaryKey]);
  for (const sig of sigsSent) secrets.push(['a signature sent', sig]);
  t.ok(sigsSent.size >= 8, 'signatures were collected');
  for (const [what, value] of secrets) t.notOk(text.includes(value), `log does not contain ${what}`);
  t.notMatch(text, /sig=(?!\[REDACTED\])/i, 'no sig= value in the log');
});
