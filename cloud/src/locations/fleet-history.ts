import { seededRandom } from '../../../common/seeded-random.js';
import { disconnectOutcome, localResourceId, maskIpAddress, type ConnectionLogProperties, type ConnectionLogRecord, type DisconnectReason } from '../../hub/connection-log.js';
import { formatIpv4 } from './ip-address.js';
import type { IpGeolocator, IpLocation } from './ip-geolocation.js';

/*
 * An emulated fleet's IoT Hub `Connections` resource log over months: gateways in a dozen
 * cities, onboarded at rates that grow, hold steady or decline by city, checking in
 * periodically, some leaving. For demos, tests and the analytics benchmark. Deterministic for a
 * seed; records are produced one at a time in time order, so a million of them never sit in
 * memory together.
 *
 * The addresses. Each city's gateways get real public addresses, chosen because the DB-IP
 * database the geolocator reads places their whole /24 in that city (so the masked form IoT Hub
 * logs, a.b.c.XXX, resolves there at city precision). They are found by scanning a few /16s
 * where this database release had the city (the hints below) and, if a later release moved
 * them, by sampling random /24s. They are only written into generated log records: nothing is
 * sent to them, and the records never leave the machine unless someone copies them.
 * A few gateways sit behind private or carrier-grade NAT addresses (the log then cannot place
 * them), and a few connect over Japanese mobile carriers (NTT DOCOMO 1.66.0.0/15 and
 * 1.72.0.0/13, KDDI 106.128.0.0/13, per APNIC's registry): the database places those at the
 * carrier, in Tokyo, wherever the gateway stands, which is the point of having them.
 */

export type GrowthProfile = 'growing' | 'steady' | 'declining';

export interface FleetSite {
  /** What the demo calls it. */
  name: string;
  /** Where the database puts it, spelt as the database spells it. */
  country: string;
  region: string;
  city: string;
  profile: GrowthProfile;
  /** Share of the fleet's fixed-line gateways (relative). */
  weight: number;
  /** /16s ("a.b") where dbip-city-lite@2026-06 places many whole /24s in this city. */
  hints: readonly string[];
}

// DB-IP names Tokyo's special wards as cities; most Tokyo blocks are in Chiyoda City.
export const FLEET_SITES: readonly FleetSite[] = [
  { name: 'Tokyo', country: 'JP', region: 'Tokyo', city: 'Chiyoda City', profile: 'growing', weight: 14, hints: ['27.228', '36.9', '59.106', '61.124'] },
  { name: 'Osaka', country: 'JP', region: 'Osaka', city: 'Osaka', profile: 'declining', weight: 12, hints: ['60.35', '133.42', '133.182', '101.140'] },
  { name: 'Nagoya', country: 'JP', region: 'Aichi', city: 'Nagoya', profile: 'growing', weight: 6, hints: ['115.39', '133.29', '133.111', '180.197'] },
  { name: 'Seoul', country: 'KR', region: 'Seoul', city: 'Seoul', profile: 'growing', weight: 8, hints: ['158.247', '64.176', '121.129', '113.198'] },
  { name: 'London', country: 'GB', region: 'England', city: 'London', profile: 'steady', weight: 10, hints: ['81.2', '9.131', '9.146', '9.166'] },
  { name: 'Manchester', country: 'GB', region: 'England', city: 'Manchester', profile: 'steady', weight: 4, hints: ['62.223', '31.121', '82.68'] },
  { name: 'Paris', country: 'FR', region: 'Ile-de-France', city: 'Paris', profile: 'steady', weight: 7, hints: ['37.173', '57.38', '57.43'] },
  { name: 'Berlin', country: 'DE', region: 'State of Berlin', city: 'Berlin', profile: 'steady', weight: 5, hints: ['78.55', '89.13', '89.14'] },
  { name: 'Munich', country: 'DE', region: 'Bavaria', city: 'Munich', profile: 'declining', weight: 6, hints: ['77.9', '77.178', '77.4'] },
  { name: 'New York', country: 'US', region: 'New York', city: 'New York', profile: 'steady', weight: 10, hints: ['12.83', '47.173', '75.95'] },
  { name: 'Chicago', country: 'US', region: 'Illinois', city: 'Chicago', profile: 'growing', weight: 6, hints: ['96.169', '100.130', '100.135'] },
  { name: 'Sao Paulo', country: 'BR', region: 'Sao Paulo', city: 'Sao Paulo', profile: 'growing', weight: 6, hints: ['177.28', '177.108', '179.121', '187.83'] },
  { name: 'Sydney', country: 'AU', region: 'New South Wales', city: 'Sydney', profile: 'growing', weight: 6, hints: ['206.149', '43.220', '60.228', '120.144'] },
];

const MOBILE_HINTS = ['1.66', '1.67', '1.72', '1.73', '1.75', '106.128', '106.129', '106.130'];

/** How gateways reach the hub: their own line, a private network, carrier-grade NAT, a mobile carrier. */
export type DeviceNetwork = 'fixed' | 'private' | 'cgnat' | 'mobile';

/** Shares of the fleet on networks the log cannot place at the site. */
const NETWORK_SHARES: Readonly<Record<Exclude<DeviceNetwork, 'fixed'>, number>> = { private: 0.03, cgnat: 0.02, mobile: 0.03 };

export interface FleetHistoryOptions {
  devices: number;
  months: number;
  /** Defaults to DEFAULT_FLEET_SEED. */
  seed?: number;
  /** End of the history (ms since the epoch); defaults to Date.now(). */
  now?: number;
  /** Check-ins (connect + disconnect) per device per month, on average; default 4. */
  checkinsPerMonth?: number;
  /** The hub's name in resourceId; default 'fieldlink-fleet'. */
  hubName?: string;
  /** The hub's Azure region, the records' `location`; default 'japaneast'. */
  location?: string;
  geolocator: IpGeolocator;
}

/** emulate-fleet-cli.ts repeats it (to load nothing until run); its test checks they agree. */
export const DEFAULT_FLEET_SEED = 20260605;

export interface PlannedDevice {
  deviceId: string;
  /** The FleetSite name where the gateway really stands. */
  site: string;
  network: DeviceNetwork;
  /** The full client address; only the masked form reaches the log. */
  address: string;
  maskedIpAddress: string;
  /** What the geolocator says for maskedIpAddress. */
  expected: IpLocation;
  /** Where an analysis grouping by the database's city counts it: "JP/Osaka/Osaka", or "private"/"reserved"/"unresolved". */
  locationKey: string;
  /** YYYY-MM of the first connect. */
  onboardedMonth: string;
  onboardedAt: number;
  /** No connects at or after this time; null when the gateway stays. */
  offboardedAt: number | null;
  protocol: string;
  sdkVersion: string;
}

export interface FleetPlan {
  seed: number;
  /** First instant of the history: the start of the first month (UTC). */
  from: number;
  now: number;
  checkinsPerMonth: number;
  resourceId: string;
  location: string;
  /** Every month of the history, YYYY-MM; the last is the current, incomplete one. */
  months: string[];
  /** The complete months whose onboardings define a decline (up to 4, the last complete month last). */
  trendMonths: string[];
  /** Sorted by onboardedAt. */
  devices: PlannedDevice[];
  /** locationKey → month → devices onboarded (first connect) in that month. */
  onboardings: Record<string, Record<string, number>>;
  /** locationKeys whose onboardings strictly decrease across trendMonths; only declining sites. */
  declining: string[];
}


function keyOf(loc: IpLocation): string {
  if (loc.kind !== 'located') return loc.kind;
  return [loc.country, loc.region, loc.city].filter((p): p is string => p !== null).join('/');
}

interface AddressPools {
  /** Per site name: /24s (value >>> 8) the database places in that city as a whole. */
  sites: Map<string, number[]>;
  mobile: number[];
}

const poolsByGeolocator = new WeakMap<IpGeolocator, AddressPools>();
const POOL_MAX = 64;
const SAMPLE_LOOKUPS_MAX = 400_000;

function slash24(a: number, b: number, c: number): number {
  return (a << 16) | (b << 8) | c;
}

/**
 * The /24s each site's gateways use, found once per geolocator (per process): the hint /16s
 * first, then random /24s (a fixed seed, at most SAMPLE_LOOKUPS_MAX lookups, about 1.5 s) for a
 * site the hints no longer cover.
 */
function addressPools(geo: IpGeolocator): AddressPools {
  const cached = poolsByGeolocator.get(geo);
  if (cached) return cached;
  const inSite = (loc: IpLocation, site: FleetSite): boolean =>
    loc.kind === 'located' && loc.precision === 'city' && loc.country === site.country && loc.region === site.region && loc.city === site.city;
  const sites = new Map<string, number[]>();
  for (const site of FLEET_SITES) {
    const pool: number[] = [];
    for (const hint of site.hints) {
      const [a = 0, b = 0] = hint.split('.').map(Number);
      for (let c = 0; c < 256 && pool.length < POOL_MAX; c++) if (inSite(geo.locate(`${a}.${b}.${c}.XXX`), site)) pool.push(slash24(a, b, c));
    }
    sites.set(site.name, pool);
  }
  const short = FLEET_SITES.filter((s) => (sites.get(s.name) ?? []).length < 4);
  const random = seededRandom(0x5eed);
  for (let n = 0; short.length > 0 && n < SAMPLE_LOOKUPS_MAX; n++) {
    const a = 1 + Math.floor(random() * 223);
    const b = Math.floor(random() * 256);
    const c = Math.floor(random() * 256);
    const loc = geo.locate(`${a}.${b}.${c}.XXX`);
    for (let i = short.length - 1; i >= 0; i--) {
      const site = short[i];
      if (!site || !inSite(loc, site)) continue;
      const pool = sites.get(site.name) ?? [];
      pool.push(slash24(a, b, c));
      if (pool.length >= 8) short.splice(i, 1);
    }
  }
  const missing = FLEET_SITES.filter((s) => (sites.get(s.name) ?? []).length === 0).map((s) => s.name);
  if (missing.length > 0) throw new Error(`${geo.source} places no sampled /24 in ${missing.join(', ')}; update FLEET_SITES`);
  const decliningKeys = new Set(FLEET_SITES.filter((s) => s.profile === 'declining').map((s) => `${s.country}/${s.region}/${s.city}`));
  const mobile: number[] = [];
  for (const hint of MOBILE_HINTS) {
    const [a = 0, b = 0] = hint.split('.').map(Number);
    for (let c = 0; c < 256 && mobile.length < POOL_MAX; c += 7) {
      const loc = geo.locate(`${a}.${b}.${c}.XXX`);
      if (loc.kind === 'located' && !decliningKeys.has(keyOf(loc))) mobile.push(slash24(a, b, c));
    }
  }
  const pools = { sites, mobile };
  poolsByGeolocator.set(geo, pools);
  return pools;
}

/**
 * Integer shares of n in proportion to weights, by rounding the running total: small groups are
 * spread over the months (1, 0, 1, 0, …) instead of bunching at one end.
 */
function apportion(n: number, weights: readonly number[]): number[] {
  const total = weights.reduce((s, w) => s + w, 0);
  if (n <= 0 || total <= 0) return weights.map(() => 0);
  let running = 0;
  let given = 0;
  return weights.map((w) => {
    running += w;
    const upTo = Math.round((n * running) / total);
    const count = upTo - given;
    given = upTo;
    return count;
  });
}

const MONTH_MS = 30.44 * 86_400_000;
const DAY_MS = 86_400_000;

function monthStart(index: number): number {
  return Date.UTC(Math.floor(index / 12), index % 12, 1);
}

function monthLabel(index: number): string {
  return `${Math.floor(index / 12)}-${String((index % 12) + 1).padStart(2, '0')}`;
}

/**
 * Onboardings per month (bucket) for one group of n devices. `trend` = how many complete
 * months before the current one define the trend. A declining profile gets an exact strictly
 * decreasing tail (k·trend, …, 2k, k, with about half the devices; or trend−1, …, 1, 0 for
 * a small group), the rest before it in a rising curve, and none in the current month; it needs
 * at least trend·(trend−1)/2 devices, else it is planned as steady.
 */
function monthlyOnboardings(n: number, profile: GrowthProfile, months: number, trend: number, currentFraction: number): { counts: number[]; declining: boolean } {
  const curve = (i: number): number => (profile === 'growing' ? 1 + (2 * i) / Math.max(1, months - 1) : 1) * (i === months - 1 ? currentFraction : 1);
  const minTail = (trend * (trend - 1)) / 2;
  if (profile !== 'declining' || trend < 2 || n < minTail || n === 0) {
    return { counts: apportion(n, Array.from({ length: months }, (_, i) => curve(i))), declining: false };
  }
  const triangle = (trend * (trend + 1)) / 2;
  const k = Math.floor((0.5 * n) / triangle);
  const tail = Array.from({ length: trend }, (_, j) => (k >= 1 ? (trend - j) * k : trend - 1 - j));
  const firstTail = months - 1 - trend;
  const before = Array.from({ length: firstTail }, (_, i) => 1 + i / Math.max(1, firstTail));
  const rest = n - tail.reduce((s, c) => s + c, 0);
  const counts = [...apportion(rest, before), ...tail, 0];
  if (firstTail === 0) counts[0] = (counts[0] ?? 0) + rest; // nothing before the tail: its first month takes the rest
  return { counts, declining: true };
}

interface Draft {
  site: string;
  network: DeviceNetwork;
  address: string;
  maskedIpAddress: string;
  expected: IpLocation;
  locationKey: string;
  bucket: number;
}

/** Who the fleet is, where, and when each gateway is onboarded and leaves: the ground truth. */
export function planFleet(opts: FleetHistoryOptions): FleetPlan {
  if (!Number.isSafeInteger(opts.devices) || opts.devices < 0) throw new RangeError(`devices must be a whole number ≥ 0, not ${opts.devices}`);
  if (!Number.isSafeInteger(opts.months) || opts.months < 1 || opts.months > 600) throw new RangeError(`months must be a whole number from 1 to 600, not ${opts.months}`);
  const checkinsPerMonth = opts.checkinsPerMonth ?? 4;
  if (!(checkinsPerMonth > 0 && checkinsPerMonth <= 3000)) throw new RangeError(`checkinsPerMonth must be over 0 and at most 3000, not ${checkinsPerMonth}`);
  const seed = opts.seed ?? DEFAULT_FLEET_SEED;
  const now = opts.now ?? Date.now();
  const random = seededRandom(seed);
  const geo = opts.geolocator;
  const pools = addressPools(geo);

  const nowDate = new Date(now);
  const current = nowDate.getUTCFullYear() * 12 + nowDate.getUTCMonth();
  const first = current - opts.months + 1;
  const months = Array.from({ length: opts.months }, (_, i) => monthLabel(first + i));
  const trend = Math.min(4, opts.months - 1);
  const currentFraction = (now - monthStart(current)) / (monthStart(current + 1) - monthStart(current));

  // Who is where, and on which network.
  const special = (Object.keys(NETWORK_SHARES) as (keyof typeof NETWORK_SHARES)[]).map((network) => ({ network, n: Math.round(opts.devices * NETWORK_SHARES[network]) }));
  const fixedTotal = Math.max(0, opts.devices - special.reduce((s, g) => s + g.n, 0));
  const perSite = apportion(fixedTotal, FLEET_SITES.map((s) => s.weight));
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
  const drafts: Draft[] = [];
  const draft = (site: string, network: DeviceNetwork, address: string, bucket: number): void => {
    const masked = maskIpAddress(address) ?? address;
    const expected = geo.locate(masked);
    drafts.push({ site, network, address, maskedIpAddress: masked, expected, locationKey: keyOf(expected), bucket });
  };
  const host = (block: number): string => formatIpv4(((block << 8) >>> 0) + 1 + Math.floor(random() * 254));
  const decliningKeys = new Set<string>();
  FLEET_SITES.forEach((site, s) => {
    const n = perSite[s] ?? 0;
    const plan = monthlyOnboardings(n, site.profile, opts.months, trend, currentFraction);
    if (plan.declining) decliningKeys.add(`${site.country}/${site.region}/${site.city}`);
    const pool = pools.sites.get(site.name) ?? [];
    plan.counts.forEach((count, bucket) => {
      for (let i = 0; i < count; i++) draft(site.name, 'fixed', host(pick(pool)), bucket);
    });
  });
  const japan = FLEET_SITES.filter((s) => s.country === 'JP').map((s) => s.name);
  for (const { network, n } of special) {
    const { counts } = monthlyOnboardings(n, 'steady', opts.months, trend, currentFraction);
    counts.forEach((count, bucket) => {
      for (let i = 0; i < count; i++) {
        if (network === 'mobile') draft(pick(japan), network, host(pick(pools.mobile)), bucket);
        else if (network === 'cgnat') draft(pick(FLEET_SITES).name, network, formatIpv4(0x64400000 + Math.floor(random() * 0x400000)), bucket);
        else draft(pick(FLEET_SITES).name, network, pick([`10.${Math.floor(random() * 256)}.${Math.floor(random() * 256)}.${1 + Math.floor(random() * 254)}`, `192.168.${Math.floor(random() * 256)}.${1 + Math.floor(random() * 254)}`]), bucket);
      }
    });
  }

  // Only the declining sites may decline: where other devices share a location (mobile ones
  // counted in Tokyo, all private ones together), make the last complete month at least
  // the one before it, moving onboardings from that month to the last.
  const last = opts.months - 2; // the last complete month's bucket
  if (trend >= 2) {
    const byKey = new Map<string, Draft[]>();
    for (const d of drafts) {
      const list = byKey.get(d.locationKey);
      if (list) list.push(d);
      else byKey.set(d.locationKey, [d]);
    }
    for (const [key, list] of byKey) {
      if (decliningKeys.has(key)) continue;
      const inBucket = (b: number): Draft[] => list.filter((d) => d.bucket === b);
      for (let guard = 0; guard < list.length && inBucket(last).length < inBucket(last - 1).length; guard++) {
        const moved = inBucket(last - 1)[0];
        if (moved) moved.bucket = last;
      }
    }
  }

  // When: a random time in the month, then maybe leaving a month or more later.
  const withTimes = drafts.map((d) => {
    const start = monthStart(first + d.bucket);
    const end = Math.min(monthStart(first + d.bucket + 1), now);
    const onboardedAt = Math.floor(start + random() * Math.max(1, end - start - 1));
    const leaveFrom = onboardedAt + 30 * DAY_MS;
    const leaveTo = now - 45 * DAY_MS;
    const offboardedAt = leaveTo > leaveFrom && random() < 0.1 ? Math.floor(leaveFrom + random() * (leaveTo - leaveFrom)) : null;
    const protocol = pick(['Mqtt', 'Mqtt', 'Mqtt', 'Mqtt', 'Mqtt', 'MqttWs', 'Amqp', 'Amqp', 'AmqpWs']);
    const sdkVersion = pick(SDK_VERSIONS);
    return { ...d, onboardedAt, offboardedAt, protocol, sdkVersion };
  });
  withTimes.sort((p, q) => p.onboardedAt - q.onboardedAt);
  // Ids in onboarding order say nothing about the site.
  const devices: PlannedDevice[] = withTimes.map(({ bucket, ...d }, i) => ({
    deviceId: `gw-${String(i + 1).padStart(6, '0')}`,
    site: d.site,
    network: d.network,
    address: d.address,
    maskedIpAddress: d.maskedIpAddress,
    expected: d.expected,
    locationKey: d.locationKey,
    onboardedMonth: months[bucket] ?? '',
    onboardedAt: d.onboardedAt,
    offboardedAt: d.offboardedAt,
    protocol: d.protocol,
    sdkVersion: d.sdkVersion,
  }));

  const onboardings: Record<string, Record<string, number>> = {};
  for (const d of devices) {
    const row = (onboardings[d.locationKey] ??= Object.fromEntries(months.map((m) => [m, 0])));
    row[d.onboardedMonth] = (row[d.onboardedMonth] ?? 0) + 1;
  }
  const trendMonths = trend >= 2 ? months.slice(last - trend + 1, last + 1) : [];
  const declining = Object.keys(onboardings)
    .filter((key) => trendMonths.length >= 2 && strictlyDecreasing(trendMonths.map((m) => onboardings[key]?.[m] ?? 0)))
    .sort();
  return {
    seed,
    from: monthStart(first),
    now,
    checkinsPerMonth,
    resourceId: localResourceId(opts.hubName ?? 'fieldlink-fleet'),
    location: opts.location ?? 'japaneast',
    months,
    trendMonths,
    devices,
    onboardings,
    declining,
  };
}

export function strictlyDecreasing(values: readonly number[]): boolean {
  return values.length >= 2 && values.every((v, i) => i === 0 || v < (values[i - 1] ?? 0));
}

const SDK_VERSIONS = [
  'azure-iot-device/1.18.4 (node v20.19.2; Debian GNU/Linux 12 (bookworm); arm64)',
  'azure-iot-device/1.18.4 (node v20.18.0; Raspbian GNU/Linux 12 (bookworm); arm)',
  'azure-iot-device/1.18.3 (node v20.12.2; Ubuntu 22.04.4 LTS; arm64)',
];


const AUTH_TYPE = JSON.stringify({ scope: 'device', type: 'sas', issuer: 'iothub', acceptingIpFilterRule: null });

/** A binary min-heap of device indexes ordered by their next event time, then index. */
class EventQueue {
  private readonly heap: number[] = [];
  constructor(private readonly at: Float64Array) {}
  get size(): number {
    return this.heap.length;
  }
  private less(a: number, b: number): boolean {
    const ta = this.at[a] ?? 0;
    const tb = this.at[b] ?? 0;
    return ta < tb || (ta === tb && a < b);
  }
  push(device: number): void {
    const h = this.heap;
    let i = h.push(device) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = h[parent] ?? 0;
      if (!this.less(device, p)) break;
      h[i] = p;
      i = parent;
    }
    h[i] = device;
  }
  pop(): number | undefined {
    const h = this.heap;
    const top = h[0];
    const end = h.pop();
    if (h.length === 0 || end === undefined) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const child = r < h.length && this.less(h[r] ?? 0, h[l] ?? 0) ? r : l;
      const c = h[child] ?? 0;
      if (!this.less(c, end)) break;
      h[i] = c;
      i = child;
    }
    h[i] = end;
    return top;
  }
}

/**
 * The log records of a fleet, oldest first (ties by device). Each gateway connects first at its
 * onboarding time, then checks in about `checkinsPerMonth` times a month (intervals jittered
 * ±40 %), each check-in a connect and, 2 to 25 minutes later, a disconnect: mostly closed by
 * the client, sometimes dropped or with an expired token. A session still open at `now` has no
 * disconnect yet. An offboarded gateway simply stops.
 */
export function* generateFleetHistory(opts: FleetHistoryOptions, plan: FleetPlan = planFleet(opts)): Generator<ConnectionLogRecord> {
  const devices = plan.devices;
  const at = new Float64Array(devices.length);
  const connected = new Uint8Array(devices.length);
  const rngs = devices.map((_, i) => seededRandom((plan.seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0));
  const queue = new EventQueue(at);
  devices.forEach((d, i) => {
    at[i] = d.onboardedAt;
    queue.push(i);
  });
  const interval = MONTH_MS / plan.checkinsPerMonth;
  // A device's properties differ only by operation and outcome: made once, not per record.
  const propertiesCache = new Map<string, string>();
  const propertiesText = (d: PlannedDevice, operation: 'deviceConnect' | 'deviceDisconnect', reason: DisconnectReason): string => {
    const key = `${d.deviceId}\0${operation}\0${reason}`;
    let text = propertiesCache.get(key);
    if (text === undefined) {
      const outcome = operation === 'deviceConnect' ? disconnectOutcome.closed : disconnectOutcome[reason];
      const properties: ConnectionLogProperties = {
        deviceId: d.deviceId,
        ...(operation === 'deviceConnect' ? { sdkVersion: d.sdkVersion } : {}),
        protocol: d.protocol,
        authType: AUTH_TYPE,
        maskedIpAddress: d.maskedIpAddress,
        statusCode: outcome.statusCode,
        errorMessage: outcome.errorMessage,
      };
      text = JSON.stringify(properties);
      if (propertiesCache.size >= 100_000) propertiesCache.clear(); // bounded: a big fleet recomputes some
      propertiesCache.set(key, text);
    }
    return text;
  };
  const record = (d: PlannedDevice, time: number, operation: 'deviceConnect' | 'deviceDisconnect', reason: DisconnectReason): ConnectionLogRecord => {
    const outcome = operation === 'deviceConnect' ? disconnectOutcome.closed : disconnectOutcome[reason];
    return {
      time: new Date(time).toISOString(),
      resourceId: plan.resourceId,
      operationName: operation,
      category: 'Connections',
      level: outcome.level,
      ...(outcome.resultType === undefined ? {} : { resultType: outcome.resultType, resultDescription: outcome.resultDescription ?? '' }),
      properties: propertiesText(d, operation, reason),
      location: plan.location,
    };
  };
  for (let i = queue.pop(); i !== undefined; i = queue.pop()) {
    const d = devices[i];
    const rng = rngs[i];
    if (!d || !rng) continue;
    const time = at[i] ?? 0;
    if (connected[i]) {
      const r = rng();
      yield record(d, time, 'deviceDisconnect', r < 0.92 ? 'closed' : r < 0.98 ? 'dropped' : 'tokenExpired');
      connected[i] = 0;
      const next = Math.floor(time + interval * (0.6 + 0.8 * rng()));
      if (next < plan.now && (d.offboardedAt === null || next < d.offboardedAt)) {
        at[i] = next;
        queue.push(i);
      }
    } else {
      yield record(d, time, 'deviceConnect', 'closed');
      connected[i] = 1;
      const end = Math.floor(time + (2 + 23 * rng()) * 60_000);
      if (end <= plan.now) {
        at[i] = end;
        queue.push(i);
      }
    }
  }
}
