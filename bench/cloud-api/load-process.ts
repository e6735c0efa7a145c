/* The parent's handle on the load child (load.ts): start it, run autocannon jobs, stop it. */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitForChildReady } from '../child-ready.js';

export interface LoadJob {
  url: string;
  method: 'GET' | 'POST';
  /** Cycled over all requests (one shared counter across connections). */
  paths: string[];
  headers: Record<string, string>;
  body?: string;
  connections: number;
  /** Run for this long, unless `amount` is set (then exactly that many requests). */
  durationS?: number;
  amount?: number;
  /** Count `coalesced: true/false` in 202 bodies (command routes). */
  countCoalesced?: boolean;
}

export interface LoadResult {
  /** Responses received, any status. */
  completed: number;
  durationS: number;
  rps: number;
  /** Latency percentiles of every response, in ms (float, not autocannon's whole ms). */
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statuses: Record<string, number>;
  coalesced?: { yes: number; no: number; other: number };
}

export type ToLoad = { type: 'run'; id: number; job: LoadJob } | { type: 'stop' };
export type FromLoad = { type: 'ready' } | { type: 'failed'; message: string } | { type: 'result'; id: number; result: LoadResult } | { type: 'error'; id: number; message: string };

export interface LoadProcess {
  run(job: LoadJob): Promise<LoadResult>;
  /** Idempotent. */
  stop(): Promise<void>;
}

const CHILD_JS = fileURLToPath(new URL('./load.js', import.meta.url));
const START_TIMEOUT_MS = 15_000;

const live = new Set<ChildProcess>();

/** Kills every load child synchronously (for SIGINT and 'exit'). */
export function killLoaders(): void {
  for (const child of live) child.kill('SIGKILL');
  live.clear();
}

export async function startLoader(): Promise<LoadProcess> {
  const child = fork(CHILD_JS, [], { stdio: ['ignore', 2, 2, 'ipc'], execArgv: [] });
  child.on('error', () => undefined);
  live.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        if (child.connected) child.send({ type: 'stop' } satisfies ToLoad, (err) => err && child.kill('SIGKILL'));
        else child.kill('SIGKILL');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
        await exited;
        clearTimeout(timer);
      }
      live.delete(child);
    })());
  try {
    await waitForChildReady(child, 'load generator', START_TIMEOUT_MS);
  } catch (err) {
    await stop();
    throw err;
  }
  let nextId = 1;
  const waiting = new Map<number, { resolve(r: LoadResult): void; reject(e: Error): void }>();
  child.on('message', (raw) => {
    const msg = raw as FromLoad;
    if (msg.type !== 'result' && msg.type !== 'error') return;
    const w = waiting.get(msg.id);
    waiting.delete(msg.id);
    if (msg.type === 'result') w?.resolve(msg.result);
    else w?.reject(new Error(`load generator: ${msg.message}`));
  });
  void exited.then(() => {
    for (const w of waiting.values()) w.reject(new Error('load generator exited'));
    waiting.clear();
  });
  return {
    stop,
    run(job) {
      return new Promise((resolve, reject) => {
        const id = nextId++;
        waiting.set(id, { resolve, reject });
        child.send({ type: 'run', id, job } satisfies ToLoad, (err) => {
          if (!err) return;
          waiting.delete(id);
          reject(err);
        });
      });
    },
  };
}
