/**
 * Where the installed base is and how each region trends (issue 9), from the per-device
 * aggregates the ingest keeps: devices per region (country / region / city), active ones,
 * onboardings (first connect) and offboardings (no connect for `offboardAfterDays`) per month,
 * and regions whose onboardings fell month on month for `declineMonths` months in a row — the
 * early sign of a reseller moving to a competitor.
 *
 * A device counts where its effective location is: the operator's override, else its last
 * logged address's. Devices without one are counted by why (private, reserved, unresolved, or
 * no address seen) and never placed.
 */
import { monthOf, type DeviceLocation, type DeviceRow } from './location-store.js';
import type { RegionAnalytics, RegionLevel, RegionMonth, RegionStats } from './region-analytics.js';

export interface AnalyticsQuery {
  level: RegionLevel;
  /** Months shown, the current one included. */
  months: number;
  offboardAfterDays: number;
  activeWithinDays: number;
  declineMonths: number;
}

export const DEFAULT_ANALYTICS_QUERY: AnalyticsQuery = { level: 'city', months: 12, offboardAfterDays: 30, activeWithinDays: 7, declineMonths: 3 };

const DAY_MS = 86_400_000;

/** yyyymm values of the `count` months ending with the month of `nowMs` (UTC), oldest first. */
export function monthWindow(nowMs: number, count: number): number[] {
  const d = new Date(nowMs);
  let y = d.getUTCFullYear();
  let m = d.getUTCMonth() + 1;
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    out.unshift(y * 100 + m);
    m -= 1;
    if (m === 0) {
      m = 12;
      y -= 1;
    }
  }
  return out;
}

export const monthLabel = (yyyymm: number): string => `${Math.floor(yyyymm / 100)}-${String(yyyymm % 100).padStart(2, '0')}`;

type Located = Extract<DeviceLocation, { status: 'located' }>;

function regionKey(loc: Located, level: RegionLevel): { key: string; region?: string | null; city?: string | null } {
  if (level === 'country') return { key: loc.country };
  if (level === 'region') return { key: `${loc.country}/${loc.region ?? '-'}`, region: loc.region };
  return { key: `${loc.country}/${loc.region ?? '-'}/${loc.city ?? '-'}`, region: loc.region, city: loc.city };
}

/**
 * The first month of a decline: each of the last `n` complete months had fewer onboardings
 * than the month before it. `counts` are the complete months' onboardings, oldest first.
 */
export function declineStart(counts: readonly number[], n: number): number | undefined {
  if (n < 1 || counts.length < n + 1) return undefined;
  const tail = counts.slice(counts.length - n - 1);
  for (let i = 1; i < tail.length; i++) if (!((tail[i] ?? 0) < (tail[i - 1] ?? 0))) return undefined;
  return counts.length - n;
}

interface Acc {
  stats: RegionStats;
  latSum: number;
  lonSum: number;
  located: number;
}

export function computeRegionAnalytics(
  devices: readonly DeviceRow[],
  activeMonths: ReadonlyMap<string, ReadonlySet<number>>,
  q: AnalyticsQuery,
  nowMs: number,
  attribution: { text: string; url: string },
): RegionAnalytics {
  const months = monthWindow(nowMs, q.months);
  const monthIndex = new Map(months.map((m, i) => [m, i]));
  const regions = new Map<string, Acc>();
  const unlocated = { private: 0, reserved: 0, unresolved: 0, unknown: 0 };

  for (const d of devices) {
    if (d.firstConnect === null || d.lastConnect === null) continue; // never connected successfully
    const offboarded = nowMs - d.lastConnect > q.offboardAfterDays * DAY_MS;
    const loc = d.override ?? d.ipLocation;
    if (loc === null || loc.status !== 'located') {
      if (!offboarded) unlocated[loc === null ? 'unknown' : loc.status]++;
      continue;
    }
    const k = regionKey(loc, q.level);
    let acc = regions.get(k.key);
    if (!acc) {
      const trend: RegionMonth[] = months.map((m) => ({ month: monthLabel(m), onboarded: 0, offboarded: 0, active: 0 }));
      const stats: RegionStats = { key: k.key, country: loc.country, latitude: 0, longitude: 0, accuracyKm: 0, devices: 0, active: 0, trend, declining: false, overridden: 0 };
      if (k.region !== undefined) stats.region = k.region;
      if (k.city !== undefined) stats.city = k.city;
      acc = { stats, latSum: 0, lonSum: 0, located: 0 };
      regions.set(k.key, acc);
    }
    const s = acc.stats;
    acc.latSum += loc.latitude;
    acc.lonSum += loc.longitude;
    acc.located++;
    s.accuracyKm = Math.max(s.accuracyKm, loc.accuracyKm);
    const onboardedAt = monthIndex.get(monthOf(d.firstConnect));
    if (onboardedAt !== undefined) (s.trend[onboardedAt] as RegionMonth).onboarded++;
    for (const m of activeMonths.get(d.deviceId) ?? []) {
      const i = monthIndex.get(m);
      if (i !== undefined) (s.trend[i] as RegionMonth).active++;
    }
    if (offboarded) {
      const i = monthIndex.get(monthOf(d.lastConnect));
      if (i !== undefined) (s.trend[i] as RegionMonth).offboarded++;
      continue;
    }
    s.devices++;
    if (nowMs - d.lastConnect <= q.activeWithinDays * DAY_MS) s.active++;
    if (d.override !== null) s.overridden++;
  }

  const out: RegionStats[] = [];
  for (const { stats, latSum, lonSum, located } of regions.values()) {
    stats.latitude = Math.round((latSum / located) * 1e4) / 1e4;
    stats.longitude = Math.round((lonSum / located) * 1e4) / 1e4;
    // The current month is incomplete: a decline is judged on complete months only.
    const start = declineStart(
      stats.trend.slice(0, -1).map((m) => m.onboarded),
      q.declineMonths,
    );
    if (start !== undefined) {
      stats.declining = true;
      stats.decliningSince = stats.trend[start]?.month ?? '';
    }
    out.push(stats);
  }
  out.sort((a, b) => b.devices - a.devices || a.key.localeCompare(b.key));
  return {
    level: q.level,
    asOf: new Date(nowMs).toISOString(),
    months: months.map(monthLabel),
    offboardAfterDays: q.offboardAfterDays,
    activeWithinDays: q.activeWithinDays,
    declineMonths: q.declineMonths,
    regions: out,
    unlocated,
    attribution,
  };
}

function csvField(value: string | number | boolean | null | undefined): string {
  if (value === null || value === undefined) return '';
  if (typeof value !== 'string') return String(value);
  // Names come from a database: a leading = + - @ would run as a spreadsheet formula.
  const safe = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\n\r']/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

/** One row per region: the summary, then onboardings and offboardings per month. */
export function regionAnalyticsCsv(a: RegionAnalytics): string {
  const header = [
    'key',
    'country',
    'region',
    'city',
    'latitude',
    'longitude',
    'accuracy_km',
    'devices',
    'active',
    'overridden',
    'declining',
    'declining_since',
    ...a.months.map((m) => `onboarded_${m}`),
    ...a.months.map((m) => `offboarded_${m}`),
  ];
  const rows = a.regions.map((r) => [
    r.key,
    r.country,
    r.region,
    r.city,
    r.latitude,
    r.longitude,
    r.accuracyKm,
    r.devices,
    r.active,
    r.overridden,
    r.declining,
    r.decliningSince,
    ...r.trend.map((m) => m.onboarded),
    ...r.trend.map((m) => m.offboarded),
  ]);
  return `${[header, ...rows].map((row) => row.map(csvField).join(',')).join('\r\n')}\r\n`;
}
