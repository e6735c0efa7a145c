import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Logger } from '../../common/log.js';
import { build } from './app.js';
import { CloudStore } from './store.js';

export interface RunningCloud {
  readonly url: string;
  readonly app: FastifyInstance;
  close(): Promise<void>;
}

/** The composition root that listens: opens the store in `dataDir`, builds the app, binds `host:port`. */
export async function startCloudServer(opts: { dataDir: string; port: number; host?: string; log: Logger }): Promise<RunningCloud> {
  const store = CloudStore.open(opts.dataDir);
  let app: FastifyInstance;
  try {
    app = await build({ store, log: opts.log });
    await app.listen({ port: opts.port, host: opts.host ?? '127.0.0.1' });
  } catch (err) {
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
        store.close();
      }
    },
  };
}
