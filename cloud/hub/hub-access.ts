import type { IncomingHttpHeaders } from 'node:http';
import { request } from 'node:https';
import { readFileSync } from 'node:fs';
import { FieldlinkError } from '../../common/errors.js';
import { publicIpTagPatch, readConnectionLog, type ConnectionLogPage, type ConnectionLogQuery } from './connection-log.js';
import { openDb, prepared, type Db } from './db.js';
import { deviceConnectionString, hubFilePath, readHubFile, type HubFile } from './data-dir.js';
import { readEvents, type StoredEvent } from './event-store.js';
import { HubError } from './hub-errors.js';
import { Meter, type MeterSnapshot } from './meter.js';
import { DeviceRegistry } from './registry.js';
import { mintSasToken } from './sas.js';

export interface DeviceSummary {
  deviceId: string;
  status: string;
  connectionState: string;
  cloudToDeviceMessageCount: number;
}

/**
 * What the `fieldlink hub` tools need, answered by the running hub over HTTPS when it is up,
 * or straight from its data directory when it is not. Either way the same rules apply.
 */
export interface HubAccess {
  readonly mode: 'running' | 'offline';
  readonly hub: HubFile;
  createDevice(deviceId: string): Promise<string>;
  deviceConnectionString(deviceId: string): Promise<string>;
  listDevices(): Promise<DeviceSummary[]>;
  deleteDevice(deviceId: string): Promise<void>;
  meter(): Promise<MeterSnapshot>;
  events(q: { deviceId?: string; fromSequence?: number; limit: number }): Promise<StoredEvent[]>;
  /** Sets (null: removes) the address the connection log shows for the device (tags.fieldlink.publicIp). */
  setPublicIp(deviceId: string, ip: string | null): Promise<void>;
  connectionLog(q: ConnectionLogQuery): Promise<ConnectionLogPage>;
  close(): void;
}

interface Reply {
  status: number;
  body: string;
  headers: IncomingHttpHeaders;
}

function translate(deviceId: string, reply: Reply, what: string): FieldlinkError {
  let message = reply.body;
  try {
    message = (JSON.parse(reply.body) as { Message?: string }).Message ?? reply.body;
  } catch {
    // not JSON: show it as it came
  }
  if (reply.status === 404) return new FieldlinkError('DEVICE_NOT_FOUND', { message: `device "${deviceId}" is not registered` });
  if (reply.status === 409) return new FieldlinkError('DEVICE_ALREADY_EXISTS', { message: `device "${deviceId}" is already registered` });
  if (reply.status === 401 || reply.status === 403) return new FieldlinkError('HUB_AUTH_FAILED', { message: `${what}: ${message}` });
  return new FieldlinkError('HUB_REQUEST_FAILED', { message: `${what}: HTTP ${reply.status} ${message}`, retryable: reply.status >= 500 || reply.status === 429 });
}

class RunningHub implements HubAccess {
  readonly mode = 'running';
  private readonly ca: string;

  constructor(readonly hub: HubFile) {
    this.ca = readFileSync(hub.caFile, 'utf8');
  }

  private token(policy: string): string {
    const p = this.hub.policies.find((x) => x.keyName === policy);
    if (!p) throw new FieldlinkError('HUB_DATA_DIR_INVALID', { message: `hub.json has no "${policy}" policy` });
    return mintSasToken(this.hub.hostName, p.primaryKey, p.keyName, Math.floor(Date.now() / 1000) + 600);
  }

  call(method: string, path: string, policy: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: this.hub.hostName,
          port: this.hub.httpsPort,
          method,
          path: `${path}${path.includes('?') ? '&' : '?'}api-version=2021-04-12`,
          ca: this.ca,
          timeout: 10_000,
          headers: {
            authorization: this.token(policy),
            ...(payload === undefined ? {} : { 'content-type': 'application/json; charset=utf-8' }),
            ...headers,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new FieldlinkError('TIMEOUT', { message: `${method} ${path}: no answer within 10 s` })));
      req.on('error', (cause) => reject(cause instanceof FieldlinkError ? cause : new FieldlinkError('HUB_UNREACHABLE', { message: `${method} ${path} failed`, cause })));
      req.end(payload);
    });
  }

  async createDevice(deviceId: string): Promise<string> {
    const r = await this.call('PUT', `/devices/${encodeURIComponent(deviceId)}`, 'registryReadWrite', { deviceId });
    if (r.status !== 200) throw translate(deviceId, r, 'create device');
    const d = JSON.parse(r.body) as { authentication: { symmetricKey: { primaryKey: string } } };
    return deviceConnectionString(this.hub, deviceId, d.authentication.symmetricKey.primaryKey);
  }

  async deviceConnectionString(deviceId: string): Promise<string> {
    const r = await this.call('GET', `/devices/${encodeURIComponent(deviceId)}`, 'registryRead');
    if (r.status !== 200) throw translate(deviceId, r, 'get device');
    const d = JSON.parse(r.body) as { authentication: { symmetricKey: { primaryKey: string } } };
    return deviceConnectionString(this.hub, deviceId, d.authentication.symmetricKey.primaryKey);
  }

  async listDevices(): Promise<DeviceSummary[]> {
    const r = await this.call('GET', '/devices', 'registryRead');
    if (r.status !== 200) throw translate('', r, 'list devices');
    return (JSON.parse(r.body) as DeviceSummary[]).map(({ deviceId, status, connectionState, cloudToDeviceMessageCount }) => ({
      deviceId,
      status,
      connectionState,
      cloudToDeviceMessageCount,
    }));
  }

  async deleteDevice(deviceId: string): Promise<void> {
    const r = await this.call('DELETE', `/devices/${encodeURIComponent(deviceId)}`, 'registryReadWrite', undefined, { 'if-match': '*' });
    if (r.status !== 204) throw translate(deviceId, r, 'delete device');
  }

  async meter(): Promise<MeterSnapshot> {
    const r = await this.call('GET', '/_local/meter', 'service');
    if (r.status !== 200) throw translate('', r, 'read meter');
    return JSON.parse(r.body) as MeterSnapshot;
  }

  async events(q: { deviceId?: string; fromSequence?: number; limit: number }): Promise<StoredEvent[]> {
    const params = new URLSearchParams({ limit: String(q.limit), fromSequence: String(q.fromSequence ?? 0) });
    if (q.deviceId !== undefined) params.set('deviceId', q.deviceId);
    const r = await this.call('GET', `/_local/events?${params.toString()}`, 'service');
    if (r.status !== 200) throw translate(q.deviceId ?? '', r, 'read events');
    return JSON.parse(r.body) as StoredEvent[];
  }

  async setPublicIp(deviceId: string, ip: string | null): Promise<void> {
    const r = await this.call('PATCH', `/twins/${encodeURIComponent(deviceId)}`, 'registryReadWrite', { tags: publicIpTagPatch(ip) }, { 'if-match': '*' });
    if (r.status !== 200) throw translate(deviceId, r, 'set public ip');
  }

  async connectionLog(q: ConnectionLogQuery): Promise<ConnectionLogPage> {
    const params = new URLSearchParams({ since: String(q.sinceMs), limit: String(q.limit) });
    const headers: Record<string, string> = q.afterSeq === undefined ? {} : { 'x-ms-continuation': String(q.afterSeq) };
    const r = await this.call('GET', `/_local/logs/connections?${params.toString()}`, 'service', undefined, headers);
    if (r.status !== 200) throw translate('', r, 'read connection log');
    const next = r.headers['x-ms-continuation'];
    return { records: (JSON.parse(r.body) as Pick<ConnectionLogPage, 'records'>).records, ...(typeof next === 'string' && next !== '' ? { continuation: Number(next) } : {}) };
  }

  close(): void {}
}

class OfflineHub implements HubAccess {
  readonly mode = 'offline';
  private readonly registry: DeviceRegistry;

  constructor(
    readonly hub: HubFile,
    private readonly db: Db,
  ) {
    this.registry = new DeviceRegistry(db, Date.now);
  }

  private wrap<T>(deviceId: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof HubError && err.code === 'DeviceNotFound') throw new FieldlinkError('DEVICE_NOT_FOUND', { message: `device "${deviceId}" is not registered` });
      if (err instanceof HubError && err.code === 'DeviceAlreadyExists') throw new FieldlinkError('DEVICE_ALREADY_EXISTS', { message: `device "${deviceId}" is already registered` });
      if (err instanceof HubError) throw new FieldlinkError('HUB_REQUEST_FAILED', { message: err.message, retryable: false });
      throw err;
    }
  }

  async createDevice(deviceId: string): Promise<string> {
    const d = this.wrap(deviceId, () => this.registry.create(deviceId));
    return deviceConnectionString(this.hub, d.deviceId, d.primaryKey);
  }

  async deviceConnectionString(deviceId: string): Promise<string> {
    const d = this.wrap(deviceId, () => this.registry.require(deviceId));
    return deviceConnectionString(this.hub, d.deviceId, d.primaryKey);
  }

  async listDevices(): Promise<DeviceSummary[]> {
    const count = prepared(this.db, 'SELECT device_id, COUNT(*) AS n FROM c2d_messages GROUP BY device_id').all() as { device_id: string; n: number }[];
    const queued = new Map(count.map((c) => [c.device_id, c.n]));
    return this.registry.list().map((d) => ({ deviceId: d.deviceId, status: d.status, connectionState: 'Disconnected', cloudToDeviceMessageCount: queued.get(d.deviceId) ?? 0 }));
  }

  async deleteDevice(deviceId: string): Promise<void> {
    this.wrap(deviceId, () => this.registry.delete(deviceId, '*'));
  }

  async meter(): Promise<MeterSnapshot> {
    return new Meter(this.db).snapshot();
  }

  async events(q: { deviceId?: string; fromSequence?: number; limit: number }): Promise<StoredEvent[]> {
    return readEvents(this.db, q);
  }

  async setPublicIp(deviceId: string, ip: string | null): Promise<void> {
    this.wrap(deviceId, () => this.registry.patchTwin(deviceId, { tags: publicIpTagPatch(ip) }, '*'));
  }

  async connectionLog(q: ConnectionLogQuery): Promise<ConnectionLogPage> {
    return readConnectionLog(this.db, q);
  }

  close(): void {
    this.db.close();
  }
}

async function isRunning(hub: HubFile): Promise<boolean> {
  const probe = new RunningHub(hub);
  try {
    const r = await probe.call('GET', '/_local/health', 'service');
    return r.status === 200;
  } catch {
    return false;
  }
}

/** The running hub behind `dataDir` if it answers, else its files. */
export async function openHubAccess(dataDir: string): Promise<HubAccess> {
  const hub = readHubFile(hubFilePath(dataDir));
  if (await isRunning(hub)) return new RunningHub(hub);
  return new OfflineHub(hub, openDb(hub.dbFile));
}

/**
 * Reads a running local hub's connection log over HTTPS (its service policy), for the companion
 * to pull in the default setup. Azure has no such endpoint: there, diagnostic settings export
 * the log and something posts it to the companion (docs/locations.md).
 */
export function localConnectionLogReader(hubJson: string): (q: ConnectionLogQuery) => Promise<ConnectionLogPage> {
  const hub = new RunningHub(readHubFile(hubJson));
  return (q) => hub.connectionLog(q);
}
