import { isIPv4, isIPv6 } from 'node:net';
import type { Logger } from '../../common/log.js';
import { prepared, type Db } from './db.js';
import { HubError } from './hub-errors.js';
import type { DeviceRegistry } from './registry.js';
import { isObject, type JsonObject } from './twin-patch.js';

/*
 * IoT Hub's `Connections` resource log, in the record shape Azure Monitor diagnostic settings
 * write (Microsoft's "Monitoring Azure IoT Hub data reference", and records exported from real
 * hubs): top-level `time`, `resourceId`, `operationName`, `category`, `level`, for errors
 * `resultType`/`resultDescription`, then `properties` as a JSON *string* whose `authType` is
 * itself a JSON string, and `location`.
 */

export type ConnectionOperation = 'deviceConnect' | 'deviceDisconnect';

/**
 * Why a device left: the client closed its connection (AMQP close), the socket went without a
 * close (network loss, the hub dropping connections), or its token expired unrenewed.
 */
export type DisconnectReason = 'closed' | 'dropped' | 'tokenExpired';

export interface ConnectionInfo {
  deviceId: string;
  /** As IoT Hub names them: Amqp, AmqpWs, Mqtt, MqttWs, Https. */
  protocol: string;
  /** The client's socket address as Node reports it (IPv4, IPv6 or IPv4-mapped IPv6). */
  remoteAddress: string | undefined;
  /** `device` for the device's own key, `hub` for a shared access policy with DeviceConnect. */
  authScope: 'device' | 'hub';
  /** The SDK's `com.microsoft:client-version`, when it sent one (IoT Hub logs it on connect). */
  sdkVersion?: string | undefined;
  /** deviceDisconnect only; `dropped` when not given. */
  reason?: DisconnectReason;
}

/** One record, field order as IoT Hub writes it. */
export interface ConnectionLogRecord {
  time: string;
  resourceId: string;
  operationName: ConnectionOperation;
  category: 'Connections';
  level: 'Information' | 'Error';
  resultType?: string;
  resultDescription?: string;
  /** JSON text of ConnectionLogProperties. */
  properties: string;
  location: string;
}

/** What `properties` holds once parsed; `authType` is JSON text of {scope, type, issuer, acceptingIpFilterRule}. */
export interface ConnectionLogProperties {
  deviceId: string;
  sdkVersion?: string;
  protocol: string;
  authType: string;
  maskedIpAddress: string | null;
  statusCode: string | null;
  errorMessage: string;
}

export interface ConnectionLogRetention {
  maxAgeMs: number;
  maxRecords: number;
}

/** A week and at most 100,000 records: enough to look back over a demo or a soak test. */
export const defaultConnectionLogRetention: ConnectionLogRetention = { maxAgeMs: 7 * 86400_000, maxRecords: 100_000 };

export const MAX_CONNECTION_LOG_PAGE = 1000;

/**
 * The twin tag path (`tags.fieldlink.publicIp`) that makes the hub log an address of your
 * choosing for a device: on loopback every client is 127.0.0.1, useless for location demos.
 * Nested because IoT Hub tag names may not contain '.'.
 */
export const PUBLIC_IP_TAG = 'fieldlink.publicIp';

/** The twin tags patch that sets (or, with null, removes) a device's logged public address. */
export function publicIpTagPatch(ip: string | null): JsonObject {
  return { fieldlink: { publicIp: ip } };
}

/** The address the tags substitute, if they carry one (anything but a dotted IPv4 is ignored). */
export function publicIpFromTags(tags: JsonObject): string | undefined {
  const ours = tags.fieldlink;
  const ip = isObject(ours) ? ours.publicIp : undefined;
  return typeof ip === 'string' && isIPv4(ip) ? ip : undefined;
}

/** The 8 groups of an IPv6 address, each as lower-case hex without leading zeros. */
function ipv6Groups(address: string): string[] | undefined {
  let text = address;
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    // Embedded dotted quad (::ffff:1.2.3.4, 64:ff9b::1.2.3.4): rewrite as its two hex groups.
    if (!isIPv4(tail)) return undefined;
    const [a = 0, b = 0, c = 0, d = 0] = tail.split('.').map(Number);
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const head = halves[0] ? halves[0].split(':') : [];
  const rest = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const groups = halves.length === 2 ? [...head, ...Array<string>(8 - head.length - rest.length).fill('0'), ...rest] : head;
  if (groups.length !== 8) return undefined;
  return groups.map((g) => parseInt(g, 16).toString(16));
}

/**
 * The client address as IoT Hub logs it. IPv4 keeps three octets and hides the last
 * (`203.0.113.XXX`); an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`, what a dual-stack
 * listener reports for IPv4 clients) is shown as the IPv4 it carries. For other IPv6 — whose
 * masked form IoT Hub does not document — the /64 network prefix is kept and the 64-bit
 * interface identifier hidden (`2001:db8:85a3:8d3:XXXX:XXXX:XXXX:XXXX`): like the IPv4 form it
 * still places the client's network but not the host. No or unparsable address gives null.
 */
export function maskIpAddress(address: string | undefined): string | null {
  if (!address) return null;
  const bare = address.replace(/%.*$/, ''); // zone id (fe80::1%eth0) names a local interface, not the client
  if (isIPv4(bare)) return `${bare.slice(0, bare.lastIndexOf('.'))}.XXX`;
  if (!isIPv6(bare)) return null;
  const groups = ipv6Groups(bare.toLowerCase());
  if (!groups) return null;
  if (groups.slice(0, 5).every((g) => g === '0') && groups[5] === 'ffff') {
    const hi = parseInt(groups[6] ?? '0', 16);
    const lo = parseInt(groups[7] ?? '0', 16);
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.XXX`;
  }
  return `${groups.slice(0, 4).join(':')}:XXXX:XXXX:XXXX:XXXX`;
}

/** The resource id of the local hub: a zero subscription and a FIELDLINK-LOCAL group, never a real one. */
export function localResourceId(hostName: string): string {
  return `/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/FIELDLINK-LOCAL/PROVIDERS/MICROSOFT.DEVICES/IOTHUBS/${hostName.toUpperCase()}`;
}

export const LOCAL_LOCATION = 'local';

/** The outcomes IoT Hub logs for disconnects (troubleshooting docs: 404104, 401003). */
export const disconnectOutcome: Record<DisconnectReason, { level: 'Information' | 'Error'; resultType?: string; resultDescription?: string; statusCode: string | null; errorMessage: string }> = {
  closed: { level: 'Information', statusCode: null, errorMessage: '' },
  dropped: {
    level: 'Error',
    resultType: '404104',
    resultDescription: 'DeviceConnectionClosedRemotely',
    statusCode: '404',
    errorMessage: 'Device disconnected, see cause and resolution at https://aka.ms/iothub404104',
  },
  tokenExpired: {
    level: 'Error',
    resultType: '401003',
    resultDescription: 'IoTHubUnauthorized',
    statusCode: '401',
    errorMessage: 'SAS token expired without a renewal, see cause and resolution at https://aka.ms/iothub401003',
  },
};

/**
 * Parses a `since` bound: milliseconds since the epoch, or an ISO 8601 date or date-time with
 * a zone (a zone-less time would be read in the hub's local zone, which nobody means).
 */
export function parseSince(value: string): number {
  const text = value.trim();
  let ms = Number.NaN;
  if (/^\d{1,16}$/.test(text)) ms = Number(text);
  else if (/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$/i.test(text)) ms = Date.parse(text);
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new HubError('ArgumentInvalid', `since must be milliseconds since 1970 or an ISO 8601 time with a zone (2024-05-01T12:00:00Z), not "${value.slice(0, 64)}"`);
  }
  return ms;
}

export interface ConnectionLogQuery {
  /** Records at or after this time (ms since the epoch). */
  sinceMs: number;
  /** Continue after this record (the `continuation` of the previous page). */
  afterSeq?: number;
  limit: number;
}

export interface ConnectionLogPage {
  records: ConnectionLogRecord[];
  /** Set when more records match: pass it as afterSeq for the next page. */
  continuation?: number;
}

/** Reads stored records oldest first; works on a hub's database whether or not the hub runs. */
export function readConnectionLog(db: Db, q: ConnectionLogQuery): ConnectionLogPage {
  const rows = prepared(db, 'SELECT seq, record FROM connection_log WHERE seq > ? AND time >= ? ORDER BY seq LIMIT ?').all(
    q.afterSeq ?? 0,
    q.sinceMs,
    q.limit + 1,
  ) as { seq: number; record: string }[];
  const page = rows.slice(0, q.limit);
  const last = page.at(-1);
  return {
    records: page.map((r) => JSON.parse(r.record) as ConnectionLogRecord),
    ...(rows.length > q.limit && last ? { continuation: last.seq } : {}),
  };
}

export interface ConnectionLogOptions {
  hostName: string;
  /** Twins are read for the public-ip tag; without a registry the socket address is logged. */
  registry?: Pick<DeviceRegistry, 'getTwin'>;
  retention?: ConnectionLogRetention;
  log?: Logger;
}

/** Device connect and disconnect records, stored with bounded retention. */
export class ConnectionLog {
  readonly resourceId: string;
  private insertsSincePrune = 0;
  private readonly retention: ConnectionLogRetention;

  constructor(
    private readonly db: Db,
    private readonly now: () => number,
    private readonly opts: ConnectionLogOptions,
  ) {
    this.resourceId = localResourceId(opts.hostName);
    this.retention = opts.retention ?? defaultConnectionLogRetention;
  }

  /**
   * Stores the record and returns it. Never throws: a log line that cannot be written is
   * reported on the hub log, and must not cost a device its connection.
   */
  record(operation: ConnectionOperation, info: ConnectionInfo): ConnectionLogRecord | undefined {
    try {
      const record = this.build(operation, info);
      prepared(this.db, 'INSERT INTO connection_log (time, record) VALUES (?, ?)').run(Date.parse(record.time), JSON.stringify(record));
      if (++this.insertsSincePrune >= 1000) this.prune();
      return record;
    } catch (err) {
      this.opts.log?.error({ err, deviceId: info.deviceId, operation }, 'connection log record not stored');
      return undefined;
    }
  }

  read(q: ConnectionLogQuery): ConnectionLogPage {
    return readConnectionLog(this.db, q);
  }

  /** Records at or after `sinceMs`, oldest first (one page of at most `limit`). */
  since(sinceMs: number, limit = MAX_CONNECTION_LOG_PAGE): ConnectionLogRecord[] {
    return readConnectionLog(this.db, { sinceMs, limit }).records;
  }

  prune(): void {
    this.insertsSincePrune = 0;
    prepared(this.db, 'DELETE FROM connection_log WHERE time < ?').run(this.now() - this.retention.maxAgeMs);
    prepared(this.db, 'DELETE FROM connection_log WHERE seq <= (SELECT MAX(seq) FROM connection_log) - ?').run(this.retention.maxRecords);
  }

  private build(operation: ConnectionOperation, info: ConnectionInfo): ConnectionLogRecord {
    const outcome = operation === 'deviceConnect' ? { level: 'Information' as const, statusCode: null, errorMessage: '' } : disconnectOutcome[info.reason ?? 'dropped'];
    const authType = JSON.stringify({ scope: info.authScope, type: 'sas', issuer: 'iothub', acceptingIpFilterRule: null });
    const properties: ConnectionLogProperties = {
      deviceId: info.deviceId,
      // IoT Hub reports the SDK only when the device connects.
      ...(operation === 'deviceConnect' && info.sdkVersion ? { sdkVersion: info.sdkVersion } : {}),
      protocol: info.protocol,
      authType,
      maskedIpAddress: maskIpAddress(this.publicIp(info.deviceId) ?? info.remoteAddress),
      statusCode: outcome.statusCode,
      errorMessage: outcome.errorMessage,
    };
    return {
      time: new Date(this.now()).toISOString(),
      resourceId: this.resourceId,
      operationName: operation,
      category: 'Connections',
      level: outcome.level,
      ...('resultType' in outcome ? { resultType: outcome.resultType, resultDescription: outcome.resultDescription } : {}),
      properties: JSON.stringify(properties),
      location: LOCAL_LOCATION,
    };
  }

  private publicIp(deviceId: string): string | undefined {
    if (!this.opts.registry) return undefined;
    let tags: JsonObject;
    try {
      tags = this.opts.registry.getTwin(deviceId).tags;
    } catch (err) {
      // Deleted while connected: its disconnect is still logged, with the socket's address.
      if (err instanceof HubError && err.code === 'DeviceNotFound') return undefined;
      throw err;
    }
    const ip = publicIpFromTags(tags);
    if (ip === undefined && isObject(tags.fieldlink) && tags.fieldlink.publicIp !== undefined) {
      this.opts.log?.warn({ deviceId, tag: `tags.${PUBLIC_IP_TAG}` }, 'public-ip tag is not a dotted IPv4 address; logging the socket address');
    }
    return ip;
  }
}
