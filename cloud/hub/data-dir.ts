import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { FieldlinkError } from '../../common/errors.js';
import { standardPolicies, type AccessPolicy, type Right } from './access.js';
import { createCa, createServerCert, serverCertFits, type PemKeyPair } from './certs.js';
import { newKey } from './registry.js';

/** `hub.json`: what a client needs to reach and trust the local hub. Holds keys: mode 0600. */
export interface HubFile {
  hostName: string;
  amqpPort: number;
  httpsPort: number;
  caFile: string;
  certFile: string;
  keyFile: string;
  dbFile: string;
  policies: AccessPolicy[];
  serviceConnectionString: string;
}

export const DEFAULT_DATA_DIR = '.fieldlink/hub';

export function writeSecretFile(file: string, content: string): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  // Write beside and rename, so a reader never sees half a file; the mode is set before the
  // content lands, and chmod covers a file that already existed with looser bits.
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, content, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

export function connectionStringFor(hostName: string, policy: AccessPolicy): string {
  return `HostName=${hostName};SharedAccessKeyName=${policy.keyName};SharedAccessKey=${policy.primaryKey}`;
}

/** Loads the CA from `caDir` or creates it there (tests share one CA made once). */
function loadOrCreateCa(caDir: string): { pair: PemKeyPair; certFile: string } {
  const certFile = join(caDir, 'ca.pem');
  const keyFile = join(caDir, 'ca.key');
  if (existsSync(certFile) && existsSync(keyFile)) {
    return { pair: { certPem: readFileSync(certFile, 'utf8'), keyPem: readFileSync(keyFile, 'utf8') }, certFile };
  }
  const pair = createCa();
  mkdirSync(caDir, { recursive: true, mode: 0o700 });
  writeSecretFile(keyFile, pair.keyPem);
  writeFileSync(certFile, pair.certPem);
  return { pair, certFile };
}

export function hubFilePath(dataDir: string): string {
  return join(resolve(dataDir), 'hub.json');
}

export function readHubFile(file: string): HubFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new FieldlinkError('HUB_DATA_DIR_INVALID', { message: `cannot read ${file}: is this a hub data directory? (start one with \`fieldlink hub\`)`, cause });
  }
  try {
    const parsed = JSON.parse(text) as HubFile;
    if (typeof parsed.hostName !== 'string' || !Array.isArray(parsed.policies)) throw new Error('missing hostName or policies');
    return parsed;
  } catch (cause) {
    throw new FieldlinkError('HUB_DATA_DIR_INVALID', { message: `${file} is not a valid hub.json`, cause });
  }
}

export interface PrepareOptions {
  dataDir: string;
  hostName?: string;
  amqpPort?: number;
  httpsPort?: number;
  caDir?: string;
}

/**
 * First start creates the data dir: CA (or the one in caDir), a server certificate for the
 * host, the standard access policies with random keys, and hub.json. Later starts reuse them,
 * regenerating only a server certificate that no longer fits the host or is about to expire.
 */
export function prepareDataDir(opts: PrepareOptions): { hub: HubFile; ca: string; cert: string; key: string } {
  const dataDir = resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = hubFilePath(dataDir);
  const previous = existsSync(file) ? readHubFile(file) : undefined;
  const hostName = opts.hostName ?? previous?.hostName ?? 'localhost';
  const ca = loadOrCreateCa(resolve(opts.caDir ?? previous?.caFile.replace(/\/ca\.pem$/, '') ?? join(dataDir, 'ca')));
  const certFile = join(dataDir, 'tls', 'server.pem');
  const keyFile = join(dataDir, 'tls', 'server.key');
  const hosts = hostName === 'localhost' ? ['localhost', '127.0.0.1', '::1'] : isIP(hostName) ? [hostName] : [hostName, 'localhost', '127.0.0.1'];
  let cert = existsSync(certFile) ? readFileSync(certFile, 'utf8') : '';
  let key = existsSync(keyFile) ? readFileSync(keyFile, 'utf8') : '';
  if (!cert || !key || !serverCertFits(cert, ca.pair.certPem, hosts)) {
    const pair = createServerCert(ca.pair, hosts);
    cert = pair.certPem;
    key = pair.keyPem;
    writeSecretFile(keyFile, key);
    writeFileSync(certFile, cert);
  }
  const policies: AccessPolicy[] = standardPolicies.map(({ keyName, rights }) => {
    const kept = previous?.policies.find((p) => p.keyName === keyName);
    return { keyName, rights: [...rights] as Right[], primaryKey: kept?.primaryKey ?? newKey(), secondaryKey: kept?.secondaryKey ?? newKey() };
  });
  const owner = policies[0] as AccessPolicy;
  const hub: HubFile = {
    hostName,
    amqpPort: opts.amqpPort ?? previous?.amqpPort ?? 5671,
    httpsPort: opts.httpsPort ?? previous?.httpsPort ?? 8443,
    caFile: ca.certFile,
    certFile,
    keyFile,
    dbFile: join(dataDir, 'hub.db'),
    policies,
    serviceConnectionString: connectionStringFor(hostName, owner),
  };
  writeSecretFile(file, `${JSON.stringify(hub, null, 2)}\n`);
  return { hub, ca: ca.pair.certPem, cert, key };
}

/** Records the ports actually bound (port 0 means "any free port" at start). */
export function recordPorts(dataDir: string, hub: HubFile, amqpPort: number, httpsPort: number): HubFile {
  const next = { ...hub, amqpPort, httpsPort };
  writeSecretFile(hubFilePath(dataDir), `${JSON.stringify(next, null, 2)}\n`);
  return next;
}

/** Device connection string; GatewayHostName carries the port when it is not AMQP's 5671. */
export function deviceConnectionString(hub: Pick<HubFile, 'hostName' | 'amqpPort'>, deviceId: string, key: string): string {
  const gateway = hub.amqpPort === 5671 ? '' : `;GatewayHostName=${hub.hostName}:${hub.amqpPort}`;
  return `HostName=${hub.hostName};DeviceId=${deviceId};SharedAccessKey=${key}${gateway}`;
}
