import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { FakeClock } from '../../../common/clock.js';
import { build } from '../../../cloud/src/app.js';
import { issueToken, type RateLimitOptions } from '../../../cloud/src/auth.js';
import { CloudStore, type Role } from '../../../cloud/src/store.js';
import type { IpGeolocator } from '../../../cloud/src/locations/ip-geolocation.js';
import { createLocationServices } from '../../../cloud/src/locations/location-services.js';
import { LocationStore } from '../../../cloud/src/locations/location-store.js';
import type { LocationServices } from '../../../cloud/src/locations/routes-locations.js';
import { FakeFleetHub } from './fake-hub.js';
import { captureLog, type CapturedLog } from '../../helpers/hub.js';

export interface Companion {
  app: FastifyInstance;
  store: CloudStore;
  clock: FakeClock;
  log: CapturedLog;
  hub: FakeFleetHub;
  dir: string;
  /** Present when built with a geolocator: the fleet-locations services. */
  locations?: LocationServices;
  /** Issues a token with `role` named `name` (default: the role) and returns it in clear. */
  token(role: Role, name?: string): string;
  cleanup(): Promise<void>;
}

/** A companion app on a store in a fresh temp dir, fake time, a fake IoT Hub and a captured debug log. */
export async function companion(opts: { rateLimit?: RateLimitOptions; background?: boolean; publicUrl?: string; geolocator?: IpGeolocator; wallMs?: number } = {}): Promise<Companion> {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-cloud-'));
  const store = CloudStore.open(dir);
  const clock = new FakeClock(opts.wallMs === undefined ? {} : { wallMs: opts.wallMs });
  const log = captureLog('trace');
  const hub = new FakeFleetHub();
  const locationStore = opts.geolocator ? LocationStore.open(dir) : undefined;
  const locations = opts.geolocator && locationStore ? createLocationServices({ store: locationStore, geolocator: opts.geolocator, hub, clock, log: log.logger }) : undefined;
  const app = await build({ store, log: log.logger, clock, hub, background: opts.background ?? false, ...(opts.rateLimit ? { rateLimit: opts.rateLimit } : {}), ...(opts.publicUrl ? { publicUrl: opts.publicUrl } : {}), ...(locations ? { locations } : {}) });
  return {
    app,
    store,
    clock,
    log,
    hub,
    dir,
    ...(locations ? { locations } : {}),
    token: (role, name = role) => issueToken(store, { name, role, now: clock.now() }).token,
    async cleanup() {
      await app.close();
      store.close();
      locationStore?.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });

/** A problem body as the companion sends it. */
export interface ProblemJson {
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

export interface AuditEntryJson {
  ts: string;
  tokenName: string;
  action: string;
  target: string;
  result: string;
  details?: Record<string, unknown>;
}

/** For tests that send bursts of requests; the rate limit itself is auth.test.ts's business. */
export const NO_RATE_LIMIT = { perSecond: 1e6, burst: 1e6 };
