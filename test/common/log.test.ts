import { Writable } from 'node:stream';
import t from 'tap';
import { createLogger, redactSecrets, type Logger } from '../../common/log.js';

const KEY = 'c2VjcmV0LWtleS1tYXRlcmlhbC0xMjM0NTY3ODkwYWJjZA==';
const SIG = 'h1oZ%2BtfQ%2FXd3kGmXk4Xo2T6v7l0%3D';
const DEVICE_CS = `HostName=hub.local;DeviceId=dev1;SharedAccessKey=${KEY}`;
const SERVICE_CS = `HostName=hub.local;SharedAccessKeyName=service;SharedAccessKey=${KEY}`;
const SAS = `SharedAccessSignature sr=hub.local%2Fdevices%2Fdev1&sig=${SIG}&se=1767225600&skn=service`;
const SECRETS = [KEY, SIG, 'hunter2', 'eyJhbGciOiJIUzI1NiJ9.payload.sig'];

function capture(level = 'trace'): { log: Logger; lines: () => Record<string, unknown>[]; raw: () => string } {
  let raw = '';
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      raw += chunk.toString();
      callback();
    },
  });
  const log = createLogger({ name: 'test', level, destination });
  return {
    log,
    raw: () => raw,
    lines: () =>
      raw
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

function leakedSecrets(text: string): string[] {
  return SECRETS.filter((secret) => text.includes(secret));
}

t.test('redactSecrets', async (t) => {
  t.equal(
    redactSecrets(DEVICE_CS),
    'HostName=hub.local;DeviceId=dev1;SharedAccessKey=[REDACTED]',
    'device connection string keeps host and device id',
  );
  t.equal(
    redactSecrets(SERVICE_CS),
    'HostName=hub.local;SharedAccessKeyName=service;SharedAccessKey=[REDACTED]',
    'policy name is not a secret',
  );
  t.equal(redactSecrets(`${DEVICE_CS};GatewayHostName=gw`), 'HostName=hub.local;DeviceId=dev1;SharedAccessKey=[REDACTED];GatewayHostName=gw');
  t.equal(redactSecrets(`auth with ${SAS} failed`), 'auth with SharedAccessSignature [REDACTED] failed');
  t.equal(
    redactSecrets(`HostName=h;DeviceId=d;SharedAccessSignature=${SAS}`),
    'HostName=h;DeviceId=d;SharedAccessSignature=[REDACTED]',
    'SAS token inside a connection string',
  );
  t.equal(redactSecrets(`GET /x?api-version=2021&sig=${SIG}&se=1 HTTP/1.1`), 'GET /x?api-version=2021&sig=[REDACTED]&se=1 HTTP/1.1');
  t.equal(redactSecrets('Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig'), 'Authorization: Bearer [REDACTED]');
  t.equal(redactSecrets('amqps://service:hunter2@hub.local:5671'), 'amqps://service:[REDACTED]@hub.local:5671');
  t.equal(
    redactSecrets(`{"deviceId":"d","primaryKey":"${KEY}","status":"enabled"}`),
    '{"deviceId":"d","primaryKey":"[REDACTED]","status":"enabled"}',
  );
  t.equal(redactSecrets('outbox appended 12 readings'), 'outbox appended 12 readings', 'ordinary text untouched');
});

t.test('message strings, format arguments and fields are scrubbed', async (t) => {
  const { log, lines, raw } = capture();
  log.info(`connecting with ${DEVICE_CS}`);
  log.warn('token was %s', SAS);
  log.info({ device: 'dev1', uplink: { url: `https://hub.local/devices/dev1?sig=${SIG}` } }, 'opened');
  t.same(leakedSecrets(raw()), [], 'no secret reaches the output');
  const [first, second, third] = lines();
  t.equal(first?.msg, 'connecting with HostName=hub.local;DeviceId=dev1;SharedAccessKey=[REDACTED]');
  t.equal(first?.name, 'test');
  t.equal(second?.msg, 'token was SharedAccessSignature [REDACTED]');
  t.match(third, { device: 'dev1', uplink: { url: 'https://hub.local/devices/dev1?sig=[REDACTED]' }, msg: 'opened' });
});

t.test('secret-named fields are censored at any depth', async (t) => {
  const { log, lines, raw } = capture();
  log.info({
    primaryKey: KEY,
    connectionString: 'anything at all',
    headers: { authorization: 'Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig', accept: 'application/json' },
    registry: { devices: [{ id: 'dev1', authentication: { symmetricKey: { primaryKey: KEY, secondaryKey: KEY } } }] },
    user: { name: 'ops', password: 'hunter2' },
  });
  t.same(leakedSecrets(raw()), [], 'no secret reaches the output');
  const [line] = lines();
  t.equal(line?.primaryKey, '[REDACTED]');
  t.equal(line?.connectionString, '[REDACTED]');
  t.same(line?.headers, { authorization: '[REDACTED]', accept: 'application/json' });
  t.same(line?.user, { name: 'ops', password: '[REDACTED]' });
  t.match(line?.registry, { devices: [{ id: 'dev1', authentication: { symmetricKey: { primaryKey: '[REDACTED]' } } }] });
});

t.test('errors: message, stack and cause are scrubbed, type kept', async (t) => {
  const { log, lines, raw } = capture();
  const cause = new Error(`AMQP open failed for ${SAS}`);
  const error = new TypeError(`bad connection string ${DEVICE_CS}`, { cause });
  log.error(error);
  log.error({ err: error, attempt: 2 }, 'uplink failed');
  log.warn({ lastError: new Error(`sig=${SIG}`) }, 'nested error');
  t.same(leakedSecrets(raw()), [], 'no secret reaches the output');
  const [plain, withFields, nested] = lines();
  const err = plain?.err as Record<string, unknown> | undefined;
  t.equal(err?.type, 'TypeError');
  t.match(err?.message, /SharedAccessKey=\[REDACTED\]/);
  t.match(err?.stack, /TypeError: bad connection string/);
  t.equal(plain?.msg, 'bad connection string HostName=hub.local;DeviceId=dev1;SharedAccessKey=[REDACTED]');
  t.equal(withFields?.msg, 'uplink failed');
  t.equal(withFields?.attempt, 2);
  t.equal((withFields?.err as Record<string, unknown> | undefined)?.type, 'TypeError');
  t.match(nested?.lastError, { message: 'sig=[REDACTED]' });
});

t.test('child logger bindings are scrubbed', async (t) => {
  const { log, lines, raw } = capture();
  log.child({ component: 'uplink', connectionString: DEVICE_CS, target: `amqps://u:hunter2@hub.local` }).info('hello');
  t.same(leakedSecrets(raw()), [], 'no secret reaches the output');
  const [line] = lines();
  t.equal(line?.component, 'uplink');
  t.equal(line?.connectionString, '[REDACTED]');
  t.equal(line?.target, 'amqps://u:[REDACTED]@hub.local');

  const grandchild = captureChildOfChild();
  t.same(leakedSecrets(grandchild), [], 'grandchildren too');
  t.match(grandchild, /"component":"uplink","link":"sig=\[REDACTED\]"/);
});

function captureChildOfChild(): string {
  const { log, raw } = capture();
  log.child({ component: 'uplink' }).child({ link: `sig=${SIG}` }).info('hi');
  return raw();
}

t.test('level defaults to info; circular data does not throw', async (t) => {
  let raw = '';
  const destination = { write: (s: string) => void (raw += s) };
  const log = createLogger({ destination });
  t.equal(log.level, 'info');
  log.debug('hidden');
  const loop: Record<string, unknown> = { name: 'loop' };
  loop.self = loop;
  log.info({ loop }, 'shown');
  t.notMatch(raw, /hidden/);
  t.match(raw, /"self":"\[Circular\]"/);
});
