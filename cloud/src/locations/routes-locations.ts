/**
 * Fleet locations (issue 9) over HTTP: connection-log ingest (streamed), region analytics as
 * JSON, CSV and an SVG map, and each gateway's location with an operator's override.
 */
import { createGunzip } from 'node:zlib';
import type { Readable } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { FieldlinkError } from '../../../common/errors.js';
import { gatewayIdParams } from '../api-schemas.js';
import { audited } from '../audit.js';
import { authProblems } from '../problem.js';
import type { CompanionServices } from '../services.js';
import { computeRegionAnalytics, DEFAULT_ANALYTICS_QUERY, monthWindow, regionAnalyticsCsv, type AnalyticsQuery } from './analytics.js';
import type { ConnectionLogIngest } from './ingest.js';
import { locationFromIp } from './ingest.js';
import type { IpGeolocator } from './ip-geolocation.js';
import type { DeviceLocation, LocationStore } from './location-store.js';
import { readResourceLogRecords, ResourceLogDocumentError } from './record-stream.js';
import { REGION_LEVELS, type RegionAnalytics } from './region-analytics.js';
import { locationTagPatch, type LocationTagWriter } from './tag-writer.js';
import { renderRegionMap } from './world-map.js';

export interface LocationServices {
  store: LocationStore;
  geolocator: IpGeolocator;
  ingest: ConnectionLogIngest;
  tags: LocationTagWriter;
}

const problem = { $ref: 'Problem#' } as const;

const analyticsQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    level: { type: 'string', enum: [...REGION_LEVELS], default: DEFAULT_ANALYTICS_QUERY.level, description: 'Group by country, region (state, prefecture) or city' },
    months: { type: 'integer', minimum: 2, maximum: 60, default: DEFAULT_ANALYTICS_QUERY.months, description: 'Months of trend, the current one included' },
    offboardAfterDays: { type: 'integer', minimum: 1, maximum: 365, default: DEFAULT_ANALYTICS_QUERY.offboardAfterDays, description: 'No connect for this long: offboarded' },
    activeWithinDays: { type: 'integer', minimum: 1, maximum: 90, default: DEFAULT_ANALYTICS_QUERY.activeWithinDays },
    declineMonths: { type: 'integer', minimum: 2, maximum: 12, default: DEFAULT_ANALYTICS_QUERY.declineMonths, description: 'Flag regions whose onboardings fell this many months in a row' },
    width: { type: 'integer', minimum: 320, maximum: 2400, description: 'map.svg only: width in px' },
  },
} as const;

const monthSchema = {
  type: 'object',
  required: ['month', 'onboarded', 'offboarded', 'active'],
  properties: { month: { type: 'string' }, onboarded: { type: 'integer' }, offboarded: { type: 'integer' }, active: { type: 'integer' } },
} as const;

const analyticsSchema = {
  type: 'object',
  required: ['level', 'asOf', 'months', 'offboardAfterDays', 'activeWithinDays', 'declineMonths', 'regions', 'unlocated', 'attribution'],
  properties: {
    level: { type: 'string' },
    asOf: { type: 'string', format: 'date-time' },
    months: { type: 'array', items: { type: 'string' } },
    offboardAfterDays: { type: 'integer' },
    activeWithinDays: { type: 'integer' },
    declineMonths: { type: 'integer' },
    regions: {
      type: 'array',
      items: {
        type: 'object',
        required: ['key', 'country', 'latitude', 'longitude', 'accuracyKm', 'devices', 'active', 'trend', 'declining', 'overridden'],
        properties: {
          key: { type: 'string' },
          country: { type: 'string' },
          region: { type: 'string', nullable: true },
          city: { type: 'string', nullable: true },
          latitude: { type: 'number' },
          longitude: { type: 'number' },
          accuracyKm: { type: 'number' },
          devices: { type: 'integer' },
          active: { type: 'integer' },
          trend: { type: 'array', items: monthSchema },
          declining: { type: 'boolean' },
          decliningSince: { type: 'string' },
          overridden: { type: 'integer' },
        },
      },
    },
    unlocated: {
      type: 'object',
      required: ['private', 'reserved', 'unresolved', 'unknown'],
      properties: { private: { type: 'integer' }, reserved: { type: 'integer' }, unresolved: { type: 'integer' }, unknown: { type: 'integer' } },
    },
    attribution: { type: 'object', required: ['text', 'url'], properties: { text: { type: 'string' }, url: { type: 'string' } } },
  },
} as const;

const locationSchema = {
  type: 'object',
  nullable: true,
  additionalProperties: true,
  required: ['status', 'source'],
  properties: { status: { type: 'string', enum: ['located', 'private', 'reserved', 'unresolved'] }, source: { type: 'string', enum: ['ip', 'manual'] } },
} as const;

const overrideBody = {
  type: 'object',
  required: ['country', 'latitude', 'longitude'],
  additionalProperties: false,
  properties: {
    country: { type: 'string', pattern: '^[A-Z]{2}$', description: 'ISO 3166-1 alpha-2' },
    region: { type: 'string', minLength: 1, maxLength: 100 },
    city: { type: 'string', minLength: 1, maxLength: 100 },
    latitude: { type: 'number', minimum: -90, maximum: 90 },
    longitude: { type: 'number', minimum: -180, maximum: 180 },
    accuracyKm: { type: 'number', exclusiveMinimum: 0, maximum: 20_000, default: 1 },
    note: { type: 'string', maxLength: 200, description: 'Why, for the audit log and the twin tag' },
  },
} as const;

interface OverrideBody {
  country: string;
  region?: string;
  city?: string;
  latitude: number;
  longitude: number;
  accuracyKm: number;
  note?: string;
}

/** The request body as a byte stream, gunzipped when sent compressed (Logic Apps and Functions can). */
function bodyStream(req: FastifyRequest): Readable {
  const raw = req.body as Readable;
  const encoding = String(req.headers['content-encoding'] ?? 'identity').toLowerCase();
  if (encoding === 'gzip') return raw.pipe(createGunzip());
  if (encoding !== 'identity') throw new FieldlinkError('REQUEST_INVALID', { message: `content-encoding ${encoding} is not supported (identity or gzip)` });
  return raw;
}

export function registerLocationRoutes(app: FastifyInstance, s: CompanionServices, l: LocationServices): void {
  const readers = s.auth.requireRole('operator', 'viewer');

  const analytics = (q: AnalyticsQuery): RegionAnalytics => {
    // A decline over n months needs n + 1 complete months, plus the current one.
    if (q.months < q.declineMonths + 2) {
      throw new FieldlinkError('REQUEST_INVALID', { message: `months (${q.months}) must be at least declineMonths + 2 (${q.declineMonths + 2}) to judge a decline`, details: { field: 'months' } });
    }
    const now = s.clock.now();
    const [from = 0] = monthWindow(now, q.months);
    return computeRegionAnalytics(l.store.devices(), l.store.activeMonths(from), q, now, l.geolocator.attribution);
  };

  // The ingest body is read as a stream (documents of 100,000+ records): this route alone
  // takes any body unparsed, in its own encapsulated context.
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
    scope.post(
      '/v1/ingest/connection-logs',
      {
        onRequest: s.auth.requireRole('operator', 'ingest'),
        schema: {
          tags: ['locations'],
          summary: 'Ingest IoT Hub Connections resource-log records (Azure Monitor format)',
          description:
            'The body is a resource-log document `{"records":[...]}` as diagnostic settings write it (to an Event Hub or a storage account; a Function or Logic App posts it here), read as a stream (gzip accepted). ' +
            'Idempotent: a record with the same device, time and operation counts once. Each bad record is reported with its index and reason; the good ones are kept. Records of other categories are skipped.',
          response: {
            200: {
              type: 'object',
              required: ['received', 'accepted', 'duplicates', 'skipped', 'rejected', 'rejections', 'failedConnects', 'devicesUpdated', 'locationsChanged'],
              properties: {
                received: { type: 'integer' },
                accepted: { type: 'integer' },
                duplicates: { type: 'integer' },
                skipped: { type: 'integer' },
                rejected: { type: 'integer' },
                rejections: { type: 'array', items: { type: 'object', required: ['index', 'reason'], properties: { index: { type: 'integer' }, reason: { type: 'string' } } } },
                failedConnects: { type: 'integer' },
                devicesUpdated: { type: 'integer' },
                locationsChanged: { type: 'integer' },
              },
            },
            ...authProblems,
          },
        },
      },
      async (req) => {
        const started = Date.now();
        try {
          const result = await l.ingest.ingest(readResourceLogRecords(bodyStream(req)));
          req.log.info({ ...result, rejections: undefined, ms: Date.now() - started }, 'connection logs ingested');
          return result;
        } catch (err) {
          if (err instanceof ResourceLogDocumentError) throw new FieldlinkError('REQUEST_INVALID', { message: `resource-log document refused: ${err.message}; the records before that point were kept (ingest is idempotent: resend the whole document once fixed)` });
          throw err;
        }
      },
    );
  });

  app.get<{ Querystring: AnalyticsQuery }>(
    '/v1/analytics/regions',
    { onRequest: readers, schema: { tags: ['locations'], summary: 'Devices, activity and monthly trends per region; declining regions flagged', querystring: analyticsQuerySchema, response: { 200: analyticsSchema, ...authProblems } } },
    async (req) => analytics(req.query),
  );

  app.get<{ Querystring: AnalyticsQuery }>(
    '/v1/analytics/regions.csv',
    { onRequest: readers, schema: { tags: ['locations'], summary: 'The same as CSV: one row per region, onboardings and offboardings per month', querystring: analyticsQuerySchema } },
    async (req, reply) => {
      const a = analytics(req.query);
      return reply
        .type('text/csv; charset=utf-8')
        .header('content-disposition', `attachment; filename="fleet-regions-${a.level}-${a.months.length}m.csv"`)
        .send(regionAnalyticsCsv(a));
    },
  );

  app.get<{ Querystring: AnalyticsQuery & { width?: number } }>(
    '/v1/analytics/map.svg',
    { onRequest: readers, schema: { tags: ['locations'], summary: 'An SVG map of devices per region (offline: no tile server), declining regions marked', querystring: analyticsQuerySchema } },
    async (req, reply) => {
      const svg = renderRegionMap(analytics(req.query), req.query.width === undefined ? {} : { width: req.query.width });
      return reply.type('image/svg+xml; charset=utf-8').header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'").send(svg);
    },
  );

  const locationView = (id: string) => {
    const row = l.store.device(id);
    return {
      gateway: id,
      location: row ? (row.override ?? row.ipLocation) : null,
      ip: row?.ipLocation ?? null,
      override: row?.override ?? null,
      lastIp: row?.lastIp ?? null,
      firstConnect: row?.firstConnect == null ? null : new Date(row.firstConnect).toISOString(),
      lastConnect: row?.lastConnect == null ? null : new Date(row.lastConnect).toISOString(),
      tag: row === undefined ? null : row.tagPending ? 'pending' : row.tagError === null ? 'written' : `not written: ${row.tagError}`,
    };
  };
  const viewSchema = {
    type: 'object',
    required: ['gateway', 'location', 'ip', 'override', 'lastIp', 'firstConnect', 'lastConnect', 'tag'],
    properties: {
      gateway: { type: 'string' },
      location: locationSchema,
      ip: locationSchema,
      override: locationSchema,
      lastIp: { type: 'string', nullable: true },
      firstConnect: { type: 'string', nullable: true },
      lastConnect: { type: 'string', nullable: true },
      tag: { type: 'string', nullable: true, description: 'Whether the twin tag has it: written, pending, or not written (why)' },
    },
  } as const;

  app.get<{ Params: { id: string } }>(
    '/v1/gateways/:id/location',
    { onRequest: readers, schema: { tags: ['locations'], summary: "The gateway's location: the override if an operator set one, else its last logged address's", params: gatewayIdParams, response: { 200: viewSchema, ...authProblems } } },
    async (req) => locationView(req.params.id),
  );

  /** Writes the tag now (an operator waits for the answer), falling back to the writer when the hub is busy. */
  const writeTagNow = async (id: string): Promise<void> => {
    const row = l.store.device(id);
    if (!row) return;
    await s.hub.patchTags(id, locationTagPatch(row));
    l.store.tagSettled(id, row.locatedAt, null);
  };

  app.put<{ Params: { id: string }; Body: OverrideBody }>(
    '/v1/gateways/:id/location',
    {
      onRequest: s.auth.requireRole('operator'),
      schema: {
        tags: ['locations'],
        summary: "Set the gateway's location by hand: it wins over the IP location from then on (and is marked manual)",
        params: gatewayIdParams,
        body: overrideBody,
        response: { 200: viewSchema, 404: problem, 503: problem, ...authProblems },
      },
    },
    async (req) => {
      const id = req.params.id;
      const b = req.body;
      const location: DeviceLocation = {
        status: 'located',
        source: 'manual',
        country: b.country,
        region: b.region ?? null,
        city: b.city ?? null,
        latitude: b.latitude,
        longitude: b.longitude,
        accuracyKm: b.accuracyKm,
        precision: 'site',
        ...(b.note === undefined ? {} : { note: b.note }),
      };
      await audited(s, req, 'location.override', id, { country: b.country, ...(b.city === undefined ? {} : { city: b.city }) }, async () => {
        // The gateway must exist: the twin is where the location goes.
        await s.hub.getTwin(id);
        l.store.setOverride(id, location, s.clock.now());
        await writeTagNow(id).catch((err: unknown) => {
          // Stored: the writer retries the tag, and the answer says it is pending.
          req.log.warn({ err, gateway: id }, 'location tag not written now; the writer retries');
          l.tags.kick();
        });
      });
      return locationView(id);
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/v1/gateways/:id/location',
    {
      onRequest: s.auth.requireRole('operator'),
      schema: { tags: ['locations'], summary: 'Remove the override: the IP location applies again', params: gatewayIdParams, response: { 200: viewSchema, 404: problem, 503: problem, ...authProblems } },
    },
    async (req) => {
      const id = req.params.id;
      const row = l.store.device(id);
      if (row?.override == null) throw new FieldlinkError('LOCATION_OVERRIDE_NOT_FOUND', { message: `gateway "${id}" has no location override`, details: { gateway: id } });
      await audited(s, req, 'location.override.remove', id, {}, async () => {
        l.store.setOverride(id, null, s.clock.now());
        // Re-derive from the last address with today's database, in case it changed meanwhile.
        if (row.lastIp !== null) l.store.setIpLocation(id, row.lastIp, locationFromIp(l.geolocator.locate(row.lastIp), row.lastIp), s.clock.now(), true);
        await writeTagNow(id).catch((err: unknown) => {
          req.log.warn({ err, gateway: id }, 'location tag not written now; the writer retries');
          l.tags.kick();
        });
      });
      return locationView(id);
    },
  );
}
