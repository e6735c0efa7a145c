import { randomBytes } from 'node:crypto';
import { prepared, type Db } from './db.js';
import { HubError } from './hub-errors.js';
import {
  isObject,
  mergeWithMetadata,
  replaceWithMetadata,
  sectionSize,
  TAGS_MAX_BYTES,
  TWIN_SECTION_MAX_BYTES,
  validatePatch,
  type JsonObject,
  type Metadata,
} from './twin-patch.js';

export type DeviceStatus = 'enabled' | 'disabled';

export interface DeviceRecord {
  readonly deviceId: string;
  readonly generationId: string;
  readonly version: number;
  readonly status: DeviceStatus;
  readonly statusReason: string | null;
  readonly statusUpdatedAt: number;
  readonly primaryKey: string;
  readonly secondaryKey: string;
  readonly createdAt: number;
  readonly lastActivityAt: number | null;
  readonly connectionStateUpdatedAt: number | null;
}

export interface TwinRecord {
  readonly deviceId: string;
  readonly version: number;
  readonly tags: JsonObject;
  readonly desired: JsonObject;
  readonly reported: JsonObject;
  readonly desiredVersion: number;
  readonly reportedVersion: number;
  readonly desiredMeta: Metadata;
  readonly reportedMeta: Metadata;
}

/** Fields of a device identity a caller may set (the REST body of PUT /devices/{id}). */
export interface DeviceInput {
  status?: unknown;
  statusReason?: unknown;
  authentication?: unknown;
}

// IoT Hub: up to 128 characters, ASCII letters and digits plus - . + % _ # * ? ! ( ) , : = @ $ '
const DEVICE_ID = /^[A-Za-z0-9\-.+%_#*?!(),:=@$']{1,128}$/;
const NEVER = '0001-01-01T00:00:00Z';

export function newKey(): string {
  return randomBytes(32).toString('base64');
}

/** IoT Hub-style etag: base64 of the record's version, so it changes with every write. */
export function etagOf(version: number): string {
  const buf = Buffer.alloc(8);
  buf.writeBigUInt64BE(BigInt(version));
  return buf.toString('base64');
}

function iso(ms: number | null): string {
  return ms === null ? NEVER : new Date(ms).toISOString();
}

interface DeviceRow {
  device_id: string;
  generation_id: string;
  version: number;
  status: string;
  status_reason: string | null;
  status_updated_at: number;
  primary_key: string;
  secondary_key: string;
  created_at: number;
  last_activity_at: number | null;
  connection_state_updated_at: number | null;
}

interface TwinRow {
  device_id: string;
  version: number;
  tags: string;
  desired: string;
  reported: string;
  desired_version: number;
  reported_version: number;
  desired_meta: string;
  reported_meta: string;
}

function toDevice(r: DeviceRow): DeviceRecord {
  return {
    deviceId: r.device_id,
    generationId: r.generation_id,
    version: r.version,
    status: r.status === 'disabled' ? 'disabled' : 'enabled',
    statusReason: r.status_reason,
    statusUpdatedAt: r.status_updated_at,
    primaryKey: r.primary_key,
    secondaryKey: r.secondary_key,
    createdAt: r.created_at,
    lastActivityAt: r.last_activity_at,
    connectionStateUpdatedAt: r.connection_state_updated_at,
  };
}

function toTwin(r: TwinRow): TwinRecord {
  return {
    deviceId: r.device_id,
    version: r.version,
    tags: JSON.parse(r.tags) as JsonObject,
    desired: JSON.parse(r.desired) as JsonObject,
    reported: JSON.parse(r.reported) as JsonObject,
    desiredVersion: r.desired_version,
    reportedVersion: r.reported_version,
    desiredMeta: JSON.parse(r.desired_meta) as Metadata,
    reportedMeta: JSON.parse(r.reported_meta) as Metadata,
  };
}

export interface TwinServicePatch {
  tags?: unknown;
  properties?: { desired?: unknown };
}

export type DesiredListener = (deviceId: string, patch: JsonObject) => void;

/** Device identities and their twins: the hub's registry, persisted in SQLite. */
export class DeviceRegistry {
  private readonly desiredListeners = new Set<DesiredListener>();
  private readonly connected = new Map<string, number>();
  /** Status per device id (undefined: not registered), read on every AMQP message. */
  private readonly statusCache = new Map<string, DeviceStatus | undefined>();
  private readonly lastTouched = new Map<string, number>();

  constructor(
    private readonly db: Db,
    private readonly now: () => number,
  ) {}

  onDesiredPatch(listener: DesiredListener): () => void {
    this.desiredListeners.add(listener);
    return () => this.desiredListeners.delete(listener);
  }

  get(deviceId: string): DeviceRecord | undefined {
    const row = prepared(this.db, 'SELECT * FROM devices WHERE device_id = ?').get(deviceId) as DeviceRow | undefined;
    return row ? toDevice(row) : undefined;
  }

  /** enabled, disabled, or undefined when not registered; cached, as every message asks. */
  status(deviceId: string): DeviceStatus | undefined {
    if (!this.statusCache.has(deviceId)) this.statusCache.set(deviceId, this.get(deviceId)?.status);
    return this.statusCache.get(deviceId);
  }

  require(deviceId: string): DeviceRecord {
    const device = this.get(deviceId);
    if (!device) throw new HubError('DeviceNotFound', `Device ${deviceId} not registered`);
    return device;
  }

  list(): DeviceRecord[] {
    return (prepared(this.db, 'SELECT * FROM devices ORDER BY device_id').all() as DeviceRow[]).map(toDevice);
  }

  count(): number {
    return (prepared(this.db, 'SELECT COUNT(*) AS n FROM devices').get() as { n: number }).n;
  }

  create(deviceId: string, input: DeviceInput = {}): DeviceRecord {
    if (!DEVICE_ID.test(deviceId)) {
      throw new HubError('ArgumentInvalid', `Device id "${deviceId.slice(0, 140)}" is invalid: 1-128 ASCII letters, digits or -.+%_#*?!(),:=@$'`);
    }
    const status = parseStatus(input.status) ?? 'enabled';
    const keys = parseKeys(input.authentication);
    const now = this.now();
    const empty = JSON.stringify({});
    this.statusCache.delete(deviceId);
    return this.db.transaction(() => {
      if (this.get(deviceId)) throw new HubError('DeviceAlreadyExists', `A device with ID '${deviceId}' is already registered`);
      prepared(this.db, 
          `INSERT INTO devices (device_id, generation_id, version, status, status_reason, status_updated_at,
             primary_key, secondary_key, created_at) VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?)`,
        )
        .run(deviceId, `6${randomBytes(8).readBigUInt64BE() % 10n ** 17n}`, status, parseReason(input.statusReason), now,
          keys.primary || newKey(), keys.secondary || newKey(), now);
      prepared(this.db, 
          `INSERT INTO twins (device_id, version, tags, desired, reported, desired_version, reported_version,
             desired_meta, reported_meta) VALUES (?, 1, ?, ?, ?, 1, 1, ?, ?)`,
        )
        .run(deviceId, empty, empty, empty, JSON.stringify({ $lastUpdated: new Date(now).toISOString() }),
          JSON.stringify({ $lastUpdated: new Date(now).toISOString() }));
      return this.require(deviceId);
    })();
  }

  /** PUT with If-Match: `*` or the current etag; keys left empty keep their value. */
  update(deviceId: string, input: DeviceInput, ifMatch: string): DeviceRecord {
    this.statusCache.delete(deviceId);
    return this.db.transaction(() => {
      const current = this.require(deviceId);
      checkEtag(ifMatch, etagOf(current.version), `device ${deviceId}`);
      const status = parseStatus(input.status) ?? current.status;
      const keys = parseKeys(input.authentication);
      const now = this.now();
      prepared(this.db, 
          `UPDATE devices SET version = version + 1, status = ?, status_reason = ?, status_updated_at = ?,
             primary_key = ?, secondary_key = ? WHERE device_id = ?`,
        )
        .run(status, input.statusReason === undefined ? current.statusReason : parseReason(input.statusReason),
          status === current.status ? current.statusUpdatedAt : now,
          keys.primary || current.primaryKey, keys.secondary || current.secondaryKey, deviceId);
      return this.require(deviceId);
    })();
  }

  /** Deletes after the etag check; `beforeDelete` (e.g. purging the C2D queue) runs in between. */
  delete(deviceId: string, ifMatch: string, beforeDelete: () => void = () => undefined): void {
    this.statusCache.delete(deviceId);
    this.lastTouched.delete(deviceId);
    this.db.transaction(() => {
      const current = this.require(deviceId);
      checkEtag(ifMatch, etagOf(current.version), `device ${deviceId}`);
      beforeDelete();
      prepared(this.db, 'DELETE FROM devices WHERE device_id = ?').run(deviceId);
    })();
    this.connected.delete(deviceId);
  }

  markConnected(deviceId: string, connected: boolean): void {
    const before = this.connected.get(deviceId) ?? 0;
    const after = Math.max(0, before + (connected ? 1 : -1));
    if (after === 0) this.connected.delete(deviceId);
    else this.connected.set(deviceId, after);
    if ((before === 0) !== (after === 0)) {
      prepared(this.db, 'UPDATE devices SET connection_state_updated_at = ? WHERE device_id = ?').run(this.now(), deviceId);
    }
  }

  isConnected(deviceId: string): boolean {
    return this.connected.has(deviceId);
  }

  /** Records activity; at most one write a second per device, since every message calls it. */
  touch(deviceId: string): void {
    const now = this.now();
    if (now - (this.lastTouched.get(deviceId) ?? -Infinity) < 1000) return;
    this.lastTouched.set(deviceId, now);
    prepared(this.db, 'UPDATE devices SET last_activity_at = ? WHERE device_id = ?').run(now, deviceId);
  }

  getTwin(deviceId: string): TwinRecord {
    const row = prepared(this.db, 'SELECT * FROM twins WHERE device_id = ?').get(deviceId) as TwinRow | undefined;
    if (!row) throw new HubError('DeviceNotFound', `Device ${deviceId} not registered`);
    return toTwin(row);
  }

  /** Service-side PATCH /twins/{id}: tags and desired properties, etag-checked. */
  patchTwin(deviceId: string, patch: TwinServicePatch, ifMatch: string): TwinRecord {
    if (!isObject(patch)) throw new HubError('ArgumentInvalid', 'twin patch must be a JSON object');
    const unknown = Object.keys(patch).filter((k) => !['tags', 'properties', 'deviceId', 'etag', 'version'].includes(k));
    if (unknown.length > 0) throw new HubError('ArgumentInvalid', `twin patch has unsupported fields: ${unknown.join(', ')}`);
    const props = patch.properties;
    if (props !== undefined && !isObject(props)) throw new HubError('ArgumentInvalid', 'properties must be an object');
    if (props && 'reported' in props) throw new HubError('ArgumentInvalid', 'reported properties can only be written by the device');
    const tags = patch.tags === undefined ? undefined : validatePatch(patch.tags, 'tags');
    const desired = props?.desired === undefined ? undefined : validatePatch(stripVersion(props.desired), 'properties.desired');
    let pushed: JsonObject | undefined;
    const twin = this.db.transaction(() => {
      const current = this.getTwin(deviceId);
      checkEtag(ifMatch, etagOf(current.version), `twin ${deviceId}`);
      const stamp = new Date(this.now()).toISOString();
      let next = { ...current };
      if (tags) {
        const merged = mergeWithMetadata(current.tags, {}, tags, { lastUpdated: stamp });
        checkSize(merged.value, 'tags', TAGS_MAX_BYTES);
        next = { ...next, tags: merged.value };
      }
      if (desired && Object.keys(desired).length > 0) {
        const version = current.desiredVersion + 1;
        const merged = mergeWithMetadata(current.desired, current.desiredMeta, desired, { lastUpdated: stamp, version });
        checkSize(merged.value, 'properties.desired');
        next = { ...next, desired: merged.value, desiredMeta: merged.meta, desiredVersion: version };
        pushed = { ...desired, $version: version };
      }
      return this.saveTwin({ ...next, version: current.version + 1 });
    })();
    if (pushed) this.emitDesired(deviceId, pushed);
    return twin;
  }

  /** Service-side PUT /twins/{id}: replaces tags and desired properties. */
  replaceTwin(deviceId: string, body: TwinServicePatch, ifMatch: string): TwinRecord {
    if (!isObject(body)) throw new HubError('ArgumentInvalid', 'twin must be a JSON object');
    const tags = validatePatch(body.tags ?? {}, 'tags');
    const desired = validatePatch(stripVersion(isObject(body.properties) ? (body.properties.desired ?? {}) : {}), 'properties.desired');
    let pushed: JsonObject | undefined;
    const twin = this.db.transaction(() => {
      const current = this.getTwin(deviceId);
      checkEtag(ifMatch, etagOf(current.version), `twin ${deviceId}`);
      const stamp = new Date(this.now()).toISOString();
      const version = current.desiredVersion + 1;
      const replaced = replaceWithMetadata(desired, { lastUpdated: stamp, version });
      checkSize(tags, 'tags', TAGS_MAX_BYTES);
      checkSize(replaced.value, 'properties.desired');
      pushed = { ...replaced.value, $version: version };
      return this.saveTwin({
        ...current,
        version: current.version + 1,
        tags: replaceWithMetadata(tags, { lastUpdated: stamp }).value,
        desired: replaced.value,
        desiredMeta: replaced.meta,
        desiredVersion: version,
      });
    })();
    // A replacement can remove keys; a full-document push is what IoT Hub sends the device.
    if (pushed) this.emitDesired(deviceId, pushed);
    return twin;
  }

  /** Device-side reported-property patch (AMQP twin PATCH /properties/reported). */
  patchReported(deviceId: string, patch: unknown): TwinRecord {
    const reported = validatePatch(stripVersion(patch), 'properties.reported');
    return this.db.transaction(() => {
      const current = this.getTwin(deviceId);
      const stamp = new Date(this.now()).toISOString();
      const merged = mergeWithMetadata(current.reported, current.reportedMeta, reported, { lastUpdated: stamp });
      checkSize(merged.value, 'properties.reported');
      return this.saveTwin({
        ...current,
        version: current.version + 1,
        reported: merged.value,
        reportedMeta: merged.meta,
        reportedVersion: current.reportedVersion + 1,
      });
    })();
  }

  private saveTwin(t: TwinRecord): TwinRecord {
    prepared(this.db, 
        `UPDATE twins SET version = ?, tags = ?, desired = ?, reported = ?, desired_version = ?, reported_version = ?,
           desired_meta = ?, reported_meta = ? WHERE device_id = ?`,
      )
      .run(t.version, JSON.stringify(t.tags), JSON.stringify(t.desired), JSON.stringify(t.reported), t.desiredVersion,
        t.reportedVersion, JSON.stringify(t.desiredMeta), JSON.stringify(t.reportedMeta), t.deviceId);
    return t;
  }

  private emitDesired(deviceId: string, patch: JsonObject): void {
    for (const listener of this.desiredListeners) listener(deviceId, patch);
  }

  /** The device identity as IoT Hub's REST API returns it. */
  deviceJson(d: DeviceRecord, c2dQueued: number): JsonObject {
    return {
      deviceId: d.deviceId,
      moduleId: null,
      generationId: d.generationId,
      etag: etagOf(d.version),
      connectionState: this.isConnected(d.deviceId) ? 'Connected' : 'Disconnected',
      status: d.status,
      statusReason: d.statusReason,
      connectionStateUpdatedTime: iso(d.connectionStateUpdatedAt),
      statusUpdatedTime: iso(d.statusUpdatedAt),
      lastActivityTime: iso(d.lastActivityAt),
      cloudToDeviceMessageCount: c2dQueued,
      authentication: {
        symmetricKey: { primaryKey: d.primaryKey, secondaryKey: d.secondaryKey },
        x509Thumbprint: { primaryThumbprint: null, secondaryThumbprint: null },
        type: 'sas',
      },
      capabilities: { iotEdge: false },
    };
  }

  /** The twin as IoT Hub's REST API returns it. */
  twinJson(t: TwinRecord, c2dQueued: number): JsonObject {
    const d = this.require(t.deviceId);
    return {
      deviceId: t.deviceId,
      etag: etagOf(t.version),
      deviceEtag: etagOf(d.version),
      status: d.status,
      statusUpdateTime: iso(d.statusUpdatedAt),
      connectionState: this.isConnected(t.deviceId) ? 'Connected' : 'Disconnected',
      lastActivityTime: iso(d.lastActivityAt),
      cloudToDeviceMessageCount: c2dQueued,
      authenticationType: 'sas',
      x509Thumbprint: { primaryThumbprint: null, secondaryThumbprint: null },
      modelId: '',
      version: t.version,
      tags: t.tags,
      properties: {
        desired: { ...t.desired, $metadata: t.desiredMeta, $version: t.desiredVersion },
        reported: { ...t.reported, $metadata: t.reportedMeta, $version: t.reportedVersion },
      },
      capabilities: { iotEdge: false },
    };
  }

  /** The twin as the device sees it over AMQP (GET on the twin link). */
  deviceTwinDocument(deviceId: string): JsonObject {
    const t = this.getTwin(deviceId);
    return {
      desired: { ...t.desired, $version: t.desiredVersion },
      reported: { ...t.reported, $version: t.reportedVersion },
    };
  }
}

function stripVersion(patch: unknown): unknown {
  if (!isObject(patch)) return patch;
  const { $version: _v, $metadata: _m, ...rest } = patch;
  return rest;
}

function checkSize(section: JsonObject, name: string, max = TWIN_SECTION_MAX_BYTES): void {
  const size = sectionSize(section);
  if (size > max) {
    throw new HubError('ArgumentInvalid', `${name} would be ${size} bytes; IoT Hub allows ${max}`);
  }
}

function checkEtag(ifMatch: string, current: string, what: string): void {
  const given = ifMatch.trim().replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
  if (given === '*' || given === current) return;
  throw new HubError('PreconditionFailed', `Precondition failed: ${what} has etag "${current}", the request carried "${given}"`);
}

function parseStatus(v: unknown): DeviceStatus | undefined {
  if (v === undefined || v === null) return undefined;
  if (v === 'enabled' || v === 'disabled') return v;
  throw new HubError('ArgumentInvalid', `status must be "enabled" or "disabled", not ${JSON.stringify(v)}`);
}

function parseReason(v: unknown): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string' || v.length > 128) throw new HubError('ArgumentInvalid', 'statusReason must be a string of at most 128 characters');
  return v;
}

function parseKeys(auth: unknown): { primary: string; secondary: string } {
  if (auth === undefined || auth === null) return { primary: '', secondary: '' };
  if (!isObject(auth)) throw new HubError('ArgumentInvalid', 'authentication must be an object');
  const type = auth.type ?? 'sas';
  if (type !== 'sas') {
    throw new HubError('ArgumentInvalid', `authentication type "${String(type)}" is not supported by the local hub (only "sas")`);
  }
  const sym = auth.symmetricKey;
  if (sym === undefined || sym === null) return { primary: '', secondary: '' };
  if (!isObject(sym)) throw new HubError('ArgumentInvalid', 'authentication.symmetricKey must be an object');
  const check = (k: unknown, name: string): string => {
    if (k === undefined || k === null || k === '') return '';
    if (typeof k !== 'string') throw new HubError('ArgumentInvalid', `${name} must be a base64 string`);
    const raw = Buffer.from(k, 'base64');
    if (raw.length < 16 || raw.length > 64 || raw.toString('base64') !== k) {
      throw new HubError('ArgumentInvalid', `${name} must be base64 of 16 to 64 bytes`);
    }
    return k;
  };
  return { primary: check(sym.primaryKey, 'primaryKey'), secondary: check(sym.secondaryKey, 'secondaryKey') };
}
