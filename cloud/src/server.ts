import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Logger } from '../../common/log.js';
import { hubTargetFromConnectionString, hubTargetFromFile, type HubTarget } from '../hub/service-clients.js';
import { build, type BuildOptions } from './app.js';
import { AzureFleetHub } from './azure-fleet-hub.js';
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
}

/** The composition root that listens: opens the store in `dataDir`, connects the hub port, builds the app, binds `host:port`. */
export async function startCloudServer(opts: CloudServerOptions): Promise<RunningCloud> {
  const targets = hubTargets(opts.hub);
  const store = CloudStore.open(opts.dataDir);
  const hub = new AzureFleetHub({ ...targets, log: opts.log.child({ component: 'fleet-hub' }), ...(opts.hubCallTimeoutMs ? { callTimeoutMs: opts.hubCallTimeoutMs } : {}) });
  let app: FastifyInstance;
  try {
    app = await build({ ...opts.app, store, log: opts.log, hub });
    await app.listen({ port: opts.port, host: opts.host ?? '127.0.0.1' });
  } catch (err) {
    await hub.close();
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
        await app.close();
      } finally {
        await hub.close();
        store.close();
      }
    },
  };
}
