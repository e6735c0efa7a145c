import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prepareDataDir, readHubFile, hubFilePath, deviceConnectionString } from '../../../cloud/hub/data-dir.js';
import { LocalHub } from '../../../cloud/hub/local-hub.js';
import { captureLog } from '../../helpers/hub.js';

function mode(file: string): number {
  return statSync(file).mode & 0o777;
}

t.test('first start creates the data directory; later starts reuse it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-datadir-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const dataDir = join(dir, 'hub');
  const first = prepareDataDir({ dataDir, amqpPort: 5673, httpsPort: 8443 });
  const hub = readHubFile(hubFilePath(dataDir));
  t.equal(hub.hostName, 'localhost');
  t.equal(hub.amqpPort, 5673);
  t.equal(hub.httpsPort, 8443);
  t.match(hub.serviceConnectionString, /^HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=[A-Za-z0-9+/=]{44}$/);
  t.same(hub.policies.map((p) => p.keyName), ['iothubowner', 'service', 'device', 'registryRead', 'registryReadWrite']);
  t.equal(mode(hubFilePath(dataDir)), 0o600, 'hub.json holds keys: owner only');
  t.equal(mode(hub.keyFile), 0o600, 'server key owner only');
  t.equal(mode(join(dataDir, 'ca', 'ca.key')), 0o600, 'CA key owner only');
  t.equal(mode(dataDir), 0o700);

  const cert = new X509Certificate(first.cert);
  t.ok(cert.checkHost('localhost'), 'SAN DNS localhost');
  t.ok(cert.checkIP('127.0.0.1'), 'SAN IP 127.0.0.1');
  t.ok(cert.verify(new X509Certificate(first.ca).publicKey), 'issued by the CA');

  const second = prepareDataDir({ dataDir });
  t.equal(second.hub.policies[0]?.primaryKey, hub.policies[0]?.primaryKey, 'policy keys are kept');
  t.equal(second.hub.amqpPort, 5673, 'ports are kept when not given');
  t.equal(second.cert, first.cert, 'a fitting server certificate is kept');
  t.equal(second.ca, first.ca);

  const renamed = prepareDataDir({ dataDir, hostName: 'gateway-bench.local' });
  t.not(renamed.cert, first.cert, 'a new host name gets a new certificate');
  t.ok(new X509Certificate(renamed.cert).checkHost('gateway-bench.local'));
  t.equal(renamed.ca, first.ca, 'from the same CA');
});

t.test('--ca shares one CA between hubs', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-ca-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const caDir = join(dir, 'shared-ca');
  const a = prepareDataDir({ dataDir: join(dir, 'a'), caDir });
  const b = prepareDataDir({ dataDir: join(dir, 'b'), caDir });
  t.equal(a.ca, b.ca);
  t.not(a.cert, b.cert);
  t.not(a.hub.policies[0]?.primaryKey, b.hub.policies[0]?.primaryKey, 'each hub has its own keys');
  t.equal(readFileSync(join(caDir, 'ca.pem'), 'utf8'), a.ca);
});

t.test('a damaged hub.json is reported with its path', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-bad-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const dataDir = join(dir, 'hub');
  prepareDataDir({ dataDir });
  const { writeFileSync } = await import('node:fs');
  writeFileSync(hubFilePath(dataDir), '{"hostName": ');
  t.throws(() => prepareDataDir({ dataDir }), { code: 'HUB_DATA_DIR_INVALID', message: /hub\.json is not a valid hub\.json/ });
});

t.test('device connection strings carry GatewayHostName only off the default port', async (t) => {
  t.equal(deviceConnectionString({ hostName: 'localhost', amqpPort: 5671 }, 'd', 'k'), 'HostName=localhost;DeviceId=d;SharedAccessKey=k');
  t.equal(deviceConnectionString({ hostName: 'localhost', amqpPort: 5673 }, 'd', 'k'), 'HostName=localhost;DeviceId=d;SharedAccessKey=k;GatewayHostName=localhost:5673');
});

t.test('a port in use is reported and leaves nothing running', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-busy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = captureLog();
  const first = await LocalHub.start({ dataDir: join(dir, 'a'), amqpPort: 0, httpsPort: 0, log: log.logger });
  t.teardown(() => first.stop());
  await t.rejects(LocalHub.start({ dataDir: join(dir, 'b'), amqpPort: first.hub.amqpPort, httpsPort: 0, log: log.logger }), { code: 'EADDRINUSE' });
});
