/* The parent's handle on a server child: start, sample its CPU, read its count, stop it. */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CpuSample, FromServer, Reply, Request, ServerKind, ToServer } from './ipc.js';
import { waitForChildReady } from '../child-ready.js';

export interface ServerProcess {
  readonly kind: ServerKind;
  readonly ca: string;
  readonly connectionStrings: readonly string[];
  cpu(): Promise<CpuSample>;
  messages(): Promise<number>;
  /** Starts a V8 CPU profile in the child; profileStop writes it to `file`. */
  profileStart(): Promise<void>;
  profileStop(file: string): Promise<void>;
  /** Idempotent; kills the child if it does not exit by itself. */
  stop(): Promise<void>;
}

const SERVER_JS = fileURLToPath(new URL('./server.js', import.meta.url));
const START_TIMEOUT_MS = 30_000;
const REQUEST_TIMEOUT_MS = 10_000;
const EXIT_TIMEOUT_MS = 5_000;

/** Every child still running, so SIGINT and process exit can take them down too. */
const live = new Set<{ child: ChildProcess; dir: string }>();

/** Kills every server child synchronously (for SIGINT and 'exit', where nothing can be awaited). */
export function killAllServers(): void {
  for (const entry of live) {
    entry.child.kill('SIGKILL');
    rmSync(entry.dir, { recursive: true, force: true });
  }
  live.clear();
}

export async function startServer(kind: ServerKind, devices: number): Promise<ServerProcess> {
  // The parent owns the data dir, so it is removed even when the child is killed.
  const dir = mkdtempSync(join(tmpdir(), `fieldlink-bench-${kind}-`));
  // The child's stdout goes to our stderr: hub warnings stay visible without corrupting --json output.
  const child = fork(SERVER_JS, [kind, String(devices), join(dir, 'hub')], { stdio: ['ignore', 2, 2, 'ipc'], execArgv: [] });
  // IPC write failures (the child died) surface as a rejected request or an exit; without a
  // listener they would be thrown as an unhandled 'error' event instead, hiding the real cause.
  child.on('error', () => undefined);
  const entry = { child, dir };
  live.add(entry);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopping ??= stopChild(child, exited).finally(() => {
    live.delete(entry);
    rmSync(dir, { recursive: true, force: true });
  }));
  try {
    const ready = await waitForChildReady<Extract<FromServer, { type: 'ready' }>>(child, 'server', START_TIMEOUT_MS);
    const request = requester(child);
    return {
      kind,
      ca: ready.ca,
      connectionStrings: ready.connectionStrings,
      cpu: async () => {
        const r = await request({ type: 'cpu' });
        if (r.type !== 'cpu') throw new Error(`unexpected reply ${r.type}`);
        return r.sample;
      },
      messages: async () => {
        const r = await request({ type: 'count' });
        if (r.type !== 'count') throw new Error(`unexpected reply ${r.type}`);
        return r.messages;
      },
      profileStart: async () => done(await request({ type: 'profile-start' })),
      profileStop: async (file) => done(await request({ type: 'profile-stop', file })),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

function done(reply: Reply): void {
  if (reply.type !== 'done') throw new Error(`unexpected reply ${reply.type}`);
  if (reply.error !== undefined) throw new Error(`server: ${reply.error}`);
}

/** A request before it gets its id (Omit distributed over the union, so each member keeps its fields). */
type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;
type RequestBody = WithoutId<Request>;

/** Request/reply over IPC, matched by id. */
function requester(child: ChildProcess): (body: RequestBody) => Promise<Reply> {
  let nextId = 1;
  const pending = new Map<number, (msg: Reply) => void>();
  child.on('message', (raw) => {
    const msg = raw as FromServer;
    if ('id' in msg) {
      pending.get(msg.id)?.(msg);
      pending.delete(msg.id);
    }
  });
  return (body) =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`server did not answer '${body.type}' within ${REQUEST_TIMEOUT_MS} ms`));
      }, REQUEST_TIMEOUT_MS);
      pending.set(id, (msg) => {
        clearTimeout(timer);
        resolve(msg);
      });
      const req = { ...body, id } as Request;
      child.send(req, (err) => {
        if (!err) return;
        clearTimeout(timer);
        pending.delete(id);
        reject(err);
      });
    });
}

async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  if (child.connected) child.send({ type: 'stop' } satisfies ToServer, (err) => err && child.kill('SIGKILL'));
  else child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), EXIT_TIMEOUT_MS)));
  if ((await Promise.race([exited, late])) === 'late') {
    child.kill('SIGKILL');
    await exited;
  }
  clearTimeout(timer);
}
