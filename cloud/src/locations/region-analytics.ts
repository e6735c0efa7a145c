/**
 * The shape of the fleet-locations analytics (issue 9): what `GET /v1/analytics/regions`
 * returns, what the CSV export and the map page are made from. Computed by analytics.ts from the
 * stored connection history and each gateway's location.
 */

/** How finely regions are grouped: per country, per country + region (state, prefecture), per city. */
export const REGION_LEVELS = ['country', 'region', 'city'] as const;
export type RegionLevel = (typeof REGION_LEVELS)[number];

/** One calendar month (UTC) of a region's history. */
export interface RegionMonth {
  /** YYYY-MM, UTC. */
  month: string;
  /** Devices whose first-ever connect fell in this month. */
  onboarded: number;
  /** Devices whose last connect was in this month and that have not connected for `offboardAfterDays` since. */
  offboarded: number;
  /** Devices that connected at least once in this month. */
  active: number;
}

export interface RegionStats {
  /** Stable id: "JP", "JP/Osaka", "JP/Osaka/Osaka" (country / region / city names as the database spells them). */
  key: string;
  /** ISO 3166-1 alpha-2. */
  country: string;
  /** Present from level region on; null when the database has no region for the location. */
  region?: string | null;
  /** Present at level city; null when the database has no city. */
  city?: string | null;
  /** A representative point (the devices' mean location), for drawing; not a site address. */
  latitude: number;
  longitude: number;
  /** The worst (largest) accuracy radius among the region's device locations, km. */
  accuracyKm: number;
  /** Devices located here (not offboarded). */
  devices: number;
  /** Devices that connected within the last `activeWithinDays`. */
  active: number;
  /** Oldest month first, one entry per month of `RegionAnalytics.months`. */
  trend: RegionMonth[];
  /** Onboardings fell month on month for `declineMonths` consecutive months ending with the last complete month. */
  declining: boolean;
  /** First month of the declining run, when declining. */
  decliningSince?: string;
  /** How many of the devices have an operator-set location (override) rather than an IP one. */
  overridden: number;
}

export interface RegionAnalytics {
  level: RegionLevel;
  /** When computed (ISO 8601). */
  asOf: string;
  /** YYYY-MM, oldest first; the last is the current (incomplete) month. */
  months: string[];
  offboardAfterDays: number;
  activeWithinDays: number;
  declineMonths: number;
  /** Most devices first. */
  regions: RegionStats[];
  /** Devices without a location, by why: private / reserved address, the database had nothing, or never seen. */
  unlocated: { private: number; reserved: number; unresolved: number; unknown: number };
  /** Shown wherever the data is (the database's licence asks for it). */
  attribution: { text: string; url: string };
}
