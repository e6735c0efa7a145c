import { Agent } from 'node:https';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import iothub from 'azure-iothub';
import { Amqp as AmqpBase, type AmqpBaseTransportConfig } from 'azure-iothub/dist/common-amqp/amqp.js';
import { Http } from 'azure-iothub/dist/common-http/http.js';
import { RestApiClient } from 'azure-iothub/dist/common-http/rest_api_client.js';
import { NoRetry, type RetryPolicy } from 'azure-iothub/dist/common-core/retry_policy.js';
import { FieldlinkError } from '../../common/errors.js';
import { connectionStringFor, readHubFile } from './data-dir.js';

// azure-iothub is CommonJS whose re-exports Node cannot detect statically: take them off the default export.
const { Client, ConnectionString, Registry, SharedAccessSignature, Amqp: ServiceAmqp } = iothub;
type Client = InstanceType<typeof Client>;
type Registry = InstanceType<typeof Registry>;


/** Where a service-side client connects, and what it must trust. */
export interface HubTarget {
  /** The IoT Hub host name: token audience and TLS server name. */
  readonly hostName: string;
  readonly amqpPort: number;
  readonly httpsPort: number;
  /** Extra CA (PEM) to trust, for the local hub; undefined for Azure's public chain. */
  readonly ca: string | undefined;
  readonly keyName: string;
  readonly key: string;
}

// Matches the User-Agent azure-iothub sends itself; read from the package so it stays true.
const USER_AGENT = (() => {
  try {
    const file = createRequire(import.meta.url).resolve('azure-iothub/package.json');
    const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name: string; version: string };
    return `${pkg.name}/${pkg.version}`;
  } catch {
    return 'azure-iothub';
  }
})();

/** A hub.json written by `fieldlink hub`, acting as `policy` (least privilege: pick the smallest). */
export function hubTargetFromFile(hubJsonPath: string, policy = 'iothubowner'): HubTarget {
  const hub = readHubFile(hubJsonPath);
  const p = hub.policies.find((x) => x.keyName === policy);
  if (!p) {
    throw new FieldlinkError('CONNECTION_STRING_INVALID', {
      message: `${hubJsonPath} has no policy "${policy}" (it has ${hub.policies.map((x) => x.keyName).join(', ')})`,
    });
  }
  return { hostName: hub.hostName, amqpPort: hub.amqpPort, httpsPort: hub.httpsPort, ca: readFileSync(hub.caFile, 'utf8'), keyName: p.keyName, key: p.primaryKey };
}

/**
 * A service connection string (Azure or local). `HostName=host:port` moves the AMQP port, as
 * the SDK itself allows; `ca` adds a trusted CA (PEM) for a local hub.
 */
export function hubTargetFromConnectionString(connectionString: string, opts: { ca?: string; httpsPort?: number } = {}): HubTarget {
  let cn: { HostName?: string; SharedAccessKeyName?: string; SharedAccessKey?: string };
  try {
    cn = ConnectionString.parse(connectionString);
    if (!cn.HostName || !cn.SharedAccessKeyName || !cn.SharedAccessKey) throw new Error('missing field');
  } catch (cause) {
    throw new FieldlinkError('CONNECTION_STRING_INVALID', {
      message: 'service connection string must carry HostName, SharedAccessKeyName and SharedAccessKey',
      cause,
    });
  }
  const [host = '', port] = (cn.HostName ?? '').split(':');
  return {
    hostName: host,
    amqpPort: port ? Number(port) : 5671,
    httpsPort: opts.httpsPort ?? 443,
    ca: opts.ca,
    keyName: cn.SharedAccessKeyName ?? '',
    key: cn.SharedAccessKey ?? '',
  };
}

export function serviceConnectionString(target: HubTarget): string {
  return connectionStringFor(target.hostName, { keyName: target.keyName, primaryKey: target.key, secondaryKey: '', rights: [] });
}

/** Service AMQP that connects to the target's port and trusts its CA (rhea connect options). */
class TargetedAmqpBase extends AmqpBase {
  constructor(private readonly target: HubTarget) {
    super(true);
  }

  override connect(config: AmqpBaseTransportConfig, done: Parameters<AmqpBase['connect']>[1]): void {
    const override: Record<string, unknown> = { ...(config.policyOverride as object | undefined), port: this.target.amqpPort };
    if (this.target.ca) override.ca = this.target.ca;
    super.connect({ ...config, policyOverride: override }, done);
  }
}

/** The SDK's HTTP builder, with the target's HTTPS port and CA on every request. */
class TargetedHttp extends Http {
  constructor(private readonly target: HubTarget) {
    super();
  }

  // Registry and Client replace the options with a keep-alive agent; keep our CA whatever they set.
  override setOptions(options: Record<string, unknown>): void {
    super.setOptions({ ...options, ...(this.target.ca ? { ca: this.target.ca } : {}) });
  }

  override buildRequest(...args: Parameters<Http['buildRequest']>): ReturnType<Http['buildRequest']> {
    const [method, path, headers, host, optionsOrDone, maybeDone] = args;
    if (typeof optionsOrDone === 'function') {
      return super.buildRequest(method, path, headers, host, { port: this.target.httpsPort }, optionsOrDone);
    }
    if (optionsOrDone && typeof optionsOrDone === 'object' && !('cert' in optionsOrDone) && !('clientCertEngine' in optionsOrDone)) {
      return super.buildRequest(method, path, headers, host, { ...optionsOrDone, port: this.target.httpsPort }, maybeDone);
    }
    return super.buildRequest(...args);
  }
}

function transportConfig(target: HubTarget): { host: string; keyName: string; sharedAccessSignature: ReturnType<typeof SharedAccessSignature.create> } {
  if (!target.hostName || !target.keyName || !target.key) {
    throw new FieldlinkError('CONNECTION_STRING_INVALID', { message: 'hub target needs a host name, a policy name and a key' });
  }
  const inAnHour = Math.floor(Date.now() / 1000) + 3600;
  return { host: target.hostName, keyName: target.keyName, sharedAccessSignature: SharedAccessSignature.create(target.hostName, target.keyName, target.key, inAnHour) };
}

function restClient(target: HubTarget): RestApiClient {
  const http = new TargetedHttp(target);
  const rest = new RestApiClient(transportConfig(target), USER_AGENT, http);
  rest.setOptions({ http: { agent: new Agent({ keepAlive: true }) } });
  return rest;
}

export interface ServiceClientOptions {
  /** The SDK's default retries silently for up to 240 s; callers get NoRetry and set deadlines. */
  retryPolicy?: RetryPolicy;
}

/** `azure-iothub` Client (C2D over AMQP, feedback, direct methods) for the target, in-process. */
export function createServiceClient(target: HubTarget, opts: ServiceClientOptions = {}): Client {
  const config = transportConfig(target);
  const transport = new ServiceAmqp(config, new TargetedAmqpBase(target) as never);
  const client = new Client(transport, restClient(target) as never);
  client.setRetryPolicy(opts.retryPolicy ?? new NoRetry());
  return client;
}

/** `azure-iothub` Registry (devices, twins, query) for the target, in-process. */
export function createRegistry(target: HubTarget): Registry {
  return new Registry(transportConfig(target), restClient(target) as never);
}
