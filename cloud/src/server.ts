import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Logger } from '../../common/log.js';
import { hubTargetFromConnectionString, hubTargetFromFile, type HubTarget } from '../hub/service-clients.js';
import { build, type BuildOptions } from './app.js';
import { AzureFleetHub } from './azure-fleet-hub.js';
import { systemClock } from '../../common/clock.js';
import { localConnectionLogReader } from '../hub/hub-access.js';
import { HubLogPuller } from './locations/hub-log-puller.js';
import { openIpGeolocator } from './locations/ip-geolocation.js';
import { createLocationServices } from './locations/location-services.js';
import { LocationStore } from './locations/location-store.js';
import type { LocationServices } from './locations/routes-locations.js';
import { CloudStore } from './store.js';

export interface RunningCloud {
  readonly url: string;
  readonly app: FastifyInstance;
  close(): Promise<void>;
}

/**
 * Where the companion finds IoT Hub, with least privilege: C2D and feedback act as a policy with
 * ServiceConnect (`service`), identities and twins as one with RegistryRead/Write
 * (`registryReadWrite`); never `iothubowner`.
 */
export type HubSource =
  | { readonly kind: 'file'; readonly hubJson: string }
  | { readonly kind: 'connection-strings'; readonly service: string; readonly registry: string; readonly ca?: string; readonly httpsPort?: number };

export function hubTargets(source: HubSource): { service: HubTarget; registry: HubTarget } {
  if (source.kind === 'file') {
    return { service: hubTargetFromFile(source.hubJson, 'service'), registry: hubTargetFromFile(source.hubJson, 'registryReadWrite') };
  }
  const opts = { ...(source.ca === undefined ? {} : { ca: source.ca }), ...(source.httpsPort === undefined ? {} : { httpsPort: source.httpsPort }) };
  return { service: hubTargetFromConnectionString(source.service, opts), registry: hubTargetFromConnectionString(source.registry, opts) };
}

export interface CloudServerOptions {
  dataDir: string;
  port: number;
  host?: string;
  log: Logger;
  hub: HubSource;
  /** Passed to build() (refresh interval, retry bounds); store, log and hub are set here. */
  app?: Omit<BuildOptions, 'store' | 'log' | 'hub'>;
  /** Deadline per IoT Hub call. */
  hubCallTimeoutMs?: number;
  /**
   * Fleet locations (issue 9; default on): the IP database (about 135 MB in memory), the
   * locations store beside cloud.db, and with a local hub its connection log pulled every
   * `pullEveryMs` (default 5 s).
   */
  locations?: false | { pullEveryMs?: number; tagsPerSecond?: number };
}

/** The composition root that listens: opens the store in `dataDir`, connects the hub port, builds the app, binds `host:port`. */
export async function startCloudServer(opts: CloudServerOptions): Promise<RunningCloud> {
  const targets = hubTargets(opts.hub);
  const store = CloudStore.open(opts.dataDir);
  const hub = new AzureFleetHub({ ...targets, log: opts.log.child({ component: 'fleet-hub' }), ...(opts.hubCallTimeoutMs ? { callTimeoutMs: opts.hubCallTimeoutMs } : {}) });
  let app: FastifyInstance;
  let locationStore: LocationStore | undefined;
  let puller: HubLogPuller | undefined;
  try {
    let locations: LocationServices | undefined;
    if (opts.locations !== false) {
      locationStore = LocationStore.open(opts.dataDir);
      const geolocator = await openIpGeolocator();
      locations = createLocationServices({ store: locationStore, geolocator, hub, clock: systemClock, log: opts.log, ...(opts.locations?.tagsPerSecond === undefined ? {} : { tagsPerSecond: opts.locations.tagsPerSecond }) });
      const relocated = locations.ingest.relocateAll();
      if (relocated > 0) opts.log.info({ relocated, database: geolocator.source }, 'IP database changed: gateways located again');
      if (opts.hub.kind === 'file') {
        puller = new HubLogPuller({
          read: localConnectionLogReader(opts.hub.hubJson),
          ingest: locations.ingest,
          store: locationStore,
          clock: systemClock,
          log: opts.log.child({ component: 'hub-log-puller' }),
          ...(opts.locations?.pullEveryMs === undefined ? {} : { everyMs: opts.locations.pullEveryMs }),
        });
      }
    }
    app = await build({ ...opts.app, store, log: opts.log, hub, ...(locations === undefined ? {} : { locations }) });
    await app.listen({ port: opts.port, host: opts.host ?? '127.0.0.1' });
    puller?.start();
  } catch (err) {
    await hub.close();
    locationStore?.close();
    store.close();
    throw err;
  }
  const addr = app.server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${host}:${addr.port}`,
    app,
    async close() {
      try {
        await puller?.stop();
        await app.close();
      } finally {
        await hub.close();
        locationStore?.close();
        store.close();
      }
    },
  };
}
