/* The parent's handle on the hub child (hub-child.ts): start it, sample its CPU, stop it. */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { CpuSample } from '../hub-d2c/ipc.js';
import { waitForChildReady } from '../child-ready.js';

export type ToHub = { type: 'cpu'; id: number } | { type: 'stop' };

export type FromHub =
  | { type: 'ready'; ca: string; hubJson: string }
  | { type: 'failed'; message: string }
  | { type: 'cpu'; id: number; sample: CpuSample };

export interface HubProcess {
  readonly ca: string;
  /** hub.json in the data dir: what the service clients and `fieldlink hub` read. */
  readonly hubJson: string;
  cpu(): Promise<CpuSample>;
  /** Idempotent; kills the child if it does not exit by itself. */
  stop(): Promise<void>;
}

const CHILD_JS = fileURLToPath(new URL('./hub-child.js', import.meta.url));
const START_TIMEOUT_MS = 30_000;
const REQUEST_TIMEOUT_MS = 10_000;
const EXIT_TIMEOUT_MS = 5_000;

const live = new Set<ChildProcess>();

/** Kills every hub child synchronously (for SIGINT and 'exit', where nothing can be awaited). */
export function killHubs(): void {
  for (const child of live) child.kill('SIGKILL');
  live.clear();
}

/** Starts a hub on loopback with its data in `dataDir` (the caller owns and removes the dir). */
export async function startHub(dataDir: string): Promise<HubProcess> {
  // The child's stdout goes to our stderr: hub warnings stay visible without mixing into the table.
  const child = fork(CHILD_JS, [dataDir], { stdio: ['ignore', 2, 2, 'ipc'], execArgv: [] });
  child.on('error', () => undefined);
  live.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopping ??= stopChild(child, exited).finally(() => live.delete(child)));
  try {
    const ready = await waitForChildReady<Extract<FromHub, { type: 'ready' }>>(child, 'hub', START_TIMEOUT_MS);
    let nextId = 1;
    const waiting = new Map<number, (s: CpuSample) => void>();
    child.on('message', (raw) => {
      const msg = raw as FromHub;
      if (msg.type === 'cpu') {
        waiting.get(msg.id)?.(msg.sample);
        waiting.delete(msg.id);
      }
    });
    const cpu = (): Promise<CpuSample> =>
      new Promise((resolve, reject) => {
        const id = nextId++;
        const timer = setTimeout(() => {
          waiting.delete(id);
          reject(new Error(`hub did not answer 'cpu' within ${REQUEST_TIMEOUT_MS} ms`));
        }, REQUEST_TIMEOUT_MS);
        waiting.set(id, (s) => {
          clearTimeout(timer);
          resolve(s);
        });
        child.send({ type: 'cpu', id } satisfies ToHub, (err) => {
          if (!err) return;
          clearTimeout(timer);
          waiting.delete(id);
          reject(err);
        });
      });
    return { ca: ready.ca, hubJson: ready.hubJson, cpu, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  if (child.connected) child.send({ type: 'stop' } satisfies ToHub, (err) => err && child.kill('SIGKILL'));
  else child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), EXIT_TIMEOUT_MS)));
  if ((await Promise.race([exited, late])) === 'late') {
    child.kill('SIGKILL');
    await exited;
  }
  clearTimeout(timer);
}
