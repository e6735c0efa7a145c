/**
 * One measured round of the locations-ingest benchmark, in its own process (forked by run.ts,
 * job as JSON in argv[2]) so that rounds share no heap, no geolocator cache and no JIT state,
 * and the RSS figures are this round's alone. Sends one RoundResult (or RoundFailed) and exits.
 *
 *   lookups: every record's masked address (pre-read, not timed) through geolocator.locate(),
 *            a fresh geolocator (its per-/24 cache starts empty, as in an ingest round);
 *   uncached: the same addresses, one database lookup each with no cache anywhere: maxmind's
 *            Reader (mmdb-lib) built directly on the DB-IP files without a cache (maxmind.open
 *            always puts a 10,000-entry LRU of decoded records in front, `max: 0` included), the
 *            masked part replaced as the geolocator does (a.b.c.XXX → a.b.c.128, a /64's
 *            XXXX groups → its midpoint a:b:c:d:8000::), getWithPrefixLength() per record;
 *   parse:   the parse floor, the least any ingest of this format must do:
 *            readResourceLogRecords(createReadStream(file)) and JSON.parse(record.properties)
 *            of every record, nothing else;
 *   ingest:  the history file through readResourceLogRecords(createReadStream(file)) →
 *            ConnectionLogIngest (fresh LocationStore in an empty directory, fresh geolocator),
 *            then LocationTagWriter.flush() into a stand-in hub whose patchTags resolves at once.
 */
import { createReadStream, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { systemClock } from '../../common/clock.js';
import { FieldlinkError } from '../../common/errors.js';
import { createLogger } from '../../common/log.js';
import type { FleetHub, HubTwin, JsonObject } from '../../cloud/src/fleet-hub.js';
import { Reader } from 'maxmind';
import { defaultDatabaseFiles, openIpGeolocator, type DbipCityRecord, type IpGeolocator } from '../../cloud/src/locations/ip-geolocation.js';
import { createLocationServices } from '../../cloud/src/locations/location-services.js';
import { LocationStore } from '../../cloud/src/locations/location-store.js';
import { readResourceLogRecords } from '../../cloud/src/locations/record-stream.js';
import type { RoundJob, RoundResult } from './protocol.js';

const gc = (globalThis as { gc?: () => void }).gc;

function lines(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out = text.split('\n');
  if (out.at(-1) === '') out.pop();
  return out;
}

/** Samples RSS (and heap) every `ms` while the timed part runs. */
function rssSampler(ms: number): { stop: () => { peak: number; heapAtPeak: number; samples: number } } {
  let peak = 0;
  let heapAtPeak = 0;
  let samples = 0;
  const take = (): void => {
    const m = process.memoryUsage();
    samples++;
    if (m.rss > peak) {
      peak = m.rss;
      heapAtPeak = m.heapUsed;
    }
  };
  take();
  const timer = setInterval(take, ms);
  return {
    stop: () => {
      clearInterval(timer);
      take();
      return { peak, heapAtPeak, samples };
    },
  };
}

/** A FleetHub that knows the fleet's devices and takes tag writes at once (IoT Hub's throttle is not ours to measure). */
function standInHub(devices: ReadonlySet<string>): Pick<FleetHub, 'patchTags'> & { written: number } {
  const hub = {
    written: 0,
    patchTags(deviceId: string, patch: JsonObject): Promise<HubTwin> {
      if (!devices.has(deviceId)) return Promise.reject(new FieldlinkError('DEVICE_NOT_FOUND', { message: `gateway "${deviceId}" is not registered` }));
      hub.written++;
      return Promise.resolve({ deviceId, etag: '*', desired: {}, reported: {}, tags: patch, connectionState: undefined } as unknown as HubTwin);
    },
  };
  return hub;
}

function dirBytes(dir: string): number {
  return readdirSync(dir).reduce((s, f) => s + statSync(join(dir, f)).size, 0);
}

async function profiled<T>(file: string | undefined, work: () => Promise<T>): Promise<T> {
  if (file === undefined) return work();
  const session = new Session();
  session.connect();
  try {
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
    const out = await work();
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(file, JSON.stringify(profile));
    return out;
  } finally {
    session.disconnect();
  }
}

/**
 * Times `found` over every address (a synchronous loop: no timer fires during it, so the RSS
 * "peak" is the end's and maxRss is the process's high-water mark).
 */
function timedLoop(kind: 'lookups' | 'uncached', addresses: readonly string[], found: (address: string) => boolean): RoundResult {
  gc?.();
  const rssBefore = process.memoryUsage().rss;
  const t0 = performance.now();
  let located = 0;
  for (const a of addresses) if (found(a)) located++;
  const seconds = (performance.now() - t0) / 1000;
  const m = process.memoryUsage();
  return {
    type: 'result',
    kind,
    items: addresses.length,
    seconds,
    ingestSeconds: seconds,
    flushSeconds: 0,
    rssBefore,
    rssPeakSampled: m.rss,
    heapPeakSampled: m.heapUsed,
    samples: 1,
    maxRss: process.resourceUsage().maxRSS * 1024,
    located,
  };
}

function lookups(job: RoundJob, geolocator: IpGeolocator): RoundResult {
  return timedLoop('lookups', lines(job.input), (a) => geolocator.locate(a).kind === 'located');
}

/** x.y.z.XXX → x.y.z.128 and a:b:c:d:XXXX:XXXX:XXXX:XXXX → a:b:c:d:8000::, the addresses the geolocator substitutes. */
function substituted(address: string): string {
  if (address.endsWith('.XXX')) return `${address.slice(0, -3)}128`;
  if (address.endsWith(':XXXX:XXXX:XXXX:XXXX')) return `${address.slice(0, -19)}8000::`;
  return address;
}

interface DbipReader {
  getWithPrefixLength(ip: string): [DbipCityRecord | null, number];
}

/** One database lookup per record, no cache of answers or of decoded records. */
function uncached(job: RoundJob): RoundResult {
  const files = defaultDatabaseFiles();
  // No `cache` option: mmdb-lib's decoder then caches nothing (maxmind.open would add a 10,000-entry LRU).
  // maxmind types records as MaxMind's own GeoIP2 shapes; DB-IP's files hold DbipCityRecord.
  const v4 = new Reader(readFileSync(files.ipv4File)) as unknown as DbipReader;
  const v6 = new Reader(readFileSync(files.ipv6File)) as unknown as DbipReader;
  return timedLoop('uncached', lines(job.input), (a) => {
    const ip = substituted(a);
    const [record] = (ip.includes(':') ? v6 : v4).getWithPrefixLength(ip);
    return Boolean(record?.country_code);
  });
}

/** The parse floor: the streamed scan and both JSON.parse of every record (the record, then its `properties` string). */
async function parseFloor(job: RoundJob): Promise<RoundResult> {
  gc?.();
  const rssBefore = process.memoryUsage().rss;
  const sampler = rssSampler(job.sampleMs);
  const { items, withAddress, seconds } = await profiled(job.profileFile, async () => {
    const t0 = performance.now();
    let items = 0;
    let withAddress = 0;
    for await (const item of readResourceLogRecords(createReadStream(job.input))) {
      items++;
      if (!('value' in item)) continue;
      const properties = (item.value as { properties?: unknown } | null)?.properties;
      if (typeof properties !== 'string') continue;
      if (typeof (JSON.parse(properties) as { maskedIpAddress?: unknown } | null)?.maskedIpAddress === 'string') withAddress++;
    }
    return { items, withAddress, seconds: (performance.now() - t0) / 1000 };
  });
  const peak = sampler.stop();
  return {
    type: 'result',
    kind: 'parse',
    items,
    seconds,
    ingestSeconds: seconds,
    flushSeconds: 0,
    rssBefore,
    rssPeakSampled: peak.peak,
    heapPeakSampled: peak.heapAtPeak,
    samples: peak.samples,
    maxRss: process.resourceUsage().maxRSS * 1024,
    located: withAddress,
  };
}

async function ingest(job: RoundJob, geolocator: IpGeolocator): Promise<RoundResult> {
  const devices = new Set(lines(job.devicesFile));
  const hub = standInHub(devices);
  const store = LocationStore.open(job.storeDir);
  const services = createLocationServices({ store, geolocator, hub, clock: systemClock, log: createLogger({ name: 'bench-locations-ingest', level: 'warn' }) });
  try {
    gc?.();
    const rssBefore = process.memoryUsage().rss;
    const sampler = rssSampler(job.sampleMs);
    const { result, ingestSeconds, flushSeconds, tagsWritten } = await profiled(job.profileFile, async () => {
      const t0 = performance.now();
      const result = await services.ingest.ingest(readResourceLogRecords(createReadStream(job.input)));
      const t1 = performance.now();
      const tagsWritten = await services.tags.flush();
      const t2 = performance.now();
      return { result, ingestSeconds: (t1 - t0) / 1000, flushSeconds: (t2 - t1) / 1000, tagsWritten };
    });
    const peak = sampler.stop();
    const counts = store.counts();
    if (hub.written !== tagsWritten) throw new Error(`flush said ${tagsWritten} tags written, the hub took ${hub.written}`);
    return {
      type: 'result',
      kind: 'ingest',
      items: result.received,
      seconds: ingestSeconds + flushSeconds,
      ingestSeconds,
      flushSeconds,
      rssBefore,
      rssPeakSampled: peak.peak,
      heapPeakSampled: peak.heapAtPeak,
      samples: peak.samples,
      maxRss: process.resourceUsage().maxRSS * 1024,
      located: 0,
      ingest: {
        received: result.received,
        accepted: result.accepted,
        duplicates: result.duplicates,
        skipped: result.skipped,
        rejected: result.rejected,
        failedConnects: result.failedConnects,
        devicesUpdated: result.devicesUpdated,
        locationsChanged: result.locationsChanged,
        eventsStored: counts.events,
        devicesStored: counts.devices,
        tagsWritten,
        tagsNoDevice: services.tags.counts.noDevice,
        storeBytes: dirBytes(job.storeDir),
      },
    };
  } finally {
    store.close();
  }
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2] ?? '') as RoundJob;
  let result: RoundResult;
  if (job.kind === 'uncached') result = uncached(job);
  else if (job.kind === 'parse') result = await parseFloor(job);
  else {
    const geolocator = await openIpGeolocator();
    result = job.kind === 'lookups' ? lookups(job, geolocator) : await ingest(job, geolocator);
  }
  process.send?.(result);
}

main().then(
  () => process.disconnect?.(),
  (err: unknown) => {
    process.send?.({ type: 'failed', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    process.exitCode = 1;
    process.disconnect?.();
  },
);
