import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { geoNaturalEarth1, geoPath, type GeoProjection } from 'd3-geo';
import countries, { type LocaleData } from 'i18n-iso-countries';
import { feature } from 'topojson-client';
import { escapeXml } from '../../../common/xml.js';
import type { RegionAnalytics, RegionStats } from './region-analytics.js';

/**
 * The fleet-locations map (issue 9): a standalone SVG document drawn entirely offline from
 * world-atlas's Natural Earth countries (1:110m), projected with d3-geo. No tile server, no
 * scripts, no <style> element and no style attributes: only presentation attributes, so the
 * document can be inserted into a page under a strict CSP (style-src 'self') or served as an image.
 *
 * Country fill: devices per country in ~5 sequential classes; region and city levels add a
 * bubble per region (area ∝ devices). Declining regions carry class="declining" and
 * data-key, a dashed orange outline and a ▼ marker with a label (never colour alone).
 */

export interface RegionMapOptions {
  /** Width of the drawing in px (the SVG also has a viewBox and scales); 320–2400, default 960. */
  width?: number;
  /** The document's <title>; default "Fleet devices by country|region|city". */
  title?: string;
}

/** Sequential, colour-blind safe (ColorBrewer YlGnBu, 5 classes), light to dark. */
export const MAP_PALETTE = ['#c7e9b4', '#7fcdbb', '#41b6c4', '#2c7fb8', '#253494'] as const;
/** Countries without devices. */
export const NO_DEVICES_FILL = '#e3e3e3';
const OCEAN_FILL = '#f4f8fb';
const BORDER = '#ffffff';
const DECLINE_STROKE = '#c2410c';
const BUBBLE_FILL = '#6a3d9a';
const TEXT = '#1a1a1a';
const MUTED = '#4d4d4d';

const DEFAULT_WIDTH = 960;
const MIN_WIDTH = 320;
const MAX_WIDTH = 2400;
const PAD = 8;
/** Natural Earth's numeric-less features that the region database nonetheless has a code for. */
const CODE_BY_NAME: Record<string, string> = { Kosovo: 'XK' };
/** Antarctica: no devices, a third of the height. */
const SKIPPED_IDS = new Set(['010']);

interface CountryShape {
  /** ISO 3166-1 alpha-2, or null for Natural Earth's disputed/unrecognised areas (drawn, never coloured). */
  code: string | null;
  name: string;
  d: string;
}

interface ProjectedWorld {
  width: number;
  height: number;
  projection: GeoProjection;
  shapes: CountryShape[];
}

type CountryFeature = GeoJSON.Feature<GeoJSON.Geometry | null, { name?: string }>;

let features: CountryFeature[] | undefined;
/** Projected country paths per width: projection and path strings are the slow part, the data is not. */
const projected = new Map<number, ProjectedWorld>();
const MAX_CACHED_WIDTHS = 8;

function loadFeatures(): CountryFeature[] {
  if (features) return features;
  const require = createRequire(import.meta.url);
  countries.registerLocale(require('i18n-iso-countries/langs/en.json') as LocaleData);
  const file = require.resolve('world-atlas/countries-110m.json');
  // Typed through topojson-client's own signature: topojson-specification is not a declared package.
  const topology = JSON.parse(readFileSync(file, 'utf8')) as Parameters<typeof feature>[0];
  const object = topology.objects['countries'];
  if (!object) throw new Error(`world-atlas: no "countries" object in ${file}`);
  const collection = feature(topology, object) as unknown as GeoJSON.FeatureCollection<GeoJSON.Geometry | null, { name?: string }>;
  features = collection.features.filter((f) => !SKIPPED_IDS.has(String(f.id)));
  return features;
}

function codeOf(f: CountryFeature): string | null {
  if (f.id !== undefined && f.id !== null && f.id !== '') {
    const code = countries.numericToAlpha2(String(f.id));
    if (code) return code;
  }
  return CODE_BY_NAME[f.properties?.name ?? ''] ?? null;
}

function world(width: number): ProjectedWorld {
  const cached = projected.get(width);
  if (cached) return cached;
  const all = loadFeatures();
  const collection: GeoJSON.FeatureCollection = { type: 'FeatureCollection', features: all as GeoJSON.Feature[] };
  const projection = geoNaturalEarth1().fitWidth(width - 2 * PAD, collection);
  const path = geoPath(projection).digits(1);
  const [[, y0], [, y1]] = path.bounds(collection);
  const height = Math.ceil(y1 - y0) + 2 * PAD;
  const [tx, ty] = projection.translate();
  projection.translate([tx + PAD, ty - y0 + PAD]);
  const shapes: CountryShape[] = [];
  for (const f of all) {
    const d = path(f as GeoJSON.Feature);
    if (!d) continue;
    const code = codeOf(f);
    const name = (code ? countries.getName(code, 'en') : undefined) ?? f.properties?.name ?? 'unnamed area';
    shapes.push({ code, name, d });
  }
  const result = { width, height, projection, shapes };
  if (projected.size >= MAX_CACHED_WIDTHS) projected.delete(projected.keys().next().value as number);
  projected.set(width, result);
  return result;
}


/**
 * Lower bounds of the device-count classes: 1 then geometric steps up to `max` (counts are
 * skewed: a few countries hold most devices), at most MAP_PALETTE.length, strictly increasing.
 */
export function classBreaks(max: number): number[] {
  const lowers = [1];
  const n = MAP_PALETTE.length;
  for (let i = 1; i < n; i++) {
    const v = Math.ceil(max ** (i / n));
    const last = lowers[lowers.length - 1] ?? 1;
    if (v > last && v <= max) lowers.push(v);
  }
  return lowers;
}

/** Index of the class `count` falls in (count >= 1). */
export function classOf(count: number, lowers: readonly number[]): number {
  let idx = 0;
  for (let i = 0; i < lowers.length; i++) if (count >= (lowers[i] ?? Infinity)) idx = i;
  return idx;
}

/** Palette colour for class `idx` of `classes`, spread over the palette. */
function colourOf(idx: number, classes: number): string {
  const last = MAP_PALETTE.length - 1;
  const at = classes <= 1 ? Math.round(last / 2) : Math.round((idx * last) / (classes - 1));
  return MAP_PALETTE[at] ?? MAP_PALETTE[4];
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** "Osaka" for a region, "Osaka (Osaka, JP)" for a city, the country code at country level. */
function regionLabel(r: RegionStats): string {
  if (r.city) return r.region ? `${r.city} (${r.region}, ${r.country})` : `${r.city} (${r.country})`;
  if (r.region) return `${r.region} (${r.country})`;
  return r.key;
}

const num = (v: number) => String(Math.round(v * 10) / 10);

interface LegendItem {
  cls: string;
  swatch: string;
  label: string;
}

/** Legend items laid out left to right, wrapping into rows of `maxWidth` (label width estimated). */
function layoutLegend(items: LegendItem[], maxWidth: number): { item: LegendItem; x: number; row: number }[] {
  const placed: { item: LegendItem; x: number; row: number }[] = [];
  let x = 0;
  let row = 0;
  for (const item of items) {
    const w = 26 + item.label.length * 6.6;
    if (x > 0 && x + w > maxWidth) {
      x = 0;
      row += 1;
    }
    placed.push({ item, x, row });
    x += w;
  }
  return placed;
}

const onMap = (p: [number, number] | null): p is [number, number] => p !== null && Number.isFinite(p[0]) && Number.isFinite(p[1]);

/** Renders `a` as a standalone SVG document (see the module comment). Projected countries are cached per width. */
export function renderRegionMap(a: RegionAnalytics, opts: RegionMapOptions = {}): string {
  const width = Math.round(Math.min(MAX_WIDTH, Math.max(MIN_WIDTH, opts.width ?? DEFAULT_WIDTH)));
  const w = world(width);
  const byCountry = new Map<string, number>();
  for (const r of a.regions) byCountry.set(r.country, (byCountry.get(r.country) ?? 0) + r.devices);
  const total = a.regions.reduce((s, r) => s + r.devices, 0);
  const located = [...byCountry.values()].filter((n) => n > 0).length;
  const max = Math.max(0, ...byCountry.values());
  const lowers = max > 0 ? classBreaks(max) : [];
  const declining = a.regions.filter((r) => r.declining);
  const decliningCountries = new Map(a.level === 'country' ? declining.map((r) => [r.country, r] as const) : []);
  const title = opts.title ?? `Fleet devices by ${a.level}`;
  const summary =
    `${plural(total, 'device')} in ${plural(located, 'country', 'countries')}` +
    (declining.length ? `; declining: ${declining.map((r) => r.key).join(', ')}` : '; none declining');

  // Bubbles: every region at region/city level; at country level only countries too small for the
  // 1:110m atlas (Singapore, Hong Kong, Malta…) so their devices still show.
  const atlasCodes = new Set(w.shapes.map((s) => s.code));
  const bubbles = a.regions
    .filter((r) => r.devices > 0 && (a.level !== 'country' || !atlasCodes.has(r.country)))
    .sort((x, y) => y.devices - x.devices);

  const legend: LegendItem[] = [{ cls: 'legend-none', label: 'no devices', swatch: `<rect width="14" height="14" fill="${NO_DEVICES_FILL}" stroke="#9aa0a6" stroke-width="0.5"/>` }];
  lowers.forEach((lo, i) => {
    const next = lowers[i + 1];
    const hi = next === undefined ? max : next - 1;
    legend.push({ cls: 'legend-class', label: lo === hi ? `${lo}` : `${lo}–${hi}`, swatch: `<rect width="14" height="14" fill="${colourOf(i, lowers.length)}"/>` });
  });
  if (bubbles.length) {
    legend.push({ cls: 'legend-bubble', label: 'devices (circle area)', swatch: `<circle cx="7" cy="7" r="6" fill="${BUBBLE_FILL}" fill-opacity="0.55"/>` });
  }
  legend.push({
    cls: 'legend-declining',
    label: 'declining (dashed, ▼)',
    swatch: `<rect width="14" height="14" fill="url(#flmap-hatch)" stroke="${DECLINE_STROKE}" stroke-width="1.5" stroke-dasharray="3 2"/>`,
  });
  const placed = layoutLegend(legend, width - 2 * PAD);
  const legendRows = Math.max(1, ...placed.map((p) => p.row + 1));
  const ly = w.height + 8;
  const summaryY = ly + legendRows * 20 + 12;
  const height = summaryY + 24;

  const out: string[] = [];
  out.push('<?xml version="1.0" encoding="UTF-8"?>');
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
      `role="img" aria-labelledby="flmap-title flmap-desc" class="region-map" data-level="${escapeXml(a.level)}" ` +
      `font-family="system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif" font-size="12">`,
  );
  out.push(`<title id="flmap-title">${escapeXml(title)}</title>`);
  out.push(`<desc id="flmap-desc">${escapeXml(summary)}</desc>`);
  out.push(
    '<defs><pattern id="flmap-hatch" patternUnits="userSpaceOnUse" width="6" height="6" patternTransform="rotate(45)">' +
      `<line x1="0" y1="0" x2="0" y2="6" stroke="${DECLINE_STROKE}" stroke-width="2"/></pattern></defs>`,
  );
  out.push(`<rect class="ocean" x="0" y="0" width="${width}" height="${w.height}" fill="${OCEAN_FILL}"/>`);

  // Countries: every shape drawn; coloured when it has a code with devices.
  out.push(`<g class="countries" stroke="${BORDER}" stroke-width="0.5" stroke-linejoin="round">`);
  const hatches: string[] = [];
  for (const s of w.shapes) {
    const devices = (s.code ? byCountry.get(s.code) : undefined) ?? 0;
    const cls = devices > 0 ? classOf(devices, lowers) : -1;
    const decl = s.code ? decliningCountries.get(s.code) : undefined;
    const attrs = [
      `class="country${decl ? ' declining' : ''}"`,
      s.code ? `data-country="${escapeXml(s.code)}"` : '',
      `data-class="${cls}"`,
      decl ? `data-key="${escapeXml(decl.key)}"` : '',
      `fill="${cls >= 0 ? colourOf(cls, lowers.length) : NO_DEVICES_FILL}"`,
      decl ? `stroke="${DECLINE_STROKE}" stroke-width="1.5" stroke-dasharray="4 2"` : '',
    ].filter(Boolean);
    const tip = `${s.name}: ${devices > 0 ? plural(devices, 'device') : 'no devices'}` + (decl ? `; declining since ${decl.decliningSince ?? '?'}` : '');
    out.push(`<path ${attrs.join(' ')} d="${s.d}"><title>${escapeXml(tip)}</title></path>`);
    if (decl) hatches.push(`<path d="${s.d}" fill="url(#flmap-hatch)" fill-opacity="0.6" pointer-events="none"/>`);
  }
  out.push('</g>');
  if (hatches.length) out.push(`<g class="decline-hatches">${hatches.join('')}</g>`);

  const maxBubble = Math.max(1, ...bubbles.map((r) => r.devices));
  const maxR = Math.max(8, width / 60);
  if (bubbles.length) out.push(`<g class="bubbles" fill="${BUBBLE_FILL}" fill-opacity="0.55" stroke="#ffffff" stroke-width="1">`);
  for (const r of bubbles) {
    const p = w.projection([r.longitude, r.latitude]);
    if (!onMap(p)) continue;
    const radius = Math.max(2.5, maxR * Math.sqrt(r.devices / maxBubble));
    const tip =
      `${regionLabel(r)}: ${plural(r.devices, 'device')}, ${r.active} active; location accuracy ± ${Math.round(r.accuracyKm)} km` +
      (r.overridden ? `; ${r.overridden} set by an operator` : '') +
      (r.declining ? `; declining since ${r.decliningSince ?? '?'}` : '');
    const decl = r.declining ? ` stroke="${DECLINE_STROKE}" stroke-width="2" stroke-dasharray="3 2"` : '';
    out.push(
      `<g class="bubble${r.declining ? ' declining' : ''}" data-key="${escapeXml(r.key)}" data-country="${escapeXml(r.country)}">` +
        `<title>${escapeXml(tip)}</title><circle cx="${num(p[0])}" cy="${num(p[1])}" r="${num(radius)}"${decl}/></g>`,
    );
  }
  if (bubbles.length) out.push('</g>');

  // Declining markers: a ▼ and the region's name beside it, whatever the level.
  const markers: string[] = [];
  for (const r of declining) {
    const p = w.projection([r.longitude, r.latitude]);
    if (!onMap(p)) continue;
    const [x, y] = p;
    const label = `${r.city ?? r.region ?? r.country}: declining`;
    // Near the right edge the label goes to the marker's left, so it is not cut off (~7 px a character).
    const leftward = x + 7 + label.length * 7 > width - PAD;
    markers.push(
      `<g class="decline-marker" data-key="${escapeXml(r.key)}">` +
        `<path d="M${num(x - 5)},${num(y - 14)}h10l-5,8z" fill="${DECLINE_STROKE}" stroke="#ffffff" stroke-width="1"/>` +
        `<text x="${num(leftward ? x - 7 : x + 7)}" y="${num(y - 6)}"${leftward ? ' text-anchor="end"' : ''} fill="${TEXT}" stroke="#ffffff" stroke-width="3" paint-order="stroke" font-weight="600">` +
        `${escapeXml(label)}</text></g>`,
    );
  }
  if (markers.length) out.push(`<g class="decline-markers" pointer-events="none">${markers.join('')}</g>`);

  // Legend, summary and attribution below the map.
  out.push(`<g class="legend" transform="translate(${PAD},${ly})" fill="${TEXT}">`);
  for (const { item, x, row } of placed) {
    out.push(`<g class="${item.cls}" transform="translate(${num(x)},${row * 20})">${item.swatch}<text x="18" y="11">${escapeXml(item.label)}</text></g>`);
  }
  out.push('</g>');
  // The full summary is in <desc>; the visible line is cut to what fits (~6.5 px a character).
  const fits = Math.max(20, Math.floor((width - 2 * PAD) / 6.5));
  const line = `${summary}. As of ${a.asOf.slice(0, 10)}.`;
  out.push(`<text class="summary" x="${PAD}" y="${summaryY}" fill="${MUTED}">${escapeXml(line.length > fits ? `${line.slice(0, fits - 1)}…` : line)}</text>`);
  const attrText = `<text x="${width - PAD}" y="${height - 6}" text-anchor="end" fill="${MUTED}" font-size="11">${escapeXml(a.attribution.text)}</text>`;
  out.push(
    /^https?:\/\//.test(a.attribution.url)
      ? `<a class="attribution" href="${escapeXml(a.attribution.url)}" target="_blank">${attrText}</a>`
      : `<g class="attribution">${attrText}</g>`,
  );
  out.push('</svg>');
  return out.join('\n');
}
