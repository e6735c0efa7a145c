import { randomBytes } from 'node:crypto';
import common from 'azure-iot-common';
import { withinDeadline } from '../../common/deadline.js';
import { FieldlinkError, isFieldlinkError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { createRegistry, createServiceClient, type HubTarget } from '../hub/service-clients.js';
import type { C2dSendOptions, FeedbackHandlers, FeedbackRecord, FeedbackSubscription, FleetHub, HubTwin, JsonObject, NewGatewayIdentity } from './fleet-hub.js';

// CommonJS: take the class off the default export (Node cannot see its named exports).
const { Message } = common;
type Message = InstanceType<typeof Message>;
type ServiceClient = ReturnType<typeof createServiceClient>;
type Registry = ReturnType<typeof createRegistry>;

export interface AzureFleetHubOptions {
  /** Acts with `service` rights: C2D and feedback. */
  readonly service: HubTarget;
  /** Acts with `registryReadWrite` rights: identities, twins, queries. */
  readonly registry: HubTarget;
  readonly log: Logger;
  /** Deadline for any one hub call (default 5 s): past it the caller gets HUB_UNREACHABLE. */
  readonly callTimeoutMs?: number;
  /** Twins per query page (IoT Hub allows up to 1000 when paging with continuation tokens). */
  readonly queryPageSize?: number;
}

const DEFAULT_CALL_TIMEOUT_MS = 5_000;

/** The SDK's errors are its own copies of azure-iot-common's classes: match by name, not instanceof. */
function sdkErrorName(err: unknown): string {
  return err instanceof Error ? err.constructor.name : '';
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const amqp = (err as { amqpError?: { description?: string } }).amqpError?.description;
  const code = (err as { code?: string }).code;
  return [err.message || err.name, amqp, code].filter((x) => typeof x === 'string' && x !== '').join(': ');
}

/** Any SDK failure as a registry error an API route can answer with (404, 409, 412, 503…). */
export function translateHubError(err: unknown, what: string, deviceId?: string): FieldlinkError {
  if (isFieldlinkError(err)) return err;
  const name = sdkErrorName(err);
  const reason = describe(err);
  switch (name) {
    case 'DeviceNotFoundError':
      return new FieldlinkError('DEVICE_NOT_FOUND', { message: `gateway "${deviceId ?? '?'}" is not registered in IoT Hub`, details: { gateway: deviceId }, cause: err });
    case 'DeviceAlreadyExistsError':
      return new FieldlinkError('DEVICE_ALREADY_EXISTS', { message: `gateway "${deviceId ?? '?'}" is already registered in IoT Hub`, details: { gateway: deviceId }, cause: err });
    case 'InvalidEtagError':
      return new FieldlinkError('PRECONDITION_FAILED', { message: `${what}: the twin changed since the given etag`, details: { gateway: deviceId }, cause: err });
    case 'DeviceMaximumQueueDepthExceededError':
      return new FieldlinkError('COMMAND_QUEUE_FULL', { message: `${what}: the gateway's cloud-to-device queue is full (IoT Hub holds 50 messages)`, details: { gateway: deviceId }, cause: err });
    case 'ThrottlingError':
    case 'IotHubQuotaExceededError':
      return new FieldlinkError('HUB_THROTTLED', { message: `${what}: IoT Hub throttled the request (${reason}); retry later`, cause: err });
    case 'UnauthorizedError':
    case 'TooManyDevicesError':
      return new FieldlinkError('HUB_AUTH_FAILED', { message: `${what}: IoT Hub refused the companion's credentials or rights (${reason})`, cause: err });
    case 'ArgumentError':
      return new FieldlinkError('HUB_REQUEST_FAILED', { message: `${what}: IoT Hub refused the request (${reason})`, retryable: false, cause: err });
    default:
      break;
  }
  const status = (err as { response?: { statusCode?: number } }).response?.statusCode;
  if (typeof status === 'number') {
    return new FieldlinkError('HUB_REQUEST_FAILED', { message: `${what}: IoT Hub answered HTTP ${status} (${reason})`, cause: err });
  }
  return new FieldlinkError('HUB_UNREACHABLE', { message: `${what}: IoT Hub cannot be reached (${reason})`, cause: err });
}

interface SdkTwin {
  deviceId: string;
  etag: string;
  tags?: JsonObject;
  properties?: { desired?: JsonObject; reported?: JsonObject };
  connectionState?: string;
  lastActivityTime?: string;
  status?: string;
}

function toHubTwin(t: SdkTwin): HubTwin {
  const last = t.lastActivityTime;
  return {
    deviceId: t.deviceId,
    etag: t.etag,
    desired: { ...(t.properties?.desired ?? {}) },
    reported: { ...(t.properties?.reported ?? {}) },
    tags: { ...(t.tags ?? {}) },
    connectionState: t.connectionState === 'Connected' || t.connectionState === 'Disconnected' ? t.connectionState : undefined,
    // IoT Hub's "never" is the epoch start; treat it as unknown.
    lastActivityTime: last && !last.startsWith('0001-') ? last : undefined,
    status: t.status,
  };
}

function generateKey(): string {
  return randomBytes(32).toString('base64');
}

/**
 * FleetHub over `azure-iothub`: C2D and feedback on one AMQP service client (the `service`
 * policy), twins and identities over HTTPS (the `registryReadWrite` policy). The SDK's own
 * retries are off (NoRetry); every call has a deadline. A failed AMQP client is thrown away and
 * a new one is made on the next call, so the companion recovers when the hub returns.
 */
export class AzureFleetHub implements FleetHub {
  private client: ServiceClient | undefined;
  private opening: Promise<ServiceClient> | undefined;
  private readonly registry: Registry;
  private readonly timeoutMs: number;
  private closed = false;
  /** Told when the current service client is thrown away (its feedback link dies with it). */
  private readonly onClientLost = new Set<(why: string) => void>();

  constructor(private readonly opts: AzureFleetHubOptions) {
    this.registry = createRegistry(opts.registry);
    this.timeoutMs = opts.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  }

  /** The registry host name; what a device connection string names. */
  get hostName(): string {
    return this.opts.registry.hostName;
  }

  private async serviceClient(): Promise<ServiceClient> {
    if (this.closed) throw new FieldlinkError('HUB_UNREACHABLE', { message: 'the hub connection is closed' });
    if (this.client) return this.client;
    this.opening ??= (async () => {
      const client = createServiceClient(this.opts.service);
      try {
        await withinDeadline(this.timeoutMs, 'connect to IoT Hub', client.open());
      } catch (err) {
        void client.close().catch(() => undefined);
        throw translateHubError(err, 'connect to IoT Hub');
      }
      if (this.closed) {
        // close() ran while this connection was being opened: it must not outlive the hub port.
        void client.close().catch(() => undefined);
        throw new FieldlinkError('HUB_UNREACHABLE', { message: 'the hub connection is closed' });
      }
      client.on('disconnect', () => this.discard(client, 'disconnected'));
      client.on('error', (err: Error) => this.discard(client, describe(err)));
      this.client = client;
      return client;
    })().finally(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  private discard(client: ServiceClient, why: string): void {
    if (this.client !== client) return;
    this.opts.log.warn({ why }, 'IoT Hub service connection lost; the next call reconnects');
    this.client = undefined;
    for (const lost of [...this.onClientLost]) lost(why);
    void client.close().catch(() => undefined);
  }

  private async call<T>(what: string, deviceId: string | undefined, work: () => Promise<T>): Promise<T> {
    try {
      return await withinDeadline(this.timeoutMs, what, work());
    } catch (err) {
      throw translateHubError(err, what, deviceId);
    }
  }

  async sendCommand(deviceId: string, body: string, opts: C2dSendOptions): Promise<void> {
    const what = `send a command to "${deviceId}"`;
    const client = await this.serviceClient();
    const msg = new Message(body);
    msg.messageId = opts.messageId;
    msg.ack = 'full';
    msg.expiryTimeUtc = opts.expiresAtMs;
    msg.contentType = 'application/json';
    msg.contentEncoding = 'utf-8';
    try {
      await withinDeadline(this.timeoutMs, what, client.send(deviceId, msg));
    } catch (err) {
      const fl = translateHubError(err, what, deviceId);
      // A dead link fails every later send too: start over on the next call.
      if (fl.code === 'HUB_UNREACHABLE') this.discard(client, fl.message);
      throw fl;
    }
  }

  async subscribeFeedback(handlers: FeedbackHandlers): Promise<FeedbackSubscription> {
    const client = await this.serviceClient();
    const receiver = await this.call('open the feedback receiver', undefined, async () => (await client.getFeedbackReceiver()).result);
    // Thrown away while the receiver was attaching: its lost-notice went to nobody.
    if (this.client !== client) throw new FieldlinkError('HUB_UNREACHABLE', { message: 'IoT Hub service connection lost while opening the feedback receiver' });
    let open = true;
    const detach = (): void => {
      open = false;
      this.onClientLost.delete(lost);
      receiver.removeListener('message', onMessage);
      receiver.removeListener('error', onError);
    };
    const fail = (err: Error): void => {
      if (!open) return;
      detach();
      handlers.onError(err);
    };
    const lost = (why: string): void => fail(new Error(`IoT Hub service connection lost: ${why}`));
    const onError = (err: Error): void => fail(err);
    const onMessage = (msg: Message): void => {
      let records: FeedbackRecord[];
      try {
        records = JSON.parse(msg.getData().toString()) as FeedbackRecord[];
        if (!Array.isArray(records)) throw new Error('feedback body is not an array');
      } catch (err) {
        this.opts.log.error({ err: describe(err) }, 'unreadable feedback batch rejected');
        receiver.reject(msg, () => undefined);
        return;
      }
      // Settled only once stored: a crash before that gets the batch again (updates are
      // idempotent). The handler runs inside the promise chain, so a throw becomes an abandon.
      Promise.resolve()
        .then(() => handlers.onRecords(records))
        .then(
          () => receiver.complete(msg, () => undefined),
          (err: unknown) => {
            this.opts.log.error({ err: describe(err) }, 'feedback batch not stored; released for redelivery');
            receiver.abandon(msg, () => undefined);
          },
        );
    };
    receiver.on('message', onMessage);
    receiver.on('error', onError);
    this.onClientLost.add(lost);
    return {
      close: async () => detach(),
    };
  }

  async getTwin(deviceId: string): Promise<HubTwin> {
    const twin = await this.call(`read the twin of "${deviceId}"`, deviceId, async () => (await this.registry.getTwin(deviceId)).responseBody);
    return toHubTwin(twin as unknown as SdkTwin);
  }

  async patchDesired(deviceId: string, patch: JsonObject, etag: string): Promise<HubTwin> {
    const what = `update the desired properties of "${deviceId}"`;
    try {
      const twin = await this.call(what, deviceId, async () => (await this.registry.updateTwin(deviceId, { properties: { desired: patch } }, etag)).responseBody);
      return toHubTwin(twin as unknown as SdkTwin);
    } catch (err) {
      if (!isFieldlinkError(err, 'PRECONDITION_FAILED')) throw err;
      const current = await this.getTwin(deviceId);
      throw new FieldlinkError('PRECONDITION_FAILED', {
        message: `the gateway's config changed since etag ${etag}; read it again and retry with If-Match: ${current.etag}`,
        details: { gateway: deviceId, currentEtag: current.etag },
        cause: err,
      });
    }
  }

  async patchTags(deviceId: string, patch: JsonObject): Promise<HubTwin> {
    const twin = await this.call(`update the tags of "${deviceId}"`, deviceId, async () => (await this.registry.updateTwin(deviceId, { tags: patch }, '*')).responseBody);
    return toHubTwin(twin as unknown as SdkTwin);
  }

  async listTwins(): Promise<HubTwin[]> {
    const query = this.registry.createQuery('SELECT * FROM devices', this.opts.queryPageSize ?? 1000);
    const twins: HubTwin[] = [];
    // The promise form of next() drops its continuation token (azure-iothub 1.16.6): pass it.
    do {
      const token = query.continuationToken;
      const page = await this.call('query the fleet', undefined, async () => (await (token ? query.nextAsTwin(token) : query.nextAsTwin())).result);
      for (const t of page as unknown as SdkTwin[]) twins.push(toHubTwin(t));
    } while (query.hasMoreResults);
    return twins;
  }

  async queuedCommandCount(deviceId: string): Promise<number> {
    const device = await this.call(`read the identity of "${deviceId}"`, deviceId, async () => (await this.registry.get(deviceId)).responseBody);
    return (device as unknown as { cloudToDeviceMessageCount?: number }).cloudToDeviceMessageCount ?? 0;
  }

  async createGateway(deviceId: string, tags: JsonObject): Promise<NewGatewayIdentity> {
    const primaryKey = generateKey();
    await this.call(`create gateway "${deviceId}"`, deviceId, () =>
      this.registry.create({ deviceId, status: 'enabled', authentication: { symmetricKey: { primaryKey, secondaryKey: generateKey() } } } as never),
    );
    try {
      await this.call(`tag gateway "${deviceId}"`, deviceId, () => this.registry.updateTwin(deviceId, { tags }, '*'));
    } catch (err) {
      // Nobody would ever get this key: take the identity back rather than leave an orphan.
      await this.call(`delete untagged gateway "${deviceId}"`, deviceId, () => this.registry.delete(deviceId)).catch((e: unknown) =>
        this.opts.log.error({ err: describe(e), gateway: deviceId }, 'gateway created but neither tagged nor deleted; delete it by hand'),
      );
      throw err;
    }
    return { deviceId, connectionString: `HostName=${this.hostName};DeviceId=${deviceId};SharedAccessKey=${primaryKey}` };
  }

  async deleteGateway(deviceId: string): Promise<void> {
    await this.call(`delete gateway "${deviceId}"`, deviceId, () => this.registry.delete(deviceId));
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.opening?.catch(() => undefined);
    const client = this.client;
    this.client = undefined;
    if (client) await withinDeadline(this.timeoutMs, 'close the IoT Hub connection', client.close()).catch(() => undefined);
  }
}
