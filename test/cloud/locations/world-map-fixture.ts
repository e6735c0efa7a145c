import type { RegionAnalytics, RegionLevel, RegionMonth, RegionStats } from '../../../cloud/src/locations/region-analytics.js';

/**
 * Region analytics as the companion would return them, for the map's unit test and the map
 * page's browser test: Japan holds most devices and Osaka is declining; one region name needs
 * XML escaping; one country has a single device; Singapore is too small for the 1:110m atlas.
 */

export const FIXTURE_MONTHS = ['2026-06', '2026-07', '2026-08', '2026-09', '2026-10', '2026-11'];

function trend(onboarded: number[], active: number): RegionMonth[] {
  return FIXTURE_MONTHS.map((month, i) => ({ month, onboarded: onboarded[i] ?? 0, offboarded: i === 3 ? 1 : 0, active }));
}

interface Row {
  key: string;
  country: string;
  region?: string | null;
  city?: string | null;
  latitude: number;
  longitude: number;
  accuracyKm: number;
  devices: number;
  active: number;
  onboarded: number[];
  declining?: string;
  overridden?: number;
}

const CITY_ROWS: Row[] = [
  { key: 'JP/Tokyo/Tokyo', country: 'JP', region: 'Tokyo', city: 'Tokyo', latitude: 35.69, longitude: 139.69, accuracyKm: 20, devices: 180, active: 170, onboarded: [20, 25, 30, 28, 35, 9] },
  { key: 'JP/Osaka/Osaka', country: 'JP', region: 'Osaka', city: 'Osaka', latitude: 34.69, longitude: 135.5, accuracyKm: 50, devices: 60, active: 41, onboarded: [14, 12, 9, 6, 3, 1], declining: '2026-08', overridden: 2 },
  { key: 'US/California/San Jose', country: 'US', region: 'California', city: 'San Jose', latitude: 37.34, longitude: -121.89, accuracyKm: 10, devices: 95, active: 90, onboarded: [10, 12, 15, 18, 20, 4] },
  { key: 'DE/Bavaria/Munich', country: 'DE', region: 'Bavaria', city: 'Munich', latitude: 48.14, longitude: 11.58, accuracyKm: 25, devices: 40, active: 38, onboarded: [5, 6, 7, 8, 9, 2] },
  { key: 'FR/Île-de-France/<Paris & "Co">', country: 'FR', region: 'Île-de-France', city: '<Paris & "Co">', latitude: 48.86, longitude: 2.35, accuracyKm: 100, devices: 12, active: 9, onboarded: [1, 2, 3, 2, 3, 1], overridden: 1 },
  { key: 'SG/Central/Singapore', country: 'SG', region: 'Central', city: 'Singapore', latitude: 1.29, longitude: 103.85, accuracyKm: 5, devices: 7, active: 7, onboarded: [1, 1, 1, 2, 1, 1] },
  { key: 'IS/Capital Region/Reykjavik', country: 'IS', region: 'Capital Region', city: 'Reykjavik', latitude: 64.15, longitude: -21.94, accuracyKm: 200, devices: 1, active: 0, onboarded: [0, 0, 1, 0, 0, 0] },
];

function keyAt(r: Row, level: RegionLevel): string {
  if (level === 'country') return r.country;
  if (level === 'region') return `${r.country}/${r.region ?? ''}`;
  return r.key;
}

/** The fixture at `level`: city rows merged into regions or countries (sums, worst accuracy, mean point). */
export function regionFixture(level: RegionLevel = 'city'): RegionAnalytics {
  const groups = new Map<string, Row[]>();
  for (const r of CITY_ROWS) groups.set(keyAt(r, level), [...(groups.get(keyAt(r, level)) ?? []), r]);
  const regions: RegionStats[] = [...groups].map(([key, rows]) => {
    const first = rows[0];
    if (!first) throw new Error('empty group');
    const devices = rows.reduce((s, r) => s + r.devices, 0);
    const onboarded = FIXTURE_MONTHS.map((_, i) => rows.reduce((s, r) => s + (r.onboarded[i] ?? 0), 0));
    const declining = rows.find((r) => r.declining)?.declining;
    // Japan as a whole is not declining (Tokyo grows); only Osaka is, at region and city level.
    const isDeclining = declining !== undefined && (level !== 'country' || first.country !== 'JP');
    return {
      key,
      country: first.country,
      ...(level === 'country' ? {} : { region: first.region ?? null }),
      ...(level === 'city' ? { city: first.city ?? null } : {}),
      latitude: rows.reduce((s, r) => s + r.latitude, 0) / rows.length,
      longitude: rows.reduce((s, r) => s + r.longitude, 0) / rows.length,
      accuracyKm: Math.max(...rows.map((r) => r.accuracyKm)),
      devices,
      active: rows.reduce((s, r) => s + r.active, 0),
      trend: trend(onboarded, rows.reduce((s, r) => s + r.active, 0)),
      declining: isDeclining,
      ...(isDeclining ? { decliningSince: declining } : {}),
      overridden: rows.reduce((s, r) => s + (r.overridden ?? 0), 0),
    };
  });
  regions.sort((x, y) => y.devices - x.devices);
  return {
    level,
    asOf: '2026-11-23T12:00:00.000Z',
    months: FIXTURE_MONTHS,
    offboardAfterDays: 90,
    activeWithinDays: 30,
    declineMonths: 3,
    regions,
    unlocated: { private: 4, reserved: 1, unresolved: 2, unknown: 3 },
    attribution: { text: 'IP geolocation by DB-IP', url: 'https://db-ip.com' },
  };
}
