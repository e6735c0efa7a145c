/**
 * Connection-log ingest (issue 9): records in (a streamed HTTP body, the local hub's log),
 * checked one by one (a bad record is reported with its index and reason; the good ones are
 * kept), de-duplicated by (device, time, operation), folded into per-device aggregates, and
 * each device whose address changed is located again offline. A device whose location changed
 * gets its twin tag written later by the tag writer (IoT Hub throttles twin writes; ingest never
 * waits for the hub).
 */
import type { Clock } from '../../../common/clock.js';
import type { Logger } from '../../../common/log.js';
import { checkConnectionRecord, type ConnectionEvent } from './connection-records.js';
import type { IpGeolocator, IpLocation } from './ip-geolocation.js';
import type { DeviceLocation, LocationStore } from './location-store.js';
import type { RecordItem } from './record-stream.js';

/** Per-record problems returned in full up to this many; the rest are counted. */
export const MAX_REPORTED_REJECTIONS = 100;
const BATCH = 5000;
/** The IP database release the stored locations come from. */
const DATABASE_KEY = 'ipDatabase';

export interface IngestResult {
  /** Records read from the document. */
  received: number;
  /** New connection events stored. */
  accepted: number;
  /** Events seen before (the same device, time and operation): counted once. */
  duplicates: number;
  /** Records of another category or operation, ignored. */
  skipped: number;
  rejected: number;
  /** The first MAX_REPORTED_REJECTIONS rejected records: index in the document and why. */
  rejections: { index: number; reason: string }[];
  /** Connects the hub refused (auth failures): stored, but neither activity nor a location. */
  failedConnects: number;
  /** Devices whose aggregates this ingest changed. */
  devicesUpdated: number;
  /** Devices whose location changed (their twin tags are written shortly). */
  locationsChanged: number;
}

function emptyResult(): IngestResult {
  return { received: 0, accepted: 0, duplicates: 0, skipped: 0, rejected: 0, rejections: [], failedConnects: 0, devicesUpdated: 0, locationsChanged: 0 };
}

/** What a located (or unlocatable) address becomes in the store and the twin tag. */
export function locationFromIp(loc: IpLocation, maskedIp: string): DeviceLocation {
  if (loc.kind !== 'located') return { status: loc.kind, source: 'ip', maskedIp, reason: loc.reason };
  return {
    status: 'located',
    source: 'ip',
    country: loc.country,
    region: loc.region,
    city: loc.city,
    latitude: Math.round(loc.latitude * 1e4) / 1e4,
    longitude: Math.round(loc.longitude * 1e4) / 1e4,
    accuracyKm: loc.accuracyKm,
    precision: loc.precision,
    maskedIp,
    database: loc.source,
  };
}

function sameLocation(a: DeviceLocation | null, b: DeviceLocation | null): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export interface ConnectionLogIngestOptions {
  store: LocationStore;
  geolocator: IpGeolocator;
  clock: Clock;
  log: Logger;
  /** Called after a batch that changed a location: the tag writer has work. */
  onLocationsChanged?: () => void;
}

export class ConnectionLogIngest {
  constructor(private readonly o: ConnectionLogIngestOptions) {}

  /** Reads every item; the store is updated batch by batch (a failure keeps the batches before it). */
  async ingest(items: AsyncIterable<RecordItem> | Iterable<RecordItem>): Promise<IngestResult> {
    const result = emptyResult();
    const touched = new Set<string>();
    let batch: ConnectionEvent[] = [];
    const reject = (index: number, reason: string): void => {
      result.rejected++;
      if (result.rejections.length < MAX_REPORTED_REJECTIONS) result.rejections.push({ index, reason });
    };
    const now = this.o.clock.now();
    try {
      for await (const item of items) {
        result.received++;
        if ('error' in item) {
          reject(item.index, `not valid JSON: ${item.error}`);
          continue;
        }
        const checked = checkConnectionRecord(item.value, now);
        if (checked.kind === 'skipped') result.skipped++;
        else if (checked.kind === 'rejected') reject(item.index, checked.reason);
        else {
          batch.push(checked.event);
          if (batch.length >= BATCH) {
            this.apply(batch, result, touched);
            batch = [];
            // Let requests in between batches: a 1,000,000-record document must not stall the API.
            await new Promise((resolve) => setImmediate(resolve));
          }
        }
      }
    } finally {
      // A document that breaks half-way keeps what came before the break (and a retry of the whole is idempotent).
      if (batch.length > 0) this.apply(batch, result, touched);
    }
    result.devicesUpdated = touched.size;
    return result;
  }

  /**
   * Locates every device again from its last address when the IP database release differs from
   * the one recorded (an update: stored locations follow the new data), and any device whose last
   * address was never located (a crash between storing events and locating them). Returns how
   * many effective locations changed; their tags are written by the tag writer.
   */
  relocateAll(): number {
    const { store, geolocator } = this.o;
    const newRelease = store.meta(DATABASE_KEY) !== geolocator.source;
    const ids = newRelease ? store.devices().map((d) => d.deviceId) : store.unlocated();
    const changed = this.locate(ids);
    if (newRelease) store.setMeta(DATABASE_KEY, geolocator.source);
    return changed;
  }

  /** Locates the devices from their last address; stores what changed. Returns how many effective locations changed. */
  private locate(ids: Iterable<string>): number {
    const { store, geolocator, clock } = this.o;
    let changed = 0;
    store.transaction(() => {
      const now = clock.now();
      for (const id of ids) {
        const row = store.device(id);
        if (row?.lastIp == null) continue;
        const location = locationFromIp(geolocator.locate(row.lastIp), row.lastIp);
        const same = sameLocation(location, row.ipLocation);
        if (same && row.locatedIp === row.lastIp) continue;
        const effectiveChanged = row.override === null && !same;
        store.setIpLocation(id, row.lastIp, location, now, effectiveChanged);
        if (effectiveChanged) changed++;
      }
    });
    if (changed > 0) this.o.onLocationsChanged?.();
    return changed;
  }

  private apply(events: readonly ConnectionEvent[], result: IngestResult, touched: Set<string>): void {
    const recorded = this.o.store.recordEvents(events);
    result.accepted += recorded.accepted;
    result.duplicates += recorded.duplicates;
    result.failedConnects += recorded.failedConnects;
    for (const id of recorded.devices) touched.add(id);
    // Only a new address can move a device: most batches locate nothing.
    if (recorded.addressChanged.length > 0) result.locationsChanged += this.locate(recorded.addressChanged);
  }
}
