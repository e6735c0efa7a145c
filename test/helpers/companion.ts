import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { build } from '../../cloud/src/app.js';
import { issueToken } from '../../cloud/src/auth.js';
import { AzureFleetHub } from '../../cloud/src/azure-fleet-hub.js';
import { hubTargets } from '../../cloud/src/server.js';
import { CloudStore, type Role } from '../../cloud/src/store.js';
import { captureLog, type CapturedLog } from './hub.js';

export interface RunningCompanion {
  readonly url: string;
  readonly app: FastifyInstance;
  readonly store: CloudStore;
  readonly hub: AzureFleetHub;
  readonly log: CapturedLog;
  /** A new token with `role`, in clear. */
  token(role: Role, name?: string): string;
  /** fetch against the companion with the token; JSON in, `{ status, body, headers }` out. */
  api(token: string, method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<ApiReply>;
  close(): Promise<void>;
}

export interface ApiReply {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- response JSON, asserted field by field in tests
  body: any;
  headers: Headers;
}

/**
 * The companion as it runs for real: the official SDK (AzureFleetHub) against a local hub's
 * hub.json, with least privilege, listening on 127.0.0.1. Short refresh and retry periods so
 * tests see changes quickly; the per-call deadline is short so an unreachable hub fails fast.
 */
export async function startCompanion(hubJson: string, opts: { fleetRefreshMs?: number; callTimeoutMs?: number } = {}): Promise<RunningCompanion> {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-companion-'));
  const log = captureLog('debug');
  const store = CloudStore.open(dir);
  const hub = new AzureFleetHub({ ...hubTargets({ kind: 'file', hubJson }), log: log.logger, callTimeoutMs: opts.callTimeoutMs ?? 3_000 });
  const app = await build({
    store,
    log: log.logger,
    hub,
    fleetRefreshMs: opts.fleetRefreshMs ?? 1_000,
    feedbackRetryMs: { min: 100, max: 1_000 },
    rateLimit: { perSecond: 1_000, burst: 1_000 },
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  let n = 0;
  return {
    url,
    app,
    store,
    hub,
    log,
    token: (role, name) => issueToken(store, { name: name ?? `${role}-${++n}`, role, now: Date.now() }).token,
    async api(token, method, path, body, headers = {}) {
      const res = await fetch(`${url}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(15_000),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
    },
    async close() {
      try {
        await app.close();
      } finally {
        await hub.close();
        store.close();
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
